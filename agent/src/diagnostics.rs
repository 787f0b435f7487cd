//! What the agent tells about itself when the portal asks from its page: the health snapshot
//! (`outpost_cloud_link::diagnostics::Health`) and the recent log lines from the in-memory ring
//! (`crate::logging::ring`).

use std::time::Duration;

use outpost_cloud_link::diagnostics::{Health, LogLines, MAX_LOG_LINES};

use crate::build_info;
use crate::discovery::engine::Shared;
use crate::hostinfo;

/// The process's resident memory in bytes, from `/proc/self/status` (`VmRSS`), or 0 when it cannot be read.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_vm_rss(&s))
        .unwrap_or(0)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// What the link knows that goes into the snapshot.
#[derive(Debug, Clone, Copy)]
pub struct LinkFacts<'a> {
    pub uptime: Duration,
    pub outbox_depth: u64,
    pub outbox_dropped: u64,
    pub settings_version: Option<u64>,
    /// The broker's host and port (to find the interface that reaches it).
    pub broker: (&'a str, u16),
}

/// The health snapshot now.
pub fn health(link: LinkFacts<'_>, discovery: Option<&Shared>) -> Health {
    let facts = hostinfo::gather(link.broker.0, link.broker.1);
    Health {
        version: build_info::VERSION.to_owned(),
        target: build_info::TARGET.to_owned(),
        uptime_s: link.uptime.as_secs(),
        rss_bytes: rss_bytes(),
        outbox_depth: link.outbox_depth,
        outbox_dropped: link.outbox_dropped,
        interfaces: facts.interfaces,
        last_scans: discovery.map(Shared::scan_times).unwrap_or_default(),
        devices: discovery.map(|d| d.len() as u64),
        settings_version: link.settings_version,
    }
}

/// The last `lines` log lines (at most [`MAX_LOG_LINES`]).
pub fn log_lines(lines: u32) -> LogLines {
    let n = lines.clamp(1, MAX_LOG_LINES) as usize;
    let (lines, omitted) = crate::logging::ring().last(n);
    LogLines { lines, omitted }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_from_proc_status() {
        assert_eq!(
            parse_vm_rss("Name:\tx\nVmRSS:\t   5120 kB\nVmSwap: 0 kB\n"),
            Some(5120 * 1024)
        );
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        // This process has some memory.
        assert!(rss_bytes() > 1024 * 1024);
    }

    #[test]
    fn the_snapshot_tells_version_target_uptime_and_outbox() {
        let h = health(
            LinkFacts {
                uptime: Duration::from_secs(42),
                outbox_depth: 3,
                outbox_dropped: 1,
                settings_version: Some(2),
                broker: ("127.0.0.1", 9),
            },
            None,
        );
        assert_eq!(h.version, build_info::VERSION);
        assert_eq!(h.target, build_info::TARGET);
        assert_eq!((h.uptime_s, h.outbox_depth, h.outbox_dropped), (42, 3, 1));
        assert_eq!(h.devices, None);
        assert!(h.rss_bytes > 0);
        assert!(
            !h.interfaces.is_empty(),
            "no interfaces: {:?}",
            h.interfaces
        );
    }
}
