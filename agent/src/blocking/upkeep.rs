//! What keeps the blocks in force between commands: applying the stored blocks at start, and every
//! `blocking.repeat` following each blocked device in the inventory (a new address or interface changes its
//! record, which is stored and reported) and then pausing again (box) or bringing the `inet outpost` table
//! up to date (router, only when something changed or a transaction failed). Also the box's frame sending
//! and restoring, and the router's table synchronisation, which the commands use too.
//!
//! When a paused device moves to a new address, the gateway's poisoned entry for the old address is left to
//! age out by the gateway's own neighbour timers (the device no longer has it).

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use outpost_cloud_link::control::DeviceRef;
use outpost_cloud_link::protocol::Platform;
use tracing::{error, info, warn};

use super::arp_pause::{self, routable_ipv6, Plan};
use super::{lock, nftables, BlockError, Blocker, RESTORE_GAP};
use crate::config::InterfaceConfig;

impl Blocker {
    /// Start: follow the inventory once, then apply every stored block.
    pub(super) async fn apply_stored(&self) {
        let _op = self.ops.lock().await;
        self.follow();
        match self.platform {
            Platform::Box => self.pause_all().await,
            Platform::Router => match self.sync_table(true).await {
                Ok(()) => info!(
                    blocks = lock(&self.entries).len(),
                    "inet outpost table created"
                ),
                Err(e) => {
                    error!(error = %e, "cannot create the inet outpost table; retrying every repeat")
                }
            },
            Platform::Linux => {}
        }
    }

    /// One repeat: follow the inventory, then pause again (box) or bring the table up to date (router).
    pub(crate) async fn tick(&self) {
        let _op = self.ops.lock().await;
        if self.stopped.load(Ordering::Relaxed) {
            return;
        }
        let sets_changed = self.follow();
        match self.platform {
            Platform::Box => self.pause_all().await,
            Platform::Router => {
                if sets_changed || self.nft_dirty.load(Ordering::Relaxed) {
                    if let Err(e) = self.sync_table(false).await {
                        warn!(error = %e, "cannot bring the inet outpost table up to date; retrying every repeat");
                    }
                }
            }
            Platform::Linux => {}
        }
    }

    /// Asks the inventory where each blocked device is now; a new address or interface changes its record
    /// (stored, and `changes` bumped). Returns whether the router's sets changed.
    pub(super) fn follow(&self) -> bool {
        let devices: Vec<DeviceRef> = lock(&self.entries).keys().cloned().collect();
        let mut sets_changed = false;
        for device in devices {
            let Some(now) = (self.lookup)(&device) else {
                continue;
            };
            let mut entries = lock(&self.entries);
            let Some(e) = entries.get_mut(&device) else {
                continue;
            };
            let mut record_changed = false;
            if let Some(ip) = now.ipv4 {
                if e.record.ipv4 != Some(ip) {
                    info!(device = %device, from = ?e.record.ipv4, to = %ip,
                        "the blocked device has a new address: the block follows it");
                    e.record.ipv4 = Some(ip);
                    e.replan = true;
                    record_changed = true;
                    sets_changed = true;
                }
            }
            if !now.interface.is_empty() && now.interface != e.record.interface {
                info!(device = %device, from = %e.record.interface, to = %now.interface,
                    "the blocked device was seen on another interface: the block follows it");
                e.record.interface = now.interface.clone();
                e.replan = true;
                record_changed = true;
            }
            let ipv6 = routable_ipv6(&now.ipv6);
            match self.platform {
                Platform::Box if e.record.ipv6_uncovered != ipv6 => {
                    e.record.ipv6_uncovered = ipv6;
                    record_changed = true;
                }
                Platform::Router if e.ipv6 != ipv6 => {
                    e.ipv6 = ipv6;
                    sets_changed = true;
                }
                _ => {}
            }
            if record_changed {
                let record = e.record.clone();
                drop(entries);
                if let Err(err) = self.store.put_block(&record) {
                    warn!(device = %device, error = %err, "cannot store the changed block record");
                }
                self.bump();
            }
        }
        sets_changed
    }

    /// Box: plans the pauses that need it, then sends every planned pause again.
    pub(super) async fn pause_all(&self) {
        let wanted: Vec<(DeviceRef, String, Option<Ipv4Addr>)> = lock(&self.entries)
            .iter()
            .filter(|(_, e)| e.plan.is_none() || e.replan)
            .map(|(d, e)| (d.clone(), e.record.interface.clone(), e.record.ipv4))
            .collect();
        // An interface whose gateway failed this round is not asked again for every device on it.
        let mut failed: HashMap<String, String> = HashMap::new();
        for (device, interface, ipv4) in wanted {
            let result = match (failed.get(&interface), ipv4) {
                (Some(reason), _) => Err(reason.clone()),
                (None, None) => Err(BlockError::NoIpv4 {
                    device: device.clone(),
                    interface: interface.clone(),
                }
                .to_string()),
                (None, Some(ip)) => {
                    let iface = self.interface_config(&interface);
                    match self.plan(iface, device.clone(), ip, false).await {
                        Ok(plan) => Ok(plan),
                        Err(e) => {
                            if matches!(
                                e,
                                BlockError::GatewayUnknown { .. }
                                    | BlockError::GatewayNoAnswer { .. }
                                    | BlockError::Link { .. }
                            ) {
                                failed.insert(interface.clone(), e.to_string());
                            }
                            Err(e.to_string())
                        }
                    }
                }
            };
            let mut entries = lock(&self.entries);
            let Some(e) = entries.get_mut(&device) else {
                continue;
            };
            match result {
                Ok(plan) => {
                    if e.problem.take().is_some() || e.plan.as_ref() != Some(&plan) {
                        info!(device = %device, interface = %plan.interface, ipv4 = %plan.target_ip,
                            gateway = %plan.gateway_ip, "pausing the device");
                    }
                    e.plan = Some(plan);
                    e.replan = false;
                }
                Err(reason) => {
                    if e.problem.as_deref() != Some(reason.as_str()) {
                        warn!(device = %device, interface = %interface, error = %reason,
                            "cannot pause the blocked device now; trying again every repeat");
                        e.problem = Some(reason);
                    }
                }
            }
        }
        let mut by_interface: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        for plan in lock(&self.entries).values().filter_map(|e| e.plan.as_ref()) {
            by_interface
                .entry(plan.interface.clone())
                .or_default()
                .extend(plan.poison());
        }
        for (interface, frames) in by_interface {
            self.send(&interface, frames).await;
        }
    }

    /// Plans a pause on a blocking thread (ARP waits for answers).
    pub(super) async fn plan(
        &self,
        iface: InterfaceConfig,
        device: DeviceRef,
        ipv4: Ipv4Addr,
        verify_target: bool,
    ) -> Result<Plan, BlockError> {
        let net = Arc::clone(&self.net);
        let name = iface.name.clone();
        tokio::task::spawn_blocking(move || {
            arp_pause::plan(net.as_ref(), &iface, &device, ipv4, verify_target)
        })
        .await
        .map_err(|e| BlockError::Interrupted {
            interface: name,
            reason: e.to_string(),
        })?
    }

    /// Sends frames on a blocking thread; a failure is logged (once per distinct failure).
    pub(super) async fn send(&self, interface: &str, frames: Vec<Vec<u8>>) {
        let net = Arc::clone(&self.net);
        let name = interface.to_owned();
        let result = tokio::task::spawn_blocking(move || net.send(&name, &frames))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        let mut problems = lock(&self.send_problems);
        match result {
            Ok(()) => {
                if problems.remove(interface).is_some() {
                    info!(interface = %interface, "sending ARP frames works again");
                }
            }
            Err(reason) => {
                if problems.get(interface) != Some(&reason) {
                    warn!(interface = %interface, error = %reason, "cannot send ARP frames");
                    problems.insert(interface.to_owned(), reason);
                }
            }
        }
    }

    /// Box: gives the true mappings back, `restore_replies` rounds to each side of every plan.
    pub(super) async fn restore(&self, plans: &[Plan]) {
        if plans.is_empty() {
            return;
        }
        let mut by_interface: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        for plan in plans {
            by_interface
                .entry(plan.interface.clone())
                .or_default()
                .extend(plan.restore());
        }
        let rounds = self.config.restore_replies.max(1);
        for round in 0..rounds {
            if round > 0 {
                tokio::time::sleep(RESTORE_GAP).await;
            }
            for (interface, frames) in &by_interface {
                self.send(interface, frames.clone()).await;
            }
        }
    }

    /// Router: makes the table hold exactly the blocked devices, in one transaction.
    pub(super) async fn sync_table(&self, replace: bool) -> Result<(), BlockError> {
        let sets = {
            let entries = lock(&self.entries);
            nftables::Sets {
                macs: entries.keys().map(|d| d.mac.clone()).collect(),
                ipv4: entries.values().filter_map(|e| e.record.ipv4).collect(),
                ipv6: entries.values().flat_map(|e| e.ipv6.clone()).collect(),
            }
        };
        let result = self.nft.apply(&nftables::script(&sets, replace)).await;
        self.nft_dirty.store(result.is_err(), Ordering::Relaxed);
        result
    }
}

/// Every `every`: one [`Blocker::tick`], for as long as the blocker lives.
pub(super) async fn repeat(blocker: Weak<Blocker>, every: Duration) {
    let start = tokio::time::Instant::now() + every;
    let mut interval = tokio::time::interval_at(start, every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(blocker) = blocker.upgrade() else {
            return;
        };
        blocker.tick().await;
    }
}
