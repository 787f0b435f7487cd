//! The agent's settings as the portal manages them: one versioned document ([`SettingsDoc`]) with a JSON
//! Schema ([`schema`], with the `schema` feature), checked the same way on both sides ([`Settings::validate`]).
//!
//! Every field is optional: a field the document leaves out keeps the value of the agent's local file
//! (`agent.toml`), and a field the local file pins (`pinned = ["interfaces", "discovery.rate_pps"]`) is never
//! changed by the portal. The agent applies a document on top of its local file, checks the result with its
//! own configuration rules, persists it, and acknowledges the version it applied ([`SettingsApplied`]).
//!
//! The limits here are those of the agent's `agent.toml` (a test in the agent checks both agree).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::protocol::Platform;

/// Which settings an agent may take from the portal, by path (what `pinned` names).
pub const PATHS: [&str; 19] = [
    "platform",
    "interfaces",
    "heartbeat_secs",
    "outbox_max_bytes",
    "discovery.enabled",
    "discovery.sweep_interval_secs",
    "discovery.rate_pps",
    "discovery.retries",
    "discovery.probe_interval_secs",
    "discovery.offline_after_missed",
    "discovery.mdns",
    "discovery.ssdp",
    "discovery.ssdp_interval_secs",
    "discovery.reverse_dns",
    "discovery.report_interval_secs",
    "blocking.repeat_secs",
    "blocking.restore_replies",
    "power.timeout_secs",
    "power.retries",
];

/// The limits both sides check.
pub mod limits {
    /// Smallest `heartbeat_secs`.
    pub const HEARTBEAT_MIN_SECS: f64 = 0.05;
    /// Smallest `outbox_max_bytes`.
    pub const OUTBOX_MIN_BYTES: u64 = 16 * 1024;
    pub const SWEEP_INTERVAL_MIN_SECS: f64 = 0.5;
    pub const RATE_PPS_MAX: u32 = 1_000_000;
    pub const RETRIES_MAX: u32 = 10;
    pub const PROBE_INTERVAL_MIN_SECS: f64 = 0.1;
    pub const OFFLINE_AFTER_MISSED_MAX: u32 = 100;
    pub const SSDP_INTERVAL_MIN_SECS: f64 = 0.5;
    pub const REPORT_INTERVAL_MIN_SECS: f64 = 0.05;
    pub const REPEAT_MIN_SECS: f64 = 0.1;
    pub const RESTORE_REPLIES_MAX: u32 = 100;
    pub const POWER_TIMEOUT_MIN_SECS: f64 = 0.05;
    pub const POWER_RETRIES_MAX: u32 = 10;
    /// At most this many interfaces.
    pub const INTERFACES_MAX: usize = 64;
}

/// One version of an agent's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SettingsDoc {
    /// Increases with every change in the portal; the agent acknowledges the version it applied.
    pub version: u64,
    pub settings: Settings,
}

/// The settings themselves; a field left out keeps the agent's local value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where the agent runs: `box` (ARP pausing), `router` (nftables), `linux` (no blocking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// The interfaces the agent watches, with their VLAN labels; an empty list: none. Not set: the agent's
    /// file decides (without `interfaces` there, the interface of the default route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<Vec<InterfaceSetting>>,
    /// Seconds between heartbeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_secs: Option<f64>,
    /// The on-disk outbox's size limit in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_max_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<DiscoverySettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocking: Option<BlockingSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<PowerSettings>,
}

/// One watched interface (a LAN segment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct InterfaceSetting {
    /// The interface's name on the agent's host (`eth0`, `br-lan`, `eth0.20`).
    pub name: String,
    /// The VLAN id of this segment (1-4094).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// A tagged VLAN sub-interface of a trunk port (needs `vlan`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tagged: bool,
    /// What to sweep instead of the interface's own network: a CIDR of at most /16, or a range `A-B`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    /// The segment's IPv4 gateway (for blocking on a box).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
}

/// Discovery: scan rate and schedule, liveness thresholds, names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DiscoverySettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Seconds between full ARP sweeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep_interval_secs: Option<f64>,
    /// ARP requests per second during a sweep; 0: automatic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_pps: Option<u32>,
    /// Extra sweep rounds for addresses that did not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Seconds between liveness probes of known devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_interval_secs: Option<f64>,
    /// Unanswered probes in a row before a device is offline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_after_missed: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mdns: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssdp: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssdp_interval_secs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverse_dns: Option<bool>,
    /// Seconds between reports of inventory changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_interval_secs: Option<f64>,
}

/// Blocking refresh.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct BlockingSettings {
    /// Box: seconds between repeated ARP pausing replies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_secs: Option<f64>,
    /// Box: true ARP replies sent to each side when a block ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_replies: Option<u32>,
}

/// Power control timing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PowerSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
}

/// A setting out of its range, named by its path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct SettingsError {
    /// The setting's path (`discovery.sweep_interval_secs`, `interfaces[2].vlan`).
    pub field: String,
    pub problem: String,
}

fn err(field: impl Into<String>, problem: impl Into<String>) -> SettingsError {
    SettingsError {
        field: field.into(),
        problem: problem.into(),
    }
}

fn secs(field: &str, v: Option<f64>, min: f64) -> Result<(), SettingsError> {
    match v {
        Some(v) if !v.is_finite() || v < min => Err(err(
            field,
            format!("{v} is not a number of seconds of at least {min}"),
        )),
        _ => Ok(()),
    }
}

fn at_most(field: &str, v: Option<u32>, min: u32, max: u32) -> Result<(), SettingsError> {
    match v {
        Some(v) if v < min || v > max => {
            Err(err(field, format!("{v} is not within {min}..={max}")))
        }
        _ => Ok(()),
    }
}

impl Settings {
    /// Checks every field against its range. Whether an interface exists is the agent's to say.
    pub fn validate(&self) -> Result<(), SettingsError> {
        use limits::*;
        secs("heartbeat_secs", self.heartbeat_secs, HEARTBEAT_MIN_SECS)?;
        if let Some(b) = self.outbox_max_bytes {
            if b < OUTBOX_MIN_BYTES {
                return Err(err(
                    "outbox_max_bytes",
                    format!("{b} is less than {OUTBOX_MIN_BYTES} bytes"),
                ));
            }
        }
        if let Some(list) = &self.interfaces {
            if list.len() > INTERFACES_MAX {
                return Err(err(
                    "interfaces",
                    format!("{} interfaces: at most {INTERFACES_MAX}", list.len()),
                ));
            }
            for (i, iface) in list.iter().enumerate() {
                let field = |f: &str| format!("interfaces[{i}].{f}");
                let name_ok = !iface.name.is_empty()
                    && iface.name.len() <= 15
                    && !iface.name.contains(['/', ' ', '\0']);
                if !name_ok {
                    return Err(err(
                        field("name"),
                        format!(
                            "{:?} is not an interface name (1-15 characters, no / or spaces)",
                            iface.name
                        ),
                    ));
                }
                if let Some(v) = iface.vlan {
                    if !(1..=4094).contains(&v) {
                        return Err(err(field("vlan"), format!("{v} is not a VLAN id (1-4094)")));
                    }
                }
                if iface.tagged && iface.vlan.is_none() {
                    return Err(err(field("tagged"), "a tagged interface needs its vlan"));
                }
                if let Some(j) = list[..i].iter().position(|o| o.name == iface.name) {
                    return Err(err(
                        field("name"),
                        format!("{:?} is listed twice (also interfaces[{j}])", iface.name),
                    ));
                }
                if let Some(v) = iface.vlan {
                    if let Some(j) = list[..i].iter().position(|o| o.vlan == Some(v)) {
                        return Err(err(
                            field("vlan"),
                            format!("vlan {v} is also interfaces[{j}]'s: each VLAN is one segment"),
                        ));
                    }
                }
            }
        }
        if let Some(d) = &self.discovery {
            secs(
                "discovery.sweep_interval_secs",
                d.sweep_interval_secs,
                SWEEP_INTERVAL_MIN_SECS,
            )?;
            at_most("discovery.rate_pps", d.rate_pps, 0, RATE_PPS_MAX)?;
            at_most("discovery.retries", d.retries, 0, RETRIES_MAX)?;
            secs(
                "discovery.probe_interval_secs",
                d.probe_interval_secs,
                PROBE_INTERVAL_MIN_SECS,
            )?;
            at_most(
                "discovery.offline_after_missed",
                d.offline_after_missed,
                1,
                OFFLINE_AFTER_MISSED_MAX,
            )?;
            secs(
                "discovery.ssdp_interval_secs",
                d.ssdp_interval_secs,
                SSDP_INTERVAL_MIN_SECS,
            )?;
            secs(
                "discovery.report_interval_secs",
                d.report_interval_secs,
                REPORT_INTERVAL_MIN_SECS,
            )?;
        }
        if let Some(b) = &self.blocking {
            secs("blocking.repeat_secs", b.repeat_secs, REPEAT_MIN_SECS)?;
            at_most(
                "blocking.restore_replies",
                b.restore_replies,
                1,
                RESTORE_REPLIES_MAX,
            )?;
        }
        if let Some(p) = &self.power {
            secs("power.timeout_secs", p.timeout_secs, POWER_TIMEOUT_MIN_SECS)?;
            at_most("power.retries", p.retries, 0, POWER_RETRIES_MAX)?;
        }
        Ok(())
    }

    /// The paths of the settings this document sets.
    pub fn paths(&self) -> Vec<&'static str> {
        let Ok(serde_json::Value::Object(top)) = serde_json::to_value(self) else {
            return Vec::new();
        };
        PATHS
            .iter()
            .copied()
            .filter(|p| match p.split_once('.') {
                None => top.contains_key(*p),
                Some((table, key)) => top
                    .get(table)
                    .and_then(|t| t.as_object())
                    .is_some_and(|t| t.contains_key(key)),
            })
            .collect()
    }
}

impl SettingsDoc {
    /// Parses and checks a document (JSON); the error names the field.
    pub fn parse(bytes: &[u8]) -> Result<SettingsDoc, SettingsError> {
        let doc: SettingsDoc = serde_json::from_slice(bytes).map_err(|e| {
            err(
                "document",
                format!("{e} (see the settings schema for the fields and their types)"),
            )
        })?;
        doc.settings.validate()?;
        Ok(doc)
    }
}

/// What the agent says when it applied a document (the `result` of the command's acknowledgement).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsApplied {
    pub version: u64,
    /// Settings the document sets that the agent's local file pins: kept at their local values.
    #[serde(default)]
    pub pinned: Vec<String>,
    /// Settings that take effect only after a restart (the agent restarts by itself under its launcher).
    #[serde(default)]
    pub restart: bool,
}

/// The JSON Schema of [`SettingsDoc`].
#[cfg(feature = "schema")]
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(SettingsDoc)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<SettingsDoc, SettingsError> {
        SettingsDoc::parse(json.as_bytes())
    }

    #[test]
    fn a_full_document_round_trips_and_names_its_paths() {
        let doc = parse(
            r#"{"version": 3, "settings": {
                "platform": "router",
                "interfaces": [{"name": "eth0", "vlan": 1}, {"name": "eth0.20", "vlan": 20, "tagged": true}],
                "heartbeat_secs": 15, "outbox_max_bytes": 1048576,
                "discovery": {"sweep_interval_secs": 120, "rate_pps": 500, "offline_after_missed": 4},
                "blocking": {"repeat_secs": 1.5}
            }}"#,
        )
        .unwrap();
        assert_eq!(doc.version, 3);
        let back = parse(&serde_json::to_string(&doc).unwrap()).unwrap();
        assert_eq!(back, doc);
        assert_eq!(
            doc.settings.paths(),
            [
                "platform",
                "interfaces",
                "heartbeat_secs",
                "outbox_max_bytes",
                "discovery.sweep_interval_secs",
                "discovery.rate_pps",
                "discovery.offline_after_missed",
                "blocking.repeat_secs"
            ]
        );
    }

    #[test]
    fn each_bad_value_is_refused_naming_its_field() {
        for (settings, field) in [
            (r#"{"heartbeat_secs": 0}"#, "heartbeat_secs"),
            (r#"{"outbox_max_bytes": 10}"#, "outbox_max_bytes"),
            (
                r#"{"discovery": {"sweep_interval_secs": -1}}"#,
                "discovery.sweep_interval_secs",
            ),
            (
                r#"{"discovery": {"rate_pps": 2000000}}"#,
                "discovery.rate_pps",
            ),
            (
                r#"{"discovery": {"offline_after_missed": 0}}"#,
                "discovery.offline_after_missed",
            ),
            (
                r#"{"blocking": {"restore_replies": 0}}"#,
                "blocking.restore_replies",
            ),
            (r#"{"power": {"retries": 11}}"#, "power.retries"),
            (
                r#"{"interfaces": [{"name": "eth0", "vlan": 5000}]}"#,
                "interfaces[0].vlan",
            ),
            (
                r#"{"interfaces": [{"name": "eth0.2", "tagged": true}]}"#,
                "interfaces[0].tagged",
            ),
            (
                r#"{"interfaces": [{"name": "a", "vlan": 2}, {"name": "b", "vlan": 2}]}"#,
                "interfaces[1].vlan",
            ),
            (
                r#"{"interfaces": [{"name": "a"}, {"name": "a"}]}"#,
                "interfaces[1].name",
            ),
            (r#"{"interfaces": [{"name": ""}]}"#, "interfaces[0].name"),
        ] {
            let e = parse(&format!(r#"{{"version": 1, "settings": {settings}}}"#)).unwrap_err();
            assert_eq!(e.field, field, "{settings}: {e}");
        }
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_refused_with_the_name() {
        let e = parse(r#"{"version": 1, "settings": {"heartbeat": 5}}"#).unwrap_err();
        assert!(e.problem.contains("unknown field `heartbeat`"), "{e}");
        let e = parse(r#"{"version": 1, "settings": {"platform": "toaster"}}"#).unwrap_err();
        assert!(e.problem.contains("toaster"), "{e}");
    }

    #[test]
    fn every_path_is_a_field_of_the_document() {
        let all: Settings = serde_json::from_value(serde_json::json!({
            "platform": "box", "interfaces": [], "heartbeat_secs": 1.0, "outbox_max_bytes": 20000,
            "discovery": {"enabled": true, "sweep_interval_secs": 1.0, "rate_pps": 1, "retries": 1,
                "probe_interval_secs": 1.0, "offline_after_missed": 1, "mdns": true, "ssdp": true,
                "ssdp_interval_secs": 1.0, "reverse_dns": true, "report_interval_secs": 1.0},
            "blocking": {"repeat_secs": 1.0, "restore_replies": 1},
            "power": {"timeout_secs": 1.0, "retries": 1}
        }))
        .unwrap();
        assert_eq!(all.paths(), PATHS);
    }
}
