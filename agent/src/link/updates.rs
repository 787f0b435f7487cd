//! The link's side of over-the-air updates: an `update` command starts the install in a task of its own
//! (`crate::update::install`), its end is reported and acknowledged and the agent restarts into the new
//! binary; the portal's `UpdateHealthy` notice commits it; the outcome the launcher or a commit left is
//! reported at the next connection.

use outpost_cloud_link::protocol::{AgentMessage, Outcome, Report};
use outpost_cloud_link::update::{codes as update_codes, UpdateReport, UpdateState, UPDATE_REPORT};
use tracing::{debug, error, info, warn};

use super::{Link, LinkError, UpdateDone};
use crate::build_info;
use crate::update::install::{Refusal, Request};
use crate::update::slots::Pending;

impl Link {
    /// An `update` command: refused at once when this agent cannot restart into an update or one is under
    /// way; otherwise the install runs in a task of its own (`update_done`).
    pub(super) fn start_update(
        &mut self,
        command_id: u64,
        release_id: i64,
        version: &str,
    ) -> Result<(), LinkError> {
        let report = |state, code: Option<&str>, reason: Option<String>| UpdateReport {
            release_id: Some(release_id),
            command_id: Some(command_id),
            version: version.to_owned(),
            from_version: build_info::VERSION.to_owned(),
            state,
            reason,
            code: code.map(str::to_owned),
        };
        let busy = if self.updating {
            Some(
                "another update is being installed; send this one again when it has ended"
                    .to_owned(),
            )
        } else {
            match self.installer.slots.pending() {
                Ok(Some(p)) => Some(format!(
                    "version {} is installed and waiting for the portal's confirmation; send this update again when it is committed or rolled back",
                    p.version
                )),
                Ok(None) => None,
                Err(e) => Some(format!("the update files cannot be read: {e}")),
            }
        };
        let refusal = if self.restart.is_none() {
            Some(Refusal::new(
                update_codes::NO_LAUNCHER,
                "this agent was not started by `outpost-agent launch`, so it cannot restart into an update; start the service with the packaged unit (ExecStart=outpost-agent launch -- run ...)",
            ))
        } else {
            busy.map(|m| Refusal::new(update_codes::BUSY, m))
        };
        if let Some(refusal) = refusal {
            warn!(command_id, release_id, version, code = %refusal.code, reason = %refusal.message, "update refused");
            self.queue_update_report(&report(
                UpdateState::Failed,
                Some(&refusal.code),
                Some(refusal.message.clone()),
            ))?;
            return self.finish_update(command_id, Err(refusal));
        }
        info!(command_id, release_id, version, "installing an update");
        self.queue_update_report(&report(UpdateState::Downloading, None, None))?;
        self.updating = true;
        let installer = self.installer.clone();
        let tx = self.update_done_tx.clone();
        let version = version.to_owned();
        tokio::spawn(async move {
            let result = installer
                .install(Request {
                    release_id,
                    command_id,
                    version: &version,
                })
                .await;
            let _ = tx
                .send(UpdateDone {
                    command_id,
                    release_id,
                    version,
                    result,
                })
                .await;
        });
        Ok(())
    }

    /// The install task ended: a refusal is reported and acknowledged as failed (the running version
    /// stays); a staged update is reported, acknowledged, and the agent restarts into it.
    pub(super) fn on_update_done(&mut self, done: UpdateDone) -> Result<(), LinkError> {
        self.updating = false;
        match &done.result {
            Ok(pending) => {
                self.queue_update_report(&pending.report(UpdateState::Installed, None, None))?;
                self.restart_now = true;
            }
            Err(refusal) => {
                warn!(command_id = done.command_id, code = %refusal.code, reason = %refusal.message, "update failed; the running version stays");
                self.queue_update_report(&UpdateReport {
                    release_id: Some(done.release_id),
                    command_id: Some(done.command_id),
                    version: done.version.clone(),
                    from_version: build_info::VERSION.to_owned(),
                    state: UpdateState::Failed,
                    reason: Some(refusal.message.clone()),
                    code: Some(refusal.code.clone()),
                })?;
            }
        }
        self.finish_update(done.command_id, done.result)
    }

    /// Records and acknowledges an update command.
    pub(super) fn finish_update(
        &mut self,
        command_id: u64,
        result: Result<Pending, Refusal>,
    ) -> Result<(), LinkError> {
        let (outcome, result) = match result {
            Ok(p) => (
                Outcome::Done,
                Some(serde_json::json!({ "state": "installed", "version": p.version })),
            ),
            Err(r) => (Outcome::failed_with(&r.code, r.message), None),
        };
        self.finish_command(command_id, outcome, result)
    }

    /// The portal saw this version come back after installing it: commit the update.
    pub(super) fn on_update_healthy(&mut self, version: &str) -> Result<(), LinkError> {
        if version != build_info::VERSION {
            debug!(
                version,
                running = build_info::VERSION,
                "health confirmation for another version ignored"
            );
            return Ok(());
        }
        let pending = match self.installer.slots.pending() {
            Ok(Some(p)) if p.version == version => p,
            Ok(_) => return Ok(()),
            Err(e) => {
                error!(error = %e, "cannot read the pending update to commit it");
                return Ok(());
            }
        };
        match self.installer.slots.commit(&pending) {
            Ok(report) => {
                info!(version, from = %pending.from_version, "update committed");
                self.queue_update_report(&report)?;
                if let Err(e) = self.installer.slots.clear_outcome() {
                    warn!(error = %e, "the update outcome file stays; it is reported again at the next connection");
                }
            }
            Err(e) => {
                error!(error = %e, "committing the update failed; the launcher rolls it back at its deadline")
            }
        }
        Ok(())
    }

    /// How the last update ended, left by the launcher or a commit, once per connection until queued.
    pub(super) fn queue_update_outcome(&mut self) -> Result<(), LinkError> {
        let outcome = match self.installer.slots.outcome() {
            Ok(Some(o)) => o,
            Ok(None) => return Ok(()),
            Err(e) => {
                warn!(error = %e, "the update outcome cannot be read; it is not reported");
                return Ok(());
            }
        };
        if outcome.state == UpdateState::RolledBack {
            warn!(version = %outcome.version, reason = outcome.reason.as_deref().unwrap_or(""), "the last update was rolled back");
        }
        self.queue_update_report(&outcome)?;
        if let Err(e) = self.installer.slots.clear_outcome() {
            warn!(error = %e, "the update outcome file stays; it is reported again at the next connection");
        }
        Ok(())
    }

    pub(super) fn queue_update_report(&mut self, report: &UpdateReport) -> Result<(), LinkError> {
        let body = serde_json::to_value(report).unwrap_or_default();
        self.queue(
            AgentMessage::Report(Report {
                kind: UPDATE_REPORT.to_owned(),
                body,
            }),
            false,
        )
    }
}
