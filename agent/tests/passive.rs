//! Passive discovery for real: a [`PassiveListener`] on the agent's `lan0` in the project's namespace lab
//! hears DHCP clients (busybox `udhcpc`, with and without a `udhcpd` answering), gratuitous ARP (busybox
//! `arping -U` / `-A`), a host answering the agent's ARP, and the IPv6 addresses of a host that uses IPv6
//! (kernel duplicate address detection, neighbour solicitations, a ping to all nodes), all the way into the
//! inventory. Needs root (CAP_SYS_ADMIN, CAP_NET_RAW): it fails, not skips, when it cannot build the lab.
//! Traffic stays inside the namespaces it creates.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use outpost_agent::discovery::engine::{apply_heard, default_route_interface};
use outpost_agent::discovery::inventory::{Inventory, Segment};
use outpost_agent::discovery::passive::{DhcpClient, Heard, ListenerStats, PassiveListener};
use outpost_tests::lab::{HostInfo, Lab, LabSpec, SegmentSpec};
use outpost_tests::netns::in_netns;
use pnet_datalink::MacAddr;
use tokio::sync::mpsc;

const IFACE: &str = "lan0";
const AGENT_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);

/// An agent on 10.78.0.0/24 (`lan0`) and one host per MAC at 10.78.0.11, .12, ...
fn build_lab(macs: &[&str]) -> Lab {
    let mut segment = SegmentSpec::new(IFACE, "10.78.0.0/24").agent_ip(AGENT_IP);
    for (i, mac) in macs.iter().enumerate() {
        segment = segment.host_with_mac(Ipv4Addr::new(10, 78, 0, 11 + i as u8), mac);
    }
    Lab::build(LabSpec::new().segment(segment)).unwrap_or_else(|e| {
        panic!("cannot build the namespace lab (this test needs root and iproute2): {e:#}")
    })
}

fn host(lab: &Lab, i: usize) -> HostInfo {
    lab.hosts().nth(i).cloned().expect("the lab has this host")
}

fn mac(text: &str) -> MacAddr {
    text.parse().expect("a MAC address")
}

/// Runs a busybox applet in a host's namespace; kills it (by its PID) if it is still running after
/// `limit`. Its status does not matter: a DHCP client without a server fails, and that is the point.
fn busybox(lab: &Lab, host: &HostInfo, args: &[&str], limit: Duration) -> Result<()> {
    let mut argv = vec!["busybox"];
    argv.extend_from_slice(args);
    let child = lab
        .host_exec(&host.ns, &argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("start busybox {args:?} in {}", host.ns))?;
    wait_or_kill(child, limit);
    Ok(())
}

/// Waits for `child` up to `limit`, then kills it; never leaves it running or unreaped.
fn wait_or_kill(mut child: Child, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    eprintln!("killing pid {} after {limit:?}", child.id());
    drop(child.kill());
    drop(child.wait());
}

/// Inside the agent's namespace: starts a listener on `lan0` (channel of `capacity`), runs `act`, then
/// collects what was heard until `done` says so or `patience` runs out, and stops the listener.
fn listen<A, D>(
    lab: &Lab,
    capacity: usize,
    act: A,
    mut done: D,
    patience: Duration,
) -> (Instant, Vec<(Instant, Heard)>, ListenerStats)
where
    A: FnOnce() -> Result<()> + Send,
    D: FnMut(&[(Instant, Heard)]) -> bool + Send,
{
    let run = || -> Result<_> {
        let (tx, mut rx) = mpsc::channel(capacity);
        let listener = PassiveListener::start(IFACE, tx).context("start the listener on lan0")?;
        assert_eq!(listener.interface(), IFACE);
        assert_eq!(listener.local().ip, AGENT_IP);
        let started = Instant::now();
        act()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let heard = rt.block_on(async {
            let deadline = tokio::time::Instant::now() + patience;
            let mut heard = Vec::new();
            while !done(&heard) {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(item)) => heard.push(item),
                    Ok(None) | Err(_) => break,
                }
            }
            heard
        });
        assert!(listener.is_running());
        let stats = listener.stop().context("stop the listener")?;
        Ok((started, heard, stats))
    };
    in_netns(lab.agent_ns(), run)
        .and_then(|r| r)
        .unwrap_or_else(|e| panic!("listening in the agent namespace: {e:#}"))
}

fn dhcp_from(heard: &[(Instant, Heard)], mac: MacAddr, message_type: &str) -> Vec<DhcpClient> {
    heard
        .iter()
        .filter_map(|(_, h)| match h {
            Heard::Dhcp(c) if c.mac == mac && c.message_type == message_type => Some(c.clone()),
            _ => None,
        })
        .collect()
}

fn arp_from(heard: &[(Instant, Heard)], from: MacAddr) -> Vec<Heard> {
    heard
        .iter()
        .filter(|(_, h)| matches!(h, Heard::Arp { mac, .. } if *mac == from))
        .map(|(_, h)| h.clone())
        .collect()
}

#[test]
fn dhcp_discovers_tell_the_clients_name_vendor_and_wanted_address() {
    let lab = build_lab(&["00:1a:11:00:00:11"]);
    let tv = host(&lab, 0);
    let tv_mac = mac(&tv.mac);
    let (started, heard, stats) = listen(
        &lab,
        64,
        || {
            // No DHCP server on this LAN: two DISCOVERs a second apart, then udhcpc gives up (-n).
            busybox(
                &lab,
                &tv,
                &[
                    "udhcpc",
                    "-i",
                    "eth0",
                    "-f",
                    "-n",
                    "-t",
                    "2",
                    "-T",
                    "1",
                    "-s",
                    "/bin/true",
                    "-x",
                    "hostname:kitchen-tv",
                    "-V",
                    "android-dhcp-13",
                    "-r",
                    "10.78.0.77",
                ],
                Duration::from_secs(15),
            )
        },
        |h| dhcp_from(h, tv_mac, "discover").len() >= 2,
        Duration::from_secs(5),
    );
    let discovers = dhcp_from(&heard, tv_mac, "discover");
    assert_eq!(discovers.len(), 2, "{heard:#?}");
    for d in discovers {
        assert_eq!(
            d,
            DhcpClient {
                mac: tv_mac,
                hostname: Some("kitchen-tv".into()),
                vendor_class: Some("android-dhcp-13".into()),
                requested_ip: Some(Ipv4Addr::new(10, 78, 0, 77)),
                client_ip: None,
                message_type: "discover".into(),
            }
        );
    }
    assert!(heard.iter().all(|(at, _)| *at >= started));
    assert_eq!(stats.dropped, 0);
    assert!(stats.heard >= 2 && stats.frames >= stats.heard, "{stats:?}");
}

#[test]
fn a_dhcp_request_is_heard_when_a_server_answers() {
    let lab = build_lab(&["00:1a:11:00:00:11", "02:00:00:00:00:12"]);
    let (phone, server) = (host(&lab, 0), host(&lab, 1));
    let phone_mac = mac(&phone.mac);
    let dir = tempfile::tempdir().expect("temporary directory");
    let conf = dir.path().join("udhcpd.conf");
    // One address to give, so the REQUEST asks for exactly it.
    std::fs::write(
        &conf,
        format!(
            "start 10.78.0.100\nend 10.78.0.100\ninterface eth0\nmax_leases 1\n\
             lease_file {}\npidfile {}\noption subnet 255.255.255.0\noption lease 600\n",
            dir.path().join("leases").display(),
            dir.path().join("udhcpd.pid").display(),
        ),
    )
    .expect("write udhcpd.conf");
    let conf = conf.to_string_lossy().into_owned();
    let server_proc = lab
        .host_exec(&server.ns, &["busybox", "udhcpd", "-f", "-a", "100", &conf])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start udhcpd in the server's namespace");
    // Kill the server however this test ends.
    struct Reaper(Option<Child>);
    impl Drop for Reaper {
        fn drop(&mut self) {
            if let Some(mut child) = self.0.take() {
                drop(child.kill());
                drop(child.wait());
            }
        }
    }
    let server_proc = Reaper(Some(server_proc));
    std::thread::sleep(Duration::from_millis(300));

    let (_, heard, stats) = listen(
        &lab,
        64,
        || {
            // -q: quit once leased; the script does nothing, so the host keeps its address.
            busybox(
                &lab,
                &phone,
                &[
                    "udhcpc",
                    "-i",
                    "eth0",
                    "-f",
                    "-q",
                    "-n",
                    "-t",
                    "5",
                    "-T",
                    "1",
                    "-s",
                    "/bin/true",
                    "-x",
                    "hostname:pixel-7",
                    "-V",
                    "android-dhcp-14",
                ],
                Duration::from_secs(20),
            )
        },
        |h| !dhcp_from(h, phone_mac, "request").is_empty(),
        Duration::from_secs(5),
    );
    drop(server_proc);
    let requests = dhcp_from(&heard, phone_mac, "request");
    assert!(!requests.is_empty(), "no REQUEST heard: {heard:#?}");
    assert_eq!(
        requests[0],
        DhcpClient {
            mac: phone_mac,
            hostname: Some("pixel-7".into()),
            vendor_class: Some("android-dhcp-14".into()),
            requested_ip: Some(Ipv4Addr::new(10, 78, 0, 100)),
            client_ip: None,
            message_type: "request".into(),
        }
    );
    // Its DISCOVER came first, without an address to ask for.
    let discovers = dhcp_from(&heard, phone_mac, "discover");
    assert!(!discovers.is_empty(), "{heard:#?}");
    assert_eq!(discovers[0].requested_ip, None);
    assert_eq!(discovers[0].hostname.as_deref(), Some("pixel-7"));
    // The server's answers go to port 68 and are not client messages.
    let server_mac = mac(&server.mac);
    assert!(heard
        .iter()
        .all(|(_, h)| !matches!(h, Heard::Dhcp(c) if c.mac == server_mac)));
    assert_eq!(stats.dropped, 0);
}

#[test]
fn gratuitous_arp_is_heard_and_flagged() {
    let lab = build_lab(&["00:50:c2:7d:51:11", "0a:11:22:33:44:12"]);
    let (announcer, replier) = (host(&lab, 0), host(&lab, 1));
    let (announcer_mac, replier_mac) = (mac(&announcer.mac), mac(&replier.mac));
    let (announcer_ip, replier_ip) = (announcer.ip.to_string(), replier.ip.to_string());
    let (_, heard, stats) = listen(
        &lab,
        64,
        || {
            // -U: requests for its own address; -A: replies for its own address.
            busybox(
                &lab,
                &announcer,
                &["arping", "-U", "-c", "2", "-I", "eth0", &announcer_ip],
                Duration::from_secs(10),
            )?;
            busybox(
                &lab,
                &replier,
                &["arping", "-A", "-c", "2", "-I", "eth0", &replier_ip],
                Duration::from_secs(10),
            )
        },
        |h| arp_from(h, announcer_mac).len() >= 2 && arp_from(h, replier_mac).len() >= 2,
        Duration::from_secs(5),
    );
    let expect = |mac, ip| Heard::Arp {
        mac,
        ip,
        gratuitous: true,
    };
    assert_eq!(
        arp_from(&heard, announcer_mac),
        vec![expect(announcer_mac, announcer.ip); 2],
        "{heard:#?}"
    );
    assert_eq!(
        arp_from(&heard, replier_mac),
        vec![expect(replier_mac, replier.ip); 2],
        "{heard:#?}"
    );
    assert_eq!(stats.dropped, 0);
}

#[test]
fn a_host_answering_the_agents_arp_is_heard() {
    let lab = build_lab(&["00:1a:11:00:00:11", "02:00:00:00:00:12"]);
    let (printer, quiet) = (host(&lab, 0), host(&lab, 1));
    let printer_mac = mac(&printer.mac);
    let (_, heard, _) = listen(
        &lab,
        64,
        || {
            // The agent namespace's kernel asks who has the printer's address; the printer answers.
            match lab.probe(printer.ip, Duration::from_secs(5))? {
                Some(found) if found == printer.mac => Ok(()),
                other => bail!("probe of {} found {other:?}", printer.ip),
            }
        },
        |h| !arp_from(h, printer_mac).is_empty(),
        Duration::from_secs(5),
    );
    assert_eq!(
        arp_from(&heard, printer_mac)[0],
        Heard::Arp {
            mac: printer_mac,
            ip: printer.ip,
            gratuitous: false,
        },
        "{heard:#?}"
    );
    // Our own request is not heard, and the host that was not asked said nothing.
    let agent_mac = lab_agent_mac(&lab);
    assert!(
        heard.iter().all(|(_, h)| h.mac() != agent_mac),
        "{heard:#?}"
    );
    assert!(arp_from(&heard, mac(&quiet.mac)).is_empty(), "{heard:#?}");
}

/// `lan0`'s MAC, read in the agent namespace.
fn lab_agent_mac(lab: &Lab) -> MacAddr {
    let out = lab
        .exec(&["cat", "/sys/class/net/lan0/address"])
        .output()
        .expect("read lan0's MAC");
    mac(String::from_utf8_lossy(&out.stdout).trim())
}

#[test]
fn a_full_channel_drops_instead_of_blocking_and_a_closed_one_ends_the_thread() {
    let lab = build_lab(&["00:1a:11:00:00:11"]);
    let announcer = host(&lab, 0);
    let announcer_ip = announcer.ip.to_string();
    let gratuitous = |count: &str| {
        busybox(
            &lab,
            &announcer,
            &["arping", "-U", "-c", count, "-I", "eth0", &announcer_ip],
            Duration::from_secs(10),
        )
    };
    let run = || -> Result<()> {
        // Room for one; nobody reads while three announcements arrive.
        let (tx, mut rx) = mpsc::channel(1);
        let listener = PassiveListener::start(IFACE, tx)?;
        gratuitous("3")?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while listener.stats().heard < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let stats = listener.stats();
        assert!(stats.heard >= 3, "{stats:?}");
        assert_eq!(stats.dropped, stats.heard - 1, "{stats:?}");
        assert!(listener.is_running());
        let (_, first) = rx.try_recv().context("the one item that fitted")?;
        assert_eq!(
            first,
            Heard::Arp {
                mac: mac(&announcer.mac),
                ip: announcer.ip,
                gratuitous: true,
            }
        );
        // Nobody listens any more: the next frame heard ends the thread.
        drop(rx);
        gratuitous("1")?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while listener.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!listener.is_running(), "the thread should end");
        let started = Instant::now();
        listener.stop()?;
        assert!(started.elapsed() < Duration::from_secs(1));
        Ok(())
    };
    in_netns(lab.agent_ns(), run)
        .and_then(|r| r)
        .unwrap_or_else(|e| panic!("{e:#}"));
}

#[test]
fn opening_names_what_is_wrong_with_the_interface() {
    use outpost_agent::discovery::datalink::LinkError;
    let lab = build_lab(&[]);
    let run = || {
        let (tx, _rx) = mpsc::channel(1);
        let missing = PassiveListener::start("nope0", tx.clone()).map(|_| ());
        let status = Command::new("ip")
            .args(["link", "set", IFACE, "down"])
            .status();
        let down = PassiveListener::start(IFACE, tx.clone()).map(|_| ());
        let up = Command::new("ip")
            .args(["link", "set", IFACE, "up"])
            .status();
        let flushed = Command::new("ip")
            .args(["addr", "flush", "dev", IFACE])
            .status();
        let no_ipv4 = PassiveListener::start(IFACE, tx).map(|_| ());
        (missing, status, down, up, flushed, no_ipv4)
    };
    let (missing, status, down, up, flushed, no_ipv4) =
        in_netns(lab.agent_ns(), run).expect("run in the agent namespace");
    assert!(
        matches!(missing, Err(LinkError::NoSuchInterface(ref n)) if n == "nope0"),
        "{missing:?}"
    );
    assert!(status.is_ok_and(|s| s.success()) && up.is_ok_and(|s| s.success()));
    assert!(
        matches!(down, Err(LinkError::Down(ref n)) if n == IFACE),
        "{down:?}"
    );
    assert!(flushed.is_ok_and(|s| s.success()));
    assert!(
        matches!(no_ipv4, Err(LinkError::NoIpv4(ref n)) if n == IFACE),
        "{no_ipv4:?}"
    );
}

/// Every IPv6 address heard for `from`.
fn ipv6_of(heard: &[(Instant, Heard)], from: MacAddr) -> BTreeSet<Ipv6Addr> {
    heard
        .iter()
        .filter_map(|(_, h)| match h {
            Heard::Ipv6 {
                mac,
                source,
                target,
            } if *mac == from => Some(source.iter().chain(target).copied()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// Runs `ip ARGS` in a host's namespace; an error when it fails.
fn ip_in(lab: &Lab, host: &HostInfo, args: &[&str]) -> Result<()> {
    let mut argv = vec!["ip"];
    argv.extend_from_slice(args);
    let out = lab
        .host_exec(&host.ns, &argv)
        .output()
        .with_context(|| format!("run ip {args:?} in {}", host.ns))?;
    if !out.status.success() {
        bail!(
            "ip {args:?} in {}: {}",
            host.ns,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[test]
fn an_ipv6_host_is_heard_with_its_global_addresses_and_an_ipv4_only_host_with_none() {
    // The lab's interfaces have no IPv6 addresses (`addrgenmode none`): only what this test adds.
    let lab = build_lab(&["00:1a:11:00:00:11", "02:00:00:00:00:12"]);
    let (dual, v4_only) = (host(&lab, 0), host(&lab, 1));
    let (dual_mac, v4_mac) = (mac(&dual.mac), mac(&v4_only.mac));
    let stable: Ipv6Addr = "2001:db8:50::10".parse().expect("an IPv6 address");
    let probed: Ipv6Addr = "2001:db8:50::11".parse().expect("an IPv6 address");
    let v4_only_ip = v4_only.ip.to_string();
    let (_, heard, stats) = listen(
        &lab,
        256,
        || {
            // One address taken without duplicate address detection, one with it (its probe, a
            // solicitation from `::` to the address's solicited-node group, names it).
            ip_in(
                &lab,
                &dual,
                &[
                    "-6",
                    "addr",
                    "add",
                    "2001:db8:50::10/64",
                    "dev",
                    "eth0",
                    "nodad",
                ],
            )?;
            ip_in(
                &lab,
                &dual,
                &["-6", "addr", "add", "2001:db8:50::11/64", "dev", "eth0"],
            )?;
            // What a host using IPv6 sends: a ping to all nodes, and neighbour solicitations (to a
            // solicited-node group) for a neighbour that does not answer, from its first address.
            busybox(
                &lab,
                &dual,
                &["ping6", "-c", "2", "-i", "0.2", "-I", "eth0", "ff02::1"],
                Duration::from_secs(10),
            )?;
            busybox(
                &lab,
                &dual,
                &[
                    "ping6",
                    "-c",
                    "1",
                    "-w",
                    "4",
                    "-I",
                    "2001:db8:50::10",
                    "2001:db8:50::99",
                ],
                Duration::from_secs(10),
            )?;
            // The other host is busy too, over IPv4 only; the agent's ARP brings the first one's device.
            busybox(
                &lab,
                &v4_only,
                &["arping", "-U", "-c", "2", "-I", "eth0", &v4_only_ip],
                Duration::from_secs(10),
            )?;
            match lab.probe(dual.ip, Duration::from_secs(5))? {
                Some(found) if found == dual.mac => Ok(()),
                other => bail!("probe of {} found {other:?}", dual.ip),
            }
        },
        |h| {
            ipv6_of(h, dual_mac).is_superset(&BTreeSet::from([stable, probed]))
                && arp_from(h, v4_mac).len() >= 2
                && !arp_from(h, dual_mac).is_empty()
        },
        Duration::from_secs(5),
    );
    // Both global addresses, and nothing else (it has no link-local address here).
    assert_eq!(
        ipv6_of(&heard, dual_mac),
        BTreeSet::from([stable, probed]),
        "{heard:#?}"
    );
    assert!(
        heard.iter().any(|(_, h)| matches!(h,
            Heard::Ipv6 { mac, source: Some(ip), .. } if *mac == dual_mac && *ip == stable)),
        "the address should be heard as a source: {heard:#?}"
    );
    assert!(ipv6_of(&heard, v4_mac).is_empty(), "{heard:#?}");
    let agent_mac = lab_agent_mac(&lab);
    assert!(
        heard.iter().all(|(_, h)| h.mac() != agent_mac),
        "{heard:#?}"
    );
    assert_eq!(stats.dropped, 0);

    // Into the inventory as the engine does it: the addresses join the device ARP found, even when they
    // were heard first.
    let seg = Segment {
        interface: IFACE.into(),
        vlan: None,
    };
    let mut inv = Inventory::new();
    for (_, h) in heard {
        apply_heard(&mut inv, &seg, h, 1);
    }
    let devices = inv.devices();
    let device = |m: MacAddr| {
        devices
            .iter()
            .find(|d| d.mac == m.to_string())
            .unwrap_or_else(|| panic!("no device for {m}: {devices:#?}"))
    };
    let mut ipv6 = device(dual_mac).ipv6.clone();
    ipv6.sort();
    assert_eq!(ipv6, [stable, probed]);
    assert_eq!(device(dual_mac).ipv4, Some(dual.ip));
    assert!(device(v4_mac).ipv6.is_empty());
}

#[test]
fn the_default_route_interface_is_the_calling_threads_namespaces() {
    // Regression: it read /proc/net/route, the main thread's namespace, whatever thread asked.
    let lab = build_lab(&[]);
    let out = lab
        .exec(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            "10.78.0.254",
            "dev",
            IFACE,
        ])
        .output()
        .expect("run ip route in the agent namespace");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inside =
        in_netns(lab.agent_ns(), default_route_interface).expect("enter the agent namespace");
    assert_eq!(inside.as_deref(), Some(IFACE));
    // The test process's own namespace has no `lan0`.
    assert_ne!(default_route_interface().as_deref(), Some(IFACE));
}

#[test]
fn the_listener_takes_all_multicast_while_it_runs() {
    let lab = build_lab(&[]);
    let flags = || -> Result<u32> {
        // `ip netns exec` mounts the namespace's own /sys.
        let out = lab.exec(&["cat", "/sys/class/net/lan0/flags"]).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(u32::from_str_radix(
            text.trim().trim_start_matches("0x"),
            16,
        )?)
    };
    const IFF_ALLMULTI: u32 = 0x200;
    let run = || -> Result<(u32, u32, u32)> {
        let before = flags()?;
        let (tx, _rx) = mpsc::channel(1);
        let listener = PassiveListener::start(IFACE, tx)?;
        let during = flags()?;
        listener.stop()?;
        Ok((before, during, flags()?))
    };
    let (before, during, after) = in_netns(lab.agent_ns(), run)
        .and_then(|r| r)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(before & IFF_ALLMULTI, 0);
    assert_ne!(during & IFF_ALLMULTI, 0);
    assert_eq!(after & IFF_ALLMULTI, 0);
}
