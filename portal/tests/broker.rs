//! The broker side against a real Mosquitto: accounts, ACLs, kicks, the TLS-only listener, restarts.
//! Every test has its own data directory and port.

use std::net::SocketAddr;
use std::time::Duration;

use outpost_cloud_link::protocol::{
    AgentMessage, Command, CommandEnvelope, Envelope, Heartbeat, Hello, Platform,
};
use outpost_cloud_link::session::SessionConfig;
use outpost_cloud_link::topics::{self, UpKind};
use outpost_cloud_link::AgentId;
use outpost_portal::broker::{self, BrokerSettings, RunningBroker};
use outpost_portal::link::Incoming;
use outpost_portal::paths::DataDir;
use outpost_portal::pki::Pki;
use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions, Packet, QoS, SubscribeReasonCode};
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);
/// How long to watch for something that must not happen.
const QUIET: Duration = Duration::from_millis(500);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Env {
    dir: tempfile::TempDir,
    data: DataDir,
    pki: Pki,
    listen: SocketAddr,
    broker: RunningBroker,
}

impl Env {
    async fn start() -> Env {
        init_tracing();
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("data"));
        let pki = Pki::load_or_create(&data, &[]).unwrap();
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let broker = broker::start(&data, &pki, BrokerSettings { listen })
            .await
            .unwrap();
        Env {
            dir,
            data,
            pki,
            listen,
            broker,
        }
    }

    fn addr(&self) -> String {
        self.listen.to_string()
    }

    fn agent_config(&self, id: &AgentId, secret: &str) -> SessionConfig {
        let mut cfg = SessionConfig::for_agent(
            &self.addr(),
            id,
            secret,
            self.pki.ca_cert_pem.clone().into_bytes(),
        );
        cfg.connect_timeout = Duration::from_secs(3);
        cfg
    }

    async fn connect(&self, id: &AgentId, secret: &str) -> TestAgent {
        TestAgent::start(self.agent_config(id, secret))
    }

    /// An agent created in the broker and connected.
    async fn agent(&self, name: &str) -> (AgentId, String, TestAgent) {
        let id = AgentId::parse(name).unwrap();
        let secret = format!("secret-of-{name}-0123456789");
        self.broker.admin.create_agent(&id, &secret).await.unwrap();
        let mut agent = self.connect(&id, &secret).await;
        agent.connected().await;
        (id, secret, agent)
    }

    async fn incoming(&mut self, pred: impl Fn(&Incoming) -> bool) -> Incoming {
        wait_incoming(&mut self.broker.incoming, pred).await
    }

    fn mosquitto_pid(&self) -> i32 {
        std::fs::read_to_string(self.data.broker_pid())
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

async fn wait_incoming(
    rx: &mut mpsc::Receiver<Incoming>,
    pred: impl Fn(&Incoming) -> bool,
) -> Incoming {
    timeout(WAIT, async {
        loop {
            let m = rx.recv().await.expect("incoming channel closed");
            if pred(&m) {
                return m;
            }
        }
    })
    .await
    .expect("the expected message did not arrive")
}

/// No message that satisfies `pred` arrives within [`QUIET`].
async fn none_incoming(rx: &mut mpsc::Receiver<Incoming>, pred: impl Fn(&Incoming) -> bool) {
    let _ = timeout(QUIET, async {
        while let Some(m) = rx.recv().await {
            assert!(!pred(&m), "unexpected message: {m:?}");
        }
    })
    .await;
}

#[derive(Debug)]
#[allow(dead_code)] // the reasons are read through Debug in assertion messages
enum AgentEvent {
    Connected,
    Refused(String),
    Lost(String),
    SubAck(Vec<SubscribeReasonCode>),
    Publish(String, Vec<u8>),
}

/// An MQTT client with a real agent's session settings; its event loop keeps reconnecting and reports
/// everything on a channel.
struct TestAgent {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<AgentEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestAgent {
    fn start(cfg: SessionConfig) -> TestAgent {
        let (client, eventloop) = cfg.connect(64).unwrap();
        Self::drive(client, eventloop)
    }

    fn drive(client: AsyncClient, mut eventloop: rumqttc::EventLoop) -> TestAgent {
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let ev = match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => AgentEvent::Connected,
                    Ok(Event::Incoming(Packet::SubAck(s))) => AgentEvent::SubAck(s.return_codes),
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        AgentEvent::Publish(p.topic, p.payload.to_vec())
                    }
                    Ok(_) => continue,
                    Err(ConnectionError::ConnectionRefused(code)) => {
                        AgentEvent::Refused(format!("{code:?}"))
                    }
                    Err(e) => AgentEvent::Lost(e.to_string()),
                };
                let failed = matches!(ev, AgentEvent::Refused(_) | AgentEvent::Lost(_));
                if tx.send(ev).is_err() {
                    return;
                }
                if failed {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        TestAgent {
            client,
            events,
            task,
        }
    }

    async fn next(&mut self) -> AgentEvent {
        timeout(WAIT, self.events.recv())
            .await
            .expect("no event from the agent's session")
            .expect("agent task ended")
    }

    async fn connected(&mut self) {
        loop {
            match self.next().await {
                AgentEvent::Connected => return,
                AgentEvent::Refused(why) => panic!("agent refused: {why}"),
                _ => {}
            }
        }
    }

    /// The next connection attempt is refused.
    async fn refused(&mut self) {
        loop {
            match self.next().await {
                AgentEvent::Refused(_) => return,
                AgentEvent::Connected => panic!("the agent was let in"),
                _ => {}
            }
        }
    }

    /// The session ends (within [`WAIT`]).
    async fn lost(&mut self) {
        loop {
            match self.next().await {
                AgentEvent::Lost(_) | AgentEvent::Refused(_) => return,
                _ => {}
            }
        }
    }

    /// Nothing but publishes happen for a while: still connected.
    async fn stays_connected(&mut self) {
        let _ = timeout(QUIET, async {
            while let Some(ev) = self.events.recv().await {
                assert!(
                    !matches!(
                        ev,
                        AgentEvent::Lost(_) | AgentEvent::Refused(_) | AgentEvent::Connected
                    ),
                    "the agent's session was disturbed: {ev:?}"
                );
            }
        })
        .await;
    }

    async fn subscribe(&mut self, filter: &str) -> Vec<SubscribeReasonCode> {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        loop {
            if let AgentEvent::SubAck(codes) = self.next().await {
                return codes;
            }
        }
    }

    async fn publish(&self, topic: String, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    async fn send(&self, id: &AgentId, seq: u64, msg: AgentMessage) -> Envelope {
        let env = Envelope::new(seq, 0, 1_700_000_000_000 + seq as i64, msg);
        self.publish(topics::up(id, env.msg.kind()), env.encode())
            .await;
        env
    }

    async fn publish_received(&mut self, topic: &str) -> Vec<u8> {
        loop {
            if let AgentEvent::Publish(t, payload) = self.next().await {
                if t == topic {
                    return payload;
                }
            }
        }
    }
}

fn hello() -> AgentMessage {
    AgentMessage::Hello(Hello {
        version: "0.1.0".into(),
        platform: Platform::Linux,
        hostname: "site-gw".into(),
        name: "site-gw".into(),
        mac: None,
        local_ip: None,
        interfaces: Vec::new(),
        capabilities: vec!["cleanup".into()],
        segments: Vec::new(),
        geoip: false,
        target: None,
        updatable: false,
        settings_version: None,
    })
}

fn heartbeat(n: u64) -> AgentMessage {
    AgentMessage::Heartbeat(Heartbeat {
        uptime_s: n,
        outbox_depth: 0,
        outbox_dropped: 0,
    })
}

fn granted(codes: &[SubscribeReasonCode]) -> bool {
    codes
        .iter()
        .all(|c| matches!(c, SubscribeReasonCode::Success(_)))
}

#[tokio::test]
async fn agent_messages_arrive_and_commands_reach_the_agent() {
    let mut env = Env::start().await;
    assert!(env.broker.link.is_connected());
    let (id, _secret, mut agent) = env.agent("ag-one").await;
    assert!(granted(&agent.subscribe(&topics::commands(&id)).await));

    let sent = agent.send(&id, 1, hello()).await;
    let got = env.incoming(|m| m.envelope.seq == 1).await;
    assert_eq!(got.agent, id);
    assert_eq!(got.envelope, sent);

    // Garbage and messages on the wrong topic are dropped; what follows still arrives.
    agent
        .publish(topics::up(&id, UpKind::Report), b"not json".to_vec())
        .await;
    agent
        .publish(topics::up(&id, UpKind::Ack), sent.encode())
        .await;
    let next = agent.send(&id, 2, heartbeat(5)).await;
    let got = env.incoming(|m| m.envelope.seq != 0).await;
    assert_eq!(got.envelope, next);

    let cmd = CommandEnvelope::new(
        7,
        Command::Rename {
            name: "Shop".into(),
        },
    );
    env.broker.link.send_command(&id, &cmd).await.unwrap();
    let payload = agent.publish_received(&topics::commands(&id)).await;
    assert_eq!(CommandEnvelope::decode(&payload).unwrap(), cmd);

    env.broker.shutdown().await.unwrap();
    assert!(
        !env.data.broker_pid().exists(),
        "mosquitto left its pid file: not stopped cleanly"
    );
}

#[tokio::test]
async fn agents_are_confined_to_their_own_topics() {
    let mut env = Env::start().await;
    let (a, _, mut agent_a) = env.agent("ag-a").await;
    let (b, _, mut agent_b) = env.agent("ag-b").await;
    assert!(granted(&agent_b.subscribe(&topics::commands(&b)).await));

    // A may not listen to B's commands, nor to everyone's, nor to anyone's messages.
    for filter in [
        topics::agent_down_filter(&b),
        topics::commands(&b),
        "agents/+/down/#".into(),
        "#".into(),
        topics::ALL_UP.into(),
    ] {
        let codes = agent_a.subscribe(&filter).await;
        assert_eq!(codes, vec![SubscribeReasonCode::Failure], "{filter}");
    }

    // What A publishes as B never reaches the portal; A's own message does.
    agent_a.send(&b, 100, heartbeat(1)).await;
    agent_a.send(&a, 1, heartbeat(2)).await;
    let got = env.incoming(|m| m.envelope.seq != 0).await;
    assert_eq!((got.agent.as_str(), got.envelope.seq), ("ag-a", 1));
    none_incoming(&mut env.broker.incoming, |m| m.envelope.seq == 100).await;

    // A cannot send B commands either; the portal can.
    let forged = CommandEnvelope::new(1, Command::Cleanup { epoch: 9 });
    agent_a.publish(topics::commands(&b), forged.encode()).await;
    let real = CommandEnvelope::new(2, Command::Ping);
    env.broker.link.send_command(&b, &real).await.unwrap();
    let payload = agent_b.publish_received(&topics::commands(&b)).await;
    assert_eq!(
        CommandEnvelope::decode(&payload).unwrap(),
        real,
        "B received a forged command"
    );
    env.broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn there_is_no_plaintext_listener() {
    let env = Env::start().await;
    let id = AgentId::parse("ag-plain").unwrap();
    env.broker
        .admin
        .create_agent(&id, "plain-secret")
        .await
        .unwrap();
    let mut opts = MqttOptions::new("ag-plain", "127.0.0.1", env.listen.port());
    opts.set_credentials("ag-plain", "plain-secret");
    let (_client, mut eventloop) = AsyncClient::new(opts, 8);
    let first = timeout(WAIT, eventloop.poll())
        .await
        .expect("no answer at all");
    assert!(
        !matches!(first, Ok(Event::Incoming(Packet::ConnAck(_)))),
        "a plaintext MQTT connection was accepted"
    );
    let conf = std::fs::read_to_string(env.data.broker_config()).unwrap();
    assert_eq!(
        conf.lines().filter(|l| l.starts_with("listener ")).count(),
        1
    );
    env.broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn wrong_credentials_are_refused() {
    let env = Env::start().await;
    let (id, secret, mut agent) = env.agent("ag-cred").await;
    agent.stays_connected().await;

    env.connect(&id, "not-the-secret").await.refused().await;
    let unknown = AgentId::parse("ag-unknown").unwrap();
    env.connect(&unknown, &secret).await.refused().await;
    // The client id is pinned to the agent id: its credentials under another client id are refused
    // (so an agent cannot take over another session, such as the portal's).
    let mut cfg = env.agent_config(&id, &secret);
    cfg.client_id = outpost_portal::link::CLIENT_ID.into();
    TestAgent::start(cfg).refused().await;
    assert!(env.broker.link.is_connected());
    agent.stays_connected().await;
    env.broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn disable_disconnects_at_once_and_enable_lets_it_back() {
    let mut env = Env::start().await;
    let (id, _, mut agent) = env.agent("ag-dis").await;
    env.broker.admin.disable_agent(&id).await.unwrap();
    timeout(Duration::from_secs(2), agent.lost())
        .await
        .expect("still connected after disable");
    agent.refused().await;
    agent.refused().await;
    env.broker.admin.disable_agent(&id).await.unwrap(); // again: fine

    env.broker.admin.enable_agent(&id).await.unwrap();
    agent.connected().await;
    agent.send(&id, 1, hello()).await;
    assert_eq!(env.incoming(|m| m.envelope.seq == 1).await.agent, id);

    // Unknown agents: nothing to disable; enabling one is an error.
    let ghost = AgentId::parse("ag-ghost").unwrap();
    env.broker.admin.disable_agent(&ghost).await.unwrap();
    assert!(env.broker.admin.enable_agent(&ghost).await.is_err());
    env.broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn delete_removes_the_agent_and_deleting_again_is_fine() {
    let env = Env::start().await;
    let (id, _, mut agent) = env.agent("ag-del").await;
    env.broker.admin.delete_agent(&id).await.unwrap();
    timeout(Duration::from_secs(2), agent.lost())
        .await
        .expect("still connected after delete");
    agent.refused().await;
    env.broker.admin.delete_agent(&id).await.unwrap();

    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.data.dynsec_json()).unwrap()).unwrap();
    let names = |k: &str, f: &str| -> Vec<String> {
        doc[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c[f].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert!(!names("clients", "username").contains(&"ag-del".to_owned()));
    assert!(!names("roles", "rolename").contains(&"agent-ag-del".to_owned()));
    assert!(names("clients", "username").contains(&"outpost-portal".to_owned()));
    env.broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn rotate_secret_refuses_the_old_one() {
    let mut env = Env::start().await;
    let (id, old, mut agent) = env.agent("ag-rot").await;
    env.broker
        .admin
        .rotate_secret(&id, "the-new-secret-123")
        .await
        .unwrap();
    timeout(Duration::from_secs(2), agent.lost())
        .await
        .expect("still connected after rotation");
    agent.refused().await;
    env.connect(&id, &old).await.refused().await;
    let mut renewed = env.connect(&id, "the-new-secret-123").await;
    renewed.connected().await;
    renewed.send(&id, 1, hello()).await;
    assert_eq!(env.incoming(|m| m.envelope.seq == 1).await.agent, id);
    assert!(env
        .broker
        .admin
        .rotate_secret(&AgentId::parse("ag-ghost").unwrap(), "x")
        .await
        .is_err());
    env.broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn creating_again_replaces_the_secret_and_keeps_the_acls() {
    let mut env = Env::start().await;
    let (id, old, mut agent) = env.agent("ag-again").await;
    env.broker
        .admin
        .create_agent(&id, "second-secret-456")
        .await
        .unwrap();
    timeout(Duration::from_secs(2), agent.lost())
        .await
        .expect("still connected with the old secret");
    drop(agent);
    env.connect(&id, &old).await.refused().await;
    let mut agent = env.connect(&id, "second-secret-456").await;
    agent.connected().await;
    assert!(granted(&agent.subscribe(&topics::commands(&id)).await));
    agent.send(&id, 3, heartbeat(3)).await;
    assert_eq!(env.incoming(|m| m.envelope.seq == 3).await.agent, id);
    env.broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn kick_disconnects_without_locking_out() {
    let mut env = Env::start().await;
    let (id, _, mut agent) = env.agent("ag-kick").await;
    env.broker.admin.kick_agent(&id).await.unwrap();
    timeout(Duration::from_secs(2), agent.lost())
        .await
        .expect("still connected after kick");
    agent.connected().await;
    agent.send(&id, 1, hello()).await;
    assert_eq!(env.incoming(|m| m.envelope.seq == 1).await.agent, id);
    // Kicking an unknown agent is not an error.
    env.broker
        .admin
        .kick_agent(&AgentId::parse("ag-ghost").unwrap())
        .await
        .unwrap();
    env.broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_supervisor_restarts_a_killed_broker_and_the_sessions_recover() {
    let mut env = Env::start().await;
    let (id, _, mut agent) = env.agent("ag-before").await;
    let old_pid = env.mosquitto_pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    agent.lost().await;

    // The admin session waits for the broker to come back, then works.
    let new_id = AgentId::parse("ag-after").unwrap();
    env.broker
        .admin
        .create_agent(&new_id, "after-secret-789")
        .await
        .unwrap();
    assert_ne!(env.mosquitto_pid(), old_pid);
    let mut fresh = env.connect(&new_id, "after-secret-789").await;
    fresh.connected().await;
    timeout(WAIT, async {
        while !env.broker.link.is_connected() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the link did not reconnect");
    fresh.send(&new_id, 1, hello()).await;
    assert_eq!(env.incoming(|m| m.envelope.seq == 1).await.agent, new_id);

    // The agent from before the crash comes back too, and commands reach it.
    agent.connected().await;
    assert!(granted(&agent.subscribe(&topics::commands(&id)).await));
    agent.send(&id, 2, heartbeat(2)).await;
    assert_eq!(env.incoming(|m| m.envelope.seq == 2).await.agent, id);
    let cmd = CommandEnvelope::new(1, Command::Ping);
    env.broker.link.send_command(&id, &cmd).await.unwrap();
    assert_eq!(
        CommandEnvelope::decode(&agent.publish_received(&topics::commands(&id)).await).unwrap(),
        cmd
    );
    env.broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_second_start_on_the_same_data_keeps_the_agents() {
    let env = Env::start().await;
    let id = AgentId::parse("ag-keep").unwrap();
    env.broker
        .admin
        .create_agent(&id, "keep-secret-000")
        .await
        .unwrap();
    let Env {
        dir,
        data,
        pki,
        broker,
        ..
    } = env;
    broker.shutdown().await.unwrap();

    // Again, on another port.
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut broker = broker::start(&data, &pki, BrokerSettings { listen })
        .await
        .unwrap();
    let mut cfg = SessionConfig::for_agent(
        &listen.to_string(),
        &id,
        "keep-secret-000",
        pki.ca_cert_pem.clone().into_bytes(),
    );
    cfg.connect_timeout = Duration::from_secs(3);
    let mut agent = TestAgent::start(cfg);
    agent.connected().await;
    agent.send(&id, 1, hello()).await;
    assert_eq!(
        wait_incoming(&mut broker.incoming, |m| m.envelope.seq == 1)
            .await
            .agent,
        id
    );
    broker.shutdown().await.unwrap();
    drop(dir);
}

/// A `dynamic-security.json` whose default ACL access allows everything (not written by the portal, or
/// edited by hand): once the portal is up, an agent still cannot subscribe to `#` or to another agent's
/// topics, and the file says deny.
#[tokio::test]
async fn an_existing_dynsec_file_that_allows_by_default_is_made_to_deny() {
    let env = Env::start().await;
    let Env {
        dir,
        data,
        pki,
        broker,
        ..
    } = env;
    broker.shutdown().await.unwrap();
    let path = data.dynsec_json();
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for t in [
        "publishClientSend",
        "publishClientReceive",
        "subscribe",
        "unsubscribe",
    ] {
        doc["defaultACLAccess"][t] = serde_json::json!(true);
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();

    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut broker = broker::start(&data, &pki, BrokerSettings { listen })
        .await
        .unwrap();
    let mut agents = Vec::new();
    for name in ["ag-open-a", "ag-open-b"] {
        let id = AgentId::parse(name).unwrap();
        let secret = format!("secret-of-{name}-0123456789");
        broker.admin.create_agent(&id, &secret).await.unwrap();
        let mut cfg = SessionConfig::for_agent(
            &listen.to_string(),
            &id,
            &secret,
            pki.ca_cert_pem.clone().into_bytes(),
        );
        cfg.connect_timeout = Duration::from_secs(3);
        let mut agent = TestAgent::start(cfg);
        agent.connected().await;
        agents.push((id, agent));
    }
    let (b, mut agent_b) = agents.pop().unwrap();
    let (a, mut agent_a) = agents.pop().unwrap();
    assert!(granted(&agent_b.subscribe(&topics::commands(&b)).await));
    for filter in [
        "#".to_owned(),
        topics::agent_down_filter(&b),
        topics::commands(&b),
        topics::ALL_UP.into(),
    ] {
        let codes = agent_a.subscribe(&filter).await;
        assert_eq!(codes, vec![SubscribeReasonCode::Failure], "{filter}");
    }
    // Nor does A's message as B reach the portal.
    agent_a.send(&b, 100, heartbeat(1)).await;
    agent_a.send(&a, 1, heartbeat(2)).await;
    let got = wait_incoming(&mut broker.incoming, |m| m.envelope.seq != 0).await;
    assert_eq!((got.agent.as_str(), got.envelope.seq), ("ag-open-a", 1));
    none_incoming(&mut broker.incoming, |m| m.envelope.seq == 100).await;
    // The plugin saved the denying defaults.
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for t in [
        "publishClientSend",
        "publishClientReceive",
        "subscribe",
        "unsubscribe",
    ] {
        assert_eq!(
            saved["defaultACLAccess"][t],
            serde_json::json!(false),
            "{t}: {}",
            saved["defaultACLAccess"]
        );
    }
    broker.shutdown().await.unwrap();
    drop(dir);
}

/// A transition changes the broker before it commits; if the commit was lost, the store says deactivated
/// (or expired) while the broker still lets the agent in. The reconciliation (`up` and every sweep)
/// disables it: the agent is disconnected and cannot connect again; running it again changes nothing.
#[tokio::test]
async fn agents_the_store_refuses_are_disabled_in_the_broker() {
    use outpost_cloud_link::protocol::Platform;
    use outpost_portal::app::{users, ActivationRequest, App, Deps, Settings};
    use outpost_portal::clock::{SharedClock, SystemClock};
    use outpost_portal::store::Store;
    let env = Env::start().await;
    let store = Store::open(&env.dir.path().join("portal.db"))
        .await
        .unwrap();
    let now = chrono::Utc::now();
    users::bootstrap_token(&store, None, "tester", false, now)
        .await
        .unwrap();
    let company = {
        let mut conn = store.conn().await.unwrap();
        users::company_for(&mut conn, None, now).await.unwrap()
    };
    let clock: SharedClock = std::sync::Arc::new(SystemClock);
    let app = App::new(Deps {
        store: store.clone(),
        broker: env.broker.admin.clone(),
        sender: std::sync::Arc::new(env.broker.link.clone()),
        clock,
        dev_clock: None,
        settings: Settings {
            broker_address: env.addr(),
            ca_pem: env.pki.ca_cert_pem.clone(),
            offline_after: Duration::from_secs(120),
            public_url: "https://localhost:8443".into(),
        },
        mailer: None,
    });
    let mut agents = Vec::new();
    for (i, status) in ["deactivated", "expired", "active"].into_iter().enumerate() {
        let code = app
            .create_code(chrono::Duration::days(1), 1, None, (company, None))
            .await
            .unwrap()
            .code
            .display();
        let activated = app
            .activate(
                ActivationRequest {
                    code,
                    mac: None,
                    hostname: format!("site-{i}"),
                    version: "0.1.0".into(),
                    local_ip: None,
                    platform: Platform::Linux,
                },
                None,
            )
            .await
            .unwrap();
        let id = activated.agent_id.clone();
        let mut agent = env.connect(&id, &activated.secret).await;
        agent.connected().await;
        // The store moves on without the broker (a lost commit's other half).
        let mut conn = store.conn().await.unwrap();
        sqlx::query("UPDATE agents SET status = ? WHERE id = ?")
            .bind(status)
            .bind(id.as_str())
            .execute(&mut *conn)
            .await
            .unwrap();
        agents.push((status, agent));
    }
    assert_eq!(app.reconcile_broker().await.unwrap(), 2);
    for (status, agent) in agents.iter_mut() {
        if *status == "active" {
            agent.stays_connected().await;
        } else {
            agent.lost().await;
            agent.refused().await;
        }
    }
    // Idempotent: nothing left to disable, and the active agent is untouched.
    assert_eq!(app.reconcile_broker().await.unwrap(), 0);
    agents[2].1.stays_connected().await;
    env.broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_broker_left_running_by_an_earlier_run_is_replaced() {
    let env = Env::start().await;
    let Env {
        dir,
        data,
        pki,
        listen,
        broker,
    } = env;
    broker.shutdown().await.unwrap();
    // As if the portal had died without stopping its broker.
    let mut orphan =
        std::process::Command::new(outpost_portal::broker::mosquitto::find_mosquitto().unwrap())
            .arg("-c")
            .arg(data.broker_config())
            .spawn()
            .unwrap();
    timeout(WAIT, async {
        while tokio::net::TcpStream::connect(listen).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let broker = broker::start(&data, &pki, BrokerSettings { listen })
        .await
        .unwrap();
    let status = orphan
        .try_wait()
        .unwrap()
        .expect("the old broker is still running");
    assert!(status.code().is_some() || status.signal_terminated());
    broker.shutdown().await.unwrap();
    drop(dir);
}

trait SignalTerminated {
    fn signal_terminated(&self) -> bool;
}
impl SignalTerminated for std::process::ExitStatus {
    fn signal_terminated(&self) -> bool {
        std::os::unix::process::ExitStatusExt::signal(self).is_some()
    }
}

#[tokio::test]
async fn a_port_in_use_is_named() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path().join("data"));
    let pki = Pki::load_or_create(&data, &[]).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap();
    let err = broker::start(&data, &pki, BrokerSettings { listen })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
}

#[tokio::test]
async fn an_ipv6_listener_works() {
    init_tracing();
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path().join("data"));
    let pki = Pki::load_or_create(&data, &[]).unwrap();
    let port = std::net::TcpListener::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let mut broker = broker::start(&data, &pki, BrokerSettings { listen })
        .await
        .unwrap();
    assert_eq!(broker.local_address(), format!("[::1]:{port}"));
    let id = AgentId::parse("ag-six").unwrap();
    broker
        .admin
        .create_agent(&id, "six-secret-666")
        .await
        .unwrap();
    let mut agent = TestAgent::start(SessionConfig::for_agent(
        &listen.to_string(),
        &id,
        "six-secret-666",
        pki.ca_cert_pem.clone().into_bytes(),
    ));
    agent.connected().await;
    agent.send(&id, 1, hello()).await;
    assert_eq!(
        wait_incoming(&mut broker.incoming, |m| m.envelope.seq == 1)
            .await
            .agent,
        id
    );
    broker.shutdown().await.unwrap();
}
