//! Device control end to end: a technician blocks, unblocks and power-cycles devices through the portal's
//! API; the agent inside a namespace lab does it on real traffic (a LAN whose gateway routes to an
//! "internet" namespace) and against real protocol peers (a Tasmota-API plug, net-snmp's snmpd).
//!
//! Needs root (network namespaces, raw sockets): these tests fail, not skip, when the lab cannot be built.
//! All traffic stays in the lab's namespaces and on the uplink pair.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use outpost_tests::lab::{HostInfo, Lab, LabSpec, SegmentSpec};
use outpost_tests::power_lab::{PlugKind, PlugSpec, SmartPlug, Snmpd, SnmpdSpec, POE_ADMIN_ENABLE};
use outpost_tests::{wait_for, Agent, Portal, PortalOptions};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);

fn agent_config() -> String {
    format!(
        r#"platform = "box"
heartbeat_secs = 1
disabled_poll_secs = 1
reconnect_initial_ms = 100
reconnect_max_secs = 1

[[interfaces]]
name = "lan0"
gateway = "{GATEWAY}"

[[interfaces]]
name = "lan1"
vlan = 60
tagged = true

[discovery]
sweep_interval_secs = 120
probe_interval_secs = 1
offline_after_missed = 3
mdns = false
ssdp = false
reverse_dns = false
report_interval_secs = 0.3
interface_retry_secs = 1

[power]
timeout_secs = 1
retries = 0
settle_secs = 2
"#
    )
}

/// Whether `host` reaches the lab's internet host: TCP (the server greets) and ICMP echo.
struct Reach {
    tcp: bool,
    icmp: bool,
}

fn reach(lab: &Lab, host: &HostInfo) -> Result<Reach> {
    let internet = lab.internet().context("the lab has no internet")?;
    let addr = SocketAddr::from((internet.server, internet.port));
    Ok(Reach {
        tcp: lab.tcp_reaches(&host.ns, addr, Duration::from_millis(400))?,
        icmp: lab.pings(&host.ns, internet.server, Duration::from_millis(400))?,
    })
}

/// Polls until `host` has (`want = true`) or has lost (`false`) internet access on both TCP and ICMP;
/// returns how long that took from `since`, failing after `limit`.
fn wait_reach(
    lab: &Lab,
    host: &HostInfo,
    want: bool,
    since: Instant,
    limit: Duration,
) -> Result<Duration> {
    loop {
        let r = reach(lab, host)?;
        let done = if want {
            r.tcp && r.icmp
        } else {
            !r.tcp && !r.icmp
        };
        if done {
            return Ok(since.elapsed());
        }
        if since.elapsed() > limit {
            bail!(
                "{} ({}) still has tcp={} icmp={} after {:?}, wanted {}",
                host.ip,
                host.ns,
                r.tcp,
                r.icmp,
                since.elapsed(),
                if want { "both" } else { "neither" }
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn device<'a>(devices: &'a [Value], mac: &str) -> Option<&'a Value> {
    devices.iter().find(|d| d["mac"] == mac)
}

async fn device_view(portal: &Portal, id: &str, device: &str) -> Result<Value> {
    portal
        .api_ok(
            Method::GET,
            &format!("/agents/{id}/devices/{device}"),
            None,
            StatusCode::OK,
        )
        .await
}

/// Waits until the portal's view of `device` says `blocked == want` (the agent's `blocks` report).
async fn wait_blocked(portal: &Portal, id: &str, device: &str, want: bool) -> Result<Value> {
    wait_for(
        &format!("the portal to show {device} blocked={want}"),
        Duration::from_secs(10),
        || async {
            let d = device_view(portal, id, device).await?;
            Ok((d["blocked"] == want).then_some(d))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_blocks_and_unblocks_from_the_portal_on_real_traffic_and_keeps_blocks_across_restarts(
) -> Result<()> {
    let lan0 = SegmentSpec::new("lan0", "192.168.50.0/24")
        .agent_ip(Ipv4Addr::new(192, 168, 50, 2))
        .gateway(GATEWAY)
        .hosts_list([
            Ipv4Addr::new(192, 168, 50, 10),
            Ipv4Addr::new(192, 168, 50, 11),
        ]);
    let lan1 = SegmentSpec::new("lan1", "10.60.0.0/24")
        .vlan(60)
        .hosts_list([Ipv4Addr::new(10, 60, 0, 5)]);
    let lab = Lab::build(LabSpec::new().segment(lan0).segment(lan1).uplink(true))
        .context("building the lab (needs root and network namespaces)")?;
    let uplink = lab.uplink().context("the lab has no uplink")?.clone();
    let segs = lab.segments().to_vec();
    let find = |ip: [u8; 4]| -> Result<HostInfo> {
        segs.iter()
            .flat_map(|s| s.hosts.iter())
            .find(|h| h.ip == Ipv4Addr::from(ip))
            .cloned()
            .with_context(|| format!("no host {ip:?} in the lab"))
    };
    let target = find([192, 168, 50, 10])?;
    let other = find([192, 168, 50, 11])?;
    let tagged = find([10, 60, 0, 5])?;

    let portal = Portal::start_with(PortalOptions {
        listen: uplink.outside,
        ..PortalOptions::default()
    })
    .await?;
    let mut agent = Agent::with_config(&agent_config())?.in_netns(lab.agent_ns());
    let id = agent.activate_new(&portal)?;
    agent.start()?;

    let devices = wait_for(
        "the portal to show the target, the other host and the tagged-VLAN host",
        Duration::from_secs(30),
        || async {
            let d = portal.devices(&id, "").await?;
            let all = [&target, &other, &tagged]
                .iter()
                .all(|h| device(&d, &h.mac).is_some());
            Ok(all.then_some(d))
        },
    )
    .await
    .with_context(|| agent.log_tail())?;
    let t = device(&devices, &target.mac).context("target")?;
    assert_eq!(t["id"], target.mac.as_str(), "{t}");
    assert_eq!(t["blockable"], true, "{t}");
    assert_eq!(t["blocked"], false, "{t}");
    let tagged_id = format!("{}@60", tagged.mac);
    let v = device(&devices, &tagged.mac).context("tagged")?;
    assert_eq!(v["id"], tagged_id.as_str(), "{v}");
    assert_eq!(
        (&v["blockable"], &v["unblockable_reason"]),
        (&json!(false), &json!("vlan_tagged_unblockable")),
        "the portal marks a device on a tagged VLAN of a box before anyone tries: {v}"
    );

    // Before: both reach the internet.
    let r = reach(&lab, &target)?;
    assert!(
        r.tcp && r.icmp,
        "the target reaches the internet before the block"
    );

    // Block: within 3 s the target has no internet; the other host still has.
    let t0 = Instant::now();
    let blocked = portal.act(&id, &target.mac, "block", None).await?;
    assert_eq!(blocked["status"], "done", "{blocked}");
    assert_eq!(blocked["result"]["method"], "arp_pause", "{blocked}");
    assert_eq!(
        blocked["result"]["ipv4"],
        target.ip.to_string(),
        "{blocked}"
    );
    let took = wait_reach(&lab, &target, false, t0, Duration::from_secs(3))
        .with_context(|| agent.log_tail())?;
    eprintln!("blocked after {took:?}");
    let r = reach(&lab, &other)?;
    assert!(r.tcp && r.icmp, "another LAN host keeps its internet");
    let view = wait_blocked(&portal, &id, &target.mac, true).await?;
    assert_eq!(view["block"]["interface"], "lan0", "{view}");

    // The agent refuses a device on the tagged VLAN with its code (the portal passes the command on).
    let refused = portal.act(&id, &tagged_id, "block", None).await?;
    assert_eq!(refused["status"], "failed", "{refused}");
    assert_eq!(refused["code"], "vlan_tagged_unblockable", "{refused}");
    assert!(
        refused["message"].as_str().unwrap_or("").contains("tagged"),
        "{refused}"
    );

    // SIGTERM: the box gives the ARP caches back before it exits.
    let t0 = Instant::now();
    assert_eq!(agent.stop(), Some(0), "{}", agent.log_tail());
    let took = wait_reach(&lab, &target, true, t0, Duration::from_secs(3))
        .with_context(|| agent.log_tail())?;
    eprintln!("restored {took:?} after SIGTERM");
    // ... and blocks again when it starts (the block is stored).
    let t0 = Instant::now();
    agent.start()?;
    let took = wait_reach(&lab, &target, false, t0, Duration::from_secs(5))
        .with_context(|| agent.log_tail())?;
    eprintln!("blocked again {took:?} after the restart");
    assert!(
        reach(&lab, &other)?.tcp,
        "the other host is still untouched"
    );

    // Unblock: within 3 s the target is back.
    let t0 = Instant::now();
    let unblocked = portal.act(&id, &target.mac, "unblock", None).await?;
    assert_eq!(unblocked["status"], "done", "{unblocked}");
    let took = wait_reach(&lab, &target, true, t0, Duration::from_secs(3))
        .with_context(|| agent.log_tail())?;
    eprintln!("unblocked after {took:?}");
    wait_blocked(&portal, &id, &target.mac, false).await?;

    // The site's owner: sees only the devices made visible, may block the one the technician allowed,
    // nothing more.
    let (status, flags) = portal
        .device_control(
            Method::PUT,
            &id,
            &target.mac,
            "owner-flags",
            Some(json!({"visible": true, "power": false, "block": true})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{flags}");
    let (status, refused) = portal
        .device_control(
            Method::PUT,
            &id,
            &tagged_id,
            "owner-flags",
            Some(json!({"visible": true, "power": false, "block": true})),
        )
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(
        refused.to_string().contains("vlan_tagged_unblockable"),
        "{refused}"
    );
    let owner = portal
        .owner_session(&id, "owner@example.com", "a-long-owner-passphrase")
        .await?;
    let (status, mine) = owner.api(Method::GET, "/owner/devices", None).await?;
    assert_eq!(status, StatusCode::OK, "{mine}");
    let shown = mine.to_string();
    assert!(shown.contains(&target.mac), "{mine}");
    assert!(
        !shown.contains(&other.mac) && !shown.contains(&tagged.mac),
        "hidden devices are not shown: {mine}"
    );
    let owner_path =
        |device: &str, verb: &str| format!("/owner/agents/{id}/devices/{device}/{verb}");
    let (status, hidden) = owner
        .api(Method::POST, &owner_path(&other.mac, "block"), None)
        .await?;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a hidden device does not exist for the owner: {hidden}"
    );
    let (status, no_power) = owner
        .api(
            Method::POST,
            &owner_path(&target.mac, "power"),
            Some(json!({"action": "off"})),
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{no_power}");
    let t0 = Instant::now();
    let (status, done) = owner
        .api(Method::POST, &owner_path(&target.mac, "block"), None)
        .await?;
    assert_eq!(
        (status, &done["status"]),
        (StatusCode::OK, &json!("done")),
        "{done}"
    );
    wait_reach(&lab, &target, false, t0, Duration::from_secs(3))?;
    let (status, done) = owner
        .api(Method::POST, &owner_path(&target.mac, "unblock"), None)
        .await?;
    assert_eq!(
        (status, &done["status"]),
        (StatusCode::OK, &json!("done")),
        "{done}"
    );
    wait_reach(&lab, &target, true, Instant::now(), Duration::from_secs(3))?;

    // Who did it is in the agent's history.
    let history = portal.history(&id).await?;
    let lines = history["entries"]
        .as_array()
        .or_else(|| history.as_array())
        .cloned()
        .unwrap_or_default();
    let actions: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["action"].as_str().unwrap_or("").to_owned(),
                l["actor"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(
        actions
            .iter()
            .any(|(a, actor)| a == "device_block" && actor == "owner:owner@example.com"),
        "the owner's block with its actor in {history}"
    );
    for action in ["device_block", "device_unblock"] {
        assert!(
            actions
                .iter()
                .any(|(a, actor)| a == action && actor == "user:admin (token 1)"),
            "{action} with its actor in {history}"
        );
    }

    // A cleanup wipes the site's data, blocks included: the blocked device gets its internet back and
    // stays unblocked once rediscovered.
    let blocked = portal.act(&id, &target.mac, "block", None).await?;
    assert_eq!(blocked["status"], "done", "{blocked}");
    wait_reach(&lab, &target, false, Instant::now(), Duration::from_secs(3))?;
    let t0 = Instant::now();
    portal.cleanup(&id).await?;
    let took = wait_reach(&lab, &target, true, t0, Duration::from_secs(5))
        .with_context(|| agent.log_tail())?;
    eprintln!("a cleanup lifted the block after {took:?}");
    let view = wait_for(
        "the target rediscovered after the cleanup",
        Duration::from_secs(20),
        || async { Ok(device_view(&portal, &id, &target.mac).await.ok()) },
    )
    .await?;
    assert_eq!(view["blocked"], false, "{view}");
    assert!(
        reach(&lab, &target)?.tcp,
        "still unblocked after the cleanup"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_from_the_portal_switches_a_plug_and_a_poe_port_and_reports_clear_errors(
) -> Result<()> {
    let lan0 = SegmentSpec::new("lan0", "192.168.51.0/24").hosts_list([
        Ipv4Addr::new(192, 168, 51, 10),
        Ipv4Addr::new(192, 168, 51, 20),
        Ipv4Addr::new(192, 168, 51, 21),
    ]);
    let lab = Lab::build(LabSpec::new().segment(lan0).uplink(true))
        .context("building the lab (needs root and network namespaces)")?;
    let uplink = lab.uplink().context("the lab has no uplink")?.clone();
    let hosts = lab.segments()[0].hosts.clone();
    let (camera, plug_host, switch_host) = (&hosts[0], &hosts[1], &hosts[2]);
    let plug = SmartPlug::start(
        &lab,
        plug_host,
        &PlugSpec::new(PlugKind::Tasmota)
            .user("admin")
            .password("plug-pass-1")
            .switch(1, true),
    )?;
    let snmpd = Snmpd::start(
        &lab,
        switch_host,
        &SnmpdSpec::new("rw-community")
            .v3_user("ops", "auth-pass-123", "priv-pass-123")
            .poe_port(1, 7, true),
    )?;

    let portal = Portal::start_with(PortalOptions {
        listen: uplink.outside,
        ..PortalOptions::default()
    })
    .await?;
    let mut config = agent_config().replace("platform = \"box\"\n", "");
    config = config.replace(
        &format!("[[interfaces]]\nname = \"lan0\"\ngateway = \"{GATEWAY}\"\n\n[[interfaces]]\nname = \"lan1\"\nvlan = 60\ntagged = true\n"),
        "interfaces = [\"lan0\"]\n",
    );
    let mut agent = Agent::with_config(&config)?.in_netns(lab.agent_ns());
    let id = agent.activate_new(&portal)?;
    agent.start()?;
    wait_for(
        "the portal to show the camera",
        Duration::from_secs(30),
        || async {
            let d = portal.devices(&id, "").await?;
            Ok(device(&d, &camera.mac).map(|_| ()))
        },
    )
    .await
    .with_context(|| agent.log_tail())?;

    // Without a binding, power is refused by the portal with a sentence that says what to do.
    let (status, body) = portal
        .device_control(
            Method::POST,
            &id,
            &camera.mac,
            "power",
            Some(json!({"action": "cycle"})),
        )
        .await?;
    assert!(status.is_client_error(), "{status} {body}");
    assert!(body.to_string().contains("power-outlet"), "{body}");

    // Bind the camera to relay 1 of the plug; the binding is shown back without its password.
    let binding = json!({
        "outlet": {"type": "tasmota", "host": plug.address(), "relay": 1,
                   "user": "admin", "password": "plug-pass-1"},
        "cycle_delay_secs": 1
    });
    let (status, shown) = portal
        .device_control(Method::PUT, &id, &camera.mac, "power-outlet", Some(binding))
        .await?;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert!(!shown.to_string().contains("plug-pass-1"), "{shown}");

    // Cycle: off, 1 s, on; the state read back is on.
    let t0 = Instant::now();
    let cycled = portal
        .act(&id, &camera.mac, "power", Some(json!({"action": "cycle"})))
        .await?;
    assert_eq!(cycled["status"], "done", "{cycled}");
    assert_eq!(cycled["result"]["state"], "on", "{cycled}");
    assert!(
        t0.elapsed() >= Duration::from_secs(1),
        "the cycle waited its delay"
    );
    let commands: Vec<String> = plug
        .requests()?
        .into_iter()
        .filter_map(|r| r.cmnd)
        .filter(|c| c.ends_with(" Off") || c.ends_with(" On"))
        .collect();
    assert_eq!(
        commands,
        ["Power1 Off", "Power1 On"],
        "what the plug was told"
    );

    // A PoE port over SNMPv3 authPriv: off, read back off.
    let poe = |auth: &str| {
        json!({"outlet": {"type": "poe_snmp", "host": snmpd.address(), "group": 1, "port": 7,
            "snmp": {"version": "v3", "user": "ops", "auth_protocol": "sha", "auth_password": auth,
                     "priv_protocol": "aes", "priv_password": "priv-pass-123"}}})
    };
    let (status, _) = portal
        .device_control(
            Method::PUT,
            &id,
            &camera.mac,
            "power-outlet",
            Some(poe("auth-pass-123")),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    let off = portal
        .act(&id, &camera.mac, "power", Some(json!({"action": "off"})))
        .await?;
    assert_eq!(off["status"], "done", "{off}");
    assert_eq!(off["result"]["state"], "off", "{off}");
    assert_eq!(
        snmpd.get(&format!("{POE_ADMIN_ENABLE}.1.7"))?.as_deref(),
        Some("2"),
        "the switch's port is administratively off"
    );

    // A wrong SNMPv3 password is a clear error with its code; so is a host that does not answer.
    let (status, _) = portal
        .device_control(
            Method::PUT,
            &id,
            &camera.mac,
            "power-outlet",
            Some(poe("wrong-pass-999")),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    let bad = portal
        .act(&id, &camera.mac, "power", Some(json!({"action": "on"})))
        .await?;
    assert_eq!(
        (&bad["status"], &bad["code"]),
        (&json!("failed"), &json!("auth_failed")),
        "{bad}"
    );
    let silent = json!({"outlet": {"type": "apc_pdu", "host": format!("{}:1161", switch_host.ip), "outlet": 1,
        "snmp": {"version": "v2c", "community": "rw-community"}}});
    let (status, _) = portal
        .device_control(Method::PUT, &id, &camera.mac, "power-outlet", Some(silent))
        .await?;
    assert_eq!(status, StatusCode::OK);
    let timeout = portal
        .act(&id, &camera.mac, "power", Some(json!({"action": "on"})))
        .await?;
    assert_eq!(
        (&timeout["status"], &timeout["code"]),
        (&json!("failed"), &json!("timeout")),
        "{timeout}"
    );
    assert!(
        timeout["message"]
            .as_str()
            .unwrap_or("")
            .contains("community"),
        "the sentence says what to check: {timeout}"
    );

    let history = portal.history(&id).await?.to_string();
    assert!(history.contains("device_power"), "{history}");
    agent.stop();
    Ok(())
}

/// Runs `ip netns exec NS ARGV...`, failing with its stderr.
fn netns_run(ns: &str, argv: &[&str]) -> Result<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns])
        .args(argv)
        .output()
        .with_context(|| format!("running {argv:?} in {ns}"))?;
    if !out.status.success() {
        bail!(
            "{argv:?} in {ns}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_agent_blocks_with_its_own_nftables_table_and_leaves_the_rest_alone() -> Result<()>
{
    let lan0 = SegmentSpec::new("lan0", "192.168.52.0/24")
        .agent_ip(Ipv4Addr::new(192, 168, 52, 2))
        .gateway(Ipv4Addr::new(192, 168, 52, 1))
        .hosts_list([
            Ipv4Addr::new(192, 168, 52, 10),
            Ipv4Addr::new(192, 168, 52, 11),
        ]);
    let lab = Lab::build(LabSpec::new().segment(lan0).uplink(true))
        .context("building the lab (needs root and network namespaces)")?;
    let uplink = lab.uplink().context("the lab has no uplink")?.clone();
    let gateway = lab
        .gateway_of("lan0")
        .context("the lab has no gateway")?
        .clone();
    let hosts = lab.segments()[0].hosts.clone();
    let find = |ip: Ipv4Addr| hosts.iter().find(|h| h.ip == ip).cloned();
    let target = find(Ipv4Addr::new(192, 168, 52, 10)).context("target")?;
    let other = find(Ipv4Addr::new(192, 168, 52, 11)).context("other")?;

    // The agent runs on the gateway. Its way to the portal: through the lab's agent namespace, which
    // forwards and masquerades onto the uplink (all inside the lab's namespaces).
    let relay = lab.agent_ns().to_owned();
    netns_run(&relay, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])?;
    netns_run(
        &relay,
        &["nft", "add table ip relay; add chain ip relay post { type nat hook postrouting priority 100; }; add rule ip relay post oifname \"wan0\" masquerade"],
    )?;
    netns_run(
        &gateway.ns,
        &[
            "ip",
            "route",
            "add",
            &format!("{}/32", uplink.outside),
            "via",
            "192.168.52.2",
        ],
    )?;
    // Someone else's rules on the router, which Outpost must leave exactly as they are.
    netns_run(
        &gateway.ns,
        &["nft", "add table inet other; add chain inet other pass { type filter hook forward priority 10; policy accept; }; add rule inet other pass tcp dport 8081 counter accept"],
    )?;
    let theirs = || netns_run(&gateway.ns, &["nft", "list", "table", "inet", "other"]);
    let before = theirs()?;

    let portal = Portal::start_with(PortalOptions {
        listen: uplink.outside,
        ..PortalOptions::default()
    })
    .await?;
    let config = agent_config()
        .replace("platform = \"box\"", "platform = \"router\"")
        .replace(
            &format!("[[interfaces]]\nname = \"lan0\"\ngateway = \"{GATEWAY}\"\n\n[[interfaces]]\nname = \"lan1\"\nvlan = 60\ntagged = true\n"),
            "interfaces = [\"eth0\"]\n",
        );
    let mut agent = Agent::with_config(&config)?.in_netns(&gateway.ns);
    let id = agent.activate_new(&portal)?;
    agent.start()?;
    let devices = wait_for(
        "the router agent's devices in the portal",
        Duration::from_secs(30),
        || async {
            let d = portal.devices(&id, "").await?;
            Ok(device(&d, &target.mac).is_some().then_some(d))
        },
    )
    .await
    .with_context(|| agent.log_tail())?;
    let t = device(&devices, &target.mac).context("target")?;
    assert_eq!(t["blockable"], true, "{t}");
    assert_eq!(portal.agent(&id).await?["platform"], "router");
    assert!(
        reach(&lab, &target)?.tcp,
        "the target reaches the internet before the block"
    );

    let t0 = Instant::now();
    let blocked = portal.act(&id, &target.mac, "block", None).await?;
    assert_eq!(blocked["status"], "done", "{blocked}");
    assert_eq!(blocked["result"]["method"], "nftables", "{blocked}");
    let took = wait_reach(&lab, &target, false, t0, Duration::from_secs(3))
        .with_context(|| agent.log_tail())?;
    eprintln!("router: blocked after {took:?}");
    let r = reach(&lab, &other)?;
    assert!(r.tcp && r.icmp, "another LAN host keeps its internet");
    let table = netns_run(&gateway.ns, &["nft", "list", "table", "inet", "outpost"])?;
    assert!(table.contains(&target.mac), "{table}");
    assert!(!table.contains(&other.mac), "{table}");
    wait_blocked(&portal, &id, &target.mac, true).await?;

    // A router keeps enforcing while the agent is stopped, and its restart keeps the block.
    assert_eq!(agent.stop(), Some(0), "{}", agent.log_tail());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !reach(&lab, &target)?.tcp,
        "still blocked while the agent is stopped"
    );
    agent.start()?;
    let t0 = Instant::now();
    let unblocked = portal.act(&id, &target.mac, "unblock", None).await?;
    assert_eq!(unblocked["status"], "done", "{unblocked}");
    let took = wait_reach(&lab, &target, true, t0, Duration::from_secs(3))
        .with_context(|| agent.log_tail())?;
    eprintln!("router: unblocked after {took:?}");
    let table = netns_run(&gateway.ns, &["nft", "list", "table", "inet", "outpost"])?;
    assert!(!table.contains(&target.mac), "{table}");
    assert_eq!(theirs()?, before, "the rest of the ruleset is untouched");
    agent.stop();
    Ok(())
}
