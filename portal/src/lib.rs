//! The Outpost portal: the cloud side of the agent link.
//!
//! # Layout
//! - [`paths`]: the files inside the data directory.
//! - [`pki`]: the CA and server certificate (rcgen), made on first run.
//! - [`broker`]: the narrow [`broker::BrokerAdmin`] trait, Mosquitto's configuration and supervision, and
//!   the dynamic-security implementation.
//! - [`link`]: the portal's own MQTT session: agent messages in, commands out.
//! - [`store`]: SQLite through sqlx (agents, commands, reports, history, codes, tokens), migrations on open.
//! - [`clock`]: the [`clock::Clock`] every time-dependent rule reads (system, dev-settable, manual).
//! - [`codes`]: activation codes (Crockford base32 with a check character), pure.
//! - [`secrets`]: agent ids, agent secrets and API tokens, stored only hashed.
//! - [`passwords`]: passwords people choose (site owners), PBKDF2-hashed.
//! - [`lifecycle`]: the subscription rules, pure: state + action + time → transition.
//! - [`site`]: a site's configuration (contact, customer/contract ids, PSA mapping, address, pin, note)
//!   and its validation, pure.
//! - [`listing`]: the agents list, pure: the query (search, filters, sort, page), the shown status, the
//!   28-day flag and the online cut-off.
//! - [`export`]: the agents list as CSV (RFC 4180, formula-injection safe), pure.
//! - [`app`]: the operations (activation, rename, cleanup, delete, lifecycle, commands) combining store,
//!   broker and link.
//! - [`ingest`]: agent messages → store (dedupe by seq, gap counting, data epochs, acks).
//! - [`sweeper`]: applies subscription transitions that time made due.
//! - [`api`]: the HTTPS API (axum) under `/api/v1` and its OpenAPI document.
//! - [`web`]: the technicians' web pages (sign-in, agents, map, agent and device pages).
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod broker;
pub mod clock;
pub mod codes;
pub mod export;
pub mod ingest;
pub mod lifecycle;
pub mod link;
pub mod listing;
pub mod passwords;
pub mod paths;
pub mod pki;
pub mod secrets;
pub mod site;
pub mod store;
pub mod sweeper;
pub mod web;
