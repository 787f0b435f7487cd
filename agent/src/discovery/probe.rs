//! Liveness of known devices right now: an ARP who-has to each (what a host firewall cannot hide) and an
//! ICMP echo (extra, often filtered), with round-trip times. Says only who answered this time; deciding
//! online/offline over several probes (hysteresis) is the inventory's job.
//!
//! - [`ArpProbe`]: the ARP half as a pure state machine (paced requests, a short wait, retries for those
//!   that did not answer, an early end when everyone did); [`run_arp`] drives it over a [`Link`].
//! - [`results`]: pure merge of the ARP answers and ICMP RTTs into one [`ProbeResult`] per target. An ARP
//!   answer from another MAC than the expected one is reported as [`ProbeResult::arp_other_mac`], never as
//!   the device.
//! - [`probe`]: both halves on one interface: ARP on a blocking thread over [`PacketLink`], then ICMP with
//!   `surge-ping`, every target at once, on a socket bound to the interface (`SO_BINDTODEVICE`). Without
//!   the right to open an ICMP socket the ARP results are kept and [`ProbeReport::icmp_unavailable`] says
//!   why.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pnet_datalink::MacAddr;
use pnet_packet::icmp::IcmpTypes;
use surge_ping::{Client, Config as PingConfig, IcmpPacket, PingIdentifier, PingSequence, ICMP};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::arp;
use super::datalink::{Link, LinkError, PacketLink};
use super::sweep::Step;

/// A device to probe: the address it had and the MAC it answered with before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeTarget {
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
}

/// What one target did during one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeResult {
    pub ip: Ipv4Addr,
    /// The expected MAC (the target's).
    pub mac: MacAddr,
    /// The expected MAC answered ARP for `ip`, this long after the last request sent to it.
    pub arp_rtt: Option<Duration>,
    /// Another MAC answered ARP for `ip` (the first such one): the address moved to another device, or two
    /// devices claim it. Not counted as the device answering.
    pub arp_other_mac: Option<MacAddr>,
    /// `ip` answered an ICMP echo this long after the request. Says the address answered, not which MAC:
    /// when [`Self::arp_other_mac`] is set it may be the other device.
    pub icmp_rtt: Option<Duration>,
}

impl ProbeResult {
    /// The device itself answered: ARP from its MAC, or an ICMP echo while no other MAC claims its address.
    pub fn alive(&self) -> bool {
        self.arp_rtt.is_some() || (self.icmp_rtt.is_some() && self.arp_other_mac.is_none())
    }
}

/// A whole probe.
#[derive(Debug)]
pub struct ProbeReport {
    /// One per target, in the order given.
    pub results: Vec<ProbeResult>,
    /// Why no ICMP echo could be sent at all (then every `icmp_rtt` is `None`); the ARP results stand.
    /// `None` when ICMP ran, or was turned off in [`ProbeConfig::icmp`].
    pub icmp_unavailable: Option<IcmpError>,
}

/// How long to wait and how often to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeConfig {
    /// After the last ARP request of a round, wait this long for replies.
    pub arp_timeout: Duration,
    /// Extra ARP rounds for targets whose expected MAC did not answer.
    pub arp_retries: u32,
    /// Gap between two ARP requests (1 ms: 1,000 requests per second).
    pub arp_interval: Duration,
    /// Send ICMP echoes too.
    pub icmp: bool,
    /// How long to wait for each echo reply.
    pub icmp_timeout: Duration,
    /// Echo requests per target, one after the other until one is answered (at least 1).
    pub icmp_attempts: u16,
    /// Targets pinged at the same time.
    pub icmp_concurrency: usize,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            arp_timeout: Duration::from_millis(200),
            arp_retries: 1,
            arp_interval: Duration::from_millis(1),
            icmp: true,
            icmp_timeout: Duration::from_millis(500),
            icmp_attempts: 2,
            icmp_concurrency: 256,
        }
    }
}

/// A probe that could not run.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The interface cannot be used for ARP (missing, down, no address, no CAP_NET_RAW...).
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("the ARP probe on {iface} stopped unexpectedly: {reason}")]
    Task { iface: String, reason: String },
}

/// Why ICMP echo could not be used on an interface.
#[derive(Debug, thiserror::Error)]
pub enum IcmpError {
    #[error("ICMP echo on {iface}: permission denied opening an ICMP socket (the agent needs CAP_NET_RAW, or net.ipv4.ping_group_range covering its group); ARP results are still valid")]
    PermissionDenied { iface: String },
    #[error("ICMP echo on {iface}: cannot open an ICMP socket bound to the interface: {source}")]
    Socket { iface: String, source: io::Error },
}

impl IcmpError {
    fn from_io(iface: &str, e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::PermissionDenied {
            Self::PermissionDenied {
                iface: iface.to_owned(),
            }
        } else {
            Self::Socket {
                iface: iface.to_owned(),
                source: e,
            }
        }
    }
}

/// What an ARP reply meant to the probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpReply {
    /// An expected MAC answered for the first time.
    Expected,
    /// A MAC not expected for this address answered for the first time.
    OtherMac,
    /// This MAC had already answered for this address.
    Repeat,
    /// Not a target, or no request sent to it yet: ignored.
    Ignored,
}

/// One address the ARP half asks about.
#[derive(Debug, Clone)]
struct Asked {
    ip: Ipv4Addr,
    expected: Vec<MacAddr>,
    last_sent: Option<Instant>,
    /// Each MAC that answered, once, with the RTT of its first answer.
    answers: Vec<(MacAddr, Duration)>,
}

impl Asked {
    fn complete(&self) -> bool {
        self.expected
            .iter()
            .all(|m| self.answers.iter().any(|(a, _)| a == m))
    }
}

/// The ARP half as a pure state machine: the caller passes the time in ([`Self::poll`],
/// [`Self::on_reply`]) and does the I/O. Each round sends a request to every address not yet answered by
/// all of its expected MACs, `interval` apart, then waits `timeout` after the last one; `retries` more
/// rounds follow for those still missing. It ends as soon as every expected MAC has answered.
#[derive(Debug, Clone)]
pub struct ArpProbe {
    asked: Vec<Asked>,
    index: HashMap<Ipv4Addr, usize>,
    timeout: Duration,
    interval: Duration,
    retries: u32,
    round: u32,
    queue: VecDeque<usize>,
    next_send: Option<Instant>,
    wait_until: Option<Instant>,
    done: bool,
    sent: u64,
}

impl ArpProbe {
    /// A probe of `targets` (an address given twice with two MACs expects both).
    pub fn new(targets: &[ProbeTarget], cfg: &ProbeConfig) -> Self {
        let mut asked: Vec<Asked> = Vec::new();
        let mut index = HashMap::new();
        for t in targets {
            let i = *index.entry(t.ip).or_insert_with(|| {
                asked.push(Asked {
                    ip: t.ip,
                    expected: Vec::new(),
                    last_sent: None,
                    answers: Vec::new(),
                });
                asked.len() - 1
            });
            if !asked[i].expected.contains(&t.mac) {
                asked[i].expected.push(t.mac);
            }
        }
        let queue = (0..asked.len()).collect();
        Self {
            asked,
            index,
            timeout: cfg.arp_timeout,
            interval: cfg.arp_interval,
            retries: cfg.arp_retries,
            round: 0,
            queue,
            next_send: None,
            wait_until: None,
            done: false,
            sent: 0,
        }
    }

    /// What to do at `now`. A [`Step::Send`] counts as sent at `now`.
    pub fn poll(&mut self, now: Instant) -> Step {
        loop {
            if self.done {
                return Step::Done;
            }
            if !self.queue.is_empty() {
                if let Some(at) = self.next_send.filter(|at| now < *at) {
                    return Step::WaitUntil(at);
                }
                let Some(i) = self.queue.pop_front() else {
                    continue;
                };
                self.asked[i].last_sent = Some(now);
                self.sent += 1;
                self.next_send = Some(now + self.interval);
                if self.queue.is_empty() {
                    self.wait_until = Some(now + self.timeout);
                }
                return Step::Send(self.asked[i].ip);
            }
            if self.asked.iter().all(Asked::complete) {
                self.done = true;
                continue;
            }
            if let Some(at) = self.wait_until.filter(|at| now < *at) {
                return Step::WaitUntil(at);
            }
            if self.round >= self.retries {
                self.done = true;
                continue;
            }
            self.round += 1;
            self.queue = (0..self.asked.len())
                .filter(|i| !self.asked[*i].complete())
                .collect();
            self.next_send = None;
        }
    }

    /// A reply that arrived at `at`: `ip` is at `mac`. The RTT counts from the last request sent to `ip`.
    pub fn on_reply(&mut self, at: Instant, ip: Ipv4Addr, mac: MacAddr) -> ArpReply {
        let Some(asked) = self.index.get(&ip).map(|i| &mut self.asked[*i]) else {
            return ArpReply::Ignored;
        };
        let Some(sent) = asked.last_sent else {
            return ArpReply::Ignored;
        };
        if asked.answers.iter().any(|(m, _)| *m == mac) {
            return ArpReply::Repeat;
        }
        asked
            .answers
            .push((mac, at.saturating_duration_since(sent)));
        if asked.expected.contains(&mac) {
            ArpReply::Expected
        } else {
            ArpReply::OtherMac
        }
    }

    /// Requests sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Extra rounds started so far.
    pub fn retries_used(&self) -> u32 {
        self.round
    }

    /// Every MAC that answered for each address, in the order they answered, with its RTT.
    pub fn answers(&self) -> HashMap<Ipv4Addr, Vec<(MacAddr, Duration)>> {
        self.asked
            .iter()
            .map(|a| (a.ip, a.answers.clone()))
            .collect()
    }
}

/// Runs `probe` to its end on `link`, reading time from `now` (virtual in tests).
pub fn run_arp<L: Link + ?Sized>(
    link: &mut L,
    probe: &mut ArpProbe,
    now: &dyn Fn() -> Instant,
) -> Result<(), LinkError> {
    let local = link.local();
    let mut frame = [0u8; arp::FRAME_LEN];
    loop {
        match probe.poll(now()) {
            Step::Send(ip) => {
                arp::write_request(&mut frame, local, ip);
                link.send(&frame)?;
            }
            Step::WaitUntil(until) => {
                let Some(r) = link.recv(until.saturating_duration_since(now()))? else {
                    continue;
                };
                let Some((ip, mac)) = arp::reply_to(local, &r.frame) else {
                    continue;
                };
                match probe.on_reply(r.at, ip, mac) {
                    ArpReply::OtherMac => {
                        warn!(%ip, %mac, "ARP: an unexpected MAC answers for a probed address")
                    }
                    outcome => debug!(%ip, %mac, ?outcome, "ARP reply"),
                }
            }
            Step::Done => return Ok(()),
        }
    }
}

/// One result per target, in order: the RTT of its own MAC's ARP answer, the first other MAC that answered
/// for its address, and its address's ICMP RTT.
pub fn results(
    targets: &[ProbeTarget],
    arp: &HashMap<Ipv4Addr, Vec<(MacAddr, Duration)>>,
    icmp: &HashMap<Ipv4Addr, Duration>,
) -> Vec<ProbeResult> {
    targets
        .iter()
        .map(|t| {
            let answers = arp.get(&t.ip).map(Vec::as_slice).unwrap_or_default();
            ProbeResult {
                ip: t.ip,
                mac: t.mac,
                arp_rtt: answers.iter().find(|(m, _)| *m == t.mac).map(|(_, d)| *d),
                arp_other_mac: answers.iter().map(|(m, _)| *m).find(|m| *m != t.mac),
                icmp_rtt: icmp.get(&t.ip).copied(),
            }
        })
        .collect()
}

/// Probes `targets` on `interface`: ARP first (on a blocking thread), then ICMP echo. Fails only when ARP
/// cannot run; ICMP that cannot run is reported in [`ProbeReport::icmp_unavailable`].
pub async fn probe(
    interface: &str,
    targets: &[ProbeTarget],
    cfg: &ProbeConfig,
) -> Result<ProbeReport, ProbeError> {
    if targets.is_empty() {
        return Ok(ProbeReport {
            results: Vec::new(),
            icmp_unavailable: None,
        });
    }
    let started = Instant::now();
    let mut arp_probe = ArpProbe::new(targets, cfg);
    let iface = interface.to_owned();
    let arp_probe = tokio::task::spawn_blocking(move || -> Result<ArpProbe, LinkError> {
        let mut link = PacketLink::open(&iface)?;
        run_arp(&mut link, &mut arp_probe, &Instant::now)?;
        Ok(arp_probe)
    })
    .await
    .map_err(|e| ProbeError::Task {
        iface: interface.to_owned(),
        reason: e.to_string(),
    })??;
    let arp_elapsed = started.elapsed();

    let mut ips: Vec<Ipv4Addr> = targets.iter().map(|t| t.ip).collect();
    ips.sort_unstable();
    ips.dedup();
    let (icmp, icmp_unavailable) = if cfg.icmp {
        match ping_all(interface, &ips, cfg).await {
            Ok(rtts) => (rtts, None),
            Err(e) => {
                warn!(error = %e, "ICMP probe unavailable; keeping the ARP results");
                (HashMap::new(), Some(e))
            }
        }
    } else {
        (HashMap::new(), None)
    };
    let results = results(targets, &arp_probe.answers(), &icmp);
    debug!(
        interface,
        targets = targets.len(),
        arp_sent = arp_probe.sent(),
        arp_retries = arp_probe.retries_used(),
        arp_answered = results.iter().filter(|r| r.arp_rtt.is_some()).count(),
        icmp_answered = icmp.len(),
        ?arp_elapsed,
        elapsed = ?started.elapsed(),
        "probe done"
    );
    Ok(ProbeReport {
        results,
        icmp_unavailable,
    })
}

/// Bytes carried by each echo request.
const PAYLOAD: &[u8; 16] = b"outpost-probe-v1";

/// An echo identifier for this probe: raw ICMP sockets see every echo reply of the namespace, the identifier
/// tells ours apart (datagram ICMP sockets get theirs from the kernel).
fn next_ident() -> PingIdentifier {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = (std::process::id() as u16).rotate_left(5);
    PingIdentifier(base ^ NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Pings every address of `ips` at once (at most `icmp_concurrency` in flight) from a socket bound to
/// `interface`; the RTT of each address that answered an echo.
async fn ping_all(
    interface: &str,
    ips: &[Ipv4Addr],
    cfg: &ProbeConfig,
) -> Result<HashMap<Ipv4Addr, Duration>, IcmpError> {
    let config = PingConfig::builder()
        .kind(ICMP::V4)
        .interface(interface)
        .build();
    let client = Client::new(&config).map_err(|e| IcmpError::from_io(interface, e))?;
    let ident = next_ident();
    let permits = Arc::new(Semaphore::new(cfg.icmp_concurrency.max(1)));
    let attempts = cfg.icmp_attempts.max(1);
    let timeout = cfg.icmp_timeout;
    let mut tasks = JoinSet::new();
    for &ip in ips {
        let client = client.clone();
        let permits = Arc::clone(&permits);
        tasks.spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return (ip, None);
            };
            let mut pinger = client.pinger(IpAddr::V4(ip), ident).await;
            pinger.timeout(timeout);
            for seq in 0..attempts {
                match pinger.ping(PingSequence(seq), PAYLOAD).await {
                    Ok((IcmpPacket::V4(reply), rtt))
                        if reply.get_icmp_type() == IcmpTypes::EchoReply =>
                    {
                        return (ip, Some(rtt));
                    }
                    Ok((reply, _)) => debug!(%ip, ?reply, "ICMP: not an echo reply"),
                    Err(e) => debug!(%ip, seq, error = %e, "ICMP: no echo reply"),
                }
            }
            (ip, None)
        });
    }
    let mut rtts = HashMap::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((ip, Some(rtt))) => {
                rtts.insert(ip, rtt);
            }
            Ok((_, None)) => {}
            Err(e) => warn!(error = %e, "ICMP: a ping task failed"),
        }
    }
    Ok(rtts)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;
    use crate::discovery::arp::{Arp, Local};
    use crate::discovery::datalink::Received;

    const LOCAL: Local = Local {
        mac: MacAddr(0x02, 0, 0, 0, 0, 1),
        ip: Ipv4Addr::new(10, 9, 0, 1),
    };

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 9, 0, last)
    }

    fn mac(last: u8) -> MacAddr {
        MacAddr(0x00, 0x1a, 0x11, 0, 0, last)
    }

    fn target(last: u8) -> ProbeTarget {
        ProbeTarget {
            ip: ip(last),
            mac: mac(last),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn results_pair_each_target_with_its_own_answer() {
        let targets = [target(5), target(6), target(7), target(8)];
        let arp = HashMap::from([
            (ip(5), vec![(mac(5), ms(1))]),
            // .6 is answered by another device only.
            (ip(6), vec![(mac(66), ms(2))]),
            // .7: another MAC first, then the expected one.
            (ip(7), vec![(mac(77), ms(1)), (mac(7), ms(3))]),
            (ip(8), vec![]),
        ]);
        let icmp = HashMap::from([(ip(5), ms(4)), (ip(6), ms(5))]);
        let r = results(&targets, &arp, &icmp);
        assert_eq!(
            r[0],
            ProbeResult {
                ip: ip(5),
                mac: mac(5),
                arp_rtt: Some(ms(1)),
                arp_other_mac: None,
                icmp_rtt: Some(ms(4)),
            }
        );
        assert_eq!(
            (r[1].arp_rtt, r[1].arp_other_mac, r[1].icmp_rtt),
            (None, Some(mac(66)), Some(ms(5)))
        );
        assert!(
            !r[1].alive(),
            "an echo from an address another MAC claims is not the device"
        );
        assert_eq!(
            (r[2].arp_rtt, r[2].arp_other_mac),
            (Some(ms(3)), Some(mac(77)))
        );
        assert!(r[2].alive());
        assert_eq!(
            (r[3].arp_rtt, r[3].arp_other_mac, r[3].icmp_rtt),
            (None, None, None)
        );
        assert!(!r[3].alive());
        // ICMP alone (ARP lost, nobody else claims the address) still counts.
        let r = results(
            &[target(9)],
            &HashMap::new(),
            &HashMap::from([(ip(9), ms(1))]),
        );
        assert!(r[0].alive());
    }

    #[test]
    fn the_arp_schedule_paces_retries_and_ends_early() {
        let cfg = ProbeConfig {
            arp_timeout: ms(200),
            arp_retries: 1,
            arp_interval: ms(1),
            ..ProbeConfig::default()
        };
        let t0 = Instant::now();
        let mut p = ArpProbe::new(&[target(5), target(6), target(5)], &cfg);
        // A reply before any request is not an answer.
        assert_eq!(p.on_reply(t0, ip(5), mac(5)), ArpReply::Ignored);
        assert_eq!(p.poll(t0), Step::Send(ip(5)));
        assert_eq!(p.poll(t0), Step::WaitUntil(t0 + ms(1)));
        assert_eq!(p.poll(t0 + ms(1)), Step::Send(ip(6)));
        assert_eq!(p.poll(t0 + ms(1)), Step::WaitUntil(t0 + ms(201)));
        assert_eq!(p.on_reply(t0 + ms(3), ip(5), mac(5)), ArpReply::Expected);
        assert_eq!(p.on_reply(t0 + ms(4), ip(5), mac(5)), ArpReply::Repeat);
        assert_eq!(p.on_reply(t0 + ms(4), ip(9), mac(9)), ArpReply::Ignored);
        assert_eq!(p.on_reply(t0 + ms(5), ip(6), mac(60)), ArpReply::OtherMac);
        // The round's wait ends; only .6 (its own MAC is still missing) is asked again.
        assert_eq!(p.poll(t0 + ms(201)), Step::Send(ip(6)));
        assert_eq!(p.poll(t0 + ms(201)), Step::WaitUntil(t0 + ms(401)));
        // Its own MAC answers the retry: everyone has answered, no need to wait longer.
        assert_eq!(p.on_reply(t0 + ms(203), ip(6), mac(6)), ArpReply::Expected);
        assert_eq!(p.poll(t0 + ms(203)), Step::Done);
        assert_eq!(p.sent(), 3);
        assert_eq!(p.retries_used(), 1);
        let answers = p.answers();
        assert_eq!(answers[&ip(5)], vec![(mac(5), ms(3))]);
        // The RTT counts from the last request.
        assert_eq!(answers[&ip(6)], vec![(mac(60), ms(4)), (mac(6), ms(2))]);
    }

    #[test]
    fn silent_targets_get_one_retry_then_the_probe_ends() {
        let cfg = ProbeConfig::default();
        let t0 = Instant::now();
        let mut p = ArpProbe::new(&[target(5)], &cfg);
        assert_eq!(p.poll(t0), Step::Send(ip(5)));
        assert_eq!(p.poll(t0 + ms(200)), Step::Send(ip(5)));
        assert_eq!(p.poll(t0 + ms(300)), Step::WaitUntil(t0 + ms(400)));
        assert_eq!(p.poll(t0 + ms(400)), Step::Done);
        assert_eq!(p.sent(), 2);
        assert_eq!(ArpProbe::new(&[], &cfg).poll(t0), Step::Done);
    }

    /// A fake LAN on a virtual clock: each host answers who-has for its address after its latency, from
    /// its MAC, unless it drops the first `deaf_for` requests.
    struct FakeLan {
        clock: Rc<Cell<Instant>>,
        hosts: Vec<FakeHost>,
        queue: Vec<Received>,
        sent: Vec<Ipv4Addr>,
    }

    struct FakeHost {
        ip: Ipv4Addr,
        mac: MacAddr,
        latency: Duration,
        deaf_for: u32,
    }

    fn frame_reply(ip: Ipv4Addr, mac: MacAddr, to: Local) -> Vec<u8> {
        let mut f = arp::request(Local { mac, ip }, to.ip).to_vec();
        f[0..6].copy_from_slice(&to.mac.octets());
        f[20..22].copy_from_slice(&[0, 2]);
        f[32..38].copy_from_slice(&to.mac.octets());
        f
    }

    impl Link for FakeLan {
        fn local(&self) -> Local {
            LOCAL
        }

        fn send(&mut self, frame: &[u8]) -> Result<(), LinkError> {
            // Our own request comes back on an AF_PACKET socket: the probe must ignore it.
            self.queue.push(Received {
                at: self.clock.get(),
                frame: frame.to_vec(),
            });
            if let Some(Arp::Request { target_ip, .. }) = arp::parse(frame) {
                self.sent.push(target_ip);
                for h in self.hosts.iter_mut().filter(|h| h.ip == target_ip) {
                    if h.deaf_for > 0 {
                        h.deaf_for -= 1;
                        continue;
                    }
                    self.queue.push(Received {
                        at: self.clock.get() + h.latency,
                        frame: frame_reply(h.ip, h.mac, LOCAL),
                    });
                }
            }
            Ok(())
        }

        fn recv(&mut self, timeout: Duration) -> Result<Option<Received>, LinkError> {
            self.queue.sort_by_key(|r| r.at);
            let until = self.clock.get() + timeout;
            if self.queue.first().is_some_and(|r| r.at <= until) {
                let r = self.queue.remove(0);
                self.clock.set(self.clock.get().max(r.at));
                return Ok(Some(r));
            }
            self.clock.set(until);
            Ok(None)
        }
    }

    #[test]
    fn a_fake_lan_is_probed_on_virtual_time() {
        let t0 = Instant::now();
        let clock = Rc::new(Cell::new(t0));
        let host = |last: u8, mac: MacAddr, latency_us: u64, deaf_for: u32| FakeHost {
            ip: ip(last),
            mac,
            latency: Duration::from_micros(latency_us),
            deaf_for,
        };
        let mut lan = FakeLan {
            clock: Rc::clone(&clock),
            hosts: vec![
                host(5, mac(5), 300, 0),
                // Loses the first request: found by the retry.
                host(6, mac(6), 400, 1),
                // .7 is gone; another device took its address.
                host(7, mac(70), 500, 0),
                // .8 is silent.
            ],
            queue: Vec::new(),
            sent: Vec::new(),
        };
        let targets = [target(5), target(6), target(7), target(8)];
        let cfg = ProbeConfig::default();
        let mut p = ArpProbe::new(&targets, &cfg);
        let c = Rc::clone(&clock);
        run_arp(&mut lan, &mut p, &move || c.get()).unwrap();
        let r = results(&targets, &p.answers(), &HashMap::new());
        let rtt = Duration::from_micros;
        assert_eq!(r[0].arp_rtt, Some(rtt(300)));
        assert_eq!(r[1].arp_rtt, Some(rtt(400)));
        assert_eq!((r[2].arp_rtt, r[2].arp_other_mac), (None, Some(mac(70))));
        assert_eq!((r[3].arp_rtt, r[3].arp_other_mac), (None, None));
        assert_eq!(r.iter().filter(|r| r.alive()).count(), 2);
        // Round 1: four requests 1 ms apart; round 2: the three whose MAC did not answer.
        assert_eq!(lan.sent, [ip(5), ip(6), ip(7), ip(8), ip(6), ip(7), ip(8)]);
        // Each round waits 200 ms after its last request: 3 ms + 200 ms, then 2 ms + 200 ms.
        assert_eq!(clock.get() - t0, ms(405));
    }

    #[test]
    fn a_probe_ends_as_soon_as_everyone_answered() {
        let t0 = Instant::now();
        let clock = Rc::new(Cell::new(t0));
        let mut lan = FakeLan {
            clock: Rc::clone(&clock),
            hosts: vec![FakeHost {
                ip: ip(5),
                mac: mac(5),
                latency: ms(2),
                deaf_for: 0,
            }],
            queue: Vec::new(),
            sent: Vec::new(),
        };
        let mut p = ArpProbe::new(&[target(5)], &ProbeConfig::default());
        let c = Rc::clone(&clock);
        run_arp(&mut lan, &mut p, &move || c.get()).unwrap();
        assert_eq!(clock.get() - t0, ms(2));
        assert_eq!(p.answers()[&ip(5)], vec![(mac(5), ms(2))]);
    }

    #[test]
    fn icmp_socket_errors_say_what_to_do() {
        let e = IcmpError::from_io("lan0", io::Error::from(io::ErrorKind::PermissionDenied));
        let msg = e.to_string();
        assert!(matches!(e, IcmpError::PermissionDenied { .. }));
        assert!(msg.contains("CAP_NET_RAW") && msg.contains("lan0"), "{msg}");
        let e = IcmpError::from_io("lan0", io::Error::from_raw_os_error(19));
        assert!(matches!(e, IcmpError::Socket { .. }), "{e}");
    }

    #[tokio::test]
    async fn an_icmp_socket_that_cannot_be_opened_is_a_typed_error() {
        // SO_BINDTODEVICE to a missing interface fails (ENODEV as root, EPERM/EACCES without CAP_NET_RAW).
        let err = ping_all("no-such-if0", &[ip(5)], &ProbeConfig::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no-such-if0"), "{err}");
    }

    #[tokio::test]
    async fn no_targets_is_an_empty_report_without_touching_the_network() {
        let report = probe("no-such-iface", &[], &ProbeConfig::default())
            .await
            .unwrap();
        assert!(report.results.is_empty() && report.icmp_unavailable.is_none());
    }

    #[tokio::test]
    async fn a_missing_interface_is_a_link_error() {
        let err = probe("no-such-if0", &[target(5)], &ProbeConfig::default())
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("interface no-such-if0 does not exist"),
            "{err}"
        );
    }
}
