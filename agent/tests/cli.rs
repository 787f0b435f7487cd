//! The binary's command line as scripts and the end-to-end tests drive it: exit codes, `status --json`,
//! `print-config`, and the offline error paths (no network beyond a closed loopback port).

use std::path::Path;
use std::process::{Command, Output};

fn agent(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_outpost-agent"))
        .arg("--state")
        .arg(state)
        .args(args)
        .env("OUTPOST_LOG", "warn")
        .output()
        .expect("run outpost-agent")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn version_and_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let v = agent(dir.path(), &["--version"]);
    assert_eq!(v.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("outpost-agent "));
    assert_eq!(agent(dir.path(), &["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        agent(dir.path(), &["activate", "CODE"]).status.code(),
        Some(2)
    );
    let help = agent(dir.path(), &["--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("3  this agent was deleted"));
}

#[test]
fn print_config_prints_the_documented_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let o = agent(dir.path(), &["print-config"]);
    assert_eq!(o.status.code(), Some(0));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("heartbeat_secs = 30"));
    assert!(text.contains("disabled_poll_secs = 60"));
    // What it prints is a valid config file for `run --config`.
    let parsed = outpost_agent::config::Config::from_toml(&text, Path::new("printed")).unwrap();
    assert_eq!(parsed, outpost_agent::config::Config::default());
}

#[test]
fn status_of_an_unprovisioned_agent() {
    let dir = tempfile::tempdir().unwrap();
    let o = agent(&dir.path().join("nothing-here"), &["status", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["state"], "unprovisioned");
    assert_eq!(v["link"], "down");
    let human = agent(&dir.path().join("nothing-here"), &["status"]);
    assert!(String::from_utf8_lossy(&human.stdout).starts_with("state:    unprovisioned"));
}

#[test]
fn run_without_identity_is_an_error_and_after_deletion_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "heartbeat_secs = 1\n").unwrap();
    let cfg = config.to_str().unwrap();
    let o = agent(dir.path(), &["run", "--config", cfg]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not activated"), "{}", stderr(&o));

    std::fs::write(dir.path().join("deleted"), "").unwrap();
    let o = agent(dir.path(), &["run", "--config", cfg]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("deleted in the portal"));
    let s = agent(dir.path(), &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    assert_eq!(v["state"], "deleted");
}

#[test]
fn run_with_a_missing_explicit_config_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = agent(dir.path(), &["run", "--config", "/nonexistent/agent.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent/agent.toml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn activate_refuses_plain_http_and_reports_an_unreachable_portal() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let o = agent(
        &state,
        &["activate", "ABCD-EFGH", "--portal", "http://127.0.0.1:1"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("https://HOST"), "{}", stderr(&o));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, TEST_CA).unwrap();
    let url = format!("https://127.0.0.1:{port}");
    let o = agent(
        &state,
        &[
            "activate",
            "ABCD-EFGH",
            "--portal",
            &url,
            "--ca",
            ca.to_str().unwrap(),
            "--platform",
            "box",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot reach the portal"),
        "{}",
        stderr(&o)
    );
    assert!(!state.join("identity.json").exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the state directory is private");
}

#[test]
fn activate_refuses_to_replace_an_identity_without_force() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("identity.json"),
        r#"{"agent_id":"ag-abc","secret":"x","broker":"127.0.0.1:1","portal":"https://127.0.0.1:1",
            "ca_pem":"","name":"n","activated_at":"2026-01-01T00:00:00Z","platform":"box"}"#,
    )
    .unwrap();
    let o = agent(
        dir.path(),
        &["activate", "CODE", "--portal", "https://127.0.0.1:1"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("\"x\""), "the secret is never printed");
}

/// Activation checks the state directory before it calls the portal: each local problem is a clear error
/// saying the code was not used, and the portal (a listener here, which would see any attempt) is never
/// contacted.
#[test]
fn activate_checks_the_state_directory_before_spending_the_code() {
    let dir = tempfile::tempdir().unwrap();
    let portal = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    portal.set_nonblocking(true).unwrap();
    let url = format!("https://{}", portal.local_addr().unwrap());
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, TEST_CA).unwrap();
    let activate = |state: &Path, force: bool| {
        let mut args = vec![
            "activate",
            "ABCD-EFGH",
            "--portal",
            &url,
            "--ca",
            ca.to_str().unwrap(),
            "--platform",
            "box",
        ];
        if force {
            args.push("--force");
        }
        agent(state, &args)
    };

    // The state directory's parent is a file.
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "x").unwrap();
    let o = activate(&blocker.join("state"), false);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("cannot be used") && e.contains("code was not used"),
        "{e}"
    );

    // identity.json is a directory (replacing an identity with --force would have spent the code and then
    // failed to write it).
    let state = dir.path().join("state1");
    std::fs::create_dir_all(state.join("identity.json")).unwrap();
    let o = activate(&state, true);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("identity.json is in the way") && e.contains("code was not used"),
        "{e}"
    );

    // The database path is a file.
    let state = dir.path().join("state2");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("db"), "x").unwrap();
    let o = activate(&state, false);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("db is in the way"), "{e}");
    assert!(!e.contains("cannot reach the portal"), "{e}");

    match portal.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("activation called the portal despite the local problem: {other:?}"),
    }

    // With nothing in the way it does call the portal (so the check above is not vacuous); the connection
    // is closed at once, so the agent fails fast.
    let watcher = std::thread::spawn(move || {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::time::Instant::now() < until {
            if let Ok((conn, _)) = portal.accept() {
                drop(conn);
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        false
    });
    let o = activate(&dir.path().join("state3"), false);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        watcher.join().unwrap(),
        "a clean state directory goes on to the portal: {}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("code was not used"), "{}", stderr(&o));
}

/// A throwaway self-signed CA (only parsed: activation never gets to use it in these tests).
const TEST_CA: &str = include_str!("fixtures/test-ca.pem");
