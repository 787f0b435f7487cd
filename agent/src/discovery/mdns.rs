//! mDNS / DNS-SD discovery on one interface: which devices announce which host names, services and model hints.
//!
//! The browser (the `mdns-sd` crate's daemon, bound to the agent's interface only) asks for the service types
//! on the link (`_services._dns-sd._udp.local.`), browses each type it hears of and resolves every instance
//! (SRV, TXT, A). Results are kept per IPv4 address inside the interface's network:
//!
//! - `hostname`: the SRV target, e.g. `livingroom-tv.local` (trailing dot removed);
//! - `services`: type (`_http._tcp`), instance name (`Living Room TV`) and port;
//! - `model_hints`: TXT entries whose key is on [`MODEL_HINT_KEYS`] (`model=BRAVIA-XR`, `ty=HP LaserJet …`).
//!
//! Two ways to run it: [`browse`] listens for a fixed window and returns what it heard (`outpost-agent scan`);
//! [`MdnsWatcher`] keeps browsing and sends each host whose view changed into a channel (the daemon).
//!
//! What leaves the machine: mdns-sd's queries go out of the configured interface only (every other interface,
//! loopback and IPv6 included, is disabled before the first query). One caveat of mdns-sd 0.21: its daemon
//! joins the mDNS group (224.0.0.251) on every interface when it starts, a few milliseconds before our
//! interface selection is applied, so an IGMP membership report can leave other interfaces; no query does.
//! No multicast route is needed: mdns-sd sets `IP_MULTICAST_IF` to the interface's address.
//!
//! Everything that comes from the network is cleaned ([`clean_text`], [`clean_dns_name`]: no control
//! characters, bounded lengths) and bounded in number ([`MAX_SERVICE_TYPES`], [`MAX_SERVICES_PER_HOST`],
//! [`MAX_HINTS_PER_HOST`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use mdns_sd::{IfKind, ResolvedService, ServiceDaemon, ServiceEvent};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use super::sweep::Cidr;

/// The DNS-SD meta-query: answers name every service type on the link (RFC 6763 §9).
pub const SERVICE_TYPES_QUERY: &str = "_services._dns-sd._udp.local.";

/// TXT keys that say what a device is, matched case-insensitively (RFC 6763 §6.4) and reported with the
/// spelling given here:
///
/// | key | who uses it | example |
/// |---|---|---|
/// | `model` | Apple `_device-info`, AirPlay, many IoT devices | `model=MacBookPro18,3` |
/// | `md` | Google Cast, HomeKit (`_hap`) | `md=Chromecast Ultra` |
/// | `am` | AirPlay audio (`_raop`) | `am=AudioAccessory5,1` |
/// | `mn` | model name (e.g. Sonos, some IoT firmwares) | `mn=Sonos One` |
/// | `ty` | printers (`_ipp`, `_pdl-datastream`, `_printer`) | `ty=HP LaserJet Pro M404` |
/// | `product` | printers (`_ipp`) | `product=(HP LaserJet Pro M404)` |
/// | `usb_MFG` | printers: USB manufacturer | `usb_MFG=HP` |
/// | `usb_MDL` | printers: USB model | `usb_MDL=LaserJet Pro M404` |
/// | `manufacturer` | assorted IoT devices | `manufacturer=Shelly` |
pub const MODEL_HINT_KEYS: &[&str] = &[
    "model",
    "md",
    "am",
    "mn",
    "ty",
    "product",
    "usb_MFG",
    "usb_MDL",
    "manufacturer",
];

/// At most this many service types are browsed per session (a hostile or very busy link cannot make the
/// agent browse without bound).
pub const MAX_SERVICE_TYPES: usize = 64;
/// At most this many services are kept per host.
pub const MAX_SERVICES_PER_HOST: usize = 32;
/// At most this many model hints are kept per host.
pub const MAX_HINTS_PER_HOST: usize = 16;
/// Longest host name kept, in characters (a DNS name is at most 253).
pub const MAX_HOSTNAME_CHARS: usize = 253;
/// Longest instance name or service type kept, in characters (a DNS label is at most 63 bytes).
pub const MAX_LABEL_CHARS: usize = 63;
/// Longest TXT hint value kept, in characters.
pub const MAX_HINT_VALUE_CHARS: usize = 128;

/// What one IPv4 address announced over mDNS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MdnsHost {
    pub ip: Ipv4Addr,
    /// The host name its services point at, e.g. `livingroom-tv.local` (the first one heard stays while the
    /// address has services).
    pub hostname: Option<String>,
    /// Sorted by type, then instance.
    pub services: Vec<MdnsService>,
    /// Allow-listed TXT entries ([`MODEL_HINT_KEYS`]) of all its services, sorted, without duplicates.
    pub model_hints: Vec<(String, String)>,
}

/// One resolved service instance.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct MdnsService {
    /// The service type without the domain, e.g. `_http._tcp`.
    pub service_type: String,
    /// The instance name, e.g. `Living Room TV`.
    pub instance: String,
    pub port: u16,
}

/// mDNS browsing could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum MdnsError {
    #[error("interface {0} does not exist (see `ip link` for the names)")]
    NoSuchInterface(String),
    #[error("interface {0} is down (bring it up with `ip link set {0} up`)")]
    Down(String),
    #[error("interface {iface} has no IPv4 address in {network}: mDNS results are mapped by IPv4 address (give the interface an address in that network, or pick another interface)")]
    NotInNetwork { iface: String, network: Cidr },
    #[error("the mDNS daemon failed: {0} (is UDP port 5353 usable? another responder is fine, mdns-sd shares the port)")]
    Daemon(String),
    #[error("mDNS browsing needs a running tokio runtime: start it from async code")]
    NoRuntime,
}

impl From<mdns_sd::Error> for MdnsError {
    fn from(e: mdns_sd::Error) -> Self {
        MdnsError::Daemon(e.to_string())
    }
}

/// Removes control characters (line breaks and tabs become spaces), collapses runs of white space into one
/// space, trims, and keeps at most `max_chars` characters; `None` when nothing is left. For any text that came
/// from the network (also used by [`super::ssdp`]).
pub fn clean_text(raw: &str, max_chars: usize) -> Option<String> {
    let visible: String = raw
        .chars()
        .filter(|c| !c.is_control() || c.is_whitespace())
        .collect();
    let words: Vec<&str> = visible.split_whitespace().collect();
    let bounded: String = words.join(" ").chars().take(max_chars).collect();
    let bounded = bounded.trim_end();
    (!bounded.is_empty()).then(|| bounded.to_owned())
}

/// [`clean_text`] for DNS names: also drops the trailing dots of a fully qualified name
/// (`livingroom-tv.local.` → `livingroom-tv.local`).
pub fn clean_dns_name(raw: &str, max_chars: usize) -> Option<String> {
    let cleaned: String = raw.chars().filter(|c| !c.is_control()).collect();
    clean_text(cleaned.trim().trim_end_matches('.'), max_chars)
}

/// The allow-listed model hints among TXT entries, with the key spelled as in [`MODEL_HINT_KEYS`] and the
/// value cleaned; entries with other keys or empty values are dropped.
pub fn model_hints<'a>(txt: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<(String, String)> {
    txt.into_iter()
        .filter_map(|(key, value)| {
            let key = MODEL_HINT_KEYS
                .iter()
                .find(|k| k.eq_ignore_ascii_case(key.trim()))?;
            let value = clean_text(value, MAX_HINT_VALUE_CHARS)?;
            Some(((*key).to_owned(), value))
        })
        .collect()
}

/// `_http._tcp.local.` → `_http._tcp`; `None` unless it is `_name._tcp` or `_name._udp` in `.local`.
pub fn service_type_name(ty_domain: &str) -> Option<String> {
    let name = clean_dns_name(ty_domain, 255)?;
    let lower = name.to_ascii_lowercase();
    let bare = lower.strip_suffix(".local")?;
    let (service, proto) = bare.rsplit_once('.')?;
    let label = service.strip_prefix('_')?;
    if !(proto == "_tcp" || proto == "_udp")
        || label.is_empty()
        || label.len() > MAX_LABEL_CHARS
        || label.contains('.')
    {
        return None;
    }
    Some(name[..bare.len()].to_owned())
}

/// The instance name of `fullname` (`Living Room TV._http._tcp.local.` with type `_http._tcp.local.` →
/// `Living Room TV`), cleaned and bounded.
pub fn instance_name(fullname: &str, ty_domain: &str) -> Option<String> {
    let full = fullname.trim_end_matches('.');
    let ty = ty_domain.trim_end_matches('.');
    let instance = match full.len().checked_sub(ty.len() + 1) {
        Some(cut)
            if full.is_char_boundary(cut)
                && full[cut..].starts_with('.')
                && full[cut + 1..].eq_ignore_ascii_case(ty) =>
        {
            &full[..cut]
        }
        _ => return None,
    };
    clean_text(instance, MAX_LABEL_CHARS)
}

/// One resolved instance, reduced to what the table keeps (pure input of [`HostTable`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Resolution {
    service: MdnsService,
    hostname: Option<String>,
    addresses: BTreeSet<Ipv4Addr>,
    hints: Vec<(String, String)>,
}

impl Resolution {
    fn from_resolved(r: &ResolvedService) -> Option<Self> {
        let service_type = service_type_name(&r.ty_domain)?;
        let instance = instance_name(&r.fullname, &r.ty_domain)?;
        let txt: Vec<(String, String)> = r
            .txt_properties
            .iter()
            .map(|p| {
                let value = p.val().map(String::from_utf8_lossy).unwrap_or_default();
                (p.key().to_owned(), value.into_owned())
            })
            .collect();
        Some(Resolution {
            service: MdnsService {
                service_type,
                instance,
                port: r.port,
            },
            hostname: clean_dns_name(&r.host, MAX_HOSTNAME_CHARS),
            addresses: r.get_addresses_v4().into_iter().collect(),
            hints: model_hints(txt.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        })
    }
}

/// A service instance in the table: (type, instance).
type InstanceKey = (String, String);
/// What the table keeps of an instance: its port and its model hints.
type InstanceValue = (u16, Vec<(String, String)>);

/// What is known of one address.
#[derive(Debug, Clone, Default)]
struct HostState {
    hostname: Option<String>,
    services: BTreeMap<InstanceKey, InstanceValue>,
}

/// The per-address view, fed with resolutions and removals; pure.
#[derive(Debug)]
struct HostTable {
    network: Cidr,
    hosts: BTreeMap<Ipv4Addr, HostState>,
}

impl HostTable {
    fn new(network: Cidr) -> Self {
        HostTable {
            network,
            hosts: BTreeMap::new(),
        }
    }

    fn in_network(&self, ip: Ipv4Addr) -> bool {
        Cidr::containing(ip, self.network.prefix) == self.network
    }

    /// Records a resolved instance at its addresses inside the network (and drops it from addresses it no
    /// longer has); returns the addresses whose view changed.
    fn apply(&mut self, r: &Resolution) -> Vec<Ipv4Addr> {
        let key = (r.service.service_type.clone(), r.service.instance.clone());
        let targets: BTreeSet<Ipv4Addr> = r
            .addresses
            .iter()
            .copied()
            .filter(|ip| self.in_network(*ip))
            .collect();
        let mut changed = self.remove_where(|ip, k| k == &key && !targets.contains(&ip));
        for ip in targets {
            let host = self.hosts.entry(ip).or_default();
            let value = (r.service.port, r.hints.clone());
            let fresh = match host.services.get(&key) {
                Some(old) => *old != value,
                None => host.services.len() < MAX_SERVICES_PER_HOST,
            };
            let mut host_changed = false;
            if fresh {
                host.services.insert(key.clone(), value);
                host_changed = true;
            }
            if host.hostname.is_none() && r.hostname.is_some() && !host.services.is_empty() {
                host.hostname = r.hostname.clone();
                host_changed = true;
            }
            if host.services.is_empty() {
                self.hosts.remove(&ip);
            }
            if host_changed && !changed.contains(&ip) {
                changed.push(ip);
            }
        }
        changed.sort();
        changed
    }

    /// Forgets an instance (`ServiceRemoved`); returns the addresses whose view changed.
    fn remove(&mut self, service_type: &str, instance: &str) -> Vec<Ipv4Addr> {
        let key = (service_type.to_owned(), instance.to_owned());
        self.remove_where(|_, k| k == &key)
    }

    fn remove_where(&mut self, doomed: impl Fn(Ipv4Addr, &InstanceKey) -> bool) -> Vec<Ipv4Addr> {
        let mut changed = Vec::new();
        for (ip, host) in self.hosts.iter_mut() {
            let before = host.services.len();
            host.services.retain(|k, _| !doomed(*ip, k));
            if host.services.len() != before {
                changed.push(*ip);
            }
        }
        self.hosts.retain(|_, h| !h.services.is_empty());
        changed
    }

    /// The view of `ip`; a host with nothing left comes back empty (no name, services or hints).
    fn host(&self, ip: Ipv4Addr) -> MdnsHost {
        let Some(state) = self.hosts.get(&ip) else {
            return MdnsHost {
                ip,
                hostname: None,
                services: Vec::new(),
                model_hints: Vec::new(),
            };
        };
        let services = state
            .services
            .iter()
            .map(|((service_type, instance), (port, _))| MdnsService {
                service_type: service_type.clone(),
                instance: instance.clone(),
                port: *port,
            })
            .collect();
        let hints: BTreeSet<(String, String)> = state
            .services
            .values()
            .flat_map(|(_, hints)| hints.iter().cloned())
            .collect();
        MdnsHost {
            ip,
            hostname: state.hostname.clone(),
            services,
            model_hints: hints.into_iter().take(MAX_HINTS_PER_HOST).collect(),
        }
    }

    fn hosts(&self) -> Vec<MdnsHost> {
        self.hosts.keys().map(|ip| self.host(*ip)).collect()
    }
}

/// Checks that `name` exists, is up and has an IPv4 address inside `network`.
fn check_interface(name: &str, network: Cidr) -> Result<(), MdnsError> {
    let iface = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == name)
        .ok_or_else(|| MdnsError::NoSuchInterface(name.to_owned()))?;
    if !iface.is_up() {
        return Err(MdnsError::Down(name.to_owned()));
    }
    let inside = iface.ips.iter().any(|n| match n.ip() {
        IpAddr::V4(ip) => Cidr::containing(ip, network.prefix) == network,
        IpAddr::V6(_) => false,
    });
    if !inside {
        return Err(MdnsError::NotInNetwork {
            iface: name.to_owned(),
            network,
        });
    }
    Ok(())
}

/// A browsing session: the daemon bound to one interface, one forwarding task per browsed type, the table.
/// Dropping it shuts the daemon down.
struct Session {
    daemon: ServiceDaemon,
    /// Browsed type → the id of its current subscription.
    browsing: HashMap<String, u64>,
    next_subscription: u64,
    forwarders: JoinSet<()>,
    /// Events tagged with the subscription they came from.
    events_tx: mpsc::Sender<(u64, ServiceEvent)>,
    events: mpsc::Receiver<(u64, ServiceEvent)>,
    table: HostTable,
}

/// How many daemon events may wait for the session.
const EVENT_QUEUE: usize = 256;

impl Session {
    /// Starts the daemon on `interface` only (IPv4) and the service-type query. Needs a tokio runtime.
    fn start(interface: &str, network: Cidr) -> Result<Self, MdnsError> {
        check_interface(interface, network)?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(MdnsError::NoRuntime);
        }
        let daemon = ServiceDaemon::new()?;
        // Selections apply in order and the last match wins: nothing, then this interface, minus IPv6. The
        // daemon handles commands in order, so no query goes out before this is in place.
        let restrict = || -> Result<(), mdns_sd::Error> {
            daemon.disable_interface(IfKind::All)?;
            daemon.enable_interface(IfKind::Name(interface.to_owned()))?;
            daemon.disable_interface(IfKind::IPv6)
        };
        if let Err(e) = restrict() {
            drop(daemon.shutdown());
            return Err(e.into());
        }
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let mut session = Session {
            daemon,
            browsing: HashMap::new(),
            next_subscription: 0,
            forwarders: JoinSet::new(),
            events_tx,
            events,
            table: HostTable::new(network),
        };
        session.browse_type(SERVICE_TYPES_QUERY)?;
        tracing::debug!(%interface, %network, "mDNS browsing started");
        Ok(session)
    }

    fn browse_type(&mut self, ty_domain: &str) -> Result<(), MdnsError> {
        if self.browsing.contains_key(ty_domain) {
            return Ok(());
        }
        // The meta-query is one of them.
        if self.browsing.len() > MAX_SERVICE_TYPES {
            tracing::debug!(
                ty_domain,
                "mDNS: too many service types, not browsing this one"
            );
            return Ok(());
        }
        let receiver = self.daemon.browse(ty_domain)?;
        let id = self.next_subscription;
        self.next_subscription += 1;
        self.browsing.insert(ty_domain.to_owned(), id);
        let tx = self.events_tx.clone();
        let ty = ty_domain.to_owned();
        self.forwarders.spawn(async move {
            while let Ok(event) = receiver.recv_async().await {
                if tx.send((id, event)).await.is_err() {
                    return;
                }
            }
            // mdns-sd ends a subscription whose channel is full (we fell far behind): say so, so the
            // session browses the type again.
            drop(tx.send((id, ServiceEvent::SearchStopped(ty))).await);
        });
        Ok(())
    }

    /// Waits for the next daemon event and handles it; returns the addresses whose view changed. A daemon that
    /// stopped shows as an error (its subscriptions end and browsing them again fails); `None` only if the
    /// event queue closed, which it does not while the session holds its sender. Cancel-safe.
    async fn step(&mut self) -> Result<Option<Vec<Ipv4Addr>>, MdnsError> {
        let Some((subscription, event)) = self.events.recv().await else {
            return Ok(None);
        };
        Ok(Some(self.handle(subscription, event)?))
    }

    fn handle(
        &mut self,
        subscription: u64,
        event: ServiceEvent,
    ) -> Result<Vec<Ipv4Addr>, MdnsError> {
        match event {
            ServiceEvent::ServiceFound(ty, fullname) if ty == SERVICE_TYPES_QUERY => {
                // The meta-query's answers are service types, e.g. `_http._tcp.local.`.
                if service_type_name(&fullname).is_some() {
                    let ty_domain = format!("{}.", fullname.trim_end_matches('.'));
                    self.browse_type(&ty_domain)?;
                } else {
                    tracing::debug!(%fullname, "mDNS: ignoring a malformed service type");
                }
                Ok(Vec::new())
            }
            ServiceEvent::ServiceResolved(resolved) => {
                if resolved.ty_domain == SERVICE_TYPES_QUERY {
                    return Ok(Vec::new());
                }
                match Resolution::from_resolved(&resolved) {
                    Some(r) => Ok(self.table.apply(&r)),
                    None => {
                        tracing::debug!(fullname = %resolved.fullname, "mDNS: ignoring a malformed instance");
                        Ok(Vec::new())
                    }
                }
            }
            ServiceEvent::ServiceRemoved(ty, fullname) => {
                match (service_type_name(&ty), instance_name(&fullname, &ty)) {
                    (Some(ty), Some(instance)) => Ok(self.table.remove(&ty, &instance)),
                    _ => Ok(Vec::new()),
                }
            }
            ServiceEvent::SearchStopped(ty) => {
                // Once per subscription (mdns-sd's own stop and the forwarder's end both say so), and only
                // while the session lives: its drop stops the forwarders before the daemon.
                if self.browsing.get(&ty) == Some(&subscription) {
                    self.browsing.remove(&ty);
                    tracing::debug!(%ty, "mDNS: browsing stopped, starting again");
                    self.browse_type(&ty)?;
                }
                Ok(Vec::new())
            }
            _ => Ok(Vec::new()),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.forwarders.abort_all();
        // Err only when it has already stopped.
        drop(self.daemon.shutdown());
    }
}

/// Browses mDNS on `interface` for `window` and returns every address inside `network` that announced
/// something, sorted by address. Needs a tokio runtime; the mdns-sd daemon thread is told to stop before
/// it returns.
pub async fn browse(
    interface: &str,
    network: Cidr,
    window: Duration,
) -> Result<Vec<MdnsHost>, MdnsError> {
    let mut session = Session::start(interface, network)?;
    let deadline = tokio::time::Instant::now() + window;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => break,
            step = session.step() => match step? {
                Some(_) => {}
                None => {
                    tracing::warn!(%interface, "the mDNS daemon stopped before the browse window ended");
                    break;
                }
            },
        }
    }
    let hosts = session.table.hosts();
    tracing::debug!(%interface, hosts = hosts.len(), "mDNS browse done");
    Ok(hosts)
}

/// Keeps browsing mDNS on one interface and sends every changed host view into a channel: each
/// [`MdnsHost`] sent is the complete current view of its address, and a view with no services means the
/// address announces nothing any more (its services were withdrawn or moved to another address).
///
/// Dropping the watcher stops it (the mdns-sd daemon thread shuts down); it also stops when the receiver of
/// the channel is dropped.
pub struct MdnsWatcher {
    task: JoinHandle<()>,
    daemon: ServiceDaemon,
}

impl MdnsWatcher {
    /// Starts watching `interface`, reporting addresses inside `network`. Must be called from inside a tokio
    /// runtime (the watcher is a task on it).
    pub fn start(
        interface: &str,
        network: Cidr,
        updates: mpsc::Sender<MdnsHost>,
    ) -> Result<Self, MdnsError> {
        let mut session = Session::start(interface, network)?;
        let daemon = session.daemon.clone();
        let iface = interface.to_owned();
        let task = tokio::spawn(async move {
            loop {
                match session.step().await {
                    Ok(Some(changed)) => {
                        for ip in changed {
                            if updates.send(session.table.host(ip)).await.is_err() {
                                tracing::debug!(interface = %iface, "mDNS watcher: nobody listens any more, stopping");
                                return;
                            }
                        }
                    }
                    Ok(None) => {
                        tracing::warn!(interface = %iface, "mDNS watcher: the mDNS daemon stopped");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(interface = %iface, "mDNS watcher stopped: {e}");
                        return;
                    }
                }
            }
        });
        Ok(MdnsWatcher { task, daemon })
    }
}

impl Drop for MdnsWatcher {
    fn drop(&mut self) {
        self.task.abort();
        drop(self.daemon.shutdown());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn net() -> Cidr {
        Cidr::containing(ip("10.77.0.0"), 24)
    }

    fn resolution(
        ty: &str,
        instance: &str,
        port: u16,
        host: &str,
        addrs: &[&str],
        hints: &[(&str, &str)],
    ) -> Resolution {
        Resolution {
            service: MdnsService {
                service_type: ty.into(),
                instance: instance.into(),
                port,
            },
            hostname: Some(host.into()),
            addresses: addrs.iter().map(|a| ip(a)).collect(),
            hints: hints
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn names_lose_trailing_dots_and_control_characters_and_are_bounded() {
        assert_eq!(
            clean_dns_name("livingroom-tv.local.", 253).as_deref(),
            Some("livingroom-tv.local")
        );
        assert_eq!(clean_dns_name("a.local..", 253).as_deref(), Some("a.local"));
        assert_eq!(
            clean_text(" Living\u{0}Room\r\n TV\u{7f} ", 63).as_deref(),
            Some("LivingRoom TV")
        );
        assert_eq!(
            clean_text("Living\tRoom\n\nTV", 63).as_deref(),
            Some("Living Room TV")
        );
        assert_eq!(clean_text("\u{1b}[31m", 10).as_deref(), Some("[31m"));
        assert_eq!(clean_text(" \t\n", 10), None);
        assert_eq!(clean_dns_name("...", 10), None);
        assert_eq!(clean_text("ééééé", 3).as_deref(), Some("ééé"));
        assert_eq!(clean_text("ab   cd", 4).as_deref(), Some("ab c"));
        assert_eq!(clean_text("abc def", 4).as_deref(), Some("abc"));
        assert_eq!(
            clean_text(&"x".repeat(1000), 253).map(|s| s.len()),
            Some(253)
        );
        // Text keeps its dots; only DNS names lose them.
        assert_eq!(clean_text("Mr. T.", 10).as_deref(), Some("Mr. T."));
    }

    #[test]
    fn only_allow_listed_txt_keys_become_model_hints() {
        let txt = [
            ("model", "BRAVIA-XR"),
            ("MD", "Chromecast"),
            ("usb_mdl", "LaserJet\u{0} Pro"),
            ("ty", "HP LaserJet Pro M404"),
            ("txtvers", "1"),
            ("id", "aa:bb:cc"),
            ("am", ""),
            ("path", "/"),
        ];
        assert_eq!(
            model_hints(txt),
            vec![
                ("model".to_owned(), "BRAVIA-XR".to_owned()),
                ("md".to_owned(), "Chromecast".to_owned()),
                ("usb_MDL".to_owned(), "LaserJet Pro".to_owned()),
                ("ty".to_owned(), "HP LaserJet Pro M404".to_owned()),
            ]
        );
        let long = "y".repeat(500);
        assert_eq!(
            model_hints([("model", long.as_str())])[0].1.len(),
            MAX_HINT_VALUE_CHARS
        );
    }

    #[test]
    fn service_types_and_instance_names() {
        assert_eq!(
            service_type_name("_http._tcp.local.").as_deref(),
            Some("_http._tcp")
        );
        assert_eq!(
            service_type_name("_Printer._TCP.local").as_deref(),
            Some("_Printer._TCP")
        );
        assert_eq!(service_type_name("_services._dns-sd._udp.local."), None);
        assert_eq!(service_type_name("http._tcp.local."), None);
        assert_eq!(service_type_name("_http._sctp.local."), None);
        assert_eq!(service_type_name("_http._tcp.example.com."), None);
        assert_eq!(service_type_name("_._tcp.local."), None);
        assert_eq!(
            instance_name("Living Room TV._http._tcp.local.", "_http._tcp.local.").as_deref(),
            Some("Living Room TV")
        );
        assert_eq!(
            instance_name("Dr. Who's box._ipp._tcp.local.", "_ipp._tcp.local.").as_deref(),
            Some("Dr. Who's box")
        );
        assert_eq!(
            instance_name("Télé._HTTP._tcp.local.", "_http._tcp.local.").as_deref(),
            Some("Télé")
        );
        assert_eq!(
            instance_name("_http._tcp.local.", "_http._tcp.local."),
            None
        );
        assert_eq!(
            instance_name("x._ipp._tcp.local.", "_http._tcp.local."),
            None
        );
        assert_eq!(
            instance_name("\u{1}._http._tcp.local.", "_http._tcp.local."),
            None
        );
    }

    #[test]
    fn the_table_maps_instances_to_addresses_inside_the_network() {
        let mut t = HostTable::new(net());
        let tv = resolution(
            "_http._tcp",
            "Living Room TV",
            8080,
            "tv.local",
            &["10.77.0.11", "192.168.9.9"],
            &[("model", "BRAVIA-XR")],
        );
        assert_eq!(t.apply(&tv), vec![ip("10.77.0.11")]);
        // Same again: nothing changed.
        assert_eq!(t.apply(&tv), Vec::<Ipv4Addr>::new());
        let cast = resolution(
            "_googlecast._tcp",
            "TV-1234",
            8009,
            "other-name.local",
            &["10.77.0.11"],
            &[("md", "Chromecast"), ("model", "BRAVIA-XR")],
        );
        assert_eq!(t.apply(&cast), vec![ip("10.77.0.11")]);
        let hosts = t.hosts();
        assert_eq!(hosts.len(), 1, "{hosts:?}");
        let h = &hosts[0];
        assert_eq!(h.ip, ip("10.77.0.11"));
        // The first name heard stays.
        assert_eq!(h.hostname.as_deref(), Some("tv.local"));
        assert_eq!(
            h.services,
            vec![
                MdnsService {
                    service_type: "_googlecast._tcp".into(),
                    instance: "TV-1234".into(),
                    port: 8009
                },
                MdnsService {
                    service_type: "_http._tcp".into(),
                    instance: "Living Room TV".into(),
                    port: 8080
                },
            ]
        );
        assert_eq!(
            h.model_hints,
            vec![
                ("md".to_owned(), "Chromecast".to_owned()),
                ("model".to_owned(), "BRAVIA-XR".to_owned())
            ]
        );
        assert_eq!(t.host(ip("10.77.0.99")).services, vec![]);
    }

    #[test]
    fn moved_and_removed_instances_leave_their_old_address() {
        let mut t = HostTable::new(net());
        let printer = |addr: &str| {
            resolution(
                "_ipp._tcp",
                "Office",
                631,
                "prn.local",
                &[addr],
                &[("ty", "M404")],
            )
        };
        t.apply(&printer("10.77.0.20"));
        // DHCP gave it a new address: both views change, the old one becomes empty.
        assert_eq!(
            t.apply(&printer("10.77.0.21")),
            vec![ip("10.77.0.20"), ip("10.77.0.21")]
        );
        let old = t.host(ip("10.77.0.20"));
        assert_eq!(
            (old.hostname, old.services.len(), old.model_hints.len()),
            (None, 0, 0)
        );
        assert_eq!(t.hosts().len(), 1);
        // A port change is a change.
        let mut moved = printer("10.77.0.21");
        moved.service.port = 632;
        assert_eq!(t.apply(&moved), vec![ip("10.77.0.21")]);
        assert_eq!(t.remove("_ipp._tcp", "Office"), vec![ip("10.77.0.21")]);
        assert!(t.hosts().is_empty());
        assert_eq!(t.remove("_ipp._tcp", "Office"), Vec::<Ipv4Addr>::new());
        // Outside the network only: nothing recorded.
        assert_eq!(t.apply(&printer("10.78.0.1")), Vec::<Ipv4Addr>::new());
        assert!(t.hosts().is_empty());
    }

    #[test]
    fn a_host_keeps_a_bounded_number_of_services_and_hints() {
        let mut t = HostTable::new(net());
        for i in 0..(MAX_SERVICES_PER_HOST + 10) {
            let hint = format!("m{i}");
            let r = resolution(
                "_http._tcp",
                &format!("svc {i}"),
                80,
                "h.local",
                &["10.77.0.5"],
                &[("model", hint.as_str())],
            );
            t.apply(&r);
        }
        let h = t.host(ip("10.77.0.5"));
        assert_eq!(h.services.len(), MAX_SERVICES_PER_HOST);
        assert_eq!(h.model_hints.len(), MAX_HINTS_PER_HOST);
    }

    #[tokio::test]
    async fn a_missing_interface_is_named() {
        let err = browse("outpost-nope0", net(), Duration::from_millis(10))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("interface outpost-nope0 does not exist"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_interface_without_an_address_in_the_network_is_refused() {
        // Loopback has 127.0.0.1, not 10.77.0.0/24: refused before any daemon starts.
        let err = browse("lo", net(), Duration::from_millis(10))
            .await
            .unwrap_err();
        assert!(matches!(err, MdnsError::NotInNetwork { .. }), "{err}");
        assert!(
            err.to_string().contains("no IPv4 address in 10.77.0.0/24"),
            "{err}"
        );
    }
}
