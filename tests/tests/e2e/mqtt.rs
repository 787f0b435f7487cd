//! Speaking MQTT in tests as an agent (with its stored credentials) or as the portal would.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use outpost_cloud_link::protocol::{AgentMessage, Envelope};
use outpost_cloud_link::session::SessionConfig;
use outpost_cloud_link::topics;
use outpost_cloud_link::AgentId;
use rumqttc::{AsyncClient, Event, EventLoop, Incoming, QoS};
use serde_json::Value;

/// A connected MQTT client and the task driving it; events arrive on `events`.
pub struct Client {
    pub client: AsyncClient,
    pub events: tokio::sync::mpsc::UnboundedReceiver<Incoming>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects with `cfg`; fails if the broker refuses or nothing happens within 10 s.
pub async fn connect(cfg: SessionConfig) -> Result<Client> {
    let (client, eventloop) = cfg.connect(64)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(drive(eventloop, tx));
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .context("no answer from the broker within 10 s")?;
    match first {
        Some(Incoming::ConnAck(ack)) if ack.code == rumqttc::ConnectReturnCode::Success => {
            Ok(Client {
                client,
                events: rx,
                task,
            })
        }
        other => bail!("connection not accepted: {other:?}"),
    }
}

async fn drive(mut eventloop: EventLoop, tx: tokio::sync::mpsc::UnboundedSender<Incoming>) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(i)) => {
                if tx.send(i).is_err() {
                    return;
                }
            }
            Ok(Event::Outgoing(_)) => {}
            Err(e) => {
                let _ = tx.send(Incoming::Disconnect);
                let _ = e;
                return;
            }
        }
    }
}

impl Client {
    /// Waits for the next packet matching `pick`, up to `timeout`.
    pub async fn next_matching<T>(
        &mut self,
        timeout: Duration,
        mut pick: impl FnMut(&Incoming) -> Option<T>,
    ) -> Result<Option<T>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => return Ok(None),
                Ok(None) => bail!("connection closed"),
                Ok(Some(i)) => {
                    if let Some(v) = pick(&i) {
                        return Ok(Some(v));
                    }
                }
            }
        }
    }

    /// Subscribes and returns the SUBACK return codes.
    pub async fn subscribe(&mut self, filter: &str) -> Result<Vec<rumqttc::SubscribeReasonCode>> {
        self.client.subscribe(filter, QoS::AtLeastOnce).await?;
        self.next_matching(Duration::from_secs(5), |i| match i {
            Incoming::SubAck(ack) => Some(ack.return_codes.clone()),
            _ => None,
        })
        .await?
        .context("no SUBACK")
    }

    /// QoS 1 publish, waiting for the PUBACK.
    pub async fn publish(&mut self, topic: &str, payload: Vec<u8>) -> Result<()> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await?;
        self.next_matching(Duration::from_secs(5), |i| {
            matches!(i, Incoming::PubAck(_)).then_some(())
        })
        .await?
        .context("no PUBACK")
    }
}

/// A session with an agent's stored credentials (from its identity.json). The broker pins an agent's client id
/// to its agent id, so this takes the agent's place: use it while the agent itself is not running.
pub fn agent_session(identity: &Value) -> Result<SessionConfig> {
    let id = AgentId::parse(
        identity["agent_id"]
            .as_str()
            .context("identity has no agent_id")?,
    )?;
    let mut cfg = SessionConfig::for_agent(
        identity["broker"]
            .as_str()
            .context("identity has no broker")?,
        &id,
        identity["secret"]
            .as_str()
            .context("identity has no secret")?,
        identity["ca_pem"]
            .as_str()
            .context("identity has no ca_pem")?
            .as_bytes()
            .to_vec(),
    );
    cfg.last_will = None;
    Ok(cfg)
}

/// A report as an agent would queue it.
pub fn report(seq: u64, epoch: u64, kind: &str) -> Vec<u8> {
    Envelope::new(
        seq,
        epoch,
        0,
        AgentMessage::Report(outpost_cloud_link::protocol::Report {
            kind: kind.into(),
            body: serde_json::json!({"from": "test"}),
        }),
    )
    .encode()
}

pub fn report_topic(agent: &str) -> Result<String> {
    Ok(topics::up(&AgentId::parse(agent)?, topics::UpKind::Report))
}
