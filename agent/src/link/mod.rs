//! The broker link: one MQTT/TLS session at a time, the outbox drained through it, commands run from it, and
//! the agent side of the lifecycle when the broker turns the agent away.
//!
//! ```text
//!  connect ──ConnAck──▶ subscribe down/cmd and down/notice, queue presence online + hello (+ location),
//!     │                 drain outbox (window of 16)
//!     ▲                    │ PubAck(pkid) → outbox.ack(seq)      │ command → executor → Ack queued
//!     │                    │ Welcome notice → public address → GeoIP lookup → `location` report queued
//!     │ backoff            ▼ connection error: drop client + event loop
//!     └── refused? ── ask the portal ─┬─ active / pending / unknown / unreachable → backoff, reconnect
//!                                     ├─ deactivated / expired → disabled: poll status, reconnect when active
//!                                     └─ 410 → LinkExit::Deleted (the caller wipes and exits 3)
//! ```
//! Heartbeats are queued every interval whether connected or not (not while disabled). rumqttc would
//! reconnect on its own on the next poll; instead every session gets a fresh client and event loop after the
//! backoff delay, so the outbox is the only source of retransmission.
//!
//! Commands about the agent itself run here too: `update` ([`updates`]: install, restart, commit on the
//! portal's `UpdateHealthy`, the outcome reported at the next connection), `apply_settings` and `health`
//! ([`settings`]), `restart` and `logs` (below). A restart (an installed update, settings that need one, a
//! cleanup that removed such settings, or asked for) closes the session like a shutdown, after queueing the
//! command's acknowledgement, and returns [`LinkExit::Restart`].
//!
//! GeoIP ([`crate::geoip`]): the last `location` report is re-sent on every connect and after a cleanup; the
//! portal answers each hello with a `Welcome` notice carrying the public address it sees, and a new address
//! (or database) means a new lookup and report.

pub mod flight;
mod settings;
#[cfg(test)]
mod tests;
mod updates;
pub mod verdict;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use outpost_cloud_link::backoff::Backoff;
use outpost_cloud_link::control::{BlocksReport, BLOCKS_REPORT};
use outpost_cloud_link::geoip::{LocationReport, LOCATION_REPORT};
use outpost_cloud_link::inventory::{delta_reports, snapshot_part, PART_DEVICES};
use outpost_cloud_link::outbox::{Outbox, OutboxError};
use outpost_cloud_link::protocol::{
    Ack, AgentMessage, Command, Envelope, Heartbeat, Hello, NoticeEnvelope, Outcome, PortalNotice,
    Presence, Report, Segment,
};
use outpost_cloud_link::session::{split_host_port, SessionConfig, SessionError};
use outpost_cloud_link::topics;
use rumqttc::{AsyncClient, ConnectionError, Event, Outgoing, Packet, QoS, SubscribeReasonCode};
use tokio::sync::{mpsc, watch};
use tokio::time::{interval_at, sleep_until, Instant, Interval, MissedTickBehavior};
use tracing::{debug, error, info, warn};

use crate::actions::{Actions, Finished};
use crate::build_info::{self, Fault};
use crate::config::Config;
use crate::diagnostics;
use crate::discovery::engine::Shared;
use crate::executor::{ExecError, Executor, Handled};
use crate::geoip::Locator;
use crate::hostinfo;
use crate::identity::Identity;
use crate::notify::Notifier;
use crate::portal_api::PortalClient;
use crate::runtime_status::{AgentState, LinkState, RuntimeFile};
use crate::settings::{LocalFile, StoredSettings};
use crate::state_dir::StateDirError;
use crate::store::{OutboxTree, Store, StoreError};
use crate::update::install::{Installer, Refusal};
use crate::update::launcher::Restart;
use crate::update::slots::Pending;
use flight::InFlight;
use verdict::{is_refusal, verdict, Verdict};

/// Outbox messages handed to the MQTT client and not yet acknowledged, at most.
pub const WINDOW: usize = 16;
/// Requests queued toward rumqttc's event loop (publishes, PUBACKs for commands, the subscription).
const CHANNEL_CAPACITY: usize = 128;
/// How long a clean shutdown tries to empty the outbox.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);
/// The failure code of a settings document the agent refuses (the message names the field).
pub const INVALID_SETTINGS: &str = "invalid-settings";
/// The failure code of a settings document older than the one applied.
pub const STALE_SETTINGS: &str = "stale-settings";
/// The failure code when the settings cannot be stored.
pub const SETTINGS_STORE: &str = "settings-store";
/// What this agent can do, as told in every hello.
pub const CAPABILITIES: [&str; 9] = [
    "rename",
    "cleanup",
    "ping",
    "discovery",
    "block",
    "power",
    "update",
    "settings",
    "diagnostics",
];

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("outbox: {0}")]
    Outbox(#[from] OutboxError<StoreError>),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(
        "broker session settings from identity.json are unusable: {0}; activate again with --force"
    )]
    Session(#[from] SessionError),
    #[error("write runtime status: {0}")]
    Runtime(#[from] StateDirError),
}

/// Why [`Link::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkExit {
    /// SIGTERM/SIGINT: the agent said goodbye.
    Shutdown,
    /// The portal deleted this agent (410): wipe the state and exit 3.
    Deleted,
    /// An update is staged: the agent restarts into it through its launcher.
    Restart,
}

/// Everything the link needs, handed in by `run`.
pub struct LinkParts {
    pub config: Config,
    pub identity: Identity,
    pub identity_path: PathBuf,
    pub store: Store,
    pub runtime: RuntimeFile,
    pub notifier: Notifier,
    pub portal: PortalClient,
    /// Becomes `true` (or is dropped) when the agent must stop.
    pub shutdown: watch::Receiver<bool>,
    /// The discovery inventory to report (`None` with discovery turned off).
    pub discovery: Option<Arc<Shared>>,
    /// Runs block, unblock and power commands.
    pub actions: Arc<Actions>,
    /// GeoIP self-location: the database (if any) and the last report.
    pub locator: Locator,
    /// Installs updates (the update files in the state directory, the portal, the trusted keys).
    pub installer: Installer,
    /// How to restart into an update; `None`: not started by `outpost-agent launch`, updates refused.
    pub restart: Option<Restart>,
    /// The local configuration file, to lay the portal's settings over.
    pub local: LocalFile,
    /// Where the portal's settings document is kept.
    pub stored_settings: StoredSettings,
    /// The version of the portal's settings in `config` (`None`: the local file alone).
    pub settings_version: Option<u64>,
}

enum Ended {
    Shutdown,
    Restart,
    Lost(ConnectionError),
}

/// An update command's install task ended.
struct UpdateDone {
    command_id: u64,
    release_id: i64,
    version: String,
    result: Result<Pending, Refusal>,
}

enum Wake {
    Active,
    Deleted,
    Shutdown,
}

type Events = mpsc::Receiver<Result<Event, ConnectionError>>;

/// The daemon's link to the portal.
pub struct Link {
    config: Config,
    identity: Identity,
    identity_path: PathBuf,
    store: Store,
    outbox: Outbox<OutboxTree>,
    runtime: RuntimeFile,
    notifier: Notifier,
    portal: PortalClient,
    shutdown: watch::Receiver<bool>,
    session: SessionConfig,
    backoff: Backoff,
    started: Instant,
    cmd_topic: String,
    notice_topic: String,
    heartbeat: Interval,
    watchdog: Option<Interval>,
    discovery: Option<Arc<Shared>>,
    /// Every `report_interval`: inventory changes are stored and queued as deltas.
    report: Interval,
    last_snapshot: u64,
    actions: Arc<Actions>,
    /// Deferred commands that ended, from their tasks.
    finished_tx: mpsc::Sender<Finished>,
    finished: mpsc::Receiver<Finished>,
    /// Deferred commands still running: a redelivery of one is not answered until it ends.
    running: HashSet<u64>,
    /// Bumped by the blocker when the blocks change: the `blocks` report goes out again.
    blocks_changed: watch::Receiver<u64>,
    locator: Locator,
    installer: Installer,
    restart: Option<Restart>,
    /// An install task is running.
    updating: bool,
    update_done_tx: mpsc::Sender<UpdateDone>,
    update_done: mpsc::Receiver<UpdateDone>,
    /// An update is staged (or a restart asked for, or settings need one): close the session and restart.
    restart_now: bool,
    local: LocalFile,
    stored_settings: StoredSettings,
    settings_version: Option<u64>,
}

/// Waits for the next watchdog tick, or forever when systemd wants none.
async fn tick(interval: &mut Option<Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Aborts the event-loop task when the session ends, closing the connection.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Link {
    /// Opens the outbox and prepares the session; must run inside the tokio runtime.
    pub fn new(parts: LinkParts) -> Result<Self, LinkError> {
        let LinkParts {
            config,
            identity,
            identity_path,
            store,
            runtime,
            notifier,
            portal,
            shutdown,
            discovery,
            actions,
            locator,
            installer,
            restart,
            local,
            stored_settings,
            settings_version,
        } = parts;
        let outbox = Outbox::open(store.outbox_log(), config.outbox_max_bytes)?;
        let mut session = SessionConfig::for_agent(
            &identity.broker,
            &identity.agent_id,
            &identity.secret,
            identity.ca_pem.clone().into_bytes(),
        );
        // Commands are PUBACKed only after they are recorded, so one lost in a crash is redelivered.
        session.manual_acks = true;
        // Fail early on a broken identity rather than on every reconnect.
        split_host_port(&identity.broker)?;
        let now = Instant::now();
        let mut heartbeat = interval_at(now + config.heartbeat, config.heartbeat);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let watchdog = notifier.watchdog_interval().map(|period| {
            let mut i = interval_at(now + period, period);
            i.set_missed_tick_behavior(MissedTickBehavior::Delay);
            i
        });
        let mut report = interval_at(
            now + config.discovery.report_interval,
            config.discovery.report_interval,
        );
        report.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let (finished_tx, finished) = mpsc::channel(64);
        let (update_done_tx, update_done) = mpsc::channel(4);
        let mut blocks_changed = actions.blocker().changes();
        blocks_changed.borrow_and_update();
        Ok(Self {
            actions,
            finished_tx,
            finished,
            running: HashSet::new(),
            blocks_changed,
            discovery,
            report,
            last_snapshot: 0,
            backoff: Backoff::new(config.reconnect_initial, config.reconnect_max),
            cmd_topic: topics::commands(&identity.agent_id),
            notice_topic: topics::notices(&identity.agent_id),
            locator,
            installer,
            restart,
            updating: false,
            update_done_tx,
            update_done,
            restart_now: false,
            local,
            stored_settings,
            settings_version,
            started: now,
            config,
            identity,
            identity_path,
            store,
            outbox,
            runtime,
            notifier,
            portal,
            shutdown,
            session,
            heartbeat,
            watchdog,
        })
    }

    /// Runs until shutdown or deletion. Storage failures are errors (the service manager restarts the agent).
    pub async fn run(mut self) -> Result<LinkExit, LinkError> {
        info!(
            agent_id = %self.identity.agent_id,
            broker = %self.identity.broker,
            outbox_depth = self.outbox.depth(),
            interfaces = ?self.config.interfaces,
            "agent starting"
        );
        self.sync_runtime()?;
        // The public address known from the activation reply or the last run, if not looked up yet (the
        // report goes out on connect).
        self.locator.refresh()?;
        self.notifier.ready();
        self.notifier.status("connecting");
        let exit = self.run_inner().await;
        if exit.is_ok() {
            self.runtime.update(|r| r.link = LinkState::Down)?;
            self.notifier.stopping();
        }
        exit
    }

    async fn run_inner(&mut self) -> Result<LinkExit, LinkError> {
        if build_info::fault() == Some(Fault::NeverConnect) {
            warn!(
                "this test build never connects to the broker (OUTPOST_BUILD_FAULT=never-connect)"
            );
            while !self.pause(Duration::from_secs(3600)).await? {}
            return self.exit_while_down();
        }
        loop {
            let err = match self.session_once().await? {
                Ended::Shutdown => return Ok(LinkExit::Shutdown),
                Ended::Restart => return Ok(LinkExit::Restart),
                Ended::Lost(e) => e,
            };
            self.set_link(LinkState::Down)?;
            let delay = self.backoff.next_delay();
            if is_refusal(&err) {
                warn!(error = %err, "the broker turned this agent away; asking the portal why");
                let Some(v) = self.ask_portal().await else {
                    return self.exit_while_down();
                };
                match v {
                    Verdict::Deleted => return Ok(LinkExit::Deleted),
                    Verdict::Disabled { status } => match self.disabled(&status).await? {
                        Wake::Active => {
                            self.backoff.reset();
                            continue;
                        }
                        Wake::Deleted => return Ok(LinkExit::Deleted),
                        Wake::Shutdown => return Ok(LinkExit::Shutdown),
                    },
                    Verdict::Retry => {
                        info!(
                            delay_ms = delay.as_millis() as u64,
                            "the portal says this agent is active; reconnecting"
                        )
                    }
                    Verdict::CredentialsRejected => error!(
                        agent_id = %self.identity.agent_id,
                        delay_ms = delay.as_millis() as u64,
                        "credentials rejected by the portal; retrying (if this persists, activate the agent again with a new code and --force)"
                    ),
                    Verdict::Unexplained { reason } => error!(
                        agent_id = %self.identity.agent_id,
                        reason = %reason,
                        delay_ms = delay.as_millis() as u64,
                        "the broker turned this agent away and the portal's answer does not say why; keeping the state and retrying"
                    ),
                    Verdict::NoAnswer { reason } => warn!(
                        reason = %reason,
                        delay_ms = delay.as_millis() as u64,
                        "cannot ask the portal about this agent; retrying"
                    ),
                }
            } else {
                warn!(error = %err, delay_ms = delay.as_millis() as u64, "broker connection lost; reconnecting");
            }
            if self.pause(delay).await? {
                return self.exit_while_down();
            }
            if self.restart_now {
                return Ok(LinkExit::Restart);
            }
        }
    }

    /// Shutting down without a connection: the goodbye waits in the outbox like everything else.
    fn exit_while_down(&mut self) -> Result<LinkExit, LinkError> {
        self.queue(AgentMessage::Presence(Presence { online: false }), true)?;
        Ok(LinkExit::Shutdown)
    }

    /// One broker session, from connecting to losing it (or shutting down).
    async fn session_once(&mut self) -> Result<Ended, LinkError> {
        debug!(broker = %self.identity.broker, "connecting to the broker");
        let (client, mut eventloop) = self.session.connect(CHANNEL_CAPACITY)?;
        // The event loop runs in its own task so it is never cancelled mid-write by the select below.
        let (tx, mut events) = mpsc::channel(64);
        let _task = AbortOnDrop(tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await;
                let failed = event.is_err();
                if tx.send(event).await.is_err() || failed {
                    return;
                }
            }
        }));
        let mut flight = InFlight::default();
        let mut up = false;
        loop {
            if self.restart_now {
                self.close(&client, &mut events, &mut flight, up).await?;
                return Ok(Ended::Restart);
            }
            if up {
                self.pump(&client, &mut flight)?;
            }
            tokio::select! {
                event = events.recv() => match event {
                    Some(Ok(event)) => self.on_event(event, &client, &mut flight, &mut up)?,
                    Some(Err(e)) => return Ok(Ended::Lost(e)),
                    None => return Ok(Ended::Lost(ConnectionError::RequestsDone)),
                },
                _ = self.heartbeat.tick() => self.queue_heartbeat()?,
                _ = self.report.tick() => self.report_changes()?,
                Some(done) = self.finished.recv() => self.on_finished(done)?,
                Some(done) = self.update_done.recv() => self.on_update_done(done)?,
                Ok(()) = self.blocks_changed.changed() => self.queue_blocks()?,
                _ = tick(&mut self.watchdog) => self.notifier.watchdog(),
                _ = self.shutdown.changed() => {
                    self.close(&client, &mut events, &mut flight, up).await?;
                    return Ok(Ended::Shutdown);
                }
            }
        }
    }

    fn on_event(
        &mut self,
        event: Event,
        client: &AsyncClient,
        flight: &mut InFlight,
        up: &mut bool,
    ) -> Result<(), LinkError> {
        match event {
            Event::Incoming(Packet::ConnAck(ack)) => {
                *up = true;
                self.backoff.reset();
                info!(broker = %self.identity.broker, session_present = ack.session_present, "connected to the broker");
                if let Err(e) = client.try_subscribe(&self.cmd_topic, QoS::AtLeastOnce) {
                    warn!(error = %e, "could not subscribe to commands");
                }
                if let Err(e) = client.try_subscribe(&self.notice_topic, QoS::AtLeastOnce) {
                    warn!(error = %e, "could not subscribe to the portal's notices");
                }
                self.queue(AgentMessage::Presence(Presence { online: true }), true)?;
                let hello = self.hello();
                self.queue(AgentMessage::Hello(hello), false)?;
                self.queue_snapshot()?;
                self.queue_blocks()?;
                self.queue_location()?;
                self.queue_update_outcome()?;
                self.set_link(LinkState::Up)?;
            }
            Event::Incoming(Packet::Publish(publish)) => {
                if publish.topic == self.cmd_topic {
                    self.on_command(&publish.payload)?;
                } else if publish.topic == self.notice_topic {
                    self.on_notice(&publish.payload)?;
                } else {
                    warn!(topic = %publish.topic, "ignoring a message on an unexpected topic");
                }
                if let Err(e) = client.try_ack(&publish) {
                    warn!(error = %e, "could not acknowledge a command to the broker; it will be redelivered and answered from the record");
                }
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some(seq) = flight.acked(ack.pkid) {
                    self.outbox.ack(seq)?;
                    self.sync_runtime()?;
                }
            }
            Event::Incoming(Packet::SubAck(ack))
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure)) =>
            {
                error!(commands = %self.cmd_topic, notices = %self.notice_topic, "the broker refused a subscription; commands or notices cannot arrive (check the agent's broker role)");
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                let _ = flight.published(pkid);
            }
            _ => {}
        }
        Ok(())
    }

    fn on_command(&mut self, payload: &[u8]) -> Result<(), LinkError> {
        if let Ok(env) = outpost_cloud_link::protocol::CommandEnvelope::decode(payload) {
            if self.running.contains(&env.id) {
                debug!(
                    command_id = env.id,
                    "command redelivered while still running; it is acknowledged when it ends"
                );
                return Ok(());
            }
        }
        let before = self.identity.name.clone();
        let handled = Executor {
            store: &self.store,
            outbox: &mut self.outbox,
            identity: &mut self.identity,
            identity_path: &self.identity_path,
            settings: &self.stored_settings,
        }
        .handle(payload)?;
        let done = match handled {
            None => return Ok(()),
            Some(Handled::Deferred {
                command_id,
                cmd:
                    Command::Update {
                        release_id,
                        version,
                    },
            }) => {
                self.start_update(command_id, release_id, &version)?;
                return Ok(());
            }
            Some(Handled::Deferred {
                command_id,
                cmd: Command::ApplySettings { doc },
            }) => return self.apply_settings(command_id, doc),
            Some(Handled::Deferred {
                command_id,
                cmd: Command::Restart,
            }) => {
                let how = if self.restart.is_some() {
                    "launcher"
                } else {
                    "service-manager"
                };
                info!(command_id, how, "restart asked for by the portal");
                self.finish_command(
                    command_id,
                    Outcome::Done,
                    Some(serde_json::json!({ "restart": how })),
                )?;
                self.restart_now = true;
                return Ok(());
            }
            Some(Handled::Deferred {
                command_id,
                cmd: Command::Logs { lines },
            }) => {
                let lines = serde_json::to_value(diagnostics::log_lines(lines)).ok();
                return self.finish_command(command_id, Outcome::Done, lines);
            }
            Some(Handled::Deferred {
                command_id,
                cmd: Command::Health,
            }) => {
                let health = self.health();
                return self.finish_command(command_id, Outcome::Done, Some(health));
            }
            Some(Handled::Deferred { command_id, cmd }) => {
                self.running.insert(command_id);
                self.actions
                    .spawn(command_id, cmd, self.finished_tx.clone());
                return Ok(());
            }
            Some(Handled::Done(done)) => done,
        };
        if self.identity.name != before {
            info!(name = %self.identity.name, "renamed");
        }
        // Whatever its epoch (one not above the stored epoch still wiped the store): forget what is in
        // memory too.
        let mut restart = false;
        if done.cleanup {
            // The store, the outbox's data messages and the portal's settings are wiped; forget the devices
            // in memory too, tell the portal the (empty) inventory of the new epoch, and sweep again at once.
            if let Some(shared) = &self.discovery {
                shared.clear();
            }
            // Blocks are data too: lift them all (restoring ARP caches); the blocker's change
            // notification sends the emptied `blocks` report.
            let blocker = Arc::clone(self.actions.blocker());
            tokio::spawn(async move {
                if let Err(e) = blocker.unblock_all().await {
                    warn!(error = %e, code = e.code(), "cleanup: lifting the blocks failed");
                }
            });
            self.queue_snapshot()?;
            // The portal wiped its reports: the location goes again, stamped with the new epoch.
            self.queue_location()?;
            restart = self.settings_after_cleanup();
        }
        self.queue(
            AgentMessage::Ack(Ack {
                command_id: done.command_id,
                outcome: done.outcome,
                result: None,
            }),
            false,
        )?;
        if restart {
            // Like settings that need a restart: the session closes (emptying the outbox, this
            // acknowledgement included, for up to SHUTDOWN_FLUSH; what is left goes after the restart).
            info!("cleanup: restarting to run without the portal's settings");
            self.restart_now = true;
        }
        Ok(())
    }

    /// A deferred command ended: record its outcome (so it never runs again) and acknowledge it.
    fn on_finished(&mut self, done: Finished) -> Result<(), LinkError> {
        self.running.remove(&done.command_id);
        let recorded = Executor {
            store: &self.store,
            outbox: &mut self.outbox,
            identity: &mut self.identity,
            identity_path: &self.identity_path,
            settings: &self.stored_settings,
        }
        .finish(done.command_id, done.outcome)?;
        if let Outcome::Failed { message, code } = &recorded.outcome {
            info!(command_id = done.command_id, code = code.as_deref().unwrap_or(""), message = %message, "command failed");
        }
        self.queue(
            AgentMessage::Ack(Ack {
                command_id: recorded.command_id,
                outcome: recorded.outcome,
                result: done.result,
            }),
            false,
        )
    }

    /// A notice from the portal: the `Welcome` after each hello tells the public address.
    fn on_notice(&mut self, payload: &[u8]) -> Result<(), LinkError> {
        let notice = match NoticeEnvelope::decode(payload) {
            Ok(env) => env.notice,
            Err(e) => {
                warn!(error = %e, "ignoring an unreadable notice from the portal");
                return Ok(());
            }
        };
        match notice {
            PortalNotice::Welcome { public_ip } => {
                debug!(public_ip = ?public_ip, "welcome from the portal");
                if let Some(report) = self.locator.learn(public_ip.as_deref())? {
                    self.queue_location_report(&report)?;
                }
            }
            PortalNotice::UpdateHealthy { version } => self.on_update_healthy(&version)?,
            PortalNotice::Unknown => debug!("ignoring a notice of a type this agent does not know"),
        }
        Ok(())
    }

    /// Records a command's outcome (so it never runs again) and acknowledges it.
    fn finish_command(
        &mut self,
        command_id: u64,
        outcome: Outcome,
        result: Option<serde_json::Value>,
    ) -> Result<(), LinkError> {
        let recorded = Executor {
            store: &self.store,
            outbox: &mut self.outbox,
            identity: &mut self.identity,
            identity_path: &self.identity_path,
            settings: &self.stored_settings,
        }
        .finish(command_id, outcome)?;
        self.queue(
            AgentMessage::Ack(Ack {
                command_id: recorded.command_id,
                outcome: recorded.outcome,
                result,
            }),
            false,
        )
    }

    /// The last `location` report again, if there is one (on connect and after a cleanup).
    fn queue_location(&mut self) -> Result<(), LinkError> {
        match self.locator.report().cloned() {
            Some(report) => self.queue_location_report(&report),
            None => Ok(()),
        }
    }

    fn queue_location_report(&mut self, report: &LocationReport) -> Result<(), LinkError> {
        let body = serde_json::to_value(report).unwrap_or_default();
        self.queue(
            AgentMessage::Report(Report {
                kind: LOCATION_REPORT.to_owned(),
                body,
            }),
            false,
        )
    }

    /// Every device blocked now (on connect and after each change).
    fn queue_blocks(&mut self) -> Result<(), LinkError> {
        let report = BlocksReport {
            blocks: self.actions.blocker().blocks(),
        };
        let body = serde_json::to_value(&report).unwrap_or_default();
        self.queue(
            AgentMessage::Report(Report {
                kind: BLOCKS_REPORT.to_owned(),
                body,
            }),
            false,
        )
    }

    /// Hands queued messages to the client until the window is full or the outbox has nothing more.
    fn pump(&mut self, client: &AsyncClient, flight: &mut InFlight) -> Result<(), LinkError> {
        while flight.in_flight() < WINDOW {
            let batch = self
                .outbox
                .pending(flight.last_sent(), WINDOW - flight.in_flight())?;
            if batch.is_empty() {
                return Ok(());
            }
            for q in batch {
                let e = q.entry;
                if client
                    .try_publish(e.topic, QoS::AtLeastOnce, e.retain, e.payload)
                    .is_err()
                {
                    // The request channel is full; the next event makes room.
                    return Ok(());
                }
                flight.handed_over(q.seq);
            }
        }
        Ok(())
    }

    /// Says goodbye on a live session: offline presence, up to [`SHUTDOWN_FLUSH`] to empty the outbox, DISCONNECT.
    async fn close(
        &mut self,
        client: &AsyncClient,
        events: &mut Events,
        flight: &mut InFlight,
        up: bool,
    ) -> Result<(), LinkError> {
        info!("shutting down");
        self.report_changes()?;
        self.queue(AgentMessage::Presence(Presence { online: false }), true)?;
        if !up {
            return Ok(());
        }
        let deadline = Instant::now() + SHUTDOWN_FLUSH;
        loop {
            self.pump(client, flight)?;
            if flight.is_empty() && self.outbox.depth() == 0 {
                break;
            }
            tokio::select! {
                event = events.recv() => match event {
                    // Commands arriving now are not run or acknowledged: the broker redelivers them.
                    Some(Ok(event @ (Event::Incoming(Packet::PubAck(_)) | Event::Outgoing(Outgoing::Publish(_))))) => {
                        let mut still_up = true;
                        self.on_event(event, client, flight, &mut still_up)?;
                    }
                    Some(Ok(_)) => {}
                    _ => return Ok(()),
                },
                _ = sleep_until(deadline) => {
                    warn!(outbox_depth = self.outbox.depth(), "stopping with messages still queued; they are sent after the next start");
                    break;
                }
            }
        }
        if client.try_disconnect().is_ok() {
            let deadline = Instant::now() + Duration::from_millis(500);
            loop {
                tokio::select! {
                    event = events.recv() => match event {
                        Some(Ok(Event::Outgoing(Outgoing::Disconnect))) | Some(Err(_)) | None => break,
                        Some(Ok(_)) => {}
                    },
                    _ = sleep_until(deadline) => break,
                }
            }
        }
        Ok(())
    }

    /// Waits out a backoff delay, still queueing heartbeats. `true` when shutdown was requested.
    async fn pause(&mut self, delay: Duration) -> Result<bool, LinkError> {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = sleep_until(until) => return Ok(false),
                _ = self.heartbeat.tick() => self.queue_heartbeat()?,
                _ = self.report.tick() => self.report_changes()?,
                Some(done) = self.finished.recv() => self.on_finished(done)?,
                Some(done) = self.update_done.recv() => {
                    self.on_update_done(done)?;
                    if self.restart_now {
                        return Ok(false);
                    }
                }
                Ok(()) = self.blocks_changed.changed() => self.queue_blocks()?,
                _ = tick(&mut self.watchdog) => self.notifier.watchdog(),
                _ = self.shutdown.changed() => return Ok(true),
            }
        }
    }

    /// `GET /agent/status` and what it means; `None` when shutdown was requested meanwhile.
    async fn ask_portal(&mut self) -> Option<Verdict> {
        let id = self.identity.agent_id.to_string();
        let answer = tokio::select! {
            a = self.portal.agent_status(&id, &self.identity.secret) => a,
            _ = self.shutdown.changed() => return None,
        };
        if let Ok(s) = &answer {
            debug!(status = %s.status, "portal status");
        }
        Some(verdict(&answer))
    }

    /// Deactivated or expired: no broker, data kept, status polled every `disabled_poll`.
    async fn disabled(&mut self, status: &str) -> Result<Wake, LinkError> {
        let poll = self.config.disabled_poll;
        warn!(status, poll_secs = poll.as_secs_f64(), "this agent is {status} in the portal: not connecting, keeping local data, asking the portal again periodically");
        self.runtime.update(|r| {
            r.state = AgentState::Disabled;
            r.link = LinkState::Down;
        })?;
        self.notifier
            .status(&format!("disabled: {status} in the portal"));
        loop {
            let next = Instant::now() + poll;
            loop {
                tokio::select! {
                    _ = sleep_until(next) => break,
                    _ = tick(&mut self.watchdog) => self.notifier.watchdog(),
                    _ = self.shutdown.changed() => return Ok(Wake::Shutdown),
                }
            }
            let Some(v) = self.ask_portal().await else {
                return Ok(Wake::Shutdown);
            };
            match v {
                Verdict::Retry => {
                    info!("the portal says this agent is active again; reconnecting");
                    self.runtime.update(|r| r.state = AgentState::Active)?;
                    self.notifier.status("connecting");
                    return Ok(Wake::Active);
                }
                Verdict::Deleted => return Ok(Wake::Deleted),
                Verdict::Disabled { status } => debug!(status = %status, "still disabled"),
                Verdict::CredentialsRejected => {
                    error!(agent_id = %self.identity.agent_id, "credentials rejected by the portal while disabled")
                }
                Verdict::Unexplained { reason } => {
                    error!(agent_id = %self.identity.agent_id, reason = %reason, "the portal's answer does not say whether this agent is active again; asking again later")
                }
                Verdict::NoAnswer { reason } => {
                    warn!(reason = %reason, "cannot ask the portal whether this agent is active again")
                }
            }
        }
    }

    fn hello(&self) -> Hello {
        let facts = match split_host_port(&self.identity.broker) {
            Ok((host, port)) => hostinfo::gather(&host, port),
            Err(_) => hostinfo::gather("127.0.0.1", 9),
        };
        Hello {
            version: crate::build_info::VERSION.to_owned(),
            platform: self.config.platform.unwrap_or(self.identity.platform),
            hostname: facts.hostname,
            name: self.identity.name.clone(),
            mac: facts.mac,
            local_ip: facts.local_ip.map(|ip| ip.to_string()),
            interfaces: facts.interfaces,
            capabilities: CAPABILITIES
                .iter()
                .filter(|c| **c != "discovery" || self.discovery.is_some())
                .map(|c| (*c).to_owned())
                .collect(),
            segments: self
                .config
                .interfaces
                .iter()
                .flatten()
                .map(|i| Segment {
                    interface: i.name.clone(),
                    vlan: i.vlan,
                    tagged: i.tagged,
                })
                .collect(),
            geoip: self.locator.has_db(),
            target: Some(build_info::TARGET.to_owned()),
            updatable: self.restart.is_some(),
            settings_version: self.settings_version,
        }
    }

    /// The whole inventory, in parts (on every connect and after a cleanup).
    fn queue_snapshot(&mut self) -> Result<(), LinkError> {
        let Some(shared) = self.discovery.clone() else {
            return Ok(());
        };
        // Changes up to now are in the snapshot; store them, their events still go out as a delta.
        self.report_changes()?;
        let id = (chrono::Utc::now().timestamp_millis().max(0) as u64).max(self.last_snapshot + 1);
        self.last_snapshot = id;
        // A part at a time: a big inventory is never held twice in memory, nor as one JSON tree.
        let keys = shared.keys();
        let parts = keys.len().div_ceil(PART_DEVICES).max(1) as u32;
        debug!(
            snapshot = id,
            devices = keys.len(),
            parts,
            "queueing an inventory snapshot"
        );
        for part in 0..parts {
            let from = (part as usize * PART_DEVICES).min(keys.len());
            let chunk = &keys[from..(from + PART_DEVICES).min(keys.len())];
            let report = snapshot_part(id, part, parts, shared.devices_of(chunk));
            self.queue(AgentMessage::Report(report), false)?;
        }
        Ok(())
    }

    /// Stores the devices that changed and queues them with their events as deltas.
    fn report_changes(&mut self) -> Result<(), LinkError> {
        let Some(shared) = self.discovery.clone() else {
            return Ok(());
        };
        let (devices, events) = shared.take_changes();
        if devices.is_empty() && events.is_empty() {
            return Ok(());
        }
        self.store.put_devices(&devices)?;
        for e in &events {
            info!(event = e.kind.as_str(), mac = %e.mac, ip = ?e.ipv4, vlan = ?e.vlan, iface = %e.interface, "device");
        }
        for report in delta_reports(&devices, &events) {
            self.queue(AgentMessage::Report(report), false)?;
        }
        Ok(())
    }

    fn queue_heartbeat(&mut self) -> Result<(), LinkError> {
        let hb = Heartbeat {
            uptime_s: self.started.elapsed().as_secs(),
            outbox_depth: self.outbox.depth(),
            outbox_dropped: self.outbox.dropped(),
        };
        self.queue(AgentMessage::Heartbeat(hb), false)
    }

    /// Puts a message in the outbox, stamped with its seq and the current data epoch.
    fn queue(&mut self, msg: AgentMessage, retain: bool) -> Result<(), LinkError> {
        let kind = msg.kind();
        let topic = topics::up(&self.identity.agent_id, kind);
        let epoch = self.store.epoch()?;
        let at_ms = chrono::Utc::now().timestamp_millis();
        match self.outbox.push(&topic, retain, |seq| {
            Envelope::new(seq, epoch, at_ms, msg).encode()
        }) {
            Ok(pushed) if pushed.dropped > 0 => warn!(
                dropped = pushed.dropped,
                dropped_total = self.outbox.dropped(),
                "outbox full: dropped the oldest messages (raise outbox_max_bytes to keep more)"
            ),
            Ok(_) => {}
            Err(e @ OutboxError::TooLarge { .. }) => {
                warn!(kind = kind.as_str(), error = %e, "message not queued")
            }
            Err(e) => return Err(e.into()),
        }
        self.sync_runtime()
    }

    fn set_link(&mut self, link: LinkState) -> Result<(), LinkError> {
        if self.runtime.current().link != link {
            self.notifier.status(match link {
                LinkState::Up => "link up",
                LinkState::Down => "link down",
            });
        }
        self.runtime.update(|r| r.link = link)?;
        Ok(())
    }

    fn sync_runtime(&mut self) -> Result<(), LinkError> {
        let (depth, dropped, name) = (
            self.outbox.depth(),
            self.outbox.dropped(),
            self.identity.name.clone(),
        );
        self.runtime.update(|r| {
            r.outbox_depth = depth;
            r.outbox_dropped = dropped;
            r.name = name;
        })?;
        Ok(())
    }
}
