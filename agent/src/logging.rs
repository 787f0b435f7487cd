//! Log setup: tracing to stderr as text or JSON, level from `OUTPOST_LOG` (default `info` for the daemon, `warn`
//! for the other commands), and the `log` bridge so rumqttc's and sled's `log` records arrive too. No
//! timestamps under journald (it stamps lines itself).
//!
//! The same lines also go to an in-memory ring ([`LogRing`], the last [`RING_LINES`] lines, at most
//! [`RING_BYTES`]) that the portal can fetch from the agent's page (`logs` command). Nothing secret is logged;
//! as a second guard, strings registered with [`LogRing::redact`] (the broker secret) never enter the ring.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Lines the ring keeps.
pub const RING_LINES: usize = 1000;
/// Bytes the ring keeps, at most.
pub const RING_BYTES: usize = 256 * 1024;
/// Longest line kept (longer ones are cut).
const MAX_LINE: usize = 2048;

#[derive(Debug, Default)]
struct Ring {
    lines: VecDeque<String>,
    bytes: usize,
    /// Lines pushed out of the ring so far.
    dropped: u64,
    redact: Vec<String>,
}

/// The recent log lines of this process.
#[derive(Debug, Clone, Default)]
pub struct LogRing(Arc<Mutex<Ring>>);

impl LogRing {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds one line (without its newline), dropping the oldest beyond the limits.
    pub fn push(&self, line: &str) {
        let mut ring = self.lock();
        let mut line = line.trim_end().to_owned();
        for secret in &ring.redact {
            if !secret.is_empty() && line.contains(secret.as_str()) {
                line = line.replace(secret.as_str(), "[redacted]");
            }
        }
        if line.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        ring.bytes += line.len();
        ring.lines.push_back(line);
        while ring.lines.len() > RING_LINES || ring.bytes > RING_BYTES {
            match ring.lines.pop_front() {
                Some(old) => {
                    ring.bytes -= old.len();
                    ring.dropped += 1;
                }
                None => break,
            }
        }
    }

    /// Never lets `secret` into the ring (replaced by `[redacted]`).
    pub fn redact(&self, secret: &str) {
        let mut ring = self.lock();
        if !secret.is_empty() && !ring.redact.iter().any(|s| s == secret) {
            ring.redact.push(secret.to_owned());
        }
    }

    /// The last `n` lines, oldest first, and how many older lines are not returned.
    pub fn last(&self, n: usize) -> (Vec<String>, u64) {
        let ring = self.lock();
        let skip = ring.lines.len().saturating_sub(n);
        let lines = ring.lines.iter().skip(skip).cloned().collect();
        (lines, ring.dropped + skip as u64)
    }
}

/// The process's ring (filled once [`init`] ran).
pub fn ring() -> &'static LogRing {
    static RING: OnceLock<LogRing> = OnceLock::new();
    RING.get_or_init(LogRing::default)
}

/// Writes formatted events into the ring, one line per event line.
#[derive(Debug, Clone)]
pub struct RingWriter(LogRing);

impl Write for RingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for line in String::from_utf8_lossy(buf).lines() {
            if !line.trim().is_empty() {
                self.0.push(line);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogRing {
    type Writer = RingWriter;
    fn make_writer(&'a self) -> Self::Writer {
        RingWriter(self.clone())
    }
}

/// Installs the global subscriber; a second call is a no-op.
pub fn init(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_env("OUTPOST_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(true);
    let stderr = match (format, journald) {
        (LogFormat::Json, _) => stderr.json().boxed(),
        (LogFormat::Text, true) => stderr.without_time().boxed(),
        (LogFormat::Text, false) => stderr.boxed(),
    };
    // The ring always has times (a person reads it in the portal, far from journald) and no colours.
    let ring = tracing_subscriber::fmt::layer()
        .with_writer(ring().clone())
        .with_ansi(false)
        .with_target(true);
    // `try_init` also installs the `log` → tracing bridge (tracing-subscriber's `tracing-log` feature).
    let result = tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(ring)
        .try_init();
    drop(result);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_lines_and_counts_the_rest() {
        let ring = LogRing::default();
        for i in 0..RING_LINES + 5 {
            ring.push(&format!("line {i}"));
        }
        let (lines, omitted) = ring.last(3);
        assert_eq!(
            lines,
            [
                format!("line {}", RING_LINES + 2),
                format!("line {}", RING_LINES + 3),
                format!("line {}", RING_LINES + 4)
            ]
        );
        assert_eq!(omitted, 5 + (RING_LINES as u64 - 3));
    }

    #[test]
    fn the_ring_is_bounded_in_bytes_and_cuts_long_lines() {
        let ring = LogRing::default();
        let long = "x".repeat(10_000);
        for _ in 0..500 {
            ring.push(&long);
        }
        let (lines, _) = ring.last(RING_LINES);
        assert!(lines.iter().all(|l| l.len() <= MAX_LINE + '…'.len_utf8()));
        assert!(lines.iter().map(String::len).sum::<usize>() <= RING_BYTES);
    }

    #[test]
    fn a_registered_secret_never_enters_the_ring() {
        let ring = LogRing::default();
        ring.redact("s3cr3t-value");
        ring.push("connecting with s3cr3t-value to the broker");
        let (lines, _) = ring.last(10);
        assert_eq!(lines, ["connecting with [redacted] to the broker"]);
    }

    #[test]
    fn formatted_events_arrive_in_the_ring_line_by_line() {
        let ring = LogRing::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(ring.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(devices = 3, "inventory loaded");
            tracing::warn!("broker connection lost");
        });
        let (lines, _) = ring.last(10);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].contains("INFO") && lines[0].contains("inventory loaded devices=3"),
            "{lines:?}"
        );
        assert!(lines[1].contains("WARN") && lines[1].contains("broker connection lost"));
    }
}
