//! The versioned wire protocol: JSON messages from agent to portal ([`Envelope`]) and back: commands
//! ([`CommandEnvelope`]) and notices ([`NoticeEnvelope`]).
//!
//! Every message carries the protocol version `v`. A receiver rejects a version newer than its own
//! [`PROTOCOL_VERSION`] with [`ProtocolError::UnsupportedVersion`] instead of misreading it; fields added
//! within a version must be optional (`#[serde(default)]`) so older readers keep working.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::control::{DeviceRef, OutletBinding, PowerAction};
use crate::topics::UpKind;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// Why bytes on a topic are not a message we can act on.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("message speaks protocol version {found}, this build understands up to {PROTOCOL_VERSION}; upgrade this side")]
    UnsupportedVersion { found: u16 },
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("a {found} message arrived on the {topic} topic")]
    WrongTopic {
        found: &'static str,
        topic: &'static str,
    },
}

#[derive(Deserialize)]
struct VersionOnly {
    v: u16,
}

fn check_version(bytes: &[u8]) -> Result<(), ProtocolError> {
    let VersionOnly { v } = serde_json::from_slice(bytes)?;
    if v > PROTOCOL_VERSION || v == 0 {
        return Err(ProtocolError::UnsupportedVersion { found: v });
    }
    Ok(())
}

/// One message from an agent, as published on `agents/<id>/up/<kind>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u16,
    /// The agent's outbox sequence number: strictly increasing for the life of an agent identity, so the
    /// portal can drop duplicates (a re-sent message whose PUBACK was lost) and count gaps. `0` only on the
    /// last-will presence, which the broker sends on the agent's behalf.
    pub seq: u64,
    /// The data epoch the agent was in when it queued the message; the portal drops reports from an
    /// epoch older than the one a cleanup started.
    pub epoch: u64,
    /// When the agent queued the message, Unix milliseconds.
    pub at_ms: i64,
    pub msg: AgentMessage,
}

impl Envelope {
    pub fn new(seq: u64, epoch: u64, at_ms: i64, msg: AgentMessage) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            seq,
            epoch,
            at_ms,
            msg,
        }
    }

    /// The offline presence the broker publishes if the agent vanishes without saying goodbye.
    pub fn last_will() -> Self {
        Self::new(0, 0, 0, AgentMessage::Presence(Presence { online: false }))
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serializing these plain structs cannot fail: no maps with non-string keys, no foreign types.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a message received on a topic of kind `kind`, checking version and that the body fits the topic.
    pub fn decode(kind: UpKind, bytes: &[u8]) -> Result<Self, ProtocolError> {
        check_version(bytes)?;
        let env: Envelope = serde_json::from_slice(bytes)?;
        if env.msg.kind() != kind {
            return Err(ProtocolError::WrongTopic {
                found: env.msg.kind().as_str(),
                topic: kind.as_str(),
            });
        }
        Ok(env)
    }
}

/// What an agent says; each variant has its own topic ([`AgentMessage::kind`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    /// Sent on every connect: who and what the agent is (it re-sends its state; nothing relies on retained messages).
    Hello(Hello),
    /// Online when connected (retained), offline as the last will and on a clean shutdown.
    Presence(Presence),
    Heartbeat(Heartbeat),
    /// The result of one command.
    Ack(Ack),
    /// Data the agent gathered (discovery results and the like), keyed by `kind`.
    Report(Report),
}

impl AgentMessage {
    pub fn kind(&self) -> UpKind {
        match self {
            AgentMessage::Hello(_) => UpKind::Hello,
            AgentMessage::Presence(_) => UpKind::Presence,
            AgentMessage::Heartbeat(_) => UpKind::Heartbeat,
            AgentMessage::Ack(_) => UpKind::Ack,
            AgentMessage::Report(_) => UpKind::Report,
        }
    }

    /// Whether the message is data of the epoch it is stamped with, which the portal drops once a cleanup
    /// has ended that epoch: every report (inventory snapshot and delta, `blocks`, `location`, any other
    /// kind) except the `update` report, which is about the agent's software and applied whatever the
    /// epoch. A hello, a presence, a heartbeat and an acknowledgement are not (the portal applies them in
    /// any epoch; only the hello's interface list is epoch-checked, and the hello is sent again on connect).
    /// A cleanup removes exactly these from the agent's outbox.
    pub fn is_epoch_data(&self) -> bool {
        match self {
            AgentMessage::Report(r) => r.kind != crate::update::UPDATE_REPORT,
            AgentMessage::Hello(_)
            | AgentMessage::Presence(_)
            | AgentMessage::Heartbeat(_)
            | AgentMessage::Ack(_) => false,
        }
    }
}

/// Where the agent runs, as the portal shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// An Outpost box (small dedicated Linux machine).
    Box,
    /// A Linux/ARM router (OpenWrt class).
    Router,
    /// Any other Linux host.
    Linux,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Box => "box",
            Platform::Router => "router",
            Platform::Linux => "linux",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `s` is not one of `box`, `router`, `linux`.
#[derive(Debug, thiserror::Error)]
#[error("unknown platform {0:?}: expected box, router or linux")]
pub struct UnknownPlatform(pub String);

impl FromStr for Platform {
    type Err = UnknownPlatform;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "box" => Ok(Platform::Box),
            "router" => Ok(Platform::Router),
            "linux" => Ok(Platform::Linux),
            other => Err(UnknownPlatform(other.to_owned())),
        }
    }
}

/// One network interface of the agent's host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Addresses in CIDR notation (`192.0.2.7/24`).
    #[serde(default)]
    pub addrs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The agent's software version.
    pub version: String,
    pub platform: Platform,
    pub hostname: String,
    /// The name the agent knows itself by (the portal's name wins on a conflict).
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_ip: Option<String>,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// What this agent can do (`"cleanup"`, `"rename"`, `"discovery"`, `"block"`, `"power"`, …).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The LAN segments the agent watches (its configured interfaces), so the portal knows which devices
    /// sit on a tagged VLAN before anyone tries to block one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<Segment>,
    /// The agent has a usable GeoIP City database and reports its own `location`; without one (or from an
    /// agent older than GeoIP) the portal looks the agent's public address up itself.
    #[serde(default)]
    pub geoip: bool,
    /// The Rust target triple the agent's binary was built for (`aarch64-unknown-linux-musl`): the releases
    /// it can install. `None` from agents older than updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The agent can install updates: it runs under `outpost-agent launch`, which restarts it into a new
    /// binary and rolls back a bad one.
    #[serde(default)]
    pub updatable: bool,
    /// The version of the portal's settings document the agent runs with (`settings::SettingsDoc`);
    /// `None`: only its local file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings_version: Option<u64>,
}

/// One LAN segment the agent watches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub interface: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// A tagged VLAN sub-interface: a box cannot block devices on it.
    #[serde(default)]
    pub tagged: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub online: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub uptime_s: u64,
    /// Messages waiting in the outbox when this heartbeat was queued.
    pub outbox_depth: u64,
    /// Messages the bounded outbox has had to drop since the agent was activated.
    pub outbox_dropped: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub command_id: u64,
    pub outcome: Outcome,
    /// What a successful command has to say (a power command's state read back, a block's record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}

/// How a command ended on the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Done,
    Failed {
        message: String,
        /// A stable machine-readable code (`control::codes`) where the failure has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
    },
}

impl Outcome {
    /// A failure without a code.
    pub fn failed(message: impl Into<String>) -> Self {
        Outcome::Failed {
            message: message.into(),
            code: None,
        }
    }

    /// A failure with one of the `control::codes`.
    pub fn failed_with(code: &str, message: impl Into<String>) -> Self {
        Outcome::Failed {
            message: message.into(),
            code: Some(code.to_owned()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub kind: String,
    pub body: serde_json::Value,
}

/// One command from the portal, published on `agents/<id>/down/cmd`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandEnvelope {
    pub v: u16,
    /// Unique per agent; the agent runs each id at most once, also across restarts.
    pub id: u64,
    pub cmd: Command,
}

impl CommandEnvelope {
    pub fn new(id: u64, cmd: Command) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            id,
            cmd,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        check_version(bytes)?;
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// What the portal asks an agent to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Take this name.
    Rename { name: String },
    /// Wipe local data except identity and name, and stamp everything after with `epoch`.
    Cleanup { epoch: u64 },
    /// Do nothing but acknowledge (round-trip checks and benchmarks).
    Ping,
    /// Pause the device's internet access until unblocked (also across agent restarts).
    Block {
        device: DeviceRef,
        /// The device's IPv4 address as the portal last saw it, used when the agent has not seen it itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ipv4: Option<std::net::Ipv4Addr>,
    },
    /// Give the device its internet access back.
    Unblock { device: DeviceRef },
    /// Switch the device's power through the outlet it is bound to.
    Power {
        device: DeviceRef,
        action: PowerAction,
        binding: OutletBinding,
    },
    /// Install release `release_id` (`version`, for logs and the reports): download its signed release
    /// file and binary from the portal, verify them against the agent's own release keys, swap the binary
    /// and restart into it (`update::UpdateReport`s tell each step). Acknowledged when installed, just
    /// before the restart, or failed with a `release::ReleaseError::kind` or an `update::codes` code.
    Update { release_id: i64, version: String },
    /// Apply this settings document (`settings::SettingsDoc` as JSON: `{version, settings}`): validate it,
    /// apply it over the local file (pinned settings kept), persist it. Acknowledged with a
    /// `settings::SettingsApplied`, or failed with code `invalid-settings` and a message naming the field.
    ApplySettings { doc: serde_json::Value },
    /// Restart the agent (through its launcher, or its service manager).
    Restart,
    /// The agent's most recent log lines (an in-memory ring; no secrets are ever logged), at most `lines`.
    Logs { lines: u32 },
    /// A health snapshot (`diagnostics::Health`).
    Health,
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Rename { .. } => "rename",
            Command::Cleanup { .. } => "cleanup",
            Command::Ping => "ping",
            Command::Block { .. } => "block",
            Command::Unblock { .. } => "unblock",
            Command::Power { .. } => "power",
            Command::Update { .. } => "update",
            Command::ApplySettings { .. } => "apply_settings",
            Command::Restart => "restart",
            Command::Logs { .. } => "logs",
            Command::Health => "health",
        }
    }
}

/// Something the portal tells an agent on `agents/<id>/down/notice`: not a command (no id, nothing to
/// acknowledge, nothing recorded); QoS 1, never retained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeEnvelope {
    pub v: u16,
    pub notice: PortalNotice,
}

impl NoticeEnvelope {
    pub fn new(notice: PortalNotice) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            notice,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        check_version(bytes)?;
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// What a notice says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PortalNotice {
    /// The answer to every hello: the address the portal sees the agent connect from (`None` when the
    /// portal cannot tell).
    Welcome {
        #[serde(default)]
        public_ip: Option<String>,
    },
    /// The portal saw the agent come back running `version` after installing it: the agent commits the
    /// update (the launcher stops counting and the previous binary is no longer restored).
    UpdateHealthy { version: String },
    /// A notice type this build does not know (from a newer portal): ignored.
    #[serde(other)]
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> AgentMessage {
        AgentMessage::Hello(Hello {
            version: "0.1.0".into(),
            platform: Platform::Box,
            hostname: "site-gw".into(),
            name: "site-gw".into(),
            mac: Some("02:00:00:00:00:01".into()),
            local_ip: Some("192.0.2.7".into()),
            interfaces: vec![Interface {
                name: "lan0".into(),
                mac: Some("02:00:00:00:00:01".into()),
                addrs: vec!["192.0.2.7/24".into()],
            }],
            capabilities: vec!["cleanup".into()],
            segments: vec![Segment {
                interface: "lan0.20".into(),
                vlan: Some(20),
                tagged: true,
            }],
            geoip: true,
            target: Some("aarch64-unknown-linux-musl".into()),
            updatable: true,
            settings_version: Some(4),
        })
    }

    #[test]
    fn only_reports_other_than_update_are_epoch_data() {
        let report = |kind: &str| {
            AgentMessage::Report(Report {
                kind: kind.into(),
                body: serde_json::json!({}),
            })
        };
        for kind in [
            crate::inventory::SNAPSHOT_KIND,
            crate::inventory::DELTA_KIND,
            crate::control::BLOCKS_REPORT,
            crate::geoip::LOCATION_REPORT,
            "anything-else",
        ] {
            assert!(report(kind).is_epoch_data(), "{kind}");
        }
        assert!(!report(crate::update::UPDATE_REPORT).is_epoch_data());
        assert!(!hello().is_epoch_data());
        assert!(!AgentMessage::Presence(Presence { online: true }).is_epoch_data());
        assert!(!AgentMessage::Heartbeat(Heartbeat {
            uptime_s: 1,
            outbox_depth: 0,
            outbox_dropped: 0
        })
        .is_epoch_data());
        assert!(!AgentMessage::Ack(Ack {
            command_id: 1,
            outcome: Outcome::Done,
            result: None
        })
        .is_epoch_data());
    }

    #[test]
    fn every_agent_message_round_trips_on_its_topic() {
        let msgs = [
            hello(),
            AgentMessage::Presence(Presence { online: true }),
            AgentMessage::Heartbeat(Heartbeat {
                uptime_s: 5,
                outbox_depth: 2,
                outbox_dropped: 0,
            }),
            AgentMessage::Ack(Ack {
                command_id: 9,
                outcome: Outcome::failed_with("timeout", "x"),
                result: Some(serde_json::json!({"state": "on"})),
            }),
            AgentMessage::Report(Report {
                kind: "devices".into(),
                body: serde_json::json!([1, 2]),
            }),
        ];
        for (i, msg) in msgs.into_iter().enumerate() {
            let env = Envelope::new(i as u64 + 1, 3, 1_700_000_000_000, msg);
            let back = Envelope::decode(env.msg.kind(), &env.encode()).unwrap();
            assert_eq!(back, env);
        }
    }

    #[test]
    fn a_message_on_the_wrong_topic_is_refused() {
        let env = Envelope::new(1, 0, 0, hello());
        let err = Envelope::decode(UpKind::Ack, &env.encode()).unwrap_err();
        assert!(matches!(
            err,
            ProtocolError::WrongTopic {
                found: "hello",
                topic: "ack"
            }
        ));
    }

    #[test]
    fn a_newer_version_is_refused_not_misread() {
        let mut env = Envelope::new(1, 0, 0, AgentMessage::Presence(Presence { online: true }));
        env.v = PROTOCOL_VERSION + 1;
        let err = Envelope::decode(UpKind::Presence, &env.encode()).unwrap_err();
        assert!(
            matches!(err, ProtocolError::UnsupportedVersion { found } if found == PROTOCOL_VERSION + 1)
        );
        let cmd = br#"{"v":2,"id":1,"cmd":{"type":"ping"}}"#;
        assert!(matches!(
            CommandEnvelope::decode(cmd),
            Err(ProtocolError::UnsupportedVersion { found: 2 })
        ));
    }

    #[test]
    fn unknown_optional_fields_are_ignored_and_missing_ones_default() {
        let raw = br#"{"v":1,"seq":4,"epoch":0,"at_ms":1,"future":true,
            "msg":{"type":"hello","version":"9","platform":"router","hostname":"h","name":"n"}}"#;
        let env = Envelope::decode(UpKind::Hello, raw).unwrap();
        let AgentMessage::Hello(h) = env.msg else {
            panic!("not a hello")
        };
        assert_eq!(h.platform, Platform::Router);
        assert!(h.interfaces.is_empty() && h.mac.is_none());
        assert!(!h.geoip, "an agent older than GeoIP has no database");
    }

    #[test]
    fn notices_round_trip_and_unknown_ones_are_ignored() {
        for notice in [
            PortalNotice::Welcome {
                public_ip: Some("203.0.113.7".into()),
            },
            PortalNotice::Welcome { public_ip: None },
        ] {
            let env = NoticeEnvelope::new(notice);
            assert_eq!(NoticeEnvelope::decode(&env.encode()).unwrap(), env);
        }
        let bare = NoticeEnvelope::decode(br#"{"v":1,"notice":{"type":"welcome"}}"#).unwrap();
        assert_eq!(bare.notice, PortalNotice::Welcome { public_ip: None });
        let newer =
            NoticeEnvelope::decode(br#"{"v":1,"notice":{"type":"maintenance","at":5}}"#).unwrap();
        assert_eq!(newer.notice, PortalNotice::Unknown);
        assert!(matches!(
            NoticeEnvelope::decode(br#"{"v":2,"notice":{"type":"welcome"}}"#),
            Err(ProtocolError::UnsupportedVersion { found: 2 })
        ));
    }

    #[test]
    fn a_location_report_travels_as_a_report() {
        use crate::geoip::{LocationReport, LocationSource, LOCATION_REPORT};
        let body = LocationReport::failure(
            LocationSource::Agent,
            Some("192.168.1.2".parse().unwrap()),
            crate::geoip::codes::PRIVATE_ADDRESS,
            "private",
        );
        let env = Envelope::new(
            5,
            1,
            2,
            AgentMessage::Report(Report {
                kind: LOCATION_REPORT.into(),
                body: serde_json::to_value(&body).unwrap(),
            }),
        );
        let back = Envelope::decode(UpKind::Report, &env.encode()).unwrap();
        let AgentMessage::Report(r) = back.msg else {
            panic!("not a report")
        };
        assert_eq!(r.kind, "location");
        assert_eq!(
            serde_json::from_value::<LocationReport>(r.body).unwrap(),
            body
        );
    }

    #[test]
    fn commands_round_trip() {
        for cmd in [
            Command::Rename {
                name: "Shop".into(),
            },
            Command::Cleanup { epoch: 2 },
            Command::Ping,
            Command::Block {
                device: "aa:bb:cc:dd:ee:01@10".parse().unwrap(),
                ipv4: Some([192, 0, 2, 9].into()),
            },
            Command::Unblock {
                device: "aa:bb:cc:dd:ee:01".parse().unwrap(),
            },
            Command::Power {
                device: "aa:bb:cc:dd:ee:01".parse().unwrap(),
                action: PowerAction::Cycle,
                binding: OutletBinding {
                    outlet: crate::control::Outlet::WakeOnLan { secureon: None },
                    cycle_delay_secs: 2,
                },
            },
        ] {
            let env = CommandEnvelope::new(7, cmd);
            assert_eq!(CommandEnvelope::decode(&env.encode()).unwrap(), env);
        }
    }

    #[test]
    fn an_old_failure_without_a_code_still_reads() {
        let raw = br#"{"v":1,"seq":4,"epoch":0,"at_ms":1,
            "msg":{"type":"ack","command_id":3,"outcome":{"status":"failed","message":"no"}}}"#;
        let env = Envelope::decode(UpKind::Ack, raw).unwrap();
        assert_eq!(
            env.msg,
            AgentMessage::Ack(Ack {
                command_id: 3,
                outcome: Outcome::failed("no"),
                result: None
            })
        );
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(
            CommandEnvelope::decode(b"not json"),
            Err(ProtocolError::Malformed(_))
        ));
    }

    #[test]
    fn last_will_is_an_unsequenced_offline_presence() {
        let will = Envelope::last_will();
        assert_eq!(will.seq, 0);
        assert_eq!(will.msg, AgentMessage::Presence(Presence { online: false }));
    }

    #[test]
    fn platform_parses_its_own_names() {
        for p in [Platform::Box, Platform::Router, Platform::Linux] {
            assert_eq!(p.as_str().parse::<Platform>().unwrap(), p);
        }
        assert!("toaster".parse::<Platform>().is_err());
    }
}
