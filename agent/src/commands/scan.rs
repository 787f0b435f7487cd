//! `outpost-agent scan --interface IF [--cidr CIDR] [--rate PPS] [--retries N] [--window SECS] [--no-mdns]
//! [--json]`: one ARP sweep of a LAN plus a short listening window (mDNS, SSDP/UPnP, DHCP and ARP heard),
//! merged by the same inventory the daemon uses, printed as a table or JSON. Standalone: no portal, no
//! activation, no state directory.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::Context;
use outpost_cloud_link::inventory::{Device, DeviceName, ModelHints, Service, UpnpInfo};
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::Exit;
use crate::config::LogFormat;
use crate::discovery::datalink::{interface_info, PacketLink};
use crate::discovery::engine::{apply_heard, mdns_facts, ssdp_facts};
use crate::discovery::inventory::{Inventory, Segment};
use crate::discovery::passive::PassiveListener;
use crate::discovery::sweep::{Sweep, SweepConfig, Targets};
use crate::discovery::{mdns, scanner, ssdp};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The interface to sweep from (its MAC and first IPv4 address are the sender; needs CAP_NET_RAW).
    #[arg(long, short = 'i', value_name = "IF")]
    pub interface: String,
    /// What to sweep: a CIDR of at most /16 (192.168.1.0/24) or an explicit range (10.0.0.1-10.0.7.255).
    /// Default: the interface's IPv4 network.
    #[arg(long, value_name = "CIDR")]
    pub cidr: Option<Targets>,
    /// ARP requests per second. Default: automatic, 2000, raised for big networks so one pass takes about
    /// 3 s (at most 25000). arp-scan's default is about 380.
    #[arg(long, value_name = "PPS", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate: Option<u32>,
    /// Extra rounds for addresses that did not answer.
    #[arg(long, value_name = "N", default_value_t = SweepConfig::default().retries,
          value_parser = clap::value_parser!(u32).range(0..=10))]
    pub retries: u32,
    /// Seconds of listening for names during and after the sweep: mDNS, SSDP/UPnP, and DHCP and ARP
    /// heard on the wire. 0 makes it a pure ARP sweep.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub window: f64,
    /// Pure ARP sweep, no listening window (the same as --window 0; for comparisons with arp-scan).
    #[arg(long)]
    pub no_mdns: bool,
    /// Print one JSON array of hosts on stdout, sorted by IP: ip, mac, vendor, names ({name, source}),
    /// locally_administered, rtt_ms, and when known dhcp_vendor_class, services, model_hints, upnp.
    #[arg(long)]
    pub json: bool,
}

/// One host in `scan --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Host {
    pub ip: Ipv4Addr,
    pub mac: String,
    pub vendor: Option<String>,
    pub names: Vec<DeviceName>,
    pub locally_administered: bool,
    /// ARP round-trip time; `None` for a host only heard, not swept.
    pub rtt_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dhcp_vendor_class: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Service>,
    #[serde(skip_serializing_if = "ModelHints::is_empty")]
    pub model_hints: ModelHints,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upnp: Option<UpnpInfo>,
}

impl Host {
    /// A device of the inventory with an address.
    fn from_device(d: Device) -> Option<Self> {
        Some(Self {
            ip: d.ipv4?,
            mac: d.mac,
            vendor: d.vendor,
            names: d.names,
            locally_administered: d.locally_administered,
            rtt_ms: d.arp_rtt_ms,
            dhcp_vendor_class: d.dhcp_vendor_class,
            services: d.services,
            model_hints: d.model_hints,
            upnp: d.upnp.map(|u| *u),
        })
    }
}

/// The table `scan` prints without `--json`.
pub fn human(hosts: &[Host]) -> String {
    let mut out = format!(
        "{:<15}  {:<17}  {:>9}  {:<28}  VENDOR\n",
        "IP", "MAC", "RTT", "NAME"
    );
    for h in hosts {
        let vendor = match (&h.vendor, h.locally_administered) {
            (Some(v), _) => v.clone(),
            (None, true) => "(locally administered)".to_owned(),
            (None, false) => "(unknown)".to_owned(),
        };
        let rtt = h
            .rtt_ms
            .map(|r| format!("{r:>6.2} ms"))
            .unwrap_or_else(|| "    heard".into());
        let name = h
            .names
            .first()
            .map(|n| format!("{} ({})", n.name, n.source))
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<15}  {:<17}  {rtt}  {name:<28}  {vendor}\n",
            h.ip.to_string(),
            h.mac,
        ));
    }
    out
}

pub async fn scan(args: Args) -> anyhow::Result<Exit> {
    crate::logging::init(LogFormat::Text, "warn");
    if !args.window.is_finite() || !(0.0..=600.0).contains(&args.window) {
        anyhow::bail!(
            "--window {}: give a number of seconds between 0 and 600",
            args.window
        );
    }
    let window = if args.no_mdns {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(args.window)
    };
    let info = interface_info(&args.interface)?;
    let targets = match args.cidr {
        Some(t) => t,
        None => Targets::cidr(info.network)
            .with_context(|| format!("sweep the network of {}", args.interface))?,
    };
    let addresses = targets.addresses(info.local.ip);
    let cfg = SweepConfig {
        rate_pps: args
            .rate
            .unwrap_or_else(|| SweepConfig::auto_rate(addresses.len())),
        retries: args.retries,
        ..SweepConfig::default()
    };
    let seg = Segment {
        interface: args.interface.clone(),
        vlan: None,
    };
    let mut inventory = Inventory::new();

    // Listen while sweeping: passive ARP/DHCP, mDNS and SSDP.
    let (heard_tx, mut heard_rx) = mpsc::channel(4096);
    let listener = if window.is_zero() {
        None
    } else {
        Some(PassiveListener::start(&args.interface, heard_tx)?)
    };
    let names = (!window.is_zero()).then(|| {
        let iface = args.interface.clone();
        tokio::spawn(async move {
            let (mdns, ssdp) = tokio::join!(
                mdns::browse(&iface, info.network, window),
                ssdp::search(info.local.ip, info.network, window),
            );
            (mdns, ssdp)
        })
    });

    let link = PacketLink::open(&args.interface)?;
    info!(iface = %args.interface, %targets, addresses = addresses.len(), rate_pps = cfg.rate_pps,
          retries = cfg.retries, window_ms = window.as_millis() as u64, "ARP sweep");
    let started = Instant::now();
    let sweep = Sweep::new(addresses.clone(), cfg);
    let report = tokio::task::spawn_blocking(move || {
        let mut link = link;
        scanner::run(&mut link, sweep, &Instant::now)
    })
    .await
    .context("the sweep thread failed")??;
    let sweep_elapsed = started.elapsed();
    let at_ms = chrono::Utc::now().timestamp_millis();
    for f in &report.found {
        inventory.seen(&seg, f.mac, Some(f.ip), Some(f.rtt), at_ms);
    }
    if let Some(names) = names {
        let (mdns, ssdp) = names.await.context("the listening task failed")?;
        match mdns {
            Ok(hosts) => {
                for h in hosts {
                    let ip = h.ip;
                    inventory.facts_for_ip(&seg.interface, ip, mdns_facts(h), at_ms);
                }
            }
            Err(e) => warn!(error = %e, "mDNS browsing failed; names from mDNS are missing"),
        }
        match ssdp {
            Ok(devices) => {
                for d in devices {
                    let ip = d.ip;
                    inventory.facts_for_ip(&seg.interface, ip, ssdp_facts(d), at_ms);
                }
            }
            Err(e) => warn!(error = %e, "SSDP search failed; names from UPnP are missing"),
        }
    }
    if let Some(listener) = listener {
        if let Err(e) = listener.stop() {
            warn!(error = %e, "passive listening stopped with an error");
        }
        while let Ok((_, heard)) = heard_rx.try_recv() {
            apply_heard(&mut inventory, &seg, heard, at_ms);
        }
    }
    let elapsed = started.elapsed();
    info!(
        found = report.found.len(),
        sent = report.sent,
        rounds = report.rounds,
        sweep_ms = sweep_elapsed.as_millis() as u64,
        elapsed_ms = elapsed.as_millis() as u64,
        "scan done"
    );
    let hosts: Vec<Host> = inventory
        .devices()
        .into_iter()
        .filter_map(Host::from_device)
        .collect();
    if args.json {
        println!("{}", serde_json::to_string(&hosts)?);
    } else {
        print!("{}", human(&hosts));
        println!(
            "{} host{} found on {} ({targets}, {} addresses) in {:.2} s ({} requests, {} round{}{})",
            hosts.len(),
            if hosts.len() == 1 { "" } else { "s" },
            args.interface,
            addresses.len(),
            elapsed.as_secs_f64(),
            report.sent,
            report.rounds,
            if report.rounds == 1 { "" } else { "s" },
            if window.is_zero() {
                String::new()
            } else {
                format!(", {:.1} s of listening", window.as_secs_f64())
            },
        );
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use pnet_datalink::MacAddr;

    use super::*;
    use crate::discovery::inventory::Facts;
    use outpost_cloud_link::inventory::NameSource;

    #[test]
    fn hosts_serialize_as_documented() {
        let mut inv = Inventory::new();
        let seg = Segment {
            interface: "lan0".into(),
            vlan: None,
        };
        let ip = Ipv4Addr::new(10, 0, 0, 7);
        let mac = MacAddr(0x00, 0x1a, 0x11, 0xab, 0xcd, 0xef);
        inv.seen(&seg, mac, Some(ip), Some(Duration::from_micros(1234)), 1);
        let hosts: Vec<Host> = inv
            .devices()
            .into_iter()
            .filter_map(Host::from_device)
            .collect();
        let json = serde_json::to_value(&hosts).unwrap();
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
        let table = human(&hosts);
        assert!(
            table.contains("10.0.0.7         00:1a:11:ab:cd:ef    1.23 ms"),
            "{table}"
        );
        let facts = Facts {
            names: vec![DeviceName {
                name: "tv.local".into(),
                source: NameSource::Mdns,
            }],
            ..Facts::default()
        };
        inv.facts_for_ip("lan0", ip, facts, 2);
        let hosts: Vec<Host> = inv
            .devices()
            .into_iter()
            .filter_map(Host::from_device)
            .collect();
        let json = serde_json::to_value(&hosts).unwrap();
        assert_eq!(
            json[0]["names"],
            serde_json::json!([{"name": "tv.local", "source": "mdns"}])
        );
        assert!(human(&hosts).contains("tv.local (mdns)"));
    }
}
