//! The daemon's discovery: one task per configured interface runs the sweeps, the liveness probes, the
//! passive listener, mDNS, SSDP and reverse DNS, and feeds what they find into the shared [`Inventory`].
//! The link takes the changes from there ([`Shared::take_changes`]) and reports them.
//!
//! ```text
//!  interface task ─┬─ sweep (every sweep_interval, and at once after a cleanup) ─┐
//!                  ├─ probe known devices (every probe_interval): ARP + ICMP      │
//!                  ├─ passive ARP/DHCP/IPv6 listener (continuous)                 ├─▶ Inventory ◀── link
//!                  ├─ mDNS watcher (continuous)                                   │   (Mutex)      (snapshot,
//!                  ├─ SSDP search (every ssdp_interval)                           │                 deltas)
//!                  └─ reverse DNS of addresses not looked up yet                 ─┘
//! ```
//! An interface that is missing, down or without IPv4 is reported in the interface status and tried again
//! every `interface_retry`; the other interfaces go on.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use outpost_cloud_link::control::DeviceRef;
use outpost_cloud_link::diagnostics::ScanTime;
use outpost_cloud_link::inventory::{
    Device, DeviceEvent, DeviceName, NameSource, Service, UpnpInfo,
};
use pnet_datalink::MacAddr;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{interval_at, sleep, Duration, Instant as TokioInstant, MissedTickBehavior};
use tracing::{debug, info, warn};

use super::datalink::{interface_info, InterfaceInfo, PacketLink};
use super::inventory::{Facts, Inventory, Segment};
use super::mdns::{MdnsHost, MdnsWatcher};
use super::passive::{Heard, PassiveListener};
use super::probe::{self, ProbeConfig, ProbeTarget};
use super::rdns::ReverseDns;
use super::scanner;
use super::ssdp::{self, SsdpDevice};
use super::sweep::{Sweep, SweepConfig, Targets};
use crate::blocking::gateway;
use crate::config::{DiscoveryConfig, InterfaceConfig};

/// How long an SSDP search listens for replies.
const SSDP_WINDOW: Duration = Duration::from_secs(3);
/// Heard frames waiting for the interface task, at most.
const PASSIVE_QUEUE: usize = 1024;

/// How one configured interface is doing, for `outpost-agent devices` and the logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceStatus {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    #[serde(default)]
    pub tagged: bool,
    /// `starting`, `watching`, or `error` with [`Self::error`] saying why.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the sweeps cover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<String>,
}

/// The inventory and what goes with it, shared by the interface tasks, the link and the control socket.
#[derive(Debug)]
pub struct Shared {
    inventory: Mutex<Inventory>,
    interfaces: Mutex<Vec<InterfaceStatus>>,
    /// The last finished sweep of each interface: how long it took and when it ended.
    sweeps: Mutex<Vec<ScanTime>>,
    /// The cleanup generation, bumped by each cleanup: results of work started before it are dropped (so
    /// nothing wiped comes back from a sweep that was running), and every interface sweeps again at once.
    generation: watch::Sender<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind: keep going with it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub fn new(inventory: Inventory) -> Arc<Self> {
        Arc::new(Self {
            inventory: Mutex::new(inventory),
            interfaces: Mutex::new(Vec::new()),
            sweeps: Mutex::new(Vec::new()),
            generation: watch::Sender::new(0),
        })
    }

    /// Every device, sorted.
    pub fn devices(&self) -> Vec<Device> {
        lock(&self.inventory).devices()
    }

    /// Every device key, sorted (see [`Inventory::keys`]).
    pub fn keys(&self) -> Vec<super::inventory::Key> {
        lock(&self.inventory).keys()
    }

    /// The devices of these keys that still exist.
    pub fn devices_of(&self, keys: &[super::inventory::Key]) -> Vec<Device> {
        let inv = lock(&self.inventory);
        keys.iter().filter_map(|k| inv.get(k).cloned()).collect()
    }

    pub fn take_changes(&self) -> (Vec<Device>, Vec<DeviceEvent>) {
        lock(&self.inventory).take_changes()
    }

    /// The device a command names, if the inventory has it.
    pub fn device(&self, device: &DeviceRef) -> Option<Device> {
        let mac: MacAddr = device.mac.parse().ok()?;
        lock(&self.inventory).get(&(device.vlan, mac)).cloned()
    }

    pub fn interfaces(&self) -> Vec<InterfaceStatus> {
        lock(&self.interfaces).clone()
    }

    /// The last finished sweep of each interface (for the health snapshot).
    pub fn scan_times(&self) -> Vec<ScanTime> {
        lock(&self.sweeps).clone()
    }

    fn record_sweep(&self, interface: &str, duration_ms: u64, at_ms: i64) {
        let mut all = lock(&self.sweeps);
        let time = ScanTime {
            interface: interface.to_owned(),
            duration_ms,
            at_ms,
        };
        match all.iter_mut().find(|t| t.interface == interface) {
            Some(t) => *t = time,
            None => all.push(time),
        }
    }

    /// Devices in the inventory.
    pub fn len(&self) -> usize {
        lock(&self.inventory).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A cleanup: forget every device and sweep again at once.
    pub fn clear(&self) {
        let mut inv = lock(&self.inventory);
        inv.clear();
        self.generation.send_modify(|g| *g += 1);
    }

    fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// Runs `f` on the inventory unless a cleanup happened since `generation`.
    fn update(&self, generation: u64, f: impl FnOnce(&mut Inventory)) {
        let mut inv = lock(&self.inventory);
        if self.generation() == generation {
            f(&mut inv);
        }
    }

    fn set_status(&self, status: InterfaceStatus) {
        let mut all = lock(&self.interfaces);
        match all.iter_mut().find(|s| s.name == status.name) {
            Some(s) => *s = status,
            None => all.push(status),
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The interface of the default IPv4 route in the calling thread's network namespace, if any (the route
/// table as [`gateway::route_table`] reads it).
pub fn default_route_interface() -> Option<String> {
    match gateway::route_table() {
        Ok(table) => default_route_interface_in(&table),
        Err(e) => {
            warn!(error = %e, "cannot read the route table (/proc/thread-self/net/route, /proc/net/route)");
            None
        }
    }
}

/// The interface of the lowest-metric default route in `table` (the text of `/proc/net/route`).
pub fn default_route_interface_in(table: &str) -> Option<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 8 || cols[1] != "00000000" || cols[7] != "00000000" {
                return None;
            }
            let metric: u32 = cols[6].parse().ok()?;
            Some((metric, cols[0]))
        })
        .min_by_key(|(metric, _)| *metric)
        .map(|(_, iface)| iface.to_owned())
}

/// The interfaces to watch: the configured ones (`interfaces = []`: none), or, when the key is not set, the
/// default route's.
pub fn interfaces_to_watch(configured: Option<&[InterfaceConfig]>) -> Vec<InterfaceConfig> {
    if let Some(listed) = configured {
        if listed.is_empty() {
            info!(
                "interfaces = []: the agent watches no interface (discovery and blocking are idle)"
            );
        }
        return listed.to_vec();
    }
    match default_route_interface() {
        Some(name) => {
            info!(iface = %name, "no interfaces configured: watching the interface of the default route");
            vec![InterfaceConfig::named(&name)]
        }
        None => {
            warn!("no interfaces configured and no default route: discovery watches nothing (list interfaces in agent.toml)");
            Vec::new()
        }
    }
}

/// The sweep rate: the configured one, or automatic — 2,000 requests per second, more for a big network
/// so that one pass takes about 3 s (at most 25,000 per second).
pub fn sweep_rate(configured: Option<u32>, addresses: usize) -> u32 {
    configured.unwrap_or_else(|| SweepConfig::auto_rate(addresses))
}

/// Starts one task per interface; they run until `shutdown` turns true.
pub fn spawn(
    cfg: DiscoveryConfig,
    interfaces: Vec<InterfaceConfig>,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    for iface in interfaces {
        shared.set_status(InterfaceStatus {
            name: iface.name.clone(),
            vlan: iface.vlan,
            tagged: iface.tagged,
            state: "starting".into(),
            error: None,
            targets: None,
        });
        let task = InterfaceTask {
            cfg: cfg.clone(),
            iface,
            shared: Arc::clone(&shared),
            shutdown: shutdown.clone(),
        };
        tasks.spawn(task.run());
    }
    tasks
}

struct InterfaceTask {
    cfg: DiscoveryConfig,
    iface: InterfaceConfig,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
}

/// Why a watch of an interface ended.
enum Ended {
    Shutdown,
    /// The interface went away or down: wait and try again.
    Lost(String),
}

impl InterfaceTask {
    fn status(&self, state: &str, error: Option<String>, targets: Option<String>) {
        self.shared.set_status(InterfaceStatus {
            name: self.iface.name.clone(),
            vlan: self.iface.vlan,
            tagged: self.iface.tagged,
            state: state.into(),
            error,
            targets,
        });
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    async fn run(mut self) {
        loop {
            if self.stopping() {
                return;
            }
            let ended = match interface_info(&self.iface.name) {
                Ok(info) => self.watch(info).await,
                Err(e) => Ended::Lost(e.to_string()),
            };
            let reason = match ended {
                Ended::Shutdown => return,
                Ended::Lost(reason) => reason,
            };
            warn!(iface = %self.iface.name, error = %reason, retry_secs = self.cfg.interface_retry.as_secs_f64(),
                "cannot watch this interface; trying again later (the other interfaces go on)");
            self.status("error", Some(reason), None);
            tokio::select! {
                _ = sleep(self.cfg.interface_retry) => {}
                _ = self.shutdown.changed() => return,
            }
        }
    }

    /// Watches a usable interface until it goes away or the agent stops. Sweeps, probes, SSDP searches and
    /// reverse DNS run as tasks of their own (one of each kind at a time) whose results come back here, so
    /// this loop always keeps up with what the listeners hear.
    async fn watch(&mut self, info: InterfaceInfo) -> Ended {
        let name = self.iface.name.clone();
        let seg = Segment {
            interface: name.clone(),
            vlan: self.iface.vlan,
        };
        let targets = match self.iface.cidr {
            Some(t) => Ok(t),
            None => Targets::cidr(info.network).map_err(|e| {
                format!("{e} (set cidr for interface {name} in agent.toml to sweep part of it)")
            }),
        };
        let (sweep_targets, sweep_error) = match targets {
            Ok(t) => (Some(t), None),
            Err(e) => {
                warn!(iface = %name, error = %e, "not sweeping this interface; listening and probing only");
                (None, Some(e))
            }
        };
        self.status(
            if sweep_error.is_some() {
                "error"
            } else {
                "watching"
            },
            sweep_error,
            sweep_targets.map(|t| t.to_string()),
        );
        info!(iface = %name, vlan = ?self.iface.vlan, ip = %info.local.ip, network = %info.network, "watching interface");

        let (heard_tx, mut heard_rx) = mpsc::channel(PASSIVE_QUEUE);
        let _listener = match PassiveListener::start(&name, heard_tx) {
            Ok(l) => Some(l),
            Err(e) => {
                warn!(iface = %name, error = %e, "passive ARP/DHCP/IPv6 listening unavailable");
                None
            }
        };
        let (mdns_tx, mut mdns_rx) = mpsc::channel(256);
        let _mdns = if self.cfg.mdns {
            match MdnsWatcher::start(&name, info.network, mdns_tx) {
                Ok(w) => Some(w),
                Err(e) => {
                    warn!(iface = %name, error = %e, "mDNS unavailable on this interface");
                    None
                }
            }
        } else {
            None
        };
        let rdns = if self.cfg.reverse_dns {
            match self.cfg.dns_server {
                Some(addr) => Some(ReverseDns::with_server(addr)),
                None => match ReverseDns::system() {
                    Ok(r) => Some(r),
                    Err(e) => {
                        warn!(error = %e, "reverse DNS unavailable");
                        None
                    }
                },
            }
        } else {
            None
        };
        let mut looked_up: HashSet<Ipv4Addr> = HashSet::new();

        let start = TokioInstant::now();
        let mut sweep_tick = interval_at(start, self.cfg.sweep_interval);
        let mut probe_tick = interval_at(start + self.cfg.probe_interval, self.cfg.probe_interval);
        let mut ssdp_tick = interval_at(start, self.cfg.ssdp_interval);
        let mut rdns_tick = interval_at(start + RDNS_EVERY, RDNS_EVERY);
        for t in [
            &mut sweep_tick,
            &mut probe_tick,
            &mut ssdp_tick,
            &mut rdns_tick,
        ] {
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        let mut cleanups = self.shared.generation.subscribe();
        let mut work: JoinSet<Done> = JoinSet::new();
        let mut running: HashSet<&'static str> = HashSet::new();
        let shared = Arc::clone(&self.shared);
        loop {
            tokio::select! {
                _ = self.shutdown.changed() => return Ended::Shutdown,
                _ = sweep_tick.tick(), if sweep_targets.is_some() && !running.contains("sweep") => {
                    if let Some(t) = sweep_targets {
                        running.insert("sweep");
                        work.spawn(sweep(seg.clone(), info, t, self.cfg.clone(), shared.generation()));
                    }
                }
                _ = cleanups.changed() => {
                    looked_up.clear();
                    sweep_tick.reset_immediately();
                }
                _ = probe_tick.tick(), if !running.contains("probe") => {
                    let targets: Vec<ProbeTarget> = lock(&shared.inventory)
                        .probe_targets(&seg.interface)
                        .into_iter()
                        .map(|(ip, mac)| ProbeTarget { ip, mac })
                        .collect();
                    if !targets.is_empty() {
                        running.insert("probe");
                        work.spawn(probe_now(seg.interface.clone(), targets, shared.generation()));
                    }
                }
                _ = ssdp_tick.tick(), if self.cfg.ssdp && !running.contains("ssdp") => {
                    running.insert("ssdp");
                    work.spawn(ssdp_search(info, shared.generation()));
                }
                _ = rdns_tick.tick(), if rdns.is_some() && !running.contains("rdns") => {
                    let ips: Vec<Ipv4Addr> = lock(&shared.inventory)
                        .probe_targets(&seg.interface)
                        .into_iter()
                        .map(|(ip, _)| ip)
                        .filter(|ip| !looked_up.contains(ip))
                        .collect();
                    if let (Some(r), false) = (&rdns, ips.is_empty()) {
                        looked_up.extend(ips.iter().copied());
                        running.insert("rdns");
                        work.spawn(reverse_dns(r.clone(), ips, shared.generation()));
                    }
                }
                Some((_, heard)) = heard_rx.recv() => {
                    let at_ms = now_ms();
                    shared.update(shared.generation(), |inv| apply_heard(inv, &seg, heard, at_ms));
                }
                Some(host) = mdns_rx.recv() => {
                    let (at_ms, ip, facts) = (now_ms(), host.ip, mdns_facts(host));
                    shared.update(shared.generation(), |inv| inv.facts_for_ip(&seg.interface, ip, facts, at_ms));
                }
                Some(done) = work.join_next() => {
                    let done = match done {
                        Ok(d) => d,
                        Err(e) => {
                            // A panic in one piece of work: forget it; the next tick starts it again.
                            warn!(iface = %seg.interface, error = %e, "discovery task failed");
                            running.clear();
                            continue;
                        }
                    };
                    running.remove(done.kind());
                    if let Err(reason) = self.apply(&seg, done) {
                        return Ended::Lost(reason);
                    }
                }
            }
        }
    }

    /// Applies the result of one piece of work; `Err` when the interface is gone.
    fn apply(&self, seg: &Segment, done: Done) -> Result<(), String> {
        let at_ms = now_ms();
        match done {
            Done::Sweep { generation, result } => {
                let report = result?;
                let elapsed_ms = report.elapsed.as_millis() as u64;
                info!(iface = %seg.interface, found = report.found.len(), sent = report.sent, rounds = report.rounds,
                    elapsed_ms, "sweep done");
                self.shared.record_sweep(&seg.interface, elapsed_ms, at_ms);
                self.shared.update(generation, |inv| {
                    for f in &report.found {
                        inv.seen(seg, f.mac, Some(f.ip), Some(f.rtt), at_ms);
                    }
                });
            }
            Done::Probe { generation, result } => {
                let report = result?;
                if let Some(e) = &report.icmp_unavailable {
                    debug!(iface = %seg.interface, error = %e, "ICMP probes unavailable; ARP only");
                }
                let offline_after = self.cfg.offline_after_missed;
                self.shared.update(generation, |inv| {
                    for r in &report.results {
                        let key = (seg.vlan, r.mac);
                        if r.alive() {
                            inv.seen(seg, r.mac, Some(r.ip), r.arp_rtt, at_ms);
                            if let Some(rtt) = r.icmp_rtt {
                                inv.icmp_answer(key, rtt);
                            }
                        } else if inv.get(&key).and_then(|d| d.ipv4) == Some(r.ip) {
                            // Only a miss at the address it still has: one that moved meanwhile was heard.
                            inv.missed(key, offline_after, at_ms);
                        }
                    }
                });
            }
            Done::Ssdp {
                generation,
                devices,
            } => {
                self.shared.update(generation, |inv| {
                    for d in devices {
                        let ip = d.ip;
                        inv.facts_for_ip(&seg.interface, ip, ssdp_facts(d), at_ms);
                    }
                });
            }
            Done::Rdns { generation, names } => {
                self.shared.update(generation, |inv| {
                    for (ip, name) in names {
                        if let Some(key) = inv.key_by_ip(&seg.interface, ip) {
                            inv.set_name(key, NameSource::Dns, name, at_ms);
                        }
                    }
                });
            }
        }
        Ok(())
    }
}

/// How often addresses not looked up yet get their reverse DNS names.
const RDNS_EVERY: Duration = Duration::from_secs(2);

/// A finished piece of an interface's work, with the cleanup generation it started in.
enum Done {
    Sweep {
        generation: u64,
        result: Result<scanner::SweepReport, String>,
    },
    Probe {
        generation: u64,
        result: Result<probe::ProbeReport, String>,
    },
    Ssdp {
        generation: u64,
        devices: Vec<SsdpDevice>,
    },
    Rdns {
        generation: u64,
        names: Vec<(Ipv4Addr, String)>,
    },
}

impl Done {
    fn kind(&self) -> &'static str {
        match self {
            Done::Sweep { .. } => "sweep",
            Done::Probe { .. } => "probe",
            Done::Ssdp { .. } => "ssdp",
            Done::Rdns { .. } => "rdns",
        }
    }
}

async fn sweep(
    seg: Segment,
    info: InterfaceInfo,
    targets: Targets,
    cfg: DiscoveryConfig,
    generation: u64,
) -> Done {
    let addresses = targets.addresses(info.local.ip);
    let sweep_cfg = SweepConfig {
        rate_pps: sweep_rate(cfg.rate_pps, addresses.len()),
        retries: cfg.retries,
        ..SweepConfig::default()
    };
    debug!(iface = %seg.interface, %targets, rate_pps = sweep_cfg.rate_pps, "sweep");
    let name = seg.interface.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut link = PacketLink::open(&name)?;
        scanner::run(&mut link, Sweep::new(addresses, sweep_cfg), &Instant::now)
    })
    .await;
    let result = match result {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("the sweep task failed: {e}")),
    };
    Done::Sweep { generation, result }
}

async fn probe_now(interface: String, targets: Vec<ProbeTarget>, generation: u64) -> Done {
    let result = probe::probe(&interface, &targets, &ProbeConfig::default())
        .await
        .map_err(|e| e.to_string());
    Done::Probe { generation, result }
}

async fn ssdp_search(info: InterfaceInfo, generation: u64) -> Done {
    let devices = match ssdp::search(info.local.ip, info.network, SSDP_WINDOW).await {
        Ok(d) => d,
        Err(e) => {
            warn!(ip = %info.local.ip, error = %e, "SSDP search failed");
            Vec::new()
        }
    };
    Done::Ssdp {
        generation,
        devices,
    }
}

async fn reverse_dns(rdns: ReverseDns, ips: Vec<Ipv4Addr>, generation: u64) -> Done {
    let names = rdns.lookup_many(&ips).await;
    debug!(asked = ips.len(), named = names.len(), "reverse DNS");
    Done::Rdns { generation, names }
}

/// What one mDNS host view says, as inventory facts (its services replace the device's earlier mDNS ones).
pub fn mdns_facts(host: MdnsHost) -> Facts {
    Facts {
        names: host
            .hostname
            .into_iter()
            .map(|name| DeviceName {
                name,
                source: NameSource::Mdns,
            })
            .collect(),
        services: host
            .services
            .into_iter()
            .map(|s| Service {
                kind: s.service_type,
                name: s.instance,
                port: Some(s.port),
                source: "mdns".into(),
            })
            .collect(),
        services_complete_from: Some("mdns".into()),
        model_hints: host.model_hints.into_iter().collect(),
        upnp: None,
    }
}

/// A frame heard on the wire, into the inventory: the sender of ARP or DHCP is alive, DHCP adds a name and
/// vendor class; IPv6 adds addresses to the device (see [`Inventory::ipv6_seen`]).
pub fn apply_heard(inv: &mut Inventory, seg: &Segment, heard: Heard, at_ms: i64) {
    match heard {
        Heard::Arp { mac, ip, .. } => {
            inv.seen(seg, mac, Some(ip), None, at_ms);
        }
        Heard::Dhcp(c) => {
            let ip = c.client_ip.or(c.requested_ip);
            let key = inv.seen(seg, c.mac, ip, None, at_ms);
            inv.dhcp(key, c.hostname.as_deref(), c.vendor_class.as_deref(), at_ms);
        }
        Heard::Ipv6 {
            mac,
            source,
            target,
        } => {
            for ip in source.into_iter().chain(target) {
                inv.ipv6_seen(seg, mac, ip);
            }
        }
    }
}

/// What a UPnP description says, as inventory facts (a `upnp` name and service, and the model fields).
pub fn ssdp_facts(d: SsdpDevice) -> Facts {
    let names = d
        .friendly_name
        .clone()
        .map(|name| DeviceName {
            name,
            source: NameSource::Upnp,
        })
        .into_iter()
        .collect();
    let services = d
        .device_type
        .clone()
        .map(|kind| Service {
            kind,
            name: d.friendly_name.clone().unwrap_or_default(),
            port: None,
            source: "upnp".into(),
        })
        .into_iter()
        .collect();
    Facts {
        names,
        services,
        services_complete_from: None,
        model_hints: Default::default(),
        upnp: Some(UpnpInfo {
            friendly_name: d.friendly_name,
            manufacturer: d.manufacturer,
            model_name: d.model_name,
            model_number: d.model_number,
            device_type: d.device_type,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_interfaces_list_watches_nothing_and_a_list_is_taken_as_it_is() {
        assert!(interfaces_to_watch(Some(&[])).is_empty());
        let listed = [
            InterfaceConfig::named("lan0"),
            InterfaceConfig::named("lan1"),
        ];
        assert_eq!(interfaces_to_watch(Some(&listed)), listed);
        // Not set: the default route's interface, when this machine has one.
        assert_eq!(
            interfaces_to_watch(None),
            default_route_interface()
                .map(|name| vec![InterfaceConfig::named(&name)])
                .unwrap_or_default()
        );
    }

    #[test]
    fn the_default_route_with_the_lowest_metric_names_the_interface() {
        let table =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             lan0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
             wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
             eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
             lan1\t00000000\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(default_route_interface_in(table).as_deref(), Some("eth0"));
        // Header only, or only a network route: none.
        assert_eq!(
            default_route_interface_in(&table[..table.find('\n').unwrap()]),
            None
        );
        assert_eq!(
            default_route_interface_in(
                table
                    .lines()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join("\n")
                    .as_str()
            ),
            None
        );
    }

    #[test]
    fn heard_ipv6_addresses_join_the_device_of_that_mac() {
        let mut inv = Inventory::new();
        let seg = Segment {
            interface: "lan0".into(),
            vlan: None,
        };
        let mac = MacAddr(0x00, 0x1a, 0x11, 0, 0, 1);
        let (ll, global): (std::net::Ipv6Addr, std::net::Ipv6Addr) =
            ("fe80::1".parse().unwrap(), "2001:db8::1".parse().unwrap());
        let ipv6 = Heard::Ipv6 {
            mac,
            source: Some(ll),
            target: Some(global),
        };
        // Before the device is known, the addresses wait; ARP brings the device.
        apply_heard(&mut inv, &seg, ipv6, 1);
        assert!(inv.is_empty());
        let arp = Heard::Arp {
            mac,
            ip: Ipv4Addr::new(10, 0, 0, 5),
            gratuitous: false,
        };
        apply_heard(&mut inv, &seg, arp, 2);
        assert_eq!(inv.devices()[0].ipv6, [ll, global]);
    }
}
