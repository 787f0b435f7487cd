//! The link's side of the portal's settings and diagnostics: a settings document laid over the local file,
//! stored and applied (live, or by restarting), and the health snapshot.

use outpost_cloud_link::protocol::Outcome;
use outpost_cloud_link::session::split_host_port;
use outpost_cloud_link::settings::{SettingsApplied, SettingsDoc};
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tracing::{info, warn};

use super::{Link, LinkError, INVALID_SETTINGS, SETTINGS_STORE, STALE_SETTINGS};
use crate::diagnostics;
use crate::settings::needs_restart;

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
        let restart = needs_restart(&self.config, &config);
        if config.heartbeat != self.config.heartbeat {
            self.heartbeat = interval_at(Instant::now() + config.heartbeat, config.heartbeat);
            self.heartbeat
                .set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        if config.discovery.report_interval != self.config.discovery.report_interval {
            let every = config.discovery.report_interval;
            self.report = interval_at(Instant::now() + every, every);
            self.report
                .set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        self.outbox.set_max_bytes(config.outbox_max_bytes);
        info!(version = doc.version, restart, pinned = ?pinned, "settings from the portal applied");
        self.config = config;
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
