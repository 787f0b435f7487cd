//! The portal's own MQTT session: every agent's messages in (`agents/+/up/#`), commands out
//! (`agents/<id>/down/cmd`) and notices out (`agents/<id>/down/notice`).
//!
//! The session is persistent (`clean_session = false`, client id [`CLIENT_ID`]), so QoS 1 messages agents
//! publish while the portal is reconnecting are queued by the broker and arrive afterwards. It subscribes
//! again on every CONNACK (the broker may have lost the session), reconnects quickly by itself after a
//! broker restart, and acknowledges a message to the broker only after handing it to the channel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use outpost_cloud_link::protocol::{CommandEnvelope, Envelope, NoticeEnvelope};
use outpost_cloud_link::session::SessionConfig;
use outpost_cloud_link::{topics, AgentId};
use rumqttc::{AsyncClient, ClientError, Publish, QoS};
use tokio::sync::{mpsc, watch};

use crate::broker::session_task::{self, Refusal, Session, SessionTask};

/// The MQTT client id of the portal's link session.
pub const CLIENT_ID: &str = "outpost-portal-link";
/// How long [`Link::send_command`] waits for room in the session's queue.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// One decoded message from an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub agent: AgentId,
    pub envelope: Envelope,
}

/// The sending half of the portal's session (cheap to clone).
#[derive(Clone)]
pub struct Link {
    client: AsyncClient,
    connected: Arc<AtomicBool>,
    subscriptions: watch::Receiver<u64>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the portal's broker session is shut down")]
    Closed,
    #[error("the portal's broker session is not taking messages (queue full for {0:?}); is the broker up?")]
    Busy(Duration),
    #[error("cannot open the portal's broker session: {0}")]
    Setup(String),
    #[error("the broker refused the portal's link session: {0}")]
    Refused(String),
    #[error("the portal's link session did not connect within {0:?}")]
    Timeout(Duration),
}

impl Link {
    /// QoS 1 publish of `cmd` to `topics::commands(agent)`.
    ///
    /// `Ok` means the command is queued on the session; while the broker is away it goes out after the
    /// reconnect. Delivery to the agent is confirmed only by the agent's `Ack`.
    pub async fn send_command(
        &self,
        agent: &AgentId,
        cmd: &CommandEnvelope,
    ) -> Result<(), LinkError> {
        let publish = self.client.publish(
            topics::commands(agent),
            QoS::AtLeastOnce,
            false,
            cmd.encode(),
        );
        match tokio::time::timeout(SEND_TIMEOUT, publish).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(LinkError::Closed),
            Err(_) => Err(LinkError::Busy(SEND_TIMEOUT)),
        }
    }

    /// QoS 1 publish of `notice` to `topics::notices(agent)` (not retained; nothing confirms it).
    pub async fn send_notice(
        &self,
        agent: &AgentId,
        notice: &NoticeEnvelope,
    ) -> Result<(), LinkError> {
        let publish = self.client.publish(
            topics::notices(agent),
            QoS::AtLeastOnce,
            false,
            notice.encode(),
        );
        match tokio::time::timeout(SEND_TIMEOUT, publish).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(LinkError::Closed),
            Err(_) => Err(LinkError::Busy(SEND_TIMEOUT)),
        }
    }

    /// Whether the session is connected and subscribed now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Counts the session's successful subscriptions: it changes each time the session has (re)subscribed
    /// to every agent's messages.
    pub fn subscriptions(&self) -> watch::Receiver<u64> {
        self.subscriptions.clone()
    }

    /// Opens the session and waits until it is connected and subscribed, at most `timeout`. Decoded
    /// messages go to `incoming`.
    pub(crate) async fn connect(
        config: SessionConfig,
        incoming: mpsc::Sender<Incoming>,
        timeout: Duration,
    ) -> Result<(Link, SessionTask), LinkError> {
        let (client, eventloop) = config
            .connect(256)
            .map_err(|e| LinkError::Setup(e.to_string()))?;
        let connected = Arc::new(AtomicBool::new(false));
        let (status_tx, mut status_rx) = watch::channel(Status::Connecting);
        let (subscribed_tx, subscriptions) = watch::channel(0u64);
        let task = {
            let client = client.clone();
            let connected = connected.clone();
            let session = LinkSession {
                incoming,
                connected,
                status: status_tx,
                subscribed: subscribed_tx,
            };
            SessionTask::spawn(move |stop| session_task::drive(client, eventloop, session, stop))
        };
        let link = Link {
            client,
            connected,
            subscriptions,
        };
        let wait = async {
            status_rx
                .wait_for(|s| !matches!(s, Status::Connecting))
                .await
                .map(|s| s.clone())
        };
        let result = tokio::time::timeout(timeout, wait).await;
        match result {
            Ok(Ok(Status::Up)) => Ok((link, task)),
            Ok(Ok(Status::Refused(why))) => Err(LinkError::Refused(why)),
            Ok(Ok(Status::Connecting)) | Ok(Err(_)) => Err(LinkError::Closed),
            Err(_) => Err(LinkError::Timeout(timeout)),
        }
    }
}

/// The session configuration of the link, from the portal's broker credentials.
pub fn session_config(
    broker: &str,
    username: &str,
    password: &str,
    ca_pem: Vec<u8>,
) -> SessionConfig {
    SessionConfig {
        broker: broker.to_owned(),
        client_id: CLIENT_ID.to_owned(),
        username: username.to_owned(),
        password: password.to_owned(),
        ca_pem,
        keep_alive: Duration::from_secs(30),
        clean_session: false,
        last_will: None,
        inflight: 100,
        connect_timeout: Duration::from_secs(5),
        // Acknowledge a message only once it is handed over (the broker redelivers it otherwise).
        manual_acks: true,
    }
}

#[derive(Debug, Clone)]
enum Status {
    Connecting,
    Up,
    Refused(String),
}

/// Decodes one publish from an agent; `Err` says why it is dropped.
pub fn decode(topic: &str, payload: &[u8]) -> Result<Incoming, String> {
    let (agent, kind) =
        topics::parse_up(topic).ok_or_else(|| format!("not an agent topic: {topic:?}"))?;
    let envelope = Envelope::decode(kind, payload).map_err(|e| format!("{agent}: {e}"))?;
    Ok(Incoming { agent, envelope })
}

async fn ack(client: &AsyncClient, publish: &Publish) {
    if publish.qos == QoS::AtMostOnce {
        return;
    }
    match client.try_ack(publish) {
        Ok(()) => {}
        Err(ClientError::TryRequest(_)) => {
            let _ = client.ack(publish).await;
        }
        Err(_) => {}
    }
}

/// The link's turn in the shared session loop: agent messages go to the channel, and the rest of the
/// portal learns whether the session is up.
struct LinkSession {
    incoming: mpsc::Sender<Incoming>,
    connected: Arc<AtomicBool>,
    status: watch::Sender<Status>,
    /// Bumped after every successful subscription.
    subscribed: watch::Sender<u64>,
}

impl Session for LinkSession {
    const NAME: &'static str = "link";
    const FILTER: &'static str = topics::ALL_UP;

    fn subscribed(&mut self) {
        self.connected.store(true, Ordering::Relaxed);
        self.status.send_replace(Status::Up);
        self.subscribed.send_modify(|n| *n += 1);
    }

    fn refused(&mut self, why: Refusal) {
        let why = match why {
            Refusal::Connection(code) => format!("{code:?}"),
            Refusal::Subscription => format!("not allowed to subscribe to {}", topics::ALL_UP),
        };
        self.status.send_replace(Status::Refused(why));
    }

    async fn message(
        &mut self,
        client: &AsyncClient,
        p: Publish,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        match decode(&p.topic, &p.payload) {
            Ok(msg) => {
                tokio::select! {
                    r = self.incoming.send(msg) => if r.is_err() {
                        tracing::debug!(topic = %p.topic, "nobody takes agent messages any more; dropped");
                    },
                    _ = session_task::stopped(stop) => return false,
                }
            }
            Err(why) => {
                let agent = topics::parse_up(&p.topic).map(|(a, _)| a.to_string());
                tracing::warn!(agent = agent.as_deref().unwrap_or("?"), topic = %p.topic, error = %why, "dropped a malformed or unknown agent message");
            }
        }
        ack(client, &p).await;
        true
    }

    fn lost(&mut self) {
        self.connected.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_cloud_link::protocol::{AgentMessage, Presence};

    #[test]
    fn decodes_agent_messages_and_refuses_the_rest() {
        let env = Envelope::new(3, 0, 1, AgentMessage::Presence(Presence { online: true }));
        let msg = decode("agents/ag-1/up/presence", &env.encode()).unwrap();
        assert_eq!(msg.agent.as_str(), "ag-1");
        assert_eq!(msg.envelope, env);
        assert!(decode("agents/ag-1/up/hello", &env.encode())
            .unwrap_err()
            .contains("ag-1"));
        assert!(decode("agents/ag-1/up/presence", b"{").is_err());
        assert!(decode("agents/ag-1/down/cmd", &env.encode()).is_err());
        assert!(decode("elsewhere", &env.encode()).is_err());
    }

    #[test]
    fn the_link_session_is_persistent() {
        let cfg = session_config("127.0.0.1:8883", "outpost-portal", "pw", Vec::new());
        assert!(!cfg.clean_session);
        assert_eq!(cfg.client_id, CLIENT_ID);
        assert!(cfg.last_will.is_none());
    }
}
