//! Facts about the host the agent reports: interfaces (getifaddrs), the local IP toward the portal, the MAC,
//! the hostname, and the platform (box, router, plain Linux).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::Path;

use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;
use outpost_cloud_link::protocol::{Interface, Platform};

/// One interface as getifaddrs shows it, with whether it is the loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInterface {
    pub iface: Interface,
    pub loopback: bool,
    /// Plain addresses (no prefix), for matching the local IP.
    pub ips: Vec<IpAddr>,
}

fn format_mac(bytes: [u8; 6]) -> Option<String> {
    if bytes == [0; 6] {
        return None;
    }
    Some(
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

fn prefix_len(mask: Option<&nix::sys::socket::SockaddrStorage>) -> Option<u32> {
    let mask = mask?;
    if let Some(m) = mask.as_sockaddr_in() {
        return Some(u32::from(m.ip()).count_ones());
    }
    mask.as_sockaddr_in6()
        .map(|m| u128::from(m.ip()).count_ones())
}

/// Every interface of this host with its MAC and addresses (CIDR), sorted by name. Reading only: no packets.
pub fn interfaces() -> std::io::Result<Vec<HostInterface>> {
    let mut by_name: BTreeMap<String, HostInterface> = BTreeMap::new();
    for ifa in getifaddrs().map_err(std::io::Error::from)? {
        let entry = by_name
            .entry(ifa.interface_name.clone())
            .or_insert_with(|| HostInterface {
                iface: Interface {
                    name: ifa.interface_name.clone(),
                    mac: None,
                    addrs: Vec::new(),
                },
                loopback: false,
                ips: Vec::new(),
            });
        entry.loopback |= ifa.flags.contains(InterfaceFlags::IFF_LOOPBACK);
        let Some(addr) = ifa.address.as_ref() else {
            continue;
        };
        if let Some(link) = addr.as_link_addr() {
            if let Some(mac) = link.addr().and_then(format_mac) {
                entry.iface.mac = Some(mac);
            }
        } else if let Some(v4) = addr.as_sockaddr_in() {
            let ip = IpAddr::V4(v4.ip());
            let prefix = prefix_len(ifa.netmask.as_ref()).unwrap_or(32);
            entry.iface.addrs.push(format!("{ip}/{prefix}"));
            entry.ips.push(ip);
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            let ip = IpAddr::V6(v6.ip());
            let prefix = prefix_len(ifa.netmask.as_ref()).unwrap_or(128);
            entry.iface.addrs.push(format!("{ip}/{prefix}"));
            entry.ips.push(ip);
        }
    }
    Ok(by_name.into_values().collect())
}

/// The source address the kernel would use to reach `target`: a UDP socket is connected (which only picks a
/// route; no packet is sent) and its local address read.
pub fn local_ip_towards(target: SocketAddr) -> std::io::Result<IpAddr> {
    let bind: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().map_err(std::io::Error::other)?
    } else {
        "[::]:0".parse().map_err(std::io::Error::other)?
    };
    let sock = UdpSocket::bind(bind)?;
    sock.connect(target)?;
    Ok(sock.local_addr()?.ip())
}

/// Resolves `host:port` and returns the local IP toward its first address.
pub fn local_ip_towards_host(host: &str, port: u16) -> std::io::Result<IpAddr> {
    let target = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{host} resolves to no address")))?;
    local_ip_towards(target)
}

/// The MAC of the interface holding `local_ip`, else of the first non-loopback interface that has one.
pub fn mac_for(local_ip: Option<IpAddr>, ifaces: &[HostInterface]) -> Option<String> {
    local_ip
        .and_then(|ip| {
            ifaces
                .iter()
                .find(|i| i.ips.contains(&ip))
                .and_then(|i| i.iface.mac.clone())
        })
        .or_else(|| {
            ifaces
                .iter()
                .filter(|i| !i.loopback)
                .find_map(|i| i.iface.mac.clone())
        })
}

/// The interfaces reported in a hello: all but the loopback.
pub fn reported_interfaces(ifaces: &[HostInterface]) -> Vec<Interface> {
    ifaces
        .iter()
        .filter(|i| !i.loopback)
        .map(|i| i.iface.clone())
        .collect()
}

/// The host's name, or `"unknown"` if it cannot be read.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// `router` if `<root>/etc/openwrt_release` exists, else `box` if `<root>/etc/outpost/box` exists, else `linux`.
pub fn detect_platform(root: &Path) -> Platform {
    if root.join("etc/openwrt_release").exists() {
        Platform::Router
    } else if root.join("etc/outpost/box").exists() {
        Platform::Box
    } else {
        Platform::Linux
    }
}

/// What the agent says about its host (activation and every hello).
#[derive(Debug, Clone)]
pub struct HostFacts {
    pub hostname: String,
    pub local_ip: Option<IpAddr>,
    pub mac: Option<String>,
    pub interfaces: Vec<Interface>,
}

/// Gathers [`HostFacts`] with the local IP as seen toward `host:port`. Failures leave fields empty (logged).
pub fn gather(host: &str, port: u16) -> HostFacts {
    let ifaces = interfaces().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot list network interfaces");
        Vec::new()
    });
    let local_ip = match local_ip_towards_host(host, port) {
        Ok(ip) => Some(ip),
        Err(e) => {
            tracing::warn!(host, port, error = %e, "cannot tell the local address toward the portal");
            None
        }
    };
    HostFacts {
        hostname: hostname(),
        mac: mac_for(local_ip, &ifaces),
        local_ip,
        interfaces: reported_interfaces(&ifaces),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_loopback() {
        let ifaces = interfaces().unwrap();
        let lo = ifaces
            .iter()
            .find(|i| i.loopback)
            .expect("a loopback interface");
        assert!(lo.iface.addrs.iter().any(|a| a == "127.0.0.1/8"), "{lo:?}");
        assert!(reported_interfaces(&ifaces)
            .iter()
            .all(|i| i.name != lo.iface.name));
    }

    #[test]
    fn local_ip_toward_loopback_is_loopback() {
        let ip = local_ip_towards("127.0.0.1:9".parse().unwrap()).unwrap();
        assert_eq!(ip, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert!(local_ip_towards_host("localhost", 9).unwrap().is_loopback());
    }

    #[test]
    fn mac_prefers_the_interface_holding_the_local_ip() {
        let iface = |name: &str, mac: Option<&str>, ip: &str, loopback| HostInterface {
            iface: Interface {
                name: name.into(),
                mac: mac.map(Into::into),
                addrs: vec![format!("{ip}/24")],
            },
            loopback,
            ips: vec![ip.parse().unwrap()],
        };
        let ifaces = [
            iface("lo", None, "127.0.0.1", true),
            iface("eth0", Some("02:00:00:00:00:01"), "192.0.2.7", false),
            iface("eth1", Some("02:00:00:00:00:02"), "198.51.100.7", false),
        ];
        assert_eq!(
            mac_for(Some("198.51.100.7".parse().unwrap()), &ifaces).as_deref(),
            Some("02:00:00:00:00:02")
        );
        assert_eq!(
            mac_for(Some("127.0.0.1".parse().unwrap()), &ifaces).as_deref(),
            Some("02:00:00:00:00:01"),
            "loopback has no MAC: the first interface with one"
        );
        assert_eq!(mac_for(None, &ifaces[..1]), None);
    }

    #[test]
    fn macs_format_and_zero_is_none() {
        assert_eq!(
            format_mac([2, 0, 0, 0xab, 0, 1]).as_deref(),
            Some("02:00:00:ab:00:01")
        );
        assert_eq!(format_mac([0; 6]), None);
    }

    #[test]
    fn platform_from_marker_files() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(detect_platform(root.path()), Platform::Linux);
        std::fs::create_dir_all(root.path().join("etc/outpost")).unwrap();
        std::fs::write(root.path().join("etc/outpost/box"), "").unwrap();
        assert_eq!(detect_platform(root.path()), Platform::Box);
        std::fs::write(
            root.path().join("etc/openwrt_release"),
            "DISTRIB_ID='OpenWrt'",
        )
        .unwrap();
        assert_eq!(detect_platform(root.path()), Platform::Router);
    }

    #[test]
    fn hostname_is_never_empty() {
        assert!(!hostname().is_empty());
    }
}
