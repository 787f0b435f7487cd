//! Device control: blocking a device's internet access, unblocking it, switching its power through the
//! outlet it is bound to, the outlet bindings themselves, and what the portal knows about a device's
//! control (blocked now, blockable, its outlet).
//!
//! The agent is the judge of what it can do: a block it cannot apply is still sent and comes back failed
//! with a code (`control::codes`). The portal marks devices it knows the agent will refuse
//! ([`blockability`]) so nobody has to try first, and refuses on its own only what it knows for sure: an
//! unknown device, a power action without an outlet binding or one the outlet type cannot do, and a power
//! action while the agent is offline (a queued power switch running hours later would surprise).
//!
//! Outlet bindings keep their secrets in the store and travel inside each power command; everything the
//! portal shows or logs is [`Outlet::redacted`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use outpost_cloud_link::control::{
    codes, BlockRecord, BlocksReport, DeviceRef, Outlet, OutletBinding, PowerAction, SnmpAuth,
    MAX_CYCLE_DELAY_SECS,
};
use outpost_cloud_link::inventory::normalize_mac;
use outpost_cloud_link::protocol::{Ack, Command, Outcome, Platform, Segment};
use outpost_cloud_link::AgentId;
use tracing::{debug, info, warn};

use super::{Actor, App, OpError};
use crate::store::agents::AgentRow;
use crate::store::commands::{self, CommandRow};
use crate::store::controls;
use crate::store::devices::{self, vlan_column, DeviceKey, DeviceRow};
use crate::store::history::{self, Line};
use crate::store::StoreError;

/// What to do to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlAction {
    /// Pause its internet access.
    Block,
    /// Give its internet access back.
    Unblock,
    /// Switch its power through its outlet binding.
    Power(PowerAction),
}

impl ControlAction {
    /// The history action of a request.
    pub fn history_action(self) -> &'static str {
        match self {
            ControlAction::Block => "device_block",
            ControlAction::Unblock => "device_unblock",
            ControlAction::Power(_) => "device_power",
        }
    }
}

/// What the portal knows about controlling one device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceControl {
    pub device: DeviceRef,
    /// The agent reports the device blocked (its `blocks` report, or a block's acknowledgement since).
    pub blocked: bool,
    /// The agent's block record while blocked.
    pub block: Option<BlockRecord>,
    /// Whether the agent can block it, as far as the portal knows (the agent has the last word).
    pub blockable: bool,
    /// Why not, when not blockable: `control::codes::BLOCKING_UNSUPPORTED_PLATFORM` or
    /// `control::codes::VLAN_TAGGED_UNBLOCKABLE`.
    pub unblockable_reason: Option<&'static str>,
    /// The device's outlet binding with every secret replaced ([`Outlet::redacted`]), if it has one.
    pub power_outlet: Option<OutletBinding>,
}

/// A device's outlet binding as the portal shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutletInfo {
    /// Redacted: secrets are `"********"`.
    pub binding: OutletBinding,
    pub updated_at: DateTime<Utc>,
    /// The actor who set it (`token:<name>`).
    pub updated_by: String,
}

/// Why the agent will refuse to block a device, as far as the portal can tell: a plain Linux host does not
/// block at all; a box cannot block a device it sees through a tagged VLAN sub-interface (it is not in that
/// broadcast domain). `None`: blockable (also when the platform is not known yet).
pub fn blockability(
    platform: Option<Platform>,
    segments: &[Segment],
    interface: Option<&str>,
    vlan: Option<u16>,
) -> Option<&'static str> {
    match platform {
        Some(Platform::Linux) => Some(codes::BLOCKING_UNSUPPORTED_PLATFORM),
        Some(Platform::Box) => {
            let by_name = interface.and_then(|name| segments.iter().find(|s| s.interface == name));
            let segment = by_name.or_else(|| {
                vlan.and_then(|v| segments.iter().find(|s| s.vlan == Some(v) && s.tagged))
            });
            segment
                .filter(|s| s.tagged)
                .map(|_| codes::VLAN_TAGGED_UNBLOCKABLE)
        }
        Some(Platform::Router) | None => None,
    }
}

/// Everything about one agent the control view of its devices needs, read once for a whole page.
#[derive(Debug, Clone, Default)]
pub struct ControlFacts {
    pub platform: Option<Platform>,
    pub segments: Vec<Segment>,
    pub blocks: HashMap<DeviceRef, BlockRecord>,
    pub bindings: HashMap<DeviceRef, OutletBinding>,
}

impl ControlFacts {
    /// The control view of one stored device.
    pub fn device(&self, row: &DeviceRow) -> DeviceControl {
        let device = device_of(row);
        let facts = RecordFacts::of(row);
        let block = self.blocks.get(&device).cloned();
        let reason = blockability(
            self.platform,
            &self.segments,
            facts.interface.as_deref(),
            device.vlan,
        );
        DeviceControl {
            blocked: block.is_some(),
            block,
            blockable: reason.is_none(),
            unblockable_reason: reason,
            power_outlet: self.bindings.get(&device).map(redacted),
            device,
        }
    }
}

/// The facts of a stored device record the control needs.
struct RecordFacts {
    interface: Option<String>,
    ipv4: Option<std::net::Ipv4Addr>,
}

impl RecordFacts {
    fn of(row: &DeviceRow) -> Self {
        Self {
            interface: row.record["interface"].as_str().map(str::to_owned),
            ipv4: row.record["ipv4"].as_str().and_then(|s| s.parse().ok()),
        }
    }
}

/// The device a stored row is (its key was checked on the way in).
fn device_of(row: &DeviceRow) -> DeviceRef {
    DeviceRef {
        mac: row.key.mac.clone(),
        vlan: Some(row.key.vlan).filter(|v| *v != devices::NO_VLAN),
    }
}

fn key_of(device: &DeviceRef) -> DeviceKey {
    DeviceKey {
        vlan: vlan_column(device.vlan),
        mac: device.mac.clone(),
    }
}

fn redacted(b: &OutletBinding) -> OutletBinding {
    OutletBinding {
        outlet: b.outlet.redacted(),
        cycle_delay_secs: b.cycle_delay_secs,
    }
}

/// Where an outlet is reached, for history lines and logs (never a secret).
fn outlet_summary(outlet: &Outlet) -> String {
    match outlet {
        Outlet::PoeSnmp {
            host, group, port, ..
        } => format!("poe_snmp {host} port {group}.{port}"),
        Outlet::ApcPdu { host, outlet, .. } => format!("apc_pdu {host} outlet {outlet}"),
        Outlet::Shelly {
            host, switch_id, ..
        } => format!("shelly {host} switch {switch_id}"),
        Outlet::Tasmota { host, relay, .. } => format!("tasmota {host} relay {relay}"),
        Outlet::WakeOnLan { .. } => "wake_on_lan".to_owned(),
    }
}

fn parse_platform(agent: &AgentRow) -> Option<Platform> {
    agent.platform.as_deref().and_then(|p| p.parse().ok())
}

impl App {
    /// The stored device, or [`OpError::UnknownDevice`].
    async fn known_device(
        &self,
        agent: &AgentId,
        device: &DeviceRef,
    ) -> Result<DeviceRow, OpError> {
        let mut conn = self.store().conn().await?;
        devices::get(&mut conn, agent, &key_of(device))
            .await?
            .ok_or_else(|| OpError::UnknownDevice {
                agent: agent.to_string(),
                device: device.id(),
            })
    }

    /// The agent's platform, segments, blocks and outlet bindings (for a page of devices).
    pub async fn control_facts(&self, agent: &AgentId) -> Result<ControlFacts, OpError> {
        let row = self.agent(agent).await?;
        let mut conn = self.store().conn().await?;
        Ok(ControlFacts {
            platform: parse_platform(&row),
            segments: controls::segments(&mut conn, agent).await?,
            blocks: controls::blocks(&mut conn, agent).await?,
            bindings: controls::bindings(&mut conn, agent).await?,
        })
    }

    /// One device of the agent with its control view.
    pub async fn device(
        &self,
        agent: &AgentId,
        device: &DeviceRef,
    ) -> Result<(DeviceRow, DeviceControl), OpError> {
        let row = self.agent(agent).await?;
        let stored = self.known_device(agent, device).await?;
        let mut conn = self.store().conn().await?;
        let facts = ControlFacts {
            platform: parse_platform(&row),
            segments: controls::segments(&mut conn, agent).await?,
            blocks: controls::block(&mut conn, agent, device)
                .await?
                .map(|b| (device.clone(), b))
                .into_iter()
                .collect(),
            bindings: controls::get_binding(&mut conn, agent, device)
                .await?
                .map(|b| (device.clone(), b.binding))
                .into_iter()
                .collect(),
        };
        let control = facts.device(&stored);
        Ok((stored, control))
    }

    /// What the portal knows about controlling this device: blocked now (from the agent's blocks report)
    /// and its record, blockable and the reason code when not (platform `linux` →
    /// `blocking_unsupported_platform`; platform `box` and the device's interface a tagged segment →
    /// `vlan_tagged_unblockable`), the redacted outlet binding if any. An unknown agent or device is an
    /// error.
    pub async fn device_control(
        &self,
        agent: &AgentId,
        device: &DeviceRef,
    ) -> Result<DeviceControl, OpError> {
        Ok(self.device(agent, device).await?.1)
    }

    /// Checks the device exists for this agent, that the action is possible (a power action needs an
    /// outlet binding that can do it and a connected agent; a block the agent will refuse is still sent
    /// and comes back failed with its code), queues the command (a block carries the device's last known
    /// IPv4 address, a power action the binding), writes a history line with the actor, sends it, waits up
    /// to `wait` (at most `MAX_WAIT`) for the acknowledgement and returns the command as it is then
    /// (`pending` when the wait ran out).
    pub async fn control_device(
        &self,
        agent: &AgentId,
        device: &DeviceRef,
        action: ControlAction,
        actor: &Actor,
        wait: Duration,
    ) -> Result<CommandRow, OpError> {
        let row = self.agent(agent).await?;
        let stored = self.known_device(agent, device).await?;
        let facts = RecordFacts::of(&stored);
        let (cmd, details) = match action {
            ControlAction::Block => {
                let at = facts
                    .ipv4
                    .map(|ip| format!(" (last seen at {ip})"))
                    .unwrap_or_default();
                (
                    Command::Block {
                        device: device.clone(),
                        ipv4: facts.ipv4,
                    },
                    format!("{device}: block{at}"),
                )
            }
            ControlAction::Unblock => (
                Command::Unblock {
                    device: device.clone(),
                },
                format!("{device}: unblock"),
            ),
            ControlAction::Power(power) => {
                let binding = {
                    let mut conn = self.store().conn().await?;
                    controls::get_binding(&mut conn, agent, device).await?
                }
                .ok_or_else(|| OpError::NoOutlet {
                    agent: agent.to_string(),
                    device: device.id(),
                })?
                .binding;
                if matches!(binding.outlet, Outlet::WakeOnLan { .. }) && power != PowerAction::On {
                    return Err(OpError::ActionUnsupported {
                        kind: binding.outlet.kind(),
                        action: power.as_str(),
                    });
                }
                if !self.is_online(&row) {
                    return Err(OpError::AgentOffline(agent.to_string()));
                }
                let details = format!(
                    "{device}: power {power} via {}",
                    outlet_summary(&binding.outlet)
                );
                (
                    Command::Power {
                        device: device.clone(),
                        action: power,
                        binding,
                    },
                    details,
                )
            }
        };
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let id = commands::insert(&mut tx, agent, &cmd, now).await?;
        let details = format!("{details}; command {id}");
        history::append(
            &mut tx,
            Line {
                agent,
                agent_name: &row.name,
                action: action.history_action(),
                actor: actor.as_str(),
                details: &details,
            },
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(agent = %agent, device = %device, command_id = id, kind = cmd.name(),
            actor = actor.as_str(), "device control command queued");
        self.deliver_and_wait(agent, id, &cmd, wait).await
    }

    /// Checks and stores the device's outlet binding (replacing any), with a history line; returns it
    /// redacted.
    pub async fn set_outlet(
        &self,
        agent: &AgentId,
        device: &DeviceRef,
        binding: OutletBinding,
        actor: &Actor,
    ) -> Result<OutletInfo, OpError> {
        let binding = validate_binding(binding)?;
        let row = self.agent(agent).await?;
        self.known_device(agent, device).await?;
        let now = self.now();
        let summary = outlet_summary(&binding.outlet);
        let mut tx = self.store().begin().await?;
        let replaced =
            controls::set_binding(&mut tx, agent, device, &binding, actor.as_str(), now).await?;
        let details = format!(
            "{device}: {summary}, cycle delay {} s{}",
            binding.cycle_delay_secs,
            if replaced { " (replaced)" } else { "" }
        );
        history::append(
            &mut tx,
            Line {
                agent,
                agent_name: &row.name,
                action: "device_power_outlet_set",
                actor: actor.as_str(),
                details: &details,
            },
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(agent = %agent, device = %device, outlet = %summary, replaced, actor = actor.as_str(),
            "outlet binding set");
        Ok(OutletInfo {
            binding: redacted(&binding),
            updated_at: now,
            updated_by: actor.as_str().to_owned(),
        })
    }

    /// The device's outlet binding, redacted.
    pub async fn outlet(&self, agent: &AgentId, device: &DeviceRef) -> Result<OutletInfo, OpError> {
        self.agent(agent).await?;
        let mut conn = self.store().conn().await?;
        let stored = controls::get_binding(&mut conn, agent, device)
            .await?
            .ok_or_else(|| OpError::UnknownOutlet {
                agent: agent.to_string(),
                device: device.id(),
            })?;
        Ok(OutletInfo {
            binding: redacted(&stored.binding),
            updated_at: stored.updated_at,
            updated_by: stored.updated_by,
        })
    }

    /// Removes the device's outlet binding, with a history line (also for a device no longer in the
    /// inventory).
    pub async fn remove_outlet(
        &self,
        agent: &AgentId,
        device: &DeviceRef,
        actor: &Actor,
    ) -> Result<(), OpError> {
        let row = self.agent(agent).await?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        if !controls::delete_binding(&mut tx, agent, device).await? {
            return Err(OpError::UnknownOutlet {
                agent: agent.to_string(),
                device: device.id(),
            });
        }
        let details = format!("{device}");
        history::append(
            &mut tx,
            Line {
                agent,
                agent_name: &row.name,
                action: "device_power_outlet_removed",
                actor: actor.as_str(),
                details: &details,
            },
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(agent = %agent, device = %device, actor = actor.as_str(), "outlet binding removed");
        Ok(())
    }

    /// A block or unblock acknowledged `done` changes the device's block at once (the agent's next
    /// `blocks` report, which follows every change, has the last word).
    pub(crate) async fn apply_control_ack(
        &self,
        agent: &AgentId,
        row: &CommandRow,
        ack: &Ack,
    ) -> Result<(), StoreError> {
        if ack.outcome != Outcome::Done {
            return Ok(());
        }
        match &row.command {
            Command::Block { device, .. } => {
                let record = ack
                    .result
                    .clone()
                    .map(serde_json::from_value::<BlockRecord>);
                match record {
                    Some(Ok(mut record)) => {
                        // The record names the device the command was about.
                        record.device = device.clone();
                        let mut conn = self.store().conn().await?;
                        controls::upsert_block(&mut conn, agent, &record, self.now()).await?;
                    }
                    Some(Err(e)) => {
                        warn!(agent = %agent, command_id = row.id, error = %e,
                            "block acknowledged with a result that is not a block record; waiting for the blocks report")
                    }
                    None => {
                        debug!(agent = %agent, command_id = row.id, "block acknowledged without a record; waiting for the blocks report")
                    }
                }
            }
            Command::Unblock { device } => {
                let mut conn = self.store().conn().await?;
                controls::delete_block(&mut conn, agent, device).await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Applies a `blocks` report of data epoch `epoch`: it replaces the agent's blocks. Returns `false` when
    /// a cleanup ended that epoch first (nothing stored).
    pub(crate) async fn apply_blocks_report(
        &self,
        agent: &AgentId,
        epoch: u64,
        report: BlocksReport,
    ) -> Result<bool, OpError> {
        let records: Vec<BlockRecord> = report
            .blocks
            .into_iter()
            .filter_map(
                |mut record| match DeviceRef::new(&record.device.mac, record.device.vlan) {
                    Some(device) if device.vlan.is_none_or(|v| v <= 4094) => {
                        record.device = device;
                        Some(record)
                    }
                    _ => {
                        warn!(agent = %agent, mac = %record.device.mac, vlan = ?record.device.vlan,
                            "block record with a bad device skipped");
                        None
                    }
                },
            )
            .collect();
        let mut tx = self.store().begin().await?;
        if !crate::store::agents::hold_epoch(&mut tx, agent, epoch).await? {
            return Ok(false);
        }
        let held = controls::replace_blocks(&mut tx, agent, &records, self.now()).await?;
        tx.commit().await.map_err(StoreError::from)?;
        debug!(agent = %agent, epoch, blocks = held, "blocks report applied");
        Ok(true)
    }
}

/// Shortest SNMPv3 password (RFC 3414 asks for at least 8 characters).
pub const MIN_SNMP_PASSWORD: usize = 8;
/// Longest secret or user name accepted.
const MAX_SECRET: usize = 256;

fn invalid(field: &'static str, message: impl Into<String>) -> OpError {
    OpError::Invalid {
        field,
        message: message.into(),
    }
}

/// A host name or address: `host`, `host:port`, `[v6]` or `[v6]:port`; returns it trimmed.
fn check_host(host: &str) -> Result<String, OpError> {
    const FIELD: &str = "outlet.host";
    let host = host.trim();
    if host.is_empty() {
        return Err(invalid(
            FIELD,
            "the host is empty; give the outlet's address or name, e.g. 192.0.2.10 or pdu1.example:161",
        ));
    }
    let bad = || {
        invalid(
            FIELD,
            format!("{host:?} is not a host; give an IP address or a DNS name, optionally with :PORT (1-65535), IPv6 in brackets"),
        )
    };
    if host.len() > 261 {
        return Err(bad());
    }
    let check_port = |port: &str| match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(bad()),
    };
    if let Some(rest) = host.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or_else(bad)?;
        addr.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        return match after {
            "" => Ok(host.to_owned()),
            _ => check_port(after.strip_prefix(':').ok_or_else(bad)?).map(|_| host.to_owned()),
        };
    }
    if host.parse::<IpAddr>().is_ok() {
        return Ok(host.to_owned());
    }
    let name = match host.split_once(':') {
        Some((name, port)) => {
            check_port(port)?;
            name
        }
        None => host,
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() > 253 || !name.trim_end_matches('.').split('.').all(label_ok) {
        return Err(bad());
    }
    Ok(host.to_owned())
}

fn check_range(field: &'static str, value: u32, min: u32, max: u32) -> Result<(), OpError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{value} is out of range; give a number from {min} to {max}"),
        ))
    }
}

/// A secret or name: not empty, no control characters, at most [`MAX_SECRET`] characters, at least `min`.
/// The message never repeats the value.
fn check_text(field: &'static str, value: &str, min: usize) -> Result<(), OpError> {
    let len = value.chars().count();
    if len == 0 {
        return Err(invalid(
            field,
            "is empty; give a value or leave the field out",
        ));
    }
    if len < min {
        return Err(invalid(
            field,
            format!("is shorter than {min} characters; SNMPv3 needs at least {min}"),
        ));
    }
    if len > MAX_SECRET {
        return Err(invalid(
            field,
            format!("is longer than {MAX_SECRET} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(
            field,
            "contains control characters; use printable text",
        ));
    }
    Ok(())
}

fn check_snmp(snmp: &SnmpAuth) -> Result<(), OpError> {
    match snmp {
        SnmpAuth::V2c { community } => check_text("outlet.snmp.community", community, 1),
        SnmpAuth::V3 {
            user,
            auth_protocol,
            auth_password,
            priv_protocol,
            priv_password,
        } => {
            check_text("outlet.snmp.user", user, 1)?;
            if user.chars().count() > 32 {
                return Err(invalid(
                    "outlet.snmp.user",
                    "is longer than 32 characters (the SNMPv3 limit)",
                ));
            }
            match (auth_protocol, auth_password) {
                (Some(_), Some(pw)) => {
                    check_text("outlet.snmp.auth_password", pw, MIN_SNMP_PASSWORD)?
                }
                (Some(_), None) => {
                    return Err(invalid(
                        "outlet.snmp.auth_password",
                        format!("is missing; auth_protocol needs a password of at least {MIN_SNMP_PASSWORD} characters"),
                    ))
                }
                (None, Some(_)) => {
                    return Err(invalid(
                        "outlet.snmp.auth_protocol",
                        "is missing; give the protocol of auth_password (md5, sha, sha224, sha256, sha384, sha512) or leave the password out",
                    ))
                }
                (None, None) => {}
            }
            match (priv_protocol, priv_password) {
                (Some(_), _) if auth_protocol.is_none() => {
                    return Err(invalid(
                        "outlet.snmp.priv_protocol",
                        "privacy needs authentication; give auth_protocol and auth_password too",
                    ))
                }
                (Some(_), Some(pw)) => {
                    check_text("outlet.snmp.priv_password", pw, MIN_SNMP_PASSWORD)?
                }
                (Some(_), None) => {
                    return Err(invalid(
                        "outlet.snmp.priv_password",
                        format!("is missing; priv_protocol needs a password of at least {MIN_SNMP_PASSWORD} characters"),
                    ))
                }
                (None, Some(_)) => {
                    return Err(invalid(
                        "outlet.snmp.priv_protocol",
                        "is missing; give the protocol of priv_password (des, aes, aes192, aes256) or leave the password out",
                    ))
                }
                (None, None) => {}
            }
            Ok(())
        }
    }
}

/// Checks an outlet binding before it is stored; returns it normalized (host trimmed, SecureOn in
/// lower-case colon form). A bad field is [`OpError::Invalid`] naming it (`outlet.host`,
/// `cycle_delay_secs`, …); messages never repeat a secret.
pub fn validate_binding(binding: OutletBinding) -> Result<OutletBinding, OpError> {
    check_range(
        "cycle_delay_secs",
        binding.cycle_delay_secs,
        1,
        MAX_CYCLE_DELAY_SECS,
    )?;
    let outlet = match binding.outlet {
        Outlet::PoeSnmp {
            host,
            group,
            port,
            snmp,
        } => {
            check_range("outlet.group", group, 1, 65535)?;
            check_range("outlet.port", port, 1, 65535)?;
            check_snmp(&snmp)?;
            Outlet::PoeSnmp {
                host: check_host(&host)?,
                group,
                port,
                snmp,
            }
        }
        Outlet::ApcPdu { host, outlet, snmp } => {
            check_range("outlet.outlet", outlet, 1, 1024)?;
            check_snmp(&snmp)?;
            Outlet::ApcPdu {
                host: check_host(&host)?,
                outlet,
                snmp,
            }
        }
        Outlet::Shelly {
            host,
            switch_id,
            password,
        } => {
            check_range("outlet.switch_id", switch_id, 0, 255)?;
            if let Some(pw) = &password {
                check_text("outlet.password", pw, 1)?;
            }
            Outlet::Shelly {
                host: check_host(&host)?,
                switch_id,
                password,
            }
        }
        Outlet::Tasmota {
            host,
            relay,
            user,
            password,
        } => {
            check_range("outlet.relay", relay, 0, 32)?;
            if let Some(user) = &user {
                check_text("outlet.user", user, 1)?;
            }
            if let Some(pw) = &password {
                check_text("outlet.password", pw, 1)?;
            }
            Outlet::Tasmota {
                host: check_host(&host)?,
                relay,
                user,
                password,
            }
        }
        Outlet::WakeOnLan { secureon } => {
            let secureon = secureon
                .map(|s| {
                    normalize_mac(&s).ok_or_else(|| {
                        invalid(
                            "outlet.secureon",
                            "is not a SecureOn password; give six hex bytes like aa:bb:cc:dd:ee:ff",
                        )
                    })
                })
                .transpose()?;
            Outlet::WakeOnLan { secureon }
        }
    };
    Ok(OutletBinding {
        outlet,
        cycle_delay_secs: binding.cycle_delay_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_cloud_link::control::{SnmpAuthProtocol, SnmpPrivProtocol};

    fn seg(interface: &str, vlan: Option<u16>, tagged: bool) -> Segment {
        Segment {
            interface: interface.into(),
            vlan,
            tagged,
        }
    }

    #[test]
    fn blockability_follows_platform_and_tagged_segments() {
        let segments = [seg("lan0", None, false), seg("lan0.20", Some(20), true)];
        let linux = blockability(Some(Platform::Linux), &segments, Some("lan0"), None);
        assert_eq!(linux, Some(codes::BLOCKING_UNSUPPORTED_PLATFORM));
        let tagged = blockability(Some(Platform::Box), &segments, Some("lan0.20"), Some(20));
        assert_eq!(tagged, Some(codes::VLAN_TAGGED_UNBLOCKABLE));
        assert_eq!(
            blockability(Some(Platform::Box), &segments, Some("lan0"), None),
            None
        );
        // A router blocks on tagged VLANs too.
        assert_eq!(
            blockability(Some(Platform::Router), &segments, Some("lan0.20"), Some(20)),
            None
        );
        // An interface the segments do not name: its VLAN decides.
        assert_eq!(
            blockability(Some(Platform::Box), &segments, Some("eth9"), Some(20)),
            Some(codes::VLAN_TAGGED_UNBLOCKABLE)
        );
        assert_eq!(
            blockability(None, &segments, Some("lan0.20"), Some(20)),
            None
        );
    }

    fn shelly(host: &str) -> OutletBinding {
        OutletBinding {
            outlet: Outlet::Shelly {
                host: host.into(),
                switch_id: 0,
                password: None,
            },
            cycle_delay_secs: 5,
        }
    }

    fn field_of(e: OpError) -> &'static str {
        match e {
            OpError::Invalid { field, .. } => field,
            other => panic!("not a field error: {other}"),
        }
    }

    #[test]
    fn hosts_are_checked_and_trimmed() {
        for ok in [
            "10.0.0.2",
            "10.0.0.2:8080",
            "plug-1.lan",
            "pdu1.example:161",
            "[fe80::1]:80",
            "fe80::1",
        ] {
            let b = validate_binding(shelly(&format!(" {ok} "))).unwrap();
            let Outlet::Shelly { host, .. } = b.outlet else {
                panic!()
            };
            assert_eq!(host, ok);
        }
        for bad in [
            "",
            "  ",
            "http://plug",
            "plug:0",
            "plug:70000",
            "-plug",
            "a b",
            "user@plug",
            "[fe80::1",
        ] {
            assert_eq!(
                field_of(validate_binding(shelly(bad)).unwrap_err()),
                "outlet.host",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn numbers_delays_and_secureon_are_checked() {
        let mut b = shelly("plug");
        b.cycle_delay_secs = MAX_CYCLE_DELAY_SECS + 1;
        assert_eq!(
            field_of(validate_binding(b).unwrap_err()),
            "cycle_delay_secs"
        );
        let tasmota = OutletBinding {
            outlet: Outlet::Tasmota {
                host: "plug".into(),
                relay: 33,
                user: None,
                password: None,
            },
            cycle_delay_secs: 5,
        };
        assert_eq!(
            field_of(validate_binding(tasmota).unwrap_err()),
            "outlet.relay"
        );
        let wol = |s: &str| OutletBinding {
            outlet: Outlet::WakeOnLan {
                secureon: Some(s.into()),
            },
            cycle_delay_secs: 5,
        };
        assert_eq!(
            validate_binding(wol("AA-BB-CC-DD-EE-FF")).unwrap().outlet,
            Outlet::WakeOnLan {
                secureon: Some("aa:bb:cc:dd:ee:ff".into())
            }
        );
        let err = validate_binding(wol("hunter2-secret")).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert_eq!(field_of(err), "outlet.secureon");
    }

    #[test]
    fn snmp_v3_protocols_need_long_enough_passwords() {
        let v3 = |auth: Option<&str>, privacy: Option<&str>, with_auth: bool| OutletBinding {
            outlet: Outlet::PoeSnmp {
                host: "switch".into(),
                group: 1,
                port: 4,
                snmp: SnmpAuth::V3 {
                    user: "ops".into(),
                    auth_protocol: with_auth.then_some(SnmpAuthProtocol::Sha),
                    auth_password: auth.map(str::to_owned),
                    priv_protocol: privacy.map(|_| SnmpPrivProtocol::Aes),
                    priv_password: privacy.map(str::to_owned),
                },
            },
            cycle_delay_secs: 5,
        };
        assert!(validate_binding(v3(Some("long-enough"), Some("also-long"), true)).is_ok());
        assert!(validate_binding(v3(None, None, false)).is_ok());
        let short = validate_binding(v3(Some("short7!"), None, true)).unwrap_err();
        assert!(!short.to_string().contains("short7!"));
        assert_eq!(field_of(short), "outlet.snmp.auth_password");
        assert_eq!(
            field_of(validate_binding(v3(None, None, true)).unwrap_err()),
            "outlet.snmp.auth_password"
        );
        assert_eq!(
            field_of(validate_binding(v3(Some("long-enough"), Some("short"), true)).unwrap_err()),
            "outlet.snmp.priv_password"
        );
        assert_eq!(
            field_of(validate_binding(v3(None, Some("long-enough"), false)).unwrap_err()),
            "outlet.snmp.priv_protocol"
        );
    }
}
