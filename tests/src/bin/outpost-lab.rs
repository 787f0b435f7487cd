//! `outpost-lab`: brings up the project's namespace LAN for a demo or by hand, and tears it down on
//! SIGINT/SIGTERM. Two VLAN segments behind an agent namespace (`lan0` VLAN 10 with `--hosts` hosts, `lan1`
//! VLAN 20 with four), with real speakers on some hosts: mDNS (python-zeroconf), SSDP/UPnP, a DHCP client,
//! and a DNS server for reverse names; plus an uplink from the machine's namespace to the agent's, for a
//! portal. Writes what a script needs as JSON to `--ready-file` once everything is up. Needs root.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use nix::sys::signal::{SigSet, Signal};
use outpost_tests::lab::{Lab, LabSpec, SegmentSpec};
use outpost_tests::responders::{
    LabProcess, MdnsResponderSpec, MdnsServiceSpec, Responder, SsdpResponderSpec,
};

const USAGE: &str = "usage: outpost-lab up [--hosts N (1-250, default 40)] --ready-file FILE";

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("up") {
        bail!("{USAGE}");
    }
    let (mut hosts, mut ready_file) = (40usize, None::<PathBuf>);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--hosts" => {
                hosts = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| (1..=250).contains(n))
                    .context(USAGE)?
            }
            "--ready-file" => ready_file = Some(args.next().context(USAGE)?.into()),
            _ => bail!("unknown argument {a:?}; {USAGE}"),
        }
    }
    let ready_file = ready_file.context(USAGE)?;
    // Block the stop signals before any thread starts, so sigwait below receives them.
    let mut stop = SigSet::empty();
    stop.add(Signal::SIGINT);
    stop.add(Signal::SIGTERM);
    stop.thread_block().context("blocking SIGINT/SIGTERM")?;

    // lan0 has a gateway to the lab's "internet" (198.51.100.80), so blocking a device can be tried.
    let gateway = Ipv4Addr::new(192, 168, 50, 1);
    let lan0 = SegmentSpec::new("lan0", "192.168.50.0/24")
        .vlan(10)
        .agent_ip(Ipv4Addr::new(192, 168, 50, 2))
        .gateway(gateway)
        .host_with_mac(Ipv4Addr::new(192, 168, 50, 10), "3c:5a:b4:00:50:10")
        .host_with_mac(Ipv4Addr::new(192, 168, 50, 11), "00:1b:a9:00:50:11")
        .host_with_mac(Ipv4Addr::new(192, 168, 50, 12), "00:11:32:00:50:12")
        .hosts_sequential(Ipv4Addr::new(192, 168, 50, 20), hosts.saturating_sub(3));
    let lan1 = SegmentSpec::new("lan1", "10.60.0.0/24")
        .vlan(20)
        .hosts_sequential(Ipv4Addr::new(10, 60, 0, 10), 4);
    let lab = Lab::build(LabSpec::new().segment(lan0).segment(lan1).uplink(true))
        .context("building the lab (needs root, iproute2)")?;
    let uplink = lab.uplink().context("the lab has no uplink")?.clone();
    let seg0 = lab.segments()[0].hosts.clone();
    let (tv, printer, nas) = (&seg0[0], &seg0[1], &seg0[2]);
    let dns_host = seg0.iter().rfind(|h| h.ip != gateway).context("no hosts")?;
    let phone = &lab.segments()[1].hosts[0];

    let dir = tempfile::tempdir()?;
    let _tv = Responder::start_mdns(
        &lab,
        tv,
        &MdnsResponderSpec::new("livingroom-tv").service(
            MdnsServiceSpec::new("_googlecast._tcp", "Living Room TV", 8009)
                .txt("md", "Chromecast"),
        ),
    )?;
    let _printer = Responder::start_mdns(
        &lab,
        printer,
        &MdnsResponderSpec::new("office-printer").service(
            MdnsServiceSpec::new("_ipp._tcp", "Office Printer", 631)
                .txt("ty", "Brother HL-L2350DW"),
        ),
    )?;
    let _nas = Responder::start_ssdp(
        &lab,
        nas,
        &SsdpResponderSpec::new("Backup NAS", "Synology", "DS220+"),
    )?;
    let _dns = LabProcess::dns_server(
        &lab,
        dns_host,
        dir.path(),
        &[
            (tv.ip, "tv.shop.example"),
            (nas.ip, "nas.shop.example"),
            (dns_host.ip, "dns.shop.example"),
        ],
    )?;
    let _phone = LabProcess::dhcp_client(&lab, phone, "reception-phone", "android-dhcp-14", 1800)?;

    let total: usize = lab.segments().iter().map(|s| s.hosts.len()).sum();
    let ready = serde_json::json!({
        "agent_ns": lab.agent_ns(),
        "portal_ip": uplink.outside.to_string(),
        "dns_server": dns_host.ip.to_string(),
        "gateway": gateway.to_string(),
        "tv_ip": tv.ip.to_string(),
        "tv_mac": tv.mac,
        "tv_ns": tv.ns,
        "hosts": total,
        "segments": lab.segments().iter().map(|s| serde_json::json!({
            "interface": s.iface, "vlan": s.vlan, "cidr": s.cidr, "hosts": s.hosts.len(),
        })).collect::<Vec<_>>(),
    });
    std::fs::write(&ready_file, serde_json::to_vec_pretty(&ready)?)
        .with_context(|| format!("writing {}", ready_file.display()))?;
    eprintln!(
        "lab up: {total} hosts, agent namespace {}, portal address {}; SIGINT/SIGTERM tears it down",
        lab.agent_ns(),
        uplink.outside
    );
    let signal = stop.wait().context("waiting for SIGINT/SIGTERM")?;
    eprintln!("{signal:?}: tearing the lab down");
    let _ = std::fs::remove_file(&ready_file);
    // Dropping the responders, processes and the lab stops and deletes everything.
    Ok(())
}
