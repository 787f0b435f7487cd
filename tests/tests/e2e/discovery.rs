//! LAN discovery end to end: an activated agent runs inside a namespace lab (250 hosts on one VLAN segment,
//! a few on another, real mDNS, SSDP, DHCP and DNS speakers among them), linked to a real portal through
//! the lab's uplink; the portal's device and event API must show exactly the lab.
//!
//! Needs root (network namespaces, raw sockets): these tests fail, not skip, when the lab cannot be built.
//! All traffic stays in the lab's namespaces and on the uplink pair.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use outpost_tests::lab::{HostInfo, Lab, LabSpec, SegmentSpec};
use outpost_tests::responders::{
    LabProcess, MdnsResponderSpec, MdnsServiceSpec, Responder, SsdpResponderSpec,
};
use outpost_tests::{wait_for, Agent, Portal, PortalOptions};
use serde_json::Value;

fn agent_config(dns: Ipv4Addr, extra_interfaces: &str) -> String {
    format!(
        r#"heartbeat_secs = 1
disabled_poll_secs = 1
reconnect_initial_ms = 100
reconnect_max_secs = 1

[[interfaces]]
name = "lan0"
vlan = 10

[[interfaces]]
name = "lan1"
vlan = 20
{extra_interfaces}
[discovery]
sweep_interval_secs = 120
probe_interval_secs = 1
offline_after_missed = 2
ssdp_interval_secs = 4
report_interval_secs = 0.3
interface_retry_secs = 1
dns_server = "{dns}"
"#
    )
}

fn by_key(devices: &[Value]) -> BTreeMap<(u64, String), Value> {
    devices
        .iter()
        .map(|d| {
            (
                (
                    d["vlan"].as_u64().unwrap_or(0),
                    d["mac"].as_str().unwrap_or("").to_owned(),
                ),
                d.clone(),
            )
        })
        .collect()
}

fn name_from(d: &Value, source: &str) -> Option<String> {
    d["names"]
        .as_array()?
        .iter()
        .find(|n| n["source"] == source)
        .and_then(|n| n["name"].as_str())
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_shows_every_device_of_two_vlans_with_names_vendors_and_liveness() -> Result<()>
{
    // 250 hosts on VLAN 10 (some with real vendors' MACs), 4 on VLAN 20, one of which shares a MAC with a
    // VLAN 10 host: the same MAC on two VLANs is two devices.
    let shared_mac = "00:1a:11:00:00:aa";
    let mut lan0 = SegmentSpec::new("lan0", "192.168.10.0/24").vlan(10);
    lan0 = lan0
        .host_with_mac(Ipv4Addr::new(192, 168, 10, 2), shared_mac) // Google MA-L
        .host_with_mac(Ipv4Addr::new(192, 168, 10, 3), "3c:5a:b4:12:34:56") // Google
        .host_with_mac(Ipv4Addr::new(192, 168, 10, 4), "00:50:c2:7d:51:12") // an IAB (MA-S)
        .hosts_sequential(Ipv4Addr::new(192, 168, 10, 5), 247);
    let lan1 = SegmentSpec::new("lan1", "10.20.0.0/24")
        .vlan(20)
        .host_with_mac(Ipv4Addr::new(10, 20, 0, 7), shared_mac)
        .hosts_list([
            Ipv4Addr::new(10, 20, 0, 8),
            Ipv4Addr::new(10, 20, 0, 9),
            Ipv4Addr::new(10, 20, 0, 200),
        ]);
    let mut lab = Lab::build(LabSpec::new().segment(lan0).segment(lan1).uplink(true))
        .context("building the lab (needs root and network namespaces)")?;
    let uplink = lab.uplink().context("the lab has no uplink")?.clone();
    let segs = lab.segments().to_vec();
    assert_eq!(segs[0].hosts.len(), 250);

    // The speakers.
    let tv = segs[0].hosts[10].clone();
    let printer = segs[0].hosts[11].clone();
    let nas = segs[0].hosts[12].clone();
    let phone = segs[0].hosts[13].clone();
    let dns_host = segs[0].hosts[14].clone();
    let leaver = segs[0].hosts[20].clone();
    let mover = segs[0].hosts[21].clone();
    let _tv_mdns = Responder::start_mdns(
        &lab,
        &tv,
        &MdnsResponderSpec::new("livingroom-tv").service(
            MdnsServiceSpec::new("_googlecast._tcp", "Living Room TV", 8009)
                .txt("md", "Chromecast Ultra"),
        ),
    )?;
    let _printer_mdns = Responder::start_mdns(
        &lab,
        &printer,
        &MdnsResponderSpec::new("office-printer").service(
            MdnsServiceSpec::new("_ipp._tcp", "Office Printer", 631).txt("ty", "LaserJet Pro M404"),
        ),
    )?;
    let _nas_ssdp = Responder::start_ssdp(
        &lab,
        &nas,
        &SsdpResponderSpec::new("Backup NAS", "Synology", "DS220+").model_number("DS220+"),
    )?;
    let tmp = tempfile::tempdir()?;
    let mut dns = LabProcess::dns_server(
        &lab,
        &dns_host,
        tmp.path(),
        &[
            (tv.ip, "tv.lab.example"),
            (segs[0].hosts[30].ip, "camera-30.lab.example"),
        ],
    )?;

    let portal = Portal::start_with(PortalOptions {
        listen: uplink.outside,
        ..PortalOptions::default()
    })
    .await?;
    let mut agent = Agent::with_config(&agent_config(dns_host.ip, ""))?.in_netns(lab.agent_ns());
    let id = agent.activate_new(&portal)?;
    let started = Instant::now();
    agent.start()?;

    // Every host of both segments, nothing else.
    let expected: BTreeSet<(u64, String, String)> = segs
        .iter()
        .flat_map(|s| {
            s.hosts.iter().map(move |h| {
                (
                    u64::from(s.vlan.unwrap_or(0)),
                    h.mac.clone(),
                    h.ip.to_string(),
                )
            })
        })
        .collect();
    let devices = wait_for(
        "the portal to show all 254 devices",
        Duration::from_secs(40),
        || async {
            let d = portal.devices(&id, "").await?;
            Ok((d.len() >= expected.len()).then_some(d))
        },
    )
    .await
    .with_context(|| agent.log_tail())?;
    eprintln!(
        "all {} devices in the portal {:?} after the agent started",
        devices.len(),
        started.elapsed()
    );
    let found: BTreeSet<(u64, String, String)> = devices
        .iter()
        .map(|d| {
            (
                d["vlan"].as_u64().unwrap_or(0),
                d["mac"].as_str().unwrap_or("").to_owned(),
                d["ipv4"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(found, expected, "recall 100 %, no phantom devices");
    let keyed = by_key(&devices);
    let shared0 = &keyed[&(10, shared_mac.to_owned())];
    let shared1 = &keyed[&(20, shared_mac.to_owned())];
    assert_eq!(
        (shared0["interface"].as_str(), shared1["interface"].as_str()),
        (Some("lan0"), Some("lan1"))
    );
    assert_eq!(shared0["vendor"], "Google, Inc.");
    assert_eq!(
        keyed[&(10, "3c:5a:b4:12:34:56".to_owned())]["vendor"],
        "Google, Inc."
    );
    assert_eq!(
        keyed[&(10, "00:50:c2:7d:51:12".to_owned())]["vendor"],
        "DEUTA-WERKE GmbH"
    );
    let generated = &keyed[&(10, segs[0].hosts[40].mac.clone())];
    assert_eq!(generated["locally_administered"], true);
    assert!(devices.iter().all(|d| d["online"] == true));

    // Names with their sources, services and models.
    // The phone asks for an address now that the agent listens (a DHCP client gives up after a while).
    let dhcp = LabProcess::dhcp_client(&lab, &phone, "pixel-7", "android-dhcp-14", 30)?;
    let missing = std::sync::Mutex::new(Vec::<&str>::new());
    let named = wait_for(
        "names from mDNS, SSDP, DHCP and DNS",
        Duration::from_secs(30),
        || async {
            let d = by_key(&portal.devices(&id, "vlan=10").await?);
            let get = |h: &HostInfo| d.get(&(10, h.mac.clone())).cloned().unwrap_or(Value::Null);
            let (t, p, n, ph) = (get(&tv), get(&printer), get(&nas), get(&phone));
            let wanted = [
                ("the TV's mDNS name", name_from(&t, "mdns")),
                ("the TV's DNS name", name_from(&t, "dns")),
                ("the printer's mDNS name", name_from(&p, "mdns")),
                ("the NAS's UPnP name", name_from(&n, "upnp")),
                ("the phone's DHCP name", name_from(&ph, "dhcp")),
            ];
            let absent: Vec<&str> = wanted
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(w, _)| *w)
                .collect();
            let ready = absent.is_empty();
            if let Ok(mut m) = missing.lock() {
                *m = absent;
            }
            Ok(ready.then_some((t, p, n, ph)))
        },
    )
    .await
    .with_context(|| {
        format!(
            "still missing: {:?}\n{}",
            missing.lock().map(|m| m.clone()).unwrap_or_default(),
            agent.log_tail()
        )
    })?;
    dns.check_alive()?;
    let (t, p, n, ph) = named;
    assert_eq!(
        name_from(&t, "mdns").as_deref(),
        Some("livingroom-tv.local")
    );
    assert_eq!(name_from(&t, "dns").as_deref(), Some("tv.lab.example"));
    assert_eq!(t["services"][0]["kind"], "_googlecast._tcp");
    assert_eq!(t["services"][0]["name"], "Living Room TV");
    assert_eq!(t["services"][0]["port"], 8009);
    assert_eq!(t["model_hints"]["md"], "Chromecast Ultra");
    assert_eq!(
        name_from(&p, "mdns").as_deref(),
        Some("office-printer.local")
    );
    assert_eq!(p["model_hints"]["ty"], "LaserJet Pro M404");
    assert_eq!(name_from(&n, "upnp").as_deref(), Some("Backup NAS"));
    assert_eq!(n["upnp"]["manufacturer"], "Synology");
    assert_eq!(n["upnp"]["model_name"], "DS220+");
    assert_eq!(name_from(&ph, "dhcp").as_deref(), Some("pixel-7"));
    assert_eq!(ph["dhcp_vendor_class"], "android-dhcp-14");
    let camera = &by_key(&portal.devices(&id, "q=camera-30").await?);
    assert_eq!(camera.len(), 1, "the DNS name is searchable");
    drop(dhcp);

    // A host that leaves goes offline within offline_after_missed × probe_interval (+ one probe's time).
    lab.set_host_link(&leaver.ns, false)?;
    let left = Instant::now();
    wait_for(
        "the host that left to be offline",
        Duration::from_secs(8),
        || async {
            let d = portal.devices(&id, &format!("mac={}", leaver.mac)).await?;
            Ok((d.len() == 1 && d[0]["online"] == false).then_some(()))
        },
    )
    .await
    .with_context(|| agent.log_tail())?;
    eprintln!("offline {:?} after the host left", left.elapsed());

    // A host that changes its address stays one device, with an ip_changed event.
    let new_ip = Ipv4Addr::new(192, 168, 10, 253);
    lab.change_host_ip(&mover.ns, new_ip)?;
    // Let it announce the move, as hosts do (and sweeps would find it later anyway).
    let _ = lab
        .host_exec(
            &mover.ns,
            &[
                "busybox",
                "arping",
                "-U",
                "-c",
                "2",
                "-I",
                "eth0",
                &new_ip.to_string(),
            ],
        )
        .output();
    wait_for(
        "the moved host's new address",
        Duration::from_secs(10),
        || async {
            let d = portal
                .devices(&id, &format!("mac={}&vlan=10", mover.mac))
                .await?;
            Ok((d.len() == 1 && d[0]["ipv4"] == new_ip.to_string()).then_some(()))
        },
    )
    .await
    .with_context(|| agent.log_tail())?;
    let events = portal.events(&id, &format!("mac={}", mover.mac)).await?;
    let moved = events
        .iter()
        .find(|e| e["type"] == "ip_changed")
        .context("no ip_changed event")?;
    assert_eq!(
        (moved["from"].as_str(), moved["to"].as_str()),
        (
            Some(mover.ip.to_string().as_str()),
            Some(new_ip.to_string().as_str())
        )
    );
    let offline = portal
        .events(&id, &format!("type=offline&mac={}", leaver.mac))
        .await?;
    assert_eq!(offline.len(), 1, "{offline:?}");
    let new_events = portal.events(&id, "type=new").await?;
    assert_eq!(
        new_events.len(),
        expected.len(),
        "one `new` event per device"
    );
    assert_eq!(
        portal.devices(&id, "").await?.len(),
        expected.len(),
        "still one device per (VLAN, MAC)"
    );

    // The CLI of the running agent shows the same inventory.
    let out = agent.command()?.args(["devices", "--json"]).output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing: Value = serde_json::from_slice(&out.stdout).context("devices --json output")?;
    assert_eq!(listing["source"], "daemon");
    assert_eq!(
        listing["devices"].as_array().map(Vec::len),
        Some(expected.len())
    );

    // Back online when it returns.
    lab.set_host_link(&leaver.ns, true)?;
    wait_for(
        "the host that came back to be online",
        Duration::from_secs(10),
        || async {
            let d = portal.devices(&id, &format!("mac={}", leaver.mac)).await?;
            Ok((d.len() == 1 && d[0]["online"] == true).then_some(()))
        },
    )
    .await
    .with_context(|| agent.log_tail())?;

    // Stopped, the agent still lists its inventory from the database.
    assert_eq!(agent.stop(), Some(0), "{}", agent.log_tail());
    let out = agent.command()?.args(["devices", "--json"]).output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(listing["source"], "database");
    assert_eq!(
        listing["devices"].as_array().map(Vec::len),
        Some(expected.len())
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_interfaces_are_reported_and_the_agent_keeps_discovering_on_the_others() -> Result<()> {
    let lab = Lab::build(
        LabSpec::new()
            .segment(
                SegmentSpec::new("lan0", "192.168.30.0/24")
                    .vlan(10)
                    .hosts_sequential(Ipv4Addr::new(192, 168, 30, 10), 5),
            )
            .segment(
                SegmentSpec::new("lan1", "10.40.0.0/24")
                    .vlan(20)
                    .hosts_sequential(Ipv4Addr::new(10, 40, 0, 10), 3),
            )
            .uplink(true),
    )
    .context("building the lab (needs root and network namespaces)")?;
    let uplink = lab.uplink().context("no uplink")?.clone();
    // In the agent's namespace: an interface that is down, one without IPv4, one on a network too big to sweep.
    for script in [
        "ip link add down0 type veth peer name down0p",
        "ip link add noip0 type veth peer name noip0p && ip link set noip0 up && ip link set noip0p up",
        "ip link add big0 type veth peer name big0p && ip addr add 10.96.0.1/11 dev big0 && ip link set big0 up && ip link set big0p up",
    ] {
        let out = lab.exec(&["sh", "-c", script]).output()?;
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let portal = Portal::start_with(PortalOptions {
        listen: uplink.outside,
        ..PortalOptions::default()
    })
    .await?;
    let extra = "\n[[interfaces]]\nname = \"ghost0\"\n\n[[interfaces]]\nname = \"down0\"\n\n[[interfaces]]\nname = \"noip0\"\n\n[[interfaces]]\nname = \"big0\"\n";
    // No DNS server in this lab: reverse DNS goes to an address nobody answers on, quietly.
    let mut agent = Agent::with_config(&agent_config(Ipv4Addr::new(192, 168, 30, 254), extra))?
        .in_netns(lab.agent_ns());
    let id = agent.activate_new(&portal)?;
    agent.start()?;

    let devices = wait_for(
        "the 8 devices of the good interfaces",
        Duration::from_secs(30),
        || async {
            let d = portal.devices(&id, "").await?;
            Ok((d.len() >= 8).then_some(d))
        },
    )
    .await
    .with_context(|| agent.log_tail())?;
    assert_eq!(devices.len(), 8);

    let listing = wait_for("the interface errors", Duration::from_secs(10), || async {
        let out = agent.command()?.args(["devices", "--json"]).output()?;
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let errors = v["interfaces"]
            .as_array()
            .map(|a| a.iter().filter(|i| i["state"] == "error").count())
            .unwrap_or(0);
        Ok((errors == 4).then_some(v))
    })
    .await
    .with_context(|| agent.log_tail())?;
    let iface = |name: &str| -> Value {
        listing["interfaces"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["name"] == name).cloned())
            .unwrap_or(Value::Null)
    };
    let error = |name: &str| iface(name)["error"].as_str().unwrap_or("").to_owned();
    assert!(
        error("ghost0").contains("interface ghost0 does not exist"),
        "{listing}"
    );
    assert!(
        error("down0").contains("interface down0 is down"),
        "{listing}"
    );
    assert!(
        error("noip0").contains("interface noip0 has no IPv4 address"),
        "{listing}"
    );
    assert!(
        error("big0").contains("larger than /16") && error("big0").contains("set cidr"),
        "{listing}"
    );
    assert_eq!(iface("lan0")["state"], "watching");
    assert!(agent.is_running());
    let log = agent.log_tail();
    assert!(log.contains("ghost0"), "{log}");

    // An interface that comes up is picked up on the next retry.
    let out = lab
        .exec(&[
            "sh",
            "-c",
            "ip addr add 172.31.5.1/24 dev down0 && ip link set down0 up && ip link set down0p up",
        ])
        .output()?;
    assert!(out.status.success());
    wait_for("down0 to be watched", Duration::from_secs(10), || async {
        let out = agent.command()?.args(["devices", "--json"]).output()?;
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let watching = v["interfaces"].as_array().is_some_and(|a| {
            a.iter()
                .any(|i| i["name"] == "down0" && i["state"] == "watching")
        });
        Ok(watching.then_some(()))
    })
    .await
    .with_context(|| agent.log_tail())?;

    // A cleanup wipes the inventory on both sides; the agent sweeps again at once and reports a fresh one.
    assert_eq!(portal.events(&id, "type=new").await?.len(), 8);
    let before = chrono::Utc::now().timestamp_millis();
    let cleanup = portal.cleanup(&id).await?;
    assert_eq!(cleanup["data_epoch"], 1, "{cleanup}");
    let devices = wait_for(
        "the inventory rediscovered after the cleanup",
        Duration::from_secs(20),
        || async {
            let d = portal.devices(&id, "").await?;
            let fresh = d.len() == 8
                && d.iter()
                    .all(|d| d["first_seen_ms"].as_i64().unwrap_or(0) >= before);
            Ok(fresh.then_some(d))
        },
    )
    .await
    .with_context(|| agent.log_tail())?;
    assert_eq!(devices.len(), 8);
    let news = portal.events(&id, "type=new").await?;
    assert_eq!(
        news.len(),
        8,
        "the events from before the cleanup are gone: {news:?}"
    );
    Ok(())
}
