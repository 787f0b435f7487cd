//! `outpost-agent scan --interface IF [--cidr CIDR] [--rate PPS] [--retries N] [--json] [--no-mdns]`: one
//! ARP sweep of a LAN, printed as a table or JSON. Standalone: no portal, no activation, no state directory.

use std::net::Ipv4Addr;
use std::time::Instant;

use anyhow::Context;
use pnet_datalink::MacAddr;
use serde::Serialize;
use tracing::info;

use super::Exit;
use crate::config::LogFormat;
use crate::discovery::datalink::{interface_info, PacketLink};
use crate::discovery::sweep::{Found, Sweep, SweepConfig, Targets};
use crate::discovery::{oui, scanner};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The interface to sweep from (its MAC and first IPv4 address are the sender; needs CAP_NET_RAW).
    #[arg(long, short = 'i', value_name = "IF")]
    pub interface: String,
    /// What to sweep: a CIDR of at most /16 (192.168.1.0/24) or an explicit range (10.0.0.1-10.0.7.255).
    /// Default: the interface's IPv4 network.
    #[arg(long, value_name = "CIDR")]
    pub cidr: Option<Targets>,
    /// ARP requests per second (arp-scan's default is about 380).
    #[arg(long, value_name = "PPS", default_value_t = SweepConfig::default().rate_pps,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate: u32,
    /// Extra rounds for addresses that did not answer.
    #[arg(long, value_name = "N", default_value_t = SweepConfig::default().retries,
          value_parser = clap::value_parser!(u32).range(0..=10))]
    pub retries: u32,
    /// Print one JSON array of hosts on stdout, sorted by IP: ip, mac, vendor, names, locally_administered,
    /// rtt_ms.
    #[arg(long)]
    pub json: bool,
    /// Skip the mDNS name lookup. mDNS is not implemented yet: names are always empty, so this changes
    /// nothing for now.
    #[arg(long)]
    pub no_mdns: bool,
}

/// A name a host goes by and where it came from (mDNS, DHCP, NetBIOS: later).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostName {
    pub name: String,
    pub source: String,
}

/// One host in `scan --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Host {
    pub ip: Ipv4Addr,
    pub mac: String,
    pub vendor: Option<&'static str>,
    pub names: Vec<HostName>,
    pub locally_administered: bool,
    pub rtt_ms: f64,
}

fn format_mac(mac: MacAddr) -> String {
    let MacAddr(a, b, c, d, e, f) = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

impl From<&Found> for Host {
    fn from(f: &Found) -> Self {
        Self {
            ip: f.ip,
            mac: format_mac(f.mac),
            vendor: oui::vendor(f.mac),
            names: Vec::new(),
            locally_administered: oui::is_locally_administered(f.mac),
            rtt_ms: (f.rtt.as_secs_f64() * 1e6).round() / 1e3,
        }
    }
}

/// The table `scan` prints without `--json`.
pub fn human(hosts: &[Host]) -> String {
    let mut out = format!("{:<15}  {:<17}  {:>9}  VENDOR\n", "IP", "MAC", "RTT");
    for h in hosts {
        let vendor = match (h.vendor, h.locally_administered) {
            (Some(v), _) => v.to_owned(),
            (None, true) => "(locally administered)".to_owned(),
            (None, false) => "(unknown)".to_owned(),
        };
        out.push_str(&format!(
            "{:<15}  {:<17}  {:>6.2} ms  {vendor}\n",
            h.ip.to_string(),
            h.mac,
            h.rtt_ms
        ));
    }
    out
}

pub fn scan(args: Args) -> anyhow::Result<Exit> {
    crate::logging::init(LogFormat::Text, "warn");
    let info = interface_info(&args.interface)?;
    let targets = match args.cidr {
        Some(t) => t,
        None => Targets::cidr(info.network)
            .with_context(|| format!("sweep the network of {}", args.interface))?,
    };
    let addresses = targets.addresses(info.local.ip);
    let cfg = SweepConfig {
        rate_pps: args.rate,
        retries: args.retries,
        ..SweepConfig::default()
    };
    let mut link = PacketLink::open(&args.interface)?;
    info!(iface = %args.interface, %targets, addresses = addresses.len(), rate_pps = cfg.rate_pps,
          retries = cfg.retries, "ARP sweep");
    let started = Instant::now();
    let report = scanner::run(&mut link, Sweep::new(addresses.clone(), cfg), &Instant::now)?;
    let elapsed = started.elapsed();
    drop(link);
    info!(
        found = report.found.len(),
        sent = report.sent,
        rounds = report.rounds,
        elapsed_ms = elapsed.as_millis() as u64,
        "ARP sweep done"
    );
    let hosts: Vec<Host> = report.found.iter().map(Host::from).collect();
    if args.json {
        println!("{}", serde_json::to_string(&hosts)?);
    } else {
        print!("{}", human(&hosts));
        println!(
            "{} host{} found on {} ({targets}, {} addresses) in {:.2} s ({} requests, {} round{})",
            hosts.len(),
            if hosts.len() == 1 { "" } else { "s" },
            args.interface,
            addresses.len(),
            elapsed.as_secs_f64(),
            report.sent,
            report.rounds,
            if report.rounds == 1 { "" } else { "s" },
        );
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn hosts_serialize_as_documented() {
        let found = Found {
            ip: Ipv4Addr::new(10, 0, 0, 7),
            mac: MacAddr(0x00, 0x1a, 0x11, 0xab, 0xcd, 0xef),
            rtt: Duration::from_micros(1234),
        };
        let json = serde_json::to_value(vec![Host::from(&found)]).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{
                "ip": "10.0.0.7",
                "mac": "00:1a:11:ab:cd:ef",
                "vendor": "Google, Inc.",
                "names": [],
                "locally_administered": false,
                "rtt_ms": 1.234,
            }])
        );
        let table = human(&[Host::from(&found)]);
        assert!(
            table.contains("10.0.0.7         00:1a:11:ab:cd:ef    1.23 ms  Google, Inc."),
            "{table}"
        );
    }
}
