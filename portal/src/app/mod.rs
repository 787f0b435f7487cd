//! The portal's operations: each combines the store, the broker and the link so that the API, the ingest
//! loop, the sweeper and the CLI share one implementation of every rule.
//!
//! - [`activation`]: activation codes, activation, agent credentials and operator tokens.
//! - [`agents`]: rename, cleanup, delete, the subscription lifecycle and the sweep; [`renewals`]: yearly
//!   and quarterly renewals (the renewal sweep, weekly reminder mails, a person's decision).
//! - [`commands`]: queueing and sending commands, acknowledgements and waiting for them.
//! - [`devices`]: reading an agent's device inventory and device events.
//! - [`owner`]: owner access: an agent's owner and per-device flags, what a signed-in owner sees and may do;
//!   [`owner_auth`]: owner accounts, invitation links, passwords, sessions and CSRF tokens.
//! - [`control`]: device control: block, unblock, power, outlet bindings, what a device allows.
//! - [`location`]: GeoIP: agents' public addresses, the `Welcome` notice, the portal's own lookups.
//! - [`rollouts`]: over-the-air update rollouts in stages and agents' update attempts.
//! - [`settings`]: agent settings pushed from the portal (versioned documents, their acknowledgements, the
//!   re-sync at hello); [`diagnostics`]: restart, and the agent's logs and health asked live.
//! - [`sites`]: each agent's site configuration (read, validated write with a history line); the
//!   agents list search and CSV export rows are in [`agents`].

pub mod account;
pub mod activation;
pub mod agents;
pub mod branding;
pub mod commands;
pub mod control;
pub mod devices;
pub mod diagnostics;
pub mod groups;
pub mod location;
pub mod members;
pub mod owner;
pub mod owner_auth;
pub mod releases;
pub mod renewals;
pub mod rollouts;
pub mod session_tokens;
pub mod sessions;
pub mod settings;
pub mod sites;
pub mod two_factor;
pub mod users;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use outpost_cloud_link::protocol::CommandEnvelope;
use outpost_cloud_link::AgentId;
use tokio::sync::Notify;

use crate::broker::{BrokerAdmin, BrokerError};
use crate::clock::{SettableClock, SharedClock};
use crate::codes::MalformedCode;
use crate::lifecycle::LifecycleError;
use crate::store::agents::AgentRow;
use crate::store::{Store, StoreError};

pub use activation::{Activated, ActivationRequest, NewCode};

/// A command could not be handed to the broker.
#[derive(Debug, thiserror::Error)]
#[error("could not send the command: {0}")]
pub struct SendError(pub String);

/// How the app sends commands to agents: the MQTT link in production, a recording fake in tests.
#[async_trait]
pub trait CommandSender: Send + Sync + 'static {
    async fn send_command(&self, agent: &AgentId, cmd: &CommandEnvelope) -> Result<(), SendError>;
}

#[async_trait]
impl CommandSender for crate::link::Link {
    async fn send_command(&self, agent: &AgentId, cmd: &CommandEnvelope) -> Result<(), SendError> {
        crate::link::Link::send_command(self, agent, cmd)
            .await
            .map_err(|e| SendError(e.to_string()))
    }
}

/// What an operation refuses or fails with; the API maps each to a status code.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("there is no agent {0}; check the id (GET /api/v1/agents lists them)")]
    UnknownAgent(String),
    #[error("there is no command {command} for agent {agent}; GET /api/v1/agents/{agent}/commands lists its commands")]
    UnknownCommand { agent: String, command: u64 },
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    MalformedCode(#[from] MalformedCode),
    #[error("this activation code is not known; check it or ask for a new one")]
    UnknownCode,
    #[error("this activation code has been used as many times as it allows; ask for a new one")]
    CodeUsedUp,
    #[error("this activation code has expired; ask for a new one")]
    CodeExpired,
    #[error("the agent id or secret is wrong; if this agent's state directory was lost or replaced, activate it again with a new code (outpost-agent --state DIR activate CODE --portal URL)")]
    BadCredentials,
    #[error("this agent has been deleted; activate it again with a new code")]
    AgentDeleted,
    #[error("the agent is connected; stop or disconnect it first, then delete it")]
    AgentConnected,
    #[error(transparent)]
    BadDeviceId(#[from] outpost_cloud_link::control::BadDeviceId),
    #[error("agent {agent} has no device {device}; GET /api/v1/agents/{agent}/devices lists the devices it reported")]
    UnknownDevice { agent: String, device: String },
    #[error("device {device} has no power outlet; bind one first with PUT /api/v1/agents/{agent}/devices/{device}/power-outlet")]
    NoOutlet { agent: String, device: String },
    #[error("device {device} has no power outlet binding; set one with PUT /api/v1/agents/{agent}/devices/{device}/power-outlet")]
    UnknownOutlet { agent: String, device: String },
    #[error("a {kind} outlet cannot do {action}; it can only turn the device on (bind another outlet type to switch it off or cycle it)")]
    ActionUnsupported {
        kind: &'static str,
        action: &'static str,
    },
    #[error("agent {0} is offline; power actions are only sent to a connected agent so they cannot run later by surprise; try again once it is online")]
    AgentOffline(String),
    #[error(transparent)]
    InvalidSite(#[from] crate::site::InvalidSite),
    #[error("the export would hold {total} agents, more than the {cap} it allows; narrow the search or the filters (q, status, online)")]
    ExportTooLarge { total: u64, cap: u64 },
    #[error(transparent)]
    Export(#[from] crate::export::ExportError),
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error("the broker did not accept the change: {0}")]
    Broker(#[from] BrokerError),
    #[error("the email or password is wrong; check both and try again")]
    BadSignIn,
    #[error("the portal failed internally: {0}")]
    Internal(String),
    #[error("{0}")]
    Conflict(String),
    #[error("there is no user {0} you can see; GET /api/v1/users lists them")]
    UnknownUser(i64),
    #[error("there is no group {0} you can see; GET /api/v1/groups lists them")]
    UnknownGroup(i64),
    #[error("there is no token {0} you can see; GET /api/v1/tokens lists them")]
    UnknownToken(i64),
    #[error("there is no support grant {0}; GET /api/v1/support-grants lists them")]
    UnknownGrant(i64),
    #[error("this link is not valid (it was used already or replaced by a newer one); ask for a new one")]
    LinkUnknown,
    #[error("this link has expired; ask for a new one")]
    LinkExpired,
    #[error("{0}")]
    Forbidden(String),
    #[error("support engineers belong to no company, so there is nothing of a company's here to show or change")]
    NoCompany,
    #[error(transparent)]
    WeakPassword(#[from] crate::passwords::WeakPassword),
    #[error("could not send the email: {0}")]
    Mail(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for OpError {
    fn from(e: sqlx::Error) -> Self {
        OpError::Store(StoreError::Query(e))
    }
}

/// Who did something, as written to the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(String);

impl Actor {
    pub fn agent() -> Self {
        Self("agent".into())
    }
    /// A site owner signed in with `email` (owner access).
    pub fn owner(email: &str) -> Self {
        Self(format!("owner:{email}"))
    }
    /// A user (or a token acting as one), as [`Caller::actor_name`] names them.
    pub fn user(caller: &crate::access::Caller) -> Self {
        Self(caller.actor_name())
    }
    pub fn system() -> Self {
        Self("system".into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Fixed facts the app hands out.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `host:port` of the MQTT/TLS listener, as agents must reach it.
    pub broker_address: String,
    /// The CA certificate agents trust.
    pub ca_pem: String,
    /// An agent not heard from for this long counts as offline.
    pub offline_after: Duration,
    /// The portal's address as people reach it (`https://host:port`): the base of links in emails.
    pub public_url: String,
}

/// Everything an operation needs.
pub struct Deps {
    pub store: Store,
    pub broker: Arc<dyn BrokerAdmin>,
    pub sender: Arc<dyn CommandSender>,
    pub clock: SharedClock,
    /// Set only with `--dev-clock`: the clock `PUT /dev/clock` moves (the same one as `clock`).
    pub dev_clock: Option<Arc<SettableClock>>,
    pub settings: Settings,
    /// How the portal sends email; without it, links are shown to whoever made them instead.
    pub mailer: Option<Arc<crate::mail::Mailer>>,
}

/// The portal's operations; cheap to clone.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    deps: Deps,
    /// Waiters for command acknowledgements, by command id.
    waiters: Mutex<HashMap<u64, Arc<Notify>>>,
    /// Argon2id cost of users' and owners' passwords (tests lower it).
    password_cost: Mutex<crate::passwords::PasswordCost>,
}

impl App {
    pub fn new(deps: Deps) -> Self {
        Self {
            inner: Arc::new(Inner {
                deps,
                waiters: Mutex::new(HashMap::new()),
                password_cost: Mutex::new(crate::passwords::PasswordCost::default()),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.deps.store
    }

    pub fn broker(&self) -> &dyn BrokerAdmin {
        self.inner.deps.broker.as_ref()
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.deps.settings
    }

    pub fn mailer(&self) -> Option<&crate::mail::Mailer> {
        self.inner.deps.mailer.as_deref()
    }

    /// The Argon2id cost of users' passwords.
    pub fn password_cost(&self) -> crate::passwords::PasswordCost {
        *self
            .inner
            .password_cost
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sets the Argon2id cost (tests use [`crate::passwords::PasswordCost::for_tests`]).
    pub fn set_password_cost(&self, cost: crate::passwords::PasswordCost) {
        *self
            .inner
            .password_cost
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = cost;
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.inner.deps.clock.now()
    }

    pub fn dev_clock(&self) -> Option<&SettableClock> {
        self.inner.deps.dev_clock.as_deref()
    }

    /// What the API calls online: the last presence said so and the agent was heard from recently.
    pub fn is_online(&self, agent: &AgentRow) -> bool {
        let window = chrono::Duration::from_std(self.settings().offline_after)
            .unwrap_or(chrono::Duration::MAX);
        agent.online
            && agent
                .last_seen
                .is_some_and(|seen| self.now() - seen <= window)
    }

    /// The agent, or [`OpError::UnknownAgent`].
    pub async fn agent(&self, id: &AgentId) -> Result<AgentRow, OpError> {
        let mut conn = self.store().conn().await?;
        crate::store::agents::get(&mut conn, id)
            .await?
            .ok_or_else(|| OpError::UnknownAgent(id.to_string()))
    }

    /// Parses an agent id from a path, answering an unknown agent for anything that cannot be one.
    pub fn parse_agent_id(raw: &str) -> Result<AgentId, OpError> {
        AgentId::parse(raw).map_err(|_| OpError::UnknownAgent(raw.to_owned()))
    }

    fn waiter(&self, command: u64) -> Arc<Notify> {
        let mut map = self
            .inner
            .waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(command).or_default().clone()
    }

    fn forget_waiter(&self, command: u64) {
        let mut map = self
            .inner
            .waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.remove(&command);
    }

    fn wake_waiter(&self, command: u64) {
        let map = self
            .inner
            .waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(notify) = map.get(&command) {
            notify.notify_one();
        }
    }

    fn sender(&self) -> &dyn CommandSender {
        self.inner.deps.sender.as_ref()
    }
}

/// Checks a display name: 1–64 characters after trimming, no control characters.
pub fn validate_name(name: &str) -> Result<String, OpError> {
    let trimmed = name.trim();
    let invalid = |message: &str| OpError::Invalid {
        field: "name",
        message: message.to_owned(),
    };
    if trimmed.is_empty() {
        return Err(invalid("the name is empty; give 1 to 64 characters"));
    }
    if trimmed.chars().count() > 64 {
        return Err(invalid("the name is longer than 64 characters; shorten it"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(invalid(
            "the name contains control characters; use printable text",
        ));
    }
    Ok(trimmed.to_owned())
}
