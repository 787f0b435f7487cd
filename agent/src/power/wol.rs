//! Wake-on-LAN: turns a sleeping PC on with a magic packet (six `0xff`, the device's MAC sixteen times, then
//! the six-byte SecureOn password when one is set), sent as a UDP broadcast to port 9 out of the interface the
//! device was seen on (`SO_BINDTODEVICE`, so it leaves there whatever the routes say). It can only turn a
//! device on, and cannot read a state back.

use std::net::{Ipv4Addr, SocketAddrV4};

use outpost_cloud_link::control::{PowerAction, PowerState};
use tokio::net::UdpSocket;

use super::{PowerError, PowerTarget, Switch};

/// The method's name in messages.
pub const METHOD: &str = "Wake-on-LAN";
/// The discard port, where Wake-on-LAN packets traditionally go.
pub const PORT: u16 = 9;
/// Six `0xff`, sixteen MACs.
pub const PACKET_LEN: usize = 6 + 16 * 6;

/// A magic packet to one device out of one interface.
#[derive(Debug)]
pub struct WakeOnLan {
    interface: String,
    packet: Vec<u8>,
    shown: String,
}

impl WakeOnLan {
    pub fn new(target: &PowerTarget, secureon: Option<&str>) -> Result<Self, PowerError> {
        let interface = target
            .interface
            .as_deref()
            .filter(|i| !i.is_empty())
            .ok_or_else(|| {
                PowerError::BadTarget(format!(
                    "Wake-on-LAN goes out of the interface the device was seen on, and the agent has not seen {} on any: wait until discovery finds it (it has to be on one of the agent's LANs), then try again",
                    target.device
                ))
            })?;
        if interface.len() > 15 || interface.contains(['/', ' ']) {
            return Err(PowerError::BadTarget(format!(
                "Wake-on-LAN cannot go out of {interface:?}: it is not an interface name"
            )));
        }
        let mac = parse_six(&target.device.mac).ok_or_else(|| {
            PowerError::BadTarget(format!(
                "Wake-on-LAN needs the device's MAC, and {:?} is not one",
                target.device.mac
            ))
        })?;
        let secureon = match secureon.map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(raw) => Some(parse_six(raw).ok_or_else(|| {
                PowerError::BadBinding(
                    "the SecureOn password must be six bytes written like a MAC (aa:bb:cc:dd:ee:ff)"
                        .to_owned(),
                )
            })?),
        };
        Ok(WakeOnLan {
            interface: interface.to_owned(),
            packet: magic_packet(mac, secureon),
            shown: format!("broadcast on {interface}"),
        })
    }

    async fn send(&self) -> std::io::Result<()> {
        let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)).await?;
        socket.bind_device(Some(self.interface.as_bytes()))?;
        socket.set_broadcast(true)?;
        let sent = socket
            .send_to(&self.packet, SocketAddrV4::new(Ipv4Addr::BROADCAST, PORT))
            .await?;
        if sent != self.packet.len() {
            return Err(std::io::Error::other(format!(
                "only {sent} of {} bytes went out",
                self.packet.len()
            )));
        }
        Ok(())
    }
}

impl Switch for WakeOnLan {
    fn host(&self) -> &str {
        &self.shown
    }

    fn what(&self) -> String {
        "Wake-on-LAN".to_owned()
    }

    fn method(&self) -> &'static str {
        METHOD
    }

    fn supports(&self, action: PowerAction) -> bool {
        action == PowerAction::On
    }

    fn readable(&self) -> bool {
        false
    }

    async fn set(&self, on: bool) -> Result<(), PowerError> {
        if !on {
            return Err(PowerError::Unsupported {
                method: self.method(),
                action: PowerAction::Off,
            });
        }
        self.send().await.map_err(|e| {
            let detail = match e.raw_os_error() {
                Some(19) => "the interface does not exist (any more)".to_owned(),
                Some(1) => format!("sending out of a chosen interface needs CAP_NET_RAW ({e})"),
                _ => format!("sending the magic packet failed: {e}"),
            };
            PowerError::Unreachable {
                host: self.interface.clone(),
                detail,
                hint: "the device was last seen on it; wait until discovery sees it again, then try again",
            }
        })
    }

    async fn read(&self) -> Result<PowerState, PowerError> {
        Ok(PowerState::Unknown)
    }
}

/// The magic packet for `mac`, with the SecureOn password appended when there is one.
pub fn magic_packet(mac: [u8; 6], secureon: Option<[u8; 6]>) -> Vec<u8> {
    let mut packet = Vec::with_capacity(PACKET_LEN + 6);
    packet.extend_from_slice(&[0xff; 6]);
    for _ in 0..16 {
        packet.extend_from_slice(&mac);
    }
    if let Some(password) = secureon {
        packet.extend_from_slice(&password);
    }
    packet
}

/// Six hex bytes separated by `:` or `-` (a MAC, or a SecureOn password written like one).
pub fn parse_six(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.trim().split([':', '-']);
    for byte in &mut out {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    use outpost_cloud_link::control::{codes, DeviceRef};

    use super::*;

    #[test]
    fn the_magic_packet_is_sync_then_sixteen_macs_then_the_password() {
        let mac = [0x00, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e];
        let p = magic_packet(mac, None);
        assert_eq!(p.len(), 102);
        assert_eq!(&p[..6], &[0xff; 6]);
        for i in 0..16 {
            assert_eq!(&p[6 + i * 6..12 + i * 6], &mac, "copy {i}");
        }
        let p = magic_packet(mac, Some([1, 2, 3, 4, 5, 6]));
        assert_eq!(p.len(), 108);
        assert_eq!(&p[102..], &[1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn six_bytes_parse_like_a_mac() {
        assert_eq!(
            parse_six("aa:BB:cc:00:11:22"),
            Some([0xaa, 0xbb, 0xcc, 0, 0x11, 0x22])
        );
        assert_eq!(parse_six("01-02-03-04-05-06"), Some([1, 2, 3, 4, 5, 6]));
        for bad in [
            "",
            "01:02:03:04:05",
            "01:02:03:04:05:06:07",
            "1:2:3:4:5:6",
            "zz:02:03:04:05:06",
        ] {
            assert_eq!(parse_six(bad), None, "{bad:?}");
        }
    }

    fn target(interface: Option<&str>) -> PowerTarget {
        PowerTarget {
            device: DeviceRef::new("00:1a:2b:3c:4d:5e", None).unwrap(),
            interface: interface.map(str::to_owned),
            ipv4: None,
        }
    }

    #[test]
    fn a_binding_needs_the_interface_and_a_good_password() {
        let err = WakeOnLan::new(&target(None), None).unwrap_err();
        assert_eq!(err.code(), codes::BAD_BINDING);
        assert!(err.to_string().contains("interface"), "{err}");
        let err = WakeOnLan::new(&target(Some("lan0")), Some("12345")).unwrap_err();
        assert_eq!(err.code(), codes::BAD_BINDING);
        assert!(!err.to_string().contains("12345"), "{err}");
        let w = WakeOnLan::new(&target(Some("lan0")), Some("01:02:03:04:05:06")).unwrap();
        assert_eq!(w.packet.len(), 108);
        assert!(w.supports(PowerAction::On));
        assert!(!w.supports(PowerAction::Off) && !w.supports(PowerAction::Cycle));
    }
}
