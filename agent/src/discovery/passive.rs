//! Passive discovery: devices heard on the wire between sweeps (ARP, gratuitous ARP, DHCP client messages)
//! and the IPv6 addresses they use (IPv6 packets that stay on the link, Neighbor Discovery; see [`ipv6`]).
//!
//! [`parse_frame`] is pure: an Ethernet frame in, what it says about a device out ([`Heard`]), or `None`
//! for everything else (our own frames, other protocols, DHCP servers' answers, forwarded IPv6, truncated or
//! malformed packets). [`PassiveListener`] runs it on an `AF_PACKET` socket (not promiscuous: broadcasts,
//! all multicast and frames to us are what devices announce themselves with) on its
//! own thread and hands each [`Heard`] to a bounded tokio channel, dropping (and counting) what does not fit
//! instead of blocking.
//!
//! The socket has an all-multicast membership ([`datalink::open_listening_socket`]): on a NIC that filters
//! multicast it still hears the neighbour solicitations and duplicate address detection probes that IPv6
//! hosts send to each other's solicited-node groups, and MLD reports.
//!
//! ```text
//!  LAN ─▶ AF_PACKET rx thread ─▶ parse_frame(own MAC) ─▶ try_send((Instant, Heard)) ─▶ inventory
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dhcproto::v4::{self, borrowed, DhcpOption, HType, MessageType, Opcode, OptionCode};
use pnet_datalink::MacAddr;
use pnet_packet::ethernet::{EtherTypes, EthernetPacket};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::Ipv4Packet;
use pnet_packet::udp::UdpPacket;
use pnet_packet::Packet;
use tokio::sync::mpsc::{self, error::TrySendError};
use tracing::{debug, warn};

use super::arp::{self, Arp, Local};
use super::datalink::{self, LinkError};

pub mod ipv6;

/// What a frame told us about a device on the LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// An ARP request or reply: its sender is alive at this MAC and IPv4 address.
    Arp {
        /// The sender's hardware address (from the ARP packet, not the Ethernet header).
        mac: MacAddr,
        /// The address the sender uses.
        ip: Ipv4Addr,
        /// Gratuitous ARP: the sender announced its own address (sender IP = target IP, in a request or a
        /// reply) or sent a reply nobody asked for (broadcast). Devices do this when they join the network,
        /// take a new address or take over one (failover, or a conflict worth a look).
        gratuitous: bool,
    },
    /// A DHCP client message (DISCOVER, REQUEST, INFORM, ...) sent to the servers' port 67.
    Dhcp(DhcpClient),
    /// IPv6 addresses a device uses, from a packet that stayed on the link (see [`ipv6`]); at least one of
    /// the two, and never the same one twice.
    Ipv6 {
        /// The device the addresses belong to: the frame's sender, or the MAC a Neighbor Advertisement's
        /// target link-layer address option names.
        mac: MacAddr,
        /// The packet's source address (only when `mac` sent the packet).
        source: Option<Ipv6Addr>,
        /// The address a Neighbor Advertisement with the override flag is for, or a duplicate address
        /// detection probe's (the address its sender is taking).
        target: Option<Ipv6Addr>,
    },
}

impl Heard {
    /// The device's MAC address.
    pub fn mac(&self) -> MacAddr {
        match self {
            Heard::Arp { mac, .. } => *mac,
            Heard::Dhcp(client) => client.mac,
            Heard::Ipv6 { mac, .. } => *mac,
        }
    }
}

/// What a DHCP client said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpClient {
    /// The client's hardware address (`chaddr`).
    pub mac: MacAddr,
    /// The name the client gave (option 12, host name), cleaned: at most [`HOSTNAME_MAX_CHARS`] characters.
    pub hostname: Option<String>,
    /// What kind of client it is (option 60, vendor class identifier, e.g. `android-dhcp-13`,
    /// `MSFT 5.0`, `udhcp 1.35.0`), cleaned: at most [`VENDOR_CLASS_MAX_CHARS`] characters.
    pub vendor_class: Option<String>,
    /// The address the client asks for (option 50: its previous lease, or the one offered to it).
    pub requested_ip: Option<Ipv4Addr>,
    /// The address the client already uses (`ciaddr`: when it renews or sends an INFORM).
    pub client_ip: Option<Ipv4Addr>,
    /// The DHCP message type (option 53), lower case: `discover`, `request`, `decline`, `release`,
    /// `inform`, another name dhcproto knows (`offer`, ...), `unknown(N)`; `bootp` for a plain BOOTP request
    /// without one.
    pub message_type: String,
}

/// Longest host name kept, in characters.
pub const HOSTNAME_MAX_CHARS: usize = 64;
/// Longest vendor class identifier kept, in characters.
pub const VENDOR_CLASS_MAX_CHARS: usize = 128;

/// Reads an Ethernet frame heard on the interface whose MAC is `own`. `Some` for
/// - an ARP request or reply from a unicast sender MAC with a usable sender address (ARP probes, whose
///   sender address is `0.0.0.0`, say nothing about an address in use and are ignored);
/// - a DHCP client message (BOOTREQUEST, Ethernet `chaddr`, magic cookie) in an unfragmented IPv4/UDP
///   datagram to port 67;
/// - an IPv6 packet that names an address of a device ([`ipv6`]: a source address in a packet that cannot
///   have been forwarded, a Neighbor Advertisement's or duplicate address detection probe's target).
///
/// `None` for everything else, and for every frame whose Ethernet source, ARP sender, DHCP `chaddr` or
/// advertised owner is `own` (what we send comes back on an `AF_PACKET` socket).
pub fn parse_frame(own: MacAddr, frame: &[u8]) -> Option<Heard> {
    let eth = EthernetPacket::new(frame)?;
    if eth.get_source() == own {
        return None;
    }
    match eth.get_ethertype() {
        EtherTypes::Arp => heard_arp(own, eth.get_destination(), arp::parse(frame)?),
        EtherTypes::Ipv4 => dhcp_client(own, eth.payload()).map(Heard::Dhcp),
        EtherTypes::Ipv6 => ipv6::heard(own, eth.get_source(), eth.payload()),
        _ => None,
    }
}

fn heard_arp(own: MacAddr, eth_destination: MacAddr, arp: Arp) -> Option<Heard> {
    let (mac, ip, gratuitous) = match arp {
        Arp::Request {
            sender_mac,
            sender_ip,
            target_ip,
        } => (sender_mac, sender_ip, sender_ip == target_ip),
        Arp::Reply {
            sender_mac,
            sender_ip,
            target_mac,
            target_ip,
        } => (
            sender_mac,
            sender_ip,
            sender_ip == target_ip
                || eth_destination == MacAddr::broadcast()
                || target_mac == MacAddr::broadcast(),
        ),
    };
    let usable_ip = !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast());
    (is_unicast(mac) && mac != own && usable_ip).then_some(Heard::Arp {
        mac,
        ip,
        gratuitous,
    })
}

/// A MAC a device can have: not zero, not multicast or broadcast.
fn is_unicast(mac: MacAddr) -> bool {
    mac != MacAddr::zero() && mac.0 & 0x01 == 0
}

/// The IPv4/UDP datagram to port 67 in `packet`, if it carries a DHCP client message.
fn dhcp_client(own: MacAddr, packet: &[u8]) -> Option<DhcpClient> {
    let ip = Ipv4Packet::new(packet)?;
    let header_len = usize::from(ip.get_header_length()) * 4;
    let total_len = usize::from(ip.get_total_length());
    // MF flag or a fragment offset: a piece of a datagram, not a whole DHCP message.
    let fragment = ip.get_flags() & 0b001 != 0 || ip.get_fragment_offset() != 0;
    if ip.get_version() != 4
        || header_len < 20
        || total_len < header_len
        || total_len > packet.len()
        || fragment
        || ip.get_next_level_protocol() != IpNextHeaderProtocols::Udp
    {
        return None;
    }
    let datagram = &packet[header_len..total_len];
    let udp = UdpPacket::new(datagram)?;
    let udp_len = usize::from(udp.get_length());
    if udp.get_destination() != v4::SERVER_PORT || udp_len < 8 || udp_len > datagram.len() {
        return None;
    }
    decode_client(own, &datagram[8..udp_len])
}

/// Decodes a DHCP message with dhcproto (its lazily decoded, borrowed form, so a host name that is not
/// UTF-8 is cleaned rather than ending the option list) and keeps what a client says about itself.
fn decode_client(own: MacAddr, payload: &[u8]) -> Option<DhcpClient> {
    let msg = borrowed::Message::new(payload).ok()?;
    // `chaddr()` slices `hlen` bytes: check it before asking (and `new` guarantees 240 bytes).
    if msg.opcode() != Opcode::BootRequest || msg.htype() != HType::Eth || msg.hlen() != 6 {
        return None;
    }
    if payload.get(236..240) != Some(&v4::MAGIC[..]) {
        return None;
    }
    let mac = match *msg.chaddr() {
        [a, b, c, d, e, f] => MacAddr::new(a, b, c, d, e, f),
        _ => return None,
    };
    if !is_unicast(mac) || mac == own {
        return None;
    }
    let mut client = DhcpClient {
        mac,
        hostname: None,
        vendor_class: None,
        requested_ip: None,
        client_ip: Some(msg.ciaddr()).filter(|ip| !ip.is_unspecified()),
        message_type: String::from("bootp"),
    };
    for opt in msg.opts() {
        match opt.code() {
            OptionCode::Hostname => client.hostname = clean_text(opt.data(), HOSTNAME_MAX_CHARS),
            OptionCode::ClassIdentifier => {
                client.vendor_class = clean_text(opt.data(), VENDOR_CLASS_MAX_CHARS)
            }
            OptionCode::RequestedIpAddress => {
                if let Ok(DhcpOption::RequestedIpAddress(ip)) = opt.into_option() {
                    client.requested_ip = Some(ip).filter(|ip| !ip.is_unspecified());
                }
            }
            OptionCode::MessageType => {
                if let Ok(DhcpOption::MessageType(t)) = opt.into_option() {
                    client.message_type = message_type_name(t);
                }
            }
            _ => {}
        }
    }
    Some(client)
}

fn message_type_name(t: MessageType) -> String {
    match t {
        MessageType::Discover => "discover".into(),
        MessageType::Request => "request".into(),
        MessageType::Decline => "decline".into(),
        MessageType::Release => "release".into(),
        MessageType::Inform => "inform".into(),
        other => format!("{other:?}").to_ascii_lowercase(),
    }
}

/// Text a device sent, made safe to store and show: up to the first NUL (C strings, padding), invalid
/// UTF-8 replaced, control characters removed, surrounding white space trimmed, at most `max_chars`
/// characters; `None` when nothing is left.
fn clean_text(raw: &[u8], max_chars: usize) -> Option<String> {
    let raw = raw.split(|b| *b == 0).next().unwrap_or_default();
    let text: String = String::from_utf8_lossy(raw)
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let text: String = text.trim().chars().take(max_chars).collect();
    let text = text.trim_end();
    (!text.is_empty()).then(|| text.to_owned())
}

/// How long a receive waits before the thread checks whether to stop (the stop latency).
const RECV_POLL: Duration = Duration::from_millis(100);
/// After the interface went down (`ENETDOWN`), wait this long before reading again.
const DOWN_PAUSE: Duration = Duration::from_millis(500);

/// What a listener has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerStats {
    /// Frames read from the socket.
    pub frames: u64,
    /// Frames that said something ([`parse_frame`] returned `Some`).
    pub heard: u64,
    /// Of those, how many were dropped because the channel was full.
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    frames: AtomicU64,
    heard: AtomicU64,
    dropped: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ListenerStats {
        ListenerStats {
            frames: self.frames.load(Ordering::Relaxed),
            heard: self.heard.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// Listens on one interface and sends each [`Heard`], with the time its frame arrived, into a channel.
///
/// The receiving thread stops when the listener is stopped or dropped (it is joined, within about
/// 100 ms), when the channel's receiver is gone, or on a receive error (logged, and returned by
/// [`PassiveListener::stop`]); its end closes its side of the channel.
pub struct PassiveListener {
    iface: String,
    local: Local,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<Result<(), LinkError>>>,
}

impl std::fmt::Debug for PassiveListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassiveListener")
            .field("iface", &self.iface)
            .field("local", &self.local)
            .field("running", &self.is_running())
            .field("stats", &self.stats())
            .finish()
    }
}

impl PassiveListener {
    /// Opens an `AF_PACKET` socket on `iface` (it must exist, be up and have an Ethernet MAC and an IPv4
    /// address) and starts receiving into `out`. A full channel drops the item (counted in
    /// [`ListenerStats::dropped`]): the socket thread never waits for the consumer.
    pub fn start(iface: &str, out: mpsc::Sender<(Instant, Heard)>) -> Result<Self, LinkError> {
        let datalink::Socket { info, tx, mut rx } =
            datalink::open_listening_socket(iface, RECV_POLL)?;
        // Listening only; the receive half keeps the socket open.
        drop(tx);
        let own = info.local.mac;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let (stopping, counting, name) =
            (Arc::clone(&stop), Arc::clone(&counters), iface.to_owned());
        let thread = std::thread::Builder::new()
            .name(format!("passive-{iface}"))
            .spawn(move || -> Result<(), LinkError> {
                while !stopping.load(Ordering::Relaxed) {
                    let frame = match rx.next() {
                        Ok(frame) => frame,
                        Err(e) if datalink::is_idle(&e) => continue,
                        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENETDOWN as i32) => {
                            debug!(iface = %name, "interface down; listening again shortly");
                            std::thread::sleep(DOWN_PAUSE);
                            continue;
                        }
                        Err(source) => {
                            warn!(iface = %name, error = %source, "passive listener stops: receive failed");
                            return Err(LinkError::Recv {
                                iface: name,
                                source,
                            });
                        }
                    };
                    let at = Instant::now();
                    counting.frames.fetch_add(1, Ordering::Relaxed);
                    let Some(heard) = parse_frame(own, frame) else {
                        continue;
                    };
                    counting.heard.fetch_add(1, Ordering::Relaxed);
                    match out.try_send((at, heard)) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => {
                            let dropped = counting.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                            if dropped.is_power_of_two() {
                                warn!(iface = %name, dropped, "passive discovery channel full: dropping what was heard");
                            }
                        }
                        Err(TrySendError::Closed(_)) => {
                            debug!(iface = %name, "passive listener stops: nobody receives");
                            return Ok(());
                        }
                    }
                }
                Ok(())
            })
            .map_err(|source| LinkError::Open {
                iface: iface.to_owned(),
                source,
            })?;
        debug!(iface, mac = %own, "passive listener started");
        Ok(Self {
            iface: iface.to_owned(),
            local: info.local,
            stop,
            counters,
            thread: Some(thread),
        })
    }

    /// The interface listened on.
    pub fn interface(&self) -> &str {
        &self.iface
    }

    /// The interface's MAC (frames from it are ignored) and IPv4 address.
    pub fn local(&self) -> Local {
        self.local
    }

    /// Counters so far.
    pub fn stats(&self) -> ListenerStats {
        self.counters.snapshot()
    }

    /// Whether the receiving thread still runs (it ends on a receive error or when the channel is closed).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the receiving thread and waits for it; the final counters, or the receive error that had
    /// stopped it.
    pub fn stop(mut self) -> Result<ListenerStats, LinkError> {
        self.shutdown()?;
        Ok(self.stats())
    }

    fn shutdown(&mut self) -> Result<(), LinkError> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(LinkError::ReceiverGone(self.iface.clone())),
        }
    }
}

impl Drop for PassiveListener {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            debug!(iface = %self.iface, error = %e, "passive listener had stopped");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    use dhcproto::{Encodable, Encoder};
    use pnet_packet::arp::{ArpHardwareTypes, ArpOperation, ArpOperations, MutableArpPacket};
    use pnet_packet::ethernet::MutableEthernetPacket;
    use pnet_packet::ipv4::{self, MutableIpv4Packet};
    use pnet_packet::udp::MutableUdpPacket;
    use pnet_packet::MutablePacket;

    const OWN: MacAddr = MacAddr(0x02, 0, 0, 0, 0, 1);
    const OWN_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
    const TV: MacAddr = MacAddr(0x00, 0x1a, 0x11, 0xaa, 0xbb, 0xcc);
    const TV_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 20);

    #[derive(Clone, Copy)]
    struct ArpFrame {
        eth_dst: MacAddr,
        eth_src: MacAddr,
        op: ArpOperation,
        sender_mac: MacAddr,
        sender_ip: Ipv4Addr,
        target_mac: MacAddr,
        target_ip: Ipv4Addr,
    }

    fn arp_frame(a: ArpFrame) -> Vec<u8> {
        let mut frame = vec![0u8; 60];
        let mut eth = MutableEthernetPacket::new(&mut frame).unwrap();
        eth.set_destination(a.eth_dst);
        eth.set_source(a.eth_src);
        eth.set_ethertype(EtherTypes::Arp);
        let mut arp = MutableArpPacket::new(eth.payload_mut()).unwrap();
        arp.set_hardware_type(ArpHardwareTypes::Ethernet);
        arp.set_protocol_type(EtherTypes::Ipv4);
        arp.set_hw_addr_len(6);
        arp.set_proto_addr_len(4);
        arp.set_operation(a.op);
        arp.set_sender_hw_addr(a.sender_mac);
        arp.set_sender_proto_addr(a.sender_ip);
        arp.set_target_hw_addr(a.target_mac);
        arp.set_target_proto_addr(a.target_ip);
        frame
    }

    /// A who-has broadcast by `mac` at `ip` for `target`.
    fn arp_request(mac: MacAddr, ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
        arp_frame(ArpFrame {
            eth_dst: MacAddr::broadcast(),
            eth_src: mac,
            op: ArpOperations::Request,
            sender_mac: mac,
            sender_ip: ip,
            target_mac: MacAddr::zero(),
            target_ip: target,
        })
    }

    fn arp(mac: MacAddr, ip: Ipv4Addr, gratuitous: bool) -> Option<Heard> {
        Some(Heard::Arp {
            mac,
            ip,
            gratuitous,
        })
    }

    /// An Ethernet/IPv4/UDP frame carrying `payload`, padded like a NIC would (to 60 bytes).
    fn udp_frame(
        src_mac: MacAddr,
        src_ip: Ipv4Addr,
        dst_ip: Ipv4Addr,
        ports: (u16, u16),
        payload: &[u8],
    ) -> Vec<u8> {
        let total = 20 + 8 + payload.len();
        let mut frame = vec![0u8; (14 + total).max(60)];
        let mut eth = MutableEthernetPacket::new(&mut frame).unwrap();
        eth.set_destination(MacAddr::broadcast());
        eth.set_source(src_mac);
        eth.set_ethertype(EtherTypes::Ipv4);
        let mut ip = MutableIpv4Packet::new(eth.payload_mut()).unwrap();
        ip.set_version(4);
        ip.set_header_length(5);
        ip.set_total_length(total as u16);
        ip.set_ttl(64);
        ip.set_next_level_protocol(IpNextHeaderProtocols::Udp);
        ip.set_source(src_ip);
        ip.set_destination(dst_ip);
        let checksum = ipv4::checksum(&ip.to_immutable());
        ip.set_checksum(checksum);
        let mut udp = MutableUdpPacket::new(ip.payload_mut()).unwrap();
        udp.set_source(ports.0);
        udp.set_destination(ports.1);
        udp.set_length((8 + payload.len()) as u16);
        udp.payload_mut()[..payload.len()].copy_from_slice(payload);
        frame
    }

    /// A client's DHCP message of type `t` with these options, encoded by dhcproto.
    fn dhcp_message(
        mac: MacAddr,
        ciaddr: Ipv4Addr,
        t: MessageType,
        opts: Vec<DhcpOption>,
    ) -> Vec<u8> {
        let chaddr = [mac.0, mac.1, mac.2, mac.3, mac.4, mac.5];
        let mut msg = v4::Message::new_with_id(
            0x1234_5678,
            ciaddr,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &chaddr,
        );
        msg.opts_mut().insert(DhcpOption::MessageType(t));
        for opt in opts {
            msg.opts_mut().insert(opt);
        }
        let mut buf = Vec::new();
        msg.encode(&mut Encoder::new(&mut buf)).unwrap();
        buf
    }

    /// `payload` broadcast by `mac` from 0.0.0.0:68 to 255.255.255.255:67, as a client in INIT does.
    fn dhcp_frame(mac: MacAddr, payload: &[u8]) -> Vec<u8> {
        udp_frame(
            mac,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            (68, 67),
            payload,
        )
    }

    fn tv_options() -> Vec<DhcpOption> {
        vec![
            DhcpOption::Hostname("kitchen-tv".into()),
            DhcpOption::ClassIdentifier(b"android-dhcp-13".to_vec()),
            DhcpOption::RequestedIpAddress(TV_IP),
            DhcpOption::ParameterRequestList(vec![OptionCode::SubnetMask, OptionCode::Router]),
        ]
    }

    #[test]
    fn an_arp_request_names_its_sender() {
        let frame = arp_request(TV, TV_IP, OWN_IP);
        assert_eq!(parse_frame(OWN, &frame), arp(TV, TV_IP, false));
        // Without the NIC's padding.
        assert_eq!(parse_frame(OWN, &frame[..42]), arp(TV, TV_IP, false));
    }

    #[test]
    fn an_arp_reply_names_its_sender() {
        let frame = arp_frame(ArpFrame {
            eth_dst: OWN,
            eth_src: TV,
            op: ArpOperations::Reply,
            sender_mac: TV,
            sender_ip: TV_IP,
            target_mac: OWN,
            target_ip: OWN_IP,
        });
        assert_eq!(parse_frame(OWN, &frame), arp(TV, TV_IP, false));
        // A reply to another host (heard because it was flooded) is just as good.
        let other = MacAddr(0x02, 0, 0, 0, 0, 9);
        let frame = arp_frame(ArpFrame {
            eth_dst: other,
            eth_src: TV,
            op: ArpOperations::Reply,
            sender_mac: TV,
            sender_ip: TV_IP,
            target_mac: other,
            target_ip: Ipv4Addr::new(192, 168, 1, 9),
        });
        assert_eq!(parse_frame(OWN, &frame), arp(TV, TV_IP, false));
    }

    #[test]
    fn gratuitous_requests_and_replies_are_flagged() {
        // Announcement: a request for its own address.
        let frame = arp_request(TV, TV_IP, TV_IP);
        assert_eq!(parse_frame(OWN, &frame), arp(TV, TV_IP, true));
        // A reply for its own address, broadcast (`arping -A`).
        let mut reply = ArpFrame {
            eth_dst: MacAddr::broadcast(),
            eth_src: TV,
            op: ArpOperations::Reply,
            sender_mac: TV,
            sender_ip: TV_IP,
            target_mac: TV,
            target_ip: TV_IP,
        };
        assert_eq!(parse_frame(OWN, &arp_frame(reply)), arp(TV, TV_IP, true));
        // The same, unicast to us: still its own address.
        reply.eth_dst = OWN;
        assert_eq!(parse_frame(OWN, &arp_frame(reply)), arp(TV, TV_IP, true));
        // An unsolicited reply: broadcast, for nobody's question.
        reply.eth_dst = MacAddr::broadcast();
        reply.target_mac = MacAddr::zero();
        reply.target_ip = OWN_IP;
        assert_eq!(parse_frame(OWN, &arp_frame(reply)), arp(TV, TV_IP, true));
        // Unicast to us with a broadcast target MAC.
        reply.eth_dst = OWN;
        reply.target_mac = MacAddr::broadcast();
        assert_eq!(parse_frame(OWN, &arp_frame(reply)), arp(TV, TV_IP, true));
    }

    #[test]
    fn arp_probes_and_odd_senders_are_ignored() {
        // RFC 5227 probe: sender address 0.0.0.0.
        let probe = arp_request(TV, Ipv4Addr::UNSPECIFIED, TV_IP);
        assert_eq!(parse_frame(OWN, &probe), None);
        for ip in [Ipv4Addr::BROADCAST, Ipv4Addr::new(224, 0, 0, 1)] {
            assert_eq!(parse_frame(OWN, &arp_request(TV, ip, OWN_IP)), None);
        }
        // Multicast or zero sender MACs.
        for mac in [
            MacAddr(0x01, 0, 0x5e, 0, 0, 1),
            MacAddr::zero(),
            MacAddr::broadcast(),
        ] {
            assert_eq!(parse_frame(OWN, &arp_request(mac, TV_IP, OWN_IP)), None);
        }
        // An unknown ARP operation (RARP request).
        let mut rarp = arp_request(TV, TV_IP, OWN_IP);
        rarp[20..22].copy_from_slice(&[0, 3]);
        assert_eq!(parse_frame(OWN, &rarp), None);
    }

    #[test]
    fn our_own_frames_are_ignored() {
        // What we send comes back on the socket.
        assert_eq!(parse_frame(OWN, &arp_request(OWN, OWN_IP, TV_IP)), None);
        // ARP with our MAC as sender, even behind another Ethernet source.
        let mut frame = arp_request(OWN, OWN_IP, TV_IP);
        frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x42]);
        assert_eq!(parse_frame(OWN, &frame), None);
        // A gratuitous ARP of ours.
        assert_eq!(parse_frame(OWN, &arp_request(OWN, OWN_IP, OWN_IP)), None);
        // Our own DHCP client.
        let discover = dhcp_message(OWN, Ipv4Addr::UNSPECIFIED, MessageType::Discover, vec![]);
        assert_eq!(parse_frame(OWN, &dhcp_frame(OWN, &discover)), None);
        // A DHCP message for our chaddr from another Ethernet source.
        assert_eq!(parse_frame(OWN, &dhcp_frame(TV, &discover)), None);
        // Another host's DHCP message, relayed from our MAC.
        let theirs = dhcp_message(TV, Ipv4Addr::UNSPECIFIED, MessageType::Discover, vec![]);
        assert_eq!(parse_frame(OWN, &dhcp_frame(OWN, &theirs)), None);
        assert!(parse_frame(OWN, &dhcp_frame(TV, &theirs)).is_some());
    }

    #[test]
    fn a_dhcp_discover_tells_name_vendor_and_wanted_address() {
        let msg = dhcp_message(
            TV,
            Ipv4Addr::UNSPECIFIED,
            MessageType::Discover,
            tv_options(),
        );
        assert_eq!(
            parse_frame(OWN, &dhcp_frame(TV, &msg)),
            Some(Heard::Dhcp(DhcpClient {
                mac: TV,
                hostname: Some("kitchen-tv".into()),
                vendor_class: Some("android-dhcp-13".into()),
                requested_ip: Some(TV_IP),
                client_ip: None,
                message_type: "discover".into(),
            }))
        );
    }

    #[test]
    fn a_dhcp_request_tells_name_vendor_and_wanted_address() {
        let mut opts = tv_options();
        opts.push(DhcpOption::ServerIdentifier(OWN_IP));
        let msg = dhcp_message(TV, Ipv4Addr::UNSPECIFIED, MessageType::Request, opts);
        assert_eq!(
            parse_frame(OWN, &dhcp_frame(TV, &msg)),
            Some(Heard::Dhcp(DhcpClient {
                mac: TV,
                hostname: Some("kitchen-tv".into()),
                vendor_class: Some("android-dhcp-13".into()),
                requested_ip: Some(TV_IP),
                client_ip: None,
                message_type: "request".into(),
            }))
        );
    }

    #[test]
    fn a_dhcp_inform_tells_the_address_in_use() {
        let msg = dhcp_message(
            TV,
            TV_IP,
            MessageType::Inform,
            vec![DhcpOption::ClassIdentifier(b"MSFT 5.0".to_vec())],
        );
        let frame = udp_frame(TV, TV_IP, Ipv4Addr::BROADCAST, (68, 67), &msg);
        assert_eq!(
            parse_frame(OWN, &frame),
            Some(Heard::Dhcp(DhcpClient {
                mac: TV,
                hostname: None,
                vendor_class: Some("MSFT 5.0".into()),
                requested_ip: None,
                client_ip: Some(TV_IP),
                message_type: "inform".into(),
            }))
        );
    }

    #[test]
    fn names_from_the_wire_are_cleaned_and_bounded() {
        let raw = |code: OptionCode, bytes: &[u8]| {
            DhcpOption::Unknown(v4::UnknownOption::new(code, bytes.to_vec()))
        };
        let heard = |opts: Vec<DhcpOption>| {
            let msg = dhcp_message(TV, Ipv4Addr::UNSPECIFIED, MessageType::Discover, opts);
            match parse_frame(OWN, &dhcp_frame(TV, &msg)) {
                Some(Heard::Dhcp(c)) => (c.hostname, c.vendor_class),
                other => panic!("{other:?}"),
            }
        };
        // Trailing NULs, control characters, surrounding spaces; invalid UTF-8 is replaced, and the
        // option after it is still read.
        assert_eq!(
            heard(vec![
                raw(OptionCode::Hostname, b" kitchen\x1b[31m-tv\r\n\0\0"),
                raw(OptionCode::ClassIdentifier, b"acme\xff\xfe os"),
            ]),
            (
                Some("kitchen[31m-tv".into()),
                Some("acme\u{fffd}\u{fffd} os".into())
            )
        );
        // A NUL ends the string (C strings padded with garbage).
        assert_eq!(
            heard(vec![raw(OptionCode::Hostname, b"tv\0junk")]).0,
            Some("tv".into())
        );
        // Nothing left: no name.
        assert_eq!(
            heard(vec![
                raw(OptionCode::Hostname, b"\0\0\0"),
                raw(OptionCode::ClassIdentifier, b" \t\x07 "),
            ]),
            (None, None)
        );
        // Bounded (255 bytes is the most an option holds).
        let (host, vendor) = heard(vec![
            raw(OptionCode::Hostname, &[b'h'; 255]),
            raw(OptionCode::ClassIdentifier, "é".repeat(127).as_bytes()),
        ]);
        assert_eq!(host, Some("h".repeat(HOSTNAME_MAX_CHARS)));
        assert_eq!(vendor, Some("é".repeat(127)));
        let (_, vendor) = heard(vec![raw(OptionCode::ClassIdentifier, &[b'v'; 255])]);
        assert_eq!(vendor, Some("v".repeat(VENDOR_CLASS_MAX_CHARS)));
    }

    #[test]
    fn garbage_on_the_dhcp_port_is_ignored() {
        // 300 bytes of nonsense (opcode 0xab).
        assert_eq!(parse_frame(OWN, &dhcp_frame(TV, &[0xab; 300])), None);
        let good = dhcp_message(
            TV,
            Ipv4Addr::UNSPECIFIED,
            MessageType::Discover,
            tv_options(),
        );
        assert!(parse_frame(OWN, &dhcp_frame(TV, &good)).is_some());
        // A wrong magic cookie.
        let mut bad = good.clone();
        bad[236] = 0;
        assert_eq!(parse_frame(OWN, &dhcp_frame(TV, &bad)), None);
        // A server's answer (BOOTREPLY), even sent to port 67.
        let mut reply = good.clone();
        reply[0] = 2;
        assert_eq!(parse_frame(OWN, &dhcp_frame(TV, &reply)), None);
        // Not Ethernet (htype 6) or an hlen that would reach past chaddr.
        for (at, value) in [(1, 6), (2, 16), (2, 255)] {
            let mut odd = good.clone();
            odd[at] = value;
            assert_eq!(
                parse_frame(OWN, &dhcp_frame(TV, &odd)),
                None,
                "{at}={value}"
            );
        }
        // A multicast chaddr.
        let mut odd = good.clone();
        odd[28] = 0x01;
        assert_eq!(parse_frame(OWN, &dhcp_frame(TV, &odd)), None);
        // Shorter than the fixed part of a DHCP message.
        assert_eq!(parse_frame(OWN, &dhcp_frame(TV, &good[..239])), None);
        // Options cut short: what came before the cut is kept.
        let cut = &good[..good.len() - 3];
        assert!(matches!(
            parse_frame(OWN, &dhcp_frame(TV, cut)),
            Some(Heard::Dhcp(_))
        ));
        // A fragment.
        let mut fragment = dhcp_frame(TV, &good);
        fragment[14 + 6] = 0x20; // MF
        assert_eq!(parse_frame(OWN, &fragment), None);
    }

    #[test]
    fn truncated_frames_are_ignored_without_panicking() {
        let msg = dhcp_message(
            TV,
            Ipv4Addr::UNSPECIFIED,
            MessageType::Request,
            tv_options(),
        );
        let dhcp = dhcp_frame(TV, &msg);
        let arp_frame = arp_request(TV, TV_IP, OWN_IP);
        // Every prefix shorter than the IP datagram (its total length is then larger than the frame).
        let ip_end = 14 + 20 + 8 + msg.len();
        for len in 0..ip_end {
            assert_eq!(
                parse_frame(OWN, &dhcp[..len]),
                None,
                "DHCP frame cut at {len}"
            );
        }
        assert!(parse_frame(OWN, &dhcp[..ip_end]).is_some());
        for len in 0..42 {
            assert_eq!(
                parse_frame(OWN, &arp_frame[..len]),
                None,
                "ARP frame cut at {len}"
            );
        }
        // IPv4 and UDP lengths that do not fit the frame.
        let mut long_ip = dhcp.clone();
        long_ip[16..18].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(parse_frame(OWN, &long_ip), None);
        let mut long_udp = dhcp.clone();
        long_udp[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(parse_frame(OWN, &long_udp), None);
        let mut short_header = dhcp.clone();
        short_header[14] = 0x44; // IHL 4
        assert_eq!(parse_frame(OWN, &short_header), None);
    }

    #[test]
    fn other_udp_and_other_protocols_are_ignored() {
        let msg = dhcp_message(
            TV,
            Ipv4Addr::UNSPECIFIED,
            MessageType::Discover,
            tv_options(),
        );
        // The same bytes to DNS, and to the client port (servers' answers).
        for ports in [(5353, 53), (67, 68), (68, 68)] {
            let frame = udp_frame(TV, TV_IP, Ipv4Addr::BROADCAST, ports, &msg);
            assert_eq!(parse_frame(OWN, &frame), None, "{ports:?}");
        }
        // A small datagram to port 67.
        let frame = udp_frame(TV, TV_IP, Ipv4Addr::BROADCAST, (68, 67), b"hello");
        assert_eq!(parse_frame(OWN, &frame), None);
        // TCP to port 67.
        let mut tcp = dhcp_frame(TV, &msg);
        tcp[14 + 9] = 6;
        assert_eq!(parse_frame(OWN, &tcp), None);
        // IPv6 and other ethertypes.
        let mut ipv6 = dhcp_frame(TV, &msg);
        ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(parse_frame(OWN, &ipv6), None);
        let mut lldp = arp_request(TV, TV_IP, OWN_IP);
        lldp[12..14].copy_from_slice(&[0x88, 0xcc]);
        assert_eq!(parse_frame(OWN, &lldp), None);
    }

    #[test]
    fn a_missing_interface_is_named() {
        let (tx, _rx) = mpsc::channel(1);
        let err = PassiveListener::start("outpost-nope0", tx).unwrap_err();
        assert!(
            matches!(&err, LinkError::NoSuchInterface(name) if name == "outpost-nope0"),
            "{err}"
        );
    }

    #[test]
    fn bootp_requests_without_a_message_type_are_named_bootp() {
        let mut msg = dhcp_message(TV, Ipv4Addr::UNSPECIFIED, MessageType::Discover, vec![]);
        // Options: 53 (3 bytes) then End; make it End right after the cookie.
        msg.truncate(240);
        msg.push(255);
        match parse_frame(OWN, &dhcp_frame(TV, &msg)) {
            Some(Heard::Dhcp(c)) => assert_eq!(c.message_type, "bootp"),
            other => panic!("{other:?}"),
        }
        assert_eq!(message_type_name(MessageType::Unknown(99)), "unknown(99)");
        assert_eq!(message_type_name(MessageType::Offer), "offer");
    }

    #[test]
    fn io_errors_are_not_idle_unless_timeouts() {
        assert!(datalink::is_idle(&io::Error::from(io::ErrorKind::TimedOut)));
        assert!(!datalink::is_idle(&io::Error::from(
            io::ErrorKind::NotFound
        )));
    }
}
