//! ARP over Ethernet: building who-has requests and reading replies and requests. Pure: bytes in, bytes out.

use std::net::Ipv4Addr;

use pnet_datalink::MacAddr;
use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, ArpPacket, MutableArpPacket};
use pnet_packet::ethernet::{EtherTypes, EthernetPacket, MutableEthernetPacket};
use pnet_packet::{MutablePacket, Packet};

/// Length of an Ethernet header plus an IPv4-over-Ethernet ARP packet (no padding; the NIC pads to 60).
pub const FRAME_LEN: usize = 14 + 28;

/// Our side of the conversation: the interface's MAC and IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
}

/// What an ARP packet said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arp {
    /// `sender_ip` is at `sender_mac` (answering `target_ip`'s request).
    Reply {
        sender_mac: MacAddr,
        sender_ip: Ipv4Addr,
        target_mac: MacAddr,
        target_ip: Ipv4Addr,
    },
    /// `sender_ip` at `sender_mac` asks who has `target_ip` (a host announcing itself, or probing).
    Request {
        sender_mac: MacAddr,
        sender_ip: Ipv4Addr,
        target_ip: Ipv4Addr,
    },
}

/// A broadcast who-has `target` from `local`, as an Ethernet frame of [`FRAME_LEN`] bytes.
pub fn request(local: Local, target: Ipv4Addr) -> [u8; FRAME_LEN] {
    let mut frame = [0u8; FRAME_LEN];
    write_request(&mut frame, local, target);
    frame
}

/// Writes a broadcast who-has `target` into `frame` (at least [`FRAME_LEN`] bytes).
pub fn write_request(frame: &mut [u8], local: Local, target: Ipv4Addr) {
    let Some(mut eth) = MutableEthernetPacket::new(frame) else {
        return;
    };
    eth.set_destination(MacAddr::broadcast());
    eth.set_source(local.mac);
    eth.set_ethertype(EtherTypes::Arp);
    let Some(mut arp) = MutableArpPacket::new(eth.payload_mut()) else {
        return;
    };
    arp.set_hardware_type(ArpHardwareTypes::Ethernet);
    arp.set_protocol_type(EtherTypes::Ipv4);
    arp.set_hw_addr_len(6);
    arp.set_proto_addr_len(4);
    arp.set_operation(ArpOperations::Request);
    arp.set_sender_hw_addr(local.mac);
    arp.set_sender_proto_addr(local.ip);
    arp.set_target_hw_addr(MacAddr::zero());
    arp.set_target_proto_addr(target);
}

/// Reads an Ethernet frame as IPv4-over-Ethernet ARP; `None` for anything else (other ethertypes, other
/// hardware or protocol types, truncated packets, unknown operations).
pub fn parse(frame: &[u8]) -> Option<Arp> {
    let eth = EthernetPacket::new(frame)?;
    if eth.get_ethertype() != EtherTypes::Arp {
        return None;
    }
    let arp = ArpPacket::new(eth.payload())?;
    if arp.get_hardware_type() != ArpHardwareTypes::Ethernet
        || arp.get_protocol_type() != EtherTypes::Ipv4
        || arp.get_hw_addr_len() != 6
        || arp.get_proto_addr_len() != 4
    {
        return None;
    }
    let (sender_mac, sender_ip) = (arp.get_sender_hw_addr(), arp.get_sender_proto_addr());
    match arp.get_operation() {
        ArpOperations::Reply => Some(Arp::Reply {
            sender_mac,
            sender_ip,
            target_mac: arp.get_target_hw_addr(),
            target_ip: arp.get_target_proto_addr(),
        }),
        ArpOperations::Request => Some(Arp::Request {
            sender_mac,
            sender_ip,
            target_ip: arp.get_target_proto_addr(),
        }),
        _ => None,
    }
}

/// A reply to one of our requests: `(ip, mac)` of the answering host. Ignores our own frames, replies
/// addressed to someone else, and senders with a zero, broadcast or multicast MAC or the unspecified IP.
pub fn reply_to(local: Local, frame: &[u8]) -> Option<(Ipv4Addr, MacAddr)> {
    let Arp::Reply {
        sender_mac,
        sender_ip,
        target_mac,
        target_ip,
    } = parse(frame)?
    else {
        return None;
    };
    let unicast = sender_mac != MacAddr::zero() && sender_mac.0 & 0x01 == 0;
    let for_us =
        target_ip == local.ip && (target_mac == local.mac || target_mac == MacAddr::zero());
    (unicast && for_us && sender_mac != local.mac && !sender_ip.is_unspecified())
        .then_some((sender_ip, sender_mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: Local = Local {
        mac: MacAddr(0x02, 0, 0, 0, 0, 1),
        ip: Ipv4Addr::new(192, 168, 1, 1),
    };

    /// The reply `ip` at `mac` would send to LOCAL's request.
    fn reply(ip: Ipv4Addr, mac: MacAddr) -> Vec<u8> {
        let mut frame = vec![0u8; 60];
        let mut eth = MutableEthernetPacket::new(&mut frame).unwrap();
        eth.set_destination(LOCAL.mac);
        eth.set_source(mac);
        eth.set_ethertype(EtherTypes::Arp);
        let mut arp = MutableArpPacket::new(eth.payload_mut()).unwrap();
        arp.set_hardware_type(ArpHardwareTypes::Ethernet);
        arp.set_protocol_type(EtherTypes::Ipv4);
        arp.set_hw_addr_len(6);
        arp.set_proto_addr_len(4);
        arp.set_operation(ArpOperations::Reply);
        arp.set_sender_hw_addr(mac);
        arp.set_sender_proto_addr(ip);
        arp.set_target_hw_addr(LOCAL.mac);
        arp.set_target_proto_addr(LOCAL.ip);
        frame
    }

    #[test]
    fn a_request_is_a_broadcast_who_has() {
        let frame = request(LOCAL, Ipv4Addr::new(192, 168, 1, 77));
        assert_eq!(&frame[..6], &[0xff; 6]);
        assert_eq!(&frame[6..12], &[0x02, 0, 0, 0, 0, 1]);
        assert_eq!(&frame[12..14], &[0x08, 0x06]);
        // htype 1, ptype 0x0800, hlen 6, plen 4, op 1
        assert_eq!(&frame[14..22], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(
            parse(&frame),
            Some(Arp::Request {
                sender_mac: LOCAL.mac,
                sender_ip: LOCAL.ip,
                target_ip: Ipv4Addr::new(192, 168, 1, 77),
            })
        );
        // Our own request, seen again on the socket, is not a reply.
        assert_eq!(reply_to(LOCAL, &frame), None);
    }

    #[test]
    fn replies_to_us_are_read() {
        let ip = Ipv4Addr::new(192, 168, 1, 20);
        let mac = MacAddr(0x00, 0x1a, 0x11, 1, 2, 3);
        let frame = reply(ip, mac);
        assert_eq!(reply_to(LOCAL, &frame), Some((ip, mac)));
        assert_eq!(reply_to(LOCAL, &frame[..42]), Some((ip, mac)));
    }

    #[test]
    fn other_frames_are_ignored() {
        let ip = Ipv4Addr::new(192, 168, 1, 20);
        let mac = MacAddr(0x00, 0x1a, 0x11, 1, 2, 3);
        let frame = reply(ip, mac);
        // Truncated.
        assert_eq!(parse(&frame[..30]), None);
        // IPv4 ethertype.
        let mut ipv4 = frame.clone();
        ipv4[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(parse(&ipv4), None);
        // A reply to another host.
        let other = Local {
            mac: MacAddr(0x02, 0, 0, 0, 0, 9),
            ip: Ipv4Addr::new(192, 168, 1, 9),
        };
        assert_eq!(reply_to(other, &frame), None);
        // A multicast sender MAC.
        assert_eq!(
            reply_to(LOCAL, &reply(ip, MacAddr(0x01, 0, 0x5e, 0, 0, 1))),
            None
        );
        // Unknown operation (RARP request).
        let mut rarp = frame.clone();
        rarp[20..22].copy_from_slice(&[0, 3]);
        assert_eq!(parse(&rarp), None);
    }
}
