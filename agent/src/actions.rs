//! Runs the portal's device-control commands (block, unblock, power) off the link's loop: each in a task of
//! its own, its outcome and result handed back to the link, which records and acknowledges it.
//!
//! Power commands for the same device run one after the other (a `cycle` followed by an `off` must not
//! interleave); everything else runs side by side.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use outpost_cloud_link::control::{codes, DeviceRef, Outlet, OutletBinding, PowerAction};
use outpost_cloud_link::protocol::{Command, Outcome};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::blocking::{Blocker, Located, Lookup};
use crate::config::PowerConfig;
use crate::discovery::engine::Shared;
use crate::power::{self, PowerTarget};

/// A deferred command that ended.
#[derive(Debug)]
pub struct Finished {
    pub command_id: u64,
    pub outcome: Outcome,
    pub result: Option<serde_json::Value>,
}

/// What device-control commands need: the blocker, the inventory, the power settings.
pub struct Actions {
    blocker: Arc<Blocker>,
    discovery: Option<Arc<Shared>>,
    power: PowerConfig,
    /// One lock per device with power commands, so they run in order.
    power_locks: Mutex<HashMap<DeviceRef, Arc<tokio::sync::Mutex<()>>>>,
}

/// The blocker's view of the inventory: where a device is and its addresses now.
pub fn lookup(discovery: Option<Arc<Shared>>) -> Lookup {
    Arc::new(move |device: &DeviceRef| {
        let d = discovery.as_ref()?.device(device)?;
        Some(Located {
            interface: d.interface,
            ipv4: d.ipv4,
            ipv6: d.ipv6,
        })
    })
}

impl Actions {
    pub fn new(blocker: Arc<Blocker>, discovery: Option<Arc<Shared>>, power: PowerConfig) -> Self {
        Self {
            blocker,
            discovery,
            power,
            power_locks: Mutex::new(HashMap::new()),
        }
    }

    pub fn blocker(&self) -> &Arc<Blocker> {
        &self.blocker
    }

    /// Runs `cmd` in a task of its own; its [`Finished`] goes to `done`.
    pub fn spawn(self: &Arc<Self>, command_id: u64, cmd: Command, done: mpsc::Sender<Finished>) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let kind = cmd.name();
            let (outcome, result) = this.run(cmd).await;
            info!(command_id, command = kind, outcome = ?outcome, "command executed");
            if done
                .send(Finished {
                    command_id,
                    outcome,
                    result,
                })
                .await
                .is_err()
            {
                warn!(
                    command_id,
                    "the link stopped before the command ended; it is reported as interrupted"
                );
            }
        });
    }

    async fn run(&self, cmd: Command) -> (Outcome, Option<serde_json::Value>) {
        match cmd {
            Command::Block { device, ipv4 } => {
                let now_ms = chrono::Utc::now().timestamp_millis();
                match self.blocker.block(&device, ipv4, now_ms).await {
                    Ok(record) => (Outcome::Done, serde_json::to_value(record).ok()),
                    Err(e) => (Outcome::failed_with(e.code(), e.to_string()), None),
                }
            }
            Command::Unblock { device } => match self.blocker.unblock(&device).await {
                Ok(was_blocked) => (
                    Outcome::Done,
                    Some(serde_json::json!({ "was_blocked": was_blocked })),
                ),
                Err(e) => (Outcome::failed_with(e.code(), e.to_string()), None),
            },
            Command::Power {
                device,
                action,
                binding,
            } => self.power(device, action, binding).await,
            other => (
                Outcome::failed(format!("{} is not a device-control command", other.name())),
                None,
            ),
        }
    }

    async fn power(
        &self,
        device: DeviceRef,
        action: PowerAction,
        binding: OutletBinding,
    ) -> (Outcome, Option<serde_json::Value>) {
        let known = self.discovery.as_ref().and_then(|d| d.device(&device));
        if matches!(binding.outlet, Outlet::WakeOnLan { .. }) && known.is_none() {
            return (
                Outcome::failed_with(
                    codes::DEVICE_UNKNOWN,
                    format!(
                        "Wake-on-LAN needs to know which interface {device} is on, and this agent has not seen it; \
                         wait until discovery finds it (or bind another outlet)"
                    ),
                ),
                None,
            );
        }
        let target = PowerTarget {
            interface: known.as_ref().map(|d| d.interface.clone()),
            ipv4: known.as_ref().and_then(|d| d.ipv4),
            device: device.clone(),
        };
        let lock = {
            let mut locks = self
                .power_locks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            Arc::clone(locks.entry(device).or_default())
        };
        let _turn = lock.lock().await;
        match power::act(&self.power, &binding, action, &target).await {
            Ok(result) => (Outcome::Done, serde_json::to_value(result).ok()),
            Err(e) => (Outcome::failed_with(e.code(), e.to_string()), None),
        }
    }
}
