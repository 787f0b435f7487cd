//! The blocker's state machine without root: a recording fake of the machine's network and of `nft`, a real
//! sled store in a temporary directory.

use std::collections::HashMap;
use std::future::Future;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost_cloud_link::control::{codes, BlockMethod, DeviceRef};
use outpost_cloud_link::protocol::Platform;
use pnet_datalink::MacAddr;

use super::arp_pause::DEAD_MAC;
use super::*;
use crate::config::{BlockingConfig, InterfaceConfig};
use crate::discovery::arp::{self, Arp, Local};
use crate::discovery::datalink::{InterfaceInfo, LinkError};
use crate::store::Store;

const LOCAL: Local = Local {
    mac: MacAddr(0x02, 0, 0, 0, 0, 1),
    ip: Ipv4Addr::new(10, 0, 0, 2),
};
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const GATEWAY_MAC: MacAddr = MacAddr(0x00, 0x1a, 0x11, 0, 0, 1);
const TARGET: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 20);
const TARGET_MAC: &str = "00:1a:11:00:00:20";
const OTHER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 21);

fn target() -> DeviceRef {
    DeviceRef::new(TARGET_MAC, None).unwrap()
}

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

/// The machine's network as a test wants it, recording every frame sent.
#[derive(Default)]
struct FakeNet {
    interfaces: HashMap<String, InterfaceInfo>,
    default_gateways: HashMap<String, Ipv4Addr>,
    /// Who answers ARP for an address.
    answers: Mutex<HashMap<Ipv4Addr, MacAddr>>,
    own_macs: Vec<MacAddr>,
    sent: Mutex<Vec<(String, Vec<u8>)>>,
    fail_send: AtomicBool,
}

impl FakeNet {
    /// `lan0` (10.0.0.0/24, the box at .2) with the gateway .1 and the target .20 answering ARP.
    fn lan() -> Self {
        let mut net = FakeNet::default();
        net.interfaces.insert(
            "lan0".into(),
            InterfaceInfo {
                local: LOCAL,
                network: Cidr::containing(LOCAL.ip, 24),
            },
        );
        net.default_gateways.insert("lan0".into(), GATEWAY);
        net.own_macs.push(LOCAL.mac);
        net.answers
            .lock()
            .unwrap()
            .extend([(GATEWAY, GATEWAY_MAC), (TARGET, mac(TARGET_MAC))]);
        net
    }

    /// What was sent, decoded: (interface, Ethernet destination, ARP).
    fn take(&self) -> Vec<(String, MacAddr, Arp)> {
        std::mem::take(&mut *self.sent.lock().unwrap())
            .into_iter()
            .map(|(iface, f)| {
                let dst = MacAddr(f[0], f[1], f[2], f[3], f[4], f[5]);
                (iface, dst, arp::parse(&f).expect("an ARP frame"))
            })
            .collect()
    }
}

impl Net for FakeNet {
    fn interface(&self, iface: &str) -> Result<InterfaceInfo, LinkError> {
        self.interfaces
            .get(iface)
            .copied()
            .ok_or_else(|| LinkError::NoSuchInterface(iface.to_owned()))
    }
    fn own_macs(&self) -> Vec<MacAddr> {
        self.own_macs.clone()
    }
    fn default_gateway(&self, iface: &str) -> Option<Ipv4Addr> {
        self.default_gateways.get(iface).copied()
    }
    fn resolve(
        &self,
        iface: &str,
        ip: Ipv4Addr,
        _: Duration,
    ) -> Result<Option<MacAddr>, LinkError> {
        self.interface(iface)?;
        Ok(self.answers.lock().unwrap().get(&ip).copied())
    }
    fn send(&self, iface: &str, frames: &[Vec<u8>]) -> Result<(), LinkError> {
        if self.fail_send.load(Ordering::Relaxed) {
            return Err(LinkError::PermissionDenied(iface.to_owned()));
        }
        let mut sent = self.sent.lock().unwrap();
        sent.extend(frames.iter().map(|f| (iface.to_owned(), f.clone())));
        Ok(())
    }
}

/// `nft` that records every script, and refuses while `fail` is set.
#[derive(Default)]
struct FakeNft {
    scripts: Mutex<Vec<String>>,
    fail: AtomicBool,
}

impl FakeNft {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.scripts.lock().unwrap())
    }
}

impl Nft for FakeNft {
    fn apply<'a>(
        &'a self,
        script: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), BlockError>> + Send + 'a>> {
        Box::pin(async move {
            if self.fail.load(Ordering::Relaxed) {
                return Err(BlockError::Firewall {
                    stderr: "Error: Could not process rule: Operation not permitted".into(),
                });
            }
            self.scripts.lock().unwrap().push(script.to_owned());
            Ok(())
        })
    }
}

/// The inventory, changeable by the test.
#[derive(Clone, Default)]
struct Inventory(Arc<Mutex<HashMap<DeviceRef, Located>>>);

impl Inventory {
    fn with_target() -> Self {
        let inv = Inventory::default();
        inv.set(&target(), "lan0", Some(TARGET), &[]);
        inv
    }
    fn set(&self, device: &DeviceRef, iface: &str, ipv4: Option<Ipv4Addr>, ipv6: &[&str]) {
        self.0.lock().unwrap().insert(
            device.clone(),
            Located {
                interface: iface.into(),
                ipv4,
                ipv6: ipv6.iter().map(|a| a.parse().unwrap()).collect(),
            },
        );
    }
    fn lookup(&self) -> Lookup {
        let inv = self.clone();
        Arc::new(move |d: &DeviceRef| inv.0.lock().unwrap().get(d).cloned())
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    store: Store,
    net: Arc<FakeNet>,
    nft: Arc<FakeNft>,
    inventory: Inventory,
    config: BlockingConfig,
    interfaces: Vec<InterfaceConfig>,
}

impl Rig {
    fn new(net: FakeNet) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        Rig {
            _dir: dir,
            store,
            net: Arc::new(net),
            nft: Arc::new(FakeNft::default()),
            inventory: Inventory::with_target(),
            config: BlockingConfig {
                // The tests tick by hand.
                repeat: Duration::from_secs(3600),
                restore_replies: 2,
                nft: "nft".into(),
            },
            interfaces: vec![InterfaceConfig::named("lan0")],
        }
    }

    async fn start(&self, platform: Platform) -> Arc<Blocker> {
        Blocker::start_with(
            platform,
            self.config.clone(),
            self.interfaces.clone(),
            self.store.clone(),
            self.inventory.lookup(),
            self.net.clone(),
            self.nft.clone(),
        )
        .await
        .unwrap()
    }
}

/// The four poison frames of a pause of `ip` at `target_mac` behind the gateway.
fn assert_poison(sent: &[(String, MacAddr, Arp)], ip: Ipv4Addr) {
    let target_mac = mac(TARGET_MAC);
    let expected = [
        (
            target_mac,
            Arp::Request {
                sender_mac: DEAD_MAC,
                sender_ip: GATEWAY,
                target_ip: ip,
            },
        ),
        (
            target_mac,
            Arp::Reply {
                sender_mac: DEAD_MAC,
                sender_ip: GATEWAY,
                target_mac: DEAD_MAC,
                target_ip: GATEWAY,
            },
        ),
        (
            GATEWAY_MAC,
            Arp::Request {
                sender_mac: DEAD_MAC,
                sender_ip: ip,
                target_ip: GATEWAY,
            },
        ),
        (
            GATEWAY_MAC,
            Arp::Reply {
                sender_mac: DEAD_MAC,
                sender_ip: ip,
                target_mac: DEAD_MAC,
                target_ip: ip,
            },
        ),
    ];
    let got: Vec<(MacAddr, Arp)> = sent.iter().map(|(_, d, a)| (*d, *a)).collect();
    assert_eq!(got, expected);
    assert!(sent.iter().all(|(i, _, _)| i == "lan0"));
}

#[tokio::test]
async fn a_box_block_pauses_both_sides_is_stored_and_is_idempotent() {
    let rig = Rig::new(FakeNet::lan());
    let blocker = rig.start(Platform::Box).await;
    let mut changes = blocker.changes();
    changes.borrow_and_update();

    let record = blocker.block(&target(), None, 1_000).await.unwrap();
    assert_eq!(record.device, target());
    assert_eq!(record.interface, "lan0");
    assert_eq!(record.method, BlockMethod::ArpPause);
    assert_eq!(record.ipv4, Some(TARGET));
    assert_eq!(record.since_ms, 1_000);
    assert_eq!(rig.store.blocks().unwrap(), std::slice::from_ref(&record));
    assert_eq!(blocker.blocks(), std::slice::from_ref(&record));
    assert!(changes.has_changed().unwrap());
    changes.borrow_and_update();
    assert_poison(&rig.net.take(), TARGET);

    // Again: the same record, nothing sent, nothing changed.
    assert_eq!(blocker.block(&target(), None, 2_000).await.unwrap(), record);
    assert!(rig.net.take().is_empty());
    assert!(!changes.has_changed().unwrap());

    // Every repeat sends the pause again.
    blocker.tick().await;
    assert_poison(&rig.net.take(), TARGET);
}

#[tokio::test]
async fn a_box_unblock_restores_both_caches_and_forgets_the_block() {
    let rig = Rig::new(FakeNet::lan());
    let blocker = rig.start(Platform::Box).await;
    blocker.block(&target(), None, 1).await.unwrap();
    rig.net.take();

    assert!(blocker.unblock(&target()).await.unwrap());
    let sent = rig.net.take();
    // restore_replies = 2 rounds, one true reply to each side per round.
    assert_eq!(sent.len(), 4);
    for pair in sent.chunks(2) {
        assert_eq!(pair[0].1, mac(TARGET_MAC));
        assert_eq!(
            pair[0].2,
            Arp::Reply {
                sender_mac: GATEWAY_MAC,
                sender_ip: GATEWAY,
                target_mac: GATEWAY_MAC,
                target_ip: GATEWAY,
            }
        );
        assert_eq!(pair[1].1, GATEWAY_MAC);
        assert_eq!(
            pair[1].2,
            Arp::Reply {
                sender_mac: mac(TARGET_MAC),
                sender_ip: TARGET,
                target_mac: mac(TARGET_MAC),
                target_ip: TARGET,
            }
        );
    }
    assert!(blocker.blocks().is_empty());
    assert!(rig.store.blocks().unwrap().is_empty());
    // Nothing is paused any more, and a second unblock is not an error.
    blocker.tick().await;
    assert!(rig.net.take().is_empty());
    assert!(!blocker.unblock(&target()).await.unwrap());
}

#[tokio::test]
async fn refusals_say_why_with_their_code_and_store_nothing() {
    // A generic host refuses whatever the device.
    let rig = Rig::new(FakeNet::lan());
    let linux = rig.start(Platform::Linux).await;
    let err = linux.block(&target(), None, 1).await.unwrap_err();
    assert_eq!(err.code(), codes::BLOCKING_UNSUPPORTED_PLATFORM);

    type Setup = Box<dyn Fn(&mut Rig)>;
    let cases: Vec<(&str, Setup, &str)> = vec![
        (
            "tagged",
            Box::new(|rig: &mut Rig| {
                rig.interfaces = vec![InterfaceConfig {
                    vlan: Some(20),
                    tagged: true,
                    ..InterfaceConfig::named("lan0")
                }];
            }),
            codes::VLAN_TAGGED_UNBLOCKABLE,
        ),
        (
            "no gateway",
            Box::new(|rig: &mut Rig| {
                let mut net = FakeNet::lan();
                net.default_gateways.clear();
                rig.net = Arc::new(net);
            }),
            codes::GATEWAY_UNKNOWN,
        ),
        (
            "silent gateway",
            Box::new(|rig: &mut Rig| {
                rig.interfaces = vec![InterfaceConfig {
                    gateway: Some(Ipv4Addr::new(10, 0, 0, 254)),
                    ..InterfaceConfig::named("lan0")
                }];
            }),
            codes::GATEWAY_UNKNOWN,
        ),
        (
            "the gateway's address",
            Box::new(|rig: &mut Rig| rig.inventory.set(&target(), "lan0", Some(GATEWAY), &[])),
            codes::DEVICE_IS_GATEWAY,
        ),
        (
            "the gateway's MAC",
            Box::new(|rig: &mut Rig| {
                let net = FakeNet::lan();
                net.answers.lock().unwrap().insert(GATEWAY, mac(TARGET_MAC));
                rig.net = Arc::new(net);
            }),
            codes::DEVICE_IS_GATEWAY,
        ),
        (
            "the agent's address",
            Box::new(|rig: &mut Rig| rig.inventory.set(&target(), "lan0", Some(LOCAL.ip), &[])),
            codes::DEVICE_IS_GATEWAY,
        ),
        (
            "unknown and no hint",
            Box::new(|rig: &mut Rig| rig.inventory = Inventory::default()),
            codes::DEVICE_UNKNOWN,
        ),
        (
            "no address",
            Box::new(|rig: &mut Rig| rig.inventory.set(&target(), "lan0", None, &[])),
            codes::DEVICE_UNKNOWN,
        ),
        (
            "its address answers from another MAC",
            Box::new(|rig: &mut Rig| {
                let net = FakeNet::lan();
                net.answers
                    .lock()
                    .unwrap()
                    .insert(TARGET, mac("00:1a:11:00:00:99"));
                rig.net = Arc::new(net);
            }),
            codes::DEVICE_UNKNOWN,
        ),
    ];
    for (what, setup, code) in cases {
        let mut rig = Rig::new(FakeNet::lan());
        // Unknown to the inventory, a device is placed by its VLAN: two interfaces leave it ambiguous.
        rig.interfaces.push(InterfaceConfig::named("lan1"));
        setup(&mut rig);
        let blocker = rig.start(Platform::Box).await;
        let err = blocker.block(&target(), None, 1).await.unwrap_err();
        assert_eq!(err.code(), code, "{what}: {err}");
        assert!(
            err.to_string().len() > 40,
            "{what}: a sentence, not a word: {err}"
        );
        assert!(rig.store.blocks().unwrap().is_empty(), "{what}");
        assert!(blocker.blocks().is_empty(), "{what}");
        assert!(rig.net.take().is_empty(), "{what}: nothing may be sent");
    }
}

#[tokio::test]
async fn the_tagged_refusal_and_the_gateway_sentence_tell_the_user_what_to_do() {
    let mut rig = Rig::new(FakeNet::lan());
    rig.interfaces = vec![InterfaceConfig {
        vlan: Some(20),
        tagged: true,
        ..InterfaceConfig::named("trunk.20")
    }];
    rig.inventory = Inventory::default();
    let device = DeviceRef::new(TARGET_MAC, Some(20)).unwrap();
    let blocker = rig.start(Platform::Box).await;
    // Unknown to the inventory, but its VLAN is the tagged one: refused before anything else.
    let err = blocker.block(&device, Some(TARGET), 1).await.unwrap_err();
    assert_eq!(err.code(), codes::VLAN_TAGGED_UNBLOCKABLE);
    assert!(err.to_string().contains("router"), "{err}");

    let mut net = FakeNet::lan();
    net.default_gateways.clear();
    let rig = Rig::new(net);
    let blocker = rig.start(Platform::Box).await;
    let err = blocker.block(&target(), None, 1).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("set gateway = \"A.B.C.D\" for the interface lan0"),
        "{err}"
    );
}

#[tokio::test]
async fn the_portals_address_is_used_when_the_inventory_has_none() {
    let mut rig = Rig::new(FakeNet::lan());
    rig.inventory = Inventory::default();
    rig.interfaces = vec![
        InterfaceConfig {
            gateway: Some(GATEWAY),
            ..InterfaceConfig::named("lan0")
        },
        InterfaceConfig::named("lan1"),
    ];
    let blocker = rig.start(Platform::Box).await;
    // lan0's network holds the portal's address; lan1 is not even up.
    let record = blocker.block(&target(), Some(TARGET), 5).await.unwrap();
    assert_eq!(
        (record.interface.as_str(), record.ipv4),
        ("lan0", Some(TARGET))
    );
    assert_poison(&rig.net.take(), TARGET);
}

#[tokio::test]
async fn a_restart_applies_the_stored_blocks_again_and_stop_restores_but_keeps_them() {
    let rig = Rig::new(FakeNet::lan());
    let first = rig.start(Platform::Box).await;
    let record = first.block(&target(), None, 7).await.unwrap();
    rig.net.take();

    // SIGTERM: the caches are given back, the record stays.
    first.stop().await;
    let sent = rig.net.take();
    assert_eq!(sent.len(), 4, "{sent:?}");
    assert!(sent
        .iter()
        .all(|(_, _, a)| matches!(a, Arp::Reply { sender_mac, .. } if *sender_mac != DEAD_MAC)));
    assert_eq!(first.blocks(), std::slice::from_ref(&record));
    assert_eq!(rig.store.blocks().unwrap(), std::slice::from_ref(&record));
    // A stopped blocker pauses nothing any more.
    first.tick().await;
    assert!(rig.net.take().is_empty());
    drop(first);

    // The next start pauses the device again before it returns.
    let second = rig.start(Platform::Box).await;
    assert_eq!(second.blocks(), std::slice::from_ref(&record));
    assert_poison(&rig.net.take(), TARGET);
    assert!(second.unblock(&target()).await.unwrap());
    assert!(rig.store.blocks().unwrap().is_empty());
}

#[tokio::test]
async fn a_stored_block_that_cannot_be_applied_at_start_is_retried_every_repeat() {
    let rig = Rig::new(FakeNet::lan());
    let first = rig.start(Platform::Box).await;
    first.block(&target(), None, 7).await.unwrap();
    drop(first);
    rig.net.answers.lock().unwrap().remove(&GATEWAY);
    rig.net.take();

    let blocker = rig.start(Platform::Box).await;
    assert_eq!(blocker.blocks().len(), 1, "kept, though not applied");
    assert!(rig.net.take().is_empty());
    blocker.tick().await;
    assert!(rig.net.take().is_empty());
    rig.net.answers.lock().unwrap().insert(GATEWAY, GATEWAY_MAC);
    blocker.tick().await;
    assert_poison(&rig.net.take(), TARGET);
}

#[tokio::test]
async fn the_pause_follows_a_new_address_and_the_record_says_what_is_uncovered() {
    let rig = Rig::new(FakeNet::lan());
    rig.inventory.set(
        &target(),
        "lan0",
        Some(TARGET),
        &["fe80::20", "2001:db8::20"],
    );
    let blocker = rig.start(Platform::Box).await;
    let record = blocker.block(&target(), None, 1).await.unwrap();
    assert_eq!(
        record.ipv6_uncovered,
        ["2001:db8::20".parse::<Ipv6Addr>().unwrap()]
    );
    rig.net.take();
    let mut changes = blocker.changes();
    changes.borrow_and_update();

    // Nothing new: the same record, nothing reported.
    blocker.tick().await;
    assert!(!changes.has_changed().unwrap());
    rig.net.take();

    rig.inventory
        .set(&target(), "lan0", Some(OTHER), &["2001:db8::21"]);
    rig.net
        .answers
        .lock()
        .unwrap()
        .insert(OTHER, mac(TARGET_MAC));
    blocker.tick().await;
    assert!(changes.has_changed().unwrap());
    let now = blocker.blocks();
    assert_eq!(now[0].ipv4, Some(OTHER));
    assert_eq!(
        now[0].ipv6_uncovered,
        ["2001:db8::21".parse::<Ipv6Addr>().unwrap()]
    );
    assert_eq!(now[0].since_ms, 1);
    assert_eq!(rig.store.blocks().unwrap(), now);
    assert_poison(&rig.net.take(), OTHER);
}

#[tokio::test]
async fn unblock_all_restores_every_device_and_forgets_them() {
    let rig = Rig::new(FakeNet::lan());
    let second = DeviceRef::new("00:1a:11:00:00:21", None).unwrap();
    rig.inventory.set(&second, "lan0", Some(OTHER), &[]);
    rig.net
        .answers
        .lock()
        .unwrap()
        .insert(OTHER, mac("00:1a:11:00:00:21"));
    let blocker = rig.start(Platform::Box).await;
    blocker.block(&target(), None, 1).await.unwrap();
    blocker.block(&second, None, 1).await.unwrap();
    rig.net.take();

    blocker.unblock_all().await.unwrap();
    // Two devices, two rounds, two sides.
    assert_eq!(rig.net.take().len(), 8);
    assert!(blocker.blocks().is_empty());
    assert!(rig.store.blocks().unwrap().is_empty());
}

#[tokio::test]
async fn a_send_failure_is_logged_and_the_block_still_holds() {
    let rig = Rig::new(FakeNet::lan());
    let blocker = rig.start(Platform::Box).await;
    rig.net.fail_send.store(true, Ordering::Relaxed);
    blocker.block(&target(), None, 1).await.unwrap();
    blocker.tick().await;
    rig.net.fail_send.store(false, Ordering::Relaxed);
    blocker.tick().await;
    assert_poison(&rig.net.take(), TARGET);
}

#[tokio::test]
async fn a_router_keeps_its_table_in_step_with_the_blocks() {
    let rig = Rig::new(FakeNet::lan());
    rig.inventory.set(
        &target(),
        "lan0",
        Some(TARGET),
        &["2001:db8::20", "fe80::20"],
    );
    let blocker = rig.start(Platform::Router).await;
    // Start creates the (empty) table, replacing any older one.
    let scripts = rig.nft.take();
    assert_eq!(scripts.len(), 1);
    assert!(scripts[0].starts_with("add table inet outpost\ndelete table inet outpost\n"));
    assert!(!scripts[0].contains("add element"));

    let record = blocker.block(&target(), None, 3).await.unwrap();
    assert_eq!(record.method, BlockMethod::Nftables);
    assert_eq!(record.ipv4, Some(TARGET));
    assert!(record.ipv6_uncovered.is_empty(), "the router covers IPv6");
    assert_eq!(rig.store.blocks().unwrap(), std::slice::from_ref(&record));
    let scripts = rig.nft.take();
    assert_eq!(scripts.len(), 1, "one transaction per change");
    let s = &scripts[0];
    assert!(!s.contains("delete table"), "{s}");
    assert!(
        s.contains("add element inet outpost blocked_macs { 00:1a:11:00:00:20 }"),
        "{s}"
    );
    assert!(
        s.contains("add element inet outpost blocked_ipv4 { 10.0.0.20 }"),
        "{s}"
    );
    assert!(
        s.contains("add element inet outpost blocked_ipv6 { 2001:db8::20 }"),
        "{s}"
    );
    // Idempotent: nothing changes.
    assert_eq!(blocker.block(&target(), None, 4).await.unwrap(), record);
    assert!(rig.nft.take().is_empty());

    // The device's address changes: the set follows at the next repeat.
    rig.inventory.set(&target(), "lan0", Some(OTHER), &[]);
    blocker.tick().await;
    let scripts = rig.nft.take();
    assert_eq!(scripts.len(), 1);
    assert!(
        scripts[0].contains("blocked_ipv4 { 10.0.0.21 }"),
        "{}",
        scripts[0]
    );
    assert!(
        !scripts[0].contains("add element inet outpost blocked_ipv6"),
        "{}",
        scripts[0]
    );
    blocker.tick().await;
    assert!(rig.nft.take().is_empty(), "no change, no transaction");

    assert!(blocker.unblock(&target()).await.unwrap());
    let scripts = rig.nft.take();
    assert_eq!(scripts.len(), 1);
    assert!(!scripts[0].contains("add element"), "{}", scripts[0]);
    assert!(rig.store.blocks().unwrap().is_empty());
    assert!(!blocker.unblock(&target()).await.unwrap());
}

#[tokio::test]
async fn a_router_refusal_by_nft_stores_nothing_and_names_nfts_complaint() {
    let rig = Rig::new(FakeNet::lan());
    let blocker = rig.start(Platform::Router).await;
    rig.nft.fail.store(true, Ordering::Relaxed);
    let err = blocker.block(&target(), None, 1).await.unwrap_err();
    assert_eq!(err.code(), codes::FIREWALL_FAILED);
    assert!(err.to_string().contains("Operation not permitted"), "{err}");
    assert!(blocker.blocks().is_empty());
    assert!(rig.store.blocks().unwrap().is_empty());

    // An unblock nft refuses keeps the block (the kernel still enforces it).
    rig.nft.fail.store(false, Ordering::Relaxed);
    blocker.block(&target(), None, 1).await.unwrap();
    rig.nft.fail.store(true, Ordering::Relaxed);
    assert_eq!(
        blocker.unblock(&target()).await.unwrap_err().code(),
        codes::FIREWALL_FAILED
    );
    assert_eq!(blocker.blocks().len(), 1);
    assert_eq!(rig.store.blocks().unwrap().len(), 1);
}

#[tokio::test]
async fn a_router_restart_fills_the_table_stop_leaves_it_and_cleanup_removes_it() {
    let rig = Rig::new(FakeNet::lan());
    let unknown = DeviceRef::new("00:1a:11:00:00:77", Some(30)).unwrap();
    let first = rig.start(Platform::Router).await;
    first.block(&target(), None, 1).await.unwrap();
    // A device the inventory never saw is blocked by its MAC (and the portal's address).
    let record = first.block(&unknown, Some(OTHER), 2).await.unwrap();
    assert_eq!(record.interface, ANY_INTERFACE);
    first.stop().await;
    rig.nft.take();
    drop(first);

    let second = rig.start(Platform::Router).await;
    let scripts = rig.nft.take();
    assert_eq!(scripts.len(), 1);
    assert!(scripts[0].starts_with("add table inet outpost\ndelete table inet outpost\n"));
    assert!(
        scripts[0].contains("blocked_macs { 00:1a:11:00:00:20, 00:1a:11:00:00:77 }"),
        "{}",
        scripts[0]
    );
    assert!(
        scripts[0].contains("blocked_ipv4 { 10.0.0.20, 10.0.0.21 }"),
        "{}",
        scripts[0]
    );

    // The router's own MAC is refused.
    let own = DeviceRef::new(&LOCAL.mac.to_string(), None).unwrap();
    assert_eq!(
        second.block(&own, None, 1).await.unwrap_err().code(),
        codes::DEVICE_IS_GATEWAY
    );

    second.unblock_all().await.unwrap();
    assert_eq!(rig.nft.take(), [nftables::remove_script()]);
    assert!(rig.store.blocks().unwrap().is_empty());
    assert!(second.blocks().is_empty());
}

#[tokio::test]
async fn a_failed_table_at_start_is_retried_every_repeat() {
    let rig = Rig::new(FakeNet::lan());
    rig.nft.fail.store(true, Ordering::Relaxed);
    let blocker = rig.start(Platform::Router).await;
    rig.nft.fail.store(false, Ordering::Relaxed);
    blocker.tick().await;
    assert_eq!(rig.nft.take().len(), 1);
    blocker.tick().await;
    assert!(rig.nft.take().is_empty());
}

#[tokio::test]
async fn a_platform_change_applies_the_stored_blocks_the_new_way() {
    let rig = Rig::new(FakeNet::lan());
    rig.inventory
        .set(&target(), "lan0", Some(TARGET), &["2001:db8::20"]);
    let boxed = rig.start(Platform::Box).await;
    boxed.block(&target(), None, 1).await.unwrap();
    drop(boxed);
    let router = rig.start(Platform::Router).await;
    let now = router.blocks();
    assert_eq!(now[0].method, BlockMethod::Nftables);
    assert!(now[0].ipv6_uncovered.is_empty());
    assert_eq!(rig.store.blocks().unwrap(), now);
    drop(router);
    // A generic host applies nothing and reports nothing, but keeps the records.
    let linux = rig.start(Platform::Linux).await;
    assert!(linux.blocks().is_empty());
    assert_eq!(rig.store.blocks().unwrap().len(), 1);
}

#[test]
fn the_blocker_can_be_shared_between_tasks() {
    fn shared<T: Send + Sync>() {}
    shared::<Blocker>();
}
