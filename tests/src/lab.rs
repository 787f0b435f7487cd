//! A LAN lab built from network namespaces, for tests and benchmarks of the agent's device discovery.
//!
//! A [`Lab`] is one "agent" namespace (where the agent or a scanner runs) and one or more segments. Each
//! segment is a Linux bridge in its own "switch" namespace; the agent namespace is attached to it by a veth
//! (named by the spec, e.g. `lan0`), and every host is its own namespace attached to the bridge by a veth
//! whose host end is `eth0`, with its own MAC and IPv4 address. The hosts' kernels answer ARP normally.
//!
//! Everything is created with batched `ip` commands, so hundreds of hosts build in seconds. All namespaces
//! are named `olab<pid>-<n>-...`; dropping the [`Lab`] deletes them (also when a test panics), and building a
//! lab first deletes the namespaces left by earlier test processes that are no longer alive.
//!
//! By default ARP requests from the agent are steered to the host that owns the target address (a `tc` u32
//! hash filter on the bridge's uplink port that redirects the request to that host's port, and drops requests
//! for addresses nobody owns), so a fast sweep of a segment with ~1,000 hosts is not cloned to every host and
//! the lab itself does not drop requests. VLANs are simulated as separate segments; the `vlan` label is only
//! metadata.
//!
//! A segment may have a gateway ([`SegmentSpec::gateway`]): one of its hosts forwards IPv4 between the
//! segment and the lab's "internet", a namespace of its own (`<prefix>i`) reached from each gateway over a
//! veth pair on a /30 of 100.64.0.0/16 (the gateway's end is `wan0`), holding [`INTERNET_SERVER`] on its
//! loopback: its kernel answers ICMP echo, and a small TCP server (`fixtures/internet_server.py`, started by
//! the lab and killed by PID when it is dropped) greets every connection on [`INTERNET_PORT`]. The segment's
//! other hosts and the agent namespace route by default through the gateway (the agent through the first
//! segment that has one). No address translation: the internet namespace routes back to each segment.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// Where `ip netns` keeps its namespaces.
const NETNS_DIR: &str = "/var/run/netns";
/// Every lab namespace starts with this, followed by the pid of the process that built it.
const NS_PREFIX: &str = "olab";
/// The name of a host's interface inside its namespace.
pub const HOST_IFACE: &str = "eth0";
/// How many `ip` processes configure hosts at the same time.
const PARALLEL: usize = 8;
/// Labs with fewer hosts than this leave the host-global sysctls alone.
const TUNE_FROM_HOSTS: usize = 200;
/// The address of the lab's internet host (TEST-NET-2, on the internet namespace's loopback).
pub const INTERNET_SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 80);
/// The TCP port the internet host greets connections on.
pub const INTERNET_PORT: u16 = 80;
/// A gateway's interface towards the lab's internet.
pub const GATEWAY_WAN_IFACE: &str = "wan0";
/// How long the internet host's server may take to listen.
const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(20);

/// What to build.
#[derive(Debug, Clone)]
pub struct LabSpec {
    pub segments: Vec<SegmentSpec>,
    /// Steer each ARP request from the agent to the host that owns its target address, and drop requests
    /// for addresses no host owns (default true). Without it, every request is flooded to every host.
    pub steer_arp: bool,
    /// Raise the host-global `net.core.netdev_max_backlog` and `net.ipv4.neigh.default.gc_thresh1/2/3` when
    /// the lab is big enough to need it (they are not per namespace); restored when the last lab of this
    /// process is dropped (default true).
    pub tune_sysctls: bool,
    /// See [`LabSpec::uplink`].
    pub uplink: bool,
}

impl Default for LabSpec {
    fn default() -> Self {
        LabSpec {
            segments: Vec::new(),
            steer_arp: true,
            tune_sysctls: true,
            uplink: false,
        }
    }
}

impl LabSpec {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a segment.
    pub fn segment(mut self, segment: SegmentSpec) -> Self {
        self.segments.push(segment);
        self
    }

    pub fn steer_arp(mut self, on: bool) -> Self {
        self.steer_arp = on;
        self
    }

    /// Links the agent's namespace to the test machine's own namespace by a veth pair on a private /30
    /// (`wan0` in the agent namespace): a portal listening on [`Uplink::outside`] is reachable from an agent
    /// running in the lab. Nothing is routed beyond the pair.
    pub fn uplink(mut self, on: bool) -> Self {
        self.uplink = on;
        self
    }
}

/// The veth pair between the test machine's namespace and the lab's agent namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uplink {
    /// The interface in the test machine's namespace.
    pub outside_iface: String,
    /// Its address: what a portal for the lab's agent listens on.
    pub outside: Ipv4Addr,
    /// The agent namespace's address (on `wan0`).
    pub inside: Ipv4Addr,
}

/// The agent-side name of the uplink.
pub const UPLINK_IFACE: &str = "wan0";

/// One segment: a bridge, the agent's interface on it and its hosts.
#[derive(Debug, Clone)]
pub struct SegmentSpec {
    /// The interface name in the agent namespace (at most 15 bytes), e.g. `lan0`.
    pub iface: String,
    /// The segment's network, e.g. `192.168.1.0/24`.
    pub cidr: String,
    /// The agent's address; the first usable address of `cidr` when `None`.
    pub agent_ip: Option<Ipv4Addr>,
    /// A VLAN label (metadata only).
    pub vlan: Option<u16>,
    pub hosts: Vec<HostSpec>,
    /// See [`SegmentSpec::gateway`].
    pub gateway: Option<Ipv4Addr>,
}

/// One host: its address and optionally its MAC (e.g. with a real vendor OUI); without one it gets a
/// deterministic locally administered MAC `02:<segment>:<the four bytes of its address>`.
#[derive(Debug, Clone)]
pub struct HostSpec {
    pub ip: Ipv4Addr,
    pub mac: Option<String>,
}

impl SegmentSpec {
    pub fn new(iface: &str, cidr: &str) -> Self {
        SegmentSpec {
            iface: iface.to_string(),
            cidr: cidr.to_string(),
            agent_ip: None,
            vlan: None,
            hosts: Vec::new(),
            gateway: None,
        }
    }

    /// Makes the host at `ip` (added as a host when not listed) the segment's gateway to the lab's internet
    /// (see the module docs): it forwards, and the other hosts route by default through it.
    pub fn gateway(mut self, ip: Ipv4Addr) -> Self {
        self.gateway = Some(ip);
        self
    }

    pub fn vlan(mut self, vlan: u16) -> Self {
        self.vlan = Some(vlan);
        self
    }

    pub fn agent_ip(mut self, ip: Ipv4Addr) -> Self {
        self.agent_ip = Some(ip);
        self
    }

    /// Adds `count` hosts with sequential addresses from `start`.
    pub fn hosts_sequential(mut self, start: Ipv4Addr, count: usize) -> Self {
        let start = u32::from(start);
        self.hosts.extend((0..count).map(|i| HostSpec {
            ip: Ipv4Addr::from(start.wrapping_add(i as u32)),
            mac: None,
        }));
        self
    }

    /// Adds hosts with these addresses.
    pub fn hosts_list(mut self, ips: impl IntoIterator<Item = Ipv4Addr>) -> Self {
        self.hosts
            .extend(ips.into_iter().map(|ip| HostSpec { ip, mac: None }));
        self
    }

    /// Adds one host with this MAC (`aa:bb:cc:dd:ee:ff`).
    pub fn host_with_mac(mut self, ip: Ipv4Addr, mac: &str) -> Self {
        self.hosts.push(HostSpec {
            ip,
            mac: Some(mac.to_string()),
        });
        self
    }
}

/// A built segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The interface name in the agent namespace.
    pub iface: String,
    pub cidr: String,
    pub agent_ip: Ipv4Addr,
    pub vlan: Option<u16>,
    pub hosts: Vec<HostInfo>,
    /// The address of the segment's gateway host, when it has one.
    pub gateway: Option<Ipv4Addr>,
}

/// The lab's internet namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Internet {
    pub ns: String,
    /// [`INTERNET_SERVER`].
    pub server: Ipv4Addr,
    /// [`INTERNET_PORT`].
    pub port: u16,
}

/// A built host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// The host's namespace.
    pub ns: String,
    pub ip: Ipv4Addr,
    /// Lower case, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
}

/// Internal per-segment state.
#[derive(Debug)]
struct Segment {
    switch_ns: String,
    prefix_len: u8,
    /// Host namespace -> (index in the segment, steering filter handle).
    hosts: HashMap<String, (usize, Option<String>)>,
    /// Next free u32 node id per hash bucket.
    next_node: HashMap<u8, u32>,
}

/// A live lab; dropping it deletes all of its namespaces.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    agent_ns: String,
    segments: Vec<SegmentInfo>,
    internal: Vec<Segment>,
    steer_arp: bool,
    namespaces: Vec<String>,
    tuned: bool,
    uplink: Option<Uplink>,
    internet: Option<Internet>,
    /// The internet host's TCP server, and the pipe it watches (closed: it exits).
    server: Option<(Child, Option<ChildStdin>)>,
    /// Routes in the machine's namespace to [`Lab::add_public_address`] addresses, removed on drop.
    public_routes: Vec<Ipv4Addr>,
}

static LAB_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Lab {
    /// Builds the lab described by `spec`; on any failure everything created so far is deleted.
    pub fn build(spec: LabSpec) -> Result<Lab> {
        if !nix::unistd::geteuid().is_root() {
            bail!("building a network lab needs root");
        }
        remove_stale_namespaces().context("removing namespaces of dead lab processes")?;
        let prefix = format!(
            "{NS_PREFIX}{}-{}-",
            std::process::id(),
            LAB_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut lab = Lab {
            agent_ns: format!("{prefix}a"),
            prefix,
            segments: Vec::new(),
            internal: Vec::new(),
            steer_arp: spec.steer_arp,
            namespaces: Vec::new(),
            tuned: false,
            uplink: None,
            internet: None,
            server: None,
            public_routes: Vec::new(),
        };
        // On error `lab` is dropped, which deletes whatever was created.
        lab.create(&spec)?;
        Ok(lab)
    }

    fn create(&mut self, spec: &LabSpec) -> Result<()> {
        if spec.segments.is_empty() {
            bail!("a lab needs at least one segment");
        }
        if spec.segments.len() > 255 {
            bail!("at most 255 segments");
        }
        // Plan and validate everything before touching the system.
        let mut ifaces = HashSet::new();
        for (s, seg) in spec.segments.iter().enumerate() {
            check_ifname(&seg.iface)?;
            if !ifaces.insert(seg.iface.as_str()) || seg.iface == "lo" {
                bail!("segment interface name {:?} used twice", seg.iface);
            }
            let (net, len) = parse_cidr(&seg.cidr)?;
            let mask = prefix_mask(len);
            let size = 1u64 << (32 - len);
            let usable =
                |ip: u32| ip & mask == net && (len >= 31 || (ip != net && ip != net | !mask));
            let agent_ip = match seg.agent_ip {
                Some(ip) => ip,
                None if size >= 4 => Ipv4Addr::from(net + 1),
                None => Ipv4Addr::from(net),
            };
            if !usable(u32::from(agent_ip)) {
                bail!("agent address {agent_ip} is not usable in {}", seg.cidr);
            }
            let mut ips = HashSet::from([agent_ip]);
            let mut macs = HashSet::new();
            let mut host_specs = seg.hosts.clone();
            if let Some(gw) = seg.gateway {
                if !host_specs.iter().any(|h| h.ip == gw) {
                    host_specs.push(HostSpec { ip: gw, mac: None });
                }
            }
            let mut hosts = Vec::with_capacity(host_specs.len());
            let mut internal = HashMap::with_capacity(host_specs.len());
            for (h, host) in host_specs.iter().enumerate() {
                if !usable(u32::from(host.ip)) {
                    bail!("host address {} is not usable in {}", host.ip, seg.cidr);
                }
                if !ips.insert(host.ip) {
                    bail!("address {} used twice in segment {}", host.ip, seg.cidr);
                }
                let mac = match &host.mac {
                    Some(mac) => normalize_mac(mac)?,
                    None => {
                        let o = host.ip.octets();
                        format!(
                            "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                            s, o[0], o[1], o[2], o[3]
                        )
                    }
                };
                if !macs.insert(mac.clone()) {
                    bail!("MAC {mac} used twice in segment {}", seg.cidr);
                }
                let ns = format!("{}h{s}-{h}", self.prefix);
                internal.insert(ns.clone(), (h, None));
                hosts.push(HostInfo {
                    ns,
                    ip: host.ip,
                    mac,
                });
            }
            self.segments.push(SegmentInfo {
                iface: seg.iface.clone(),
                cidr: format!("{}/{len}", Ipv4Addr::from(net)),
                agent_ip,
                vlan: seg.vlan,
                hosts,
                gateway: seg.gateway,
            });
            self.internal.push(Segment {
                switch_ns: format!("{}s{s}", self.prefix),
                prefix_len: len,
                hosts: internal,
                next_node: HashMap::new(),
            });
        }

        let total: usize = self.segments.iter().map(|s| s.hosts.len()).sum();
        if spec.tune_sysctls && total >= TUNE_FROM_HOSTS {
            // Set first: `tune_sysctls` counts the lab even when it fails, and Drop undoes that.
            self.tuned = true;
            tune_sysctls(total)?;
        }

        // Namespaces, in one `ip` process; record each before it exists so a failure still cleans up.
        let mut all = vec![self.agent_ns.clone()];
        for (seg, int) in self.segments.iter().zip(&self.internal) {
            all.push(int.switch_ns.clone());
            all.extend(seg.hosts.iter().map(|h| h.ns.clone()));
        }
        self.namespaces = all;
        let mut batch = String::new();
        for ns in &self.namespaces {
            writeln!(batch, "netns add {ns}")?;
        }
        ip_batch(None, &batch)?;

        // The switches: a bridge, the uplink to the agent and one port per host (whose peer is created
        // directly in the host's namespace). One `ip` process per segment.
        let agent_ns = self.agent_ns.clone();
        let steer = self.steer_arp;
        let switch_batches: Vec<(String, String)> = self
            .segments
            .iter()
            .zip(&self.internal)
            .enumerate()
            .map(|(s, (seg, int))| -> Result<(String, String)> {
                let mut b = String::new();
                writeln!(b, "link set lo up")?;
                writeln!(
                    b,
                    "link add name br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0"
                )?;
                writeln!(b, "link set dev br0 addrgenmode none")?;
                writeln!(b, "link set dev br0 up")?;
                writeln!(
                    b,
                    "link add name uplink type veth peer name {} address {} netns {agent_ns}",
                    seg.iface,
                    agent_mac(s)
                )?;
                writeln!(b, "link set dev uplink addrgenmode none")?;
                writeln!(b, "link set dev uplink master br0 up")?;
                if steer {
                    // Kernels without the gact action cannot "drop" in tc: the steering redirects ARP
                    // requests that no host owns into `sink`, whose peer (no address) discards them.
                    writeln!(b, "link add name sink type veth peer name sinkp")?;
                    writeln!(b, "link set dev sink addrgenmode none")?;
                    writeln!(b, "link set dev sinkp addrgenmode none")?;
                    writeln!(b, "link set dev sinkp arp off up")?;
                    writeln!(b, "link set dev sink arp off up")?;
                }
                for (h, host) in seg.hosts.iter().enumerate() {
                    writeln!(
                        b,
                        "link add name h{h} type veth peer name {HOST_IFACE} address {} netns {}",
                        host.mac, host.ns
                    )?;
                    writeln!(b, "link set dev h{h} addrgenmode none")?;
                    writeln!(b, "link set dev h{h} master br0 up")?;
                }
                Ok((int.switch_ns.clone(), b))
            })
            .collect::<Result<_>>()?;
        run_parallel(&switch_batches, |(ns, b)| ip_batch(Some(ns), b))?;

        // The agent's interfaces.
        let mut b = String::from("link set lo up\n");
        for (seg, int) in self.segments.iter().zip(&self.internal) {
            let len = int.prefix_len;
            writeln!(b, "link set dev {} addrgenmode none", seg.iface)?;
            writeln!(b, "addr add {}/{len} dev {}", seg.agent_ip, seg.iface)?;
            writeln!(b, "link set dev {} up", seg.iface)?;
        }
        ip_batch(Some(&self.agent_ns), &b)?;
        if spec.uplink {
            self.create_uplink()?;
        }

        // The hosts: one `ip` process each, several at a time.
        let host_batches: Vec<(String, String)> = self
            .segments
            .iter()
            .zip(&self.internal)
            .flat_map(|(seg, int)| {
                seg.hosts.iter().map(move |h| {
                    (
                        h.ns.clone(),
                        format!(
                            "link set lo up\nlink set dev {HOST_IFACE} addrgenmode none\n\
                             addr add {}/{} dev {HOST_IFACE}\nlink set dev {HOST_IFACE} up\n",
                            h.ip, int.prefix_len
                        ),
                    )
                })
            })
            .collect();
        run_parallel(&host_batches, |(ns, b)| ip_batch(Some(ns), b))?;

        if self.steer_arp {
            self.install_steering()?;
        }
        if self.segments.iter().any(|s| s.gateway.is_some()) {
            self.create_internet()?;
        }
        Ok(())
    }

    /// The internet namespace, a link from each gateway to it, forwarding on the gateways, default routes
    /// through them, and the internet host's TCP server (see the module docs).
    fn create_internet(&mut self) -> Result<()> {
        let ns = format!("{}i", self.prefix);
        // Recorded before it exists so a failure still deletes it.
        self.namespaces.push(ns.clone());
        ip_batch(None, &format!("netns add {ns}\n"))?;
        ip_batch(
            Some(&ns),
            &format!("link set lo up\naddr add {INTERNET_SERVER}/32 dev lo\n"),
        )?;
        let mut agent_routed = false;
        let mut host_batches = Vec::new();
        for (s, seg) in self.segments.iter().enumerate() {
            let Some(gw) = seg.gateway else {
                continue;
            };
            let gw_ns = seg
                .hosts
                .iter()
                .find(|h| h.ip == gw)
                .map(|h| h.ns.clone())
                .ok_or_else(|| anyhow!("gateway {gw} is not a host of {}", seg.cidr))?;
            let (outside, inside) = (
                Ipv4Addr::new(100, 64, s as u8, 1),
                Ipv4Addr::new(100, 64, s as u8, 2),
            );
            ip_batch(
                Some(&ns),
                &format!(
                    "link add name g{s} type veth peer name {GATEWAY_WAN_IFACE} netns {gw_ns}\n\
                     link set dev g{s} addrgenmode none\n\
                     addr add {outside}/30 dev g{s}\n\
                     link set dev g{s} up\n\
                     route add {cidr} via {inside} dev g{s}\n",
                    cidr = seg.cidr
                ),
            )?;
            ip_batch(
                Some(&gw_ns),
                &format!(
                    "link set dev {GATEWAY_WAN_IFACE} addrgenmode none\n\
                     addr add {inside}/30 dev {GATEWAY_WAN_IFACE}\n\
                     link set dev {GATEWAY_WAN_IFACE} up\n\
                     route add default via {outside} dev {GATEWAY_WAN_IFACE}\n"
                ),
            )?;
            run(&mut netns_exec(
                &gw_ns,
                &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"],
            ))?;
            for h in seg.hosts.iter().filter(|h| h.ip != gw) {
                host_batches.push((
                    h.ns.clone(),
                    format!("route add default via {gw} dev {HOST_IFACE}\n"),
                ));
            }
            if !agent_routed {
                agent_routed = true;
                ip_batch(
                    Some(&self.agent_ns),
                    &format!("route add default via {gw} dev {}\n", seg.iface),
                )?;
            }
        }
        run_parallel(&host_batches, |(ns, b)| ip_batch(Some(ns), b))?;
        self.internet = Some(Internet {
            ns: ns.clone(),
            server: INTERNET_SERVER,
            port: INTERNET_PORT,
        });
        self.start_server(&ns)
    }

    /// Starts `fixtures/internet_server.py` in the internet namespace and waits for its `READY`.
    fn start_server(&mut self, ns: &str) -> Result<()> {
        let script = crate::responders::fixture("internet_server.py");
        let mut child = netns_exec(
            ns,
            &[
                crate::responders::PYTHON,
                &script.to_string_lossy(),
                "--address",
                &INTERNET_SERVER.to_string(),
                "--port",
                &INTERNET_PORT.to_string(),
            ],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting the internet server in {ns}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        // Owned by the lab from here: dropping it (on error too) kills the server.
        self.server = Some((child, stdin));
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(out) = stdout {
            std::thread::spawn(move || {
                use std::io::BufRead as _;
                for line in std::io::BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let deadline = Instant::now() + SERVER_READY_TIMEOUT;
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.trim() == "READY" => return Ok(()),
                Ok(_) => {}
                Err(_) => {
                    let mut stderr = String::new();
                    if let Some((child, _)) = self.server.as_mut() {
                        let _ = child.kill();
                        let _ = child.wait();
                        if let Some(mut err) = child.stderr.take() {
                            use std::io::Read as _;
                            let _ = err.read_to_string(&mut stderr);
                        }
                    }
                    self.server = None;
                    bail!(
                        "the internet server in {ns} did not say READY within {SERVER_READY_TIMEOUT:?}: {}",
                        stderr.trim()
                    );
                }
            }
        }
    }

    /// The u32 filters on each switch's uplink ingress: ARP requests (opcode 1) are hashed on the last byte
    /// of their target address into table 1:, where one node per host redirects the request to its port;
    /// requests that match no host are dropped. The bridge gets a static FDB entry for the agent's MAC so
    /// the hosts' replies are not flooded (the bridge never sees the redirected requests, so cannot learn
    /// it).
    fn install_steering(&mut self) -> Result<()> {
        let mut jobs = Vec::new();
        for (s, (seg, int)) in self
            .segments
            .iter()
            .zip(self.internal.iter_mut())
            .enumerate()
        {
            let mut b = String::new();
            writeln!(b, "qdisc add dev uplink ingress")?;
            writeln!(
                b,
                "filter add dev uplink parent ffff: protocol arp prio 10 handle 1: u32 divisor 256"
            )?;
            writeln!(
                b,
                "filter add dev uplink parent ffff: protocol arp prio 10 u32 ht 800:: \
                 match u16 0x0001 0xffff at 6 hashkey mask 0x000000ff at 24 link 1:"
            )?;
            for (h, host) in seg.hosts.iter().enumerate() {
                let handle = steering_rule(&mut b, int, host.ip, h)?;
                if let Some(entry) = int.hosts.get_mut(&host.ns) {
                    entry.1 = Some(handle);
                }
            }
            writeln!(
                b,
                "filter add dev uplink parent ffff: protocol arp prio 20 u32 \
                 match u16 0x0001 0xffff at 6 action mirred egress redirect dev sink"
            )?;
            jobs.push((int.switch_ns.clone(), b, agent_mac(s)));
        }
        run_parallel(&jobs, |(ns, b, mac)| {
            tc_batch(ns, b)?;
            run(Command::new("bridge").args([
                "-n", ns, "fdb", "replace", mac, "dev", "uplink", "master", "static",
            ]))
            .map(|_| ())
        })
    }

    /// A veth pair from the machine's namespace into the agent's, on the first free /30 of 10.254.0.0/16.
    /// Deleting the agent namespace deletes both ends.
    fn create_uplink(&mut self) -> Result<()> {
        // Labs of one test process are built in parallel: one at a time here, so two never pick the same
        // free slot (and the loser never deletes the winner's pair).
        static UPLINKS: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = UPLINKS.lock().unwrap_or_else(|p| p.into_inner());
        let out = run(Command::new("ip").args(["-j", "-4", "addr", "show"]))?;
        let used = String::from_utf8_lossy(&out.stdout).into_owned();
        let seed =
            (std::process::id() as usize).wrapping_mul(31) + LAB_COUNTER.load(Ordering::Relaxed);
        for attempt in 0..16_384usize {
            let slot = (seed + attempt) % 16_384;
            let base = u32::from(Ipv4Addr::new(10, 254, 0, 0)) + (slot as u32) * 4;
            let outside = Ipv4Addr::from(base + 1);
            let inside = Ipv4Addr::from(base + 2);
            if used.contains(&format!("\"{outside}\"")) || used.contains(&format!("\"{inside}\"")) {
                continue;
            }
            let outside_iface = format!("olu{slot}");
            let created = ip_batch(
                None,
                &format!(
                    "link add name {outside_iface} type veth peer name {UPLINK_IFACE} netns {agent}\n\
                     addr add {outside}/30 dev {outside_iface}\n\
                     link set dev {outside_iface} up\n",
                    agent = self.agent_ns
                ),
            );
            if let Err(e) = created {
                // Another process's lab took this slot between the check and now: try the next. Remove the
                // pair only when it is ours (the name was free and a later line failed).
                if !format!("{e:#}").contains("File exists") {
                    let _ = run(Command::new("ip").args(["link", "del", &outside_iface]));
                }
                if attempt > 64 {
                    return Err(e.context("creating the lab's uplink"));
                }
                continue;
            }
            ip_batch(
                Some(&self.agent_ns),
                &format!(
                    "addr add {inside}/30 dev {UPLINK_IFACE}\nlink set dev {UPLINK_IFACE} up\n"
                ),
            )?;
            self.uplink = Some(Uplink {
                outside_iface,
                outside,
                inside,
            });
            return Ok(());
        }
        bail!("no free /30 left in 10.254.0.0/16 for the lab's uplink")
    }

    /// The internet namespace, when a segment has a gateway.
    pub fn internet(&self) -> Option<&Internet> {
        self.internet.as_ref()
    }

    /// The gateway host of the segment whose agent interface is `iface`, when it has one.
    pub fn gateway_of(&self, iface: &str) -> Option<&HostInfo> {
        let seg = self.segments.iter().find(|s| s.iface == iface)?;
        let gw = seg.gateway?;
        seg.hosts.iter().find(|h| h.ip == gw)
    }

    /// Whether a TCP connection from namespace `ns` to `addr` is accepted and greets within `timeout`
    /// (the internet host's server writes a line to each connection). Refused or silent: `false`.
    pub fn tcp_reaches(
        &self,
        ns: &str,
        addr: std::net::SocketAddr,
        timeout: Duration,
    ) -> Result<bool> {
        crate::netns::in_netns(ns, || {
            use std::io::Read as _;
            let deadline = Instant::now() + timeout;
            let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, timeout) else {
                return false;
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .is_err()
            {
                return false;
            }
            let mut buf = [0u8; 64];
            matches!(stream.read(&mut buf), Ok(n) if n > 0)
        })
    }

    /// Whether one ICMP echo from namespace `ns` to `ip` is answered within `timeout` (iputils `ping`,
    /// which takes fractions of a second; at least 0.1 s).
    pub fn pings(&self, ns: &str, ip: Ipv4Addr, timeout: Duration) -> Result<bool> {
        let secs = format!("{:.1}", timeout.as_secs_f64().max(0.1));
        let out = netns_exec(
            ns,
            &["ping", "-n", "-q", "-c", "1", "-W", &secs, &ip.to_string()],
        )
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running ping in {ns}"))?;
        Ok(out.status.success())
    }

    /// Makes the agent namespace reach the machine's namespace from `ip`, a public-shaped address (such as
    /// TEST-NET-3's `203.0.113.7`): it is added to the agent's uplink and used as the source of the route
    /// to [`Uplink::outside`], and the machine's namespace routes it back through the uplink. A portal on
    /// `outside` then sees the agent connect from `ip`. Calling it again with another address moves the
    /// source (open connections keep theirs). The machine's route is removed when the lab is dropped.
    pub fn add_public_address(&mut self, ip: Ipv4Addr) -> Result<()> {
        let uplink = self
            .uplink
            .clone()
            .context("a public address needs a lab built with an uplink")?;
        ip_batch(
            Some(&self.agent_ns),
            &format!(
                "addr replace {ip}/32 dev {UPLINK_IFACE}\n\
                 route replace {outside}/32 dev {UPLINK_IFACE} src {ip}\n",
                outside = uplink.outside
            ),
        )?;
        if !self.public_routes.contains(&ip) {
            self.public_routes.push(ip);
        }
        ip_batch(
            None,
            &format!("route replace {ip}/32 dev {}\n", uplink.outside_iface),
        )
    }

    /// The link to the machine's namespace, when the spec asked for one.
    pub fn uplink(&self) -> Option<&Uplink> {
        self.uplink.as_ref()
    }

    /// The name shared by all of this lab's namespaces, e.g. `olab1234-0-`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The agent's namespace.
    pub fn agent_ns(&self) -> &str {
        &self.agent_ns
    }

    /// Every namespace of the lab (agent, switches, hosts).
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    pub fn segments(&self) -> &[SegmentInfo] {
        &self.segments
    }

    /// All hosts of all segments.
    pub fn hosts(&self) -> impl Iterator<Item = &HostInfo> {
        self.segments.iter().flat_map(|s| s.hosts.iter())
    }

    /// A command running `argv` inside the agent namespace.
    pub fn exec(&self, argv: &[&str]) -> Command {
        netns_exec(&self.agent_ns, argv)
    }

    /// A command running `argv` inside a host's namespace.
    pub fn host_exec(&self, host_ns: &str, argv: &[&str]) -> Command {
        netns_exec(host_ns, argv)
    }

    fn find(&self, host_ns: &str) -> Result<(usize, usize)> {
        self.internal
            .iter()
            .enumerate()
            .find_map(|(s, int)| int.hosts.get(host_ns).map(|(h, _)| (s, *h)))
            .ok_or_else(|| anyhow!("{host_ns} is not a host of lab {}", self.prefix))
    }

    /// Sets a host's interface up or down (a host that leaves the network, or comes back).
    pub fn set_host_link(&self, host_ns: &str, up: bool) -> Result<()> {
        self.find(host_ns)?;
        let state = if up { "up" } else { "down" };
        ip_batch(
            Some(host_ns),
            &format!("link set dev {HOST_IFACE} {state}\n"),
        )
    }

    /// Gives a host a new address in its segment (the old one is removed; a default route through the
    /// segment's gateway is put back). A gateway keeps its address.
    pub fn change_host_ip(&mut self, host_ns: &str, new_ip: Ipv4Addr) -> Result<()> {
        let (s, h) = self.find(host_ns)?;
        let seg = &self.segments[s];
        let (net, len) = parse_cidr(&seg.cidr)?;
        if u32::from(new_ip) & prefix_mask(len) != net {
            bail!("{new_ip} is not in {}", seg.cidr);
        }
        if new_ip == seg.agent_ip || seg.hosts.iter().any(|o| o.ip == new_ip && o.ns != host_ns) {
            bail!("{new_ip} is already used in {}", seg.cidr);
        }
        let old_ip = seg.hosts[h].ip;
        if seg.gateway == Some(old_ip) {
            bail!(
                "{old_ip} is the gateway of {}: the lab's internet routes to it",
                seg.cidr
            );
        }
        let mut b = format!(
            "addr del {old_ip}/{len} dev {HOST_IFACE}\naddr add {new_ip}/{len} dev {HOST_IFACE}\n"
        );
        if let Some(gw) = seg.gateway {
            // The default route went with the old address.
            writeln!(b, "route replace default via {gw} dev {HOST_IFACE}")?;
        }
        ip_batch(Some(host_ns), &b)?;
        self.segments[s].hosts[h].ip = new_ip;
        if self.steer_arp {
            let int = &mut self.internal[s];
            let mut b = String::new();
            if let Some((_, Some(old))) = int.hosts.get(host_ns) {
                writeln!(
                    b,
                    "filter del dev uplink parent ffff: protocol arp prio 10 handle {old} u32"
                )?;
            }
            let handle = steering_rule(&mut b, int, new_ip, h)?;
            tc_batch(&int.switch_ns, &b)?;
            if let Some(entry) = int.hosts.get_mut(host_ns) {
                entry.1 = Some(handle);
            }
        }
        Ok(())
    }

    /// Sends one UDP datagram from the agent namespace to `ip` (which makes the kernel resolve it with ARP)
    /// and waits up to `timeout` for a complete neighbour entry; returns its MAC, or `None` when the address
    /// did not resolve. A stale entry for `ip` is deleted first.
    pub fn probe(&self, ip: Ipv4Addr, timeout: Duration) -> Result<Option<String>> {
        let iface = self
            .segments
            .iter()
            .find(|s| {
                parse_cidr(&s.cidr)
                    .map(|(net, len)| u32::from(ip) & prefix_mask(len) == net)
                    .unwrap_or(false)
            })
            .map(|s| s.iface.clone())
            .ok_or_else(|| anyhow!("{ip} is in no segment of the lab"))?;
        let deadline = Instant::now() + timeout;
        // The kernel gives up on an address after a few requests; a loaded machine (CI, two cores, other labs
        // being built) can delay a host that just came up past them. So forget and ask again every 750 ms.
        loop {
            // Forget what the agent knew (ignore "no such entry").
            let _ = self
                .exec(&["ip", "neigh", "del", &ip.to_string(), "dev", &iface])
                .output();
            run(&mut self.exec(&["bash", "-c", &format!("echo probe > /dev/udp/{ip}/9")]))?;
            let round_end = (Instant::now() + Duration::from_millis(750)).min(deadline);
            loop {
                if let Some(mac) = self.agent_neigh_mac(ip)? {
                    return Ok(Some(mac));
                }
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                if Instant::now() >= round_end {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The MAC the agent namespace's neighbour table holds for `ip` in a usable state (not INCOMPLETE or
    /// FAILED), if any.
    pub fn agent_neigh_mac(&self, ip: Ipv4Addr) -> Result<Option<String>> {
        let out = run(&mut self.exec(&["ip", "-j", "neigh", "show", "to", &ip.to_string()]))?;
        let entries: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("parsing `ip -j neigh` output in {}", self.agent_ns))?;
        let entries = entries.as_array().cloned().unwrap_or_default();
        for e in entries {
            let states: Vec<&str> = e["state"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            let bad = states.iter().any(|s| *s == "FAILED" || *s == "INCOMPLETE");
            if let (false, Some(mac)) = (bad, e["lladdr"].as_str()) {
                return Ok(Some(mac.to_lowercase()));
            }
        }
        Ok(None)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(uplink) = &self.uplink {
            for ip in &self.public_routes {
                // Deleting the namespace below takes the uplink (and so the route) away too; this keeps the
                // machine's routing table clean even if that fails.
                let _ = run(Command::new("ip").args([
                    "route",
                    "del",
                    &format!("{ip}/32"),
                    "dev",
                    &uplink.outside_iface,
                ]));
            }
        }
        if let Some((mut child, stdin)) = self.server.take() {
            drop(stdin);
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Err(e) = delete_namespaces(&self.namespaces) {
            eprintln!("lab {}: teardown: {e:#}", self.prefix);
        }
        if self.tuned {
            untune_sysctls();
        }
    }
}

/// Appends the filter for a host's address to `b` and returns its handle.
fn steering_rule(b: &mut String, int: &mut Segment, ip: Ipv4Addr, h: usize) -> Result<String> {
    let bucket = ip.octets()[3];
    let node = int.next_node.entry(bucket).or_insert(1);
    if *node > 0xfff {
        bail!("too many steering rules for bucket {bucket:x}");
    }
    let handle = format!("1:{bucket:x}:{:x}", *node);
    *node += 1;
    writeln!(
        b,
        "filter add dev uplink parent ffff: protocol arp prio 10 handle {handle} u32 ht 1:{bucket:x}: \
         match u32 0x{:08x} 0xffffffff at 24 action mirred egress redirect dev h{h}",
        u32::from(ip)
    )?;
    Ok(handle)
}

fn agent_mac(segment: usize) -> String {
    format!("02:00:00:00:{segment:02x}:01")
}

fn netns_exec(ns: &str, argv: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).args(argv);
    cmd
}

fn check_ifname(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 15
        || !name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
    {
        bail!("bad interface name {name:?} (1 to 15 of [A-Za-z0-9._-])");
    }
    Ok(())
}

fn parse_cidr(cidr: &str) -> Result<(u32, u8)> {
    let (addr, len) = cidr
        .split_once('/')
        .ok_or_else(|| anyhow!("bad CIDR {cidr:?}: no /"))?;
    let addr: Ipv4Addr = addr.parse().with_context(|| format!("bad CIDR {cidr:?}"))?;
    let len: u8 = len.parse().with_context(|| format!("bad CIDR {cidr:?}"))?;
    if !(1..=32).contains(&len) {
        bail!("bad CIDR {cidr:?}: prefix length must be 1..=32");
    }
    Ok((u32::from(addr) & prefix_mask(len), len))
}

fn prefix_mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

fn normalize_mac(mac: &str) -> Result<String> {
    let parts: Vec<&str> = mac.split([':', '-']).collect();
    if parts.len() != 6 {
        bail!("bad MAC {mac:?}");
    }
    let bytes = parts
        .iter()
        .map(|p| u8::from_str_radix(p, 16).map_err(|_| anyhow!("bad MAC {mac:?}")))
        .collect::<Result<Vec<u8>>>()?;
    if bytes[0] & 1 != 0 {
        bail!("MAC {mac:?} is multicast");
    }
    Ok(bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// Runs a command; an error names the command and carries its stderr.
fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// Feeds `batch` to `PROG [-n NS] -batch -`; an error names the failing line and the stderr.
fn batch(prog: &str, ns: Option<&str>, force: bool, batch: &str) -> Result<()> {
    let mut cmd = Command::new(prog);
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    if force {
        cmd.arg("-force");
    }
    cmd.args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let what = format!(
        "{prog}{}{} -batch -",
        ns.map(|ns| format!(" -n {ns}")).unwrap_or_default(),
        if force { " -force" } else { "" }
    );
    let mut child = cmd.spawn().with_context(|| format!("starting {what}"))?;
    let written = child
        .stdin
        .take()
        .ok_or_else(|| anyhow!("{what}: no stdin"))
        .and_then(|mut stdin| {
            stdin
                .write_all(batch.as_bytes())
                .with_context(|| format!("writing to {what}"))
        });
    let out = child
        .wait_with_output()
        .with_context(|| format!("waiting for {what}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // iproute2 says "Command failed -:LINE".
        let line = stderr
            .rsplit("Command failed -:")
            .next()
            .filter(|_| stderr.contains("Command failed -:"))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .and_then(|n| batch.lines().nth(n.saturating_sub(1)))
            .map(|l| format!(" at `{l}`"))
            .unwrap_or_default();
        bail!("{what} failed ({}){line}: {}", out.status, stderr.trim());
    }
    written
}

fn ip_batch(ns: Option<&str>, b: &str) -> Result<()> {
    batch("ip", ns, false, b)
}

fn tc_batch(ns: &str, b: &str) -> Result<()> {
    batch("tc", Some(ns), false, b)
}

/// Runs `f` on every job, `PARALLEL` at a time; returns the first error.
fn run_parallel<T: Sync>(jobs: &[T], f: impl Fn(&T) -> Result<()> + Sync) -> Result<()> {
    let next = AtomicUsize::new(0);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL.min(jobs.len()) {
            scope.spawn(|| loop {
                let failed = first_error.lock().map(|e| e.is_some()).unwrap_or(true);
                let i = next.fetch_add(1, Ordering::Relaxed);
                if failed || i >= jobs.len() {
                    return;
                }
                if let Err(e) = f(&jobs[i]) {
                    if let Ok(mut slot) = first_error.lock() {
                        slot.get_or_insert(e);
                    }
                }
            });
        }
    });
    match first_error.into_inner() {
        Ok(Some(e)) => Err(e),
        Ok(None) => Ok(()),
        Err(_) => bail!("a lab worker thread panicked"),
    }
}

/// Deletes namespaces in one `ip` process (`-force`: keep going past ones that are already gone).
fn delete_namespaces(names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let present: Vec<&String> = names
        .iter()
        .filter(|n| std::path::Path::new(NETNS_DIR).join(n).exists())
        .collect();
    if present.is_empty() {
        return Ok(());
    }
    let mut b = String::new();
    for ns in present {
        writeln!(b, "netns del {ns}")?;
    }
    batch("ip", None, true, &b)
}

/// Deletes the namespaces of labs whose process is gone.
fn remove_stale_namespaces() -> Result<()> {
    let dir = match std::fs::read_dir(NETNS_DIR) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {NETNS_DIR}")),
    };
    let mut stale = Vec::new();
    for entry in dir {
        let name = entry
            .with_context(|| format!("reading {NETNS_DIR}"))?
            .file_name()
            .to_string_lossy()
            .into_owned();
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let alive = pid as u32 == std::process::id()
            || std::path::Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            stale.push(name);
        }
    }
    delete_namespaces(&stale)
}

/// The host-global sysctls a big lab needs, the values found before the first lab raised them, and how many
/// live labs of this process depend on them.
struct Tuning {
    labs: usize,
    saved: Vec<(&'static str, String)>,
}

static TUNING: Mutex<Tuning> = Mutex::new(Tuning {
    labs: 0,
    saved: Vec::new(),
});

fn sysctl_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

fn read_sysctl(key: &str) -> Result<String> {
    Ok(std::fs::read_to_string(sysctl_path(key))
        .with_context(|| format!("reading sysctl {key}"))?
        .trim()
        .to_string())
}

fn write_sysctl(key: &str, value: &str) -> Result<()> {
    std::fs::write(sysctl_path(key), value).with_context(|| format!("setting sysctl {key}={value}"))
}

/// Raises the global sysctls as far as `hosts` need (never lowers them); the first raise saves the old value.
fn tune_sysctls(hosts: usize) -> Result<()> {
    let mut t = TUNING
        .lock()
        .map_err(|_| anyhow!("sysctl tuning lock poisoned"))?;
    t.labs += 1;
    // Each host and the agent keep a neighbour entry for each other; the table is shared by all namespaces.
    let entries = (hosts as u64) * 2 + 256;
    let wanted: [(&'static str, u64); 4] = [
        ("net.core.netdev_max_backlog", (hosts as u64) * 4 + 1000),
        ("net.ipv4.neigh.default.gc_thresh1", entries),
        ("net.ipv4.neigh.default.gc_thresh2", entries * 2),
        ("net.ipv4.neigh.default.gc_thresh3", entries * 4),
    ];
    for (key, want) in wanted {
        let current = read_sysctl(key)?;
        let cur: u64 = current
            .parse()
            .with_context(|| format!("sysctl {key}={current:?}"))?;
        if cur < want {
            if !t.saved.iter().any(|(k, _)| *k == key) {
                t.saved.push((key, current));
            }
            write_sysctl(key, &want.to_string())?;
        }
    }
    Ok(())
}

/// Undoes `tune_sysctls` once the last lab of this process is gone.
fn untune_sysctls() {
    let Ok(mut t) = TUNING.lock() else {
        return;
    };
    t.labs = t.labs.saturating_sub(1);
    if t.labs == 0 {
        for (key, value) in std::mem::take(&mut t.saved) {
            if let Err(e) = write_sysctl(key, &value) {
                eprintln!("lab teardown: restoring {key}: {e:#}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_and_mac() {
        assert_eq!(
            parse_cidr("10.1.2.3/16").unwrap(),
            (u32::from(Ipv4Addr::new(10, 1, 0, 0)), 16)
        );
        assert!(parse_cidr("10.1.2.3").is_err());
        assert_eq!(
            normalize_mac("00-1A-11-00-00-01").unwrap(),
            "00:1a:11:00:00:01"
        );
        assert!(normalize_mac("01:00:00:00:00:00").is_err());
    }
}
