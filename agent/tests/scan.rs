//! `outpost-agent scan` for real: a small LAN of network namespaces (the project's lab: an agent, a bridge
//! and four hosts), swept over a real `AF_PACKET` socket. Needs root (CAP_SYS_ADMIN, CAP_NET_RAW):
//! it fails, not skips, when it cannot build the lab. Traffic stays inside the namespaces it creates.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::{Command, Output};
use std::time::Instant;

use outpost_tests::lab::{Lab, LabSpec, SegmentSpec};

const AGENT_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

fn agent_bin() -> &'static str {
    env!("CARGO_BIN_EXE_outpost-agent")
}

/// The project's namespace lab (`outpost_tests::lab`): an agent namespace with `lan0` on 10.77.0.0/24 and
/// one namespace per host, each with the given MAC at 10.77.0.11, .12, ...
fn build_lab(macs: &[&str]) -> anyhow::Result<Lab> {
    let mut segment = SegmentSpec::new("lan0", "10.77.0.0/24").agent_ip(AGENT_IP);
    for (i, mac) in macs.iter().enumerate() {
        segment = segment.host_with_mac(Ipv4Addr::new(10, 77, 0, 11 + i as u8), mac);
    }
    Lab::build(LabSpec::new().segment(segment))
}

/// Runs `outpost-agent scan ARGS` in the lab's agent namespace.
fn scan(lab: &Lab, args: &[&str]) -> Output {
    let mut argv = vec![agent_bin(), "scan"];
    argv.extend_from_slice(args);
    lab.exec(&argv)
        .env("OUTPOST_LOG", "info")
        .output()
        .expect("run outpost-agent scan in the agent namespace")
}

#[test]
fn scan_finds_every_host_of_a_namespace_lan_and_nothing_else() {
    // 00:1a:11 is Google's MA-L; 00:50:c2:7d:5 is an IAB (DEUTA-WERKE); 02:... and 0a:... are local.
    let macs = [
        "00:1a:11:00:00:11",
        "00:50:c2:7d:51:12",
        "02:00:00:00:00:13",
        "0a:11:22:33:44:14",
    ];
    let lab = build_lab(&macs).unwrap_or_else(|e| {
        panic!("cannot build the namespace lab (this test needs root and iproute2): {e}")
    });

    let started = Instant::now();
    let out = scan(&lab, &["--interface", "lan0", "--json", "--no-mdns"]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scan failed: {stderr}");
    let hosts: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON array ({e}): {:?}", out.stdout));
    eprintln!("JSON scan of 10.77.0.0/24 took {took:?} (process wall time)\n{stderr}");
    // 253 addresses at 2,000 pps, two retry rounds for the silent ones, 30 ms quiet ends: about 0.45 s
    // (arp-scan takes about 2 s). Generous for a loaded CI machine, still far below fixed timeouts.
    assert!(
        took < std::time::Duration::from_secs(3),
        "the sweep took {took:?}"
    );

    let found: BTreeSet<(String, String)> = hosts
        .iter()
        .map(|h| {
            (
                h["ip"].as_str().unwrap().to_owned(),
                h["mac"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = lab
        .hosts()
        .map(|h| (h.ip.to_string(), h.mac.clone()))
        .collect();
    assert_eq!(found, expected, "every host, nothing phantom");
    // Sorted by IP, every field present.
    let ips: Vec<&str> = hosts.iter().map(|h| h["ip"].as_str().unwrap()).collect();
    assert_eq!(
        ips,
        ["10.77.0.11", "10.77.0.12", "10.77.0.13", "10.77.0.14"]
    );
    let by_mac = |mac: &str| hosts.iter().find(|h| h["mac"] == mac).unwrap();
    assert_eq!(by_mac(macs[0])["vendor"], "Google, Inc.");
    assert_eq!(by_mac(macs[1])["vendor"], "DEUTA-WERKE GmbH");
    assert_eq!(by_mac(macs[0])["locally_administered"], false);
    assert_eq!(by_mac(macs[2])["vendor"], serde_json::Value::Null);
    assert_eq!(by_mac(macs[2])["locally_administered"], true);
    for h in &hosts {
        assert_eq!(h["names"], serde_json::json!([]));
        let rtt = h["rtt_ms"].as_f64().unwrap();
        assert!((0.0..100.0).contains(&rtt), "{h}");
    }

    // With a listening window (no responders here): the same hosts, and the window adds its length.
    let started = Instant::now();
    let out = scan(&lab, &["--interface", "lan0", "--json", "--window", "0.5"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(500));
    let again: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let again: BTreeSet<(String, String)> = again
        .iter()
        .map(|h| {
            (
                h["ip"].as_str().unwrap().to_owned(),
                h["mac"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(again, expected);

    // The human table: a line per host and the summary.
    let out = scan(&lab, &["--interface", "lan0", "--no-mdns"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{stdout}");
    assert!(stdout.contains("00:1a:11:00:00:11"), "{stdout}");
    assert!(
        stdout.contains("4 hosts found on lan0 (10.77.0.0/24, 253 addresses)"),
        "{stdout}"
    );
}

#[test]
fn scan_names_a_missing_interface() {
    let out = Command::new(agent_bin())
        .args(["scan", "--interface", "doesnotexist", "--json"])
        .output()
        .expect("run outpost-agent");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("interface doesnotexist does not exist"),
        "{stderr}"
    );
}

#[test]
fn scan_refuses_a_cidr_larger_than_a_slash_16() {
    let out = Command::new(agent_bin())
        .args(["scan", "--interface", "lo", "--cidr", "10.0.0.0/8"])
        .output()
        .expect("run outpost-agent");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("10.0.0.0/8 is larger than /16: give --cidr with a smaller range"),
        "{stderr}"
    );
}
