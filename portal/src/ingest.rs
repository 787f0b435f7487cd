//! Agent messages into the store: sequence bookkeeping (duplicates dropped, gaps counted), then one
//! handler per message kind. Messages of unknown or deleted agents are ignored; reports and hello data from
//! an older data epoch than the agent's row are dropped.

use outpost_cloud_link::protocol::{AgentMessage, Envelope, Hello};
use outpost_cloud_link::AgentId;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::app::{App, OpError};
use crate::store::agents::{self, AgentRow, HelloFacts};
use crate::store::{commands, reports};

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
}

/// Consumes the link's incoming messages until the channel closes.
pub async fn run(app: App, mut incoming: mpsc::Receiver<crate::link::Incoming>) {
    while let Some(msg) = incoming.recv().await {
        if let Err(e) = handle(&app, &msg.agent, msg.envelope).await {
            warn!(agent = %msg.agent, error = %e, "agent message not stored");
        }
    }
    info!("agent message stream ended");
}

/// Applies one message from `agent`.
pub async fn handle(app: &App, agent: &AgentId, env: Envelope) -> Result<Disposition, OpError> {
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
    match env.msg {
        AgentMessage::Hello(hello) => on_hello(app, &row, env.epoch, &hello).await,
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
            Ok(Disposition::Applied)
        }
        AgentMessage::Report(report) => {
            if env.epoch != row.data_epoch {
                debug!(agent = %agent, kind = %report.kind, epoch = env.epoch, data_epoch = row.data_epoch,
                    "report from another data epoch dropped");
                return Ok(Disposition::StaleEpoch);
            }
            let mut conn = app.store().conn().await?;
            reports::upsert(&mut conn, agent, &report.kind, env.epoch, &report.body, now).await?;
            Ok(Disposition::Applied)
        }
    }
}

async fn on_hello(
    app: &App,
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
    info!(agent = %agent, version = %hello.version, platform = %hello.platform, "agent said hello");
    app.send_pending(agent).await?;
    if epoch != row.data_epoch {
        debug!(agent = %agent, epoch, data_epoch = row.data_epoch, "hello interfaces from another data epoch dropped");
        return Ok(Disposition::StaleEpoch);
    }
    let body = serde_json::to_value(&hello.interfaces).unwrap_or_default();
    let mut conn = app.store().conn().await?;
    reports::upsert(&mut conn, agent, "interfaces", epoch, &body, now).await?;
    Ok(Disposition::Applied)
}
