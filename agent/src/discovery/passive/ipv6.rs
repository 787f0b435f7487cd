//! Which device uses which IPv6 address, from IPv6 packets heard on the link. Pure.
//!
//! A packet's source address belongs to the Ethernet sender only when no router forwarded it: a router
//! puts its own MAC on the packets it forwards, so a remote host's address would be pinned on the router.
//! A source address therefore counts only in a packet that stays on the link:
//! - its source is link-local (`fe80::/10`, never forwarded);
//! - it goes to a link-scope multicast group (`ff02::/16`: all nodes, the solicited-node groups of
//!   neighbour solicitations, MLD reports to `ff02::16`, mDNS; never forwarded);
//! - or its hop limit is 255, as Neighbor Discovery sends it (a forwarded packet has at most 254).
//!
//! Two Neighbor Discovery messages also name an address the sender owns:
//! - a Neighbor Advertisement with the override flag (a host answering or announcing for itself; proxies
//!   and anycast answer without it): its target, at the MAC of its target link-layer address option if it
//!   has one, else at the frame's source;
//! - a duplicate address detection probe (a Neighbor Solicitation from `::`): its target is the address the
//!   sender is taking. If another device defends it, that one's advertisement takes it back.
//!
//! Addresses that name no device are left out: `::/80` (unspecified, loopback, IPv4-compatible and
//! IPv4-mapped) and multicast. Link-local and global ones are both kept; what to do with each is the
//! reader's business (blocking lists only the routable ones as uncovered).

use std::net::Ipv6Addr;

use pnet_datalink::MacAddr;
use pnet_packet::icmpv6::{self, Icmpv6Packet, Icmpv6Types};
use pnet_packet::ip::{IpNextHeaderProtocol, IpNextHeaderProtocols};
use pnet_packet::ipv6::Ipv6Packet;

use super::{is_unicast, Heard};

const HEADER_LEN: usize = 40;
/// Neighbor Discovery messages carry this hop limit, and are dropped with any other (RFC 4861).
const ND_HOP_LIMIT: u8 = 255;
/// A Neighbor Solicitation or Advertisement up to its target address (RFC 4861 §4.3, §4.4).
const ND_LEN: usize = 24;
/// The override flag of a Neighbor Advertisement, in its fifth byte.
const NA_OVERRIDE: u8 = 0x20;
/// The target link-layer address option.
const TARGET_LL_ADDR: u8 = 2;
/// Extension headers skipped before giving up on finding the ICMPv6 message.
const MAX_EXTENSIONS: usize = 4;

/// What the IPv6 `packet` (an Ethernet payload) from `eth_source` says about whose addresses are whose;
/// `None` when nothing (see the module documentation), and when the owner would be `own`.
pub(super) fn heard(own: MacAddr, eth_source: MacAddr, packet: &[u8]) -> Option<Heard> {
    let ip = Ipv6Packet::new(packet)?;
    let end = HEADER_LEN + usize::from(ip.get_payload_length());
    if ip.get_version() != 6 || end > packet.len() || !is_unicast(eth_source) {
        return None;
    }
    let (src, dst, hop_limit) = (ip.get_source(), ip.get_destination(), ip.get_hop_limit());
    let stays_on_link =
        is_link_local(src) || is_link_scope_multicast(dst) || hop_limit == ND_HOP_LIMIT;
    let mut mac = eth_source;
    let mut source = (stays_on_link && names_a_device(src)).then_some(src);
    let mut target = None;
    if hop_limit == ND_HOP_LIMIT {
        let owned = icmpv6_message(ip.get_next_header(), &packet[HEADER_LEN..end])
            .and_then(|msg| owned_target(src, dst, msg));
        if let Some((address, owner)) = owned {
            match owner {
                // Advertised for another MAC: the target is that one's; the packet's source stays unsaid.
                Some(owner) if owner != eth_source => {
                    if is_unicast(owner) && owner != own {
                        mac = owner;
                        source = None;
                        target = Some(address);
                    }
                }
                _ => target = Some(address),
            }
        }
    }
    if target == source {
        target = None;
    }
    (source.is_some() || target.is_some()).then_some(Heard::Ipv6 {
        mac,
        source,
        target,
    })
}

/// An address a device can have: not multicast, not in `::/80`.
fn names_a_device(ip: Ipv6Addr) -> bool {
    !ip.is_multicast() && ip.segments()[..5] != [0; 5]
}

fn is_link_local(ip: Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

fn is_link_scope_multicast(ip: Ipv6Addr) -> bool {
    let [first, flags_scope, ..] = ip.octets();
    first == 0xff && flags_scope & 0x0f == 0x02
}

/// The ICMPv6 message in `payload`, after the extension headers a sender may put first (hop-by-hop,
/// destination options, routing); `None` for any other upper layer and for fragments.
fn icmpv6_message(mut next: IpNextHeaderProtocol, mut payload: &[u8]) -> Option<&[u8]> {
    for _ in 0..=MAX_EXTENSIONS {
        match next {
            IpNextHeaderProtocols::Icmpv6 => return Some(payload),
            IpNextHeaderProtocols::Hopopt
            | IpNextHeaderProtocols::Ipv6Opts
            | IpNextHeaderProtocols::Ipv6Route => {
                let len = (usize::from(*payload.get(1)?) + 1) * 8;
                next = IpNextHeaderProtocol(*payload.first()?);
                payload = payload.get(len..)?;
            }
            _ => return None,
        }
    }
    None
}

/// The address a Neighbor Discovery message says its sender owns, with the MAC its target link-layer
/// address option names (advertisements only, if present); `None` for other messages, other ICMPv6 and
/// bad checksums.
fn owned_target(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> Option<(Ipv6Addr, Option<MacAddr>)> {
    let icmp = Icmpv6Packet::new(msg)?;
    if msg.len() < ND_LEN || icmp.get_icmpv6_code().0 != 0 {
        return None;
    }
    let kind = icmp.get_icmpv6_type();
    if kind != Icmpv6Types::NeighborAdvert && kind != Icmpv6Types::NeighborSolicit {
        return None;
    }
    if icmp.get_checksum() != icmpv6::checksum(&icmp, &src, &dst) {
        return None;
    }
    let octets: [u8; 16] = msg[8..ND_LEN].try_into().ok()?;
    let target = Ipv6Addr::from(octets);
    if !names_a_device(target) {
        return None;
    }
    if kind == Icmpv6Types::NeighborAdvert && msg[4] & NA_OVERRIDE != 0 {
        Some((target, option_mac(&msg[ND_LEN..], TARGET_LL_ADDR)))
    } else if kind == Icmpv6Types::NeighborSolicit && src.is_unspecified() {
        Some((target, None))
    } else {
        None
    }
}

/// The MAC in the first link-layer address option of `kind` among Neighbor Discovery `options`; `None`
/// when there is none, or when the options are malformed (a zero length, one running past the end).
fn option_mac(mut options: &[u8], kind: u8) -> Option<MacAddr> {
    while let [option_type, units, ..] = *options {
        let len = usize::from(units) * 8;
        let option = options.get(..len).filter(|o| !o.is_empty())?;
        if option_type == kind {
            return match option.get(2..8)? {
                &[a, b, c, d, e, f] => Some(MacAddr::new(a, b, c, d, e, f)),
                _ => None,
            };
        }
        options = &options[len..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::parse_frame;
    use super::*;

    use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};
    use pnet_packet::icmpv6::MutableIcmpv6Packet;
    use pnet_packet::ipv6::MutableIpv6Packet;
    use pnet_packet::MutablePacket;

    const OWN: MacAddr = MacAddr(0x02, 0, 0, 0, 0, 1);
    const TV: MacAddr = MacAddr(0x00, 0x1a, 0x11, 0xaa, 0xbb, 0xcc);
    const ROUTER: MacAddr = MacAddr(0x00, 0x50, 0xc2, 0, 0, 0xfe);

    fn v6(text: &str) -> Ipv6Addr {
        text.parse().unwrap()
    }

    fn tv_ll() -> Ipv6Addr {
        v6("fe80::21a:11ff:feaa:bbcc")
    }

    fn tv_global() -> Ipv6Addr {
        v6("2001:db8:50::10")
    }

    /// The solicited-node group of `ip` (RFC 4291 §2.7.1).
    fn solicited_node(ip: Ipv6Addr) -> Ipv6Addr {
        let o = ip.octets();
        Ipv6Addr::from([
            0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, o[13], o[14], o[15],
        ])
    }

    struct Packet {
        eth_src: MacAddr,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        next_header: IpNextHeaderProtocol,
        payload: Vec<u8>,
    }

    /// An Ethernet frame carrying this IPv6 packet (an ICMPv6 payload gets its checksum), padded to 60.
    fn frame(p: &Packet) -> Vec<u8> {
        let mut payload = p.payload.clone();
        if p.next_header == IpNextHeaderProtocols::Icmpv6 {
            let mut icmp = MutableIcmpv6Packet::new(&mut payload).unwrap();
            let sum = icmpv6::checksum(&icmp.to_immutable(), &p.src, &p.dst);
            icmp.set_checksum(sum);
        }
        let mut frame = vec![0u8; (14 + HEADER_LEN + payload.len()).max(60)];
        let mut eth = MutableEthernetPacket::new(&mut frame).unwrap();
        eth.set_destination(MacAddr(0x33, 0x33, 0, 0, 0, 1));
        eth.set_source(p.eth_src);
        eth.set_ethertype(EtherTypes::Ipv6);
        let mut ip = MutableIpv6Packet::new(eth.payload_mut()).unwrap();
        ip.set_version(6);
        ip.set_payload_length(payload.len() as u16);
        ip.set_next_header(p.next_header);
        ip.set_hop_limit(p.hop_limit);
        ip.set_source(p.src);
        ip.set_destination(p.dst);
        ip.payload_mut()[..payload.len()].copy_from_slice(&payload);
        frame
    }

    /// An ICMPv6 echo request (8 bytes of header, 8 of data).
    fn echo() -> Vec<u8> {
        let mut msg = vec![128, 0, 0, 0, 0x12, 0x34, 0, 1];
        msg.extend_from_slice(b"outpost!");
        msg
    }

    /// A Neighbor Solicitation (135) or Advertisement (136) for `target` with these flags and options.
    fn nd(kind: u8, flags: u8, target: Ipv6Addr, options: &[u8]) -> Vec<u8> {
        let mut msg = vec![kind, 0, 0, 0, flags, 0, 0, 0];
        msg.extend_from_slice(&target.octets());
        msg.extend_from_slice(options);
        msg
    }

    fn ll_option(kind: u8, mac: MacAddr) -> Vec<u8> {
        vec![kind, 1, mac.0, mac.1, mac.2, mac.3, mac.4, mac.5]
    }

    fn icmp(eth_src: MacAddr, src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8, msg: Vec<u8>) -> Packet {
        Packet {
            eth_src,
            src,
            dst,
            hop_limit,
            next_header: IpNextHeaderProtocols::Icmpv6,
            payload: msg,
        }
    }

    fn heard(mac: MacAddr, source: Option<Ipv6Addr>, target: Option<Ipv6Addr>) -> Option<Heard> {
        Some(Heard::Ipv6 {
            mac,
            source,
            target,
        })
    }

    #[test]
    fn a_ping_to_all_nodes_names_its_global_source() {
        let p = icmp(TV, tv_global(), v6("ff02::1"), 1, echo());
        assert_eq!(
            parse_frame(OWN, &frame(&p)),
            heard(TV, Some(tv_global()), None)
        );
        // From the link-local address, to anyone: link-local is never forwarded.
        let p = icmp(TV, tv_ll(), v6("2001:db8:50::1"), 64, echo());
        assert_eq!(parse_frame(OWN, &frame(&p)), heard(TV, Some(tv_ll()), None));
        // Any protocol will do (UDP to mDNS's group here).
        let p = Packet {
            next_header: IpNextHeaderProtocols::Udp,
            payload: vec![0x14, 0xe9, 0x14, 0xe9, 0, 8, 0, 0],
            ..icmp(TV, tv_global(), v6("ff02::fb"), 255, Vec::new())
        };
        assert_eq!(
            parse_frame(OWN, &frame(&p)),
            heard(TV, Some(tv_global()), None)
        );
        assert_eq!(parse_frame(OWN, &frame(&p)).map(|h| h.mac()), Some(TV));
    }

    #[test]
    fn a_neighbour_solicitation_names_its_source() {
        let wanted = v6("2001:db8:50::99");
        let p = icmp(
            TV,
            tv_global(),
            solicited_node(wanted),
            255,
            nd(135, 0, wanted, &ll_option(1, TV)),
        );
        // The target is what it looks for, not its own.
        assert_eq!(
            parse_frame(OWN, &frame(&p)),
            heard(TV, Some(tv_global()), None)
        );
    }

    #[test]
    fn forwarded_packets_say_nothing_about_their_sender() {
        // A remote host's packet through the router: the router's MAC, a global source, hop limit < 255.
        for dst in [v6("2001:db8:50::5"), v6("ff05::2"), v6("ff0e::1")] {
            let p = icmp(ROUTER, v6("2001:db8:99::7"), dst, 63, echo());
            assert_eq!(parse_frame(OWN, &frame(&p)), None, "{dst}");
        }
        // Even at hop limit 254.
        let p = icmp(
            ROUTER,
            v6("2001:db8:99::7"),
            v6("2001:db8:50::5"),
            254,
            echo(),
        );
        assert_eq!(parse_frame(OWN, &frame(&p)), None);
        // Unicast at 255 cannot have been forwarded.
        let p = icmp(TV, tv_global(), v6("2001:db8:50::5"), 255, echo());
        assert_eq!(
            parse_frame(OWN, &frame(&p)),
            heard(TV, Some(tv_global()), None)
        );
    }

    #[test]
    fn an_advertisement_with_override_names_its_target() {
        // Solicited, from the link-local address, for the global one.
        let na = nd(136, 0x60, tv_global(), &ll_option(2, TV));
        let p = icmp(TV, tv_ll(), v6("fe80::1"), 255, na);
        assert_eq!(
            parse_frame(OWN, &frame(&p)),
            heard(TV, Some(tv_ll()), Some(tv_global()))
        );
        // Unsolicited to all nodes, from the target itself, without the option: the address once.
        let na = nd(136, 0x20, tv_global(), &[]);
        let p = icmp(TV, tv_global(), v6("ff02::1"), 255, na);
        assert_eq!(
            parse_frame(OWN, &frame(&p)),
            heard(TV, Some(tv_global()), None)
        );
        // Without the override flag (a proxy or anycast answer): only the source.
        let na = nd(136, 0x40, tv_global(), &ll_option(2, TV));
        let p = icmp(TV, tv_ll(), v6("fe80::1"), 255, na);
        assert_eq!(parse_frame(OWN, &frame(&p)), heard(TV, Some(tv_ll()), None));
    }

    #[test]
    fn an_advertisement_for_another_mac_names_that_one() {
        // The router advertises the TV's address with the TV's link-layer address.
        let na = nd(136, 0x20, tv_global(), &ll_option(2, TV));
        let p = icmp(ROUTER, v6("fe80::1"), v6("ff02::1"), 255, na);
        assert_eq!(
            parse_frame(OWN, &frame(&p)),
            heard(TV, None, Some(tv_global()))
        );
        // ... with ours, or a multicast one: nothing about the target (the source is not the target's).
        for mac in [OWN, MacAddr(0x33, 0x33, 0, 0, 0, 1)] {
            let na = nd(136, 0x20, tv_global(), &ll_option(2, mac));
            let p = icmp(ROUTER, v6("fe80::1"), v6("ff02::1"), 255, na);
            assert_eq!(
                parse_frame(OWN, &frame(&p)),
                heard(ROUTER, Some(v6("fe80::1")), None)
            );
        }
        // A source link-layer option (type 1) first is skipped.
        let mut options = ll_option(1, ROUTER);
        options.extend(ll_option(2, TV));
        let na = nd(136, 0x20, tv_global(), &options);
        let p = icmp(ROUTER, v6("fe80::1"), v6("ff02::1"), 255, na);
        assert_eq!(
            parse_frame(OWN, &frame(&p)),
            heard(TV, None, Some(tv_global()))
        );
    }

    #[test]
    fn a_duplicate_address_probe_names_the_address_being_taken() {
        let p = icmp(
            TV,
            Ipv6Addr::UNSPECIFIED,
            solicited_node(tv_global()),
            255,
            nd(135, 0, tv_global(), &[]),
        );
        assert_eq!(
            parse_frame(OWN, &frame(&p)),
            heard(TV, None, Some(tv_global()))
        );
    }

    #[test]
    fn mld_reports_behind_a_hop_by_hop_header_are_read() {
        // MLDv2 report (143) from the link-local address, behind a hop-by-hop header (router alert).
        let mut payload = vec![58, 0, 5, 2, 0, 0, 1, 0];
        payload.extend_from_slice(&[143, 0, 0, 0, 0, 0, 0, 0]);
        let p = Packet {
            next_header: IpNextHeaderProtocols::Hopopt,
            payload,
            ..icmp(TV, tv_ll(), v6("ff02::16"), 1, Vec::new())
        };
        assert_eq!(parse_frame(OWN, &frame(&p)), heard(TV, Some(tv_ll()), None));
        // The same from `::` (before the link-local address is ready) says nothing.
        let p = Packet {
            src: Ipv6Addr::UNSPECIFIED,
            ..p
        };
        assert_eq!(parse_frame(OWN, &frame(&p)), None);
        // A DAD probe behind a destination options header is still a DAD probe.
        let mut payload = vec![58, 0, 1, 4, 0, 0, 0, 0];
        payload.extend(nd(135, 0, tv_global(), &[]));
        let mut p = Packet {
            next_header: IpNextHeaderProtocols::Ipv6Opts,
            payload,
            ..icmp(
                TV,
                Ipv6Addr::UNSPECIFIED,
                solicited_node(tv_global()),
                255,
                Vec::new(),
            )
        };
        // Checksum over the ICMPv6 message only.
        let sum = icmpv6::checksum(&Icmpv6Packet::new(&p.payload[8..]).unwrap(), &p.src, &p.dst);
        p.payload[8 + 2..8 + 4].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(
            parse_frame(OWN, &frame(&p)),
            heard(TV, None, Some(tv_global()))
        );
    }

    #[test]
    fn addresses_that_name_no_device_are_left_out() {
        for src in [
            Ipv6Addr::UNSPECIFIED,
            Ipv6Addr::LOCALHOST,
            v6("::ffff:192.168.1.20"),
            v6("::192.168.1.20"),
            v6("ff02::1"),
        ] {
            let p = icmp(TV, src, v6("ff02::1"), 255, echo());
            assert_eq!(parse_frame(OWN, &frame(&p)), None, "{src}");
        }
        for target in [Ipv6Addr::LOCALHOST, v6("ff02::1"), v6("::ffff:10.0.0.1")] {
            let na = nd(136, 0x20, target, &[]);
            let p = icmp(TV, tv_ll(), v6("ff02::1"), 255, na);
            assert_eq!(
                parse_frame(OWN, &frame(&p)),
                heard(TV, Some(tv_ll()), None),
                "{target}"
            );
        }
        // A multicast Ethernet source, and our own frames.
        let p = icmp(
            MacAddr(0x33, 0x33, 0, 0, 0, 1),
            tv_ll(),
            v6("ff02::1"),
            1,
            echo(),
        );
        assert_eq!(parse_frame(OWN, &frame(&p)), None);
        let p = icmp(OWN, tv_ll(), v6("ff02::1"), 1, echo());
        assert_eq!(parse_frame(OWN, &frame(&p)), None);
    }

    #[test]
    fn bad_checksums_and_codes_hide_the_target() {
        let mut f = frame(&icmp(
            TV,
            tv_ll(),
            v6("ff02::1"),
            255,
            nd(136, 0x20, tv_global(), &[]),
        ));
        assert_eq!(
            parse_frame(OWN, &f),
            heard(TV, Some(tv_ll()), Some(tv_global()))
        );
        f[14 + HEADER_LEN + 2] ^= 0xff;
        assert_eq!(parse_frame(OWN, &f), heard(TV, Some(tv_ll()), None));
        let mut na = nd(136, 0x20, tv_global(), &[]);
        na[1] = 1;
        let p = icmp(TV, tv_ll(), v6("ff02::1"), 255, na);
        assert_eq!(parse_frame(OWN, &frame(&p)), heard(TV, Some(tv_ll()), None));
        // Not hop limit 255: not Neighbor Discovery.
        let p = icmp(
            TV,
            tv_ll(),
            v6("ff02::1"),
            64,
            nd(136, 0x20, tv_global(), &[]),
        );
        assert_eq!(parse_frame(OWN, &frame(&p)), heard(TV, Some(tv_ll()), None));
    }

    #[test]
    fn malformed_packets_are_ignored_without_panicking() {
        let mut options = ll_option(1, TV);
        options.extend(ll_option(2, TV));
        let na = nd(136, 0x20, tv_global(), &options);
        let p = icmp(TV, tv_ll(), v6("ff02::1"), 255, na);
        let good = frame(&p);
        let ip_end = 14 + HEADER_LEN + p.payload.len();
        // Every cut shorter than the packet (its payload length then runs past the frame).
        for len in 0..ip_end {
            assert_eq!(parse_frame(OWN, &good[..len]), None, "cut at {len}");
        }
        assert!(parse_frame(OWN, &good[..ip_end]).is_some());
        // Version 4 in an IPv6 frame.
        let mut odd = good.clone();
        odd[14] = 0x45;
        assert_eq!(parse_frame(OWN, &odd), None);
        // Options of zero length, or running past the end: no MAC from them, and no loop.
        assert_eq!(option_mac(&[2, 0, 1, 2, 3, 4, 5, 6], 2), None);
        assert_eq!(option_mac(&[1, 1, 0, 0, 0, 0, 0, 0, 2, 2, 1], 2), None);
        assert_eq!(option_mac(&[2], 2), None);
        assert_eq!(option_mac(&ll_option(2, TV), 2), Some(TV));
        assert_eq!(option_mac(&[0xaa; 255], 2), None);
        // Extension headers without end, or in a loop of hop-by-hop headers.
        assert_eq!(icmpv6_message(IpNextHeaderProtocols::Hopopt, &[0, 0]), None);
        assert_eq!(
            icmpv6_message(IpNextHeaderProtocols::Hopopt, &[0; 64]),
            None
        );
        assert_eq!(
            icmpv6_message(IpNextHeaderProtocols::Ipv6Frag, &[58; 16]),
            None
        );
        // An advertisement cut before its target.
        let p = icmp(
            TV,
            tv_ll(),
            v6("ff02::1"),
            255,
            nd(136, 0x20, tv_global(), &[])[..20].to_vec(),
        );
        assert_eq!(parse_frame(OWN, &frame(&p)), heard(TV, Some(tv_ll()), None));
    }
}
