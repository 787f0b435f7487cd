//! `outpost-agent scan` for real: a small LAN of network namespaces (an agent, a bridge and four hosts,
//! joined by veth pairs), swept over a real `AF_PACKET` socket. Needs root (CAP_SYS_ADMIN, CAP_NET_RAW):
//! it fails, not skips, when it cannot build the lab. Traffic stays inside the namespaces it creates.

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::Instant;

const AGENT_IP: &str = "10.77.0.1";

fn agent_bin() -> &'static str {
    env!("CARGO_BIN_EXE_outpost-agent")
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("run `ip {}`: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Namespaces named `oscan<pid>-<role>`, deleted on drop.
struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    /// (ip, mac) of each host.
    hosts: Vec<(String, String)>,
}

impl Lab {
    fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// Removes namespaces left by test processes that died without cleaning up.
    fn remove_stale() {
        let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            let Some(rest) = name.strip_prefix("oscan") else {
                continue;
            };
            let pid = rest.split('-').next().unwrap_or("");
            if pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            {
                drop(ip(&["netns", "del", name]));
            }
        }
    }

    fn add_ns(&mut self, role: &str) -> Result<String, String> {
        let ns = self.ns(role);
        ip(&["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Agent `lan0` (10.77.0.1/24) ── bridge `br0` ── hosts `eth0` with the given MACs (10.77.0.11...).
    fn build(host_macs: &[&str]) -> Result<Lab, String> {
        Self::remove_stale();
        let mut lab = Lab {
            prefix: format!("oscan{}", std::process::id()),
            namespaces: Vec::new(),
            hosts: Vec::new(),
        };
        let switch = lab.add_ns("sw")?;
        let agent = lab.add_ns("a")?;
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &switch, "link", "set", "br0", "up"])?;
        ip(&[
            "-n", &agent, "link", "add", "lan0", "type", "veth", "peer", "name", "pa", "netns",
            &switch,
        ])?;
        ip(&["-n", &switch, "link", "set", "pa", "master", "br0", "up"])?;
        ip(&[
            "-n",
            &agent,
            "addr",
            "add",
            &format!("{AGENT_IP}/24"),
            "dev",
            "lan0",
        ])?;
        ip(&["-n", &agent, "link", "set", "lan0", "up"])?;
        for (i, mac) in host_macs.iter().enumerate() {
            let host = lab.add_ns(&format!("h{i}"))?;
            let port = format!("p{i}");
            let addr = format!("10.77.0.{}", 11 + i);
            ip(&[
                "-n", &host, "link", "add", "eth0", "address", mac, "type", "veth", "peer", "name",
                &port, "netns", &switch,
            ])?;
            ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &host,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &host, "link", "set", "eth0", "up"])?;
            lab.hosts.push((addr, mac.to_string()));
        }
        Ok(lab)
    }

    fn scan(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns("a"), agent_bin(), "scan"])
            .args(args)
            .env("OUTPOST_LOG", "info")
            .output()
            .expect("run outpost-agent scan in the agent namespace")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("lab teardown: {e}");
            }
        }
    }
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
    let lab = Lab::build(&macs).unwrap_or_else(|e| {
        panic!("cannot build the namespace lab (this test needs root and iproute2): {e}")
    });

    let started = Instant::now();
    let out = lab.scan(&["--interface", "lan0", "--json"]);
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
    let expected: BTreeSet<(String, String)> = lab.hosts.iter().cloned().collect();
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

    // The human table: a line per host and the summary.
    let out = lab.scan(&["--interface", "lan0", "--no-mdns"]);
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
