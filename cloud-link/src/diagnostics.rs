//! Diagnostics an operator asks an agent for from its page in the portal: the health snapshot
//! ([`Health`], the `result` of a `health` command's acknowledgement) and recent log lines ([`LogLines`], of a
//! `logs` command).

use serde::{Deserialize, Serialize};

use crate::protocol::Interface;

/// Most log lines one `logs` command returns.
pub const MAX_LOG_LINES: u32 = 500;

/// How the agent is doing, at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub version: String,
    /// The build's target triple.
    pub target: String,
    pub uptime_s: u64,
    /// Resident memory of the agent's process, bytes.
    pub rss_bytes: u64,
    pub outbox_depth: u64,
    pub outbox_dropped: u64,
    pub interfaces: Vec<Interface>,
    /// How long the last full sweep of each watched interface took (`None`: none finished yet).
    #[serde(default)]
    pub last_scans: Vec<ScanTime>,
    /// Devices in the inventory (`None` with discovery off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<u64>,
    /// The portal settings version the agent runs with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings_version: Option<u64>,
}

/// The last sweep of one interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanTime {
    pub interface: String,
    pub duration_ms: u64,
    /// When it ended, Unix milliseconds.
    pub at_ms: i64,
}

/// The agent's most recent log lines, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLines {
    pub lines: Vec<String>,
    /// Lines the ring held but did not return (older than the `lines` asked for, or dropped from the ring).
    #[serde(default)]
    pub omitted: u64,
}
