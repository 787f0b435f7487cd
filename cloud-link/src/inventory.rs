//! The device inventory as both sides see it: a device record, the events of its life, and the two report
//! bodies that carry them from agent to portal (snapshot parts and deltas).
//!
//! A device is keyed by (VLAN, MAC): a device that changes its IP stays one device, and the same MAC on two
//! VLAN segments is two records. The agent sends a full snapshot on every connect and after a cleanup, split
//! into parts of at most [`PART_DEVICES`] devices; the portal replaces its copy once every part of one
//! snapshot has arrived. Between snapshots it sends deltas: the devices that changed, whole, plus the
//! events. Both go through the outbox (nothing is lost while offline) stamped with the data epoch.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::protocol::Report;

/// [`Report::kind`] of one part of a full snapshot ([`SnapshotPart`]).
pub const SNAPSHOT_KIND: &str = "devices.snapshot";
/// [`Report::kind`] of a delta ([`Delta`]).
pub const DELTA_KIND: &str = "devices.delta";
/// Devices (or events) per message: about 500 bytes each keeps a message well under 100 kB.
pub const PART_DEVICES: usize = 100;

/// Where a name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NameSource {
    /// DHCP client hostname (option 12).
    Dhcp,
    /// mDNS hostname (`*.local`).
    Mdns,
    /// Reverse DNS (PTR) from the LAN's resolver.
    Dns,
    /// UPnP device description (`friendlyName`).
    Upnp,
}

impl NameSource {
    pub fn as_str(self) -> &'static str {
        match self {
            NameSource::Dhcp => "dhcp",
            NameSource::Mdns => "mdns",
            NameSource::Dns => "dns",
            NameSource::Upnp => "upnp",
        }
    }
}

impl fmt::Display for NameSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name a device goes by, with where it came from (one per source).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeviceName {
    pub name: String,
    pub source: NameSource,
}

/// A service a device announces (mDNS service instance, or a UPnP device type).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Service {
    /// `_http._tcp` for mDNS, the UPnP `deviceType` URN for SSDP.
    pub kind: String,
    /// The mDNS instance name (`Living Room TV`) or the UPnP friendly name.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `mdns` or `upnp`.
    pub source: String,
}

/// What UPnP says a device is (from its description document).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpnpInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
}

/// One device on one segment, as the agent knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// Lower-case `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// The VLAN id of the segment it was seen on, when the interface is configured with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// The agent's interface it was seen on.
    pub interface: String,
    /// The IPv4 address it answers on now (last seen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Addr>,
    /// IPv6 addresses heard from the device on its link (at most 8, the most recent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv6: Vec<Ipv6Addr>,
    /// At most one name per source, sorted by source.
    #[serde(default)]
    pub names: Vec<DeviceName>,
    /// The IEEE registry's organization for the MAC, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// The MAC is locally administered (randomized phones, VMs, containers): the vendor says nothing.
    #[serde(default)]
    pub locally_administered: bool,
    /// DHCP vendor class (option 60), e.g. `android-dhcp-13`, `MSFT 5.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp_vendor_class: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Service>,
    /// Model hints from mDNS TXT records (`model`, `md`, `ty`, …), key → value.
    #[serde(default, skip_serializing_if = "ModelHints::is_empty")]
    pub model_hints: ModelHints,
    /// Boxed: most devices have none, and a 5,000-device inventory should not carry 5,000 empty ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upnp: Option<Box<UpnpInfo>>,
    /// Unix milliseconds.
    pub first_seen_ms: i64,
    /// Unix milliseconds of the last sign of life (reply, probe answer, traffic heard).
    pub last_seen_ms: i64,
    pub online: bool,
    /// Round-trip time of the last answered ARP probe or sweep request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arp_rtt_ms: Option<f64>,
    /// Round-trip time of the last answered ICMP echo; `None` when it never answered ICMP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_rtt_ms: Option<f64>,
}

/// Model hints, key → value, sorted by key; a JSON object on the wire. A sorted list rather than a
/// `BTreeMap`: a map allocates a node of room for eleven pairs for the one or two a device has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelHints(Vec<(String, String)>);

impl ModelHints {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    /// Sets `key`; `true` when that changed anything.
    pub fn insert(&mut self, key: String, value: String) -> bool {
        match self.0.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) if self.0[i].1 == value => false,
            Ok(i) => {
                self.0[i].1 = value;
                true
            }
            Err(i) => {
                self.0.insert(i, (key, value));
                true
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl FromIterator<(String, String)> for ModelHints {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        let mut hints = ModelHints::default();
        for (k, v) in iter {
            hints.insert(k, v);
        }
        hints
    }
}

impl IntoIterator for ModelHints {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl std::ops::Index<&str> for ModelHints {
    type Output = str;
    /// Panics when `key` is missing, like a map's index.
    fn index(&self, key: &str) -> &str {
        match self.get(key) {
            Some(v) => v,
            None => panic!("no model hint {key:?}"),
        }
    }
}

impl Serialize for ModelHints {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de> Deserialize<'de> for ModelHints {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, String>::deserialize(deserializer)?;
        Ok(ModelHints(map.into_iter().collect()))
    }
}

impl Device {
    /// A device at its first sign of life: its key (MAC, VLAN), where it was seen, its address, online;
    /// nothing else known yet (names, vendor, services and round trips are filled in as they come).
    pub fn first_seen(
        mac: impl Into<String>,
        vlan: Option<u16>,
        interface: impl Into<String>,
        ipv4: Option<Ipv4Addr>,
        at_ms: i64,
    ) -> Self {
        Self {
            mac: mac.into(),
            vlan,
            interface: interface.into(),
            ipv4,
            ipv6: Vec::new(),
            names: Vec::new(),
            vendor: None,
            locally_administered: false,
            dhcp_vendor_class: None,
            services: Vec::new(),
            model_hints: ModelHints::default(),
            upnp: None,
            first_seen_ms: at_ms,
            last_seen_ms: at_ms,
            online: true,
            arp_rtt_ms: None,
            icmp_rtt_ms: None,
        }
    }

    /// The name shown first: DHCP, then mDNS, then UPnP, then DNS.
    pub fn display_name(&self) -> Option<&str> {
        [
            NameSource::Dhcp,
            NameSource::Mdns,
            NameSource::Upnp,
            NameSource::Dns,
        ]
        .iter()
        .find_map(|s| self.name_from(*s))
    }

    pub fn name_from(&self, source: NameSource) -> Option<&str> {
        self.names
            .iter()
            .find(|n| n.source == source)
            .map(|n| n.name.as_str())
    }
}

/// What happened to a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// First seen.
    New,
    Online,
    /// Missed the configured number of probes in a row.
    Offline,
    IpChanged {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<Ipv4Addr>,
        to: Ipv4Addr,
    },
    /// The name from `source` changed (or appeared).
    NameChanged {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        to: String,
        source: NameSource,
    },
}

impl EventKind {
    /// The `type` tag (`new`, `online`, `offline`, `ip_changed`, `name_changed`).
    pub fn as_str(&self) -> &'static str {
        match self {
            EventKind::New => "new",
            EventKind::Online => "online",
            EventKind::Offline => "offline",
            EventKind::IpChanged { .. } => "ip_changed",
            EventKind::NameChanged { .. } => "name_changed",
        }
    }

    /// Every `type` tag, for validating filters.
    pub const ALL: [&'static str; 5] = ["new", "online", "offline", "ip_changed", "name_changed"];
}

/// One event of one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceEvent {
    /// Unix milliseconds on the agent.
    pub at_ms: i64,
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    pub interface: String,
    /// The device's IPv4 address when it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Addr>,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// One part of a full snapshot: the portal replaces its devices once parts `0..parts` of `snapshot` arrived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotPart {
    /// Identifies the snapshot (the agent uses the time it started it, Unix ms; unique per agent).
    pub snapshot: u64,
    pub part: u32,
    /// At least 1 (an empty inventory is one empty part).
    pub parts: u32,
    pub devices: Vec<Device>,
}

/// Devices that changed (whole records) and events, since the previous delta or snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    #[serde(default)]
    pub devices: Vec<Device>,
    #[serde(default)]
    pub events: Vec<DeviceEvent>,
}

/// An inventory report, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum InventoryReport {
    Snapshot(SnapshotPart),
    Delta(Delta),
}

/// A report of an inventory kind whose body does not fit it.
#[derive(Debug, thiserror::Error)]
#[error("malformed {kind} report: {source}")]
pub struct InventoryError {
    pub kind: String,
    #[source]
    pub source: serde_json::Error,
}

impl InventoryReport {
    /// `Ok(None)` for reports of other kinds.
    pub fn from_report(report: &Report) -> Result<Option<Self>, InventoryError> {
        let err = |source| InventoryError {
            kind: report.kind.clone(),
            source,
        };
        match report.kind.as_str() {
            SNAPSHOT_KIND => serde_json::from_value(report.body.clone())
                .map(|p| Some(Self::Snapshot(p)))
                .map_err(err),
            DELTA_KIND => serde_json::from_value(report.body.clone())
                .map(|d| Some(Self::Delta(d)))
                .map_err(err),
            _ => Ok(None),
        }
    }
}

/// Splits a full inventory into snapshot reports of at most [`PART_DEVICES`] devices (one empty part when
/// there are none).
pub fn snapshot_reports(snapshot: u64, devices: &[Device]) -> Vec<Report> {
    let chunks: Vec<&[Device]> = if devices.is_empty() {
        vec![&[]]
    } else {
        devices.chunks(PART_DEVICES).collect()
    };
    let parts = chunks.len() as u32;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| snapshot_part(snapshot, i as u32, parts, chunk.to_vec()))
        .collect()
}

/// One snapshot report (for building a big snapshot a part at a time).
pub fn snapshot_part(snapshot: u64, part: u32, parts: u32, devices: Vec<Device>) -> Report {
    Report {
        kind: SNAPSHOT_KIND.to_owned(),
        body: serde_json::to_value(SnapshotPart {
            snapshot,
            part,
            parts,
            devices,
        })
        .unwrap_or_default(),
    }
}

/// Splits changes into delta reports of at most [`PART_DEVICES`] devices and as many events (none when
/// there is nothing to say).
pub fn delta_reports(devices: &[Device], events: &[DeviceEvent]) -> Vec<Report> {
    let n = devices
        .len()
        .div_ceil(PART_DEVICES)
        .max(events.len().div_ceil(PART_DEVICES));
    (0..n)
        .map(|i| {
            let slice = |len: usize| (i * PART_DEVICES).min(len)..((i + 1) * PART_DEVICES).min(len);
            Report {
                kind: DELTA_KIND.to_owned(),
                body: serde_json::to_value(Delta {
                    devices: devices[slice(devices.len())].to_vec(),
                    events: events[slice(events.len())].to_vec(),
                })
                .unwrap_or_default(),
            }
        })
        .collect()
}

/// Normalizes a MAC to lower-case colon form; `None` when it is not six hex octets.
pub fn normalize_mac(mac: &str) -> Option<String> {
    let octets: Vec<&str> = mac.split([':', '-']).collect();
    if octets.len() != 6
        || octets
            .iter()
            .any(|o| o.len() != 2 || !o.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return None;
    }
    Some(octets.join(":").to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn device(i: u32) -> Device {
        Device {
            names: vec![
                DeviceName {
                    name: "tv.lan".into(),
                    source: NameSource::Dns,
                },
                DeviceName {
                    name: "kitchen-tv".into(),
                    source: NameSource::Dhcp,
                },
            ],
            vendor: Some("Google, Inc.".into()),
            dhcp_vendor_class: Some("android-dhcp-13".into()),
            services: vec![Service {
                kind: "_googlecast._tcp".into(),
                name: "Kitchen TV".into(),
                port: Some(8009),
                source: "mdns".into(),
            }],
            model_hints: [("md".to_owned(), "Chromecast".to_owned())]
                .into_iter()
                .collect(),
            last_seen_ms: 2,
            arp_rtt_ms: Some(0.4),
            ..Device::first_seen(
                format!("00:1a:11:00:{:02x}:{:02x}", i / 256, i % 256),
                Some(10),
                "lan0",
                Some(Ipv4Addr::from(0x0a00_0000 + i)),
                1,
            )
        }
    }

    #[test]
    fn snapshots_split_into_numbered_parts_that_round_trip() {
        let devices: Vec<Device> = (0..250).map(device).collect();
        let reports = snapshot_reports(77, &devices);
        assert_eq!(reports.len(), 3);
        let mut back = Vec::new();
        for (i, r) in reports.iter().enumerate() {
            let Some(InventoryReport::Snapshot(p)) = InventoryReport::from_report(r).unwrap()
            else {
                panic!("not a snapshot part")
            };
            assert_eq!((p.snapshot, p.part, p.parts), (77, i as u32, 3));
            back.extend(p.devices);
        }
        assert_eq!(back, devices);
        let empty = snapshot_reports(78, &[]);
        assert_eq!(empty.len(), 1);
        assert_eq!(empty[0].body["parts"], 1);
    }

    #[test]
    fn deltas_split_devices_and_events_alike() {
        let devices: Vec<Device> = (0..150).map(device).collect();
        let events: Vec<DeviceEvent> = (0..30)
            .map(|i| DeviceEvent {
                at_ms: i,
                mac: devices[0].mac.clone(),
                vlan: None,
                interface: "lan0".into(),
                ipv4: None,
                kind: EventKind::Online,
            })
            .collect();
        let reports = delta_reports(&devices, &events);
        assert_eq!(reports.len(), 2);
        let parsed: Vec<Delta> = reports
            .iter()
            .map(|r| match InventoryReport::from_report(r).unwrap() {
                Some(InventoryReport::Delta(d)) => d,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!((parsed[0].devices.len(), parsed[0].events.len()), (100, 30));
        assert_eq!((parsed[1].devices.len(), parsed[1].events.len()), (50, 0));
        assert!(delta_reports(&[], &[]).is_empty());
    }

    #[test]
    fn events_serialize_flat_with_their_type() {
        let e = DeviceEvent {
            at_ms: 5,
            mac: "00:1a:11:00:00:01".into(),
            vlan: Some(20),
            interface: "lan1".into(),
            ipv4: Some(Ipv4Addr::new(10, 0, 0, 9)),
            kind: EventKind::IpChanged {
                from: Some(Ipv4Addr::new(10, 0, 0, 8)),
                to: Ipv4Addr::new(10, 0, 0, 9),
            },
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"at_ms": 5, "mac": "00:1a:11:00:00:01", "vlan": 20, "interface": "lan1",
                "ipv4": "10.0.0.9", "type": "ip_changed", "from": "10.0.0.8", "to": "10.0.0.9"})
        );
        assert_eq!(serde_json::from_value::<DeviceEvent>(v).unwrap(), e);
        for kind in EventKind::ALL {
            assert!(EventKind::ALL.contains(&kind));
        }
    }

    #[test]
    fn other_report_kinds_are_not_inventory_and_bad_bodies_are_errors() {
        let other = Report {
            kind: "interfaces".into(),
            body: serde_json::json!([]),
        };
        assert!(InventoryReport::from_report(&other).unwrap().is_none());
        let bad = Report {
            kind: SNAPSHOT_KIND.into(),
            body: serde_json::json!({"devices": 3}),
        };
        let err = InventoryReport::from_report(&bad).unwrap_err();
        assert!(err.to_string().contains("devices.snapshot"), "{err}");
    }

    #[test]
    fn display_name_prefers_dhcp_then_mdns() {
        let d = device(1);
        assert_eq!(d.display_name(), Some("kitchen-tv"));
        assert_eq!(d.name_from(NameSource::Dns), Some("tv.lan"));
        assert_eq!(d.name_from(NameSource::Mdns), None);
    }

    #[test]
    fn model_hints_are_a_sorted_object() {
        let mut h: ModelHints = [
            ("ty".to_owned(), "B".to_owned()),
            ("md".to_owned(), "A".to_owned()),
        ]
        .into_iter()
        .collect();
        assert!(!h.insert("md".into(), "A".into()));
        assert!(h.insert("am".into(), "C".into()));
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, r#"{"am":"C","md":"A","ty":"B"}"#);
        assert_eq!(serde_json::from_str::<ModelHints>(&json).unwrap(), h);
        assert_eq!((h.get("ty"), h.get("zz"), h.len()), (Some("B"), None, 3));
        assert_eq!(&h["md"], "A");
    }

    #[test]
    fn macs_normalize() {
        assert_eq!(
            normalize_mac("00-1A-11-AB-cd-EF").as_deref(),
            Some("00:1a:11:ab:cd:ef")
        );
        for bad in ["", "00:1a:11:ab:cd", "00:1a:11:ab:cd:eg", "001a.11ab.cdef"] {
            assert_eq!(normalize_mac(bad), None, "{bad}");
        }
    }
}
