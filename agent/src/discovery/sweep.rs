//! The ARP sweep as a pure state machine: which addresses to ask, when to send the next request (a fixed
//! packets-per-second rate), which addresses get another round, and when to stop. No sockets and no clock
//! reads: the caller passes the time in ([`Sweep::poll`], [`Sweep::on_reply`]) and does the I/O.
//!
//! The end is adaptive: after the last request of a round, the sweep waits only until no reply has come
//! for a quiet period of `max(3 × p95 RTT, 30 ms)`, capped at 500 ms (the cap is also the wait before any
//! reply has been seen), instead of a fixed long timeout.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::time::{Duration, Instant};

use pnet_datalink::MacAddr;

/// The largest CIDR a sweep accepts without an explicit range.
pub const MAX_CIDR_PREFIX: u8 = 16;
/// The most addresses an explicit range may hold (a /12).
pub const MAX_RANGE_ADDRESSES: u64 = 1 << 20;

/// A bad `--cidr`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("{0:?} is neither a CIDR (192.168.1.0/24) nor a range (192.168.1.10-192.168.1.99)")]
    Syntax(String),
    #[error("{0} is larger than /{MAX_CIDR_PREFIX}: give --cidr with a smaller range (or an explicit range A-B)")]
    TooLarge(Cidr),
    #[error("the range {0}-{1} is backwards: give the lower address first")]
    Backwards(Ipv4Addr, Ipv4Addr),
    #[error("the range {0}-{1} holds {2} addresses, more than {MAX_RANGE_ADDRESSES}: split it")]
    RangeTooLarge(Ipv4Addr, Ipv4Addr, u64),
}

/// An IPv4 network, normalized to its network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    /// The network holding `ip` with `prefix` bits (`prefix` is clamped to 32).
    pub fn containing(ip: Ipv4Addr, prefix: u8) -> Self {
        let prefix = prefix.min(32);
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        Self {
            network: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// What to sweep: a CIDR (its hosts, without the network and broadcast addresses when there are any) or an
/// explicit inclusive range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Targets {
    Cidr(Cidr),
    Range(Ipv4Addr, Ipv4Addr),
}

impl Targets {
    /// A CIDR sweep, refused when larger than /16.
    pub fn cidr(cidr: Cidr) -> Result<Self, TargetError> {
        if cidr.prefix < MAX_CIDR_PREFIX {
            return Err(TargetError::TooLarge(cidr));
        }
        Ok(Self::Cidr(cidr))
    }

    /// An explicit range, refused when backwards or larger than [`MAX_RANGE_ADDRESSES`].
    pub fn range(from: Ipv4Addr, to: Ipv4Addr) -> Result<Self, TargetError> {
        let (a, b) = (u32::from(from), u32::from(to));
        if a > b {
            return Err(TargetError::Backwards(from, to));
        }
        let n = u64::from(b - a) + 1;
        if n > MAX_RANGE_ADDRESSES {
            return Err(TargetError::RangeTooLarge(from, to, n));
        }
        Ok(Self::Range(from, to))
    }

    /// Every address to ask, in order, without `exclude` (our own address).
    pub fn addresses(&self, exclude: Ipv4Addr) -> Vec<Ipv4Addr> {
        let (first, last) = match *self {
            Self::Cidr(c) => {
                let base = u32::from(c.network);
                let size = 1u64 << (32 - u32::from(c.prefix));
                let top = (u64::from(base) + size - 1) as u32;
                if c.prefix >= 31 {
                    (base, top)
                } else {
                    (base + 1, top - 1)
                }
            }
            Self::Range(a, b) => (u32::from(a), u32::from(b)),
        };
        (first..=last)
            .map(Ipv4Addr::from)
            .filter(|ip| *ip != exclude)
            .collect()
    }
}

impl FromStr for Targets {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || TargetError::Syntax(s.to_owned());
        if let Some((a, b)) = s.split_once('-') {
            let from = a.trim().parse().map_err(|_| syntax())?;
            let to = b.trim().parse().map_err(|_| syntax())?;
            return Self::range(from, to);
        }
        let (ip, prefix) = s.split_once('/').ok_or_else(syntax)?;
        let ip: Ipv4Addr = ip.trim().parse().map_err(|_| syntax())?;
        let prefix: u8 = prefix
            .trim()
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(syntax)?;
        Self::cidr(Cidr::containing(ip, prefix))
    }
}

impl fmt::Display for Targets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cidr(c) => c.fmt(f),
            Self::Range(a, b) => write!(f, "{a}-{b}"),
        }
    }
}

/// How fast and how long to sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepConfig {
    /// ARP requests per second (at least 1).
    pub rate_pps: u32,
    /// Extra rounds for addresses that did not answer.
    pub retries: u32,
    /// Quiet period floor.
    pub min_quiet: Duration,
    /// Quiet period cap, and the quiet period before any reply was seen.
    pub max_quiet: Duration,
    /// Quiet period = this × the 95th-percentile RTT (within the floor and cap).
    pub rtt_factor: u32,
    /// How many requests may go out back to back to catch up after a stall.
    pub max_burst: u32,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            rate_pps: 2_000,
            retries: 2,
            min_quiet: Duration::from_millis(30),
            max_quiet: Duration::from_millis(500),
            rtt_factor: 3,
            max_burst: 16,
        }
    }
}

impl SweepConfig {
    /// The default rate: 2,000 requests per second, raised for big networks so that one pass over
    /// `addresses` takes about [`AUTO_PASS`], at most [`AUTO_MAX_PPS`] (a /16 gets about 21,800).
    pub fn auto_rate(addresses: usize) -> u32 {
        let per_pass = (addresses as f64 / AUTO_PASS.as_secs_f64()).ceil() as u32;
        per_pass.clamp(AUTO_MIN_PPS, AUTO_MAX_PPS)
    }
}

/// The automatic rate's floor (a /24 or /22 sweeps at this rate).
pub const AUTO_MIN_PPS: u32 = 2_000;
/// The automatic rate's ceiling: about 1.3 MB/s of broadcast ARP.
pub const AUTO_MAX_PPS: u32 = 25_000;
/// How long one pass may take before the automatic rate goes above its floor.
pub const AUTO_PASS: Duration = Duration::from_secs(3);

/// What the caller should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send a who-has for this address now (the sweep counts it as sent at the time given to `poll`).
    Send(Ipv4Addr),
    /// Wait for replies until this time, then poll again (earlier if a reply arrives).
    WaitUntil(Instant),
    /// The sweep is over: take the results.
    Done,
}

/// What a reply meant to the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyOutcome {
    /// A new host.
    New,
    /// A host already found, same MAC.
    Repeat,
    /// A host already found answered with another MAC (duplicate IP, or a proxy); the first MAC is kept.
    Conflict { kept: MacAddr },
    /// Not one of our targets, or an address not asked yet: ignored.
    Ignored,
}

/// One host that answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    /// From the most recent request to this address before its first reply.
    pub rtt: Duration,
}

#[derive(Debug, Clone, Copy, Default)]
struct Target {
    last_sent: Option<Instant>,
    found: Option<(MacAddr, Duration)>,
}

/// The sweep's state. See the module documentation.
#[derive(Debug)]
pub struct Sweep {
    cfg: SweepConfig,
    interval: Duration,
    addresses: Vec<Ipv4Addr>,
    index: HashMap<Ipv4Addr, usize>,
    targets: Vec<Target>,
    /// 0 is the first pass; up to `cfg.retries`.
    round: u32,
    /// Next position in `addresses` for the current round.
    cursor: usize,
    next_send: Option<Instant>,
    last_send: Option<Instant>,
    last_reply: Option<Instant>,
    found: usize,
    sent: u64,
    rtts: Vec<Duration>,
    quiet_cache: Option<Duration>,
}

impl Sweep {
    pub fn new(addresses: Vec<Ipv4Addr>, cfg: SweepConfig) -> Self {
        let rate = u64::from(cfg.rate_pps.max(1));
        let index = addresses
            .iter()
            .enumerate()
            .map(|(i, ip)| (*ip, i))
            .collect();
        let targets = vec![Target::default(); addresses.len()];
        Self {
            cfg,
            interval: Duration::from_nanos(1_000_000_000 / rate),
            addresses,
            index,
            targets,
            round: 0,
            cursor: 0,
            next_send: None,
            last_send: None,
            last_reply: None,
            found: 0,
            sent: 0,
            rtts: Vec::new(),
            quiet_cache: None,
        }
    }

    /// The next thing to do at time `now`.
    pub fn poll(&mut self, now: Instant) -> Step {
        loop {
            if self.found == self.addresses.len() {
                return Step::Done;
            }
            if let Some(&ip) = self.addresses.get(self.cursor) {
                if self.targets[self.cursor].found.is_some() {
                    self.cursor += 1;
                    continue;
                }
                let due = self.next_send.unwrap_or(now);
                if now < due {
                    return Step::WaitUntil(due);
                }
                // Catch up after a stall with at most `max_burst` back-to-back requests.
                let floor = now
                    .checked_sub(self.interval * self.cfg.max_burst)
                    .unwrap_or(now);
                self.next_send = Some(due.max(floor) + self.interval);
                self.targets[self.cursor].last_sent = Some(now);
                self.last_send = Some(now);
                self.sent += 1;
                self.cursor += 1;
                return Step::Send(ip);
            }
            // The round is sent: wait for the quiet period after the last request or reply.
            let last = match (self.last_send, self.last_reply) {
                (Some(s), Some(r)) => s.max(r),
                (s, r) => s.or(r).unwrap_or(now),
            };
            let deadline = last + self.quiet();
            if now < deadline {
                return Step::WaitUntil(deadline);
            }
            if self.round >= self.cfg.retries {
                return Step::Done;
            }
            self.round += 1;
            self.cursor = 0;
            // A new round starts on its own schedule: no catch-up burst for the quiet period.
            self.next_send = None;
        }
    }

    /// A reply from `ip` at `mac`, received at `at`.
    pub fn on_reply(&mut self, at: Instant, ip: Ipv4Addr, mac: MacAddr) -> ReplyOutcome {
        let Some(&i) = self.index.get(&ip) else {
            return ReplyOutcome::Ignored;
        };
        let target = &mut self.targets[i];
        let Some(sent) = target.last_sent else {
            return ReplyOutcome::Ignored;
        };
        self.last_reply = Some(self.last_reply.map_or(at, |r| r.max(at)));
        match target.found {
            Some((kept, _)) if kept == mac => ReplyOutcome::Repeat,
            Some((kept, _)) => ReplyOutcome::Conflict { kept },
            None => {
                let rtt = at.saturating_duration_since(sent);
                target.found = Some((mac, rtt));
                self.found += 1;
                self.rtts.push(rtt);
                self.quiet_cache = None;
                ReplyOutcome::New
            }
        }
    }

    /// The current quiet period: `max(rtt_factor × p95 RTT, min_quiet)` capped at `max_quiet`; `max_quiet`
    /// before any reply.
    pub fn quiet(&mut self) -> Duration {
        if let Some(q) = self.quiet_cache {
            return q;
        }
        let q = if self.rtts.is_empty() {
            self.cfg.max_quiet
        } else {
            let mut rtts = self.rtts.clone();
            rtts.sort_unstable();
            let p95 = rtts[(rtts.len() * 95).div_ceil(100).saturating_sub(1)];
            (p95 * self.cfg.rtt_factor)
                .max(self.cfg.min_quiet)
                .min(self.cfg.max_quiet)
        };
        self.quiet_cache = Some(q);
        q
    }

    /// Requests sent so far (all rounds).
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// The current round: 0 for the first pass.
    pub fn round(&self) -> u32 {
        self.round
    }

    /// Number of addresses this sweep asks.
    pub fn len(&self) -> usize {
        self.addresses.len()
    }

    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty()
    }

    /// The hosts that answered, sorted by IP.
    pub fn results(&self) -> Vec<Found> {
        let mut found: Vec<Found> = self
            .addresses
            .iter()
            .zip(&self.targets)
            .filter_map(|(ip, t)| t.found.map(|(mac, rtt)| Found { ip: *ip, mac, rtt }))
            .collect();
        found.sort_by_key(|f| f.ip);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_automatic_rate_keeps_small_networks_gentle_and_big_ones_quick() {
        assert_eq!(SweepConfig::auto_rate(253), 2_000);
        assert_eq!(SweepConfig::auto_rate(1_022), 2_000);
        assert_eq!(SweepConfig::auto_rate(65_534), 21_845);
        assert_eq!(SweepConfig::auto_rate(1 << 20), AUTO_MAX_PPS);
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    const MAC: MacAddr = MacAddr(0, 0x1a, 0x11, 0, 0, 1);

    #[test]
    fn cidrs_become_host_addresses_without_our_own() {
        let t: Targets = "192.168.1.77/24".parse().unwrap();
        assert_eq!(t.to_string(), "192.168.1.0/24");
        let a = t.addresses(ip("192.168.1.1"));
        assert_eq!(a.len(), 253);
        assert_eq!(a[0], ip("192.168.1.2"));
        assert_eq!(a[252], ip("192.168.1.254"));
        let t: Targets = "10.0.0.5/32".parse().unwrap();
        assert_eq!(t.addresses(ip("10.0.0.1")), vec![ip("10.0.0.5")]);
        let t: Targets = "10.0.0.4/31".parse().unwrap();
        assert_eq!(t.addresses(ip("10.0.0.5")), vec![ip("10.0.0.4")]);
        let t: Targets = "10.1.0.0/16".parse().unwrap();
        assert_eq!(t.addresses(ip("1.1.1.1")).len(), 65_534);
    }

    #[test]
    fn larger_than_a_slash_16_needs_an_explicit_range() {
        let err = "10.0.0.0/8".parse::<Targets>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "10.0.0.0/8 is larger than /16: give --cidr with a smaller range (or an explicit range A-B)"
        );
        assert!(matches!(
            "10.1.2.3/15".parse::<Targets>(),
            Err(TargetError::TooLarge(_))
        ));
        let r: Targets = "10.0.0.1-10.2.0.0".parse().unwrap();
        assert_eq!(r.addresses(ip("0.0.0.0")).len(), 131_072);
        assert!(matches!(
            "10.0.0.9-10.0.0.1".parse::<Targets>(),
            Err(TargetError::Backwards(..))
        ));
        assert!(matches!(
            "10.0.0.0-10.255.255.255".parse::<Targets>(),
            Err(TargetError::RangeTooLarge(..))
        ));
        for bad in ["", "10.0.0.0", "10.0.0.0/33", "lan0", "10.0.0.0/x", "1-2"] {
            assert!(
                matches!(bad.parse::<Targets>(), Err(TargetError::Syntax(_))),
                "{bad}"
            );
        }
    }

    /// Runs `sweep` against hosts answering after `latency` (each `(ip, drop_first_n)`), with a virtual
    /// clock; returns every send as (time since start, ip).
    fn simulate(
        sweep: &mut Sweep,
        hosts: &[(Ipv4Addr, u32)],
        latency: Duration,
    ) -> (Vec<(Duration, Ipv4Addr)>, Duration) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut sends = Vec::new();
        let mut pending: Vec<(Instant, Ipv4Addr)> = Vec::new();
        let mut asked: HashMap<Ipv4Addr, u32> = HashMap::new();
        for _ in 0..1_000_000 {
            match sweep.poll(now) {
                Step::Send(target) => {
                    sends.push((now - t0, target));
                    let n = asked.entry(target).or_default();
                    *n += 1;
                    if let Some((_, drop)) = hosts.iter().find(|(h, _)| *h == target) {
                        if *n > *drop {
                            pending.push((now + latency, target));
                        }
                    }
                }
                Step::WaitUntil(t) => {
                    assert!(t > now, "waits must move time forward");
                    pending.sort();
                    match pending.first().copied() {
                        Some((at, host)) if at <= t => {
                            pending.remove(0);
                            now = now.max(at);
                            sweep.on_reply(at, host, MAC);
                        }
                        _ => now = t,
                    }
                }
                Step::Done => return (sends, now - t0),
            }
        }
        panic!("the sweep never ended");
    }

    #[test]
    fn requests_go_out_at_the_configured_rate() {
        let addrs = Targets::cidr(Cidr::containing(ip("10.0.0.0"), 24))
            .unwrap()
            .addresses(ip("10.0.0.1"));
        let cfg = SweepConfig {
            rate_pps: 1_000,
            retries: 0,
            ..SweepConfig::default()
        };
        let mut sweep = Sweep::new(addrs, cfg);
        let (sends, _) = simulate(&mut sweep, &[], ms(1));
        assert_eq!(sends.len(), 253);
        for (i, (at, _)) in sends.iter().enumerate() {
            assert_eq!(*at, ms(i as u64), "send {i}");
        }
    }

    #[test]
    fn a_stall_is_caught_up_with_a_bounded_burst() {
        let addrs: Vec<_> = (1..=100).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        let mut sweep = Sweep::new(
            addrs,
            SweepConfig {
                rate_pps: 1_000,
                max_burst: 4,
                ..SweepConfig::default()
            },
        );
        let t0 = Instant::now();
        assert!(matches!(sweep.poll(t0), Step::Send(_)));
        // The caller was busy for 50 ms: only up to max_burst + 1 requests go out at once.
        let late = t0 + ms(50);
        let mut burst = 0;
        while let Step::Send(_) = sweep.poll(late) {
            burst += 1;
        }
        assert_eq!(burst, 5);
    }

    #[test]
    fn silent_addresses_get_retries_and_answered_ones_do_not() {
        let addrs = vec![ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.4")];
        let mut sweep = Sweep::new(addrs, SweepConfig::default());
        // .2 answers at once, .3 only to its second request, .4 never.
        let hosts = [(ip("10.0.0.2"), 0), (ip("10.0.0.3"), 1)];
        let (sends, _) = simulate(&mut sweep, &hosts, ms(2));
        let count = |a: &str| sends.iter().filter(|(_, t)| *t == ip(a)).count();
        assert_eq!(count("10.0.0.2"), 1);
        assert_eq!(count("10.0.0.3"), 2);
        assert_eq!(count("10.0.0.4"), 3, "first pass + 2 retries");
        let found = sweep.results();
        assert_eq!(
            found.iter().map(|f| f.ip).collect::<Vec<_>>(),
            vec![ip("10.0.0.2"), ip("10.0.0.3")]
        );
        assert_eq!(found[0].rtt, ms(2));
        assert_eq!(found[1].rtt, ms(2), "RTT counts from the request answered");
    }

    #[test]
    fn the_end_adapts_to_the_observed_latency() {
        let addrs: Vec<_> = (1..=50).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        let hosts: Vec<_> = (1..=10).map(|i| (Ipv4Addr::new(10, 0, 0, i), 0)).collect();
        let cfg = SweepConfig {
            rate_pps: 1_000,
            retries: 0,
            ..SweepConfig::default()
        };
        // Fast LAN (1 ms): the floor of 30 ms after the last request (sent at 49 ms).
        let mut fast = Sweep::new(addrs.clone(), cfg);
        let (_, took) = simulate(&mut fast, &hosts, ms(1));
        assert_eq!(took, ms(49 + 30));
        assert_eq!(fast.results().len(), 10);
        // Slow replies (40 ms): 3 × 40 ms = 120 ms after the last request.
        let mut slow = Sweep::new(addrs.clone(), cfg);
        let (_, took) = simulate(&mut slow, &hosts, ms(40));
        assert_eq!(took, ms(49 + 120));
        // Very slow (400 ms): capped at 500 ms after the last reply (the last one at 9 + 400 ms).
        let mut crawl = Sweep::new(addrs.clone(), cfg);
        let (_, took) = simulate(&mut crawl, &hosts, ms(400));
        assert_eq!(took, ms(9 + 400 + 500));
        assert_eq!(crawl.results().len(), 10);
        // Nobody answers: the cap.
        let mut empty = Sweep::new(addrs, cfg);
        let (_, took) = simulate(&mut empty, &[], ms(1));
        assert_eq!(took, ms(49 + 500));
    }

    #[test]
    fn everyone_answering_ends_the_sweep_at_once() {
        let addrs = vec![ip("10.0.0.2"), ip("10.0.0.3")];
        let mut sweep = Sweep::new(addrs.clone(), SweepConfig::default());
        let hosts: Vec<_> = addrs.iter().map(|a| (*a, 0)).collect();
        let (sends, took) = simulate(&mut sweep, &hosts, ms(1));
        assert_eq!(sends.len(), 2);
        assert!(took < ms(2), "{took:?}");
    }

    #[test]
    fn strangers_and_unasked_addresses_are_ignored_and_conflicts_keep_the_first_mac() {
        let mut sweep = Sweep::new(vec![ip("10.0.0.2"), ip("10.0.0.3")], SweepConfig::default());
        let t0 = Instant::now();
        assert_eq!(sweep.poll(t0), Step::Send(ip("10.0.0.2")));
        assert_eq!(
            sweep.on_reply(t0, ip("10.0.0.99"), MAC),
            ReplyOutcome::Ignored
        );
        assert_eq!(
            sweep.on_reply(t0, ip("10.0.0.3"), MAC),
            ReplyOutcome::Ignored,
            "not asked yet"
        );
        assert_eq!(
            sweep.on_reply(t0 + ms(1), ip("10.0.0.2"), MAC),
            ReplyOutcome::New
        );
        assert_eq!(
            sweep.on_reply(t0 + ms(2), ip("10.0.0.2"), MAC),
            ReplyOutcome::Repeat
        );
        let other = MacAddr(2, 0, 0, 0, 0, 7);
        assert_eq!(
            sweep.on_reply(t0 + ms(2), ip("10.0.0.2"), other),
            ReplyOutcome::Conflict { kept: MAC }
        );
        assert_eq!(sweep.results()[0].mac, MAC);
    }
}
