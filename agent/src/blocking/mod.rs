//! Pausing a device's internet access, the way the agent's platform allows:
//!
//! - `box` (a device on the LAN, not its gateway): ARP pausing ([`arp_pause`]): the device and its gateway
//!   are told that each other's IPv4 address is at a MAC that goes nowhere, again every `blocking.repeat`;
//!   when the block ends both are given the true mappings back. The box never forwards the paused traffic
//!   (see [`arp_pause`]). Devices on `tagged = true` interfaces are refused: the box is not in their
//!   broadcast domain the way it is on its native LAN.
//! - `router` (the agent runs on the gateway): the `inet outpost` nftables table ([`nftables`]), whose sets
//!   of MACs, IPv4 and IPv6 addresses are dropped in the forward hook, on every interface and VLAN.
//! - `linux`: refused (a generic host neither routes the LAN nor should pause its devices).
//!
//! The stored records (sled, `data` tree, `block/`) are the truth: [`Blocker::start`] applies them again,
//! a block is stored before it is acknowledged, an unblock forgets it. Every `repeat` the blocker also asks
//! the inventory ([`Lookup`]) where each blocked device is now and follows a new address (the record changes
//! and [`Blocker::changes`] is bumped, so the link reports the blocks again).
//!
//! Modules: [`arp_pause`] (box frames and planning), [`nftables`] (router table, `nft` runner),
//! [`gateway`] (the default route's gateway), [`net`] (the machine's network behind a trait), [`error`],
//! `upkeep` (start and the repeat: following the inventory, pausing again, keeping the table in step).

pub mod arp_pause;
pub mod error;
pub mod gateway;
pub mod net;
pub mod nftables;
#[cfg(test)]
mod tests;
mod upkeep;

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use outpost_cloud_link::control::{BlockMethod, BlockRecord, DeviceRef};
use outpost_cloud_link::protocol::Platform;
use pnet_datalink::MacAddr;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::config::{BlockingConfig, InterfaceConfig};
use crate::discovery::sweep::Cidr;
use crate::store::Store;
use arp_pause::{routable_ipv6, Plan};
pub use error::BlockError;
pub use net::{Net, SystemNet};
pub use nftables::{Nft, NftProgram};

/// The inventory as the blocker sees it: where a device is now, if the agent knows it.
pub type Lookup = Arc<dyn Fn(&DeviceRef) -> Option<Located> + Send + Sync>;

/// What the inventory knows about a device now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Located {
    /// The interface the device was seen on.
    pub interface: String,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
}

/// The `interface` of a router's record for a device the inventory has not seen: the table applies to
/// every interface the router routes.
pub const ANY_INTERFACE: &str = "any";

/// Pause between two rounds of restoring replies.
const RESTORE_GAP: Duration = Duration::from_millis(100);

/// One blocked device.
#[derive(Debug, Clone)]
struct Entry {
    record: BlockRecord,
    /// Box: the pause last applied (what a restore gives back); `None` until one could be planned.
    plan: Option<Plan>,
    /// Box: the device's address or interface changed: plan again at the next repeat.
    replan: bool,
    /// Router: the device's routable IPv6 addresses in the IPv6 set.
    ipv6: Vec<Ipv6Addr>,
    /// Why the pause could not be applied, as last logged (logged again only when it changes).
    problem: Option<String>,
}

impl Entry {
    fn new(record: BlockRecord) -> Self {
        Self {
            record,
            plan: None,
            replan: false,
            ipv6: Vec::new(),
            problem: None,
        }
    }
}

/// Blocks and unblocks devices; shared behind an `Arc` by the command runner and the link.
pub struct Blocker {
    platform: Platform,
    config: BlockingConfig,
    interfaces: Vec<InterfaceConfig>,
    store: Store,
    lookup: Lookup,
    net: Arc<dyn Net>,
    nft: Arc<dyn Nft>,
    entries: Mutex<BTreeMap<DeviceRef, Entry>>,
    /// One change at a time: block, unblock, the repeat, stop.
    ops: tokio::sync::Mutex<()>,
    /// Router: the kernel's table may differ from the records (a transaction failed): sync at the next repeat.
    nft_dirty: AtomicBool,
    /// `stop` ran: the repeat no longer pauses anything.
    stopped: AtomicBool,
    /// Box: the last send error per interface, logged once.
    send_problems: Mutex<HashMap<String, String>>,
    changes: watch::Sender<u64>,
    repeater: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Blocker {
    /// Loads the persisted blocks from `store` and applies them again (box: starts pausing; router:
    /// (re)creates the `inet outpost` table with the sets filled). Problems applying are logged, not fatal.
    pub async fn start(
        platform: Platform,
        config: BlockingConfig,
        interfaces: Vec<InterfaceConfig>,
        store: Store,
        lookup: Lookup,
    ) -> Result<Arc<Blocker>, BlockError> {
        let nft = Arc::new(NftProgram {
            program: config.nft.clone(),
        });
        Self::start_with(
            platform,
            config,
            interfaces,
            store,
            lookup,
            Arc::new(SystemNet),
            nft,
        )
        .await
    }

    /// [`Blocker::start`] with the machine's network and the nft runner given (fakes in tests).
    pub async fn start_with(
        platform: Platform,
        config: BlockingConfig,
        interfaces: Vec<InterfaceConfig>,
        store: Store,
        lookup: Lookup,
        net: Arc<dyn Net>,
        nft: Arc<dyn Nft>,
    ) -> Result<Arc<Blocker>, BlockError> {
        let records = store.blocks()?;
        let mut entries = BTreeMap::new();
        match method_of(platform) {
            None if !records.is_empty() => warn!(
                platform = %platform,
                blocks = records.len(),
                "stored blocks are not applied: this platform cannot block (set platform = \"box\" or \"router\"); \
                 a cleanup forgets them"
            ),
            None => {}
            Some(method) => {
                for mut record in records {
                    if record.method != method {
                        info!(device = %record.device, from = ?record.method, to = ?method,
                            "the platform changed: the stored block is applied the new way");
                        record.method = method;
                        if method == BlockMethod::Nftables {
                            record.ipv6_uncovered.clear();
                        }
                        if let Err(e) = store.put_block(&record) {
                            warn!(device = %record.device, error = %e, "cannot update the stored block");
                        }
                    }
                    entries.insert(record.device.clone(), Entry::new(record));
                }
            }
        }
        let blocker = Arc::new(Blocker {
            platform,
            interfaces,
            store,
            lookup,
            net,
            nft,
            entries: Mutex::new(entries),
            ops: tokio::sync::Mutex::new(()),
            nft_dirty: AtomicBool::new(platform == Platform::Router),
            stopped: AtomicBool::new(false),
            send_problems: Mutex::new(HashMap::new()),
            changes: watch::Sender::new(0),
            repeater: Mutex::new(None),
            config,
        });
        info!(
            platform = %platform,
            blocks = blocker.blocks().len(),
            repeat_ms = blocker.config.repeat.as_millis() as u64,
            "blocking ready; applying the stored blocks"
        );
        if platform != Platform::Linux {
            blocker.apply_stored().await;
            let weak = Arc::downgrade(&blocker);
            let every = blocker.config.repeat;
            *lock(&blocker.repeater) = Some(tokio::spawn(upkeep::repeat(weak, every)));
        }
        Ok(blocker)
    }

    /// Blocks `device`. Idempotent (a blocked device answers its record). `hint_ipv4`: the portal's last
    /// known IPv4 when the inventory has none. Persists the record before returning `Ok`.
    pub async fn block(
        &self,
        device: &DeviceRef,
        hint_ipv4: Option<Ipv4Addr>,
        now_ms: i64,
    ) -> Result<BlockRecord, BlockError> {
        let Some(method) = method_of(self.platform) else {
            return Err(BlockError::UnsupportedPlatform);
        };
        let _op = self.ops.lock().await;
        if let Some(e) = lock(&self.entries).get(device) {
            debug!(device = %device, "already blocked");
            return Ok(e.record.clone());
        }
        let located = (self.lookup)(device);
        match method {
            BlockMethod::ArpPause => self.block_box(device, located, hint_ipv4, now_ms).await,
            BlockMethod::Nftables => self.block_router(device, located, hint_ipv4, now_ms).await,
        }
    }

    async fn block_box(
        &self,
        device: &DeviceRef,
        located: Option<Located>,
        hint_ipv4: Option<Ipv4Addr>,
        now_ms: i64,
    ) -> Result<BlockRecord, BlockError> {
        let ipv4 = located.as_ref().and_then(|l| l.ipv4).or(hint_ipv4);
        let iface = self
            .choose_interface(device, located.as_ref(), ipv4)
            .ok_or_else(|| BlockError::NotLocated {
                device: device.clone(),
            })?;
        if iface.tagged {
            return Err(BlockError::TaggedVlan {
                device: device.clone(),
                interface: iface.name.clone(),
                vlan: iface.vlan.or(device.vlan).unwrap_or(0),
            });
        }
        let ipv4 = ipv4.ok_or_else(|| BlockError::NoIpv4 {
            device: device.clone(),
            interface: iface.name.clone(),
        })?;
        let plan = self.plan(iface.clone(), device.clone(), ipv4, true).await?;
        let record = BlockRecord {
            device: device.clone(),
            interface: iface.name.clone(),
            method: BlockMethod::ArpPause,
            ipv4: Some(ipv4),
            ipv6_uncovered: located
                .as_ref()
                .map(|l| routable_ipv6(&l.ipv6))
                .unwrap_or_default(),
            since_ms: now_ms,
        };
        self.store.put_block(&record)?;
        let mut entry = Entry::new(record.clone());
        entry.plan = Some(plan.clone());
        lock(&self.entries).insert(device.clone(), entry);
        self.send(&plan.interface, plan.poison()).await;
        info!(
            device = %device,
            interface = %plan.interface,
            ipv4 = %ipv4,
            gateway = %plan.gateway_ip,
            gateway_mac = %plan.gateway_mac,
            ipv6_uncovered = record.ipv6_uncovered.len(),
            "device paused by ARP"
        );
        self.bump();
        Ok(record)
    }

    async fn block_router(
        &self,
        device: &DeviceRef,
        located: Option<Located>,
        hint_ipv4: Option<Ipv4Addr>,
        now_ms: i64,
    ) -> Result<BlockRecord, BlockError> {
        let mac: MacAddr = device.mac.parse().map_err(|_| BlockError::NotLocated {
            device: device.clone(),
        })?;
        if self.net.own_macs().contains(&mac) {
            return Err(BlockError::IsAgent {
                device: device.clone(),
                what: format!("{mac} is one of the router's MACs"),
            });
        }
        let interface = located
            .as_ref()
            .map(|l| l.interface.clone())
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| ANY_INTERFACE.to_owned());
        let record = BlockRecord {
            device: device.clone(),
            interface,
            method: BlockMethod::Nftables,
            ipv4: located.as_ref().and_then(|l| l.ipv4).or(hint_ipv4),
            ipv6_uncovered: Vec::new(),
            since_ms: now_ms,
        };
        self.store.put_block(&record)?;
        let mut entry = Entry::new(record.clone());
        entry.ipv6 = located
            .as_ref()
            .map(|l| routable_ipv6(&l.ipv6))
            .unwrap_or_default();
        lock(&self.entries).insert(device.clone(), entry);
        if let Err(e) = self.sync_table(false).await {
            lock(&self.entries).remove(device);
            if let Err(store_error) = self.store.remove_block(device) {
                error!(device = %device, error = %store_error, "cannot forget the block that nftables refused");
            }
            return Err(e);
        }
        info!(device = %device, ipv4 = ?record.ipv4, "device blocked in the inet outpost table");
        self.bump();
        Ok(record)
    }

    /// Ends the block of `device`; `Ok(false)` when it was not blocked. Box: restores both ARP caches with
    /// `restore_replies` true replies each side.
    pub async fn unblock(&self, device: &DeviceRef) -> Result<bool, BlockError> {
        let _op = self.ops.lock().await;
        let Some(entry) = lock(&self.entries).get(device).cloned() else {
            return Ok(false);
        };
        match self.platform {
            Platform::Router => {
                lock(&self.entries).remove(device);
                if let Err(e) = self.sync_table(false).await {
                    lock(&self.entries).insert(device.clone(), entry);
                    return Err(e);
                }
                self.store.remove_block(device)?;
                info!(device = %device, "device unblocked in the inet outpost table");
            }
            Platform::Box | Platform::Linux => {
                self.store.remove_block(device)?;
                lock(&self.entries).remove(device);
                if let Some(plan) = entry.plan {
                    self.restore(std::slice::from_ref(&plan)).await;
                }
                info!(device = %device, interface = %entry.record.interface, "device unpaused: ARP caches restored");
            }
        }
        self.bump();
        Ok(true)
    }

    /// Every blocked device's record, ordered by VLAN and MAC.
    pub fn blocks(&self) -> Vec<BlockRecord> {
        lock(&self.entries)
            .values()
            .map(|e| e.record.clone())
            .collect()
    }

    /// Cleanup: lifts every block (restoring caches; a router deletes its table) and forgets them. Keeps
    /// going past failures and returns all of them.
    pub async fn unblock_all(&self) -> Result<(), BlockError> {
        let _op = self.ops.lock().await;
        let entries = std::mem::take(&mut *lock(&self.entries));
        let mut errors = Vec::new();
        match self.platform {
            Platform::Box => {
                let plans: Vec<Plan> = entries.values().filter_map(|e| e.plan.clone()).collect();
                self.restore(&plans).await;
            }
            Platform::Router => match self.nft.apply(&nftables::remove_script()).await {
                Ok(()) => self.nft_dirty.store(false, Ordering::Relaxed),
                Err(e) => {
                    self.nft_dirty.store(true, Ordering::Relaxed);
                    errors.push(e);
                }
            },
            Platform::Linux => {}
        }
        for device in entries.keys() {
            if let Err(e) = self.store.remove_block(device) {
                errors.push(e.into());
            }
        }
        info!(
            blocks = entries.len(),
            failures = errors.len(),
            "every block lifted"
        );
        self.bump();
        BlockError::all(errors)
    }

    /// SIGTERM: a box restores the ARP caches of every blocked device but keeps the records (applied again
    /// at the next start); a router leaves its table in place (the kernel keeps enforcing; `start` replaces
    /// it).
    pub async fn stop(&self) {
        let _op = self.ops.lock().await;
        self.stopped.store(true, Ordering::Relaxed);
        if let Some(task) = lock(&self.repeater).take() {
            task.abort();
        }
        match self.platform {
            Platform::Box => {
                let plans: Vec<Plan> = lock(&self.entries)
                    .values()
                    .filter_map(|e| e.plan.clone())
                    .collect();
                self.restore(&plans).await;
                info!(
                    blocks = plans.len(),
                    "stopping: ARP caches restored; the blocks stay stored and come back at the next start"
                );
            }
            Platform::Router => info!(
                blocks = lock(&self.entries).len(),
                "stopping: the inet outpost table stays; the kernel keeps enforcing the blocks"
            ),
            Platform::Linux => {}
        }
    }

    /// Bumped whenever the set of blocks or a record changes, so the link reports them again.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn bump(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The configuration of interface `name` (defaults when it is not configured).
    fn interface_config(&self, name: &str) -> InterfaceConfig {
        self.interfaces
            .iter()
            .find(|i| i.name == name)
            .cloned()
            .unwrap_or_else(|| InterfaceConfig::named(name))
    }

    /// The interface a box pauses `device` on: where the inventory saw it, else the configured interface of
    /// its VLAN (the one whose network holds `ipv4` when several do).
    fn choose_interface(
        &self,
        device: &DeviceRef,
        located: Option<&Located>,
        ipv4: Option<Ipv4Addr>,
    ) -> Option<InterfaceConfig> {
        if let Some(l) = located.filter(|l| !l.interface.is_empty()) {
            return Some(self.interface_config(&l.interface));
        }
        let same_vlan: Vec<&InterfaceConfig> = self
            .interfaces
            .iter()
            .filter(|i| i.vlan == device.vlan)
            .collect();
        if let Some(ip) = ipv4 {
            let holds = |i: &&&InterfaceConfig| {
                self.net
                    .interface(&i.name)
                    .is_ok_and(|info| contains(info.network, ip))
            };
            if let Some(i) = same_vlan.iter().find(holds) {
                return Some((*i).clone());
            }
        }
        match same_vlan.as_slice() {
            [only] => Some((*only).clone()),
            _ => None,
        }
    }
}

impl Drop for Blocker {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.repeater).take() {
            task.abort();
        }
    }
}

fn method_of(platform: Platform) -> Option<BlockMethod> {
    match platform {
        Platform::Box => Some(BlockMethod::ArpPause),
        Platform::Router => Some(BlockMethod::Nftables),
        Platform::Linux => None,
    }
}

fn contains(network: Cidr, ip: Ipv4Addr) -> bool {
    Cidr::containing(ip, network.prefix) == network
}
