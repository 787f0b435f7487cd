//! systemd integration (`Type=notify`): READY=1, STATUS= lines and watchdog pings; a no-op outside systemd.

use std::time::Duration;

use sd_notify::NotifyState;

/// Talks to systemd's notify socket when there is one.
#[derive(Debug, Clone)]
pub struct Notifier {
    enabled: bool,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC` from the environment. `WATCHDOG_PID`, when set, must be
    /// this process (as `sd_watchdog_enabled(3)` says); the launcher removes it for the agent it
    /// supervises, whose pings then count through `NotifyAccess=all`.
    pub fn from_env() -> Self {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        let usec = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|u| *u > 0);
        let for_me = match std::env::var("WATCHDOG_PID") {
            Ok(pid) => pid.parse::<u32>().ok() == Some(std::process::id()),
            Err(_) => true,
        };
        let watchdog = usec
            .filter(|_| enabled && for_me)
            .map(|u| Duration::from_micros(u / 2));
        Self { enabled, watchdog }
    }

    /// A notifier that never says anything (tests, or outside systemd).
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            watchdog: None,
        }
    }

    /// How often to ping the watchdog: half of `WATCHDOG_USEC`, when systemd asked for pings.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(false, states) {
            tracing::debug!(error = %e, "systemd notify failed");
        }
    }

    pub fn ready(&self) {
        self.send(&[NotifyState::Ready]);
    }

    pub fn status(&self, text: &str) {
        self.send(&[NotifyState::Status(text)]);
    }

    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_is_silent_and_asks_for_no_pings() {
        let n = Notifier::disabled();
        assert_eq!(n.watchdog_interval(), None);
        n.ready();
        n.status("link up");
        n.watchdog();
    }
}
