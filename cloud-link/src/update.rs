//! Over-the-air agent updates, shared by both sides: the states an update goes through and the `update`
//! report the agent sends at each step.
//!
//! ```text
//!  portal: Command::Update { release_id, version } ──▶ agent: downloading ──▶ installed (restarts into it)
//!     ▲                                                      │ refused / failed │
//!     │                                                      ▼                  ▼ new version says hello
//!     │                                                    failed        portal: Notice::UpdateHealthy
//!     │                                                                         │            │ no confirmation
//!     └──────────── update reports (each step, queued in the outbox) ◀── committed   rolled_back
//! ```
//! The agent's launcher (`outpost-agent launch`) rolls back when the new version crashes at start too many
//! times or is not confirmed healthy within the deadline; the restored version reports `rolled_back` at its
//! next connection. Every report goes through the outbox, so none is lost across the restart.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The `Report::kind` of an [`UpdateReport`].
pub const UPDATE_REPORT: &str = "update";

/// Where an update stands. `Pending` is the portal's own (queued, not yet reported by the agent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateState {
    Pending,
    Downloading,
    /// Verified, swapped in, restarting into it: waiting for the portal's health confirmation.
    Installed,
    Committed,
    RolledBack,
    Failed,
}

impl UpdateState {
    pub const ALL: [UpdateState; 6] = [
        UpdateState::Pending,
        UpdateState::Downloading,
        UpdateState::Installed,
        UpdateState::Committed,
        UpdateState::RolledBack,
        UpdateState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UpdateState::Pending => "pending",
            UpdateState::Downloading => "downloading",
            UpdateState::Installed => "installed",
            UpdateState::Committed => "committed",
            UpdateState::RolledBack => "rolled_back",
            UpdateState::Failed => "failed",
        }
    }

    /// The update is over (well or not).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            UpdateState::Committed | UpdateState::RolledBack | UpdateState::Failed
        )
    }

    /// The update is over and did not leave the new version running.
    pub fn is_failure(self) -> bool {
        matches!(self, UpdateState::RolledBack | UpdateState::Failed)
    }
}

impl fmt::Display for UpdateState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `s` is not an update state.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown update state {0:?}: expected pending, downloading, installed, committed, rolled_back or failed")]
pub struct UnknownUpdateState(pub String);

impl FromStr for UpdateState {
    type Err = UnknownUpdateState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UpdateState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownUpdateState(s.to_owned()))
    }
}

/// One step of an update, as the agent reports it (`Report { kind: "update", body }`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateReport {
    /// The portal's release id (from the command), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_id: Option<i64>,
    /// The id of the `update` command this step belongs to, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<u64>,
    /// The version being installed (or that was rolled back).
    pub version: String,
    /// The version that was running before.
    pub from_version: String,
    pub state: UpdateState,
    /// Why it failed or rolled back, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A stable code of the failure (`release::ReleaseError::kind`, `crashed-at-start`, `not-healthy`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// Failure codes of updates that are not release refusals.
pub mod codes {
    /// The agent was not started by `outpost-agent launch`, so it cannot restart into a new binary.
    pub const NO_LAUNCHER: &str = "no-launcher";
    /// The download from the portal failed.
    pub const DOWNLOAD: &str = "download";
    /// Writing or swapping the binary failed (disk full, read-only state directory).
    pub const INSTALL: &str = "install";
    /// The new version exited before the portal confirmed it, too many times.
    pub const CRASHED_AT_START: &str = "crashed-at-start";
    /// The new version ran but the portal did not confirm it healthy within the deadline.
    pub const NOT_HEALTHY: &str = "not-healthy";
    /// Another update is already in progress on the agent.
    pub const BUSY: &str = "busy";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_names_and_json() {
        for st in UpdateState::ALL {
            assert_eq!(st.as_str().parse::<UpdateState>(), Ok(st));
            let json = serde_json::to_string(&st).unwrap();
            assert_eq!(json, format!("\"{}\"", st.as_str()));
        }
        assert!("rolled-back".parse::<UpdateState>().is_err());
    }

    #[test]
    fn only_committed_rolled_back_and_failed_are_final() {
        let finals: Vec<_> = UpdateState::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .collect();
        assert_eq!(
            finals,
            [
                UpdateState::Committed,
                UpdateState::RolledBack,
                UpdateState::Failed
            ]
        );
        assert!(!UpdateState::Committed.is_failure());
        assert!(UpdateState::RolledBack.is_failure());
    }

    #[test]
    fn a_report_without_optional_fields_parses() {
        let r: UpdateReport = serde_json::from_str(
            r#"{"version":"1.2.0","from_version":"1.1.0","state":"committed"}"#,
        )
        .unwrap();
        assert_eq!(r.state, UpdateState::Committed);
        assert_eq!(r.release_id, None);
    }
}
