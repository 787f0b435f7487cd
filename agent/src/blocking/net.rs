//! What blocking needs from the machine, behind a narrow trait ([`Net`]): an interface's own addresses, the
//! host's MACs, the default route's gateway, ARP resolution and sending raw frames. [`SystemNet`] does it
//! for real (AF_PACKET through `discovery::datalink`, the kernel's route table); the unit tests use a
//! recording fake. Every method may block for a moment (ARP waits for answers): call them from
//! `spawn_blocking`.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use pnet_datalink::MacAddr;

use super::gateway;
use crate::discovery::arp;
use crate::discovery::datalink::{self, InterfaceInfo, Link, LinkError, PacketLink};

pub trait Net: Send + Sync + 'static {
    /// The interface's MAC and IPv4 network (it exists, is up, has both).
    fn interface(&self, iface: &str) -> Result<InterfaceInfo, LinkError>;
    /// The Ethernet MACs of every interface of this host.
    fn own_macs(&self) -> Vec<MacAddr>;
    /// The gateway of the default route when that route leaves through `iface`.
    fn default_gateway(&self, iface: &str) -> Option<Ipv4Addr>;
    /// Who has `ip` on `iface`: the MAC that answers an ARP request within `timeout`.
    fn resolve(
        &self,
        iface: &str,
        ip: Ipv4Addr,
        timeout: Duration,
    ) -> Result<Option<MacAddr>, LinkError>;
    /// Sends Ethernet frames on `iface`, in order.
    fn send(&self, iface: &str, frames: &[Vec<u8>]) -> Result<(), LinkError>;
}

/// The machine's network, for real.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemNet;

/// How often a resolution asks again while it waits.
const RESOLVE_RETRY: Duration = Duration::from_millis(300);

impl Net for SystemNet {
    fn interface(&self, iface: &str) -> Result<InterfaceInfo, LinkError> {
        datalink::interface_info(iface)
    }

    fn own_macs(&self) -> Vec<MacAddr> {
        pnet_datalink::interfaces()
            .into_iter()
            .filter_map(|i| i.mac)
            .filter(|m| *m != MacAddr::zero())
            .collect()
    }

    fn default_gateway(&self, iface: &str) -> Option<Ipv4Addr> {
        gateway::default_gateway(iface)
    }

    fn resolve(
        &self,
        iface: &str,
        ip: Ipv4Addr,
        timeout: Duration,
    ) -> Result<Option<MacAddr>, LinkError> {
        let mut link = PacketLink::open(iface)?;
        let local = link.local();
        let request = arp::request(local, ip);
        let deadline = Instant::now() + timeout;
        let mut next_ask = Instant::now();
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            if now >= next_ask {
                link.send(&request)?;
                next_ask = now + RESOLVE_RETRY;
            }
            let wait = next_ask.min(deadline).saturating_duration_since(now);
            if let Some(received) = link.recv(wait)? {
                if let Some((from, mac)) = arp::reply_to(local, &received.frame) {
                    if from == ip {
                        return Ok(Some(mac));
                    }
                }
            }
        }
    }

    fn send(&self, iface: &str, frames: &[Vec<u8>]) -> Result<(), LinkError> {
        // A socket per round: nothing is received on it, and an interface that went away and came back
        // is found again.
        let mut socket = datalink::open_socket(iface, Duration::from_millis(10))?;
        for frame in frames {
            match socket.tx.send_to(frame, None) {
                Some(Ok(())) => {}
                Some(Err(source)) => {
                    return Err(LinkError::Send {
                        iface: iface.to_owned(),
                        source,
                    })
                }
                None => {
                    return Err(LinkError::Send {
                        iface: iface.to_owned(),
                        source: std::io::Error::other("frame larger than the write buffer"),
                    })
                }
            }
        }
        Ok(())
    }
}
