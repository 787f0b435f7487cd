//! The `outpost-release` binary end to end: keygen, sign a file, verify it with the key directory, then each
//! refusal (a tampered manifest, the wrong binary, the wrong target, a downgrade, an untrusted key, no keys)
//! exits 1 with its message.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use outpost_cloud_link::release::SignedRelease;

const TARGET: &str = "aarch64-unknown-linux-musl";

fn tool(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_outpost-release"));
    for a in args {
        cmd.arg(a);
    }
    cmd.output().expect("running outpost-release")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[track_caller]
fn assert_ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Exit 1 and `expect` in the message (stderr, or stdout with --json).
#[track_caller]
fn assert_refused(out: &Output, expect: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", text(out));
    assert!(
        text(out).contains(expect),
        "expected {expect:?} in\n{}",
        text(out)
    );
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A key pair in `NAME.pem`/`NAME.pub`; the public key also in the directory `keys-NAME`.
    fn keygen(&self, name: &str) -> (PathBuf, PathBuf) {
        let (key, public) = (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.pub")),
        );
        let out = tool(&[&"keygen", &"--out", &key, &"--pub", &public]);
        let stdout = assert_ok(&out);
        assert!(stdout.contains("key id "), "{stdout}");
        let keys = self.path(&format!("keys-{name}"));
        std::fs::create_dir(&keys).unwrap();
        std::fs::copy(&public, keys.join(format!("{name}.pub"))).unwrap();
        (key, keys)
    }

    fn binary(&self, name: &str, content: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, content).unwrap();
        path
    }
}

fn sign(key: &Path, binary: &Path, version: &str, extra: &[&str]) -> PathBuf {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"sign",
        &"--key",
        &key,
        &binary,
        &"--version",
        &version,
        &"--target",
        &TARGET,
    ];
    for e in extra {
        args.push(e);
    }
    let stdout = assert_ok(&tool(&args));
    assert!(
        stdout.contains("sha256  ") && stdout.contains("key id  "),
        "{stdout}"
    );
    let mut out = binary.as_os_str().to_owned();
    out.push(".release.json");
    PathBuf::from(out)
}

#[test]
fn keygen_sign_verify_and_every_refusal() {
    let fx = Fixture {
        dir: tempfile::tempdir().unwrap(),
    };
    let (key, keys) = fx.keygen("release");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "private key mode {mode:o}");
    let pem = std::fs::read_to_string(&key).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    let public = std::fs::read_to_string(fx.path("release.pub")).unwrap();
    assert!(
        public.starts_with("outpost-release-key-v1 ") && public.lines().count() == 1,
        "{public}"
    );

    // keygen refuses to overwrite, and leaves the existing files alone.
    let again = tool(&[&"keygen", &"--out", &key, &"--pub", &fx.path("other.pub")]);
    assert_refused(&again, "already exists");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), pem);
    assert!(!fx.path("other.pub").exists());

    let agent = fx.binary("outpost-agent", &vec![0x5a; 300_000]);
    let release = sign(&key, &agent, "0.2.0", &["--notes", "faster sweeps"]);
    let release_text = std::fs::read_to_string(&release).unwrap();

    // Verify: the signature alone, then with every install check.
    let stdout = assert_ok(&tool(&[&"verify", &"--keys", &keys, &release]));
    assert!(
        stdout.contains("OK: signed by trusted key") && stdout.contains("version   0.2.0"),
        "{stdout}"
    );
    assert!(stdout.contains("notes     faster sweeps"), "{stdout}");
    let install = |manifest: &Path, binary: &Path, running: &str, target: &str, json: bool| {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"verify",
            &"--keys",
            &keys,
            &manifest,
            &"--binary",
            &binary,
            &"--running-version",
            &running,
            &"--running-target",
            &target,
        ];
        if json {
            args.push(&"--json");
        }
        tool(&args)
    };
    let stdout = assert_ok(&install(&release, &agent, "0.1.9", TARGET, false));
    assert!(stdout.contains("install checks passed"), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&assert_ok(&install(
        &release, &agent, "0.1.9", TARGET, true,
    )))
    .unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["install_checked"], true);
    assert_eq!(json["manifest"]["size"], 300_000);
    assert_eq!(json["manifest"]["target"], TARGET);

    // Tampered: the version inside the base64 manifest changed, the signature kept.
    let signed = SignedRelease::from_json(release_text.as_bytes()).unwrap();
    let manifest = String::from_utf8(signed.manifest_bytes().unwrap()).unwrap();
    assert!(manifest.contains("\"version\":\"0.2.0\""), "{manifest}");
    let mut tampered = SignedRelease::unsigned(manifest.replace("0.2.0", "9.0.0").as_bytes());
    tampered.signatures = signed.signatures.clone();
    let tampered_path = fx.path("tampered.release.json");
    std::fs::write(&tampered_path, tampered.to_json()).unwrap();
    assert_refused(
        &tool(&[&"verify", &"--keys", &keys, &tampered_path]),
        "changed after signing",
    );
    let out = install(&tampered_path, &agent, "0.1.9", TARGET, true);
    assert_refused(&out, "\"kind\":\"signature-invalid\"");

    // The wrong binary (same size, one byte changed): hash mismatch, naming both hashes.
    let mut other = vec![0x5a; 300_000];
    other[123_456] = 0;
    let other = fx.binary("other-agent", &other);
    let out = install(&release, &other, "0.1.9", TARGET, false);
    assert_refused(&out, "SHA-256 is");
    let sha = json["manifest"]["sha256"].as_str().unwrap();
    assert_refused(&out, &format!("but the manifest says {sha}"));
    // A truncated binary: size mismatch.
    let short = fx.binary("short-agent", &vec![0x5a; 299_999]);
    assert_refused(
        &install(&release, &short, "0.1.9", TARGET, false),
        "299999 bytes but the manifest says 300000",
    );

    // The wrong target.
    assert_refused(
        &install(&release, &agent, "0.1.9", "armv7-unknown-linux-gnueabihf", false),
        "built for target aarch64-unknown-linux-musl but this agent runs on armv7-unknown-linux-gnueabihf",
    );

    // A downgrade, and the same version.
    assert_refused(
        &install(&release, &agent, "0.10.0", TARGET, false),
        "refusing a downgrade: running 0.10.0, offered 0.2.0",
    );
    assert_refused(
        &install(&release, &agent, "0.2.0", TARGET, true),
        "\"kind\":\"same-version\"",
    );
    // The same binary signed as a rollback is accepted going back.
    let rollback = fx.binary("rollback-agent", &vec![0x5a; 300_000]);
    let rollback_release = sign(&key, &rollback, "0.2.0", &["--rollback"]);
    let stdout = assert_ok(&install(
        &rollback_release,
        &rollback,
        "0.10.0",
        TARGET,
        false,
    ));
    assert!(
        stdout.contains("rollback  yes") && stdout.contains("(a rollback)"),
        "{stdout}"
    );

    // Signed by a key the agent does not trust.
    let (other_key, other_keys) = fx.keygen("other");
    let foreign = fx.binary("foreign-agent", b"foreign");
    let foreign_release = sign(&other_key, &foreign, "0.3.0", &[]);
    assert_refused(
        &tool(&[&"verify", &"--keys", &keys, &foreign_release]),
        "not signed by a trusted key",
    );
    assert_ok(&tool(&[
        &"verify",
        &"--keys",
        &other_keys,
        &foreign_release,
    ]));

    // No keys installed, a missing key directory, a bad key file.
    let empty = fx.path("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_refused(
        &tool(&[&"verify", &"--keys", &empty, &release]),
        "no release keys installed in",
    );
    assert_refused(
        &tool(&[&"verify", &"--keys", &fx.path("nowhere"), &release]),
        "cannot be read",
    );
    std::fs::write(empty.join("junk.pub"), "ssh-ed25519 AAAA\n").unwrap();
    assert_refused(&tool(&[&"verify", &"--keys", &empty, &release]), "junk.pub");

    // Usage: --binary without the running version and target is a usage error, not a skipped check.
    let out = tool(&[&"verify", &"--keys", &keys, &release, &"--binary", &agent]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn sign_refuses_bad_input() {
    let fx = Fixture {
        dir: tempfile::tempdir().unwrap(),
    };
    let (key, _) = fx.keygen("release");
    let agent = fx.binary("outpost-agent", b"agent");
    let bad_version = tool(&[
        &"sign",
        &"--key",
        &key,
        &agent,
        &"--version",
        &"1.2",
        &"--target",
        &TARGET,
    ]);
    assert_refused(&bad_version, "field `version`");
    let bad_target = tool(&[
        &"sign",
        &"--key",
        &key,
        &agent,
        &"--version",
        &"1.2.0",
        &"--target",
        &"Linux ARM",
    ]);
    assert_refused(&bad_target, "field `target`");
    let missing = tool(&[
        &"sign",
        &"--key",
        &key,
        &fx.path("nope"),
        &"--version",
        &"1.2.0",
        &"--target",
        &TARGET,
    ]);
    assert_refused(&missing, "opening the binary");
    let not_a_key = fx.binary("not-a-key.pem", b"hello");
    let bad_key = tool(&[
        &"sign",
        &"--key",
        &not_a_key,
        &agent,
        &"--version",
        &"1.2.0",
        &"--target",
        &TARGET,
    ]);
    assert_refused(&bad_key, "not-a-key.pem");
    assert!(!fx.path("outpost-agent.release.json").exists());

    // --out puts the release file elsewhere.
    let out = fx.path("elsewhere.json");
    let signed = tool(&[
        &"sign",
        &"--key",
        &key,
        &agent,
        &"--version",
        &"1.2.0",
        &"--target",
        &TARGET,
        &"--out",
        &out,
    ]);
    assert_ok(&signed);
    assert!(out.exists() && !fx.path("outpost-agent.release.json").exists());
}
