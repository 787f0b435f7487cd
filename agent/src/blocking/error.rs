//! Why a block or an unblock failed: one sentence a user can act on, and the stable code (`control::codes`)
//! the portal gets with it.

use std::net::Ipv4Addr;

use outpost_cloud_link::control::{codes, DeviceRef};

use crate::discovery::datalink::LinkError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error(
        "this agent runs with platform = \"linux\": a generic Linux host neither routes the LAN nor should pause \
         the devices on it, so it does not block; set platform = \"box\" (a dedicated Outpost box on the LAN) or \
         platform = \"router\" (the agent runs on the gateway) in agent.toml"
    )]
    UnsupportedPlatform,

    #[error(
        "{device} is on VLAN {vlan}, which this box reaches through the tagged interface {interface}: ARP pausing \
         needs the box inside the device's broadcast domain the way it is on its native LAN, and a tagged VLAN \
         is not that; block the device with an agent on the router, or from a box plugged into that VLAN"
    )]
    TaggedVlan {
        device: DeviceRef,
        interface: String,
        vlan: u16,
    },

    #[error(
        "{device} is not in this agent's inventory and no IPv4 address was given for it: check the MAC and VLAN, \
         or wait until discovery has seen the device and try again"
    )]
    NotLocated { device: DeviceRef },

    #[error(
        "no IPv4 address is known for {device} on {interface}: a box pauses a device by its IPv4 address; wait \
         until discovery has seen the device with an address and try again"
    )]
    NoIpv4 {
        device: DeviceRef,
        interface: String,
    },

    #[error(
        "{ip}, the address known for {device}, now answers from {other}: the device has moved to another \
         address; wait until discovery has seen it again and try again"
    )]
    AddressMoved {
        device: DeviceRef,
        ip: Ipv4Addr,
        other: String,
    },

    #[error(
        "the gateway of {interface} is unknown (no default route leaves through it): set gateway = \"A.B.C.D\" \
         for the interface {interface} in the [[interfaces]] table of agent.toml"
    )]
    GatewayUnknown { interface: String },

    #[error(
        "the gateway {gateway} of {interface} does not answer ARP: check that it is up and is this segment's \
         gateway, or set the right gateway = \"A.B.C.D\" for the interface {interface} in agent.toml"
    )]
    GatewayNoAnswer {
        interface: String,
        gateway: Ipv4Addr,
    },

    #[error(
        "{device} is the gateway of {interface} ({gateway}): pausing it would cut the whole segment off the \
         internet; pick the device to pause, not the router"
    )]
    IsGateway {
        device: DeviceRef,
        interface: String,
        gateway: Ipv4Addr,
    },

    #[error("{device} is this agent itself ({what}): the agent does not pause its own host")]
    IsAgent { device: DeviceRef, what: String },

    #[error("cannot pause devices on {interface}: {source}")]
    Link {
        interface: String,
        #[source]
        source: LinkError,
    },

    #[error(
        "nftables refused the change to the table inet outpost: {stderr} (the agent needs CAP_NET_ADMIN and a \
         kernel with nf_tables)"
    )]
    Firewall { stderr: String },

    #[error("cannot run {program} to change the table inet outpost: {reason} (install nftables, or set blocking.nft in agent.toml to the path of nft)")]
    NftUnavailable { program: String, reason: String },

    #[error("blocking work on {interface} stopped before it ended ({reason}); try again")]
    Interrupted { interface: String, reason: String },

    #[error("the block could not be recorded: {0}")]
    Store(#[from] StoreError),

    #[error("{}", join(.0))]
    Several(Vec<BlockError>),
}

fn join(errors: &[BlockError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl BlockError {
    /// The stable code of `control::codes` that goes with the sentence.
    pub fn code(&self) -> &'static str {
        match self {
            BlockError::UnsupportedPlatform => codes::BLOCKING_UNSUPPORTED_PLATFORM,
            BlockError::TaggedVlan { .. } => codes::VLAN_TAGGED_UNBLOCKABLE,
            BlockError::NotLocated { .. }
            | BlockError::NoIpv4 { .. }
            | BlockError::AddressMoved { .. } => codes::DEVICE_UNKNOWN,
            BlockError::GatewayUnknown { .. } | BlockError::GatewayNoAnswer { .. } => {
                codes::GATEWAY_UNKNOWN
            }
            BlockError::Link { .. } => codes::INTERFACE_UNAVAILABLE,
            BlockError::IsGateway { .. } | BlockError::IsAgent { .. } => codes::DEVICE_IS_GATEWAY,
            BlockError::Firewall { .. } | BlockError::NftUnavailable { .. } => {
                codes::FIREWALL_FAILED
            }
            BlockError::Store(_) | BlockError::Interrupted { .. } => codes::BLOCK_FAILED,
            BlockError::Several(errors) => {
                errors.first().map_or(codes::BLOCK_FAILED, BlockError::code)
            }
        }
    }

    /// `errors` as one error: `None` when empty, the error itself when alone.
    pub(crate) fn all(mut errors: Vec<BlockError>) -> Result<(), BlockError> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(BlockError::Several(errors)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_code_of_the_protocol_and_a_sentence() {
        let device = DeviceRef::new("00:1a:11:00:00:01", Some(20)).unwrap();
        let cases = [
            (
                BlockError::UnsupportedPlatform,
                codes::BLOCKING_UNSUPPORTED_PLATFORM,
                "platform = \"box\"",
            ),
            (
                BlockError::TaggedVlan {
                    device: device.clone(),
                    interface: "trunk.20".into(),
                    vlan: 20,
                },
                codes::VLAN_TAGGED_UNBLOCKABLE,
                "router",
            ),
            (
                BlockError::GatewayUnknown {
                    interface: "lan0".into(),
                },
                codes::GATEWAY_UNKNOWN,
                "set gateway = \"A.B.C.D\" for the interface lan0",
            ),
            (
                BlockError::IsGateway {
                    device: device.clone(),
                    interface: "lan0".into(),
                    gateway: [10, 0, 0, 1].into(),
                },
                codes::DEVICE_IS_GATEWAY,
                "whole segment",
            ),
            (
                BlockError::Firewall {
                    stderr: "Error: No such file or directory".into(),
                },
                codes::FIREWALL_FAILED,
                "No such file",
            ),
            (
                BlockError::NotLocated { device },
                codes::DEVICE_UNKNOWN,
                "00:1a:11:00:00:01@20",
            ),
        ];
        for (err, code, says) in cases {
            assert_eq!(err.code(), code, "{err}");
            assert!(err.to_string().contains(says), "{err}");
        }
        let both = BlockError::all(vec![
            BlockError::UnsupportedPlatform,
            BlockError::Firewall { stderr: "x".into() },
        ])
        .unwrap_err();
        assert_eq!(both.code(), codes::BLOCKING_UNSUPPORTED_PLATFORM);
        assert!(both.to_string().contains("; nftables refused"), "{both}");
        assert!(BlockError::all(Vec::new()).is_ok());
    }
}
