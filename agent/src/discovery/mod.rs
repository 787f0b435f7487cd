//! LAN discovery: find every device on an interface's network.
//!
//! - [`oui`]: MAC vendor lookup compiled in from the IEEE registries (`build.rs`), locally administered MACs.
//! - [`arp`]: ARP request frames and reply parsing; pure.
//! - [`sweep`]: targets (CIDR ≤ /16 or an explicit range), send rate, retries, adaptive end; pure.
//! - [`datalink`]: the [`datalink::Link`] trait and its `AF_PACKET` implementation on one interface.
//! - [`scanner`]: runs a sweep over a link.
//! - [`passive`]: hears devices between sweeps (ARP, gratuitous ARP, DHCP client messages) on an `AF_PACKET`
//!   listener.
//! - [`probe`]: liveness of known devices now: ARP who-has (MAC and RTT, firewalls cannot hide it) and ICMP
//!   echo (RTT).
//! - [`mdns`]: mDNS/DNS-SD browsing on one interface: host names, services and TXT model hints per IPv4
//!   address.
//! - [`ssdp`]: SSDP M-SEARCH on one interface and the UPnP device descriptions of the devices that answer.
//! - [`rdns`]: reverse DNS (PTR) names from the LAN's resolver, many at once, normalized.
//! - [`inventory`]: devices keyed by (VLAN, MAC) in memory, events, online/offline hysteresis; pure.
//! - [`engine`]: the daemon's discovery: one task per interface running all of the above into the inventory.
//!
//! ```text
//!  targets ─▶ Sweep::poll(now) ─▶ Send(ip) ──▶ arp::request ─▶ Link::send ─▶ LAN
//!               ▲                                                           │
//!               └── Sweep::on_reply(at, ip, mac) ◀── arp::reply_to ◀── Link::recv (rx thread)
//! ```

pub mod arp;
pub mod datalink;
pub mod engine;
pub mod inventory;
pub mod mdns;
pub mod oui;
pub mod passive;
pub mod probe;
pub mod rdns;
pub mod scanner;
pub mod ssdp;
pub mod sweep;
