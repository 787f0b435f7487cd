//! The link the sweep talks through: a narrow [`Link`] trait (send a frame, receive a frame with a
//! timeout) and its Linux implementation, an `AF_PACKET` socket (pnet_datalink) bound to one interface,
//! with a receiving thread so sending and receiving overlap and replies are timestamped on arrival.
//! [`open_socket`] opens such a socket for other users, [`open_listening_socket`] one that also takes in
//! all multicast (the passive listener).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pnet_datalink::MacAddr;
use pnet_datalink::{Channel, Config, DataLinkReceiver, DataLinkSender, NetworkInterface};

use super::arp::Local;
use super::sweep::Cidr;

/// A frame as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub at: Instant,
    pub frame: Vec<u8>,
}

/// Sends and receives Ethernet frames on one interface.
pub trait Link {
    /// Our MAC and IPv4 address on this link.
    fn local(&self) -> Local;
    fn send(&mut self, frame: &[u8]) -> Result<(), LinkError>;
    /// The next frame, waiting at most `timeout`; `None` when none came.
    fn recv(&mut self, timeout: Duration) -> Result<Option<Received>, LinkError>;
}

/// Opening or using an interface failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("interface {0} does not exist (see `ip link` for the names)")]
    NoSuchInterface(String),
    #[error("interface {0} is down (bring it up with `ip link set {0} up`)")]
    Down(String),
    #[error("interface {0} has no IPv4 address: ARP discovery needs one (give it an address or pick another interface)")]
    NoIpv4(String),
    #[error("interface {0} has no Ethernet MAC address (loopback or point-to-point): pick an Ethernet interface")]
    NoMac(String),
    #[error("open AF_PACKET socket on {0}: permission denied (the agent needs CAP_NET_RAW: run it as root or `setcap cap_net_raw+ep` on the binary)")]
    PermissionDenied(String),
    #[error("open AF_PACKET socket on {iface}: {source}")]
    Open { iface: String, source: io::Error },
    #[error("open AF_PACKET socket on {0}: not an Ethernet channel")]
    NotEthernet(String),
    #[error("send on {iface}: {source}")]
    Send { iface: String, source: io::Error },
    #[error("receive on {iface}: {source}")]
    Recv { iface: String, source: io::Error },
    #[error("receive on {0}: the receiving thread stopped")]
    ReceiverGone(String),
}

/// An interface's addresses as the sweep needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceInfo {
    pub local: Local,
    /// The network of its (first) IPv4 address.
    pub network: Cidr,
}

fn find_interface(name: &str) -> Result<NetworkInterface, LinkError> {
    pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == name)
        .ok_or_else(|| LinkError::NoSuchInterface(name.to_owned()))
}

fn info_of(iface: &NetworkInterface) -> Result<InterfaceInfo, LinkError> {
    let name = || iface.name.clone();
    if !iface.is_up() {
        return Err(LinkError::Down(name()));
    }
    let mac = iface
        .mac
        .filter(|m| *m != MacAddr::zero())
        .ok_or_else(|| LinkError::NoMac(name()))?;
    let (ip, prefix) = iface
        .ips
        .iter()
        .find_map(|n| match n {
            ipnetwork::IpNetwork::V4(v4) => Some((v4.ip(), v4.prefix())),
            ipnetwork::IpNetwork::V6(_) => None,
        })
        .ok_or_else(|| LinkError::NoIpv4(name()))?;
    Ok(InterfaceInfo {
        local: Local { mac, ip },
        network: Cidr::containing(ip, prefix),
    })
}

/// The MAC and IPv4 network of `name`, checking that it exists, is up and has both. Reading only.
pub fn interface_info(name: &str) -> Result<InterfaceInfo, LinkError> {
    info_of(&find_interface(name)?)
}

/// An `AF_PACKET` socket on one interface: both halves, and the interface's addresses.
pub struct Socket {
    pub info: InterfaceInfo,
    pub tx: Box<dyn DataLinkSender>,
    /// Each `next()` waits at most the `read_timeout` given to [`open_socket`]; see [`is_idle`].
    pub rx: Box<dyn DataLinkReceiver>,
}

/// Opens an `AF_PACKET` socket on `name` (checked as [`interface_info`] does: it exists, is up, has an
/// Ethernet MAC and an IPv4 address), not promiscuous: frames to us and broadcasts. A receive waits at most
/// `read_timeout`, so a receiving thread can check whether to stop.
pub fn open_socket(name: &str, read_timeout: Duration) -> Result<Socket, LinkError> {
    let iface = find_interface(name)?;
    let info = info_of(&iface)?;
    channel(&iface, info, read_timeout, None)
}

/// [`open_socket`], also receiving every multicast frame that reaches the interface (a `PACKET_MR_ALLMULTI`
/// membership of the socket), not only the groups the machine joined: what IPv6 hosts send to the
/// solicited-node groups of other hosts (neighbour solicitations, duplicate address detection) and to
/// `ff02::16` (MLD reports). The cost: the interface stops filtering multicast while the socket is open
/// (the kernel counts memberships and ends it with the last one), so the machine takes in every multicast
/// frame the switch floods to it (mDNS, SSDP, IPv6 ND, streams on a network without IGMP/MLD snooping)
/// and this socket's thread reads each. It needs nothing beyond CAP_NET_RAW.
pub fn open_listening_socket(name: &str, read_timeout: Duration) -> Result<Socket, LinkError> {
    let iface = find_interface(name)?;
    let info = info_of(&iface)?;
    let open = |source| LinkError::Open {
        iface: name.to_owned(),
        source,
    };
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Packet,
        nix::sys::socket::SockType::Raw,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        nix::sys::socket::SockProtocol::EthAll,
    )
    .map_err(|e| match e {
        nix::errno::Errno::EPERM | nix::errno::Errno::EACCES => {
            LinkError::PermissionDenied(name.to_owned())
        }
        e => open(io::Error::from(e)),
    })?;
    add_all_multicast(socket.as_fd(), iface.index).map_err(open)?;
    // pnet binds the socket to the interface and owns it from here (it closes it on failure too).
    channel(&iface, info, read_timeout, Some(socket.into_raw_fd()))
}

/// Adds a `PACKET_MR_ALLMULTI` membership on interface `ifindex` to the `AF_PACKET` socket `fd` (it ends
/// when the socket is closed). The one `unsafe` call of the crate: neither nix nor pnet wraps this option.
#[allow(unsafe_code)]
fn add_all_multicast(fd: BorrowedFd<'_>, ifindex: u32) -> io::Result<()> {
    use nix::libc;
    let request = libc::packet_mreq {
        mr_ifindex: i32::try_from(ifindex)
            .map_err(|_| io::Error::other("interface index out of range"))?,
        mr_type: libc::PACKET_MR_ALLMULTI as u16,
        mr_alen: 0,
        mr_address: [0; 8],
    };
    // SAFETY: `fd` is an open socket for the whole call, `request` is a properly initialized
    // `packet_mreq` that outlives the call, and the length passed is its exact size; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            std::ptr::from_ref(&request).cast(),
            std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn channel(
    iface: &NetworkInterface,
    info: InterfaceInfo,
    read_timeout: Duration,
    socket_fd: Option<i32>,
) -> Result<Socket, LinkError> {
    let name = iface.name.as_str();
    let config = Config {
        read_timeout: Some(read_timeout),
        write_timeout: Some(Duration::from_secs(1)),
        read_buffer_size: 65_536,
        promiscuous: false,
        socket_fd,
        ..Config::default()
    };
    match pnet_datalink::channel(iface, config) {
        Ok(Channel::Ethernet(tx, rx)) => Ok(Socket { info, tx, rx }),
        Ok(_) => Err(LinkError::NotEthernet(name.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            Err(LinkError::PermissionDenied(name.to_owned()))
        }
        Err(source) => Err(LinkError::Open {
            iface: name.to_owned(),
            source,
        }),
    }
}

/// A receive error that only means "nothing arrived in time" (or a signal interrupted the wait).
pub fn is_idle(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
    )
}

type Incoming = Result<Received, io::Error>;

/// An `AF_PACKET` socket on one interface; a thread receives ARP frames into a channel.
pub struct PacketLink {
    iface: String,
    local: Local,
    tx: Box<dyn DataLinkSender>,
    incoming: mpsc::Receiver<Incoming>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// How often the receiving thread checks whether to stop.
const RECV_POLL: Duration = Duration::from_millis(20);
const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];

impl PacketLink {
    /// Opens `name` (checked as [`interface_info`] does), not promiscuous: ARP replies to us and broadcasts
    /// are enough.
    pub fn open(name: &str) -> Result<Self, LinkError> {
        let Socket { info, tx, mut rx } = open_socket(name, RECV_POLL)?;
        let (sender, incoming) = mpsc::channel::<Incoming>();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(format!("arp-rx-{name}"))
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    match rx.next() {
                        Ok(frame) => {
                            let at = Instant::now();
                            if frame.get(12..14) != Some(&ETHERTYPE_ARP[..]) {
                                continue;
                            }
                            let frame = frame.to_vec();
                            if sender.send(Ok(Received { at, frame })).is_err() {
                                return;
                            }
                        }
                        Err(e) if is_idle(&e) => {}
                        Err(e) => {
                            drop(sender.send(Err(e)));
                            return;
                        }
                    }
                }
            })
            .map_err(|source| LinkError::Open {
                iface: name.to_owned(),
                source,
            })?;
        Ok(Self {
            iface: name.to_owned(),
            local: info.local,
            tx,
            incoming,
            stop,
            thread: Some(thread),
        })
    }
}

impl Link for PacketLink {
    fn local(&self) -> Local {
        self.local
    }

    fn send(&mut self, frame: &[u8]) -> Result<(), LinkError> {
        let err = |source| LinkError::Send {
            iface: self.iface.clone(),
            source,
        };
        // A full socket buffer (ENOBUFS) is back-pressure, not failure: wait a little and try again.
        let mut attempts = 0;
        loop {
            match self.tx.send_to(frame, None) {
                Some(Ok(())) => return Ok(()),
                Some(Err(e)) if is_transient(&e) && attempts < 100 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Some(Err(e)) => return Err(err(e)),
                None => return Err(err(io::Error::other("frame larger than the write buffer"))),
            }
        }
    }

    fn recv(&mut self, timeout: Duration) -> Result<Option<Received>, LinkError> {
        match self.incoming.recv_timeout(timeout) {
            Ok(Ok(r)) => Ok(Some(r)),
            Ok(Err(source)) => Err(LinkError::Recv {
                iface: self.iface.clone(),
                source,
            }),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(LinkError::ReceiverGone(self.iface.clone()))
            }
        }
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted | io::ErrorKind::TimedOut
    ) || e.raw_os_error() == Some(105) // ENOBUFS
}

impl Drop for PacketLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            drop(t.join());
        }
    }
}
