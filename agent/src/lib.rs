//! The Outpost on-site agent: activates with a code from the portal, then keeps an MQTT 3.1.1/TLS link to the
//! portal's broker and follows the lifecycle the portal enforces (see `ARCHITECTURE.md`).
//!
//! # Layout
//! - [`commands`]: the CLI (`activate`, `run`, `launch`, `status`, `scan`, `devices`, `print-config`), exit codes; the top
//!   of the binary.
//! - [`config`]: `agent.toml`, raw → validated, with the documented defaults compiled in.
//! - [`state_dir`]: what lives where in the state directory, atomic writes, the wipe after deletion.
//! - [`identity`]: `identity.json` (agent id, secret, broker, CAs, name, platform).
//! - [`store`]: the sled database (outbox log, executed command ids, data epoch, local data); the only sled user.
//! - [`portal_api`]: the portal's agent-facing HTTPS API (activate, status) and its errors.
//! - [`hostinfo`]: interfaces, local IP, MAC, hostname, platform detection.
//! - [`link`]: the broker session loop: outbox draining, commands, heartbeats, refusal → portal → lifecycle.
//! - [`executor`]: runs each command at most once (rename, cleanup, ping; block, unblock and power are
//!   recorded and handed back to run off the link's loop).
//! - [`actions`]: runs block, unblock and power commands in tasks of their own.
//! - [`blocking`]: pausing devices' internet access: box ARP pausing, router nftables, the linux refusal.
//! - [`power`]: outlet control: PoE ports and APC PDU outlets over SNMP, Shelly and Tasmota plugs over HTTP,
//!   Wake-on-LAN; every action read back.
//! - [`runtime_status`]: `runtime.json` written by the daemon and the `status` report.
//! - [`notify`]: systemd readiness, status and watchdog.
//! - [`logging`]: tracing to stderr, text or JSON.
//! - [`discovery`]: LAN discovery: sweeps, probes, passive ARP/DHCP, mDNS, SSDP, reverse DNS, MAC vendors, the
//!   inventory and the engine that runs them per interface.
//! - [`control`]: the daemon's local control socket (`outpost-agent devices` of a running agent).
//! - [`geoip`]: GeoIP self-location: the optional City database, the public address the portal tells, the
//!   `location` report.
//! - [`settings`]: the portal's settings document laid over the local file (pinned settings kept), stored,
//!   what changes live and what takes a restart.
//! - [`diagnostics`]: the health snapshot and log lines the portal asks for.
//! - [`build_info`]: this binary's version and target triple (and a test build's fault), stamped by `build.rs`.
//! - [`update`]: over-the-air updates: the launcher, installing a signed release, commit and rollback.
//! - [`uci`]: OpenWrt's UCI file (`/etc/config/outpost`) → `agent.toml` (`config-from-uci`).
#![deny(unsafe_code)]
// One exception, `discovery::datalink::add_all_multicast` (PACKET_ADD_MEMBERSHIP, which no safe crate wraps).

pub mod actions;
pub mod blocking;
pub mod build_info;
pub mod commands;
pub mod config;
pub mod control;
pub mod diagnostics;
pub mod discovery;
pub mod executor;
pub mod geoip;
pub mod hostinfo;
pub mod identity;
pub mod link;
pub mod logging;
pub mod notify;
pub mod portal_api;
pub mod power;
pub mod runtime_status;
pub mod settings;
pub mod state_dir;
pub mod store;
pub mod uci;
pub mod update;
