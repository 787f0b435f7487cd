//! Blocking for real, on the project's namespace lab with a gateway and an "internet" (`outpost_tests::lab`):
//! LAN hosts route through a gateway namespace that forwards to an internet namespace answering TCP (a small
//! greeting server) and ICMP echo.
//!
//! - box: the [`Blocker`] runs in the agent's namespace on the same LAN and pauses a host by ARP; the host
//!   loses TCP and ICMP to the internet within 3 s and stays cut across several repeats, another host does
//!   not notice, the host's ARP cache shows the dead MAC for its gateway; an unblock, and a `stop`, give the
//!   internet back within 3 s; a block survives a restart on the same store; the refusals are real.
//! - router: the [`Blocker`] runs in the gateway's namespace and drops the host in its `inet outpost` table,
//!   leaving another table (`inet other`) byte-identical.
//!
//! Needs root, iproute2, nftables, iputils ping and python3: the tests fail, not skip, when the lab cannot be
//! built. Traffic stays inside the namespaces they create; every lab is deleted when its test ends (also on
//! failure), and the tests run in parallel with others (each lab has its own namespace names).

use std::collections::HashMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outpost_agent::blocking::arp_pause::DEAD_MAC;
use outpost_agent::blocking::{Blocker, Located, Lookup};
use outpost_agent::config::{BlockingConfig, InterfaceConfig};
use outpost_agent::store::Store;
use outpost_cloud_link::control::{codes, BlockMethod, DeviceRef};
use outpost_cloud_link::protocol::Platform;
use outpost_tests::lab::{HostInfo, Lab, LabSpec, SegmentSpec, HOST_IFACE};
use outpost_tests::netns::in_netns;

const IFACE: &str = "lan0";
/// What a block and an unblock must achieve within.
const WITHIN: Duration = Duration::from_secs(3);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 83, 0, last)
}

fn gateway_ip() -> Ipv4Addr {
    ip(1)
}
fn agent_ip() -> Ipv4Addr {
    ip(2)
}
fn target_ip() -> Ipv4Addr {
    ip(20)
}
fn other_ip() -> Ipv4Addr {
    ip(21)
}

/// The agent at .2 on `lan0`, the gateway .1 to the lab's internet, the target .20 and another host .21.
fn build_lab(with_gateway: bool) -> Lab {
    build_lab_steered(with_gateway, true)
}

/// [`build_lab`]; `steer: false` floods the agent's ARP requests to every host (as a real switch does),
/// so a host may change its address behind the lab's back.
fn build_lab_steered(with_gateway: bool, steer: bool) -> Lab {
    let mut segment = SegmentSpec::new(IFACE, "10.83.0.0/24")
        .agent_ip(agent_ip())
        .host_with_mac(target_ip(), "00:1a:11:83:00:20")
        .host_with_mac(other_ip(), "00:1a:11:83:00:21");
    if with_gateway {
        segment = segment.gateway(gateway_ip());
    }
    Lab::build(LabSpec::new().steer_arp(steer).segment(segment)).unwrap_or_else(|e| {
        panic!("cannot build the namespace lab (this test needs root, iproute2 and python3): {e:#}")
    })
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "outpost_agent=debug".into()),
        )
        .with_test_writer()
        .with_ansi(false)
        .try_init();
}

fn host(lab: &Lab, ip: Ipv4Addr) -> HostInfo {
    lab.hosts()
        .find(|h| h.ip == ip)
        .cloned()
        .unwrap_or_else(|| panic!("{ip} is not a lab host"))
}

fn device(h: &HostInfo) -> DeviceRef {
    DeviceRef::new(&h.mac, None).expect("a lab MAC")
}

/// The inventory: the lab's hosts on `iface`.
fn lookup(lab: &Lab, iface: &str) -> Lookup {
    let hosts: Vec<HostInfo> = lab.hosts().cloned().collect();
    let iface = iface.to_owned();
    Arc::new(move |d: &DeviceRef| {
        hosts
            .iter()
            .find(|h| h.mac == d.mac && d.vlan.is_none())
            .map(|h| Located {
                interface: iface.clone(),
                ipv4: Some(h.ip),
                ipv6: Vec::new(),
            })
    })
}

/// Runs `fut` on a multi-threaded tokio runtime whose threads live in namespace `ns` (the blocker's repeat
/// keeps running while the test body waits on blocking checks).
fn run_in<T: Send>(ns: &str, fut: impl Future<Output = T> + Send) -> T {
    in_netns(ns, || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(fut)
    })
    .unwrap_or_else(|e| panic!("running in {ns}: {e:#}"))
}

fn internet(lab: &Lab) -> SocketAddr {
    let i = lab.internet().expect("the lab has an internet");
    SocketAddr::from((i.server, i.port))
}

/// TCP (a greeting read back) and ICMP echo from `h` to the internet host, each given half a second.
fn reaches(lab: &Lab, h: &HostInfo) -> (bool, bool) {
    let tcp = lab
        .tcp_reaches(&h.ns, internet(lab), Duration::from_millis(500))
        .unwrap_or_else(|e| panic!("TCP check from {}: {e:#}", h.ns));
    let server = lab.internet().expect("the lab has an internet").server;
    let icmp = lab
        .pings(&h.ns, server, Duration::from_millis(500))
        .unwrap_or_else(|e| panic!("ping from {}: {e:#}", h.ns));
    (tcp, icmp)
}

/// Polls `check` until it holds or `limit` has passed since `from`; the time it took, or `None`.
fn within(from: Instant, limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    loop {
        if check() {
            return Some(from.elapsed());
        }
        if from.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (up to 10 s: the first packets wait for ARP) until `h` reaches the internet both ways.
fn assert_online_at_first(lab: &Lab, h: &HostInfo) {
    let took = within(Instant::now(), Duration::from_secs(10), || {
        reaches(lab, h) == (true, true)
    });
    assert!(
        took.is_some(),
        "{} cannot reach the internet host before any block",
        h.ip
    );
}

fn assert_cut_within(lab: &Lab, h: &HostInfo, from: Instant, what: &str) -> Duration {
    let took = within(from, WITHIN, || reaches(lab, h) == (false, false));
    let took = took.unwrap_or_else(|| {
        panic!(
            "{what}: {} still reaches the internet {WITHIN:?} later: {:?}",
            h.ip,
            reaches(lab, h)
        )
    });
    eprintln!("{what}: {} lost TCP and ICMP after {took:?}", h.ip);
    took
}

fn assert_back_within(lab: &Lab, h: &HostInfo, from: Instant, what: &str) -> Duration {
    let took = within(from, WITHIN, || reaches(lab, h) == (true, true));
    let took = took.unwrap_or_else(|| {
        panic!(
            "{what}: {} does not reach the internet {WITHIN:?} later: {:?}",
            h.ip,
            reaches(lab, h)
        )
    });
    eprintln!("{what}: {} reached TCP and ICMP again after {took:?}", h.ip);
    took
}

/// Samples `h` for `span` (several repeats): it must never get through.
fn assert_stays_cut(lab: &Lab, h: &HostInfo, span: Duration) {
    let start = Instant::now();
    let mut samples = 0;
    while start.elapsed() < span {
        let r = reaches(lab, h);
        assert_eq!(
            r,
            (false, false),
            "{} got through {:?} into the block",
            h.ip,
            start.elapsed()
        );
        samples += 1;
    }
    eprintln!(
        "{} stayed cut for {span:?} ({samples} samples of TCP + ICMP)",
        h.ip
    );
}

/// The MAC `ns`'s neighbour table holds for `ip`, if any.
fn neigh_mac(lab: &Lab, ns: &str, ip: Ipv4Addr) -> Option<String> {
    let out = lab
        .host_exec(ns, &["ip", "-j", "neigh", "show", "to", &ip.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("ip neigh in {ns}: {e}"));
    let entries: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    entries
        .as_array()?
        .iter()
        .find_map(|e| e["lladdr"].as_str().map(str::to_lowercase))
}

fn open_store(dir: &Path) -> Store {
    Store::open(dir).unwrap_or_else(|e| panic!("opening the store: {e}"))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn start(
    platform: Platform,
    interfaces: Vec<InterfaceConfig>,
    store: &Store,
    lookup: Lookup,
) -> Arc<Blocker> {
    Blocker::start(
        platform,
        BlockingConfig::default(),
        interfaces,
        store.clone(),
        lookup,
    )
    .await
    .unwrap_or_else(|e| panic!("starting the blocker: {e}"))
}

#[test]
fn a_box_pauses_only_the_target_within_3s_and_gives_it_back_within_3s() {
    init_logs();
    let lab = build_lab(true);
    let (target, other, gateway) = (
        host(&lab, target_ip()),
        host(&lab, other_ip()),
        host(&lab, gateway_ip()),
    );
    assert_online_at_first(&lab, &target);
    assert_online_at_first(&lab, &other);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(dir.path());
    let lookup = lookup(&lab, IFACE);

    run_in(lab.agent_ns(), async {
        // The gateway comes from the agent namespace's default route (no `gateway` configured).
        let blocker = start(
            Platform::Box,
            vec![InterfaceConfig::named(IFACE)],
            &store,
            lookup,
        )
        .await;
        let t0 = Instant::now();
        let record = blocker
            .block(&device(&target), None, now_ms())
            .await
            .unwrap_or_else(|e| panic!("block: {e} ({})", e.code()));
        eprintln!("block returned after {:?}: {record:?}", t0.elapsed());
        assert_eq!(record.method, BlockMethod::ArpPause);
        assert_eq!(record.ipv4, Some(target_ip()));
        assert_eq!(record.interface, IFACE);
        assert_eq!(
            store.blocks().expect("stored blocks"),
            std::slice::from_ref(&record)
        );

        assert_cut_within(&lab, &target, t0, "block");
        // The target's kernel holds the dead MAC for its gateway, the gateway's for the target.
        assert_eq!(
            neigh_mac(&lab, &target.ns, gateway_ip()),
            Some(DEAD_MAC.to_string())
        );
        assert_eq!(
            neigh_mac(&lab, &gateway.ns, target_ip()),
            Some(DEAD_MAC.to_string())
        );
        // Another host is untouched, and the block holds over several repeats.
        assert_eq!(
            reaches(&lab, &other),
            (true, true),
            "another host lost the internet"
        );
        assert_stays_cut(&lab, &target, Duration::from_secs(7));
        assert_eq!(
            reaches(&lab, &other),
            (true, true),
            "another host lost the internet"
        );
        assert_eq!(
            neigh_mac(&lab, &other.ns, gateway_ip()),
            Some(gateway.mac.clone())
        );

        let t1 = Instant::now();
        assert!(blocker.unblock(&device(&target)).await.expect("unblock"));
        eprintln!("unblock returned after {:?}", t1.elapsed());
        assert_back_within(&lab, &target, t1, "unblock");
        assert_eq!(
            neigh_mac(&lab, &target.ns, gateway_ip()),
            Some(gateway.mac.clone())
        );
        assert!(blocker.blocks().is_empty());
        assert!(store.blocks().expect("stored blocks").is_empty());
        // It stays back: nothing pauses it any more.
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(reaches(&lab, &target), (true, true));
        blocker.stop().await;
    });
}

#[test]
fn a_box_block_survives_a_restart_and_stop_gives_the_caches_back_but_keeps_it() {
    init_logs();
    let lab = build_lab(true);
    let target = host(&lab, target_ip());
    assert_online_at_first(&lab, &target);
    let dir = tempfile::tempdir().expect("temp dir");
    // The gateway configured this time.
    let interfaces = vec![InterfaceConfig {
        gateway: Some(gateway_ip()),
        ..InterfaceConfig::named(IFACE)
    }];

    let record = run_in(lab.agent_ns(), async {
        let store = open_store(dir.path());
        let blocker = start(
            Platform::Box,
            interfaces.clone(),
            &store,
            lookup(&lab, IFACE),
        )
        .await;
        let t0 = Instant::now();
        let record = blocker
            .block(&device(&target), None, now_ms())
            .await
            .expect("block");
        assert_cut_within(&lab, &target, t0, "block");

        // SIGTERM: the caches come back, the record stays.
        let t1 = Instant::now();
        blocker.stop().await;
        eprintln!("stop returned after {:?}", t1.elapsed());
        assert_back_within(&lab, &target, t1, "stop");
        assert_eq!(blocker.blocks(), std::slice::from_ref(&record));
        assert_eq!(
            store.blocks().expect("stored blocks"),
            std::slice::from_ref(&record)
        );
        // Stopped means stopped: two repeats later it still reaches the internet.
        std::thread::sleep(Duration::from_secs(4));
        assert_eq!(
            reaches(&lab, &target),
            (true, true),
            "a stopped blocker paused again"
        );
        record
    });

    // A new process: the store reopened, a new blocker; the block is applied again at start.
    run_in(lab.agent_ns(), async {
        let store = open_store(dir.path());
        let t0 = Instant::now();
        let blocker = start(
            Platform::Box,
            interfaces.clone(),
            &store,
            lookup(&lab, IFACE),
        )
        .await;
        eprintln!("restart returned after {:?}", t0.elapsed());
        assert_eq!(blocker.blocks(), std::slice::from_ref(&record));
        assert_cut_within(&lab, &target, t0, "restart");
        assert_stays_cut(&lab, &target, Duration::from_secs(3));
        let t1 = Instant::now();
        assert!(blocker.unblock(&device(&target)).await.expect("unblock"));
        assert_back_within(&lab, &target, t1, "unblock after restart");
        assert!(store.blocks().expect("stored blocks").is_empty());
    });
}

#[test]
fn a_box_refuses_tagged_vlans_the_linux_platform_the_gateway_and_an_unknown_gateway() {
    init_logs();
    let lab = build_lab(true);
    let (target, gateway) = (host(&lab, target_ip()), host(&lab, gateway_ip()));
    assert_online_at_first(&lab, &target);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(dir.path());

    run_in(lab.agent_ns(), async {
        let expect_refusal =
            |result: Result<_, outpost_agent::blocking::BlockError>, code: &str, says: &str| {
                let err = result.expect_err("a refusal");
                eprintln!("{code}: {err}");
                assert_eq!(err.code(), code, "{err}");
                assert!(err.to_string().contains(says), "{err}");
            };

        // A tagged VLAN interface: the box is not in that broadcast domain.
        let tagged = vec![InterfaceConfig {
            vlan: Some(83),
            tagged: true,
            ..InterfaceConfig::named(IFACE)
        }];
        let blocker = start(Platform::Box, tagged, &store, lookup(&lab, IFACE)).await;
        expect_refusal(
            blocker.block(&device(&target), None, now_ms()).await,
            codes::VLAN_TAGGED_UNBLOCKABLE,
            "tagged",
        );
        blocker.stop().await;

        // A generic Linux host.
        let blocker = start(
            Platform::Linux,
            vec![InterfaceConfig::named(IFACE)],
            &store,
            lookup(&lab, IFACE),
        )
        .await;
        expect_refusal(
            blocker.block(&device(&target), None, now_ms()).await,
            codes::BLOCKING_UNSUPPORTED_PLATFORM,
            "platform = \"box\"",
        );

        let blocker = start(
            Platform::Box,
            vec![InterfaceConfig::named(IFACE)],
            &store,
            lookup(&lab, IFACE),
        )
        .await;
        // The gateway itself.
        expect_refusal(
            blocker.block(&device(&gateway), None, now_ms()).await,
            codes::DEVICE_IS_GATEWAY,
            "gateway",
        );
        // A configured gateway nobody answers for.
        let silent = vec![InterfaceConfig {
            gateway: Some(ip(99)),
            ..InterfaceConfig::named(IFACE)
        }];
        let with_silent = start(Platform::Box, silent, &store, lookup(&lab, IFACE)).await;
        expect_refusal(
            with_silent.block(&device(&target), None, now_ms()).await,
            codes::GATEWAY_UNKNOWN,
            "does not answer ARP",
        );
        // No gateway configured and no default route through the interface.
        let out = Command::new("ip")
            .args(["-n", lab.agent_ns(), "route", "del", "default"])
            .output()
            .expect("ip route del");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        expect_refusal(
            blocker.block(&device(&target), None, now_ms()).await,
            codes::GATEWAY_UNKNOWN,
            "set gateway = \"A.B.C.D\" for the interface lan0",
        );
        assert!(blocker.blocks().is_empty());
        assert!(store.blocks().expect("stored blocks").is_empty());
    });
    // Nothing was paused.
    assert_eq!(reaches(&lab, &target), (true, true));
}

fn nft(lab: &Lab, ns: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut argv = vec!["nft"];
    argv.extend_from_slice(args);
    let mut cmd = lab.host_exec(ns, &argv);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("nft {args:?} in {ns}: {e}"));
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write as _;
        pipe.write_all(text.as_bytes()).expect("writing to nft");
    }
    let out = child.wait_with_output().expect("waiting for nft");
    assert!(
        out.status.success(),
        "nft {args:?} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The MACs in the router's `blocked_macs` set.
fn blocked_macs(lab: &Lab, ns: &str) -> Vec<String> {
    let json = nft(
        lab,
        ns,
        &["-j", "list", "set", "inet", "outpost", "blocked_macs"],
        None,
    );
    let v: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("nft -j: {e}: {json}"));
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["set"]["elem"].as_array())
        .flatten()
        .filter_map(|e| e.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_router_drops_the_target_in_its_own_table_and_leaves_other_tables_alone() {
    init_logs();
    let lab = build_lab(true);
    let (target, other, gateway) = (
        host(&lab, target_ip()),
        host(&lab, other_ip()),
        host(&lab, gateway_ip()),
    );
    assert_online_at_first(&lab, &target);
    assert_online_at_first(&lab, &other);
    // Somebody else's table, with a chain on the same hook and rules that touch nothing of the test.
    nft(
        &lab,
        &gateway.ns,
        &["-f", "-"],
        Some(
            "table inet other {\n\
               set friends { type ipv4_addr; elements = { 192.0.2.1, 192.0.2.2 } }\n\
               chain forward {\n\
                 type filter hook forward priority 10; policy accept;\n\
                 ip saddr @friends accept\n\
               }\n\
               chain input {\n\
                 type filter hook input priority 0; policy accept;\n\
                 tcp dport 2222 drop\n\
               }\n\
             }\n",
        ),
    );
    let other_table = || nft(&lab, &gateway.ns, &["list", "table", "inet", "other"], None);
    let before = other_table();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(dir.path());

    run_in(&gateway.ns, async {
        let blocker = start(
            Platform::Router,
            vec![InterfaceConfig::named(HOST_IFACE)],
            &store,
            lookup(&lab, HOST_IFACE),
        )
        .await;
        assert!(
            blocked_macs(&lab, &gateway.ns).is_empty(),
            "start creates the empty table"
        );
        assert_eq!(other_table(), before);

        let t0 = Instant::now();
        let record = blocker
            .block(&device(&target), None, now_ms())
            .await
            .unwrap_or_else(|e| panic!("block: {e} ({})", e.code()));
        eprintln!("block returned after {:?}: {record:?}", t0.elapsed());
        assert_eq!(record.method, BlockMethod::Nftables);
        assert_eq!(
            blocked_macs(&lab, &gateway.ns),
            std::slice::from_ref(&target.mac)
        );
        assert_cut_within(&lab, &target, t0, "router block");
        assert_eq!(
            reaches(&lab, &other),
            (true, true),
            "another host lost the internet"
        );
        assert_eq!(
            other_table(),
            before,
            "the other table changed with the block"
        );

        let t1 = Instant::now();
        assert!(blocker.unblock(&device(&target)).await.expect("unblock"));
        eprintln!("unblock returned after {:?}", t1.elapsed());
        assert!(blocked_macs(&lab, &gateway.ns).is_empty());
        assert_back_within(&lab, &target, t1, "router unblock");
        assert_eq!(
            other_table(),
            before,
            "the other table changed with the unblock"
        );

        // Blocked again, then SIGTERM: the table stays and the kernel keeps enforcing it.
        let t2 = Instant::now();
        blocker
            .block(&device(&target), None, now_ms())
            .await
            .expect("block again");
        assert_cut_within(&lab, &target, t2, "router block again");
        blocker.stop().await;
        assert_eq!(
            blocked_macs(&lab, &gateway.ns),
            std::slice::from_ref(&target.mac)
        );
        assert_stays_cut(&lab, &target, Duration::from_secs(2));
        assert_eq!(
            other_table(),
            before,
            "the other table changed with the stop"
        );
        assert_eq!(store.blocks().expect("stored blocks").len(), 1);

        // Cleanup: the table goes, the other stays.
        let restarted = start(
            Platform::Router,
            vec![InterfaceConfig::named(HOST_IFACE)],
            &store,
            lookup(&lab, HOST_IFACE),
        )
        .await;
        assert_eq!(
            blocked_macs(&lab, &gateway.ns),
            std::slice::from_ref(&target.mac)
        );
        let t3 = Instant::now();
        restarted.unblock_all().await.expect("unblock all");
        assert_back_within(&lab, &target, t3, "router cleanup");
        let tables = nft(&lab, &gateway.ns, &["list", "tables"], None);
        assert!(!tables.contains("outpost"), "{tables}");
        assert_eq!(
            other_table(),
            before,
            "the other table changed with the cleanup"
        );
    });
}

#[test]
fn a_box_pause_follows_the_device_to_a_new_address() {
    init_logs();
    let lab = build_lab_steered(true, false);
    let (target, gateway) = (host(&lab, target_ip()), host(&lab, gateway_ip()));
    assert_online_at_first(&lab, &target);
    // The inventory, as discovery would update it.
    let addresses: Arc<Mutex<HashMap<String, Ipv4Addr>>> = Arc::new(Mutex::new(
        lab.hosts().map(|h| (h.mac.clone(), h.ip)).collect(),
    ));
    let known = Arc::clone(&addresses);
    let lookup: Lookup = Arc::new(move |d: &DeviceRef| {
        let ip = *known.lock().ok()?.get(&d.mac)?;
        Some(Located {
            interface: IFACE.to_owned(),
            ipv4: Some(ip),
            ipv6: Vec::new(),
        })
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(dir.path());
    let new_ip = ip(30);
    run_in(lab.agent_ns(), async {
        let blocker = start(
            Platform::Box,
            vec![InterfaceConfig::named(IFACE)],
            &store,
            lookup,
        )
        .await;
        let t0 = Instant::now();
        blocker
            .block(&device(&target), None, now_ms())
            .await
            .expect("block");
        assert_cut_within(&lab, &target, t0, "block");
        let mut changes = blocker.changes();
        changes.borrow_and_update();

        // The device takes another address; discovery hears it.
        let out = lab
            .host_exec(
                &target.ns,
                &[
                    "sh",
                    "-c",
                    &format!(
                        "ip addr del {}/24 dev {HOST_IFACE} && ip addr add {new_ip}/24 dev {HOST_IFACE} && \
                         ip route replace default via {} dev {HOST_IFACE}",
                        target_ip(),
                        gateway_ip()
                    ),
                ],
            )
            .output()
            .expect("changing the target's address");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        addresses
            .lock()
            .expect("inventory lock")
            .insert(target.mac.clone(), new_ip);
        let t1 = Instant::now();
        // Within two repeats the record and the gateway's cache follow.
        let followed = within(t1, Duration::from_millis(4500), || {
            blocker.blocks().first().and_then(|r| r.ipv4) == Some(new_ip)
                && neigh_mac(&lab, &gateway.ns, new_ip) == Some(DEAD_MAC.to_string())
        });
        let followed =
            followed.expect("the pause did not follow the new address within two repeats");
        eprintln!("the pause followed {new_ip} after {followed:?}");
        assert!(
            changes.has_changed().expect("blocker alive"),
            "no change reported"
        );
        assert_eq!(store.blocks().expect("stored blocks")[0].ipv4, Some(new_ip));
        // The address change flushed the device's ARP cache, so it could reach its gateway until the pause
        // was sent again; from the follow on it is cut within 3 s and stays cut.
        assert_cut_within(&lab, &target, t1 + followed, "after the address change");
        assert_stays_cut(&lab, &target, Duration::from_secs(5));

        let t2 = Instant::now();
        assert!(blocker.unblock(&device(&target)).await.expect("unblock"));
        assert_back_within(&lab, &target, t2, "unblock at the new address");
    });
}
