//! The network-namespace LAN lab. These need root and network namespaces, and fail (never skip) when the lab
//! cannot be built.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use outpost_tests::lab::{Lab, LabSpec, SegmentSpec};

/// The lab namespaces `ip netns list` shows with this prefix.
fn namespaces_with(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(out.status.success(), "ip netns list: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// Sends one UDP datagram from the agent to every address (which makes its kernel ARP for them), then
/// returns how many of them have a resolved neighbour entry with the right MAC after `wait`.
fn sweep(lab: &Lab, hosts: &[(Ipv4Addr, String)], wait: Duration) -> usize {
    let mut script = String::new();
    for (ip, _) in hosts {
        script.push_str(&format!("echo > /dev/udp/{ip}/9;"));
    }
    let out = lab.exec(&["bash", "-c", &script]).output().unwrap();
    assert!(out.status.success(), "sweep: {out:?}");
    std::thread::sleep(wait);
    let out = lab.exec(&["ip", "-j", "neigh", "show"]).output().unwrap();
    assert!(out.status.success(), "ip neigh: {out:?}");
    let entries: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let resolved: std::collections::HashMap<String, String> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            Some((
                e["dst"].as_str()?.to_string(),
                e["lladdr"].as_str()?.to_string(),
            ))
        })
        .collect();
    hosts
        .iter()
        .filter(|(ip, mac)| resolved.get(&ip.to_string()) == Some(mac))
        .count()
}

#[test]
fn two_segments_answer_arp_and_a_host_that_leaves_does_not() {
    let spec = LabSpec::new()
        .segment(
            SegmentSpec::new("lan0", "192.168.10.0/24")
                .vlan(10)
                .hosts_sequential(Ipv4Addr::new(192, 168, 10, 10), 18)
                .host_with_mac(Ipv4Addr::new(192, 168, 10, 200), "00:1A:11:00:00:01")
                .host_with_mac(Ipv4Addr::new(192, 168, 10, 201), "3c:5a:b4:12:34:56"),
        )
        .segment(
            SegmentSpec::new("lan1", "10.20.0.0/16")
                .vlan(20)
                .hosts_list((0..20).map(|i| Ipv4Addr::new(10, 20, i * 7, 3 + i))),
        );
    let started = Instant::now();
    let mut lab = Lab::build(spec).expect("building the lab (needs root and network namespaces)");
    println!("2 x 20 hosts built in {:?}", started.elapsed());
    let prefix = lab.prefix().to_string();
    assert_eq!(namespaces_with(&prefix).len(), 1 + 2 + 40);

    let segs = lab.segments().to_vec();
    assert_eq!(segs.len(), 2);
    assert_eq!(
        (segs[0].iface.as_str(), segs[0].vlan, segs[0].agent_ip),
        ("lan0", Some(10), Ipv4Addr::new(192, 168, 10, 1))
    );
    assert_eq!(
        (segs[1].iface.as_str(), segs[1].vlan, segs[1].agent_ip),
        ("lan1", Some(20), Ipv4Addr::new(10, 20, 0, 1))
    );
    assert_eq!(segs[0].hosts[18].mac, "00:1a:11:00:00:01");
    assert!(segs.iter().all(|s| s.hosts.len() == 20));

    // Two hosts per segment answer, with the right MACs (ping is not installed here: a UDP datagram makes
    // the agent's kernel resolve the address, and `ip -j neigh` shows the answer).
    for seg in &segs {
        for host in [&seg.hosts[0], &seg.hosts[19]] {
            let mac = lab.probe(host.ip, Duration::from_secs(6)).unwrap();
            assert_eq!(mac.as_deref(), Some(host.mac.as_str()), "{host:?}");
        }
    }
    let all: Vec<_> = lab.hosts().map(|h| (h.ip, h.mac.clone())).collect();
    assert_eq!(sweep(&lab, &all, Duration::from_secs(1)), 40);

    // The host really runs in its namespace with its address.
    let host = segs[0].hosts[1].clone();
    let out = lab
        .host_exec(&host.ns, &["ip", "-j", "addr", "show", "eth0"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&host.ip.to_string()));

    // A host that leaves stops answering, and answers again when it is back.
    lab.set_host_link(&host.ns, false).unwrap();
    assert_eq!(
        lab.probe(host.ip, Duration::from_millis(1500)).unwrap(),
        None
    );
    lab.set_host_link(&host.ns, true).unwrap();
    assert_eq!(
        lab.probe(host.ip, Duration::from_secs(6))
            .unwrap()
            .as_deref(),
        Some(host.mac.as_str())
    );

    // A host that changes its address answers on the new one only.
    let new_ip = Ipv4Addr::new(192, 168, 10, 250);
    lab.change_host_ip(&host.ns, new_ip).unwrap();
    assert_eq!(lab.segments()[0].hosts[1].ip, new_ip);
    assert_eq!(
        lab.probe(new_ip, Duration::from_secs(6))
            .unwrap()
            .as_deref(),
        Some(host.mac.as_str())
    );
    assert_eq!(
        lab.probe(host.ip, Duration::from_millis(1500)).unwrap(),
        None
    );

    drop(lab);
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new());
}

fn big_lab(hosts: usize, segment: SegmentSpec, steer: bool, budget: Duration) {
    let started = Instant::now();
    let lab =
        Lab::build(LabSpec::new().steer_arp(steer).segment(segment)).expect("building the lab");
    let built = started.elapsed();
    println!("{hosts} hosts built in {built:?}");
    assert!(built < budget, "{hosts} hosts took {built:?}");
    let prefix = lab.prefix().to_string();
    assert_eq!(namespaces_with(&prefix).len(), hosts + 2);

    // A fast sweep of every host: each must answer (the lab must not drop requests).
    let all: Vec<_> = lab.hosts().map(|h| (h.ip, h.mac.clone())).collect();
    let started = Instant::now();
    let answered = sweep(&lab, &all, Duration::from_secs(2));
    println!(
        "{hosts} hosts: {answered} answered a sweep in {:?}",
        started.elapsed()
    );
    assert_eq!(answered, hosts);

    // ARP requests are steered to their owner: a host received about one frame per request for itself, not
    // one per host swept.
    let last = lab.hosts().last().unwrap().ns.clone();
    let out = lab
        .host_exec(&last, &["cat", "/sys/class/net/eth0/statistics/rx_packets"])
        .output()
        .unwrap();
    let rx: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    if steer {
        assert!(
            rx < 10,
            "{last} received {rx} frames during a sweep of {hosts} hosts"
        );
    } else {
        assert!(
            rx >= hosts as u64 - 1,
            "{last} received only {rx} frames: not flooded?"
        );
    }

    let started = Instant::now();
    drop(lab);
    println!("{hosts} hosts torn down in {:?}", started.elapsed());
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new());
}

#[test]
fn a_250_host_lab_builds_quickly() {
    big_lab(
        250,
        SegmentSpec::new("lan0", "10.99.0.0/24").hosts_sequential(Ipv4Addr::new(10, 99, 0, 2), 250),
        true,
        Duration::from_secs(30),
    );
}

#[test]
fn without_steering_every_host_sees_every_request() {
    big_lab(
        100,
        SegmentSpec::new("lan0", "10.98.0.0/24").hosts_sequential(Ipv4Addr::new(10, 98, 0, 2), 100),
        false,
        Duration::from_secs(30),
    );
}

#[test]
fn a_1000_host_scattered_slash16_lab() {
    // 1,000 hosts scattered over a /16.
    let ips =
        (0..1000u32).map(|i| Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 0)) + 10 + i * 61));
    big_lab(
        1000,
        SegmentSpec::new("lan0", "172.16.0.0/16").hosts_list(ips),
        true,
        Duration::from_secs(90),
    );
}

#[test]
fn a_panic_with_a_live_lab_still_tears_it_down() {
    let mut prefix = String::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = Lab::build(
            LabSpec::new().segment(
                SegmentSpec::new("lan0", "10.77.0.0/24")
                    .hosts_sequential(Ipv4Addr::new(10, 77, 0, 10), 5),
            ),
        )
        .expect("building the lab");
        prefix = lab.prefix().to_string();
        assert_eq!(namespaces_with(&prefix).len(), 7);
        panic!("a test fails with a live lab");
    }));
    assert!(result.is_err());
    assert!(!prefix.is_empty());
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new());
}

#[test]
fn bad_specs_are_refused() {
    let err = Lab::build(LabSpec::new().segment(
        SegmentSpec::new("lan0", "10.78.0.0/24").hosts_list([Ipv4Addr::new(10, 79, 0, 1)]),
    ))
    .unwrap_err();
    assert!(format!("{err:#}").contains("not usable"), "{err:#}");
    let err = Lab::build(
        LabSpec::new().segment(SegmentSpec::new("a-much-too-long-name", "10.78.0.0/24")),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("bad interface name"), "{err:#}");
}

#[test]
fn namespaces_of_a_dead_lab_process_are_removed() {
    // A pid no process has: its "lab" is a leftover of a crashed run.
    let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let dead = (2..pid_max)
        .rev()
        .find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        .unwrap();
    let stale = format!("olab{dead}-0-a");
    let out = Command::new("ip")
        .args(["netns", "add", &stale])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let lab = Lab::build(LabSpec::new().segment(
        SegmentSpec::new("lan0", "10.76.0.0/24").hosts_sequential(Ipv4Addr::new(10, 76, 0, 10), 2),
    ))
    .expect("building the lab");
    assert_eq!(
        namespaces_with(&format!("olab{dead}-")),
        Vec::<String>::new()
    );
    drop(lab);
}
