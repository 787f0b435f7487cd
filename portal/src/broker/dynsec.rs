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
//!
//! The session reconnects by itself (the broker may be restarted by the supervisor); a command interrupted
//! by a reconnect is sent again, which is safe because every operation here is idempotent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use outpost_cloud_link::backoff::Backoff;
use outpost_cloud_link::session::SessionConfig;
use outpost_cloud_link::{topics, AgentId};
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, Packet, QoS, SubscribeReasonCode};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::session_task::{self, SessionTask};
use super::{BrokerAdmin, BrokerError};

/// Where commands go.
pub const CONTROL_TOPIC: &str = "$CONTROL/dynamic-security/v1";
/// Where the plugin answers.
pub const RESPONSE_TOPIC: &str = "$CONTROL/dynamic-security/v1/response";
/// How long one operation may take, reconnects included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

const CLIENT_NOT_FOUND: &str = "Client not found";
const ROLE_NOT_FOUND: &str = "Role not found";
const CLIENT_EXISTS: &str = "Client already exists";
const ROLE_EXISTS: &str = "Role already exists";
const ACL_EXISTS: &str = "ACL with this topic already exists";

/// The role holding one agent's ACLs.
pub fn role_name(agent: &AgentId) -> String {
    format!("agent-{agent}")
}

/// One agent's ACLs, literal (dynamic security does not substitute `%u`): publish under its own `up/`,
/// subscribe to and receive its own `down/`.
pub fn agent_acls(agent: &AgentId) -> Vec<Value> {
    let up = topics::agent_up_filter(agent);
    let down = topics::agent_down_filter(agent);
    [
        ("publishClientSend", &up),
        ("subscribeLiteral", &down),
        ("subscribePattern", &down),
        ("publishClientReceive", &down),
        ("unsubscribeLiteral", &down),
        ("unsubscribePattern", &down),
    ]
    .into_iter()
    .map(|(acltype, topic)| json!({ "acltype": acltype, "topic": topic, "priority": 0, "allow": true }))
    .collect()
}

/// The JSON commands, one builder each (without `correlationData`, added when sent).
pub mod cmd {
    use super::*;

    pub fn create_role(agent: &AgentId) -> Value {
        json!({
            "command": "createRole",
            "rolename": role_name(agent),
            "textdescription": format!("Outpost agent {agent}"),
            "acls": agent_acls(agent),
        })
    }

    pub fn create_client(agent: &AgentId, secret: &str) -> Value {
        json!({
            "command": "createClient",
            "username": agent.as_str(),
            "password": secret,
            "clientid": agent.as_str(),
            "textname": format!("Outpost agent {agent}"),
            "roles": [{ "rolename": role_name(agent) }],
        })
    }

    pub fn get_client(agent: &AgentId) -> Value {
        json!({ "command": "getClient", "username": agent.as_str() })
    }

    pub fn get_role(agent: &AgentId) -> Value {
        json!({ "command": "getRole", "rolename": role_name(agent) })
    }

    pub fn add_role_acl(agent: &AgentId, acl: &Value) -> Value {
        let mut c = acl.clone();
        c["command"] = json!("addRoleACL");
        c["rolename"] = json!(role_name(agent));
        c
    }

    pub fn add_client_role(agent: &AgentId) -> Value {
        json!({ "command": "addClientRole", "username": agent.as_str(), "rolename": role_name(agent) })
    }

    pub fn set_client_id(agent: &AgentId) -> Value {
        json!({ "command": "modifyClient", "username": agent.as_str(), "clientid": agent.as_str() })
    }

    pub fn set_password(agent: &AgentId, secret: &str) -> Value {
        json!({ "command": "setClientPassword", "username": agent.as_str(), "password": secret })
    }

    pub fn disable(agent: &AgentId) -> Value {
        json!({ "command": "disableClient", "username": agent.as_str() })
    }

    pub fn enable(agent: &AgentId) -> Value {
        json!({ "command": "enableClient", "username": agent.as_str() })
    }

    pub fn delete_client(agent: &AgentId) -> Value {
        json!({ "command": "deleteClient", "username": agent.as_str() })
    }

    pub fn delete_role(agent: &AgentId) -> Value {
        json!({ "command": "deleteRole", "rolename": role_name(agent) })
    }

    /// `modifyClient` with nothing to change: Mosquitto 2.0 disconnects the client and changes nothing.
    pub fn kick(agent: &AgentId) -> Value {
        json!({ "command": "modifyClient", "username": agent.as_str() })
    }
}

/// Wraps commands in the envelope the plugin expects, tagging command `i` with `correlationData` `"<batch>:<i>"`.
pub fn envelope(batch: u64, commands: &[Value]) -> Value {
    let commands: Vec<Value> = commands
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut c = c.clone();
            c["correlationData"] = json!(format!("{batch}:{i}"));
            c
        })
        .collect();
    json!({ "commands": commands })
}

/// One answer of the plugin.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Reply {
    pub command: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(rename = "correlationData", default)]
    pub correlation: Option<String>,
}

impl Reply {
    fn missing() -> Self {
        Self {
            command: String::new(),
            error: Some("no reply from the broker".into()),
            data: None,
            correlation: None,
        }
    }

    fn is_ok(&self) -> bool {
        self.error.is_none()
    }

    fn error_is(&self, e: &str) -> bool {
        self.error.as_deref() == Some(e)
    }
}

#[derive(Deserialize)]
struct Responses {
    responses: Vec<Reply>,
}

/// `(batch, index, reply)` triples with our correlation data, and the replies without.
pub type ParsedResponses = (Vec<(u64, usize, Reply)>, Vec<Reply>);

/// Splits a response message into `(batch, index, reply)` triples; replies without our correlation data
/// (e.g. "Payload not valid JSON") come back in the second list.
pub fn parse_responses(payload: &[u8]) -> Result<ParsedResponses, serde_json::Error> {
    let Responses { responses } = serde_json::from_slice(payload)?;
    let mut ours = Vec::new();
    let mut stray = Vec::new();
    for r in responses {
        let parsed = r.correlation.as_deref().and_then(|c| {
            let (b, i) = c.split_once(':')?;
            Some((b.parse::<u64>().ok()?, i.parse::<usize>().ok()?))
        });
        match parsed {
            Some((b, i)) => ours.push((b, i, r)),
            None => stray.push(r),
        }
    }
    Ok((ours, stray))
}

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
            SessionTask::spawn(move |stop| run(client, eventloop, shared, stop, refused_tx))
        };
        let admin = DynsecAdmin {
            client,
            shared,
            ready: ready_rx,
            closed: closed_rx,
            next_batch: AtomicU64::new(1),
            ops: tokio::sync::Mutex::new(()),
            timeout: DEFAULT_TIMEOUT,
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

#[async_trait]
impl BrokerAdmin for DynsecAdmin {
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

/// Drives the admin session: subscribes to the responses on every connect, routes answers, reconnects.
async fn run(
    client: AsyncClient,
    mut eventloop: EventLoop,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    refused: watch::Sender<Option<String>>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    let mut connected = false;
    let mut awaiting_suback = false;
    let mut outage_logged = false;
    loop {
        let event = tokio::select! {
            e = eventloop.poll() => e,
            _ = session_task::stopped(&mut stop) => break,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                connected = true;
                backoff.reset();
                if outage_logged {
                    tracing::info!("admin session to the broker is back");
                    outage_logged = false;
                }
                awaiting_suback = true;
                if let Err(e) = client.try_subscribe(RESPONSE_TOPIC, QoS::AtLeastOnce) {
                    tracing::error!(error = %e, "cannot subscribe to the dynamic-security responses");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) if awaiting_suback => {
                awaiting_suback = false;
                if ack
                    .return_codes
                    .iter()
                    .all(|c| matches!(c, SubscribeReasonCode::Success(_)))
                {
                    shared.ready.send_replace(true);
                } else {
                    tracing::error!(
                        "the broker does not let the portal read dynamic-security responses; check the \
                         outpost-portal role in dynamic-security.json"
                    );
                    let _ = refused.send(Some(
                        "not allowed to subscribe to the dynamic-security responses".into(),
                    ));
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if p.topic == RESPONSE_TOPIC {
                    shared.dispatch(&p.payload);
                }
            }
            Ok(_) => {}
            Err(e) => {
                connected = false;
                awaiting_suback = false;
                shared.lost();
                if let ConnectionError::ConnectionRefused(code) = &e {
                    let _ = refused.send(Some(format!(
                        "{code:?} (the credentials in the broker directory do not match)"
                    )));
                }
                if !outage_logged {
                    tracing::warn!(error = %e, "admin session to the broker lost; reconnecting");
                    outage_logged = true;
                } else {
                    tracing::debug!(error = %e, "admin session still down");
                }
                let delay = backoff.next_delay();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = session_task::stopped(&mut stop) => break,
                }
            }
        }
    }
    shared.lost();
    shared.closed.send_replace(true);
    session_task::disconnect(&client, &mut eventloop, connected).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> AgentId {
        AgentId::parse("ag-7x2k9").unwrap()
    }

    #[test]
    fn agent_acls_are_literal_and_confined_to_the_agent() {
        let acls = agent_acls(&id());
        let has = |t: &str, topic: &str| {
            acls.iter()
                .any(|a| a["acltype"] == t && a["topic"] == topic && a["allow"] == true)
        };
        assert!(has("publishClientSend", "agents/ag-7x2k9/up/#"));
        assert!(has("subscribeLiteral", "agents/ag-7x2k9/down/#"));
        assert!(has("subscribePattern", "agents/ag-7x2k9/down/#"));
        assert!(has("publishClientReceive", "agents/ag-7x2k9/down/#"));
        for a in &acls {
            let topic = a["topic"].as_str().unwrap();
            assert!(topic.starts_with("agents/ag-7x2k9/"), "{topic}");
            assert!(!topic.contains('%'), "{topic}");
        }
        assert_eq!(
            acls.iter()
                .filter(|a| a["acltype"] == "publishClientSend")
                .count(),
            1
        );
    }

    #[test]
    fn create_commands() {
        let role = cmd::create_role(&id());
        assert_eq!(role["command"], "createRole");
        assert_eq!(role["rolename"], "agent-ag-7x2k9");
        assert_eq!(
            role["acls"].as_array().unwrap().len(),
            agent_acls(&id()).len()
        );
        let client = cmd::create_client(&id(), "s3cret");
        assert_eq!(
            client,
            json!({
                "command": "createClient",
                "username": "ag-7x2k9",
                "password": "s3cret",
                "clientid": "ag-7x2k9",
                "textname": "Outpost agent ag-7x2k9",
                "roles": [{ "rolename": "agent-ag-7x2k9" }],
            })
        );
        let acl = cmd::add_role_acl(&id(), &agent_acls(&id())[0]);
        assert_eq!(acl["command"], "addRoleACL");
        assert_eq!(acl["rolename"], "agent-ag-7x2k9");
        assert_eq!(acl["acltype"], "publishClientSend");
    }

    #[test]
    fn other_commands() {
        assert_eq!(
            cmd::kick(&id()),
            json!({"command": "modifyClient", "username": "ag-7x2k9"})
        );
        assert_eq!(
            cmd::disable(&id()),
            json!({"command": "disableClient", "username": "ag-7x2k9"})
        );
        assert_eq!(
            cmd::enable(&id()),
            json!({"command": "enableClient", "username": "ag-7x2k9"})
        );
        assert_eq!(
            cmd::delete_role(&id()),
            json!({"command": "deleteRole", "rolename": "agent-ag-7x2k9"})
        );
        assert_eq!(
            cmd::set_password(&id(), "x"),
            json!({"command": "setClientPassword", "username": "ag-7x2k9", "password": "x"})
        );
    }

    #[test]
    fn envelope_tags_each_command() {
        let env = envelope(42, &[cmd::disable(&id()), cmd::enable(&id())]);
        assert_eq!(env["commands"][0]["correlationData"], "42:0");
        assert_eq!(env["commands"][1]["correlationData"], "42:1");
        assert_eq!(env["commands"][1]["command"], "enableClient");
    }

    #[test]
    fn responses_are_split_by_correlation() {
        // As Mosquitto 2.0.11 sends them.
        let payload = br#"{"responses":[{"command":"createRole","correlationData":"7:0"},
            {"command":"createClient","error":"Client already exists","correlationData":"7:1"},
            {"command":"getClient","data":{"client":{"username":"c1"}},"correlationData":"8:0"},
            {"command":"Unknown command","error":"Payload not valid JSON"}]}"#;
        let (ours, stray) = parse_responses(payload).unwrap();
        assert_eq!(ours.len(), 3);
        assert_eq!((ours[1].0, ours[1].1), (7, 1));
        assert!(ours[1].2.error_is(CLIENT_EXISTS));
        assert_eq!(ours[2].2.data.as_ref().unwrap()["client"]["username"], "c1");
        assert_eq!(stray.len(), 1);
    }

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
