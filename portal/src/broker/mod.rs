//! The broker, administered through one narrow trait ([`BrokerAdmin`]): Mosquitto with its
//! dynamic-security plugin is the embedded default; a RabbitMQ backend can follow behind the same trait.
//!
//! - [`config`]: Mosquitto's configuration file and the initial dynamic-security JSON.
//! - [`mosquitto`]: finds Mosquitto and supervises it as a child process.
//! - [`dynsec`]: the [`BrokerAdmin`] implementation over `$CONTROL/dynamic-security/v1`.
//! - [`connections`]: the address each client connects from, from Mosquitto's log (GeoIP self-location).
//! - [`start`]: all of it at once: configuration, the supervised broker, the admin and link sessions.

pub mod config;
pub mod connections;
pub mod dynsec;
pub mod mosquitto;
pub(crate) mod session_task;

use async_trait::async_trait;
use outpost_cloud_link::AgentId;

/// Wraps an I/O error with what was being done.
pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BrokerError {
    let context = context.into();
    move |source| BrokerError::Io { context, source }
}

/// What went wrong talking to the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("the broker did not answer within {0:?}; is it running? (see the broker log in the data directory)")]
    Timeout(std::time::Duration),
    #[error("the broker refused {command} for {agent}: {message}")]
    Refused {
        command: &'static str,
        agent: String,
        message: String,
    },
    #[error("no connection to the broker: {0}")]
    Disconnected(String),
    #[error("broker setup failed: {0}")]
    Setup(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// Everything the portal does to the broker's accounts. Each agent has one client, named by its id, whose
/// role may publish only under `agents/<id>/up/#` and subscribe only to `agents/<id>/down/#`.
#[async_trait]
pub trait BrokerAdmin: Send + Sync + 'static {
    /// Creates the agent's client and role. Creating an existing agent again replaces its secret.
    async fn create_agent(&self, agent: &AgentId, secret: &str) -> Result<(), BrokerError>;
    /// Refuses the agent's future connections and disconnects it now if it is connected.
    async fn disable_agent(&self, agent: &AgentId) -> Result<(), BrokerError>;
    /// Lets a disabled agent connect again.
    async fn enable_agent(&self, agent: &AgentId) -> Result<(), BrokerError>;
    /// Deletes the agent's client and role (disconnecting it); deleting an unknown agent succeeds.
    async fn delete_agent(&self, agent: &AgentId) -> Result<(), BrokerError>;
    /// Disconnects the agent now without changing what it may do.
    async fn kick_agent(&self, agent: &AgentId) -> Result<(), BrokerError>;
    /// Replaces the agent's secret (disconnecting it).
    async fn rotate_secret(&self, agent: &AgentId, secret: &str) -> Result<(), BrokerError>;
    /// Makes sure every one of `agents` is disabled (disconnecting those connected); idempotent. Returns
    /// how many it disabled now. The default disables each one (and counts them all); a broker that can
    /// tell which are enabled disables only those.
    async fn ensure_disabled(&self, agents: &[AgentId]) -> Result<usize, BrokerError> {
        for agent in agents {
            self.disable_agent(agent).await?;
        }
        Ok(agents.len())
    }
    /// The address the agent is connected from now (its public address, as the broker sees it), waiting
    /// up to 2 s for the broker to tell. `None` when it cannot tell (not connected, or a broker that does
    /// not say: the default).
    async fn client_address(&self, agent: &AgentId) -> Option<std::net::IpAddr> {
        let _ = agent;
        None
    }
}

/// Where the broker listens.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// The MQTT/TLS listener (the only one the broker has).
    pub listen: std::net::SocketAddr,
}

/// The client id of the portal's admin session (the link has [`crate::link::CLIENT_ID`]).
pub const ADMIN_CLIENT_ID: &str = "outpost-portal-admin";

/// A supervised Mosquitto with the portal's two sessions to it.
pub struct RunningBroker {
    pub admin: std::sync::Arc<dyn BrokerAdmin>,
    pub link: crate::link::Link,
    pub incoming: tokio::sync::mpsc::Receiver<crate::link::Incoming>,
    supervisor: mosquitto::Supervisor,
    admin_task: session_task::SessionTask,
    link_task: session_task::SessionTask,
    /// Saves Mosquitto's database whenever the link has (re)subscribed.
    persist: tokio::task::JoinHandle<()>,
    /// Follows Mosquitto's log for the addresses clients connect from.
    connections: tokio::task::JoinHandle<()>,
    broker: String,
}

impl std::fmt::Debug for RunningBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningBroker")
            .field("broker", &self.broker)
            .field("pid", &self.supervisor.pid())
            .finish_non_exhaustive()
    }
}

/// How long [`start`] waits for each of the portal's sessions.
const SESSION_START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Formats `addr` as `host:port` for [`outpost_cloud_link::session::SessionConfig::broker`].
fn host_port(addr: std::net::SocketAddr) -> String {
    match addr {
        std::net::SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        std::net::SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// Writes config, starts and supervises Mosquitto, connects the admin and link sessions; returns when all are up.
pub async fn start(
    data: &crate::paths::DataDir,
    pki: &crate::pki::Pki,
    settings: BrokerSettings,
) -> Result<RunningBroker, BrokerError> {
    // Absolute paths: Mosquitto's configuration names them, and an old broker is recognised by its
    // command line.
    let root = std::fs::canonicalize(data.root()).map_err(|source| BrokerError::Io {
        context: format!("cannot open the data directory {}", data.root().display()),
        source,
    })?;
    let data = &crate::paths::DataDir::new(root);
    let target = mosquitto::connect_addr(settings.listen);
    if !pki.covers(&target.ip().to_string()) {
        return Err(BrokerError::Setup(format!(
            "the server certificate does not cover {}, where the portal reaches its broker; add it to the \
             portal's host names",
            target.ip()
        )));
    }
    let plugin = mosquitto::find_dynsec_plugin()?;
    let creds = config::prepare(data, settings.listen, plugin)?;
    // Connections logged from now on are this broker run's.
    let connections = connections::ConnectionLog::new(
        data.broker_log(),
        connections::ConnectionLog::end_of(&data.broker_log()),
    );
    let supervisor = mosquitto::Supervisor::start(data, settings.listen).await?;
    let broker = host_port(target);
    let ca = pki.ca_cert_pem.as_bytes().to_vec();

    let admin_cfg = outpost_cloud_link::session::SessionConfig {
        broker: broker.clone(),
        client_id: ADMIN_CLIENT_ID.to_owned(),
        username: creds.username.clone(),
        password: creds.password.clone(),
        ca_pem: ca.clone(),
        keep_alive: std::time::Duration::from_secs(30),
        clean_session: true,
        last_will: None,
        inflight: 32,
        connect_timeout: std::time::Duration::from_secs(5),
        manual_acks: false,
    };
    let (mut admin, admin_task) =
        match dynsec::DynsecAdmin::connect(admin_cfg, SESSION_START_TIMEOUT).await {
            Ok(v) => v,
            Err(e) => {
                let _ = supervisor.shutdown().await;
                return Err(e);
            }
        };
    let (tx, incoming) = tokio::sync::mpsc::channel(1024);
    let link_cfg = crate::link::session_config(&broker, &creds.username, &creds.password, ca);
    let (link, link_task) =
        match crate::link::Link::connect(link_cfg, tx, SESSION_START_TIMEOUT).await {
            Ok(v) => v,
            Err(e) => {
                admin_task.stop().await;
                let _ = supervisor.shutdown().await;
                return Err(BrokerError::Setup(e.to_string()));
            }
        };
    let persist = tokio::spawn(mosquitto::persist_link_session(
        link.subscriptions(),
        supervisor.pid_watch(),
    ));
    admin.follow_connections(connections.clone());
    let connections = tokio::spawn(connections.follow());
    tracing::info!(%broker, "broker ready: admin and link sessions connected");
    Ok(RunningBroker {
        admin: std::sync::Arc::new(admin),
        link,
        incoming,
        supervisor,
        admin_task,
        link_task,
        persist,
        connections,
        broker,
    })
}

impl RunningBroker {
    /// `host:port` where the portal itself reaches the broker.
    pub fn local_address(&self) -> &str {
        &self.broker
    }

    /// The pid of the Mosquitto running now (`None` while it is being restarted).
    pub fn broker_pid(&self) -> Option<u32> {
        self.supervisor.pid()
    }

    /// Disconnects the portal's sessions and stops the broker (SIGTERM, then waits).
    pub async fn shutdown(self) -> Result<(), BrokerError> {
        let RunningBroker {
            link_task,
            admin_task,
            supervisor,
            persist,
            connections,
            ..
        } = self;
        persist.abort();
        connections.abort();
        link_task.stop().await;
        admin_task.stop().await;
        supervisor.shutdown().await
    }
}
