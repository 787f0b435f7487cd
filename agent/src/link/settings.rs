//! The link's side of the portal's settings and diagnostics: a settings document laid over the local file,
//! stored and applied (live, or by restarting), and the health snapshot.

use outpost_cloud_link::protocol::Outcome;
use outpost_cloud_link::session::split_host_port;
use outpost_cloud_link::settings::{SettingsApplied, SettingsDoc};
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tracing::{error, info, warn};

use super::{Link, LinkError, INVALID_SETTINGS, SETTINGS_STORE, STALE_SETTINGS};
use crate::config::Config;
use crate::diagnostics;
use crate::settings::Change;

impl Link {
    /// A settings document from the portal: checked over the local file, stored, the live settings applied
    /// now, the others by restarting. Refused (naming the field) with the configuration unchanged.
    pub(super) fn apply_settings(
        &mut self,
        command_id: u64,
        doc: serde_json::Value,
    ) -> Result<(), LinkError> {
        let refuse = |link: &mut Self, code: &str, message: String| {
            warn!(command_id, code, reason = %message, "settings refused; the configuration stays as it is");
            link.finish_command(command_id, Outcome::failed_with(code, message), None)
        };
        let doc: SettingsDoc = match serde_json::from_value::<SettingsDoc>(doc) {
            Ok(d) => d,
            Err(e) => return refuse(self, INVALID_SETTINGS, format!("document: {e}")),
        };
        if let Some(current) = self.settings_version.filter(|v| *v > doc.version) {
            return refuse(
                self,
                STALE_SETTINGS,
                format!(
                    "version {} is older than the version {current} this agent runs with",
                    doc.version
                ),
            );
        }
        let (config, pinned) = match self.local.with_settings(&doc.settings) {
            Ok(c) => c,
            Err(e) => return refuse(self, INVALID_SETTINGS, e.0),
        };
        if let Err(e) = self.stored_settings.save(&doc) {
            return refuse(
                self,
                SETTINGS_STORE,
                format!("cannot keep the settings: {e}"),
            );
        }
        let restart = self.adopt(config);
        info!(version = doc.version, restart, pinned = ?pinned, "settings from the portal applied");
        self.settings_version = Some(doc.version);
        let applied = SettingsApplied {
            version: doc.version,
            pinned,
            restart,
        };
        self.finish_command(
            command_id,
            Outcome::Done,
            serde_json::to_value(&applied).ok(),
        )?;
        if restart {
            self.restart_now = true;
        }
        Ok(())
    }

    /// Runs with `config` from now on: the live settings change at once; `true` when another one changed,
    /// which takes a restart (the caller sets `restart_now` once the command is acknowledged).
    pub(super) fn adopt(&mut self, config: Config) -> bool {
        let change = Change::between(&self.config, &config);
        if let Some(every) = change.heartbeat {
            self.heartbeat = interval_at(Instant::now() + every, every);
            self.heartbeat
                .set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        if let Some(every) = change.report_interval {
            self.report = interval_at(Instant::now() + every, every);
            self.report
                .set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        if let Some(max) = change.outbox_max_bytes {
            self.outbox.set_max_bytes(max);
        }
        self.config = config;
        change.restart
    }

    /// After a cleanup, which removed the portal's settings document: back to the local file alone. The live
    /// settings go back at once; `true` when another setting differs from the file's, so the agent restarts
    /// (after acknowledging the cleanup) to run with the file alone.
    pub(super) fn settings_after_cleanup(&mut self) -> bool {
        let version = self.settings_version.take();
        match self.local.config() {
            Ok(file) => {
                let restart = self.adopt(file);
                if version.is_some() {
                    info!(previous_version = ?version, restart, "cleanup: the portal's settings removed; running with the local configuration file alone");
                }
                restart
            }
            Err(e) => {
                // The file was valid at start and is held in memory: this should not happen.
                error!(error = %e, "cleanup: the local configuration no longer validates; restarting to read it again");
                true
            }
        }
    }

    /// The health snapshot (`health` command).
    pub(super) fn health(&self) -> serde_json::Value {
        let (host, port) =
            split_host_port(&self.identity.broker).unwrap_or(("127.0.0.1".into(), 9));
        let h = diagnostics::health(
            diagnostics::LinkFacts {
                uptime: self.started.elapsed(),
                outbox_depth: self.outbox.depth(),
                outbox_dropped: self.outbox.dropped(),
                settings_version: self.settings_version,
                broker: (&host, port),
            },
            self.discovery.as_deref(),
        );
        serde_json::to_value(h).unwrap_or_default()
    }
}
