//! Drives a [`Sweep`] over a [`Link`]: sends what the sweep asks for, feeds it the ARP replies, and stops
//! when it says so. The clock is passed in so tests run on virtual time.

use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::arp;
use super::datalink::{Link, LinkError};
use super::sweep::{Found, ReplyOutcome, Step, Sweep};

/// What a finished sweep found and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Sorted by IP.
    pub found: Vec<Found>,
    /// Requests sent, all rounds.
    pub sent: u64,
    /// Rounds run (1 + retries used).
    pub rounds: u32,
    /// From the first request to the end of the quiet period.
    pub elapsed: Duration,
}

/// Runs `sweep` to its end on `link`, reading time from `now`.
pub fn run<L: Link + ?Sized>(
    link: &mut L,
    mut sweep: Sweep,
    now: &dyn Fn() -> Instant,
) -> Result<SweepReport, LinkError> {
    let local = link.local();
    let mut frame = [0u8; arp::FRAME_LEN];
    let start = now();
    loop {
        match sweep.poll(now()) {
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
                match sweep.on_reply(r.at, ip, mac) {
                    ReplyOutcome::Conflict { kept } => {
                        warn!(%ip, %mac, %kept, "two MACs answer for one IP; keeping the first")
                    }
                    outcome => debug!(%ip, %mac, ?outcome, "ARP reply"),
                }
            }
            Step::Done => break,
        }
    }
    Ok(SweepReport {
        found: sweep.results(),
        sent: sweep.sent(),
        rounds: sweep.round() + 1,
        elapsed: now().saturating_duration_since(start),
    })
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::net::Ipv4Addr;
    use std::rc::Rc;

    use pnet_datalink::MacAddr;

    use super::*;
    use crate::discovery::arp::{Arp, Local};
    use crate::discovery::datalink::Received;
    use crate::discovery::sweep::SweepConfig;

    const LOCAL: Local = Local {
        mac: MacAddr(0x02, 0, 0, 0, 0, 1),
        ip: Ipv4Addr::new(10, 9, 0, 1),
    };

    /// A fake LAN on a virtual clock: hosts answer who-has after `latency`; one host also answers every
    /// request for any address (a phantom that must not be reported for addresses it does not own).
    struct FakeLan {
        clock: Rc<Cell<Instant>>,
        hosts: Vec<(Ipv4Addr, MacAddr)>,
        latency: Duration,
        queue: Vec<Received>,
        sent: Vec<Vec<u8>>,
    }

    fn frame_reply(from: (Ipv4Addr, MacAddr), to: Local) -> Vec<u8> {
        // Build a reply by editing our own request format: swap into a reply.
        let mut f = arp::request(
            Local {
                mac: from.1,
                ip: from.0,
            },
            to.ip,
        )
        .to_vec();
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
            self.sent.push(frame.to_vec());
            // Our own request comes back on an AF_PACKET socket: the sweep must ignore it.
            self.queue.push(Received {
                at: self.clock.get(),
                frame: frame.to_vec(),
            });
            if let Some(Arp::Request { target_ip, .. }) = arp::parse(frame) {
                for host in self.hosts.iter().filter(|h| h.0 == target_ip) {
                    self.queue.push(Received {
                        at: self.clock.get() + self.latency,
                        frame: frame_reply(*host, LOCAL),
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
    fn a_fake_lan_is_found_exactly_and_quickly() {
        let clock = Rc::new(Cell::new(Instant::now()));
        let hosts: Vec<_> = [5u8, 77, 200]
            .iter()
            .map(|i| {
                (
                    Ipv4Addr::new(10, 9, 0, *i),
                    MacAddr(0x00, 0x1a, 0x11, 0, 0, *i),
                )
            })
            .collect();
        let mut lan = FakeLan {
            clock: Rc::clone(&clock),
            hosts: hosts.clone(),
            latency: Duration::from_micros(300),
            queue: Vec::new(),
            sent: Vec::new(),
        };
        let targets = "10.9.0.0/24"
            .parse::<crate::discovery::sweep::Targets>()
            .unwrap()
            .addresses(LOCAL.ip);
        let sweep = Sweep::new(targets, SweepConfig::default());
        let c = Rc::clone(&clock);
        let report = run(&mut lan, sweep, &move || c.get()).unwrap();
        let found: Vec<_> = report.found.iter().map(|f| (f.ip, f.mac)).collect();
        assert_eq!(found, hosts);
        assert!(report
            .found
            .iter()
            .all(|f| f.rtt == Duration::from_micros(300)));
        // 253 first-pass requests, then 250 silent addresses twice more.
        assert_eq!(report.sent, 253 + 2 * 250);
        assert_eq!(report.rounds, 3);
        // Each round: 253 or 250 requests 500 µs apart (2,000 pps), then 30 ms of quiet.
        let expected = Duration::from_micros(500) * (252 + 249 + 249) + Duration::from_millis(90);
        let slack = Duration::from_millis(2);
        assert!(
            report.elapsed <= expected + slack && report.elapsed + slack >= expected,
            "{:?} vs {expected:?}",
            report.elapsed
        );
        assert_eq!(lan.sent.len() as u64, report.sent);
    }
}
