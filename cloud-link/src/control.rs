//! Device control, shared by both sides: which device a command is about, power outlets and their
//! credentials, power actions, the agent's block records, and the error codes a failed control command
//! carries (`Outcome::Failed::code`).
//!
//! A device is named on the wire by [`DeviceRef`] (VLAN + MAC, the inventory's key) and in URLs by its
//! [`DeviceRef::id`]: `aa:bb:cc:dd:ee:ff` without a VLAN, `aa:bb:cc:dd:ee:ff@10` on VLAN 10.
//!
//! Outlet bindings live in the portal and travel inside every power command, so the agent keeps no
//! credentials of its own and a binding changed in the portal applies to the next action.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::inventory::normalize_mac;

/// The device a command is about: the inventory's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeviceRef {
    /// Lower-case `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
}

/// `s` is not a device id (`MAC` or `MAC@VLAN`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a device id: give its MAC (aa:bb:cc:dd:ee:ff), followed by @VLAN when it was seen on a VLAN (aa:bb:cc:dd:ee:ff@10)")]
pub struct BadDeviceId(pub String);

impl DeviceRef {
    pub fn new(mac: &str, vlan: Option<u16>) -> Option<Self> {
        Some(Self {
            mac: normalize_mac(mac)?,
            vlan: vlan.filter(|v| *v != 0),
        })
    }

    /// The id used in URLs: `MAC` or `MAC@VLAN`.
    pub fn id(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for DeviceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.vlan {
            Some(v) => write!(f, "{}@{v}", self.mac),
            None => f.write_str(&self.mac),
        }
    }
}

impl FromStr for DeviceRef {
    type Err = BadDeviceId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadDeviceId(s.to_owned());
        let (mac, vlan) = match s.split_once('@') {
            Some((mac, vlan)) => {
                let vlan: u16 = vlan.parse().map_err(|_| bad())?;
                if !(1..=4094).contains(&vlan) {
                    return Err(bad());
                }
                (mac, Some(vlan))
            }
            None => (s, None),
        };
        DeviceRef::new(mac, vlan).ok_or_else(bad)
    }
}

/// What to do with a device's power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerAction {
    On,
    Off,
    /// Off, wait the binding's `cycle_delay_secs`, on.
    Cycle,
}

impl PowerAction {
    pub const ALL: [PowerAction; 3] = [PowerAction::On, PowerAction::Off, PowerAction::Cycle];

    /// The action named `on`, `off` or `cycle` (as [`PowerAction::as_str`] writes it).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PowerAction::On => "on",
            PowerAction::Off => "off",
            PowerAction::Cycle => "cycle",
        }
    }
}

impl fmt::Display for PowerAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A power state read back from the outlet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    On,
    Off,
    /// The method cannot read a state back (Wake-on-LAN).
    Unknown,
}

/// Default wait between off and on in a `cycle`.
pub const DEFAULT_CYCLE_DELAY_SECS: u32 = 5;
/// Longest `cycle_delay_secs` accepted.
pub const MAX_CYCLE_DELAY_SECS: u32 = 600;

/// Where a device takes its power from, and how to switch it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutletBinding {
    pub outlet: Outlet,
    /// Wait between off and on in a `cycle`.
    #[serde(default = "default_cycle_delay")]
    pub cycle_delay_secs: u32,
}

fn default_cycle_delay() -> u32 {
    DEFAULT_CYCLE_DELAY_SECS
}

/// One way of switching power.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Outlet {
    /// A PoE switch port: POWER-ETHERNET-MIB `pethPsePortAdminEnable.<group>.<port>` (1 on, 2 off).
    PoeSnmp {
        /// `host` or `host:port` (default port 161).
        host: String,
        group: u32,
        port: u32,
        snmp: SnmpAuth,
    },
    /// An APC rack PDU outlet: PowerNet-MIB `sPDUOutletCtl.<outlet>` (1 on, 2 off, 3 reboot).
    ApcPdu {
        host: String,
        outlet: u32,
        snmp: SnmpAuth,
    },
    /// A Shelly Gen2 plug or relay: RPC `Switch.Set` / `Switch.GetStatus`, digest auth when a password is set.
    Shelly {
        /// `host` or `host:port` (HTTP).
        host: String,
        #[serde(default)]
        switch_id: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<String>,
    },
    /// A Tasmota plug: `/cm?cmnd=Power<relay> On|Off`, with `user`/`password` when web auth is set.
    Tasmota {
        host: String,
        /// Relay number (1 = `Power1`; 0 or absent = `Power`).
        #[serde(default)]
        relay: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<String>,
    },
    /// Wake-on-LAN: `on` only, a magic packet to the device's MAC on the interface it was seen on.
    WakeOnLan {
        /// SecureOn password: six bytes as `aa:bb:cc:dd:ee:ff`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secureon: Option<String>,
    },
}

impl Outlet {
    pub fn kind(&self) -> &'static str {
        match self {
            Outlet::PoeSnmp { .. } => "poe_snmp",
            Outlet::ApcPdu { .. } => "apc_pdu",
            Outlet::Shelly { .. } => "shelly",
            Outlet::Tasmota { .. } => "tasmota",
            Outlet::WakeOnLan { .. } => "wake_on_lan",
        }
    }

    /// The same binding with every secret replaced by `"********"` (what the portal shows back).
    pub fn redacted(&self) -> Outlet {
        const HIDDEN: &str = "********";
        let hide = |s: &Option<String>| s.as_ref().map(|_| HIDDEN.to_owned());
        match self.clone() {
            Outlet::PoeSnmp {
                host,
                group,
                port,
                snmp,
            } => Outlet::PoeSnmp {
                host,
                group,
                port,
                snmp: snmp.redacted(),
            },
            Outlet::ApcPdu { host, outlet, snmp } => Outlet::ApcPdu {
                host,
                outlet,
                snmp: snmp.redacted(),
            },
            Outlet::Shelly {
                host,
                switch_id,
                password,
            } => Outlet::Shelly {
                host,
                switch_id,
                password: hide(&password),
            },
            Outlet::Tasmota {
                host,
                relay,
                user,
                password,
            } => Outlet::Tasmota {
                host,
                relay,
                user,
                password: hide(&password),
            },
            Outlet::WakeOnLan { secureon } => Outlet::WakeOnLan {
                secureon: hide(&secureon),
            },
        }
    }
}

/// SNMP credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "version", rename_all = "lowercase")]
pub enum SnmpAuth {
    V2c {
        community: String,
    },
    /// USM. `auth_protocol`/`priv_protocol` absent means noAuthNoPriv / authNoPriv.
    V3 {
        user: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        auth_protocol: Option<SnmpAuthProtocol>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        auth_password: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        priv_protocol: Option<SnmpPrivProtocol>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        priv_password: Option<String>,
    },
}

impl SnmpAuth {
    fn redacted(self) -> SnmpAuth {
        const HIDDEN: &str = "********";
        match self {
            SnmpAuth::V2c { .. } => SnmpAuth::V2c {
                community: HIDDEN.into(),
            },
            SnmpAuth::V3 {
                user,
                auth_protocol,
                auth_password,
                priv_protocol,
                priv_password,
            } => SnmpAuth::V3 {
                user,
                auth_protocol,
                auth_password: auth_password.map(|_| HIDDEN.into()),
                priv_protocol,
                priv_password: priv_password.map(|_| HIDDEN.into()),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnmpAuthProtocol {
    Md5,
    Sha,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnmpPrivProtocol {
    Des,
    Aes,
    Aes192,
    Aes256,
}

/// What a successful power command reports back (`Ack::result`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerResult {
    pub action: PowerAction,
    /// The state read back after the action.
    pub state: PowerState,
}

/// How the agent pauses a device's internet access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockMethod {
    /// Box: the device and the gateway are told each other's IP is at a MAC that goes nowhere.
    ArpPause,
    /// Router: the device's MAC and addresses are in the `inet outpost` nftables sets.
    Nftables,
}

/// One blocked device as the agent keeps and reports it (`Ack::result` of a block, and the `blocks` report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRecord {
    pub device: DeviceRef,
    pub interface: String,
    pub method: BlockMethod,
    /// The IPv4 address being paused (the device's address when the block was last applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Addr>,
    /// IPv6 addresses the device has that the block does not cover (ARP pausing is IPv4 only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv6_uncovered: Vec<Ipv6Addr>,
    /// Unix milliseconds of the block command.
    pub since_ms: i64,
}

/// The `blocks` report: every device the agent blocks now (sent on connect and after every change).
pub const BLOCKS_REPORT: &str = "blocks";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlocksReport {
    pub blocks: Vec<BlockRecord>,
}

/// The error codes a failed block, unblock or power command carries, with the sentence that goes with it.
pub mod codes {
    /// The device was seen on an interface configured `tagged = true`: a box is not in its broadcast domain.
    pub const VLAN_TAGGED_UNBLOCKABLE: &str = "vlan_tagged_unblockable";
    /// The agent runs on a generic Linux host (`platform = "linux"`): it neither routes nor may pause.
    pub const BLOCKING_UNSUPPORTED_PLATFORM: &str = "blocking_unsupported_platform";
    /// The agent does not know the device (not in its inventory, or no address to pause).
    pub const DEVICE_UNKNOWN: &str = "device_unknown";
    /// Box: the interface's gateway could not be determined or does not answer ARP.
    pub const GATEWAY_UNKNOWN: &str = "gateway_unknown";
    /// The device is the gateway itself (or the agent): pausing it would cut the whole LAN off.
    pub const DEVICE_IS_GATEWAY: &str = "device_is_gateway";
    /// Router: nftables refused the change (or `nft` is missing).
    pub const FIREWALL_FAILED: &str = "firewall_failed";
    /// Box: the agent cannot send on the device's interface (down, gone, no permission for raw sockets).
    pub const INTERFACE_UNAVAILABLE: &str = "interface_unavailable";
    /// The agent could not store or keep up the block (its database failed, or it was stopping).
    pub const BLOCK_FAILED: &str = "block_failed";
    /// Power: the device has no outlet binding.
    pub const NO_OUTLET: &str = "no_outlet";
    /// Power: the outlet's method cannot do this action (Wake-on-LAN can only turn on).
    pub const ACTION_UNSUPPORTED: &str = "action_unsupported";
    /// Power: no answer within the timeout (for SNMP v2c this is also what a wrong community looks like).
    pub const TIMEOUT: &str = "timeout";
    /// Power: the host refused the connection or has no route.
    pub const UNREACHABLE: &str = "unreachable";
    /// Power: wrong community, SNMPv3 user/keys, or plug password.
    pub const AUTH_FAILED: &str = "auth_failed";
    /// Power: the outlet answered, but its state read back is not the one asked for.
    pub const STATE_MISMATCH: &str = "state_mismatch";
    /// Power: the outlet answered with an error or something unreadable (no such port, not writable).
    pub const OUTLET_ERROR: &str = "outlet_error";
    /// The binding is malformed (bad host, bad SecureOn password).
    pub const BAD_BINDING: &str = "bad_binding";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_actions_read_back_their_names_only() {
        for a in PowerAction::ALL {
            assert_eq!(PowerAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(PowerAction::parse("ON"), None);
        assert_eq!(PowerAction::parse("reboot"), None);
    }

    #[test]
    fn device_ids_round_trip_and_bad_ones_say_what_is_expected() {
        let d: DeviceRef = "AA-BB-CC-DD-EE-01@10".parse().unwrap();
        assert_eq!(d.mac, "aa:bb:cc:dd:ee:01");
        assert_eq!(d.vlan, Some(10));
        assert_eq!(d.id(), "aa:bb:cc:dd:ee:01@10");
        assert_eq!(d.id().parse::<DeviceRef>().unwrap(), d);
        let n: DeviceRef = "aa:bb:cc:dd:ee:01".parse().unwrap();
        assert_eq!(n.vlan, None);
        assert_eq!(n.id(), "aa:bb:cc:dd:ee:01");
        for bad in [
            "",
            "aa:bb",
            "aa:bb:cc:dd:ee:01@",
            "aa:bb:cc:dd:ee:01@0",
            "aa:bb:cc:dd:ee:01@5000",
            "zz:bb:cc:dd:ee:01",
        ] {
            let err = bad.parse::<DeviceRef>().unwrap_err();
            assert!(err.to_string().contains("MAC"), "{err}");
        }
        assert_eq!(
            DeviceRef::new("aa:bb:cc:dd:ee:01", Some(0)).unwrap().vlan,
            None
        );
    }

    #[test]
    fn bindings_parse_with_defaults_and_redact_every_secret() {
        let raw = r#"{"outlet":{"type":"poe_snmp","host":"10.0.0.2","group":1,"port":4,
            "snmp":{"version":"v3","user":"ops","auth_protocol":"sha","auth_password":"a-secret",
                    "priv_protocol":"aes","priv_password":"p-secret"}}}"#;
        let b: OutletBinding = serde_json::from_str(raw).unwrap();
        assert_eq!(b.cycle_delay_secs, DEFAULT_CYCLE_DELAY_SECS);
        let shown = serde_json::to_string(&b.outlet.redacted()).unwrap();
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("ops"));
        for outlet in [
            Outlet::Shelly {
                host: "h".into(),
                switch_id: 0,
                password: Some("pw-secret".into()),
            },
            Outlet::Tasmota {
                host: "h".into(),
                relay: 1,
                user: Some("admin".into()),
                password: Some("pw-secret".into()),
            },
            Outlet::ApcPdu {
                host: "h".into(),
                outlet: 3,
                snmp: SnmpAuth::V2c {
                    community: "c-secret".into(),
                },
            },
            Outlet::WakeOnLan {
                secureon: Some("01:02:03:04:05:06".into()),
            },
        ] {
            let shown = serde_json::to_string(&outlet.redacted()).unwrap();
            assert!(
                !shown.contains("secret") && !shown.contains("01:02"),
                "{shown}"
            );
            let back: Outlet =
                serde_json::from_str(&serde_json::to_string(&outlet).unwrap()).unwrap();
            assert_eq!(back, outlet);
        }
    }
}
