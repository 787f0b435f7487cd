//! The Outpost portal: the cloud side of the agent link.
//!
//! # Layout
//! - [`paths`]: the files inside the data directory.
//! - [`pki`]: the CA and server certificate (rcgen), made on first run.
//! - [`broker`]: the narrow [`broker::BrokerAdmin`] trait, Mosquitto's configuration and supervision, and
//!   the dynamic-security implementation.
//! - [`link`]: the portal's own MQTT session: agent messages in, commands out.
#![forbid(unsafe_code)]

pub mod broker;
pub mod link;
pub mod paths;
pub mod pki;
