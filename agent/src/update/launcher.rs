//! `outpost-agent launch`: the launcher the service manager starts. It picks the binary to run (an
//! installed update in the state directory, or the packaged binary itself), and while an update is pending it
//! stays as the parent: it counts the new version's starts, and rolls back to the previous binary when the
//! new one exits before it is confirmed `max_tries` times or is not confirmed within the deadline.
//!
//! ```text
//!            ┌──────────── pending.json? ─────────────┐
//!            no                                        yes: tries+1 (persisted)
//!  exec current (newer than me) or myself     tries > max? ── roll back ──┐
//!  (same PID: no supervisor left behind)               │ no               │
//!                                           spawn current, supervise  ◀───┘ (then exec what is restored)
//!                          exit before commit → again │ commit → wait for the exit │ deadline → stop it, roll back
//! ```
//! The agent restarts into a new binary by asking its launcher: exit status [`RESTART_EXIT`] when
//! supervised, otherwise by executing the launcher again (`OUTPOST_LAUNCHER`, `OUTPOST_LAUNCH_ARGV`).

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use outpost_cloud_link::release::Version;
use outpost_cloud_link::update::codes;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::{interval, sleep, timeout, Instant};
use tracing::{error, info, warn};

use super::slots::{Pending, Slots};
use crate::build_info;
use crate::state_dir::StateDirError;

/// The exit status with which a supervised agent asks its launcher to start it again (an update is staged).
pub const RESTART_EXIT: i32 = 75;
/// Set for a supervised agent: restart by exiting with [`RESTART_EXIT`].
pub const ENV_SUPERVISED: &str = "OUTPOST_SUPERVISED";
/// The launcher's own path, for an agent it executed directly to start it again.
pub const ENV_LAUNCHER: &str = "OUTPOST_LAUNCHER";
/// The launcher's arguments (JSON array of strings, without the program name).
pub const ENV_LAUNCH_ARGV: &str = "OUTPOST_LAUNCH_ARGV";
/// Default time the new version has to be confirmed healthy by the portal.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(120);
/// Default starts of a new version before it is given up.
pub const DEFAULT_MAX_TRIES: u32 = 3;
/// How long a stopped agent gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    State(#[from] StateDirError),
    #[error("cannot start {path}: {error}; reinstall the outpost-agent package")]
    Exec {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot find the launcher's own binary: {0}")]
    OwnPath(std::io::Error),
    #[error("cannot watch for stop signals: {0}")]
    Signals(std::io::Error),
}

/// What the launcher was asked to do.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    pub state: PathBuf,
    /// The agent's arguments after `--state DIR` (`run --config FILE`).
    pub agent_args: Vec<OsString>,
    /// The launcher's own arguments, to be executed again.
    pub launch_argv: Vec<OsString>,
    pub deadline: Duration,
    pub max_tries: u32,
}

/// The next thing to do, decided from the update files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Replace this process with that binary.
    Exec(PathBuf),
    /// Start the pending version under supervision (its try number is already persisted).
    Supervise { binary: PathBuf, pending: Pending },
    /// Give the pending version up.
    RollBack {
        pending: Pending,
        code: &'static str,
        reason: String,
    },
}

/// Decides the next step; counts a start of a pending version (persisted before it starts, so a crash of
/// the whole box counts too).
pub fn decide(slots: &Slots, me: &Path, max_tries: u32) -> Result<Step, StateDirError> {
    if let Some(mut pending) = slots.pending()? {
        if !slots.current().exists() {
            return Ok(Step::RollBack {
                reason: format!(
                    "the installed binary of version {} is missing (interrupted install)",
                    pending.version
                ),
                pending,
                code: codes::INSTALL,
            });
        }
        if pending.tries >= max_tries {
            return Ok(Step::RollBack {
                reason: format!(
                    "version {} stopped {} times before the portal confirmed it",
                    pending.version, pending.tries
                ),
                pending,
                code: codes::CRASHED_AT_START,
            });
        }
        pending.tries += 1;
        slots.set_pending(&pending)?;
        return Ok(Step::Supervise {
            binary: slots.current(),
            pending,
        });
    }
    match slots.current_version() {
        Some(v) if newer(&v, build_info::VERSION) => Ok(Step::Exec(slots.current())),
        Some(v) => {
            info!(installed = %v, packaged = build_info::VERSION, "the packaged binary is as new as the installed update; removing the update");
            slots.drop_current()?;
            Ok(Step::Exec(me.to_path_buf()))
        }
        None if slots.current().exists() => {
            warn!("an installed binary without its version file; running the packaged binary");
            Ok(Step::Exec(me.to_path_buf()))
        }
        None => Ok(Step::Exec(me.to_path_buf())),
    }
}

/// `a` is newer than `b` (an unreadable version is never newer).
fn newer(a: &str, b: &str) -> bool {
    match (a.parse::<Version>(), b.parse::<Version>()) {
        (Ok(a), Ok(b)) => a > b,
        (Ok(_), Err(_)) => true,
        _ => false,
    }
}

/// Runs the launcher until the agent exits (the exit status to return) or this process is replaced.
pub async fn launch(opts: LaunchOptions) -> Result<i32, LaunchError> {
    let me = std::env::current_exe().map_err(LaunchError::OwnPath)?;
    let slots = Slots::new(&opts.state);
    loop {
        match decide(&slots, &me, opts.max_tries)? {
            Step::Exec(binary) => return Err(exec(&opts, &me, &binary)),
            Step::RollBack {
                pending,
                code,
                reason,
            } => {
                error!(version = %pending.version, back_to = %pending.from_version, code, reason = %reason, "rolling the update back");
                slots.roll_back(&pending, code, reason)?;
            }
            Step::Supervise { binary, pending } => {
                info!(version = %pending.version, try_ = pending.tries, max_tries = opts.max_tries, deadline_secs = opts.deadline.as_secs(), "starting the new version under supervision");
                match supervise(&opts, &me, &slots, &binary, &pending).await? {
                    Supervised::Exit(code) => return Ok(code),
                    Supervised::Again => sleep(Duration::from_secs(1)).await,
                }
            }
        }
    }
}

fn agent_command(opts: &LaunchOptions, me: &Path, binary: &Path) -> std::process::Command {
    let argv: Vec<String> = opts
        .launch_argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut cmd = std::process::Command::new(binary);
    cmd.arg("--state")
        .arg(&opts.state)
        .args(&opts.agent_args)
        .env(ENV_LAUNCHER, me)
        .env(
            ENV_LAUNCH_ARGV,
            serde_json::to_string(&argv).unwrap_or_default(),
        )
        .env_remove(ENV_SUPERVISED);
    cmd
}

/// Replaces this process with `binary` (returns only on failure).
fn exec(opts: &LaunchOptions, me: &Path, binary: &Path) -> LaunchError {
    let error = agent_command(opts, me, binary).exec();
    LaunchError::Exec {
        path: binary.to_path_buf(),
        error,
    }
}

enum Supervised {
    Exit(i32),
    Again,
}

fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

fn still_pending(slots: &Slots, pending: &Pending) -> bool {
    matches!(slots.pending(), Ok(Some(p)) if p.version == pending.version)
}

async fn supervise(
    opts: &LaunchOptions,
    me: &Path,
    slots: &Slots,
    binary: &Path,
    pending: &Pending,
) -> Result<Supervised, LaunchError> {
    let mut cmd = tokio::process::Command::from(agent_command(opts, me, binary));
    // The agent is not systemd's main process now: it pings the watchdog through NotifyAccess=all.
    cmd.env(ENV_SUPERVISED, "1").env_remove("WATCHDOG_PID");
    let mut child = cmd.spawn().map_err(|error| LaunchError::Exec {
        path: binary.to_path_buf(),
        error,
    })?;
    let pid = child.id().map(|p| Pid::from_raw(p as i32));
    let mut term = signal(SignalKind::terminate()).map_err(LaunchError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(LaunchError::Signals)?;
    let forward = |sig: Signal| {
        if let Some(pid) = pid {
            let _ = kill(pid, sig);
        }
    };
    let deadline = Instant::now() + opts.deadline;
    let mut poll = interval(Duration::from_millis(250));
    let mut stopping = false;
    let mut committed = false;
    loop {
        tokio::select! {
            status = child.wait() => {
                let code = status.map(exit_code).unwrap_or(1);
                if stopping {
                    return Ok(Supervised::Exit(code));
                }
                if committed || !still_pending(slots, pending) {
                    return Ok(if code == RESTART_EXIT { Supervised::Again } else { Supervised::Exit(code) });
                }
                warn!(version = %pending.version, exit = code, try_ = pending.tries, "the new version stopped before the portal confirmed it");
                return Ok(Supervised::Again);
            }
            _ = term.recv() => { stopping = true; forward(Signal::SIGTERM); }
            _ = int.recv() => { stopping = true; forward(Signal::SIGINT); }
            _ = poll.tick(), if !committed && !stopping => {
                if !still_pending(slots, pending) {
                    info!(version = %pending.version, "the update is committed");
                    committed = true;
                } else if Instant::now() >= deadline {
                    let reason = format!(
                        "version {} was not confirmed healthy by the portal within {} s",
                        pending.version,
                        opts.deadline.as_secs()
                    );
                    error!(version = %pending.version, reason = %reason, "stopping the new version");
                    forward(Signal::SIGTERM);
                    if timeout(STOP_GRACE, child.wait()).await.is_err() {
                        let _ = child.kill().await;
                    }
                    // A commit may have landed while it stopped: then it stays.
                    if let Ok(Some(p)) = slots.pending() {
                        if p.version == pending.version {
                            slots.roll_back(&p, codes::NOT_HEALTHY, reason)?;
                        }
                    }
                    return Ok(Supervised::Again);
                }
            }
        }
    }
}

/// How a running agent restarts into a staged update: the launcher's way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restart {
    /// Supervised: exit with [`RESTART_EXIT`].
    ExitToLauncher,
    /// Executed directly: execute the launcher again with these arguments.
    ExecLauncher {
        launcher: PathBuf,
        argv: Vec<String>,
    },
}

/// How this agent can restart into an update, from the environment its launcher gave it; `None`: it was
/// not started by a launcher (`outpost-agent run` by hand), so it cannot install updates.
pub fn restart_from_env() -> Option<Restart> {
    if std::env::var_os(ENV_SUPERVISED).is_some_and(|v| v == "1") {
        return Some(Restart::ExitToLauncher);
    }
    let launcher = PathBuf::from(std::env::var_os(ENV_LAUNCHER)?);
    let argv: Vec<String> = serde_json::from_str(&std::env::var(ENV_LAUNCH_ARGV).ok()?).ok()?;
    Some(Restart::ExecLauncher { launcher, argv })
}

/// Executes the launcher again (returns only on failure).
pub fn exec_launcher(launcher: &Path, argv: &[String]) -> std::io::Error {
    std::process::Command::new(launcher)
        .args(argv)
        .env_remove(ENV_SUPERVISED)
        .exec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(tries: u32) -> Pending {
        Pending {
            version: "99.0.0".into(),
            from_version: build_info::VERSION.into(),
            release_id: Some(1),
            command_id: Some(2),
            tries,
            had_previous: false,
            installed_at_ms: 0,
        }
    }

    #[test]
    fn without_an_update_the_packaged_binary_runs() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::new(dir.path());
        let me = Path::new("/usr/bin/outpost-agent");
        assert_eq!(decide(&slots, me, 3).unwrap(), Step::Exec(me.into()));
    }

    #[test]
    fn a_pending_update_is_supervised_and_its_starts_counted_until_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::new(dir.path());
        slots.write_part(b"#!/bin/sh\n").unwrap();
        slots.stage(pending(0)).unwrap();
        let me = Path::new("/usr/bin/outpost-agent");
        for n in 1..=3 {
            match decide(&slots, me, 3).unwrap() {
                Step::Supervise { binary, pending } => {
                    assert_eq!(binary, slots.current());
                    assert_eq!(pending.tries, n);
                    assert_eq!(slots.pending().unwrap().unwrap().tries, n, "persisted");
                }
                other => panic!("start {n}: {other:?}"),
            }
        }
        let Step::RollBack { code, reason, .. } = decide(&slots, me, 3).unwrap() else {
            panic!("not rolled back after 3 starts")
        };
        assert_eq!(code, codes::CRASHED_AT_START);
        assert!(reason.contains("stopped 3 times"), "{reason}");
    }

    #[test]
    fn a_committed_update_newer_than_the_package_runs_and_an_older_one_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::new(dir.path());
        let me = Path::new("/usr/bin/outpost-agent");
        slots.write_part(b"new").unwrap();
        let p = slots.stage(pending(0)).unwrap();
        slots.commit(&p).unwrap();
        assert_eq!(decide(&slots, me, 3).unwrap(), Step::Exec(slots.current()));

        // The package was upgraded past the installed update: the update goes.
        let mut old = pending(0);
        old.version = "0.0.1".into();
        slots.write_part(b"old").unwrap();
        let p = slots.stage(old).unwrap();
        slots.commit(&p).unwrap();
        assert_eq!(decide(&slots, me, 3).unwrap(), Step::Exec(me.into()));
        assert!(!slots.current().exists());
    }

    #[test]
    fn a_pending_update_whose_binary_vanished_is_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::new(dir.path());
        slots.set_pending(&pending(0)).unwrap();
        let Step::RollBack { code, .. } = decide(&slots, Path::new("/x"), 3).unwrap() else {
            panic!("not rolled back")
        };
        assert_eq!(code, codes::INSTALL);
    }

    #[test]
    fn versions_compare_by_precedence() {
        assert!(newer("0.1.10", "0.1.9"));
        assert!(!newer("1.0.0-rc1", "1.0.0"));
        assert!(!newer("junk", "1.0.0"));
        assert!(newer("1.0.0", "junk"));
    }
}
