//! Power control against real protocol peers: `outpost_agent::power::act` runs inside the agent namespace of a
//! lab (`outpost_tests::lab`) and switches outlets on peers in lab hosts (`outpost_tests::power_lab`): net-snmp's
//! snmpd with a `pass_persist` PoE port table and APC PDU outlet table (v2c and v3 authPriv), smart plugs
//! speaking the Shelly Gen2 (digest authentication) and Tasmota HTTP APIs, and an `AF_PACKET` capture that
//! checks Wake-on-LAN frames byte by byte. Every test checks what the peer recorded (the SETs, the requests),
//! the state read back, the timing of a cycle, and the error codes and messages of the failures.
//!
//! Needs root (network namespaces), net-snmp's snmpd and snmpget, and python3: the tests fail, not skip, when
//! the lab or a peer cannot start. All traffic stays inside the lab (the agent namespace has `lan0` and
//! loopback, and no default route).

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outpost_agent::config::PowerConfig;
use outpost_agent::power::{act, PowerError, PowerTarget};
use outpost_cloud_link::control::{
    codes, DeviceRef, Outlet, OutletBinding, PowerAction, PowerResult, PowerState, SnmpAuth,
    SnmpAuthProtocol, SnmpPrivProtocol,
};
use outpost_tests::lab::{HostInfo, Lab, LabSpec, SegmentSpec};
use outpost_tests::netns::in_netns;
use outpost_tests::power_lab::{
    PlugKind, PlugRequest, PlugSpec, SmartPlug, SnmpSet, Snmpd, SnmpdSpec, PDU_OUTLET_CTL,
    POE_ADMIN_ENABLE,
};
use serde_json::json;

const AGENT_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The agent's MAC on `lan0` (the lab's first segment).
const AGENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SNMP_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 11);
const PLUG_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 12);
const LOCKED_PLUG_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 13);
const PC_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 20);
const PC_MAC: &str = "00:1a:2b:3c:4d:5e";

const RW: &str = "lab-rw-community";
const RO: &str = "lab-ro-community";
const V3_USER: &str = "outpost-ops";
const V3_AUTH: &str = "auth-pass-7731";
const V3_PRIV: &str = "priv-pass-0942";
/// Every secret the tests use: no error message may contain one.
const SECRETS: &[&str] = &[
    RW,
    RO,
    V3_AUTH,
    V3_PRIV,
    "wrong-community",
    "wrong-auth-pass",
    "wrong-priv-pass",
    SHELLY_PW,
    TASMOTA_PW,
    "not-the-password",
];
const SHELLY_PW: &str = "shelly-pw-5521";
const TASMOTA_PW: &str = "t&sm pw";

/// The agent on `lan0` (10.77.0.0/24) and one host per address (the PC with [`PC_MAC`]).
fn build_lab(hosts: &[Ipv4Addr]) -> Lab {
    let mut segment = SegmentSpec::new("lan0", "10.77.0.0/24").agent_ip(AGENT_IP);
    for ip in hosts {
        segment = if *ip == PC_IP {
            segment.host_with_mac(*ip, PC_MAC)
        } else {
            segment.hosts_list([*ip])
        };
    }
    Lab::build(LabSpec::new().segment(segment)).unwrap_or_else(|e| {
        panic!("cannot build the namespace lab (this test needs root and iproute2): {e:#}")
    })
}

fn host(lab: &Lab, ip: Ipv4Addr) -> HostInfo {
    lab.hosts()
        .find(|h| h.ip == ip)
        .cloned()
        .unwrap_or_else(|| panic!("no lab host {ip}"))
}

/// Runs `f` on a current-thread tokio runtime inside the agent namespace.
fn in_agent<T: Send>(lab: &Lab, f: impl std::future::Future<Output = T> + Send) -> T {
    in_netns(lab.agent_ns(), || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(f)
    })
    .expect("run inside the agent namespace")
}

fn config(timeout_ms: u64, retries: u32, settle_ms: u64) -> PowerConfig {
    PowerConfig {
        timeout: Duration::from_millis(timeout_ms),
        retries,
        settle: Duration::from_millis(settle_ms),
    }
}

fn target() -> PowerTarget {
    PowerTarget {
        device: DeviceRef::new("aa:bb:cc:00:00:01", None).unwrap(),
        interface: Some("lan0".into()),
        ipv4: None,
    }
}

fn bound(outlet: Outlet, cycle_delay_secs: u32) -> OutletBinding {
    OutletBinding {
        outlet,
        cycle_delay_secs,
    }
}

fn v2c(community: &str) -> SnmpAuth {
    SnmpAuth::V2c {
        community: community.into(),
    }
}

fn v3(user: &str, auth_password: &str, priv_password: &str) -> SnmpAuth {
    SnmpAuth::V3 {
        user: user.into(),
        auth_protocol: Some(SnmpAuthProtocol::Sha),
        auth_password: Some(auth_password.into()),
        priv_protocol: Some(SnmpPrivProtocol::Aes),
        priv_password: Some(priv_password.into()),
    }
}

fn poe(host: &str, group: u32, port: u32, snmp: SnmpAuth) -> Outlet {
    Outlet::PoeSnmp {
        host: host.into(),
        group,
        port,
        snmp,
    }
}

fn pdu(host: &str, outlet: u32, snmp: SnmpAuth) -> Outlet {
    Outlet::ApcPdu {
        host: host.into(),
        outlet,
        snmp,
    }
}

fn result(action: PowerAction, state: PowerState) -> PowerResult {
    PowerResult { action, state }
}

/// Runs an action and returns its outcome and how long it took.
async fn timed(
    config: &PowerConfig,
    binding: &OutletBinding,
    action: PowerAction,
    target: &PowerTarget,
) -> (Result<PowerResult, PowerError>, Duration) {
    let started = Instant::now();
    let outcome = act(config, binding, action, target).await;
    (outcome, started.elapsed())
}

/// Checks an error's code and that its message names no secret; returns the message.
fn failure(outcome: Result<PowerResult, PowerError>, code: &str) -> String {
    let err = match outcome {
        Ok(r) => panic!("expected {code}, the action succeeded: {r:?}"),
        Err(e) => e,
    };
    let text = err.to_string();
    assert_eq!(err.code(), code, "{text}");
    for secret in SECRETS {
        assert!(!text.contains(secret), "the message shows a secret: {text}");
    }
    eprintln!("{code}: {text}");
    text
}

/// The SETs as `(table, index, value, answer)`.
fn set_list(sets: &[SnmpSet]) -> Vec<(String, String, String, String)> {
    sets.iter()
        .map(|s| {
            (
                s.table.clone(),
                s.index.clone(),
                s.value.clone(),
                s.answer.clone(),
            )
        })
        .collect()
}

fn set(table: &str, index: &str, value: &str) -> (String, String, String, String) {
    (table.into(), index.into(), value.into(), "DONE".into())
}

/// The time between the off and the on SET of a cycle, from the peer's log.
fn gap(sets: &[SnmpSet], off: usize) -> Duration {
    Duration::from_secs_f64(sets[off + 1].at - sets[off].at)
}

/// A cycle with a 1 s delay: the on came at least 1 s after the off, and not much later.
fn assert_cycle_gap(gap: Duration, elapsed: Duration) {
    assert!(
        gap >= Duration::from_millis(1000) && gap < Duration::from_millis(2500),
        "off to on took {gap:?}"
    );
    assert!(
        elapsed >= Duration::from_secs(1),
        "the cycle took {elapsed:?}"
    );
}

#[test]
fn poe_ports_switch_over_snmp_v2c_and_v3_authpriv() {
    let lab = build_lab(&[SNMP_IP]);
    let spec = SnmpdSpec::new(RW)
        .v3_user(V3_USER, V3_AUTH, V3_PRIV)
        .poe_port(1, 1, true)
        .poe_port(1, 2, false)
        .poe_port(2, 7, true);
    let snmpd = Snmpd::start(&lab, &host(&lab, SNMP_IP), &spec).expect("start snmpd");
    // The binding's host without a port: SNMP's 161.
    let addr = SNMP_IP.to_string();
    let cfg = config(1000, 1, 3000);
    let t = target();

    let (cycle_v2c, cycle_v3) = in_agent(&lab, async {
        let port11 = bound(poe(&addr, 1, 1, v2c(RW)), 1);
        let r = act(&cfg, &port11, PowerAction::Off, &t).await.unwrap();
        assert_eq!(r, result(PowerAction::Off, PowerState::Off));
        let r = act(&cfg, &port11, PowerAction::On, &t).await.unwrap();
        assert_eq!(r, result(PowerAction::On, PowerState::On));
        let port12 = bound(poe(&addr, 1, 2, v2c(RW)), 1);
        let (r, cycle_v2c) = timed(&cfg, &port12, PowerAction::Cycle, &t).await;
        assert_eq!(r.unwrap(), result(PowerAction::Cycle, PowerState::On));

        let port27 = bound(poe(&addr, 2, 7, v3(V3_USER, V3_AUTH, V3_PRIV)), 1);
        let r = act(&cfg, &port27, PowerAction::Off, &t).await.unwrap();
        assert_eq!(r, result(PowerAction::Off, PowerState::Off));
        let r = act(&cfg, &port27, PowerAction::On, &t).await.unwrap();
        assert_eq!(r, result(PowerAction::On, PowerState::On));
        let (r, cycle_v3) = timed(&cfg, &port27, PowerAction::Cycle, &t).await;
        assert_eq!(r.unwrap(), result(PowerAction::Cycle, PowerState::On));
        (cycle_v2c, cycle_v3)
    });

    let sets = snmpd.sets().unwrap();
    assert_eq!(
        set_list(&sets),
        vec![
            set("poe", "1.1", "2"),
            set("poe", "1.1", "1"),
            set("poe", "1.2", "2"),
            set("poe", "1.2", "1"),
            set("poe", "2.7", "2"),
            set("poe", "2.7", "1"),
            set("poe", "2.7", "2"),
            set("poe", "2.7", "1"),
        ]
    );
    assert_cycle_gap(gap(&sets, 2), cycle_v2c);
    assert_cycle_gap(gap(&sets, 6), cycle_v3);
    // The switch's own view.
    for (index, want) in [("1.1", "1"), ("1.2", "1"), ("2.7", "1")] {
        let got = snmpd.get(&format!("{POE_ADMIN_ENABLE}.{index}")).unwrap();
        assert_eq!(got.as_deref(), Some(want), "port {index}");
    }
}

#[test]
fn apc_pdu_outlets_switch_and_cycle_and_are_polled_until_they_follow() {
    let lab = build_lab(&[SNMP_IP]);
    // Each SET takes effect 400 ms later, as relays do: the read-back has to poll.
    let spec = SnmpdSpec::new(RW)
        .v3_user(V3_USER, V3_AUTH, V3_PRIV)
        .pdu_outlet(1, true)
        .pdu_outlet(2, false)
        .pdu_outlet(3, true)
        .lag(Duration::from_millis(400));
    let snmpd = Snmpd::start(&lab, &host(&lab, SNMP_IP), &spec).expect("start snmpd");
    let addr = snmpd.address();
    let cfg = config(1000, 1, 3000);
    let t = target();

    let (off_took, cycle_took) = in_agent(&lab, async {
        let outlet1 = bound(pdu(&addr, 1, v2c(RW)), 1);
        let (r, off_took) = timed(&cfg, &outlet1, PowerAction::Off, &t).await;
        assert_eq!(r.unwrap(), result(PowerAction::Off, PowerState::Off));
        let outlet2 = bound(pdu(&addr, 2, v3(V3_USER, V3_AUTH, V3_PRIV)), 1);
        let r = act(&cfg, &outlet2, PowerAction::On, &t).await.unwrap();
        assert_eq!(r, result(PowerAction::On, PowerState::On));
        let outlet3 = bound(pdu(&addr, 3, v2c(RW)), 1);
        let (r, cycle_took) = timed(&cfg, &outlet3, PowerAction::Cycle, &t).await;
        assert_eq!(r.unwrap(), result(PowerAction::Cycle, PowerState::On));
        (off_took, cycle_took)
    });

    assert!(
        off_took >= Duration::from_millis(400),
        "the off was confirmed before the outlet followed ({off_took:?})"
    );
    let sets = snmpd.sets().unwrap();
    assert_eq!(
        set_list(&sets),
        vec![
            set("pdu", "1", "2"),
            set("pdu", "2", "1"),
            set("pdu", "3", "2"),
            set("pdu", "3", "1"),
        ]
    );
    // Off, confirmed after the lag, then the delay.
    let off_to_on = gap(&sets, 2);
    assert!(
        off_to_on >= Duration::from_millis(1400) && off_to_on < Duration::from_millis(3000),
        "off to on took {off_to_on:?}"
    );
    assert!(cycle_took >= Duration::from_millis(1800), "{cycle_took:?}");
    for (outlet, want) in [(1, "2"), (2, "1"), (3, "1")] {
        let got = snmpd.get(&format!("{PDU_OUTLET_CTL}.{outlet}")).unwrap();
        assert_eq!(got.as_deref(), Some(want), "outlet {outlet}");
    }
}

#[test]
fn snmp_failures_say_what_went_wrong() {
    let lab = build_lab(&[SNMP_IP]);
    let spec = SnmpdSpec::new(RW)
        .ro_community(RO)
        .v3_user(V3_USER, V3_AUTH, V3_PRIV)
        .poe_port(1, 1, true)
        .stuck_poe_port(1, 3, true)
        .pdu_outlet(1, true)
        .stuck_pdu_outlet(4, true);
    let snmpd = Snmpd::start(&lab, &host(&lab, SNMP_IP), &spec).expect("start snmpd");
    let addr = snmpd.address();
    let quiet = format!("{SNMP_IP}:1161");
    // 1 s per request, one retry: a silent agent costs 2 s.
    let cfg = config(1000, 1, 1000);
    let t = target();
    let off = PowerAction::Off;

    let outcomes = in_agent(&lab, async {
        let nobody = bound(poe(&quiet, 1, 1, v2c(RW)), 1);
        let wrong_community = bound(poe(&addr, 1, 1, v2c("wrong-community")), 1);
        let read_only = bound(poe(&addr, 1, 1, v2c(RO)), 1);
        let wrong_auth = bound(poe(&addr, 1, 1, v3(V3_USER, "wrong-auth-pass", V3_PRIV)), 1);
        let unknown_user = bound(poe(&addr, 1, 1, v3("nobody-here", V3_AUTH, V3_PRIV)), 1);
        let wrong_priv = bound(poe(&addr, 1, 1, v3(V3_USER, V3_AUTH, "wrong-priv-pass")), 1);
        let no_port = bound(poe(&addr, 1, 9, v2c(RW)), 1);
        let stuck_port = bound(poe(&addr, 1, 3, v2c(RW)), 1);
        let stuck_outlet = bound(pdu(&addr, 4, v3(V3_USER, V3_AUTH, V3_PRIV)), 1);
        // The agent namespace has no default route: the kernel refuses the send, nothing leaves the lab.
        let no_route = bound(poe("192.0.2.1", 1, 1, v2c(RW)), 1);
        tokio::join!(
            timed(&cfg, &nobody, off, &t),
            timed(&cfg, &wrong_community, off, &t),
            timed(&cfg, &read_only, off, &t),
            timed(&cfg, &wrong_auth, off, &t),
            timed(&cfg, &unknown_user, off, &t),
            timed(&cfg, &wrong_priv, off, &t),
            timed(&cfg, &no_port, off, &t),
            timed(&cfg, &stuck_port, off, &t),
            timed(&cfg, &stuck_outlet, PowerAction::Cycle, &t),
            timed(&cfg, &no_route, off, &t),
        )
    });
    let (
        nobody,
        wrong_community,
        read_only,
        wrong_auth,
        unknown_user,
        wrong_priv,
        no_port,
        stuck_port,
        stuck_outlet,
        no_route,
    ) = outcomes;

    let text = failure(nobody.0, codes::TIMEOUT);
    assert!(
        text.starts_with(&format!("no answer from {quiet} within "))
            && text.ends_with("(2 tries): check the address and the community"),
        "{text}"
    );
    assert!(nobody.1 >= Duration::from_millis(2000), "{:?}", nobody.1);
    let text = failure(wrong_community.0, codes::TIMEOUT);
    assert!(
        text.ends_with("check the address and the community"),
        "{text}"
    );
    let text = failure(read_only.0, codes::AUTH_FAILED);
    assert!(
        text.contains("noAccess") || text.contains("read-write"),
        "{text}"
    );
    let text = failure(wrong_auth.0, codes::AUTH_FAILED);
    assert!(text.contains("usmStatsWrongDigests"), "{text}");
    let text = failure(unknown_user.0, codes::AUTH_FAILED);
    assert!(text.contains("usmStatsUnknownUserNames"), "{text}");
    // net-snmp drops what it cannot decrypt without a report.
    let text = failure(wrong_priv.0, codes::TIMEOUT);
    assert!(text.contains("privacy password"), "{text}");
    let text = failure(no_port.0, codes::OUTLET_ERROR);
    assert!(
        text.contains("pethPsePortAdminEnable.1.9") && text.contains("group and port"),
        "{text}"
    );
    let text = failure(stuck_port.0, codes::STATE_MISMATCH);
    assert!(
        text.starts_with("the outlet answered but still reports on after 1s"),
        "{text}"
    );
    assert!(stuck_port.1 >= Duration::from_secs(1), "{:?}", stuck_port.1);
    let text = failure(stuck_outlet.0, codes::STATE_MISMATCH);
    assert!(text.contains("still reports on"), "{text}");
    let text = failure(no_route.0, codes::UNREACHABLE);
    assert!(text.contains("192.0.2.1:161"), "{text}");

    // The handler saw the SETs the agent let through: the stuck port and outlet (taken, without effect; the
    // cycle stopped after its off). snmpd refused the unknown port itself (its handler has no such instance),
    // and the wrong or read-only credentials never reached it.
    let mut sets = set_list(&snmpd.sets().unwrap());
    sets.sort();
    assert_eq!(sets, vec![set("pdu", "4", "2"), set("poe", "1.3", "2")]);
    assert_eq!(
        snmpd
            .get(&format!("{POE_ADMIN_ENABLE}.1.1"))
            .unwrap()
            .as_deref(),
        Some("1")
    );
}

fn shelly(host: &str, switch_id: u32, password: Option<&str>) -> Outlet {
    Outlet::Shelly {
        host: host.into(),
        switch_id,
        password: password.map(str::to_owned),
    }
}

fn tasmota(host: &str, relay: u32, user: Option<&str>, password: Option<&str>) -> Outlet {
    Outlet::Tasmota {
        host: host.into(),
        relay,
        user: user.map(str::to_owned),
        password: password.map(str::to_owned),
    }
}

/// `(rpc method, params, status, authorized)` of each Shelly request.
fn rpc_list(requests: &[PlugRequest]) -> Vec<(String, serde_json::Value, u16, Option<bool>)> {
    requests
        .iter()
        .map(|r| {
            assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/rpc"));
            (
                r.rpc.clone().unwrap_or_default(),
                r.params.clone().unwrap_or_default(),
                r.status,
                r.authorized,
            )
        })
        .collect()
}

/// A TCP listener in `host` that never answers (the kernel completes the handshake, nobody reads).
fn silent_listener(host: &HostInfo, port: u16) -> TcpListener {
    in_netns(&host.ns, || TcpListener::bind((host.ip, port)))
        .expect("enter the host namespace")
        .expect("bind the silent listener")
}

#[test]
fn shelly_gen2_plugs_switch_with_and_without_digest_authentication() {
    let lab = build_lab(&[PLUG_IP, LOCKED_PLUG_IP]);
    let open_spec = PlugSpec::new(PlugKind::Shelly)
        .switch(0, false)
        .stuck_switch(1, true);
    let open = SmartPlug::start(&lab, &host(&lab, PLUG_IP), &open_spec).expect("start the Shelly");
    let locked_spec = PlugSpec::new(PlugKind::Shelly)
        .password(SHELLY_PW)
        .switch(0, true)
        .lag(Duration::from_millis(300));
    let locked = SmartPlug::start(&lab, &host(&lab, LOCKED_PLUG_IP), &locked_spec)
        .expect("start the Shelly");
    let silent = silent_listener(&host(&lab, PLUG_IP), 8088);
    let cfg = config(1000, 0, 2000);
    let t = target();
    let (open_addr, locked_addr) = (PLUG_IP.to_string(), locked.address());

    let (open_cycle, locked_cycle) = in_agent(&lab, async {
        let plug = bound(shelly(&open_addr, 0, None), 1);
        let r = act(&cfg, &plug, PowerAction::On, &t).await.unwrap();
        assert_eq!(r, result(PowerAction::On, PowerState::On));
        let r = act(&cfg, &plug, PowerAction::Off, &t).await.unwrap();
        assert_eq!(r, result(PowerAction::Off, PowerState::Off));
        let (r, open_cycle) = timed(&cfg, &plug, PowerAction::Cycle, &t).await;
        assert_eq!(r.unwrap(), result(PowerAction::Cycle, PowerState::On));

        let plug = bound(shelly(&locked_addr, 0, Some(SHELLY_PW)), 1);
        let r = act(&cfg, &plug, PowerAction::Off, &t).await.unwrap();
        assert_eq!(r, result(PowerAction::Off, PowerState::Off));
        let (r, locked_cycle) = timed(&cfg, &plug, PowerAction::Cycle, &t).await;
        assert_eq!(r.unwrap(), result(PowerAction::Cycle, PowerState::On));
        (open_cycle, locked_cycle)
    });

    // Without a password: one authorized-by-nobody request per call.
    let requests = open.requests().unwrap();
    let set = |on: bool| {
        (
            "Switch.Set".to_owned(),
            json!({"id": 0, "on": on}),
            200,
            Some(false),
        )
    };
    let status = || {
        (
            "Switch.GetStatus".to_owned(),
            json!({"id": 0}),
            200,
            Some(false),
        )
    };
    assert_eq!(
        rpc_list(&requests),
        vec![
            set(true),
            status(),
            set(false),
            status(),
            set(false),
            status(),
            set(true),
            status()
        ]
    );
    assert_cycle_gap(
        Duration::from_secs_f64(requests[6].at - requests[4].at),
        open_cycle,
    );

    // With a password: every call is challenged (401) and then answered with the digest (200).
    let calls = rpc_list(&locked.requests().unwrap());
    assert!(calls.len() % 2 == 0, "{calls:#?}");
    for pair in calls.chunks(2) {
        assert_eq!(
            (pair[0].2, pair[0].3, pair[1].2, pair[1].3),
            (401, Some(false), 200, Some(true)),
            "{pair:?}"
        );
        assert_eq!((&pair[0].0, &pair[0].1), (&pair[1].0, &pair[1].1));
    }
    let sets: Vec<_> = calls
        .iter()
        .filter(|c| c.0 == "Switch.Set" && c.2 == 200)
        .map(|c| c.1.clone())
        .collect();
    assert_eq!(
        sets,
        vec![
            json!({"id": 0, "on": false}),
            json!({"id": 0, "on": false}),
            json!({"id": 0, "on": true})
        ]
    );
    // The 300 ms lag made the agent read the state more than once.
    let reads = calls
        .iter()
        .filter(|c| c.0 == "Switch.GetStatus" && c.2 == 200)
        .count();
    assert!(reads > 3, "{calls:#?}");
    assert!(
        locked_cycle >= Duration::from_millis(1300),
        "{locked_cycle:?}"
    );

    // Failures.
    open.clear_requests();
    let quiet = format!("{PLUG_IP}:8088");
    let refused = format!("{PLUG_IP}:8081");
    let outcomes = in_agent(&lab, async {
        let wrong_pw = bound(shelly(&locked_addr, 0, Some("not-the-password")), 1);
        let no_pw = bound(shelly(&locked_addr, 0, None), 1);
        let stuck = bound(shelly(&open_addr, 1, None), 1);
        let no_switch = bound(shelly(&open_addr, 5, None), 1);
        let closed = bound(shelly(&refused, 0, None), 1);
        let hangs = bound(shelly(&quiet, 0, None), 1);
        let off = PowerAction::Off;
        tokio::join!(
            timed(&cfg, &wrong_pw, off, &t),
            timed(&cfg, &no_pw, off, &t),
            timed(&cfg, &stuck, off, &t),
            timed(&cfg, &no_switch, off, &t),
            timed(&cfg, &closed, off, &t),
            timed(&cfg, &hangs, off, &t),
        )
    });
    let (wrong_pw, no_pw, stuck, no_switch, closed, hangs) = outcomes;
    let text = failure(wrong_pw.0, codes::AUTH_FAILED);
    assert!(text.contains("refused the password"), "{text}");
    let text = failure(no_pw.0, codes::AUTH_FAILED);
    assert!(text.contains("asks for a password"), "{text}");
    let text = failure(stuck.0, codes::STATE_MISMATCH);
    assert!(
        text.starts_with("the outlet answered but still reports on after 2s"),
        "{text}"
    );
    let text = failure(no_switch.0, codes::OUTLET_ERROR);
    assert!(
        text.contains("-105") && text.contains("switch id 5"),
        "{text}"
    );
    let text = failure(closed.0, codes::UNREACHABLE);
    assert!(
        text.contains(&refused) && text.contains("refused"),
        "{text}"
    );
    let text = failure(hangs.0, codes::TIMEOUT);
    assert!(
        text.starts_with(&format!("no answer from {quiet} within 1s")),
        "{text}"
    );
    drop(silent);
    // The wrong password never switched anything.
    assert_eq!(
        locked
            .requests()
            .unwrap()
            .iter()
            .filter(|r| r.rpc.as_deref() == Some("Switch.Set") && r.status == 200)
            .count(),
        3
    );
}

#[test]
fn tasmota_plugs_switch_with_and_without_web_credentials() {
    let lab = build_lab(&[PLUG_IP, LOCKED_PLUG_IP]);
    // One relay (it answers "POWER"), no web password.
    let open_spec = PlugSpec::new(PlugKind::Tasmota).switch(1, true);
    let open =
        SmartPlug::start(&lab, &host(&lab, PLUG_IP), &open_spec).expect("start the Tasmota plug");
    // Three relays (it answers "POWER2"), web password for the default user admin; relay 3 is stuck.
    let locked_spec = PlugSpec::new(PlugKind::Tasmota)
        .password(TASMOTA_PW)
        .switch(1, false)
        .switch(2, false)
        .stuck_switch(3, true);
    let locked = SmartPlug::start(&lab, &host(&lab, LOCKED_PLUG_IP), &locked_spec)
        .expect("start the Tasmota plug");
    let cfg = config(1000, 0, 2000);
    let t = target();
    let (open_addr, locked_addr) = (open.address(), locked.address());

    let (open_cycle, locked_cycle) = in_agent(&lab, async {
        let plug = bound(tasmota(&open_addr, 0, None, None), 1);
        let r = act(&cfg, &plug, PowerAction::Off, &t).await.unwrap();
        assert_eq!(r, result(PowerAction::Off, PowerState::Off));
        let r = act(&cfg, &plug, PowerAction::On, &t).await.unwrap();
        assert_eq!(r, result(PowerAction::On, PowerState::On));
        let (r, open_cycle) = timed(&cfg, &plug, PowerAction::Cycle, &t).await;
        assert_eq!(r.unwrap(), result(PowerAction::Cycle, PowerState::On));

        // No user in the binding: Tasmota's admin.
        let plug = bound(tasmota(&locked_addr, 2, None, Some(TASMOTA_PW)), 1);
        let r = act(&cfg, &plug, PowerAction::On, &t).await.unwrap();
        assert_eq!(r, result(PowerAction::On, PowerState::On));
        let plug = bound(tasmota(&locked_addr, 2, Some("admin"), Some(TASMOTA_PW)), 1);
        let (r, locked_cycle) = timed(&cfg, &plug, PowerAction::Cycle, &t).await;
        assert_eq!(r.unwrap(), result(PowerAction::Cycle, PowerState::On));
        (open_cycle, locked_cycle)
    });

    let requests = open.requests().unwrap();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/cm?cmnd=Power%20Off",
            "/cm?cmnd=Power",
            "/cm?cmnd=Power%20On",
            "/cm?cmnd=Power",
            "/cm?cmnd=Power%20Off",
            "/cm?cmnd=Power",
            "/cm?cmnd=Power%20On",
            "/cm?cmnd=Power",
        ]
    );
    assert!(requests
        .iter()
        .all(|r| r.method == "GET" && r.status == 200));
    assert_cycle_gap(
        Duration::from_secs_f64(requests[6].at - requests[4].at),
        open_cycle,
    );

    let requests = locked.requests().unwrap();
    let creds = "user=admin&password=t%26sm%20pw";
    let expected: Vec<String> = [
        "Power2%20On",
        "Power2",
        "Power2%20Off",
        "Power2",
        "Power2%20On",
        "Power2",
    ]
    .iter()
    .map(|c| format!("/cm?{creds}&cmnd={c}"))
    .collect();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, expected);
    assert!(requests
        .iter()
        .all(|r| r.status == 200 && r.authorized == Some(true)));
    assert_eq!(requests[0].cmnd.as_deref(), Some("Power2 On"));
    assert_cycle_gap(
        Duration::from_secs_f64(requests[4].at - requests[2].at),
        locked_cycle,
    );

    // Failures.
    locked.clear_requests();
    let outcomes = in_agent(&lab, async {
        let wrong_pw = bound(
            tasmota(&locked_addr, 2, Some("admin"), Some("not-the-password")),
            1,
        );
        let no_pw = bound(tasmota(&locked_addr, 2, None, None), 1);
        let no_relay = bound(tasmota(&open_addr, 7, None, None), 1);
        let stuck = bound(tasmota(&locked_addr, 3, None, Some(TASMOTA_PW)), 1);
        let closed = bound(tasmota(&format!("{PLUG_IP}:8081"), 0, None, None), 1);
        let off = PowerAction::Off;
        tokio::join!(
            timed(&cfg, &wrong_pw, off, &t),
            timed(&cfg, &no_pw, off, &t),
            timed(&cfg, &no_relay, off, &t),
            timed(&cfg, &stuck, off, &t),
            timed(&cfg, &closed, off, &t),
        )
    });
    let (wrong_pw, no_pw, no_relay, stuck, closed) = outcomes;
    let text = failure(wrong_pw.0, codes::AUTH_FAILED);
    assert!(text.contains("Need user="), "{text}");
    let text = failure(no_pw.0, codes::AUTH_FAILED);
    assert!(text.contains("asks for a user and password"), "{text}");
    let text = failure(no_relay.0, codes::OUTLET_ERROR);
    assert!(text.contains("Power7") && text.contains("relay"), "{text}");
    let text = failure(stuck.0, codes::STATE_MISMATCH);
    assert!(
        text.starts_with("the outlet answered but still reports on after 2s"),
        "{text}"
    );
    failure(closed.0, codes::UNREACHABLE);
    let refused: Vec<u16> = locked
        .requests()
        .unwrap()
        .iter()
        .filter(|r| r.cmnd.as_deref() == Some("Power2 Off"))
        .map(|r| r.status)
        .collect();
    assert_eq!(refused, [401, 401]);
}

/// Every Ethernet frame carrying UDP to port 9 that reaches a host's `eth0`: an `AF_PACKET` capture on a thread
/// inside the host's namespace.
struct Capture {
    stop: Arc<AtomicBool>,
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Capture {
    fn start(host: &HostInfo) -> Capture {
        let stop = Arc::new(AtomicBool::new(false));
        let frames = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let ns = host.ns.clone();
        let (stopping, sink) = (Arc::clone(&stop), Arc::clone(&frames));
        let thread = std::thread::spawn(move || {
            in_netns(&ns, || {
                let iface = pnet_datalink::interfaces()
                    .into_iter()
                    .find(|i| i.name == "eth0")
                    .expect("eth0 in the host namespace");
                let config = pnet_datalink::Config {
                    read_timeout: Some(Duration::from_millis(50)),
                    ..Default::default()
                };
                let mut rx = match pnet_datalink::channel(&iface, config) {
                    Ok(pnet_datalink::Channel::Ethernet(_, rx)) => rx,
                    Ok(_) => panic!("not an Ethernet channel"),
                    Err(e) => panic!("open a capture on eth0: {e}"),
                };
                ready_tx.send(()).expect("signal the capture is ready");
                while !stopping.load(Ordering::Relaxed) {
                    if let Ok(frame) = rx.next() {
                        let udp9 = frame.get(12..14) == Some(&[0x08, 0x00])
                            && frame.get(23) == Some(&17)
                            && frame.get(36..38) == Some(&[0, 9]);
                        if udp9 {
                            sink.lock().unwrap().push(frame.to_vec());
                        }
                    }
                }
            })
            .expect("capture inside the host namespace");
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the capture did not start");
        Capture {
            stop,
            frames,
            thread: Some(thread),
        }
    }

    fn frames(&self) -> Vec<Vec<u8>> {
        self.frames.lock().unwrap().clone()
    }

    /// Waits until `n` frames were seen (or 3 s passed) and returns them.
    fn wait_for(&self, n: usize) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.frames().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.frames()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Checks a captured frame byte by byte: a broadcast from the agent's `lan0` to UDP port 9 carrying `payload`.
fn assert_wol_frame(frame: &[u8], payload: &[u8]) {
    assert_eq!(&frame[0..6], &[0xff; 6], "Ethernet destination");
    assert_eq!(&frame[6..12], &AGENT_MAC, "Ethernet source");
    assert_eq!(&frame[12..14], &[0x08, 0x00], "EtherType IPv4");
    assert_eq!(frame[14], 0x45, "IPv4 without options");
    assert_eq!(frame[23], 17, "UDP");
    assert_eq!(&frame[26..30], &AGENT_IP.octets(), "IPv4 source");
    assert_eq!(&frame[30..34], &[255, 255, 255, 255], "IPv4 destination");
    assert_eq!(&frame[36..38], &[0, 9], "UDP destination port 9");
    let udp_len = u16::from_be_bytes([frame[38], frame[39]]) as usize;
    assert_eq!(udp_len, 8 + payload.len(), "UDP length");
    assert_eq!(&frame[42..42 + payload.len()], payload, "magic packet");
}

#[test]
fn wake_on_lan_broadcasts_the_magic_packet_out_of_the_device_interface() {
    let lab = build_lab(&[PC_IP]);
    let pc = host(&lab, PC_IP);
    let capture = Capture::start(&pc);
    let cfg = config(1000, 0, 1000);
    let device = DeviceRef::new(PC_MAC, None).unwrap();
    let seen_on_lan0 = PowerTarget {
        device: device.clone(),
        interface: Some("lan0".into()),
        ipv4: Some(PC_IP),
    };
    let plain = bound(Outlet::WakeOnLan { secureon: None }, 5);
    let secureon = bound(
        Outlet::WakeOnLan {
            secureon: Some("01:02:03:0a:0b:0c".into()),
        },
        5,
    );

    in_agent(&lab, async {
        let r = act(&cfg, &plain, PowerAction::On, &seen_on_lan0)
            .await
            .unwrap();
        assert_eq!(r, result(PowerAction::On, PowerState::Unknown));
    });
    let frames = capture.wait_for(1);
    let mac = [0x00, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e];
    let mut magic = vec![0xff; 6];
    for _ in 0..16 {
        magic.extend_from_slice(&mac);
    }
    assert_eq!(frames.len(), 1, "{frames:02x?}");
    assert_wol_frame(&frames[0], &magic);

    in_agent(&lab, async {
        let r = act(&cfg, &secureon, PowerAction::On, &seen_on_lan0)
            .await
            .unwrap();
        assert_eq!(r, result(PowerAction::On, PowerState::Unknown));
    });
    let frames = capture.wait_for(2);
    assert_eq!(frames.len(), 2, "{frames:02x?}");
    let mut with_password = magic.clone();
    with_password.extend_from_slice(&[0x01, 0x02, 0x03, 0x0a, 0x0b, 0x0c]);
    assert_wol_frame(&frames[1], &with_password);

    // What Wake-on-LAN cannot do, and targets it cannot reach: nothing is sent.
    let unseen = PowerTarget {
        device: device.clone(),
        interface: None,
        ipv4: None,
    };
    let gone = PowerTarget {
        device,
        interface: Some("lan9".into()),
        ipv4: None,
    };
    let (off, cycle, no_interface, no_such_interface) = in_agent(&lab, async {
        tokio::join!(
            act(&cfg, &plain, PowerAction::Off, &seen_on_lan0),
            act(&cfg, &plain, PowerAction::Cycle, &seen_on_lan0),
            act(&cfg, &plain, PowerAction::On, &unseen),
            act(&cfg, &plain, PowerAction::On, &gone),
        )
    });
    let text = failure(off, codes::ACTION_UNSUPPORTED);
    assert!(
        text.starts_with("Wake-on-LAN can only turn a device on, it cannot turn one off"),
        "{text}"
    );
    failure(cycle, codes::ACTION_UNSUPPORTED);
    let text = failure(no_interface, codes::BAD_BINDING);
    assert!(text.contains(PC_MAC), "{text}");
    let text = failure(no_such_interface, codes::UNREACHABLE);
    assert!(text.contains("lan9"), "{text}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(capture.frames().len(), 2);
}
