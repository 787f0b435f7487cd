//! The device inventory in memory: what every observation (sweep reply, probe answer, passive ARP/DHCP,
//! mDNS, SSDP, reverse DNS) changes about a device keyed by (VLAN, MAC), the events that follows from it,
//! and the online/offline hysteresis. Pure: times are passed in; the caller persists and reports what
//! [`Inventory::take_changes`] hands out.
//!
//! Liveness: any sign of life makes a device online at once (an `online` event if it was offline); it goes
//! offline only after `offline_after` probes in a row went unanswered.
//!
//! IPv6: the addresses heard for a MAC ([`Inventory::ipv6_seen`]) join its device, at most [`MAX_IPV6`],
//! the most recently heard kept; an address heard from another MAC on the same interface leaves the device
//! that had it. They do not make a device by themselves: an address for a MAC without a device waits
//! (bounded) until the device shows up.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use outpost_cloud_link::inventory::{
    Device, DeviceEvent, DeviceName, EventKind, ModelHints, NameSource, Service, UpnpInfo,
};
use pnet_datalink::MacAddr;

use super::oui;

/// A device's identity: the VLAN of its segment (`None` on an interface without a VLAN id) and its MAC.
pub type Key = (Option<u16>, MacAddr);

/// Which segment an observation comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Segment {
    pub interface: String,
    pub vlan: Option<u16>,
}

/// Facts about a device that arrived by IP address (mDNS, SSDP, reverse DNS) before its MAC was known.
/// Kept per (interface, IP) until a device with that address shows up; bounded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub names: Vec<DeviceName>,
    pub services: Vec<Service>,
    /// `services` is everything this source (`mdns`, `upnp`) announces now: its other services are gone.
    pub services_complete_from: Option<String>,
    pub model_hints: ModelHints,
    pub upnp: Option<UpnpInfo>,
}

impl Facts {
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
            && self.services.is_empty()
            && self.model_hints.is_empty()
            && self.upnp.is_none()
            && self.services_complete_from.is_none()
    }
}

/// Most facts held for addresses with no device yet.
const MAX_PENDING: usize = 4096;
/// Longest name kept.
const MAX_NAME: usize = 253;
/// Most IPv6 addresses kept per device (link-local, stable, temporary ones of a few prefixes); beyond it
/// the least recently heard goes.
pub const MAX_IPV6: usize = 8;
/// Most MACs without a device whose IPv6 addresses are held until it shows up.
const MAX_PENDING_IPV6: usize = 256;

#[derive(Debug, Clone)]
struct Entry {
    /// Boxed: the map's table then holds pointers, not 400-byte records (a 5,000-device table would be
    /// 8,192 slots wide).
    device: Box<Device>,
    missed: u32,
    /// `last_seen_ms` as last reported: a mere sighting is reported again only [`LAST_SEEN_EVERY_MS`]
    /// later, so a LAN of busy devices does not resend its whole inventory after every probe.
    reported_seen_ms: i64,
}

/// How stale a reported `last_seen_ms` may get before a sighting alone makes the device a change.
pub const LAST_SEEN_EVERY_MS: i64 = 5 * 60 * 1000;

/// Everything the agent knows about the devices on its segments.
#[derive(Debug, Default)]
pub struct Inventory {
    devices: HashMap<Key, Entry>,
    /// (interface, IP) → the device last seen with that address there.
    by_ip: HashMap<(String, Ipv4Addr), Key>,
    pending: HashMap<(String, Ipv4Addr), Facts>,
    /// IPv6 addresses heard for MACs that have no device yet.
    pending_ipv6: HashMap<Key, Vec<Ipv6Addr>>,
    dirty: HashSet<Key>,
    events: Vec<DeviceEvent>,
}

pub fn format_mac(mac: MacAddr) -> String {
    let MacAddr(a, b, c, d, e, f) = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

fn parse_mac(text: &str) -> Option<MacAddr> {
    text.parse().ok()
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn clean_name(name: &str) -> Option<String> {
    let name: String = name
        .trim()
        .trim_end_matches('.')
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME)
        .collect();
    (!name.is_empty()).then_some(name)
}

impl Inventory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts from stored devices (all considered unprobed: hysteresis counts restart at zero).
    pub fn load(devices: impl IntoIterator<Item = Device>) -> Self {
        let mut inv = Self::new();
        for device in devices {
            inv.insert_stored(device);
        }
        inv
    }

    /// Adds a stored device as it was (no events; it is not a change).
    pub fn insert_stored(&mut self, device: Device) {
        let Some(mac) = parse_mac(&device.mac) else {
            return;
        };
        let key = (device.vlan, mac);
        if let Some(ip) = device.ipv4 {
            self.by_ip.insert((device.interface.clone(), ip), key);
        }
        self.devices.insert(
            key,
            Entry {
                reported_seen_ms: device.last_seen_ms,
                device: Box::new(device),
                missed: 0,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Every device, sorted by (VLAN, IPv4, MAC).
    pub fn devices(&self) -> Vec<Device> {
        let mut all: Vec<Device> = self.devices.values().map(|e| (*e.device).clone()).collect();
        all.sort_by(|a, b| (a.vlan, a.ipv4, &a.mac).cmp(&(b.vlan, b.ipv4, &b.mac)));
        all
    }

    /// Every key, sorted by (VLAN, MAC): a snapshot is built from these a part at a time.
    pub fn keys(&self) -> Vec<Key> {
        let mut keys: Vec<Key> = self.devices.keys().copied().collect();
        keys.sort_by_key(|(vlan, mac)| (*vlan, mac.octets()));
        keys
    }

    pub fn get(&self, key: &Key) -> Option<&Device> {
        self.devices.get(key).map(|e| &*e.device)
    }

    /// The device last seen with `ip` on `interface`.
    pub fn key_by_ip(&self, interface: &str, ip: Ipv4Addr) -> Option<Key> {
        self.by_ip.get(&(interface.to_owned(), ip)).copied()
    }

    /// Devices on `interface` with an address, for probing.
    pub fn probe_targets(&self, interface: &str) -> Vec<(Ipv4Addr, MacAddr)> {
        let mut targets: Vec<_> = self
            .devices
            .iter()
            .filter(|(_, e)| e.device.interface == interface)
            .filter_map(|((_, mac), e)| e.device.ipv4.map(|ip| (ip, *mac)))
            .collect();
        targets.sort();
        targets
    }

    /// Forgets everything (a cleanup), including changes not taken yet.
    pub fn clear(&mut self) {
        *self = Self::new();
    }

    /// Devices changed and events since the last call.
    pub fn take_changes(&mut self) -> (Vec<Device>, Vec<DeviceEvent>) {
        let mut devices: Vec<Device> = self
            .dirty
            .drain()
            .filter_map(|k| self.devices.get(&k).map(|e| (*e.device).clone()))
            .collect();
        devices.sort_by(|a, b| (a.vlan, a.ipv4, &a.mac).cmp(&(b.vlan, b.ipv4, &b.mac)));
        (devices, std::mem::take(&mut self.events))
    }

    pub fn has_changes(&self) -> bool {
        !self.dirty.is_empty() || !self.events.is_empty()
    }

    fn event(&mut self, at_ms: i64, d: &Device, kind: EventKind) {
        self.events.push(DeviceEvent {
            at_ms,
            mac: d.mac.clone(),
            vlan: d.vlan,
            interface: d.interface.clone(),
            ipv4: d.ipv4,
            kind,
        });
    }

    /// A sign of life from `mac` at `ip` on `seg` (sweep reply, probe answer, ARP or DHCP heard). Creates
    /// the device (`new`), brings it online (`online`), follows an address change (`ip_changed`).
    pub fn seen(
        &mut self,
        seg: &Segment,
        mac: MacAddr,
        ip: Option<Ipv4Addr>,
        arp_rtt: Option<Duration>,
        at_ms: i64,
    ) -> Key {
        let key = (seg.vlan, mac);
        let mut events = Vec::new();
        let entry = self.devices.entry(key).or_insert_with(|| {
            let device = Device {
                ipv6: self.pending_ipv6.remove(&key).unwrap_or_default(),
                vendor: oui::vendor(mac).map(str::to_owned),
                locally_administered: oui::is_locally_administered(mac),
                ..Device::first_seen(format_mac(mac), seg.vlan, seg.interface.clone(), ip, at_ms)
            };
            events.push(EventKind::New);
            Entry {
                device: Box::new(device),
                missed: 0,
                reported_seen_ms: at_ms,
            }
        });
        let d = &mut entry.device;
        entry.missed = 0;
        d.last_seen_ms = d.last_seen_ms.max(at_ms);
        let mut changed = !events.is_empty();
        if d.interface != seg.interface {
            d.interface = seg.interface.clone();
            changed = true;
        }
        if !d.online {
            d.online = true;
            events.push(EventKind::Online);
        }
        let mut moved_from = None;
        if let Some(ip) = ip {
            if d.ipv4 != Some(ip) {
                if !events.contains(&EventKind::New) {
                    events.push(EventKind::IpChanged {
                        from: d.ipv4,
                        to: ip,
                    });
                }
                moved_from = d.ipv4.replace(ip);
            }
        }
        if let Some(rtt) = arp_rtt {
            d.arp_rtt_ms = Some(ms(rtt));
        }
        changed |= !events.is_empty();
        if changed || d.last_seen_ms - entry.reported_seen_ms >= LAST_SEEN_EVERY_MS {
            entry.reported_seen_ms = d.last_seen_ms;
            self.dirty.insert(key);
        }
        if !events.is_empty() {
            let device = (**d).clone();
            for kind in events {
                self.event(at_ms, &device, kind);
            }
        }
        if let Some(old) = moved_from {
            let slot = (seg.interface.clone(), old);
            if self.by_ip.get(&slot) == Some(&key) {
                self.by_ip.remove(&slot);
            }
        }
        if let Some(ip) = ip {
            self.by_ip.insert((seg.interface.clone(), ip), key);
            if let Some(facts) = self.pending.remove(&(seg.interface.clone(), ip)) {
                self.apply(key, facts, at_ms);
            }
        }
        key
    }

    /// `mac` uses the IPv6 address `ip` on `seg` (heard in a packet that stayed on the link). A new address
    /// joins the device (it is a change: the device is reported), the oldest going beyond [`MAX_IPV6`], and
    /// leaves any other device on the same interface (it moved). Not a sign of life by itself: it neither
    /// brings a device online nor keeps it so (probes are IPv4). A MAC without a device keeps the address
    /// until the device appears (a sweep, ARP, DHCP); it does not create one, which could never be probed
    /// and so would never go offline.
    pub fn ipv6_seen(&mut self, seg: &Segment, mac: MacAddr, ip: Ipv6Addr) {
        let key = (seg.vlan, mac);
        match self.devices.get_mut(&key) {
            Some(e) => {
                if !remember_ipv6(&mut e.device.ipv6, ip) {
                    return;
                }
                self.dirty.insert(key);
            }
            None => {
                if !self.pending_ipv6.contains_key(&key)
                    && self.pending_ipv6.len() >= MAX_PENDING_IPV6
                {
                    return;
                }
                if !remember_ipv6(self.pending_ipv6.entry(key).or_default(), ip) {
                    return;
                }
            }
        }
        self.ipv6_moved_to(seg, key, ip);
    }

    /// `ip` is `key`'s now: other devices (and waiting MACs) on the segment lose it.
    fn ipv6_moved_to(&mut self, seg: &Segment, key: Key, ip: Ipv6Addr) {
        for (other, e) in &mut self.devices {
            if *other != key && e.device.interface == seg.interface && e.device.ipv6.contains(&ip) {
                e.device.ipv6.retain(|a| *a != ip);
                self.dirty.insert(*other);
            }
        }
        self.pending_ipv6.retain(|other, addrs| {
            if *other != key && other.0 == seg.vlan {
                addrs.retain(|a| *a != ip);
            }
            !addrs.is_empty()
        });
    }

    /// An ICMP echo answer (the device is also `seen` by its ARP answer, or now). The RTT is reported with
    /// the device's next change; only the first answer is a change by itself (it now answers ICMP).
    pub fn icmp_answer(&mut self, key: Key, rtt: Duration) {
        if let Some(e) = self.devices.get_mut(&key) {
            if e.device.icmp_rtt_ms.replace(ms(rtt)).is_none() {
                self.dirty.insert(key);
            }
        }
    }

    /// A probe went unanswered; after `offline_after` in a row the device goes offline (`offline` event).
    pub fn missed(&mut self, key: Key, offline_after: u32, at_ms: i64) {
        let Some(e) = self.devices.get_mut(&key) else {
            return;
        };
        e.missed = e.missed.saturating_add(1);
        if e.device.online && e.missed >= offline_after.max(1) {
            e.device.online = false;
            let device = (*e.device).clone();
            self.dirty.insert(key);
            self.event(at_ms, &device, EventKind::Offline);
        }
    }

    /// DHCP said something about `mac`: its hostname (a `dhcp` name) and vendor class.
    pub fn dhcp(
        &mut self,
        key: Key,
        hostname: Option<&str>,
        vendor_class: Option<&str>,
        at_ms: i64,
    ) {
        if let Some(name) = hostname.and_then(clean_name) {
            self.set_name(key, NameSource::Dhcp, name, at_ms);
        }
        if let (Some(class), Some(e)) = (vendor_class, self.devices.get_mut(&key)) {
            if e.device.dhcp_vendor_class.as_deref() != Some(class) {
                e.device.dhcp_vendor_class = Some(class.to_owned());
                self.dirty.insert(key);
            }
        }
    }

    /// Facts learned about an address on `interface`: applied to its device, or held until it shows up.
    pub fn facts_for_ip(&mut self, interface: &str, ip: Ipv4Addr, facts: Facts, at_ms: i64) {
        if facts.is_empty() {
            return;
        }
        match self.key_by_ip(interface, ip) {
            Some(key) => self.apply(key, facts, at_ms),
            None => {
                if self.pending.len() >= MAX_PENDING {
                    return;
                }
                let held = self.pending.entry((interface.to_owned(), ip)).or_default();
                merge_facts(held, facts);
            }
        }
    }

    fn apply(&mut self, key: Key, facts: Facts, at_ms: i64) {
        for n in facts.names {
            if let Some(name) = clean_name(&n.name) {
                self.set_name(key, n.source, name, at_ms);
            }
        }
        let Some(e) = self.devices.get_mut(&key) else {
            return;
        };
        let d = &mut e.device;
        let mut changed = false;
        if let Some(source) = &facts.services_complete_from {
            let before = d.services.len();
            d.services
                .retain(|s| &s.source != source || facts.services.contains(s));
            changed |= d.services.len() != before;
        }
        for s in facts.services {
            if !d.services.contains(&s) {
                d.services.push(s);
                changed = true;
            }
        }
        if changed {
            d.services.sort();
        }
        for (k, v) in facts.model_hints {
            changed |= d.model_hints.insert(k, v);
        }
        if let Some(u) = facts.upnp {
            if d.upnp.as_deref() != Some(&u) {
                d.upnp = Some(Box::new(u));
                changed = true;
            }
        }
        if changed {
            self.dirty.insert(key);
        }
    }

    /// Sets the name from `source` (`name_changed` when it appears or changes).
    pub fn set_name(&mut self, key: Key, source: NameSource, name: String, at_ms: i64) {
        let Some(e) = self.devices.get_mut(&key) else {
            return;
        };
        let d = &mut e.device;
        let from = d.name_from(source).map(str::to_owned);
        if from.as_deref() == Some(name.as_str()) {
            return;
        }
        d.names.retain(|n| n.source != source);
        d.names.push(DeviceName {
            name: name.clone(),
            source,
        });
        d.names.sort_by_key(|n| n.source);
        let device = d.clone();
        self.dirty.insert(key);
        self.event(
            at_ms,
            &device,
            EventKind::NameChanged {
                from,
                to: name,
                source,
            },
        );
    }
}

/// Makes `ip` the most recently heard of `list`, dropping the least recently heard beyond [`MAX_IPV6`];
/// `true` when it was not there (the set changed).
fn remember_ipv6(list: &mut Vec<Ipv6Addr>, ip: Ipv6Addr) -> bool {
    if let Some(at) = list.iter().position(|a| *a == ip) {
        list[at..].rotate_left(1);
        return false;
    }
    if list.len() >= MAX_IPV6 {
        list.drain(..=list.len() - MAX_IPV6);
    }
    list.push(ip);
    true
}

fn merge_facts(into: &mut Facts, facts: Facts) {
    for n in facts.names {
        into.names.retain(|o| o.source != n.source);
        into.names.push(n);
    }
    if let Some(source) = &facts.services_complete_from {
        into.services.retain(|s| &s.source != source);
    }
    for s in facts.services {
        if !into.services.contains(&s) {
            into.services.push(s);
        }
    }
    for (k, v) in facts.model_hints {
        into.model_hints.insert(k, v);
    }
    if facts.upnp.is_some() {
        into.upnp = facts.upnp;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(vlan: Option<u16>) -> Segment {
        Segment {
            interface: format!("lan{}", vlan.unwrap_or(0)),
            vlan,
        }
    }

    const MAC: MacAddr = MacAddr(0x00, 0x1a, 0x11, 0, 0, 1);
    const IP1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
    const IP2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 6);

    fn kinds(events: &[DeviceEvent]) -> Vec<&'static str> {
        events.iter().map(|e| e.kind.as_str()).collect()
    }

    #[test]
    fn a_new_device_then_an_ip_change_is_one_device_with_two_events() {
        let mut inv = Inventory::new();
        let s = seg(None);
        let key = inv.seen(&s, MAC, Some(IP1), Some(Duration::from_micros(420)), 100);
        let (devices, events) = inv.take_changes();
        assert_eq!(kinds(&events), ["new"]);
        assert_eq!(devices.len(), 1);
        let d = &devices[0];
        assert_eq!(
            (d.mac.as_str(), d.ipv4, d.vendor.as_deref(), d.online),
            ("00:1a:11:00:00:01", Some(IP1), Some("Google, Inc."), true)
        );
        assert_eq!(d.arp_rtt_ms, Some(0.42));

        // A mere sighting is not a change, until the reported last-seen time is stale.
        inv.seen(&s, MAC, Some(IP1), None, 200);
        assert!(!inv.has_changes());
        assert_eq!(inv.get(&key).unwrap().last_seen_ms, 200);
        inv.seen(&s, MAC, Some(IP1), None, 100 + LAST_SEEN_EVERY_MS);
        let (devices, events) = inv.take_changes();
        assert!(events.is_empty());
        assert_eq!(devices[0].last_seen_ms, 100 + LAST_SEEN_EVERY_MS);

        inv.seen(&s, MAC, Some(IP2), None, 300 + LAST_SEEN_EVERY_MS);
        let (_, events) = inv.take_changes();
        assert_eq!(
            events[0].kind,
            EventKind::IpChanged {
                from: Some(IP1),
                to: IP2
            }
        );
        assert_eq!(inv.len(), 1);
        assert_eq!(inv.key_by_ip("lan0", IP2), Some(key));
        assert_eq!(inv.key_by_ip("lan0", IP1), None);
        assert_eq!(inv.get(&key).unwrap().first_seen_ms, 100);
        // The first ICMP answer is a change; later RTTs ride along with the next one.
        inv.icmp_answer(key, Duration::from_micros(300));
        assert_eq!(inv.take_changes().0.len(), 1);
        inv.icmp_answer(key, Duration::from_micros(500));
        assert!(!inv.has_changes());
        assert_eq!(inv.get(&key).unwrap().icmp_rtt_ms, Some(0.5));
    }

    #[test]
    fn the_same_mac_on_two_vlans_is_two_devices() {
        let mut inv = Inventory::new();
        inv.seen(&seg(Some(10)), MAC, Some(IP1), None, 1);
        inv.seen(&seg(Some(20)), MAC, Some(IP1), None, 1);
        assert_eq!(inv.len(), 2);
        let all = inv.devices();
        assert_eq!(
            all.iter()
                .map(|d| (d.vlan, d.interface.as_str()))
                .collect::<Vec<_>>(),
            [(Some(10), "lan10"), (Some(20), "lan20")]
        );
    }

    #[test]
    fn offline_only_after_n_missed_probes_and_online_at_the_first_answer() {
        let mut inv = Inventory::new();
        let key = inv.seen(&seg(None), MAC, Some(IP1), None, 1);
        inv.take_changes();
        inv.missed(key, 3, 10);
        inv.missed(key, 3, 20);
        assert!(inv.get(&key).unwrap().online);
        assert!(inv.take_changes().1.is_empty());
        inv.missed(key, 3, 30);
        assert!(!inv.get(&key).unwrap().online);
        inv.missed(key, 3, 40);
        let (_, events) = inv.take_changes();
        assert_eq!(kinds(&events), ["offline"]);
        assert_eq!(events[0].at_ms, 30);

        // One answer in between resets the count.
        inv.seen(&seg(None), MAC, Some(IP1), None, 50);
        inv.missed(key, 3, 60);
        inv.missed(key, 3, 70);
        inv.seen(&seg(None), MAC, None, None, 80);
        inv.missed(key, 3, 90);
        let (_, events) = inv.take_changes();
        assert_eq!(kinds(&events), ["online"]);
        assert!(inv.get(&key).unwrap().online);
    }

    #[test]
    fn names_keep_their_source_and_changes_are_events() {
        let mut inv = Inventory::new();
        let key = inv.seen(&seg(None), MAC, Some(IP1), None, 1);
        inv.dhcp(key, Some("kitchen-tv\0"), Some("android-dhcp-13"), 2);
        inv.dhcp(key, Some("kitchen-tv"), Some("android-dhcp-13"), 3);
        inv.set_name(key, NameSource::Dns, "tv.lan".into(), 4);
        inv.set_name(key, NameSource::Dns, "tv2.lan".into(), 5);
        let (devices, events) = inv.take_changes();
        assert_eq!(
            kinds(&events),
            ["new", "name_changed", "name_changed", "name_changed"]
        );
        assert_eq!(
            events[3].kind,
            EventKind::NameChanged {
                from: Some("tv.lan".into()),
                to: "tv2.lan".into(),
                source: NameSource::Dns
            }
        );
        let d = &devices[0];
        assert_eq!(d.name_from(NameSource::Dhcp), Some("kitchen-tv"));
        assert_eq!(d.names.len(), 2);
        assert_eq!(d.dhcp_vendor_class.as_deref(), Some("android-dhcp-13"));
    }

    #[test]
    fn facts_by_address_wait_for_their_device() {
        let mut inv = Inventory::new();
        let facts = Facts {
            names: vec![DeviceName {
                name: "printer.local.".into(),
                source: NameSource::Mdns,
            }],
            services: vec![Service {
                kind: "_ipp._tcp".into(),
                name: "Office Printer".into(),
                port: Some(631),
                source: "mdns".into(),
            }],
            services_complete_from: Some("mdns".into()),
            model_hints: [("ty".to_owned(), "LaserJet 400".to_owned())]
                .into_iter()
                .collect(),
            upnp: None,
        };
        inv.facts_for_ip("lan0", IP1, facts.clone(), 1);
        assert!(inv.is_empty());
        let key = inv.seen(&seg(None), MAC, Some(IP1), None, 2);
        let d = inv.get(&key).unwrap();
        assert_eq!(d.name_from(NameSource::Mdns), Some("printer.local"));
        assert_eq!(d.services.len(), 1);
        assert_eq!(&d.model_hints["ty"], "LaserJet 400");
        // Applying the same facts again changes nothing.
        inv.take_changes();
        inv.facts_for_ip("lan0", IP1, facts.clone(), 3);
        assert!(!inv.has_changes());
        // The printer withdrew its service: mDNS now announces nothing for it.
        let withdrawn = Facts {
            services: Vec::new(),
            ..facts
        };
        inv.facts_for_ip("lan0", IP1, withdrawn, 4);
        assert!(inv.get(&key).unwrap().services.is_empty());
    }

    #[test]
    fn load_restores_devices_and_their_addresses() {
        let mut inv = Inventory::new();
        inv.seen(&seg(Some(10)), MAC, Some(IP1), None, 1);
        let stored = inv.devices();
        let back = Inventory::load(stored.clone());
        assert_eq!(back.devices(), stored);
        assert_eq!(back.key_by_ip("lan10", IP1), Some((Some(10), MAC)));
        assert_eq!(back.probe_targets("lan10"), [(IP1, MAC)]);
        assert!(back.probe_targets("lan0").is_empty());
    }

    fn v6(text: &str) -> Ipv6Addr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv6_addresses_join_their_device_and_are_a_change_once() {
        let mut inv = Inventory::new();
        let s = seg(Some(10));
        let key = inv.seen(&s, MAC, Some(IP1), None, 1);
        inv.take_changes();
        inv.ipv6_seen(&s, MAC, v6("fe80::21a:11ff:fe00:1"));
        inv.ipv6_seen(&s, MAC, v6("2001:db8:50::10"));
        let (devices, events) = inv.take_changes();
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(
            devices[0].ipv6,
            [v6("fe80::21a:11ff:fe00:1"), v6("2001:db8:50::10")]
        );
        // Heard again: not a change, and no sign of life either.
        inv.ipv6_seen(&s, MAC, v6("2001:db8:50::10"));
        assert!(!inv.has_changes());
        assert_eq!(inv.get(&key).unwrap().last_seen_ms, 1);
        // The same MAC on another VLAN is another device, which knows nothing of it.
        inv.seen(&seg(Some(20)), MAC, Some(IP1), None, 2);
        assert!(inv.get(&(Some(20), MAC)).unwrap().ipv6.is_empty());
        // Stored and loaded back with the device.
        let back = Inventory::load(inv.devices());
        assert_eq!(back.get(&key).unwrap().ipv6.len(), 2);
    }

    #[test]
    fn a_device_keeps_the_most_recently_heard_ipv6_addresses() {
        let mut inv = Inventory::new();
        let s = seg(None);
        let key = inv.seen(&s, MAC, Some(IP1), None, 1);
        let addr = |i: usize| v6(&format!("2001:db8::{i:x}"));
        for i in 0..MAX_IPV6 {
            inv.ipv6_seen(&s, MAC, addr(i));
        }
        inv.take_changes();
        // The oldest is heard again, then a new one comes: the least recently heard (1) goes.
        inv.ipv6_seen(&s, MAC, addr(0));
        assert!(!inv.has_changes());
        inv.ipv6_seen(&s, MAC, addr(100));
        let ipv6 = &inv.get(&key).unwrap().ipv6;
        assert_eq!(ipv6.len(), MAX_IPV6);
        assert!(!ipv6.contains(&addr(1)));
        assert!(ipv6.contains(&addr(0)) && ipv6.contains(&addr(100)));
        assert_eq!(inv.take_changes().0.len(), 1);
    }

    #[test]
    fn an_ipv6_address_heard_from_another_mac_leaves_the_old_device() {
        let mut inv = Inventory::new();
        let (s, other_seg) = (seg(None), seg(Some(20)));
        let other = MacAddr(0x00, 0x1a, 0x11, 0, 0, 2);
        let old = inv.seen(&s, MAC, Some(IP1), None, 1);
        let new = inv.seen(&s, other, Some(IP2), None, 1);
        let elsewhere = inv.seen(&other_seg, MAC, Some(IP1), None, 1);
        let moving = v6("2001:db8::77");
        inv.ipv6_seen(&s, MAC, moving);
        inv.ipv6_seen(&s, MAC, v6("fe80::1"));
        inv.ipv6_seen(&other_seg, MAC, moving);
        inv.take_changes();
        inv.ipv6_seen(&s, other, moving);
        let (devices, _) = inv.take_changes();
        // Both devices on that interface changed; the one on the other interface kept its address.
        assert_eq!(devices.len(), 2, "{devices:?}");
        assert_eq!(inv.get(&old).unwrap().ipv6, [v6("fe80::1")]);
        assert_eq!(inv.get(&new).unwrap().ipv6, [moving]);
        assert_eq!(inv.get(&elsewhere).unwrap().ipv6, [moving]);
    }

    #[test]
    fn ipv6_for_an_unknown_mac_waits_for_its_device() {
        let mut inv = Inventory::new();
        let s = seg(None);
        inv.ipv6_seen(&s, MAC, v6("2001:db8::5"));
        inv.ipv6_seen(&s, MAC, v6("fe80::5"));
        assert!(inv.is_empty() && !inv.has_changes());
        // Another MAC took one of them meanwhile.
        let other = MacAddr(0x00, 0x1a, 0x11, 0, 0, 2);
        inv.ipv6_seen(&s, other, v6("fe80::5"));
        let key = inv.seen(&s, MAC, Some(IP1), None, 1);
        let (devices, events) = inv.take_changes();
        assert_eq!(kinds(&events), ["new"]);
        assert_eq!(devices[0].ipv6, [v6("2001:db8::5")]);
        assert_eq!(inv.get(&key).unwrap().ipv6, [v6("2001:db8::5")]);
        let other_key = inv.seen(&s, other, Some(IP2), None, 2);
        assert_eq!(inv.get(&other_key).unwrap().ipv6, [v6("fe80::5")]);
        // Bounded: MACs beyond the limit are not held; a cleanup forgets them all.
        for i in 0..MAX_PENDING_IPV6 as u32 + 10 {
            let [_, _, a, b] = i.to_be_bytes();
            inv.ipv6_seen(
                &s,
                MacAddr(0x02, 0, 0, 0, a, b),
                v6(&format!("2001:db8::1:{i:x}")),
            );
        }
        assert_eq!(inv.pending_ipv6.len(), MAX_PENDING_IPV6);
        let late = inv.seen(&s, MacAddr(0x02, 0, 0, 0, 1, 9), Some(IP2), None, 3);
        assert!(inv.get(&late).unwrap().ipv6.is_empty());
        inv.clear();
        assert!(inv.pending_ipv6.is_empty());
    }

    #[test]
    fn locally_administered_macs_are_flagged() {
        let mut inv = Inventory::new();
        let key = inv.seen(&seg(None), MacAddr(0x02, 0, 0, 0, 0, 9), Some(IP1), None, 1);
        let d = inv.get(&key).unwrap();
        assert!(d.locally_administered && d.vendor.is_none());
    }
}
