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
//! - [`passwords`]: passwords people choose: Argon2id hashing (legacy PBKDF2 still read) and the policy for
//!   new ones (length, zxcvbn score).
//! - [`totp`]: RFC 6238 one-time codes (secret, otpauth URI and QR code, checking with replay protection), pure.
//! - [`recovery_codes`]: one-time recovery codes for a lost authenticator, stored only hashed, pure.
//! - [`trusted_device`]: the signed "remember this device" cookie and browser descriptions, pure.
//! - [`lifecycle`]: the subscription rules, pure: state + action + time → transition.
//! - [`site`]: a site's configuration (contact, customer/contract ids, PSA mapping, address, pin, note)
//!   and its validation, pure.
//! - [`listing`]: the agents list, pure: the query (search, filters, sort, page), the shown status, the
//!   28-day flag and the online cut-off.
//! - [`export`]: the agents list as CSV (RFC 4180, formula-injection safe), pure.
//! - [`rollout`]: the stages of an update rollout, pure: the agents' order, stage sizes, advance, pause,
//!   done.
//! - [`app`]: the operations (activation, rename, cleanup, delete, lifecycle, commands) combining store,
//!   broker and link.
//! - [`ingest`]: agent messages → store (dedupe by seq, gap counting, data epochs, acks).
//! - [`sweeper`]: applies subscription transitions that time made due.
//! - [`api`]: the HTTPS API (axum) under `/api/v1` and its OpenAPI document.
//! - [`web`]: the technicians' web pages (sign-in, agents, map, agent and device pages).
//! - [`branding`]: a company's branding, pure: details checked, logos checked and re-encoded to PNG.
//! - [`config`]: the portal's TOML configuration file (`[web]` public URL, `[smtp]` server), checked on load.
//! - [`mail`]: emails over SMTP (lettre) and their texts (invitations, resets, email changes, reminders).
#![forbid(unsafe_code)]

pub mod access;
pub mod api;
pub mod app;
pub mod branding;
pub mod broker;
pub mod clock;
pub mod codes;
pub mod config;
pub mod export;
pub mod ingest;
pub mod lifecycle;
pub mod link;
pub mod listing;
pub mod mail;
pub mod passwords;
pub mod paths;
pub mod pki;
pub mod recovery_codes;
pub mod rollout;
pub mod secrets;
pub mod site;
pub mod store;
pub mod sweeper;
pub mod time_zone;
pub mod totp;
pub mod trusted_device;
pub mod web;
