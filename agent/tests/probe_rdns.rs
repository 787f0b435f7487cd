//! Liveness probing (ARP + ICMP) and reverse DNS for real, on the project's namespace lab
//! (`outpost_tests::lab`): the probe and the resolver run in the lab's agent namespace
//! (`outpost_tests::netns::in_netns`), the hosts are namespaces with their own kernels, and a real DNS
//! server (dnsmasq) runs in one of them. Needs root, iproute2 and dnsmasq: the tests fail, not skip, when
//! the lab cannot be built. Traffic stays inside the namespaces they create.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use outpost_agent::discovery::probe::{probe, ProbeConfig, ProbeResult, ProbeTarget};
use outpost_agent::discovery::rdns::ReverseDns;
use outpost_tests::lab::{Lab, LabSpec, SegmentSpec};
use outpost_tests::netns::in_netns;
use pnet_datalink::MacAddr;

fn build_lab(cidr: &str, agent_ip: Ipv4Addr, hosts: &[Ipv4Addr]) -> Lab {
    let segment = SegmentSpec::new("lan0", cidr)
        .agent_ip(agent_ip)
        .hosts_list(hosts.iter().copied());
    Lab::build(LabSpec::new().segment(segment)).unwrap_or_else(|e| {
        panic!("cannot build the namespace lab (this test needs root and iproute2): {e:#}")
    })
}

/// Runs `fut` on a fresh tokio runtime on a thread inside the lab's agent namespace.
fn in_agent_ns<T: Send>(lab: &Lab, fut: impl std::future::Future<Output = T> + Send) -> T {
    in_netns(lab.agent_ns(), || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(fut)
    })
    .unwrap_or_else(|e| panic!("running in the agent namespace: {e:#}"))
}

fn host_ns(lab: &Lab, ip: Ipv4Addr) -> String {
    lab.hosts()
        .find(|h| h.ip == ip)
        .map(|h| h.ns.clone())
        .unwrap_or_else(|| panic!("{ip} is not a lab host"))
}

fn lab_mac(lab: &Lab, ip: Ipv4Addr) -> MacAddr {
    let mac = lab
        .hosts()
        .find(|h| h.ip == ip)
        .map(|h| h.mac.clone())
        .unwrap_or_else(|| panic!("{ip} is not a lab host"));
    MacAddr::from_str(&mac).unwrap_or_else(|e| panic!("lab MAC {mac}: {e}"))
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn result_for(results: &[ProbeResult], ip: Ipv4Addr) -> ProbeResult {
    *results
        .iter()
        .find(|r| r.ip == ip)
        .unwrap_or_else(|| panic!("no result for {ip}"))
}

#[test]
fn probe_sees_arp_and_icmp_and_arp_catches_a_host_that_ignores_pings() {
    let net = |last| Ipv4Addr::new(10, 78, 0, last);
    let (up, no_ping, down, moved, nobody) = (net(11), net(12), net(13), net(14), net(50));
    let lab = build_lab("10.78.0.0/24", net(1), &[up, no_ping, down, moved]);

    // .12 drops every echo request (a host firewall), .13 leaves the network.
    run_ok(&mut lab.host_exec(
        &host_ns(&lab, no_ping),
        &["sysctl", "-q", "-w", "net.ipv4.icmp_echo_ignore_all=1"],
    ));
    lab.set_host_link(&host_ns(&lab, down), false)
        .expect("set .13's link down");

    let stale_mac = MacAddr(0x02, 0xde, 0xad, 0, 0, 14);
    let targets = [
        ProbeTarget {
            ip: up,
            mac: lab_mac(&lab, up),
        },
        ProbeTarget {
            ip: no_ping,
            mac: lab_mac(&lab, no_ping),
        },
        ProbeTarget {
            ip: down,
            mac: lab_mac(&lab, down),
        },
        // The inventory remembers another device at .14: whoever answers now is not it.
        ProbeTarget {
            ip: moved,
            mac: stale_mac,
        },
        ProbeTarget {
            ip: nobody,
            mac: MacAddr(0x02, 0, 0, 0, 0, 50),
        },
    ];
    let cfg = ProbeConfig::default();
    let started = Instant::now();
    let report = in_agent_ns(&lab, probe("lan0", &targets, &cfg))
        .unwrap_or_else(|e| panic!("probe failed: {e}"));
    let took = started.elapsed();
    eprintln!("probe of {} targets took {took:?}", targets.len());
    for r in &report.results {
        eprintln!("{r:?}");
    }
    assert!(
        report.icmp_unavailable.is_none(),
        "{:?}",
        report.icmp_unavailable
    );
    assert_eq!(
        report.results.iter().map(|r| r.ip).collect::<Vec<_>>(),
        targets.iter().map(|t| t.ip).collect::<Vec<_>>(),
        "one result per target, in order"
    );
    let plausible = |rtt: Option<Duration>| rtt.is_some_and(|d| d < Duration::from_millis(200));

    let r = result_for(&report.results, up);
    assert!(plausible(r.arp_rtt) && plausible(r.icmp_rtt), "{r:?}");
    assert_eq!(r.arp_other_mac, None);
    assert!(r.alive());

    let r = result_for(&report.results, no_ping);
    assert!(
        plausible(r.arp_rtt),
        "ARP sees a host that ignores pings: {r:?}"
    );
    assert_eq!(r.icmp_rtt, None, "{r:?}");
    assert!(r.alive());

    let r = result_for(&report.results, down);
    assert_eq!((r.arp_rtt, r.arp_other_mac, r.icmp_rtt), (None, None, None));
    assert!(!r.alive());

    let r = result_for(&report.results, moved);
    assert_eq!(r.arp_rtt, None, "{r:?}");
    assert_eq!(r.arp_other_mac, Some(lab_mac(&lab, moved)));
    assert!(plausible(r.icmp_rtt), "the address answers pings: {r:?}");
    assert!(
        !r.alive(),
        "another device at the address is not the target"
    );

    let r = result_for(&report.results, nobody);
    assert_eq!((r.arp_rtt, r.arp_other_mac, r.icmp_rtt), (None, None, None));

    // Silent targets cost two ARP rounds (200 ms waits) and two echo timeouts (500 ms): about 1.4 s.
    assert!(took < Duration::from_secs(4), "the probe took {took:?}");

    // .13 comes back: the next probe sees it on both.
    lab.set_host_link(&host_ns(&lab, down), true)
        .expect("set .13's link up");
    let again = [targets[2]];
    let deadline = Instant::now() + Duration::from_secs(5);
    let r = loop {
        let report = in_agent_ns(&lab, probe("lan0", &again, &cfg))
            .unwrap_or_else(|e| panic!("probe failed: {e}"));
        let r = report.results[0];
        if (r.arp_rtt.is_some() && r.icmp_rtt.is_some()) || Instant::now() > deadline {
            break r;
        }
    };
    assert!(plausible(r.arp_rtt) && plausible(r.icmp_rtt), "{r:?}");
}

#[test]
fn probe_names_a_missing_interface() {
    let lab = build_lab("10.78.3.0/24", Ipv4Addr::new(10, 78, 3, 1), &[]);
    let targets = [ProbeTarget {
        ip: Ipv4Addr::new(10, 78, 3, 9),
        mac: MacAddr(0x02, 0, 0, 0, 0, 9),
    }];
    let err = in_agent_ns(&lab, probe("nope0", &targets, &ProbeConfig::default()))
        .expect_err("no such interface");
    assert!(
        err.to_string().contains("interface nope0 does not exist"),
        "{err}"
    );
}

/// A dnsmasq serving PTR names from a hosts file, in one lab host's namespace; killed (by its pid) when
/// dropped, also when the test fails.
struct Dnsmasq {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq on `ip`:53 inside `ns`, answering for `names` (address, name), and waits until it
    /// listens.
    fn start(lab: &Lab, ns: &str, ip: Ipv4Addr, names: &[(Ipv4Addr, &str)]) -> Dnsmasq {
        let dir = tempfile::tempdir().expect("temp dir");
        let hosts = dir.path().join("hosts");
        let text: String = names.iter().map(|(ip, n)| format!("{ip} {n}\n")).collect();
        fs::write(&hosts, text).expect("write the hosts file");
        let log = dir.path().join("dnsmasq.log");
        let log_file = fs::File::create(&log).expect("create the dnsmasq log");
        let argv = [
            "/usr/sbin/dnsmasq".to_owned(),
            "--no-daemon".to_owned(),
            "--conf-file=/dev/null".to_owned(),
            "--no-resolv".to_owned(),
            "--no-hosts".to_owned(),
            format!("--addn-hosts={}", hosts.display()),
            format!("--listen-address={ip}"),
            "--bind-interfaces".to_owned(),
            "--port=53".to_owned(),
            // Private-range PTR queries nobody knows get NXDOMAIN, not a forward to nowhere.
            "--bogus-priv".to_owned(),
            "--user=root".to_owned(),
            format!("--pid-file={}", dir.path().join("dnsmasq.pid").display()),
            "--log-queries".to_owned(),
            "--log-facility=-".to_owned(),
        ];
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let child = lab
            .host_exec(ns, &argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start dnsmasq (package dnsmasq-base)");
        let mut server = Dnsmasq {
            child,
            log,
            _dir: dir,
        };
        server.wait_listening(ip);
        server
    }

    /// `ip netns exec` execs dnsmasq, so the child's pid is dnsmasq's and `/proc/<pid>/net/udp` lists the
    /// sockets of its namespace.
    fn wait_listening(&mut self, ip: Ipv4Addr) {
        let want = format!("{:08X}:0035", u32::from_le_bytes(ip.octets()));
        let table = format!("/proc/{}/net/udp", self.child.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("dnsmasq exited ({status}): {}", self.log_text());
            }
            let listening = fs::read_to_string(&table)
                .map(|t| {
                    t.lines()
                        .any(|l| l.split_whitespace().nth(1) == Some(&want))
                })
                .unwrap_or(false);
            if listening {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dnsmasq does not listen on {ip}:53 after 10 s: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        drop(self.child.kill());
        drop(self.child.wait());
    }
}

/// A lab whose first host runs dnsmasq knowing the names of the first three hosts (one in mixed case);
/// the fourth host has no name.
fn named_lab(third: u8) -> (Lab, Dnsmasq, [Ipv4Addr; 4]) {
    let net = |last| Ipv4Addr::new(10, 78, third, last);
    let ips = [net(11), net(12), net(13), net(14)];
    let lab = build_lab(&format!("10.78.{third}.0/24"), net(1), &ips);
    let dns = Dnsmasq::start(
        &lab,
        &host_ns(&lab, ips[0]),
        ips[0],
        &[
            (ips[0], "dns.lab"),
            (ips[1], "Printer-Lobby.Office.LAN"),
            (ips[2], "nas"),
        ],
    );
    (lab, dns, ips)
}

#[test]
fn rdns_names_lab_hosts_through_a_dnsmasq_in_the_lab() {
    let (lab, dns, ips) = named_lab(1);
    let server = SocketAddr::from((ips[0], 53));
    // Unknown: a lab host without a name, and an address nobody has.
    let unknown = Ipv4Addr::new(10, 78, 1, 200);
    let mut asked = ips.to_vec();
    asked.push(unknown);
    asked.push(ips[1]); // asked twice, named once
    let started = Instant::now();
    let names = in_agent_ns(&lab, async {
        ReverseDns::with_server(server).lookup_many(&asked).await
    });
    let took = started.elapsed();
    eprintln!("{names:?} in {took:?}\n{}", dns.log_text());
    assert_eq!(
        names,
        vec![
            (ips[0], "dns.lab".to_owned()),
            (ips[1], "printer-lobby.office.lan".to_owned()),
            (ips[2], "nas".to_owned()),
        ]
    );
    // NXDOMAIN is an answer, not a timeout.
    assert!(took < Duration::from_secs(2), "{took:?}");
}

/// Files this test put under /etc, removed when dropped (also when the test fails).
struct EtcNetns {
    file: PathBuf,
    created_dirs: Vec<PathBuf>,
}

impl EtcNetns {
    /// Writes `/etc/netns/<ns>/resolv.conf`, which `ip netns exec <ns>` bind-mounts over /etc/resolv.conf.
    fn resolv_conf(ns: &str, text: &str) -> EtcNetns {
        let base = Path::new("/etc/netns");
        let dir = base.join(ns);
        let created_dirs = [base.to_path_buf(), dir.clone()]
            .into_iter()
            .filter(|d| !d.exists())
            .collect();
        let guard = EtcNetns {
            file: dir.join("resolv.conf"),
            created_dirs,
        };
        fs::create_dir_all(&dir).expect("create /etc/netns/<ns>");
        fs::write(&guard.file, text).expect("write /etc/netns/<ns>/resolv.conf");
        guard
    }
}

impl Drop for EtcNetns {
    fn drop(&mut self) {
        drop(fs::remove_file(&self.file));
        for dir in self.created_dirs.iter().rev() {
            // Only if empty: another process may have put its own namespace's files there meanwhile.
            drop(fs::remove_dir(dir));
        }
    }
}

/// The environment variable that makes `system_resolver_inner` run (a comma-separated address list).
const INNER_IPS: &str = "OUTPOST_TEST_RDNS_SYSTEM_IPS";

#[test]
fn rdns_system_reads_the_namespace_resolv_conf() {
    let (lab, dns, ips) = named_lab(2);
    let etc = EtcNetns::resolv_conf(
        lab.agent_ns(),
        &format!("# outpost test\nnameserver {}\noptions timeout:1\n", ips[0]),
    );
    // setns() does not give a thread the namespace's /etc/netns files: only `ip netns exec` bind-mounts
    // them over /etc. So the lookup runs in this test binary again, started with `ip netns exec`, where
    // ReverseDns::system() reads /etc/resolv.conf exactly as the agent would.
    let exe = std::env::current_exe().expect("test binary path");
    let list: Vec<String> = ips.iter().map(ToString::to_string).collect();
    let out = lab
        .exec(&[
            &exe.to_string_lossy(),
            "system_resolver_inner",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INNER_IPS, list.join(","))
        .output()
        .expect("run the test binary in the agent namespace");
    drop(etc);
    assert!(!Path::new(&format!("/etc/netns/{}", lab.agent_ns())).exists());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{stdout}\n{stderr}\n{}",
        dns.log_text()
    );
    let names: Vec<&str> = stdout
        .lines()
        // libtest prints "test system_resolver_inner ... " without a line break before the first line.
        .filter_map(|l| l.split_once("RDNS ").map(|(_, rest)| rest))
        .collect();
    assert_eq!(
        names,
        [
            format!("{} dns.lab", ips[0]),
            format!("{} printer-lobby.office.lan", ips[1]),
            format!("{} nas", ips[2]),
        ],
        "{stdout}\n{stderr}"
    );
}

/// The half of `rdns_system_reads_the_namespace_resolv_conf` that runs under `ip netns exec`; does nothing
/// when started otherwise.
#[test]
#[ignore = "run inside a lab namespace by rdns_system_reads_the_namespace_resolv_conf"]
fn system_resolver_inner() {
    let Ok(list) = std::env::var(INNER_IPS) else {
        return;
    };
    let ips: Vec<Ipv4Addr> = list
        .split(',')
        .map(|s| s.parse().expect("an IPv4 address"))
        .collect();
    let rdns = ReverseDns::system().unwrap_or_else(|e| panic!("{e}"));
    let names = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(rdns.lookup_many(&ips));
    for (ip, name) in names {
        println!("RDNS {ip} {name}");
    }
}
