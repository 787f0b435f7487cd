//! [`BrokerAdmin`] over Mosquitto's dynamic-security plugin: JSON commands published to
//! `$CONTROL/dynamic-security/v1` on a persistent admin session, replies matched by `correlationData` on
//! `$CONTROL/dynamic-security/v1/response`.
//!
//! Facts of Mosquitto 2.0.11 this relies on (checked against the real broker):
//! - ACLs do not substitute `%u`/`%c`, so each agent has its own role `agent-<id>` with literal topics.
//! - `disableClient`, `deleteClient`, `setClientPassword` and `modifyClient` (even with no field to change)
//!   disconnect a connected client at once; `modifyClient` with only the username is the kick.
//! - `addClientRole` for a role the client already has answers "Internal error", so it is only sent when
//!   the role is missing.
//! - The client's `clientid` is pinned to the agent id, so an agent cannot connect under another client id
//!   (for instance to take over the portal's sessions).
//! - The default ACL access must deny (what no role allows is refused). A `dynamic-security.json` the
//!   portal did not write may allow; so at every (re)connect of the admin session, before any other
//!   command, the session sends `setDefaultACLAccess` with all four types denied (batch 0, answered in
//!   the log only). The plugin saves it to its file.
//!
//! The session reconnects by itself (the broker may be restarted by the supervisor); a command interrupted
//! by a reconnect is sent again, which is safe because every operation here is idempotent.
//!
//! [`commands`] builds the JSON and parses the replies; this module runs the session.

pub mod commands;

pub use commands::*;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use outpost_cloud_link::session::SessionConfig;
use outpost_cloud_link::AgentId;
use rumqttc::{AsyncClient, Publish, QoS};
use serde_json::Value;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::session_task::{self, Refusal, Session, SessionTask};
use super::{BrokerAdmin, BrokerError};

struct Pending {
    count: usize,
    tx: oneshot::Sender<Vec<Reply>>,
}

struct Shared {
    pending: Mutex<HashMap<u64, Pending>>,
    /// `true` while connected and subscribed to the responses.
    ready: watch::Sender<bool>,
    /// Set once the session task has ended.
    closed: watch::Sender<bool>,
}

impl Shared {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dispatch(&self, payload: &[u8]) {
        let (ours, stray) = match parse_responses(payload) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable dynamic-security response");
                return;
            }
        };
        for r in stray {
            tracing::warn!(command = %r.command, error = ?r.error, "dynamic-security response without correlation data");
        }
        let mut by_batch: HashMap<u64, Vec<(usize, Reply)>> = HashMap::new();
        for (b, i, r) in ours {
            if b == DEFAULT_ACL_BATCH {
                match &r.error {
                    None => tracing::debug!("the broker denies by default"),
                    Some(e) => tracing::error!(error = %e,
                        "the broker refused to deny access by default: agents may reach topics their role does not allow; check the dynamic-security plugin and restart the portal"),
                }
                continue;
            }
            by_batch.entry(b).or_default().push((i, r));
        }
        let mut pending = self.pending();
        for (batch, replies) in by_batch {
            let Some(p) = pending.remove(&batch) else {
                continue; // an answer to a request that already timed out
            };
            let mut out = vec![Reply::missing(); p.count];
            for (i, r) in replies {
                if let Some(slot) = out.get_mut(i) {
                    *slot = r;
                }
            }
            let _ = p.tx.send(out);
        }
    }

    /// The connection is gone: requests in flight are retried by their callers once it is back.
    fn lost(&self) {
        self.ready.send_replace(false);
        self.pending().clear();
    }
}

/// The broker's account administration over the dynamic-security plugin.
pub struct DynsecAdmin {
    client: AsyncClient,
    shared: Arc<Shared>,
    ready: watch::Receiver<bool>,
    closed: watch::Receiver<bool>,
    next_batch: AtomicU64,
    /// Multi-step operations run one at a time, so a read-then-write sees no other portal change between.
    ops: tokio::sync::Mutex<()>,
    timeout: Duration,
    /// Where clients connect from (Mosquitto's log); `None` until [`DynsecAdmin::follow_connections`].
    connections: Option<super::connections::ConnectionLog>,
}

impl DynsecAdmin {
    /// Opens the admin session (`config` should have a clean session and no last will) and waits until it
    /// is connected and subscribed to the responses, at most `timeout`.
    pub(crate) async fn connect(
        config: SessionConfig,
        timeout: Duration,
    ) -> Result<(DynsecAdmin, SessionTask), BrokerError> {
        let (client, eventloop) = config
            .connect(64)
            .map_err(|e| BrokerError::Setup(format!("admin session: {e}")))?;
        let (ready_tx, ready_rx) = watch::channel(false);
        let (closed_tx, closed_rx) = watch::channel(false);
        let (refused_tx, mut refused_rx) = watch::channel(None::<String>);
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            ready: ready_tx,
            closed: closed_tx,
        });
        let task = {
            let client = client.clone();
            let shared = shared.clone();
            let session = AdminSession {
                shared,
                refused: refused_tx,
                client: client.clone(),
            };
            SessionTask::spawn(move |stop| session_task::drive(client, eventloop, session, stop))
        };
        let admin = DynsecAdmin {
            client,
            shared,
            ready: ready_rx,
            closed: closed_rx,
            next_batch: AtomicU64::new(1),
            ops: tokio::sync::Mutex::new(()),
            timeout: DEFAULT_TIMEOUT,
            connections: None,
        };
        let mut ready = admin.ready.clone();
        let wait = async {
            tokio::select! {
                r = ready.wait_for(|r| *r) => r.map(|_| ()).map_err(|_| BrokerError::Disconnected("the admin session ended".into())),
                r = refused_rx.wait_for(|r| r.is_some()) => {
                    let why = r.ok().and_then(|r| r.clone()).unwrap_or_default();
                    Err(BrokerError::Setup(format!("the broker refused the portal's admin session: {why}")))
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(())) => Ok((admin, task)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(BrokerError::Timeout(timeout)),
        }
    }

    /// Whether the admin session is connected now.
    pub fn is_connected(&self) -> bool {
        *self.ready.borrow()
    }

    /// Sends `commands` in one message and returns one reply per command, in order. Waits for the session
    /// (reconnecting after a broker restart) and sends again if the connection drops before the answer;
    /// gives up after the admin timeout.
    pub async fn request(&self, commands: &[Value]) -> Result<Vec<Reply>, BrokerError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            self.wait_ready(deadline).await?;
            let batch = self.next_batch.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            self.shared.pending().insert(
                batch,
                Pending {
                    count: commands.len(),
                    tx,
                },
            );
            let payload = serde_json::to_vec(&envelope(batch, commands)).unwrap_or_default();
            let sent = tokio::time::timeout_at(
                deadline,
                self.client
                    .publish(CONTROL_TOPIC, QoS::AtLeastOnce, false, payload),
            )
            .await;
            match sent {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    self.shared.pending().remove(&batch);
                    return Err(BrokerError::Disconnected(format!(
                        "the admin session ended: {e}"
                    )));
                }
                Err(_) => {
                    self.shared.pending().remove(&batch);
                    return Err(BrokerError::Timeout(self.timeout));
                }
            }
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(replies)) => return Ok(replies),
                Ok(Err(_)) => {
                    tracing::debug!(
                        batch,
                        "admin connection lost before the broker answered; sending again"
                    );
                    continue;
                }
                Err(_) => {
                    self.shared.pending().remove(&batch);
                    return Err(BrokerError::Timeout(self.timeout));
                }
            }
        }
    }

    async fn wait_ready(&self, deadline: Instant) -> Result<(), BrokerError> {
        if *self.closed.borrow() {
            return Err(BrokerError::Disconnected(
                "the portal's broker session was shut down".into(),
            ));
        }
        let mut ready = self.ready.clone();
        let mut closed = self.closed.clone();
        tokio::select! {
            r = tokio::time::timeout_at(deadline, ready.wait_for(|r| *r)) => match r {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(_)) => Err(BrokerError::Disconnected("the portal's broker session was shut down".into())),
                Err(_) => Err(BrokerError::Timeout(self.timeout)),
            },
            _ = closed.wait_for(|c| *c) => Err(BrokerError::Disconnected("the portal's broker session was shut down".into())),
        }
    }

    /// Sends one command and returns its reply.
    async fn one(&self, command: Value) -> Result<Reply, BrokerError> {
        let mut replies = self.request(std::slice::from_ref(&command)).await?;
        Ok(replies.pop().unwrap_or_else(Reply::missing))
    }
}

/// The portal's own account is not an agent: refuse to touch it through the agent operations.
fn check_not_reserved(command: &'static str, agent: &AgentId) -> Result<(), BrokerError> {
    if agent.as_str() == super::config::ADMIN_USERNAME {
        return Err(BrokerError::Refused {
            command,
            agent: agent.to_string(),
            message: "this name is reserved for the portal's own broker account".into(),
        });
    }
    Ok(())
}

fn refused(command: &'static str, agent: &AgentId, reply: &Reply) -> BrokerError {
    BrokerError::Refused {
        command,
        agent: agent.to_string(),
        message: reply.error.clone().unwrap_or_default(),
    }
}

/// Accepts a reply that succeeded or failed only with one of `benign`.
fn expect(
    command: &'static str,
    agent: &AgentId,
    reply: &Reply,
    benign: &[&str],
) -> Result<(), BrokerError> {
    if reply.is_ok() || benign.iter().any(|b| reply.error_is(b)) {
        Ok(())
    } else {
        Err(refused(command, agent, reply))
    }
}

/// How long [`BrokerAdmin::client_address`] waits for the broker log to show a connection.
const CLIENT_ADDRESS_WAIT: Duration = Duration::from_secs(2);

impl DynsecAdmin {
    /// Answers [`BrokerAdmin::client_address`] from this follower of the broker's log.
    pub(crate) fn follow_connections(&mut self, log: super::connections::ConnectionLog) {
        self.connections = Some(log);
    }
}

#[async_trait]
impl BrokerAdmin for DynsecAdmin {
    async fn client_address(&self, agent: &AgentId) -> Option<std::net::IpAddr> {
        self.connections
            .as_ref()?
            .address(agent.as_str(), CLIENT_ADDRESS_WAIT)
            .await
    }

    async fn create_agent(&self, agent: &AgentId, secret: &str) -> Result<(), BrokerError> {
        check_not_reserved("createClient", agent)?;
        let _op = self.ops.lock().await;
        let replies = self
            .request(&[cmd::create_role(agent), cmd::create_client(agent, secret)])
            .await?;
        let (role, client) = (&replies[0], &replies[1]);
        expect("createRole", agent, role, &[ROLE_EXISTS])?;

        if role.error_is(ROLE_EXISTS) {
            // Make sure the existing role still holds every ACL.
            let got = self.one(cmd::get_role(agent)).await?;
            expect("getRole", agent, &got, &[])?;
            let have: Vec<(String, String)> = got
                .data
                .as_ref()
                .and_then(|d| d["role"]["acls"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .map(|a| {
                    (
                        a["acltype"].as_str().unwrap_or_default().to_owned(),
                        a["topic"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            let missing: Vec<Value> = agent_acls(agent)
                .iter()
                .filter(|a| {
                    !have.iter().any(|(t, topic)| {
                        a["acltype"].as_str() == Some(t.as_str())
                            && a["topic"].as_str() == Some(topic.as_str())
                    })
                })
                .map(|a| cmd::add_role_acl(agent, a))
                .collect();
            if !missing.is_empty() {
                for r in self.request(&missing).await? {
                    expect("addRoleACL", agent, &r, &[ACL_EXISTS])?;
                }
            }
        }

        if client.is_ok() {
            return Ok(());
        }
        if !client.error_is(CLIENT_EXISTS) {
            return Err(refused("createClient", agent, client));
        }
        // The client exists: new secret, pinned client id, and the role attached.
        let got = self.one(cmd::get_client(agent)).await?;
        expect("getClient", agent, &got, &[])?;
        let info = got.data.as_ref().map(|d| &d["client"]);
        let has_role = info.and_then(|c| c["roles"].as_array()).is_some_and(|rs| {
            rs.iter()
                .any(|r| r["rolename"].as_str() == Some(role_name(agent).as_str()))
        });
        let pinned = info.and_then(|c| c["clientid"].as_str()) == Some(agent.as_str());
        let mut fix = vec![cmd::set_password(agent, secret)];
        if !pinned {
            fix.push(cmd::set_client_id(agent));
        }
        if !has_role {
            fix.push(cmd::add_client_role(agent));
        }
        for r in self.request(&fix).await? {
            expect("createClient", agent, &r, &[])?;
        }
        Ok(())
    }

    async fn disable_agent(&self, agent: &AgentId) -> Result<(), BrokerError> {
        check_not_reserved("disableClient", agent)?;
        let _op = self.ops.lock().await;
        // An unknown agent cannot connect either: nothing left to refuse.
        expect(
            "disableClient",
            agent,
            &self.one(cmd::disable(agent)).await?,
            &[CLIENT_NOT_FOUND],
        )
    }

    async fn enable_agent(&self, agent: &AgentId) -> Result<(), BrokerError> {
        check_not_reserved("enableClient", agent)?;
        let _op = self.ops.lock().await;
        expect(
            "enableClient",
            agent,
            &self.one(cmd::enable(agent)).await?,
            &[],
        )
    }

    async fn delete_agent(&self, agent: &AgentId) -> Result<(), BrokerError> {
        check_not_reserved("deleteClient", agent)?;
        let _op = self.ops.lock().await;
        let replies = self
            .request(&[cmd::delete_client(agent), cmd::delete_role(agent)])
            .await?;
        expect("deleteClient", agent, &replies[0], &[CLIENT_NOT_FOUND])?;
        expect("deleteRole", agent, &replies[1], &[ROLE_NOT_FOUND])
    }

    async fn kick_agent(&self, agent: &AgentId) -> Result<(), BrokerError> {
        check_not_reserved("modifyClient", agent)?;
        let _op = self.ops.lock().await;
        // An unknown agent is not connected.
        expect(
            "modifyClient",
            agent,
            &self.one(cmd::kick(agent)).await?,
            &[CLIENT_NOT_FOUND],
        )
    }

    /// One `listClients` tells which clients are enabled; only those of `agents` get a `disableClient`
    /// (so a sweep over many disabled agents sends one read, and the plugin rewrites its file only when
    /// something changes). An agent without a client cannot connect: nothing to do.
    async fn ensure_disabled(&self, agents: &[AgentId]) -> Result<usize, BrokerError> {
        if agents.is_empty() {
            return Ok(0);
        }
        let listed = self.one(cmd::list_clients()).await?;
        let clients = listed
            .data
            .as_ref()
            .and_then(|d| d["clients"].as_array())
            .filter(|_| listed.is_ok());
        let Some(clients) = clients else {
            tracing::warn!(error = ?listed.error, "the broker did not list its clients; disabling each refused agent");
            for agent in agents {
                self.disable_agent(agent).await?;
            }
            return Ok(agents.len());
        };
        let enabled: std::collections::HashSet<&str> = clients
            .iter()
            .filter(|c| c["disabled"].as_bool() != Some(true))
            .filter_map(|c| c["username"].as_str())
            .collect();
        let mut disabled = 0;
        for agent in agents.iter().filter(|a| enabled.contains(a.as_str())) {
            self.disable_agent(agent).await?;
            disabled += 1;
        }
        Ok(disabled)
    }

    async fn rotate_secret(&self, agent: &AgentId, secret: &str) -> Result<(), BrokerError> {
        check_not_reserved("setClientPassword", agent)?;
        let _op = self.ops.lock().await;
        expect(
            "setClientPassword",
            agent,
            &self.one(cmd::set_password(agent, secret)).await?,
            &[],
        )
    }
}

/// The admin session's turn in the shared session loop: routes the plugin's answers to the waiting calls.
struct AdminSession {
    shared: Arc<Shared>,
    refused: watch::Sender<Option<String>>,
    client: AsyncClient,
}

impl Session for AdminSession {
    const NAME: &'static str = "admin";
    const FILTER: &'static str = RESPONSE_TOPIC;

    fn subscribed(&mut self) {
        // Queued before the session is marked ready, so it reaches the broker before any other command.
        let payload = serde_json::to_vec(&envelope(DEFAULT_ACL_BATCH, &[cmd::deny_by_default()]))
            .unwrap_or_default();
        if let Err(e) = self
            .client
            .try_publish(CONTROL_TOPIC, QoS::AtLeastOnce, false, payload)
        {
            tracing::error!(error = %e,
                "could not send the broker its deny-by-default ACL access; it is sent again at the next connect");
        }
        self.shared.ready.send_replace(true);
    }

    fn refused(&mut self, why: Refusal) {
        let why = match why {
            Refusal::Connection(code) => {
                format!("{code:?} (the credentials in the broker directory do not match)")
            }
            Refusal::Subscription => {
                "not allowed to subscribe to the dynamic-security responses".to_owned()
            }
        };
        let _ = self.refused.send(Some(why));
    }

    async fn message(
        &mut self,
        _client: &AsyncClient,
        p: Publish,
        _stop: &mut watch::Receiver<bool>,
    ) -> bool {
        if p.topic == RESPONSE_TOPIC {
            self.shared.dispatch(&p.payload);
        }
        true
    }

    fn lost(&mut self) {
        self.shared.lost();
    }
}

impl Drop for AdminSession {
    /// The session task has ended: calls still waiting will get no answer.
    fn drop(&mut self) {
        self.shared.lost();
        self.shared.closed.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_delivers_whole_batches_in_order() {
        let (ready, _) = watch::channel(false);
        let (closed, _) = watch::channel(false);
        let shared = Shared {
            pending: Mutex::new(HashMap::new()),
            ready,
            closed,
        };
        let (tx, mut rx) = oneshot::channel();
        shared.pending().insert(3, Pending { count: 3, tx });
        shared.dispatch(br#"{"responses":[{"command":"b","correlationData":"3:1"},{"command":"a","correlationData":"3:0"}]}"#);
        let replies = rx.try_recv().unwrap();
        assert_eq!(replies[0].command, "a");
        assert_eq!(replies[1].command, "b");
        assert!(!replies[2].is_ok());
        assert!(shared.pending().is_empty());
    }
}
