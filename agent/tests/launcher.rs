//! `outpost-agent launch` with real processes: shell scripts stand in for installed versions (one that
//! crashes, one that hangs, one that commits, one that is stopped), and the real binary is the packaged one
//! the launcher falls back to (it runs `status --json` here, which needs no activation).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_outpost-agent");

/// A state directory with `script` installed as pending version 99.0.0 (and `previous`, if given).
fn staged(script: &str, previous: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let update = dir.path().join("update");
    fs::create_dir_all(&update).unwrap();
    let write_exe = |name: &str, body: &str| {
        let p = update.join(name);
        fs::write(&p, body).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o700)).unwrap();
    };
    write_exe("current", script);
    fs::write(update.join("current.version"), "99.0.0\n").unwrap();
    if let Some(prev) = previous {
        write_exe("previous", prev);
    }
    let pending = json!({
        "version": "99.0.0",
        "from_version": "98.0.0",
        "release_id": 5,
        "command_id": 11,
        "tries": 0,
        "had_previous": previous.is_some(),
        "installed_at_ms": 1,
    });
    fs::write(update.join("pending.json"), pending.to_string()).unwrap();
    dir
}

fn launch(state: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--state")
        .arg(state)
        .arg("launch")
        .args(extra)
        .args(["--", "status", "--json"])
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null());
    cmd
}

fn run(state: &Path, extra: &[&str]) -> Output {
    launch(state, extra).output().unwrap()
}

fn outcome(state: &Path) -> Value {
    let text = fs::read_to_string(state.join("update/outcome.json")).expect("no outcome.json");
    serde_json::from_str(&text).unwrap()
}

fn starts(state: &Path) -> usize {
    fs::read_to_string(state.join("starts"))
        .unwrap_or_default()
        .lines()
        .count()
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn a_version_that_crashes_at_start_is_rolled_back_after_max_tries_and_the_packaged_binary_runs() {
    let dir = staged("#!/bin/sh\necho start >> \"$2/starts\"\nexit 1\n", None);
    let s = dir.path();
    let out = run(s, &["--max-tries", "2", "--deadline-secs", "60"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(starts(s), 2, "started exactly max-tries times");
    // After the rollback the launcher became the packaged binary running `status --json`.
    assert_eq!(stdout_json(&out)["state"], "unprovisioned");
    let o = outcome(s);
    assert_eq!(o["state"], "rolled_back");
    assert_eq!(o["code"], "crashed-at-start");
    assert_eq!(o["version"], "99.0.0");
    assert_eq!(o["command_id"], 11);
    assert!(!s.join("update/current").exists());
    assert!(!s.join("update/pending.json").exists());
}

#[test]
fn a_version_never_confirmed_is_stopped_at_the_deadline_and_the_previous_binary_restored() {
    let previous = "#!/bin/sh\necho previous > \"$2/previous-ran\"\nexit 0\n";
    let dir = staged(
        "#!/bin/sh\necho start >> \"$2/starts\"\nexec sleep 60\n",
        Some(previous),
    );
    let s = dir.path();
    let started = Instant::now();
    let out = run(s, &["--max-tries", "3", "--deadline-secs", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(starts(s), 1);
    let o = outcome(s);
    assert_eq!(o["state"], "rolled_back");
    assert_eq!(o["code"], "not-healthy");
    assert!(o["reason"].as_str().unwrap().contains("within 1 s"), "{o}");
    // The previous binary (98.0.0, newer than this test build) is current again, and it ran.
    assert_eq!(
        fs::read_to_string(s.join("update/current")).unwrap(),
        previous
    );
    assert_eq!(
        fs::read_to_string(s.join("update/current.version"))
            .unwrap()
            .trim(),
        "98.0.0"
    );
    assert_eq!(
        fs::read_to_string(s.join("previous-ran")).unwrap().trim(),
        "previous"
    );
}

#[test]
fn a_committed_version_keeps_running_and_its_exit_status_is_the_launchers() {
    // Committing is removing the pending mark (what the agent does on the portal's confirmation).
    let dir = staged(
        "#!/bin/sh\nrm \"$2/update/pending.json\"\nsleep 1\nexit 7\n",
        None,
    );
    let s = dir.path();
    let out = run(s, &["--deadline-secs", "60"]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        s.join("update/current").exists(),
        "a committed update stays"
    );
    assert!(
        !s.join("update/outcome.json").exists(),
        "nothing rolled back"
    );
}

#[test]
fn a_stop_signal_reaches_the_supervised_version_and_its_try_stays_counted() {
    let dir = staged(
        "#!/bin/sh\necho start >> \"$2/starts\"\ntrap 'echo term > \"$2/got-term\"; exit 0' TERM\nwhile :; do sleep 0.1; done\n",
        None,
    );
    let s = dir.path();
    let mut child = launch(s, &["--deadline-secs", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while starts(s) == 0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        fs::read_to_string(s.join("got-term")).unwrap().trim(),
        "term"
    );
    let pending: Value =
        serde_json::from_str(&fs::read_to_string(s.join("update/pending.json")).unwrap()).unwrap();
    assert_eq!(
        pending["tries"], 1,
        "the start is counted for the next launch"
    );
}

#[test]
fn launch_needs_the_agents_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("--state")
        .arg(dir.path())
        .arg("launch")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
