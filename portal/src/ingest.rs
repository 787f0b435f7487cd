//! Agent messages into the store: sequence bookkeeping (duplicates dropped, gaps counted), then one
//! handler per message kind. Messages of unknown or deleted agents are ignored; reports and hello data from
//! an older data epoch than the agent's row are dropped. Every write of such data re-checks the epoch
//! itself ([`store_report`], `agents::hold_epoch` in a transaction): a cleanup may commit between the read
//! of the agent row and the write.
//!
//! Inventory reports (`devices.snapshot`, `devices.delta`) go to the devices store, not to the generic
//! latest-report-per-kind table: each is applied in one transaction that first re-checks the data epoch.
//! A body that does not fit its kind is logged and dropped; a device or event with a bad MAC or VLAN is
//! skipped (logged) and the rest of the report applied.
//!
//! The `blocks` report (`control::BLOCKS_REPORT`) replaces the agent's blocked devices, also in one
//! epoch-checked transaction. The hello's `segments` are configuration (like its platform): stored whatever
//! the epoch, and kept across cleanups.
//!
//! Updates (`app::rollouts`): the `update` report (`update::UPDATE_REPORT`) and the acknowledgement of an
//! `update` command move the agent's update attempt on, whatever the data epoch (a cleanup must not lose
//! them); the hello stores the agent's `target` and `updatable`. When the agent's latest attempt is
//! `installed` and it runs that version (its hello said so), it is sent `UpdateHealthy` (at every such
//! hello, and right after the installed report or acknowledgement if the new version's hello came first).
//!
//! Settings (`app::settings`): the acknowledgement of an `apply_settings` command updates the agent's
//! settings record; the hello's `settings_version` is stored, and the current document queued again when the
//! agent runs an older one (it is sent with the other pending commands right after).
//!
//! GeoIP (`app::location`): every hello is answered with a `Welcome` notice carrying the address the agent
//! connects from (in a task of its own: finding the address may wait up to 2 s for the broker's log), and
//! the `location` report (`geoip::LOCATION_REPORT`) is stored, or replaced by the portal's own lookup when
//! the agent has no usable database.

use outpost_cloud_link::control::{BlocksReport, BLOCKS_REPORT};
use outpost_cloud_link::geoip::{LocationReport, LOCATION_REPORT};
use outpost_cloud_link::inventory::{normalize_mac, Device, DeviceEvent, InventoryReport};
use outpost_cloud_link::protocol::{AgentMessage, Envelope, Hello, PortalNotice};
use outpost_cloud_link::update::{UpdateReport, UPDATE_REPORT};
use outpost_cloud_link::AgentId;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::app::location::Locator;
use crate::app::{App, OpError};
use crate::store::agents::{self, AgentRow, HelloFacts};
use crate::store::devices::{self, PartOutcome};
use crate::store::{commands, controls, reports, rollouts, StoreError};

/// What happened to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Applied to the store.
    Applied,
    /// A re-sent message already seen (`seq <= last_seq`).
    Duplicate,
    /// From an agent the portal does not know (or deleted).
    UnknownAgent,
    /// A report or hello data from an older data epoch: counted, not stored.
    StaleEpoch,
    /// A report whose body does not fit its kind: logged, not stored.
    Malformed,
}

/// Consumes the link's incoming messages until the channel closes.
pub async fn run(app: App, mut incoming: mpsc::Receiver<crate::link::Incoming>, locator: Locator) {
    while let Some(msg) = incoming.recv().await {
        if let Err(e) = handle_with(&app, &locator, &msg.agent, msg.envelope).await {
            warn!(agent = %msg.agent, error = %e, "agent message not stored");
        }
    }
    info!("agent message stream ended");
}

/// Applies one message from `agent`, without GeoIP (no database, no notices).
pub async fn handle(app: &App, agent: &AgentId, env: Envelope) -> Result<Disposition, OpError> {
    handle_with(app, &Locator::default(), agent, env).await
}

/// Applies one message from `agent`, with the portal's GeoIP share.
pub async fn handle_with(
    app: &App,
    locator: &Locator,
    agent: &AgentId,
    env: Envelope,
) -> Result<Disposition, OpError> {
    let now = app.now();
    let row = {
        let mut conn = app.store().conn().await?;
        let Some(row) = agents::get(&mut conn, agent).await? else {
            debug!(agent = %agent, kind = env.msg.kind().as_str(), "message from an unknown agent ignored");
            return Ok(Disposition::UnknownAgent);
        };
        // seq 0 is the broker's last will on the agent's behalf: not part of the agent's sequence.
        if env.seq > 0 {
            let last = row.link.last_seq;
            if env.seq <= last {
                agents::count_duplicate(&mut conn, agent).await?;
                debug!(agent = %agent, seq = env.seq, last_seq = last, "duplicate message dropped");
                return Ok(Disposition::Duplicate);
            }
            let missing = env.seq - last - 1;
            if missing > 0 {
                info!(agent = %agent, seq = env.seq, last_seq = last, missing, "gap in the agent's message sequence");
            }
            agents::record_message(&mut conn, agent, env.seq, missing, now).await?;
        }
        row
    };
    // The agent's data (every report but `update`, by the rule both sides share) counts only in its epoch;
    // the agent removes the same messages from its outbox at a cleanup.
    if env.msg.is_epoch_data() && env.epoch != row.data_epoch {
        debug!(agent = %agent, epoch = env.epoch, data_epoch = row.data_epoch,
            "report from another data epoch dropped");
        return Ok(Disposition::StaleEpoch);
    }
    match env.msg {
        AgentMessage::Hello(hello) => on_hello(app, locator, &row, env.epoch, &hello).await,
        AgentMessage::Presence(p) => {
            let mut conn = app.store().conn().await?;
            agents::set_online(&mut conn, agent, p.online).await?;
            if p.online != row.online {
                info!(agent = %agent, online = p.online, "agent presence changed");
            }
            Ok(Disposition::Applied)
        }
        AgentMessage::Heartbeat(hb) => {
            let mut conn = app.store().conn().await?;
            agents::set_outbox(&mut conn, agent, hb.outbox_depth, hb.outbox_dropped).await?;
            Ok(Disposition::Applied)
        }
        AgentMessage::Ack(ack) => {
            app.record_ack(agent, &ack).await?;
            app.apply_update_ack(agent, &ack).await?;
            app.apply_settings_ack(agent, &ack).await?;
            confirm_update(app, locator, agent).await?;
            Ok(Disposition::Applied)
        }
        // Update steps are the agent's, not its data: applied whatever the epoch.
        AgentMessage::Report(report) if report.kind == UPDATE_REPORT => {
            let update: UpdateReport = match serde_json::from_value(report.body) {
                Ok(u) => u,
                Err(e) => {
                    warn!(agent = %agent, seq = env.seq, kind = UPDATE_REPORT, error = %e, "malformed update report dropped");
                    return Ok(Disposition::Malformed);
                }
            };
            app.apply_update_report(agent, &update).await?;
            confirm_update(app, locator, agent).await?;
            Ok(Disposition::Applied)
        }
        AgentMessage::Report(report) => {
            if report.kind == BLOCKS_REPORT {
                return on_blocks(app, agent, env.seq, env.epoch, report.body).await;
            }
            if report.kind == LOCATION_REPORT {
                return on_location(app, locator, &row, env.seq, report.body).await;
            }
            match InventoryReport::from_report(&report) {
                Ok(Some(inventory)) => {
                    on_inventory(app, agent, env.seq, env.epoch, inventory).await
                }
                Ok(None) => store_report(app, agent, &report.kind, env.epoch, &report.body).await,
                Err(e) => {
                    warn!(agent = %agent, seq = env.seq, kind = %report.kind, error = %e,
                        "malformed inventory report dropped");
                    Ok(Disposition::Malformed)
                }
            }
        }
    }
}

/// Replaces the agent's blocked devices with a `blocks` report.
async fn on_blocks(
    app: &App,
    agent: &AgentId,
    seq: u64,
    epoch: u64,
    body: serde_json::Value,
) -> Result<Disposition, OpError> {
    let report: BlocksReport = match serde_json::from_value(body) {
        Ok(report) => report,
        Err(e) => {
            warn!(agent = %agent, seq, kind = BLOCKS_REPORT, error = %e, "malformed blocks report dropped");
            return Ok(Disposition::Malformed);
        }
    };
    let blocks = report.blocks.len();
    if !app.apply_blocks_report(agent, epoch, report).await? {
        debug!(agent = %agent, seq, epoch, "blocks report of a data epoch a cleanup just ended dropped");
        return Ok(Disposition::StaleEpoch);
    }
    info!(agent = %agent, seq, blocks, "blocked devices reported");
    Ok(Disposition::Applied)
}

/// Stores the agent's `location` report (or the portal's lookup instead, see `app::location`).
async fn on_location(
    app: &App,
    locator: &Locator,
    row: &AgentRow,
    seq: u64,
    body: serde_json::Value,
) -> Result<Disposition, OpError> {
    let report: LocationReport = match serde_json::from_value(body) {
        Ok(report) => report,
        Err(e) => {
            warn!(agent = %row.id, seq, kind = LOCATION_REPORT, error = %e, "malformed location report dropped");
            return Ok(Disposition::Malformed);
        }
    };
    app.apply_location_report(locator, row, report).await?;
    Ok(Disposition::Applied)
}

/// Applies a snapshot part or a delta in one transaction.
async fn on_inventory(
    app: &App,
    agent: &AgentId,
    seq: u64,
    epoch: u64,
    report: InventoryReport,
) -> Result<Disposition, OpError> {
    let now = app.now();
    if let InventoryReport::Snapshot(p) = &report {
        if p.part >= p.parts {
            warn!(agent = %agent, seq, snapshot = p.snapshot, part = p.part, parts = p.parts,
                "snapshot part numbered outside 0..parts dropped");
            return Ok(Disposition::Malformed);
        }
    }
    let mut tx = app.store().begin().await?;
    // The caller checked the epoch before; a cleanup may have committed since.
    if !agents::hold_epoch(&mut tx, agent, epoch).await? {
        debug!(agent = %agent, seq, epoch, "inventory report of a data epoch a cleanup just ended dropped");
        return Ok(Disposition::StaleEpoch);
    }
    match report {
        InventoryReport::Snapshot(p) => {
            let list = checked_devices(agent, seq, p.devices);
            let outcome =
                devices::apply_part(&mut tx, agent, p.snapshot, p.part, p.parts, &list, now)
                    .await?;
            tx.commit().await.map_err(StoreError::from)?;
            match outcome {
                PartOutcome::Collecting {
                    received,
                    parts,
                    superseded,
                } => {
                    debug!(agent = %agent, seq, snapshot = p.snapshot, part = p.part, received, parts,
                    superseded, devices = list.len(), "snapshot part stored; parts still missing")
                }
                PartOutcome::Complete {
                    removed,
                    superseded,
                } => info!(agent = %agent, seq, snapshot = p.snapshot, parts = p.parts, removed,
                    superseded, "device snapshot complete; devices it does not contain removed"),
            }
        }
        InventoryReport::Delta(d) => {
            // Devices changed after a snapshot started survive its completion.
            let collecting = devices::collecting(&mut tx, agent).await?;
            let list = checked_devices(agent, seq, d.devices);
            for device in &list {
                devices::upsert(&mut tx, agent, device, collecting, now).await?;
            }
            let events = checked_events(agent, seq, d.events);
            for event in &events {
                devices::insert_event(&mut tx, agent, event, now).await?;
            }
            tx.commit().await.map_err(StoreError::from)?;
            debug!(agent = %agent, seq, devices = list.len(), events = events.len(), "device delta applied");
        }
    }
    Ok(Disposition::Applied)
}

/// The MAC in lower-case colon form and the VLAN as stored: `None` for no VLAN (also for a tag of 0, which
/// is a priority tag, not a VLAN); ids above 4094 are refused.
fn check_key(mac: &str, vlan: Option<u16>) -> Result<(String, Option<u16>), String> {
    let Some(normalized) = normalize_mac(mac) else {
        return Err(format!("MAC {mac:?} is not six hex octets"));
    };
    match vlan {
        Some(0) | None => Ok((normalized, None)),
        Some(v) if v <= 4094 => Ok((normalized, Some(v))),
        Some(v) => Err(format!("VLAN {v} is outside 1..=4094")),
    }
}

/// The devices whose key is valid, normalized; the others are logged and skipped.
fn checked_devices(agent: &AgentId, seq: u64, list: Vec<Device>) -> Vec<Device> {
    list.into_iter()
        .filter_map(|mut d| match check_key(&d.mac, d.vlan) {
            Ok((mac, vlan)) => {
                d.mac = mac;
                d.vlan = vlan;
                Some(d)
            }
            Err(problem) => {
                warn!(agent = %agent, seq, problem = %problem, "device with a bad key skipped");
                None
            }
        })
        .collect()
}

/// The events whose key is valid, normalized; the others are logged and skipped.
fn checked_events(agent: &AgentId, seq: u64, list: Vec<DeviceEvent>) -> Vec<DeviceEvent> {
    list.into_iter()
        .filter_map(|mut e| match check_key(&e.mac, e.vlan) {
            Ok((mac, vlan)) => {
                e.mac = mac;
                e.vlan = vlan;
                Some(e)
            }
            Err(problem) => {
                warn!(agent = %agent, seq, problem = %problem, "device event with a bad key skipped");
                None
            }
        })
        .collect()
}

async fn on_hello(
    app: &App,
    locator: &Locator,
    row: &AgentRow,
    epoch: u64,
    hello: &Hello,
) -> Result<Disposition, OpError> {
    let agent = &row.id;
    let now = app.now();
    {
        let mut conn = app.store().conn().await?;
        let facts = HelloFacts {
            version: &hello.version,
            platform: hello.platform.as_str(),
            hostname: &hello.hostname,
            mac: hello.mac.as_deref(),
            local_ip: hello.local_ip.as_deref(),
        };
        agents::set_hello(&mut conn, agent, &facts).await?;
        rollouts::set_agent_target(&mut conn, agent, hello.target.as_deref(), hello.updatable)
            .await?;
        controls::set_segments(&mut conn, agent, &hello.segments).await?;
        // The portal's name wins: if the agent knows another one and no rename is on its way, send one.
        if hello.name != row.name {
            let pending = commands::pending(&mut conn, agent).await?;
            if !pending.iter().any(|c| c.kind == "rename") {
                let cmd = outpost_cloud_link::protocol::Command::Rename {
                    name: row.name.clone(),
                };
                let id = commands::insert(&mut conn, agent, &cmd, now).await?;
                info!(agent = %agent, command_id = id, "agent reported another name; rename queued");
            }
        }
    }
    info!(agent = %agent, version = %hello.version, platform = %hello.platform, geoip = hello.geoip, "agent said hello");
    // Settings: the version it runs with; the current document queued again if it runs an older one.
    app.settings_hello(agent, hello.settings_version).await?;
    app.send_pending(agent).await?;
    confirm_update(app, locator, agent).await?;
    {
        let (app, locator, agent, has_db) =
            (app.clone(), locator.clone(), agent.clone(), hello.geoip);
        tokio::spawn(async move {
            if let Err(e) = app.welcome(&locator, &agent, has_db).await {
                warn!(agent = %agent, error = %e, "public address and location not updated");
            }
        });
    }
    if epoch != row.data_epoch {
        debug!(agent = %agent, epoch, data_epoch = row.data_epoch, "hello interfaces from another data epoch dropped");
        return Ok(Disposition::StaleEpoch);
    }
    let body = serde_json::to_value(&hello.interfaces).unwrap_or_default();
    store_report(app, agent, "interfaces", epoch, &body).await
}

/// Stores a report of the generic latest-per-kind table stamped `epoch`. The write itself checks that
/// `epoch` is still the agent's data epoch: the caller's check read the agent row earlier, and a cleanup
/// may have committed since (rule: stale data never comes back).
pub async fn store_report(
    app: &App,
    agent: &AgentId,
    kind: &str,
    epoch: u64,
    body: &serde_json::Value,
) -> Result<Disposition, OpError> {
    let mut conn = app.store().conn().await?;
    if reports::upsert(&mut conn, agent, kind, epoch, body, app.now()).await? {
        Ok(Disposition::Applied)
    } else {
        debug!(agent = %agent, kind, epoch, "report of a data epoch a cleanup just ended dropped");
        Ok(Disposition::StaleEpoch)
    }
}

/// Tells the agent its new version is healthy (`UpdateHealthy`) when its latest update is installed and
/// it runs that version; idempotent, so every such hello (or late installed step) sends it again.
async fn confirm_update(app: &App, locator: &Locator, agent: &AgentId) -> Result<(), OpError> {
    if let Some(version) = app.update_to_confirm(agent).await? {
        let sent = locator
            .notify(
                agent,
                PortalNotice::UpdateHealthy {
                    version: version.clone(),
                },
            )
            .await;
        info!(agent = %agent, version = %version, sent, "new version confirmed healthy to the agent");
    }
    Ok(())
}
