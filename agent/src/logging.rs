//! Log setup: tracing to stderr as text or JSON, level from `OUTPOST_LOG` (default `info` for the daemon, `warn` for the other commands), and the `log` bridge
//! so rumqttc's and sled's `log` records arrive too. No timestamps under journald (it stamps lines itself).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber; a second call is a no-op.
pub fn init(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_env("OUTPOST_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(true);
    // `try_init` also installs the `log` → tracing bridge (tracing-subscriber's `tracing-log` feature).
    let result = match (format, journald) {
        (LogFormat::Json, _) => builder.json().try_init(),
        (LogFormat::Text, true) => builder.without_time().try_init(),
        (LogFormat::Text, false) => builder.try_init(),
    };
    drop(result);
}
