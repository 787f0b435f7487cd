//! Box blocking by ARP pausing: the device is told that its gateway's IPv4 address is at [`DEAD_MAC`], and
//! the gateway is told the same about the device; both are told again every `repeat`, and the true
//! mappings are given back when the block ends.
//!
//! # The frames
//! To each side (Ethernet unicast to its MAC, from the box's own MAC):
//! - an ARP request "who has <your address>? tell <the other side's address> at DEAD_MAC": a host answering a
//!   request for its own address writes the sender into its cache whatever it held (and creates the entry
//!   when it had none);
//! - a gratuitous ARP reply "<the other side's address> is at DEAD_MAC": unicast to the host, it makes the
//!   entry reachable at once, and a gratuitous reply overrides a recent one (Linux's `locktime`).
//!
//! The restore is the gratuitous reply with the true MAC, `restore_replies` times to each side.
//!
//! # Why the box never forwards the paused traffic
//! Nobody owns [`DEAD_MAC`] (a fixed locally administered address), and the frames announcing it leave with
//! the box's own MAC as their Ethernet source, so no switch learns it on any port. The paused device's
//! packets to the internet, and the gateway's packets to the device, are addressed to it and go nowhere:
//! switches flood them as unknown unicast and every NIC, the box's included, discards a frame addressed to
//! another MAC. The box is never a hop on the path (it does not receive the traffic as its own, so even with
//! IP forwarding on it would not route it) and cannot slow down or leak what it pauses.
//!
//! # What it does not cover
//! The device's IPv6 traffic (ARP is IPv4 only): its routable IPv6 addresses (not `fe80::/10`, which never
//! leave the link) are listed in the record as `ipv6_uncovered`. Between two repeats the device or the
//! gateway may learn the true MAC again (a cache flushed when the device changes its address, an ARP
//! request from one of them that the other hears); the next repeat, at most `repeat` later, pauses it again.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use outpost_cloud_link::control::DeviceRef;
use pnet_datalink::MacAddr;
use pnet_packet::arp::{ArpHardwareTypes, ArpOperation, ArpOperations, MutableArpPacket};
use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};
use pnet_packet::MutablePacket;

use super::net::Net;
use super::BlockError;
use crate::config::InterfaceConfig;
use crate::discovery::arp::FRAME_LEN;

/// Where paused traffic is sent: a locally administered unicast MAC no device has.
pub const DEAD_MAC: MacAddr = MacAddr(0x02, 0xde, 0xad, 0x0b, 0x10, 0xc6);

/// How long the gateway and the device get to answer an ARP request when a block is planned.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_millis(1500);

/// One pause, ready to send: who is told what, on which interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub interface: String,
    /// The box's MAC on `interface`: the Ethernet source of every frame.
    pub local_mac: MacAddr,
    pub target_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub gateway_ip: Ipv4Addr,
    pub gateway_mac: MacAddr,
}

impl Plan {
    /// The frames that pause the device (sent again every `repeat`).
    pub fn poison(&self) -> Vec<Vec<u8>> {
        let (t, g) = (self.target_ip, self.gateway_ip);
        vec![
            // The device: the gateway is at DEAD_MAC.
            self.frame(
                self.target_mac,
                ArpOperations::Request,
                (DEAD_MAC, g),
                (MacAddr::zero(), t),
            ),
            self.frame(
                self.target_mac,
                ArpOperations::Reply,
                (DEAD_MAC, g),
                (DEAD_MAC, g),
            ),
            // The gateway: the device is at DEAD_MAC.
            self.frame(
                self.gateway_mac,
                ArpOperations::Request,
                (DEAD_MAC, t),
                (MacAddr::zero(), g),
            ),
            self.frame(
                self.gateway_mac,
                ArpOperations::Reply,
                (DEAD_MAC, t),
                (DEAD_MAC, t),
            ),
        ]
    }

    /// One round of the true mappings, to both sides.
    pub fn restore(&self) -> Vec<Vec<u8>> {
        let (t, g) = (self.target_ip, self.gateway_ip);
        let (tm, gm) = (self.target_mac, self.gateway_mac);
        vec![
            self.frame(tm, ArpOperations::Reply, (gm, g), (gm, g)),
            self.frame(gm, ArpOperations::Reply, (tm, t), (tm, t)),
        ]
    }

    /// An ARP frame to `to` from the box's MAC, with `sender` and `target` as (hardware, protocol) address.
    fn frame(
        &self,
        to: MacAddr,
        op: ArpOperation,
        sender: (MacAddr, Ipv4Addr),
        target: (MacAddr, Ipv4Addr),
    ) -> Vec<u8> {
        let mut frame = vec![0u8; FRAME_LEN];
        let Some(mut eth) = MutableEthernetPacket::new(&mut frame) else {
            return frame;
        };
        eth.set_destination(to);
        eth.set_source(self.local_mac);
        eth.set_ethertype(EtherTypes::Arp);
        if let Some(mut arp) = MutableArpPacket::new(eth.payload_mut()) {
            arp.set_hardware_type(ArpHardwareTypes::Ethernet);
            arp.set_protocol_type(EtherTypes::Ipv4);
            arp.set_hw_addr_len(6);
            arp.set_proto_addr_len(4);
            arp.set_operation(op);
            arp.set_sender_hw_addr(sender.0);
            arp.set_sender_proto_addr(sender.1);
            arp.set_target_hw_addr(target.0);
            arp.set_target_proto_addr(target.1);
        }
        frame
    }
}

/// IPv6 addresses that reach beyond the link (not `fe80::/10`): what ARP pausing leaves open.
pub fn routable_ipv6(addrs: &[Ipv6Addr]) -> Vec<Ipv6Addr> {
    let mut out: Vec<Ipv6Addr> = addrs
        .iter()
        .copied()
        .filter(|a| a.segments()[0] & 0xffc0 != 0xfe80 && !a.is_loopback() && !a.is_unspecified())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Works out the pause of `device` at `ipv4` on `iface`: refuses tagged VLANs, the gateway and the box
/// itself, finds the gateway (configured, else the default route's) and its MAC by ARP. With
/// `verify_target`, also asks who has `ipv4` now and refuses when another MAC answers (the address moved:
/// pausing it would pause someone else). Blocks for up to two ARP timeouts.
pub fn plan(
    net: &dyn Net,
    iface: &InterfaceConfig,
    device: &DeviceRef,
    ipv4: Ipv4Addr,
    verify_target: bool,
) -> Result<Plan, BlockError> {
    if iface.tagged {
        return Err(BlockError::TaggedVlan {
            device: device.clone(),
            interface: iface.name.clone(),
            vlan: iface.vlan.or(device.vlan).unwrap_or(0),
        });
    }
    let target_mac: MacAddr = device.mac.parse().map_err(|_| BlockError::NotLocated {
        device: device.clone(),
    })?;
    let link = |source| BlockError::Link {
        interface: iface.name.clone(),
        source,
    };
    let gateway_ip = iface
        .gateway
        .or_else(|| net.default_gateway(&iface.name))
        .ok_or_else(|| BlockError::GatewayUnknown {
            interface: iface.name.clone(),
        })?;
    let is_gateway = || BlockError::IsGateway {
        device: device.clone(),
        interface: iface.name.clone(),
        gateway: gateway_ip,
    };
    if ipv4 == gateway_ip {
        return Err(is_gateway());
    }
    let info = net.interface(&iface.name).map_err(link)?;
    let local = info.local;
    if ipv4 == local.ip || target_mac == local.mac || net.own_macs().contains(&target_mac) {
        return Err(BlockError::IsAgent {
            device: device.clone(),
            what: if ipv4 == local.ip {
                format!("{ipv4} is its address on {}", iface.name)
            } else {
                format!("{target_mac} is one of its MACs")
            },
        });
    }
    let gateway_mac = net
        .resolve(&iface.name, gateway_ip, RESOLVE_TIMEOUT)
        .map_err(link)?
        .ok_or_else(|| BlockError::GatewayNoAnswer {
            interface: iface.name.clone(),
            gateway: gateway_ip,
        })?;
    if gateway_mac == target_mac {
        return Err(is_gateway());
    }
    if verify_target {
        match net
            .resolve(&iface.name, ipv4, RESOLVE_TIMEOUT)
            .map_err(link)?
        {
            Some(other) if other != target_mac => {
                return Err(BlockError::AddressMoved {
                    device: device.clone(),
                    ip: ipv4,
                    other: other.to_string(),
                })
            }
            // The device answered, or is offline now: pausing it is still right (it comes back paused).
            _ => {}
        }
    }
    Ok(Plan {
        interface: iface.name.clone(),
        local_mac: local.mac,
        target_ip: ipv4,
        target_mac,
        gateway_ip,
        gateway_mac,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::arp::{parse, Arp};

    fn plan() -> Plan {
        Plan {
            interface: "lan0".into(),
            local_mac: MacAddr(2, 0, 0, 0, 0, 1),
            target_ip: Ipv4Addr::new(10, 0, 0, 20),
            target_mac: MacAddr(0, 0x1a, 0x11, 0, 0, 20),
            gateway_ip: Ipv4Addr::new(10, 0, 0, 254),
            gateway_mac: MacAddr(0, 0x1a, 0x11, 0, 0, 254),
        }
    }

    fn eth(frame: &[u8]) -> (MacAddr, MacAddr) {
        let mac = |b: &[u8]| MacAddr(b[0], b[1], b[2], b[3], b[4], b[5]);
        (mac(&frame[0..6]), mac(&frame[6..12]))
    }

    #[test]
    fn the_poison_tells_each_side_the_other_is_at_the_dead_mac() {
        let p = plan();
        let frames = p.poison();
        assert_eq!(frames.len(), 4);
        // Every frame is unicast from the box's own MAC: no switch ever learns the dead MAC.
        for f in &frames {
            assert_eq!(f.len(), FRAME_LEN);
            assert_eq!(eth(f).1, p.local_mac);
        }
        assert_eq!(eth(&frames[0]).0, p.target_mac);
        assert_eq!(
            parse(&frames[0]),
            Some(Arp::Request {
                sender_mac: DEAD_MAC,
                sender_ip: p.gateway_ip,
                target_ip: p.target_ip,
            })
        );
        assert_eq!(
            parse(&frames[1]),
            Some(Arp::Reply {
                sender_mac: DEAD_MAC,
                sender_ip: p.gateway_ip,
                target_mac: DEAD_MAC,
                target_ip: p.gateway_ip,
            })
        );
        assert_eq!(eth(&frames[2]).0, p.gateway_mac);
        assert_eq!(
            parse(&frames[2]),
            Some(Arp::Request {
                sender_mac: DEAD_MAC,
                sender_ip: p.target_ip,
                target_ip: p.gateway_ip,
            })
        );
        assert_eq!(eth(&frames[3]).0, p.gateway_mac);
        assert_eq!(
            parse(&frames[3]),
            Some(Arp::Reply {
                sender_mac: DEAD_MAC,
                sender_ip: p.target_ip,
                target_mac: DEAD_MAC,
                target_ip: p.target_ip,
            })
        );
    }

    #[test]
    fn the_restore_gives_each_side_the_true_mac() {
        let p = plan();
        let frames = p.restore();
        assert_eq!(frames.len(), 2);
        assert_eq!(eth(&frames[0]), (p.target_mac, p.local_mac));
        assert_eq!(
            parse(&frames[0]),
            Some(Arp::Reply {
                sender_mac: p.gateway_mac,
                sender_ip: p.gateway_ip,
                target_mac: p.gateway_mac,
                target_ip: p.gateway_ip,
            })
        );
        assert_eq!(eth(&frames[1]), (p.gateway_mac, p.local_mac));
        assert_eq!(
            parse(&frames[1]),
            Some(Arp::Reply {
                sender_mac: p.target_mac,
                sender_ip: p.target_ip,
                target_mac: p.target_mac,
                target_ip: p.target_ip,
            })
        );
    }

    #[test]
    fn the_dead_mac_is_unicast_and_locally_administered() {
        assert_eq!(DEAD_MAC.0 & 0x01, 0);
        assert_eq!(DEAD_MAC.0 & 0x02, 0x02);
    }

    #[test]
    fn only_routable_ipv6_addresses_are_uncovered() {
        let addrs: Vec<Ipv6Addr> = ["fe80::1", "2001:db8::7", "fd00::7", "2001:db8::7", "::1"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(
            routable_ipv6(&addrs),
            [
                "2001:db8::7".parse::<Ipv6Addr>().unwrap(),
                "fd00::7".parse().unwrap()
            ]
        );
    }
}
