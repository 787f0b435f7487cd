//! mDNS and SSDP/UPnP discovery for real: the project's namespace lab with real responders in some hosts
//! (python-zeroconf for mDNS, a small UPnP device for SSDP, `outpost_tests::responders`), and the agent's
//! `discovery::mdns::browse` / `discovery::ssdp::search` run inside the agent namespace.
//!
//! Needs root (network namespaces) and Debian's python3-zeroconf: the tests fail, not skip, when the lab or a
//! responder cannot start. Multicast stays inside the lab: the agent namespace has `lan0` (and `lan1` for the
//! interface test) and loopback, nothing else.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use outpost_agent::discovery::mdns::{self, MdnsHost, MdnsService};
use outpost_agent::discovery::ssdp::{self, SsdpDevice};
use outpost_agent::discovery::sweep::Cidr;
use outpost_tests::lab::{HostInfo, Lab, LabSpec, SegmentSpec};
use outpost_tests::netns::in_netns;
use outpost_tests::responders::{MdnsResponderSpec, MdnsServiceSpec, Responder, SsdpResponderSpec};

const AGENT_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const OTHER_AGENT_IP: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);

fn lan0() -> Cidr {
    Cidr::containing(AGENT_IP, 24)
}

/// The agent on `lan0` (10.77.0.0/24) with hosts .11 .. .10+n, and, when `lan1_hosts` > 0, a second segment
/// `lan1` (10.88.0.0/24) with hosts .11 ...
fn build_lab(lan0_hosts: usize, lan1_hosts: usize) -> Lab {
    let mut spec = LabSpec::new().segment(
        SegmentSpec::new("lan0", "10.77.0.0/24")
            .agent_ip(AGENT_IP)
            .hosts_sequential(Ipv4Addr::new(10, 77, 0, 11), lan0_hosts),
    );
    if lan1_hosts > 0 {
        spec = spec.segment(
            SegmentSpec::new("lan1", "10.88.0.0/24")
                .agent_ip(OTHER_AGENT_IP)
                .hosts_sequential(Ipv4Addr::new(10, 88, 0, 11), lan1_hosts),
        );
    }
    Lab::build(spec).unwrap_or_else(|e| {
        panic!("cannot build the namespace lab (this test needs root and iproute2): {e:#}")
    })
}

fn host(lab: &Lab, ip: [u8; 4]) -> HostInfo {
    let ip = Ipv4Addr::from(ip);
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

fn service(service_type: &str, instance: &str, port: u16) -> MdnsService {
    MdnsService {
        service_type: service_type.into(),
        instance: instance.into(),
        port,
    }
}

fn hints(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Counts the UDP packets to `port` (IPv4 or IPv6) that reach a host's `eth0` from anyone but the host itself:
/// an `AF_PACKET` capture on a thread inside the host's namespace.
struct Capture {
    stop: Arc<AtomicBool>,
    seen: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Capture {
    fn start(host: &HostInfo, port: u16) -> Capture {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicUsize::new(0));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (ns, own_ip) = (host.ns.clone(), host.ip);
        let (stopping, counter) = (Arc::clone(&stop), Arc::clone(&seen));
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
                        if udp_to(frame, port, own_ip) {
                            counter.fetch_add(1, Ordering::Relaxed);
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
            seen,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.seen.load(Ordering::Relaxed)
    }

    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("the capture thread panicked");
        }
        self.count()
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

/// An Ethernet frame carrying UDP to `port`, over IPv4 (not from `own_ip`) or IPv6.
fn udp_to(frame: &[u8], port: u16, own_ip: Ipv4Addr) -> bool {
    let dport_at = |offset: usize| {
        frame
            .get(offset + 2..offset + 4)
            .is_some_and(|p| u16::from_be_bytes([p[0], p[1]]) == port)
    };
    match frame.get(12..14) {
        Some([0x08, 0x00]) => {
            let Some(&vihl) = frame.get(14) else {
                return false;
            };
            let ihl = usize::from(vihl & 0x0f) * 4;
            frame.get(23) == Some(&17)
                && frame.get(26..30) != Some(&own_ip.octets()[..])
                && dport_at(14 + ihl)
        }
        Some([0x86, 0xdd]) => frame.get(20) == Some(&17) && dport_at(54),
        _ => false,
    }
}

#[test]
fn mdns_browse_reports_names_services_and_model_hints_per_address() {
    // .11 a TV, .12 a printer, .13 a NAS with two services, .14 silent.
    let lab = build_lab(4, 0);
    let tv = MdnsResponderSpec::new("livingroom-tv")
        .service(
            MdnsServiceSpec::new("_http._tcp", "Living Room TV", 8080).txt("model", "BRAVIA-XR"),
        )
        .service(
            MdnsServiceSpec::new("_googlecast._tcp", "BRAVIA-4K-1234", 8009)
                .txt("md", "BRAVIA 4K VH2")
                .txt("fn", "Living Room TV")
                .txt("id", "8c1f00c0ffee"),
        );
    let printer = MdnsResponderSpec::new("office-printer").service(
        MdnsServiceSpec::new("_ipp._tcp", "HP LaserJet Pro M404", 631)
            .txt("txtvers", "1")
            .txt("ty", "HP LaserJet Pro M404-M405")
            .txt("usb_MFG", "HP")
            .txt("usb_MDL", "LaserJet Pro M404-M405")
            .txt("rp", "ipp/print"),
    );
    let nas = MdnsResponderSpec::new("nas")
        .service(MdnsServiceSpec::new("_smb._tcp", "NAS", 445))
        .service(MdnsServiceSpec::new("_device-info._tcp", "NAS", 9).txt("model", "Xserve"));
    let _r1 = Responder::start_mdns(&lab, &host(&lab, [10, 77, 0, 11]), &tv).unwrap();
    let _r2 = Responder::start_mdns(&lab, &host(&lab, [10, 77, 0, 12]), &printer).unwrap();
    let _r3 = Responder::start_mdns(&lab, &host(&lab, [10, 77, 0, 13]), &nas).unwrap();

    let found = in_agent(&lab, mdns::browse("lan0", lan0(), Duration::from_secs(4)))
        .expect("mDNS browse on lan0");
    eprintln!("{found:#?}");

    let expected = vec![
        MdnsHost {
            ip: Ipv4Addr::new(10, 77, 0, 11),
            hostname: Some("livingroom-tv.local".into()),
            services: vec![
                service("_googlecast._tcp", "BRAVIA-4K-1234", 8009),
                service("_http._tcp", "Living Room TV", 8080),
            ],
            model_hints: hints(&[("md", "BRAVIA 4K VH2"), ("model", "BRAVIA-XR")]),
        },
        MdnsHost {
            ip: Ipv4Addr::new(10, 77, 0, 12),
            hostname: Some("office-printer.local".into()),
            services: vec![service("_ipp._tcp", "HP LaserJet Pro M404", 631)],
            model_hints: hints(&[
                ("ty", "HP LaserJet Pro M404-M405"),
                ("usb_MDL", "LaserJet Pro M404-M405"),
                ("usb_MFG", "HP"),
            ]),
        },
        MdnsHost {
            ip: Ipv4Addr::new(10, 77, 0, 13),
            hostname: Some("nas.local".into()),
            services: vec![
                service("_device-info._tcp", "NAS", 9),
                service("_smb._tcp", "NAS", 445),
            ],
            model_hints: hints(&[("model", "Xserve")]),
        },
    ];
    // Exactly these three: the silent .14 reports nothing.
    assert_eq!(found, expected);
}

#[test]
fn mdns_browse_stays_on_its_interface_and_network() {
    // One responder on lan0, one on lan1, and a capture on the lan1 host's eth0 (the bridge floods multicast
    // to every port). Browsing lan0 hears only lan0 and sends no mDNS packet on lan1; browsing lan1 (the
    // capture's control) hears only lan1 and does.
    let lab = build_lab(1, 1);
    let spec = |name: &str| {
        MdnsResponderSpec::new(name)
            .service(MdnsServiceSpec::new("_http._tcp", name, 80).txt("model", name))
    };
    let lan1_host = host(&lab, [10, 88, 0, 11]);
    let _a = Responder::start_mdns(&lab, &host(&lab, [10, 77, 0, 11]), &spec("on-lan0")).unwrap();
    let _b = Responder::start_mdns(&lab, &lan1_host, &spec("on-lan1")).unwrap();
    let capture = Capture::start(&lan1_host, 5353);

    let lan0_view = in_agent(&lab, mdns::browse("lan0", lan0(), Duration::from_secs(3)));
    let on_lan1_while_browsing_lan0 = capture.count();
    let lan1_view = in_agent(
        &lab,
        mdns::browse(
            "lan1",
            Cidr::containing(OTHER_AGENT_IP, 24),
            Duration::from_secs(3),
        ),
    );
    let on_lan1_while_browsing_lan1 = capture.stop();

    let ips = |v: &[MdnsHost]| v.iter().map(|h| h.ip).collect::<Vec<_>>();
    let lan0_view = lan0_view.expect("browse lan0");
    let lan1_view = lan1_view.expect("browse lan1");
    assert_eq!(
        ips(&lan0_view),
        [Ipv4Addr::new(10, 77, 0, 11)],
        "{lan0_view:?}"
    );
    assert_eq!(lan0_view[0].hostname.as_deref(), Some("on-lan0.local"));
    assert_eq!(
        ips(&lan1_view),
        [Ipv4Addr::new(10, 88, 0, 11)],
        "{lan1_view:?}"
    );
    assert_eq!(lan1_view[0].hostname.as_deref(), Some("on-lan1.local"));
    assert_eq!(
        on_lan1_while_browsing_lan0, 0,
        "browsing lan0 sent mDNS packets out of lan1"
    );
    assert!(
        on_lan1_while_browsing_lan1 > 0,
        "the capture on lan1 saw none of the agent's mDNS packets while it browsed lan1"
    );

    // A network that holds the agent (10.77.0.0/29) but not .11: its answers are heard and dropped.
    let narrow = in_agent(
        &lab,
        mdns::browse(
            "lan0",
            Cidr::containing(AGENT_IP, 29),
            Duration::from_secs(2),
        ),
    )
    .expect("browse lan0 with a /29");
    assert_eq!(narrow, vec![]);
}

/// The next update for `ip` that satisfies `done`, within `secs`.
async fn next_update(
    rx: &mut tokio::sync::mpsc::Receiver<MdnsHost>,
    ip: Ipv4Addr,
    secs: u64,
    done: fn(&MdnsHost) -> bool,
) -> MdnsHost {
    let until = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let h = tokio::time::timeout_at(until, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no update for {ip} within {secs} s"))
            .expect("the watcher is running");
        eprintln!("update: {h:?}");
        if h.ip == ip && done(&h) {
            return h;
        }
    }
}

#[test]
fn mdns_watcher_sends_hosts_as_they_come_and_go_and_stops_on_drop() {
    let lab = build_lab(2, 0);
    let tv_ip = Ipv4Addr::new(10, 77, 0, 11);
    let printer_ip = Ipv4Addr::new(10, 77, 0, 12);
    let tv = MdnsResponderSpec::new("tv")
        .service(MdnsServiceSpec::new("_http._tcp", "TV", 8080).txt("model", "BRAVIA-XR"));
    let _tv = Responder::start_mdns(&lab, &host(&lab, [10, 77, 0, 11]), &tv).unwrap();
    // Announces a type the watcher already browses, so its announcement is taken at once.
    let printer = MdnsResponderSpec::new("printer")
        .service(MdnsServiceSpec::new("_http._tcp", "Printer", 80).txt("ty", "M404"));
    let printer_host = host(&lab, [10, 77, 0, 12]);

    let (first, arrived, gone) = in_netns(lab.agent_ns(), || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(async {
            let (tx, mut rx) = tokio::sync::mpsc::channel(16);
            let watcher = mdns::MdnsWatcher::start("lan0", lan0(), tx).expect("start the watcher");
            let first = next_update(&mut rx, tv_ip, 10, |h| !h.services.is_empty()).await;
            // The printer comes later (blocking here is fine: mdns-sd's thread queues the events).
            let responder = Responder::start_mdns(&lab, &printer_host, &printer)
                .expect("start the printer's responder");
            let arrived = next_update(&mut rx, printer_ip, 10, |h| !h.services.is_empty()).await;
            // It leaves: SIGTERM makes it send goodbyes (TTL 0), the watcher sends an empty view.
            drop(responder);
            let gone = next_update(&mut rx, printer_ip, 10, |h| h.services.is_empty()).await;
            drop(watcher);
            // Once dropped, the channel closes: the task and the daemon are gone.
            let closed = tokio::time::timeout(Duration::from_secs(5), async {
                while rx.recv().await.is_some() {}
            })
            .await;
            assert!(
                closed.is_ok(),
                "the watcher's channel did not close after drop"
            );
            (first, arrived, gone)
        })
    })
    .expect("run inside the agent namespace");
    assert_eq!(
        first,
        MdnsHost {
            ip: tv_ip,
            hostname: Some("tv.local".into()),
            services: vec![service("_http._tcp", "TV", 8080)],
            model_hints: hints(&[("model", "BRAVIA-XR")]),
        }
    );
    assert_eq!(
        arrived,
        MdnsHost {
            ip: printer_ip,
            hostname: Some("printer.local".into()),
            services: vec![service("_http._tcp", "Printer", 80)],
            model_hints: hints(&[("ty", "M404")]),
        }
    );
    assert_eq!(
        gone,
        MdnsHost {
            ip: printer_ip,
            hostname: None,
            services: vec![],
            model_hints: vec![],
        }
    );
}

fn device(ip: [u8; 4], port: u16) -> SsdpDevice {
    SsdpDevice {
        ip: Ipv4Addr::from(ip),
        location: format!("http://{}:{port}/description.xml", Ipv4Addr::from(ip)),
        server: None,
        usn: None,
        friendly_name: None,
        manufacturer: None,
        model_name: None,
        model_number: None,
        device_type: None,
        udn: None,
    }
}

#[test]
fn ssdp_search_reads_each_devices_description() {
    // .11 a TV, .12 a NAS, .13 silent.
    let lab = build_lab(3, 0);
    let tv_udn = "uuid:4d696e69-444c-164e-9d41-b827eb5c1e0f";
    let nas_udn = "uuid:00000000-0000-1000-8000-00113208c0de";
    let tv = SsdpResponderSpec::new("Living Room TV", "Sony Corporation", "BRAVIA XR-55A80J")
        .model_number("XR-55A80J")
        .udn(tv_udn)
        .server("Linux/5.10 UPnP/1.0 Sony-BRAVIA/1.0");
    let mut nas = SsdpResponderSpec::new("DiskStation & Co <NAS>", "Synology Inc.", "DS920+")
        .device_type("urn:schemas-upnp-org:device:Basic:1")
        .udn(nas_udn)
        .server("Synology/DSM UPnP/1.0");
    nas.http_port = 5000;
    let r_tv = Responder::start_ssdp(&lab, &host(&lab, [10, 77, 0, 11]), &tv).unwrap();
    let r_nas = Responder::start_ssdp(&lab, &host(&lab, [10, 77, 0, 12]), &nas).unwrap();

    let found = in_agent(
        &lab,
        ssdp::search(AGENT_IP, lan0(), Duration::from_millis(1500)),
    )
    .expect("SSDP search on lan0");
    eprintln!("{found:#?}");
    assert_eq!(
        found,
        vec![
            SsdpDevice {
                server: Some("Linux/5.10 UPnP/1.0 Sony-BRAVIA/1.0".into()),
                usn: Some(format!("{tv_udn}::upnp:rootdevice")),
                friendly_name: Some("Living Room TV".into()),
                manufacturer: Some("Sony Corporation".into()),
                model_name: Some("BRAVIA XR-55A80J".into()),
                model_number: Some("XR-55A80J".into()),
                device_type: Some("urn:schemas-upnp-org:device:MediaRenderer:1".into()),
                udn: Some(tv_udn.into()),
                ..device([10, 77, 0, 11], 49152)
            },
            SsdpDevice {
                server: Some("Synology/DSM UPnP/1.0".into()),
                usn: Some(format!("{nas_udn}::upnp:rootdevice")),
                friendly_name: Some("DiskStation & Co <NAS>".into()),
                manufacturer: Some("Synology Inc.".into()),
                model_name: Some("DS920+".into()),
                model_number: None,
                device_type: Some("urn:schemas-upnp-org:device:Basic:1".into()),
                udn: Some(nas_udn.into()),
                ..device([10, 77, 0, 12], 5000)
            },
        ]
    );
    // Three replies per device (rootdevice, UDN, type) for each of the two M-SEARCHes; one fetch each.
    assert_eq!(r_tv.http_requests(), ["/description.xml"]);
    assert_eq!(r_nas.http_requests(), ["/description.xml"]);
    assert!(r_tv.searches() >= 1, "{:?}", r_tv.lines());
}

#[test]
fn ssdp_never_fetches_a_location_on_another_host() {
    // .11 is an honest device; .12 answers with a LOCATION on .11 (a reflection attempt); .13 answers with a
    // LOCATION outside the lab. Only .11's own description is fetched, once.
    let lab = build_lab(3, 0);
    let honest = Responder::start_ssdp(
        &lab,
        &host(&lab, [10, 77, 0, 11]),
        &SsdpResponderSpec::new("Honest", "Acme", "A1"),
    )
    .unwrap();
    let liar = Responder::start_ssdp(
        &lab,
        &host(&lab, [10, 77, 0, 12]),
        &SsdpResponderSpec::new("Liar", "Evil", "E1")
            .advertise_location("http://10.77.0.11:49152/stolen.xml"),
    )
    .unwrap();
    let outsider = Responder::start_ssdp(
        &lab,
        &host(&lab, [10, 77, 0, 13]),
        &SsdpResponderSpec::new("Outsider", "Evil", "E2")
            .advertise_location("http://192.0.2.1/description.xml"),
    )
    .unwrap();

    let found = in_agent(
        &lab,
        ssdp::search(AGENT_IP, lan0(), Duration::from_millis(1500)),
    )
    .expect("SSDP search on lan0");
    eprintln!("{found:#?}");
    let by_ip: BTreeMap<Ipv4Addr, &SsdpDevice> = found.iter().map(|d| (d.ip, d)).collect();
    assert_eq!(found.len(), 3, "{found:#?}");
    let honest_dev = by_ip[&Ipv4Addr::new(10, 77, 0, 11)];
    assert_eq!(honest_dev.friendly_name.as_deref(), Some("Honest"));
    let liar_dev = by_ip[&Ipv4Addr::new(10, 77, 0, 12)];
    assert_eq!(liar_dev.location, "http://10.77.0.11:49152/stolen.xml");
    assert_eq!(
        (
            liar_dev.friendly_name.as_deref(),
            liar_dev.manufacturer.as_deref(),
            liar_dev.udn.as_deref()
        ),
        (None, None, None)
    );
    let outsider_dev = by_ip[&Ipv4Addr::new(10, 77, 0, 13)];
    assert_eq!(outsider_dev.location, "http://192.0.2.1/description.xml");
    assert_eq!(outsider_dev.friendly_name, None);
    // The honest host served its own description once and never the "stolen" one; the others served nothing.
    assert_eq!(honest.http_requests(), ["/description.xml"]);
    assert_eq!(liar.http_requests(), Vec::<String>::new());
    assert_eq!(outsider.http_requests(), Vec::<String>::new());
}

#[test]
fn ssdp_search_goes_out_of_the_interface_of_its_address_only() {
    // A device on lan1 never hears a search from lan0's address (and the reverse).
    let lab = build_lab(1, 1);
    let on0 = Responder::start_ssdp(
        &lab,
        &host(&lab, [10, 77, 0, 11]),
        &SsdpResponderSpec::new("On lan0", "Acme", "A1"),
    )
    .unwrap();
    let on1 = Responder::start_ssdp(
        &lab,
        &host(&lab, [10, 88, 0, 11]),
        &SsdpResponderSpec::new("On lan1", "Acme", "A2"),
    )
    .unwrap();
    let found = in_agent(
        &lab,
        ssdp::search(AGENT_IP, lan0(), Duration::from_millis(1200)),
    )
    .expect("SSDP search on lan0");
    let names: Vec<_> = found
        .iter()
        .map(|d| (d.ip, d.friendly_name.clone()))
        .collect();
    assert_eq!(
        names,
        [(Ipv4Addr::new(10, 77, 0, 11), Some("On lan0".to_owned()))]
    );
    assert!(on0.searches() >= 1);
    assert_eq!(
        on1.searches(),
        0,
        "lan1's device heard lan0's search: {:?}",
        on1.lines()
    );
}
