//! LAN discovery: find every device on an interface's network.
//!
//! - [`oui`]: MAC vendor lookup compiled in from the IEEE registries (`build.rs`), locally administered MACs.
//! - [`arp`]: ARP request frames and reply parsing; pure.
//! - [`sweep`]: targets (CIDR ≤ /16 or an explicit range), send rate, retries, adaptive end; pure.
//! - [`datalink`]: the [`datalink::Link`] trait and its `AF_PACKET` implementation on one interface.
//! - [`scanner`]: runs a sweep over a link.
//!
//! ```text
//!  targets ─▶ Sweep::poll(now) ─▶ Send(ip) ──▶ arp::request ─▶ Link::send ─▶ LAN
//!               ▲                                                           │
//!               └── Sweep::on_reply(at, ip, mac) ◀── arp::reply_to ◀── Link::recv (rx thread)
//! ```

pub mod arp;
pub mod datalink;
pub mod oui;
pub mod scanner;
pub mod sweep;
