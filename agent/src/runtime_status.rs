//! `runtime.json` (what the running daemon is doing) and the `status` report built from it and `identity.json`.
//!
//! The daemon owns the sled database while it runs, so `status` reads this file instead; it is rewritten
//! atomically (temporary file + rename) whenever a field changes.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::identity::Identity;
use crate::state_dir::{atomic_write, StateDir, StateDirError};

/// The agent's lifecycle state as the daemon sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    Active,
    /// Deactivated or expired in the portal: no broker connection, data kept, status polled.
    Disabled,
}

/// Whether the broker session is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    Up,
    Down,
}

/// The contents of `runtime.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    pub state: AgentState,
    pub link: LinkState,
    pub outbox_depth: u64,
    pub outbox_dropped: u64,
    pub name: String,
    pub pid: u32,
    /// The running binary's version (an installed update's, under `launch`).
    #[serde(default)]
    pub version: String,
    pub updated_at: DateTime<Utc>,
}

impl Runtime {
    pub fn read(path: &Path) -> Option<Self> {
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The same, ignoring the timestamp.
    fn same_as(&self, other: &Self) -> bool {
        Self {
            updated_at: other.updated_at,
            ..self.clone()
        } == *other
    }
}

/// Keeps `runtime.json` in step with the daemon: [`RuntimeFile::update`] rewrites it only when something changed.
#[derive(Debug)]
pub struct RuntimeFile {
    path: PathBuf,
    current: Runtime,
    written: Option<Runtime>,
}

impl RuntimeFile {
    pub fn new(path: PathBuf, name: String) -> Self {
        Self {
            path,
            current: Runtime {
                state: AgentState::Active,
                link: LinkState::Down,
                outbox_depth: 0,
                outbox_dropped: 0,
                name,
                pid: std::process::id(),
                version: crate::build_info::VERSION.to_owned(),
                updated_at: Utc::now(),
            },
            written: None,
        }
    }

    pub fn current(&self) -> &Runtime {
        &self.current
    }

    /// Applies `change`, then writes the file if anything differs from what was last written.
    pub fn update(&mut self, change: impl FnOnce(&mut Runtime)) -> Result<(), StateDirError> {
        change(&mut self.current);
        if self
            .written
            .as_ref()
            .is_some_and(|w| w.same_as(&self.current))
        {
            return Ok(());
        }
        self.current.updated_at = Utc::now();
        let bytes = serde_json::to_vec_pretty(&self.current).unwrap_or_default();
        // Atomic for readers; no fsync: the file describes a running process and is rewritten often.
        atomic_write(&self.path, &bytes, 0o644, false)?;
        self.written = Some(self.current.clone());
        Ok(())
    }
}

/// What `status` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    /// `unprovisioned | deleted | active | disabled`.
    pub state: &'static str,
    pub agent_id: Option<String>,
    pub name: Option<String>,
    /// `up | down`; up only while the daemon runs and says so.
    pub link: &'static str,
    pub outbox_depth: Option<u64>,
    pub outbox_dropped: Option<u64>,
    pub portal: Option<String>,
    pub broker: Option<String>,
    /// Whether the daemon that wrote `runtime.json` is alive.
    pub running: bool,
    /// The version of the running daemon (`None` when it is not running).
    pub version: Option<String>,
}

/// Whether process `pid` exists (signal 0 probes without sending anything).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// Builds the report. `alive` says whether a pid runs; `read_outbox` opens the database for
/// (depth, dropped) when no daemon holds it.
pub fn status_report(
    dir: &StateDir,
    identity: Option<&Identity>,
    alive: impl Fn(u32) -> bool,
    read_outbox: impl FnOnce() -> Option<(u64, u64)>,
) -> StatusReport {
    let Some(id) = identity else {
        let state = if dir.is_deleted() {
            "deleted"
        } else {
            "unprovisioned"
        };
        return StatusReport {
            state,
            agent_id: None,
            name: None,
            link: "down",
            outbox_depth: None,
            outbox_dropped: None,
            portal: None,
            broker: None,
            running: false,
            version: None,
        };
    };
    let runtime = Runtime::read(&dir.runtime());
    let running = runtime.as_ref().is_some_and(|r| alive(r.pid));
    let state = match runtime.as_ref().map(|r| r.state) {
        Some(AgentState::Disabled) => "disabled",
        _ => "active",
    };
    let link = match &runtime {
        Some(r) if running && r.link == LinkState::Up => "up",
        _ => "down",
    };
    let (depth, dropped) = match (&runtime, running) {
        (Some(r), true) => (Some(r.outbox_depth), Some(r.outbox_dropped)),
        _ => match read_outbox() {
            Some((d, x)) => (Some(d), Some(x)),
            None => (
                runtime.as_ref().map(|r| r.outbox_depth),
                runtime.as_ref().map(|r| r.outbox_dropped),
            ),
        },
    };
    StatusReport {
        state,
        agent_id: Some(id.agent_id.to_string()),
        name: Some(id.name.clone()),
        link,
        outbox_depth: depth,
        outbox_dropped: dropped,
        portal: Some(id.portal.clone()),
        broker: Some(id.broker.clone()),
        running,
        version: runtime
            .as_ref()
            .filter(|r| running && !r.version.is_empty())
            .map(|r| r.version.clone()),
    }
}

impl StatusReport {
    /// A few aligned lines for people.
    pub fn human(&self) -> String {
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
        let num = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |n| n.to_string());
        let mut lines = vec![("state", self.state.to_owned())];
        match self.state {
            "unprovisioned" => lines.push((
                "next",
                "outpost-agent activate CODE --portal https://HOST:PORT".to_owned(),
            )),
            "deleted" => lines.push((
                "next",
                "deleted in the portal; activate again with a new code".to_owned(),
            )),
            _ => {
                lines.push(("agent id", dash(&self.agent_id)));
                lines.push(("name", dash(&self.name)));
                lines.push(("version", dash(&self.version)));
                lines.push((
                    "link",
                    format!(
                        "{}{}",
                        self.link,
                        if self.running {
                            ""
                        } else {
                            " (daemon not running)"
                        }
                    ),
                ));
                lines.push((
                    "outbox",
                    format!(
                        "{} queued, {} dropped",
                        num(self.outbox_depth),
                        num(self.outbox_dropped)
                    ),
                ));
                lines.push(("portal", dash(&self.portal)));
                lines.push(("broker", dash(&self.broker)));
            }
        }
        lines
            .into_iter()
            .map(|(k, v)| format!("{:<9} {v}\n", format!("{k}:")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, StateDir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        (tmp, dir)
    }

    fn write_runtime(dir: &StateDir, state: AgentState, link: LinkState) {
        let mut f = RuntimeFile::new(dir.runtime(), "site-gw".into());
        f.update(|r| {
            r.state = state;
            r.link = link;
            r.outbox_depth = 5;
            r.outbox_dropped = 1;
        })
        .unwrap();
    }

    #[test]
    fn unprovisioned_and_deleted() {
        let (_t, dir) = setup();
        let r = status_report(&dir, None, |_| true, || None);
        assert_eq!(r.state, "unprovisioned");
        assert!(r.human().contains("activate CODE"));
        std::fs::write(dir.deleted_marker(), "").unwrap();
        let r = status_report(&dir, None, |_| true, || None);
        assert_eq!(r.state, "deleted");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["state"], "deleted");
        assert!(json["agent_id"].is_null());
    }

    #[test]
    fn active_with_a_running_daemon_reads_the_runtime_file() {
        let (_t, dir) = setup();
        write_runtime(&dir, AgentState::Active, LinkState::Up);
        let id = crate::identity::sample();
        let r = status_report(
            &dir,
            Some(&id),
            |_| true,
            || panic!("the db is the daemon's"),
        );
        assert_eq!((r.state, r.link, r.running), ("active", "up", true));
        assert_eq!((r.outbox_depth, r.outbox_dropped), (Some(5), Some(1)));
        let json = serde_json::to_value(&r).unwrap();
        for key in [
            "state",
            "agent_id",
            "name",
            "link",
            "outbox_depth",
            "outbox_dropped",
            "portal",
            "broker",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert_eq!(json["agent_id"], "ag-test0000001");
        let text = r.human();
        assert!(text.contains("state:    active\n"), "{text}");
        assert!(text.contains("link:     up\n"), "{text}");
    }

    #[test]
    fn a_dead_daemon_means_link_down_and_the_db_is_read() {
        let (_t, dir) = setup();
        write_runtime(&dir, AgentState::Active, LinkState::Up);
        let id = crate::identity::sample();
        let r = status_report(&dir, Some(&id), |_| false, || Some((9, 0)));
        assert_eq!((r.link, r.running), ("down", false));
        assert_eq!(r.outbox_depth, Some(9));
        assert!(r.human().contains("daemon not running"));
    }

    #[test]
    fn disabled_is_reported() {
        let (_t, dir) = setup();
        write_runtime(&dir, AgentState::Disabled, LinkState::Down);
        let id = crate::identity::sample();
        let r = status_report(&dir, Some(&id), |_| true, || None);
        assert_eq!((r.state, r.link), ("disabled", "down"));
    }

    #[test]
    fn the_runtime_file_is_rewritten_only_on_change() {
        let (_t, dir) = setup();
        let mut f = RuntimeFile::new(dir.runtime(), "n".into());
        f.update(|_| {}).unwrap();
        let first = std::fs::metadata(dir.runtime())
            .unwrap()
            .modified()
            .unwrap();
        std::fs::remove_file(dir.runtime()).unwrap();
        f.update(|r| r.outbox_depth = 0).unwrap();
        assert!(!dir.runtime().exists(), "nothing changed, nothing written");
        f.update(|r| r.outbox_depth = 1).unwrap();
        let back = Runtime::read(&dir.runtime()).unwrap();
        assert_eq!(back.outbox_depth, 1);
        assert_eq!(back.pid, std::process::id());
        assert!(
            back.updated_at.timestamp()
                >= first
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs() as i64
                    - 1
        );
    }

    #[test]
    fn our_own_pid_is_alive() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
        assert!(!pid_alive(u32::MAX));
    }
}
