//! The API test harness: the real router and app on a temporary SQLite database, with a recording fake
//! broker, a recording command sender and a manual clock.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use http_body_util::BodyExt;
use outpost_cloud_link::protocol::{
    AgentMessage, CommandEnvelope, Envelope, Hello, Interface, NoticeEnvelope, Platform,
    PortalNotice, Presence, Segment,
};
use outpost_cloud_link::AgentId;
use outpost_portal::access::Role;
use outpost_portal::api::rate_limit::ActivationLimiter;
use outpost_portal::api::{self, ApiOptions};
use outpost_portal::app::location::{Locator, NoticeSender};
use outpost_portal::app::{users, App, CommandSender, Deps, SendError, Settings};
use outpost_portal::broker::{BrokerAdmin, BrokerError};
use outpost_portal::clock::{Clock, ManualClock, SettableClock, SharedClock};
use outpost_portal::ingest::{self, Disposition};
use outpost_portal::store::Store;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::sync::mpsc;

/// Records every broker call as `"<call> <agent>"`; `create_agent` can be made to fail.
#[derive(Default)]
pub struct FakeBroker {
    pub calls: Mutex<Vec<String>>,
    pub fail_create: AtomicBool,
}

impl FakeBroker {
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn record(&self, call: &str, agent: &AgentId) {
        self.calls.lock().unwrap().push(format!("{call} {agent}"));
    }
}

#[async_trait]
impl BrokerAdmin for FakeBroker {
    async fn create_agent(&self, agent: &AgentId, _secret: &str) -> Result<(), BrokerError> {
        if self.fail_create.load(Ordering::SeqCst) {
            return Err(BrokerError::Disconnected("fake broker is down".into()));
        }
        self.record("create", agent);
        Ok(())
    }
    async fn disable_agent(&self, agent: &AgentId) -> Result<(), BrokerError> {
        self.record("disable", agent);
        Ok(())
    }
    async fn enable_agent(&self, agent: &AgentId) -> Result<(), BrokerError> {
        self.record("enable", agent);
        Ok(())
    }
    async fn delete_agent(&self, agent: &AgentId) -> Result<(), BrokerError> {
        self.record("delete", agent);
        Ok(())
    }
    async fn kick_agent(&self, agent: &AgentId) -> Result<(), BrokerError> {
        self.record("kick", agent);
        Ok(())
    }
    async fn rotate_secret(&self, agent: &AgentId, _secret: &str) -> Result<(), BrokerError> {
        self.record("rotate", agent);
        Ok(())
    }
}

/// Records every command sent and reports it on a channel.
pub struct RecordingSender {
    pub sent: Mutex<Vec<(AgentId, CommandEnvelope)>>,
    tx: mpsc::UnboundedSender<(AgentId, CommandEnvelope)>,
}

#[async_trait]
impl CommandSender for RecordingSender {
    async fn send_command(&self, agent: &AgentId, cmd: &CommandEnvelope) -> Result<(), SendError> {
        self.sent.lock().unwrap().push((agent.clone(), cmd.clone()));
        let _ = self.tx.send((agent.clone(), cmd.clone()));
        Ok(())
    }
}

/// Records every notice sent (`Harness::send_noticed` hands the app a locator with it).
#[derive(Default)]
pub struct RecordingNotices {
    pub sent: Mutex<Vec<(AgentId, PortalNotice)>>,
}

#[async_trait]
impl NoticeSender for RecordingNotices {
    async fn send_notice(&self, agent: &AgentId, n: &NoticeEnvelope) -> Result<(), SendError> {
        self.sent
            .lock()
            .unwrap()
            .push((agent.clone(), n.notice.clone()));
        Ok(())
    }
}

pub enum Auth<'a> {
    None,
    Bearer(&'a str),
    Basic(&'a str, &'a str),
}

pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Response {
    /// The `error` code of an error body.
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
}

pub struct Harness {
    pub app: App,
    pub router: Router,
    pub broker: Arc<FakeBroker>,
    pub sender: Arc<RecordingSender>,
    pub sent_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<(AgentId, CommandEnvelope)>>,
    pub clock: Arc<ManualClock>,
    pub token: String,
    /// The notices sent through [`Harness::send_noticed`].
    pub notices: Arc<RecordingNotices>,
    seqs: Mutex<std::collections::HashMap<String, u64>>,
    _dir: TempDir,
}

/// The agent lines of a history answer (account lines, such as the harness token's creation, left out).
pub fn agent_lines(body: &Value) -> Vec<Value> {
    body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !e["agent_id"].is_null())
        .cloned()
        .collect()
}

/// The portal's address in the links it makes.
pub const PUBLIC_URL: &str = "https://portal.test:8443";

/// The time tests start at unless they set another.
pub fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap()
}

pub struct Options {
    pub activation_rate: u32,
    pub dev_clock: bool,
    pub offline_after: Duration,
    /// How the portal mails links (tests with a real SMTP server set one).
    pub mailer: Option<Arc<outpost_portal::mail::Mailer>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            activation_rate: 1000,
            dev_clock: false,
            offline_after: Duration::from_secs(120),
            mailer: None,
        }
    }
}

static PEER: AtomicU64 = AtomicU64::new(1);

impl Harness {
    pub async fn new() -> Self {
        Self::with(Options::default()).await
    }

    pub async fn with(options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("portal.db")).await.unwrap();
        let broker = Arc::new(FakeBroker::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let sender = Arc::new(RecordingSender {
            sent: Mutex::new(Vec::new()),
            tx,
        });
        let manual = Arc::new(ManualClock::new(start_time()));
        let dev = options.dev_clock.then(|| {
            let c = Arc::new(SettableClock::new());
            c.set(start_time());
            c
        });
        let clock: SharedClock = match &dev {
            Some(d) => d.clone(),
            None => manual.clone(),
        };
        let token = users::bootstrap_token(&store, None, "tester", false, start_time())
            .await
            .unwrap();
        let app = App::new(Deps {
            store,
            broker: broker.clone(),
            sender: sender.clone(),
            clock,
            dev_clock: dev,
            settings: Settings {
                broker_address: "portal.test:8883".into(),
                ca_pem: "-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n".into(),
                offline_after: options.offline_after,
                public_url: PUBLIC_URL.into(),
            },
            mailer: options.mailer,
        });
        app.set_password_cost(outpost_portal::passwords::PasswordCost::for_tests());
        let limiter = Arc::new(ActivationLimiter::per_minute(options.activation_rate));
        let router = api::router(
            app.clone(),
            limiter,
            ApiOptions {
                dev_clock: options.dev_clock,
            },
        );
        Self {
            app,
            router,
            broker,
            sender,
            sent_rx: tokio::sync::Mutex::new(rx),
            clock: manual,
            token,
            notices: Arc::new(RecordingNotices::default()),
            seqs: Mutex::new(Default::default()),
            _dir: dir,
        }
    }

    /// One request from 127.0.0.1 (a fixed port).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        auth: Auth<'_>,
    ) -> Response {
        self.call_from(IpAddr::V4(Ipv4Addr::LOCALHOST), method, path, body, auth)
            .await
    }

    pub async fn call_from(
        &self,
        ip: IpAddr,
        method: Method,
        path: &str,
        body: Option<Value>,
        auth: Auth<'_>,
    ) -> Response {
        use tower::ServiceExt;
        let mut req = Request::builder().method(method).uri(path);
        match auth {
            Auth::None => {}
            Auth::Bearer(t) => req = req.header("authorization", format!("Bearer {t}")),
            Auth::Basic(user, pass) => {
                let enc =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
                req = req.header("authorization", format!("Basic {enc}"));
            }
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let mut req = req.body(body).unwrap();
        let port = 40_000 + (PEER.fetch_add(1, Ordering::Relaxed) % 20_000) as u16;
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip, port)));
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!("non-JSON body ({e}): {}", String::from_utf8_lossy(&bytes))
            })
        };
        Response {
            status,
            headers,
            body,
        }
    }

    /// An operator request with the harness's token.
    pub async fn op(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        self.call(method, path, body, Auth::Bearer(&self.token))
            .await
    }

    /// Whether `needle` appears in any text value of any table of the store (secrets must be stored only
    /// hashed, so a token, link or code handed out must never be found).
    pub async fn database_contains(&self, needle: &str) -> bool {
        use sqlx::{Column, Row};
        let mut conn = self.app.store().conn().await.unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        assert!(tables.len() > 10, "the store's tables: {tables:?}");
        for table in tables {
            let rows = sqlx::query(&format!("SELECT * FROM \"{table}\""))
                .fetch_all(&mut *conn)
                .await
                .unwrap();
            for row in rows {
                for column in row.columns() {
                    if let Ok(Some(text)) = row.try_get::<Option<String>, _>(column.ordinal()) {
                        if text.contains(needle) {
                            return true;
                        }
                    }
                }
            }
        }
        false
    }

    /// Every place (`table.column`) of the store, found through `sqlite_master` so new tables are covered,
    /// whose text holds `agent` after the agent's deletion, but for those that keep it by design: its
    /// tombstone, the account history's `deleted` line, and the account's own audit lines (no agent_id:
    /// who was given support access to what, which the company keeps).
    pub async fn left_after_deletion(&self, agent: &str) -> Vec<String> {
        use sqlx::{Column, Row};
        let mut conn = self.app.store().conn().await.unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             AND name NOT LIKE '_sqlx_%'",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        assert!(tables.len() > 10, "the store's tables: {tables:?}");
        let mut found = Vec::new();
        for table in tables {
            let rows = sqlx::query(&format!("SELECT * FROM \"{table}\""))
                .fetch_all(&mut *conn)
                .await
                .unwrap();
            for row in rows {
                let kept = match table.as_str() {
                    "tombstones" => true,
                    "history" => {
                        row.try_get::<String, _>("action").unwrap() == "deleted"
                            || row
                                .try_get::<Option<String>, _>("agent_id")
                                .unwrap()
                                .is_none()
                    }
                    _ => false,
                };
                if kept {
                    continue;
                }
                for column in row.columns() {
                    if let Ok(Some(text)) = row.try_get::<Option<String>, _>(column.ordinal()) {
                        if text.contains(agent) {
                            found.push(format!("{table}.{}", column.name()));
                        }
                    }
                }
            }
        }
        found.sort();
        found.dedup();
        found
    }

    /// The company of the harness's token (the install's only company).
    pub async fn company(&self) -> i64 {
        let mut conn = self.app.store().conn().await.unwrap();
        users::company_for(&mut conn, None, start_time())
            .await
            .unwrap()
    }

    /// A user of the harness's company with `role` (a group admin or supervisor in `group`, made if new)
    /// whose password is already set to `password` (the invitation flow has its own tests); their id.
    pub async fn add_user(
        &self,
        email: &str,
        role: Role,
        group: Option<&str>,
        password: &str,
    ) -> i64 {
        let member = users::NewMember {
            email,
            name: None,
            role,
            require_2fa: false,
        };
        let link = users::bootstrap_user(
            self.app.store(),
            &member,
            None,
            group,
            PUBLIC_URL,
            start_time(),
        )
        .await
        .unwrap();
        let hash = outpost_portal::passwords::hash_argon2(
            password,
            outpost_portal::passwords::PasswordCost::for_tests(),
        )
        .unwrap();
        let mut conn = self.app.store().conn().await.unwrap();
        outpost_portal::store::users::set_password(&mut conn, link.user.id, &hash, start_time())
            .await
            .unwrap();
        link.user.id
    }

    /// A fresh activation code (display form) made with the app's clock.
    pub async fn code(&self, uses: u32, prepaid_months: Option<u32>) -> String {
        let company = self.company().await;
        self.app
            .create_code(
                chrono::Duration::days(7),
                uses,
                prepaid_months,
                (company, None),
            )
            .await
            .unwrap()
            .code
            .display()
    }

    /// Activates an agent named `hostname`; returns the 201 body.
    pub async fn activate(&self, hostname: &str) -> Value {
        self.activate_with(hostname, None).await
    }

    pub async fn activate_with(&self, hostname: &str, prepaid_months: Option<u32>) -> Value {
        let code = self.code(1, prepaid_months).await;
        let resp = self
            .call(
                Method::POST,
                "/api/v1/activate",
                Some(activation_body(&code, hostname)),
                Auth::None,
            )
            .await;
        assert_eq!(resp.status, StatusCode::CREATED, "{:?}", resp.body);
        resp.body
    }

    /// Feeds one message from the agent through ingest with the next sequence number.
    pub async fn send(&self, agent: &str, epoch: u64, msg: AgentMessage) -> Disposition {
        let seq = {
            let mut seqs = self.seqs.lock().unwrap();
            let s = seqs.entry(agent.to_owned()).or_insert(0);
            *s += 1;
            *s
        };
        self.send_seq(agent, seq, epoch, msg).await
    }

    pub async fn send_seq(
        &self,
        agent: &str,
        seq: u64,
        epoch: u64,
        msg: AgentMessage,
    ) -> Disposition {
        let id = AgentId::parse(agent).unwrap();
        let env = Envelope::new(seq, epoch, self.clock.now().timestamp_millis(), msg);
        ingest::handle(&self.app, &id, env).await.unwrap()
    }

    /// Like [`Harness::send`], with a locator that records the notices the portal sends (no GeoIP
    /// database): what `notices_to` reads.
    pub async fn send_noticed(&self, agent: &str, epoch: u64, msg: AgentMessage) -> Disposition {
        let seq = {
            let mut seqs = self.seqs.lock().unwrap();
            let s = seqs.entry(agent.to_owned()).or_insert(0);
            *s += 1;
            *s
        };
        let id = AgentId::parse(agent).unwrap();
        let env = Envelope::new(seq, epoch, self.clock.now().timestamp_millis(), msg);
        let locator = Locator::new(None, Some(self.notices.clone() as Arc<dyn NoticeSender>));
        ingest::handle_with(&self.app, &locator, &id, env)
            .await
            .unwrap()
    }

    /// The notices sent so far to `agent` through [`Harness::send_noticed`] (the hello's `Welcome`,
    /// sent from a task of its own, left out).
    pub fn notices_to(&self, agent: &str) -> Vec<PortalNotice> {
        self.notices
            .sent
            .lock()
            .unwrap()
            .iter()
            .filter(|(a, n)| a.as_str() == agent && !matches!(n, PortalNotice::Welcome { .. }))
            .map(|(_, n)| n.clone())
            .collect()
    }

    /// The agent connects: presence online and hello (in data epoch `epoch`).
    pub async fn connect(&self, agent: &str, name: &str, epoch: u64) {
        self.send(
            agent,
            epoch,
            AgentMessage::Presence(Presence { online: true }),
        )
        .await;
        self.send(agent, epoch, hello(name)).await;
    }

    /// The commands sent so far to `agent`.
    pub fn sent_to(&self, agent: &str) -> Vec<CommandEnvelope> {
        self.sender
            .sent
            .lock()
            .unwrap()
            .iter()
            .filter(|(a, _)| a.as_str() == agent)
            .map(|(_, c)| c.clone())
            .collect()
    }

    pub async fn agent(&self, id: &str) -> Value {
        let resp = self
            .op(Method::GET, &format!("/api/v1/agents/{id}"), None)
            .await;
        assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
        resp.body
    }
}

/// The `agent_id` of an activation answer.
pub fn id_of(v: &Value) -> String {
    v["agent_id"].as_str().unwrap().to_owned()
}

pub fn activation_body(code: &str, hostname: &str) -> Value {
    json!({
        "code": code,
        "mac": "02:00:00:00:00:01",
        "hostname": hostname,
        "version": "0.1.0",
        "local_ip": "192.0.2.7",
        "platform": "box",
    })
}

pub fn hello(name: &str) -> AgentMessage {
    hello_on(name, Platform::Router, Vec::new())
}

/// A hello from an agent on `platform` watching `segments`.
pub fn hello_on(name: &str, platform: Platform, segments: Vec<Segment>) -> AgentMessage {
    AgentMessage::Hello(Hello {
        version: "0.1.1".into(),
        platform,
        hostname: format!("{name}-host"),
        name: name.into(),
        mac: Some("02:00:00:00:00:02".into()),
        local_ip: Some("192.0.2.9".into()),
        interfaces: vec![Interface {
            name: "lan0".into(),
            mac: Some("02:00:00:00:00:02".into()),
            addrs: vec!["192.0.2.9/24".into()],
        }],
        capabilities: vec!["cleanup".into(), "rename".into()],
        segments,
        geoip: false,
        target: None,
        updatable: false,
        settings_version: None,
    })
}

/// A device record as an agent reports it: online, seen at 1,000 and 2,000 ms, nothing else known.
pub fn sample_device(
    mac: &str,
    vlan: Option<u16>,
    interface: &str,
    ipv4: Ipv4Addr,
) -> outpost_cloud_link::inventory::Device {
    outpost_cloud_link::inventory::Device {
        last_seen_ms: 2_000,
        ..outpost_cloud_link::inventory::Device::first_seen(mac, vlan, interface, Some(ipv4), 1_000)
    }
}

/// An answer read as text (a page, or JSON read on demand).
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    pub fn set_cookie(&self) -> &str {
        self.headers
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    /// The session cookie it set, as a `Cookie` header value.
    pub fn session(&self) -> String {
        self.set_cookie().split(';').next().unwrap().to_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }
}

pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An `application/x-www-form-urlencoded` body.
pub fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// What a browser-like request carries.
#[derive(Default)]
pub struct Req<'a> {
    pub cookie: Option<&'a str>,
    pub form: Option<String>,
    pub json: Option<Value>,
    pub headers: Vec<(&'static str, String)>,
    pub from: Option<IpAddr>,
}

/// One request as a browser sends it (`Host: portal.example:8443`), answered as text.
pub async fn request(h: &Harness, method: Method, path: &str, r: Req<'_>) -> Page {
    use tower::ServiceExt;
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "portal.example:8443");
    if let Some(cookie) = r.cookie {
        req = req.header("cookie", cookie);
    }
    for (name, value) in &r.headers {
        req = req.header(*name, value);
    }
    let body = match (r.form, r.json) {
        (Some(f), _) => {
            req = req.header("content-type", "application/x-www-form-urlencoded");
            Body::from(f)
        }
        (None, Some(j)) => {
            req = req.header("content-type", "application/json");
            Body::from(j.to_string())
        }
        (None, None) => Body::empty(),
    };
    let mut req = req.body(body).unwrap();
    let ip = r.from.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(ip, 40_000)));
    let resp = h.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Page {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}
