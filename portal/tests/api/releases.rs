//! Signed agent releases: stored by the app (and the `releases` CLI), listed and removed by staff, the
//! signed file and the binary served to agents byte-exact, with `Range` resuming a download; every refusal
//! (a binary that does not match, a duplicate, a tampered or untrusted file when keys are given, a
//! malformed file) leaves neither a row nor a file.

use std::path::{Path, PathBuf};
use std::process::Command;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use outpost_cloud_link::release::{
    self, sign_with, Manifest, ReleaseError, SignedRelease, SigningKey, TrustedKeys,
};
use outpost_portal::access::Role;
use outpost_portal::app::releases::ReleaseOpError;
use outpost_portal::app::Actor;
use outpost_portal::store::releases as store_releases;
use serde_json::Value;

use crate::harness::{id_of, Auth, Harness};
use crate::people::token_for;

const TARGET: &str = "aarch64-unknown-linux-musl";

/// A pretend agent binary of `len` bytes (not all the same byte, so a shifted range shows).
fn binary(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn manifest_for(bin: &[u8], version: &str, notes: Option<&str>) -> Manifest {
    Manifest::for_binary(bin, version, TARGET, false, notes.map(str::to_owned)).unwrap()
}

/// A fresh key and the release file it signs for `bin`.
fn signed(bin: &[u8], version: &str) -> (SigningKey, Vec<u8>) {
    let (key, _) = SigningKey::generate().unwrap();
    let file = sign_with(&manifest_for(bin, version, None), &key)
        .unwrap()
        .to_json();
    (key, file)
}

fn trusting(key: &SigningKey) -> TrustedKeys {
    TrustedKeys::from_keys("/test/release-keys", [key.public_key()])
}

/// Adds a release of a 1 KiB binary; its id. (The roles walk uses it too.)
pub async fn add_release(h: &Harness, version: &str) -> i64 {
    let bin = binary(1024);
    let (_, file) = signed(&bin, version);
    h.app
        .add_release(&file, std::io::Cursor::new(bin), None, &Actor::system())
        .await
        .unwrap()
        .id
}

async fn data_dir(h: &Harness) -> PathBuf {
    let mut conn = h.app.store().conn().await.unwrap();
    store_releases::data_root(&mut conn).await.unwrap().unwrap()
}

/// Every file under `DIR/releases` (temporary ones included).
fn release_files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root.join("releases"), &mut out);
    out.sort();
    out
}

async fn stored_count(h: &Harness) -> usize {
    h.app.releases(&Default::default()).await.unwrap().len()
}

struct Raw {
    status: StatusCode,
    headers: HeaderMap,
    bytes: Vec<u8>,
}

/// A GET answered as raw bytes (the harness's helpers read text or JSON).
async fn raw_get(h: &Harness, path: &str, auth: Auth<'_>, range: Option<&str>) -> Raw {
    use tower::ServiceExt;
    let mut req = Request::builder().method(Method::GET).uri(path);
    match auth {
        Auth::None => {}
        Auth::Bearer(t) => req = req.header("authorization", format!("Bearer {t}")),
        Auth::Basic(id, secret) => {
            let v = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
            req = req.header("authorization", format!("Basic {v}"));
        }
    }
    if let Some(r) = range {
        req = req.header("range", r);
    }
    let resp = h
        .router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Raw {
        status,
        headers,
        bytes,
    }
}

fn error_of(raw: &Raw) -> String {
    serde_json::from_slice::<Value>(&raw.bytes)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// An activated agent's (id, secret).
async fn agent(h: &Harness, name: &str) -> (String, String) {
    let body = h.activate(name).await;
    (id_of(&body), body["secret"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_release_is_stored_listed_and_served_byte_exact_with_resumable_ranges() {
    let h = Harness::new().await;
    let bin = binary(200_003);
    let (key, file) = signed(&bin, "1.4.0");
    let row = h
        .app
        .add_release(
            &file,
            std::io::Cursor::new(bin.clone()),
            Some(&trusting(&key)),
            &Actor::system(),
        )
        .await
        .unwrap();
    assert_eq!(
        (row.version.as_str(), row.target.as_str(), row.size),
        ("1.4.0", TARGET, 200_003)
    );
    assert_eq!(row.key_ids, vec![key.key_id()]);
    let root = data_dir(&h).await;
    let on_disk = root.join(format!("releases/{TARGET}/outpost-agent-1.4.0"));
    assert_eq!(
        release_files(&root),
        vec![on_disk.clone()],
        "no temporary file left"
    );
    assert_eq!(std::fs::read(&on_disk).unwrap(), bin);
    assert!(h.database_contains("release-added").await);

    let list = h.op(Method::GET, "/api/v1/releases", None).await;
    assert_eq!(list.status, StatusCode::OK, "{:?}", list.body);
    let listed = &list.body["releases"][0];
    assert_eq!(listed["id"], row.id);
    assert_eq!(listed["version"], "1.4.0");
    assert_eq!(listed["target"], TARGET);
    assert_eq!(listed["size"], 200_003);
    assert_eq!(listed["sha256"], row.sha256.as_str());
    assert_eq!(listed["key_ids"][0], key.key_id().as_str());
    assert_eq!(listed["added_by"], "system");
    let filtered = h
        .op(
            Method::GET,
            "/api/v1/releases?target=x86_64-unknown-linux-gnu",
            None,
        )
        .await;
    assert_eq!(filtered.body["releases"].as_array().unwrap().len(), 0);
    let filtered = h
        .op(
            Method::GET,
            &format!("/api/v1/releases?target={TARGET}&version=1.4.0"),
            None,
        )
        .await;
    assert_eq!(filtered.body["releases"].as_array().unwrap().len(), 1);

    let (id, secret) = agent(&h, "gw").await;
    let base = format!("/api/v1/agent/releases/{}", row.id);
    let m = raw_get(
        &h,
        &format!("{base}/manifest"),
        Auth::Basic(&id, &secret),
        None,
    )
    .await;
    assert_eq!(m.status, StatusCode::OK);
    assert_eq!(m.headers["content-type"], "application/json");
    assert_eq!(
        m.bytes, file,
        "the release file is served exactly as received"
    );
    // What an agent does with it: verify with its own keys.
    let manifest = release::verify(&m.bytes, &trusting(&key)).unwrap();

    let b = raw_get(
        &h,
        &format!("{base}/binary"),
        Auth::Basic(&id, &secret),
        None,
    )
    .await;
    assert_eq!(b.status, StatusCode::OK);
    assert_eq!(b.headers["content-type"], "application/octet-stream");
    assert_eq!(b.headers["content-length"], "200003");
    assert_eq!(b.headers["accept-ranges"], "bytes");
    assert_eq!(b.bytes, bin);
    release::check_binary(&manifest, b.bytes.as_slice()).unwrap();

    // An interrupted download resumes where it stopped.
    let first = &bin[..123_456];
    let rest = raw_get(
        &h,
        &format!("{base}/binary"),
        Auth::Basic(&id, &secret),
        Some("bytes=123456-"),
    )
    .await;
    assert_eq!(rest.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(rest.headers["content-range"], "bytes 123456-200002/200003");
    assert_eq!(rest.headers["content-length"], "76547");
    let mut whole = first.to_vec();
    whole.extend_from_slice(&rest.bytes);
    assert_eq!(whole, bin);
    let last = raw_get(
        &h,
        &format!("{base}/binary"),
        Auth::Basic(&id, &secret),
        Some("bytes=200002-"),
    )
    .await;
    assert_eq!(
        (last.status, last.bytes.as_slice()),
        (StatusCode::PARTIAL_CONTENT, &bin[200_002..])
    );

    for bad in ["bytes=200003-", "bytes=5-1", "bytes=0-1,5-6", "bytes=x-"] {
        let r = raw_get(
            &h,
            &format!("{base}/binary"),
            Auth::Basic(&id, &secret),
            Some(bad),
        )
        .await;
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
        assert_eq!(r.headers["content-range"], "bytes */200003", "{bad}");
        assert_eq!(error_of(&r), "range_not_satisfiable", "{bad}");
    }
}

#[tokio::test]
async fn a_binary_that_does_not_match_the_manifest_leaves_nothing() {
    let h = Harness::new().await;
    let root = data_dir(&h).await;
    let bin = binary(4096);
    let (_, file) = signed(&bin, "2.0.0");

    let mut flipped = bin.clone();
    flipped[100] ^= 1;
    let e = h
        .app
        .add_release(&file, std::io::Cursor::new(flipped), None, &Actor::system())
        .await
        .unwrap_err();
    assert!(
        matches!(e, ReleaseOpError::Binary(ReleaseError::HashMismatch { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("SHA-256"), "{e}");

    let e = h
        .app
        .add_release(
            &file,
            std::io::Cursor::new(bin[..4000].to_vec()),
            None,
            &Actor::system(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ReleaseOpError::Binary(ReleaseError::SizeMismatch {
                expected: 4096,
                got: 4000
            })
        ),
        "{e}"
    );
    assert_eq!(stored_count(&h).await, 0);
    assert!(
        release_files(&root).is_empty(),
        "{:?}",
        release_files(&root)
    );
    assert!(!h.database_contains("release-added").await);

    // The right binary is then accepted.
    h.app
        .add_release(&file, std::io::Cursor::new(bin), None, &Actor::system())
        .await
        .unwrap();
    assert_eq!(stored_count(&h).await, 1);
}

#[tokio::test]
async fn a_duplicate_version_and_target_is_refused_and_the_first_stays() {
    let h = Harness::new().await;
    let root = data_dir(&h).await;
    let id = add_release(&h, "1.0.0").await;
    let path = root.join(format!("releases/{TARGET}/outpost-agent-1.0.0"));
    let before = std::fs::read(&path).unwrap();

    let other = binary(2048);
    let (_, file) = signed(&other, "1.0.0");
    let e = h
        .app
        .add_release(&file, std::io::Cursor::new(other), None, &Actor::system())
        .await
        .unwrap_err();
    match &e {
        ReleaseOpError::Duplicate {
            version,
            target,
            id: existing,
        } => assert_eq!(
            (version.as_str(), target.as_str(), *existing),
            ("1.0.0", TARGET, id)
        ),
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("releases remove"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(release_files(&root), vec![path]);
    assert_eq!(stored_count(&h).await, 1);
}

/// The release file with its manifest replaced by `manifest`'s bytes, the signatures kept.
fn tampered(file: &[u8], manifest: &Manifest) -> Vec<u8> {
    let mut release = SignedRelease::from_json(file).unwrap();
    release.manifest =
        base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(manifest).unwrap());
    release.to_json()
}

#[tokio::test]
async fn with_release_keys_a_tampered_or_untrusted_file_is_refused_without_them_only_agents_can_tell(
) {
    let h = Harness::new().await;
    let root = data_dir(&h).await;
    let bin = binary(3000);
    let (key, file) = signed(&bin, "3.1.0");
    let changed = tampered(
        &file,
        &manifest_for(&bin, "3.1.0", Some("changed after signing")),
    );

    let e = h
        .app
        .add_release(
            &changed,
            std::io::Cursor::new(bin.clone()),
            Some(&trusting(&key)),
            &Actor::system(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ReleaseOpError::Untrusted(ReleaseError::SignatureInvalid { .. })
        ),
        "{e}"
    );
    assert!(e.to_string().contains("tampered"), "{e}");

    let (stranger, _) = SigningKey::generate().unwrap();
    let e = h
        .app
        .add_release(
            &file,
            std::io::Cursor::new(bin.clone()),
            Some(&trusting(&stranger)),
            &Actor::system(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ReleaseOpError::Untrusted(ReleaseError::NoTrustedSignature { .. })
        ),
        "{e}"
    );
    assert_eq!(stored_count(&h).await, 0);
    assert!(release_files(&root).is_empty());

    // Without keys the portal checks the manifest's form and the binary, not the signature: the tampered
    // file is stored, and it is the agent (which trusts only its own keys) that refuses it.
    let row = h
        .app
        .add_release(&changed, std::io::Cursor::new(bin), None, &Actor::system())
        .await
        .unwrap();
    let (id, secret) = agent(&h, "gw").await;
    let m = raw_get(
        &h,
        &format!("/api/v1/agent/releases/{}/manifest", row.id),
        Auth::Basic(&id, &secret),
        None,
    )
    .await;
    assert_eq!(m.bytes, changed);
    let e = release::verify(&m.bytes, &trusting(&key)).unwrap_err();
    assert!(matches!(e, ReleaseError::SignatureInvalid { .. }), "{e}");
}

#[tokio::test]
async fn malformed_release_files_are_refused_naming_the_problem() {
    let h = Harness::new().await;
    let root = data_dir(&h).await;
    let bin = binary(512);
    let (key, file) = signed(&bin, "1.0.0");
    let mut wrong_name = manifest_for(&bin, "1.0.0", None);
    wrong_name.name = "other-program".into();
    let mut bad_version = manifest_for(&bin, "1.0.0", None);
    bad_version.version = "1.0".into();
    let mut bad_base64: Value = serde_json::from_slice(&file).unwrap();
    bad_base64["manifest"] = Value::from("%%% not base64");
    let newer_format = String::from_utf8(file.clone())
        .unwrap()
        .replacen("\"v\": 1", "\"v\": 2", 1);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not json at all".to_vec(), "not JSON"),
        (b"[1, 2]".to_vec(), "not a JSON object"),
        (b"{\"v\": 1}".to_vec(), "malformed release file"),
        (newer_format.into_bytes(), "unsupported release file format"),
        (bad_base64.to_string().into_bytes(), "bad base64"),
        (tampered(&file, &wrong_name), "not `outpost-agent`"),
        (tampered(&file, &bad_version), "field `version`"),
        (
            SignedRelease::unsigned(
                &serde_json::to_vec(&manifest_for(&bin, "1.0.0", None)).unwrap(),
            )
            .to_json(),
            "no signature",
        ),
    ];
    for (bytes, says) in cases {
        for keys in [None, Some(trusting(&key))] {
            let e = h
                .app
                .add_release(
                    &bytes,
                    std::io::Cursor::new(bin.clone()),
                    keys.as_ref(),
                    &Actor::system(),
                )
                .await
                .unwrap_err();
            let text = e.to_string();
            assert!(text.contains(says), "{says}: {text}");
            assert!(text.starts_with("the release"), "{text}");
        }
    }
    assert_eq!(stored_count(&h).await, 0);
    assert!(release_files(&root).is_empty());
}

#[tokio::test]
async fn agent_routes_answer_as_agent_status_does_for_wrong_secrets_and_deleted_agents() {
    let h = Harness::new().await;
    let release = add_release(&h, "1.0.0").await;
    let (id, secret) = agent(&h, "gw").await;
    for what in ["manifest", "binary"] {
        let path = format!("/api/v1/agent/releases/{release}/{what}");
        let r = raw_get(&h, &path, Auth::Basic(&id, "wrong"), None).await;
        assert_eq!(
            (r.status, error_of(&r).as_str()),
            (StatusCode::UNAUTHORIZED, "bad_credentials"),
            "{what}"
        );
        assert_eq!(r.headers["www-authenticate"], "Basic realm=\"outpost\"");
        let r = raw_get(&h, &path, Auth::None, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}");
        let r = raw_get(&h, &path, Auth::Basic("ag-nobody", &secret), None).await;
        assert_eq!(error_of(&r), "bad_credentials", "{what}");
        // A staff token is not an agent's credential.
        let r = raw_get(&h, &path, Auth::Bearer(&h.token), None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}");
        for missing in ["999", "x", "-1"] {
            let r = raw_get(
                &h,
                &format!("/api/v1/agent/releases/{missing}/{what}"),
                Auth::Basic(&id, &secret),
                None,
            )
            .await;
            assert_eq!(
                (r.status, error_of(&r).as_str()),
                (StatusCode::NOT_FOUND, "not_found"),
                "{what} {missing}"
            );
        }
    }

    // Deactivated: the same answer as /agent/status (which still answers a deactivated agent).
    let resp = h
        .op(
            Method::POST,
            &format!("/api/v1/agents/{id}/deactivate"),
            Some(serde_json::json!({})),
        )
        .await;
    assert!(resp.status.is_success(), "{:?}", resp.body);
    let status = h
        .call(
            Method::GET,
            "/api/v1/agent/status",
            None,
            Auth::Basic(&id, &secret),
        )
        .await;
    let m = raw_get(
        &h,
        &format!("/api/v1/agent/releases/{release}/manifest"),
        Auth::Basic(&id, &secret),
        None,
    )
    .await;
    assert_eq!(m.status, status.status);

    // Deleted: 410 agent_deleted, as /agent/status.
    let resp = h
        .op(Method::DELETE, &format!("/api/v1/agents/{id}"), None)
        .await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT, "{:?}", resp.body);
    let status = h
        .call(
            Method::GET,
            "/api/v1/agent/status",
            None,
            Auth::Basic(&id, &secret),
        )
        .await;
    assert_eq!(
        (status.status, status.error()),
        (StatusCode::GONE, "agent_deleted")
    );
    for what in ["manifest", "binary"] {
        let r = raw_get(
            &h,
            &format!("/api/v1/agent/releases/{release}/{what}"),
            Auth::Basic(&id, &secret),
            None,
        )
        .await;
        assert_eq!(
            (r.status, error_of(&r).as_str()),
            (StatusCode::GONE, "agent_deleted"),
            "{what}"
        );
    }
}

#[tokio::test]
async fn company_admins_list_and_remove_releases_other_roles_may_not() {
    let h = Harness::new().await;
    let root = data_dir(&h).await;
    let release = add_release(&h, "1.0.0").await;
    h.add_user(
        "ga@example.com",
        Role::GroupAdmin,
        Some("North"),
        "correct horse battery staple",
    )
    .await;
    let ga = token_for(&h, "ga@example.com", false).await;
    for (method, path) in [
        (Method::GET, "/api/v1/releases".to_owned()),
        (Method::DELETE, format!("/api/v1/releases/{release}")),
    ] {
        let r = h.call(method.clone(), &path, None, Auth::Bearer(&ga)).await;
        assert_eq!(
            (r.status, r.error()),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{method} {path}"
        );
    }
    let (id, secret) = agent(&h, "gw").await;
    let r = h.op(Method::DELETE, "/api/v1/releases/999", None).await;
    assert_eq!((r.status, r.error()), (StatusCode::NOT_FOUND, "not_found"));
    let r = h
        .op(Method::DELETE, &format!("/api/v1/releases/{release}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert!(release_files(&root).is_empty());
    assert_eq!(stored_count(&h).await, 0);
    assert!(h.database_contains("release-removed").await);
    let m = raw_get(
        &h,
        &format!("/api/v1/agent/releases/{release}/manifest"),
        Auth::Basic(&id, &secret),
        None,
    )
    .await;
    assert_eq!(m.status, StatusCode::NOT_FOUND);
    // Removed, the same version can be added again.
    add_release(&h, "1.0.0").await;
}

/// The CLI: `releases add` (with and without --release-keys), `list`, `list --json`, `remove`.
#[test]
fn the_releases_cli_adds_lists_and_removes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bin = binary(10_000);
    let (key, file) = signed(&bin, "0.9.1");
    let bin_path = dir.path().join("outpost-agent");
    let file_path = dir.path().join("outpost-agent.release.json");
    let keys = dir.path().join("keys");
    std::fs::write(&bin_path, &bin).unwrap();
    std::fs::write(&file_path, &file).unwrap();
    std::fs::create_dir(&keys).unwrap();
    std::fs::write(keys.join("publisher.pub"), key.public_key().to_line()).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_outpost-portal"))
            .args(args)
            .env("OUTPOST_LOG", "warn")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let data_s = data.to_str().unwrap();
    let (ok, out, err) = run(&[
        "releases",
        "add",
        "--data",
        data_s,
        file_path.to_str().unwrap(),
        bin_path.to_str().unwrap(),
        "--release-keys",
        keys.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(out, format!("1\t0.9.1\t{TARGET}\t10000\n"));
    assert_eq!(
        std::fs::read(data.join(format!("releases/{TARGET}/outpost-agent-0.9.1"))).unwrap(),
        bin
    );

    // A second, tampered release is refused by the keys, with the reason.
    let bin2 = binary(20_000);
    let (_, file2) = signed(&bin2, "0.9.2");
    let changed = tampered(&file2, &manifest_for(&bin2, "0.9.2", Some("sneaky")));
    std::fs::write(&bin_path, &bin2).unwrap();
    std::fs::write(&file_path, &changed).unwrap();
    let (ok, _, err) = run(&[
        "releases",
        "add",
        "--data",
        data_s,
        file_path.to_str().unwrap(),
        bin_path.to_str().unwrap(),
        "--release-keys",
        keys.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("not signed by a trusted key"), "{err}");

    let (ok, out, err) = run(&["releases", "list", "--data", data_s]);
    assert!(ok, "{err}");
    assert!(out.starts_with("ID\tVERSION\tTARGET\tSIZE"), "{out}");
    assert!(
        out.contains(&format!("1\t0.9.1\t{TARGET}\t10000\tno\t")),
        "{out}"
    );
    assert!(!out.contains("0.9.2"), "{out}");
    let (ok, out, _) = run(&["releases", "list", "--data", data_s, "--json"]);
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["releases"][0]["version"], "0.9.1");
    assert!(v["releases"][0]["added_by"]
        .as_str()
        .unwrap()
        .contains("(outpost-portal releases add)"));

    let (ok, out, err) = run(&["releases", "remove", "--data", data_s, "1"]);
    assert!(ok, "{err}");
    assert!(out.contains("removed release 1"), "{out}");
    assert!(!data
        .join(format!("releases/{TARGET}/outpost-agent-0.9.1"))
        .exists());
    let (ok, _, err) = run(&["releases", "remove", "--data", data_s, "1"]);
    assert!(!ok);
    assert!(err.contains("there is no release 1"), "{err}");
}
