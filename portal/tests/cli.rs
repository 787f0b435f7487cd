//! The `outpost-portal` binary's local commands: `codes new` and `token new` print one line, work while
//! another process holds the database open, and what they print is accepted by the portal.

use std::process::Command;

use outpost_portal::codes::Code;
use outpost_portal::store::{credentials, users, Store};

fn portal() -> Command {
    Command::new(env!("CARGO_BIN_EXE_outpost-portal"))
}

fn run(args: &[&str]) -> String {
    let out = portal().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "outpost-portal {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn codes_and_tokens_are_printed_alone_and_stored_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();

    let out = run(&[
        "codes",
        "new",
        "--data",
        data_s,
        "--uses",
        "3",
        "--prepaid-months",
        "12",
        "--expires",
        "2h",
    ]);
    assert_eq!(out.lines().count(), 1, "{out:?}");
    let code = Code::parse(out.trim()).expect("a well-formed code");
    assert_eq!(out.trim(), code.display());
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&data).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700);

    // The database stays open here (as `up` would hold it) while the CLI writes again.
    let store = Store::open(&data.join("portal.db")).await.unwrap();
    let token = run(&["token", "new", "--data", data_s, "--name", "ci"]);
    assert_eq!(token.lines().count(), 1);
    let token = token.trim();
    assert!(token.starts_with("opt_") && token.len() > 40);

    let mut conn = store.conn().await.unwrap();
    let stored = credentials::find_code(&mut conn, &code.hash())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.uses, stored.used, stored.prepaid_months),
        (3, 0, Some(12))
    );
    let lifetime = stored.expires_at - chrono::Utc::now();
    assert!(lifetime > chrono::Duration::minutes(119) && lifetime <= chrono::Duration::hours(2));
    let stored = users::use_token(
        &mut conn,
        &outpost_portal::secrets::hash(token),
        chrono::Utc::now(),
    )
    .await
    .unwrap()
    .expect("the token is stored (hashed)");
    assert_eq!((stored.name.as_str(), stored.read_only), ("ci", false));
    let admin = users::by_id(&mut conn, stored.user_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (admin.username.as_str(), admin.role),
        ("admin", outpost_portal::access::Role::CompanyAdmin),
        "on an install without users, token new makes a token-only company admin"
    );
    assert_eq!(stored_company(&mut conn, &code).await, admin.company_id);

    // The first person: one line, the link where they set a password; then a read-only token for them.
    let link = run(&[
        "users",
        "new",
        "--data",
        data_s,
        "--email",
        "Ana@Example.com",
        "--url",
        "https://p.example",
    ]);
    assert_eq!(link.lines().count(), 1, "{link:?}");
    assert!(
        link.trim()
            .starts_with("https://p.example/account/password?token="),
        "{link}"
    );
    let ana = users::by_email(&mut conn, "ana@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ana.role, ana.company_id),
        (outpost_portal::access::Role::CompanyAdmin, admin.company_id)
    );
    assert!(
        ana.password_hash.is_none(),
        "no password until the link is used"
    );
    let ro = run(&[
        "token",
        "new",
        "--data",
        data_s,
        "--user",
        "ana@example.com",
        "--read-only",
    ]);
    let ro = users::use_token(
        &mut conn,
        &outpost_portal::secrets::hash(ro.trim()),
        chrono::Utc::now(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!((ro.user_id, ro.read_only), (ana.id, true));
    // A group admin needs a group; a support engineer belongs to no company.
    let out = portal()
        .args([
            "users",
            "new",
            "--data",
            data_s,
            "--email",
            "g@example.com",
            "--role",
            "group-admin",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--group"),
        "{out:?}"
    );
    run(&[
        "users",
        "new",
        "--data",
        data_s,
        "--email",
        "s@example.com",
        "--role",
        "support",
    ]);
    let support = users::by_email(&mut conn, "s@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(support.company_id, None);
    for file in ["portal.db", "portal.db-wal"] {
        let bytes = std::fs::read(data.join(file)).unwrap_or_default();
        let clear = |s: &str| bytes.windows(s.len()).any(|w| w == s.as_bytes());
        assert!(!clear(token), "the token is stored in clear in {file}");
        assert!(
            !clear(code.normalized()),
            "the code is stored in clear in {file}"
        );
    }
}

async fn stored_company(conn: &mut sqlx::SqliteConnection, code: &Code) -> Option<i64> {
    credentials::find_code(conn, &code.hash())
        .await
        .unwrap()
        .unwrap()
        .company_id
}

#[test]
fn bad_arguments_fail_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = portal()
        .args(["codes", "new", "--data", data, "--uses", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("uses"));
    let out = portal()
        .args(["codes", "new", "--data", data, "--expires", "7w"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = portal().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("outpost-portal "));
}

/// `up` with the broker on every address and no address to tell agents stops at once, naming the options
/// to add, before it creates anything or starts a broker.
#[test]
fn up_on_every_address_without_a_public_broker_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for listen in ["0.0.0.0:18883", "[::]:18883"] {
        let data = dir.path().join("data");
        let out = portal()
            .args(["up", "--data", data.to_str().unwrap(), "--mqtts", listen])
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{listen}: {stderr}");
        assert!(
            stderr.contains("listens on every address")
                && stderr.contains("--public-mqtts HOST:18883")
                && stderr.contains("--hostname HOST"),
            "{listen}: {stderr}"
        );
        assert!(!data.exists(), "{listen}: up created its data directory");
    }
}
