//! What both sides of the Outpost link share: the agent and the portal depend on this crate.
//!
//! # Layout
//! - [`agent_id`]: the agent identifier (`[a-z0-9-]`, also the broker username and MQTT client id).
//! - [`topics`]: the topic layout, one subtree per agent (`agents/<id>/up/<kind>`, `agents/<id>/down/cmd`,
//!   `agents/<id>/down/notice`).
//! - [`protocol`]: the versioned serde messages on those topics (agent → portal and portal → agent).
//! - [`session`]: MQTT 3.1.1 over TLS options (rumqttc + rustls with the `ring` provider, TCP_NODELAY on).
//! - [`enrollment`]: the agent's HTTPS calls to the portal (activation, status) and their JSON.
//! - [`inventory`]: the device inventory both sides share: device records, events, snapshot and delta reports.
//! - [`control`]: device control: device ids, power outlets and actions, block records, error codes.
//! - [`geoip`]: GeoIP self-location: City database lookups ([`geoip::GeoIpDb`]) and the `location` report.
//! - [`backoff`]: jittered exponential reconnect backoff, pure and testable.
//! - [`release`]: signed agent releases: the manifest, its Ed25519 signature, trusted keys and the install checks.
//! - [`settings`]: the agent's settings as the portal manages them: the versioned document, its schema, checks.
//! - [`diagnostics`]: what an agent's health snapshot and log lines look like.
//! - [`update`]: over-the-air updates: the states of an update and the `update` report of each step.
//! - [`outbox`]: the agent's bounded, persistent FIFO of messages that leave only after the broker's PUBACK;
//!   storage is a narrow trait so the agent keeps its one store module.
#![forbid(unsafe_code)]

pub mod agent_id;
pub mod backoff;
pub mod control;
pub mod diagnostics;
pub mod enrollment;
pub mod geoip;
pub mod inventory;
pub mod outbox;
pub mod protocol;
pub mod release;
pub mod session;
pub mod settings;
pub mod topics;
pub mod update;

pub use agent_id::AgentId;
