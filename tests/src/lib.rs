//! Helpers for the end-to-end tests: start the real `outpost-portal` (which starts the real Mosquitto) and
//! real `outpost-agent` processes on loopback, each with its own temporary directory and free ports, and
//! stop every process they started when dropped, even when a test fails.
//!
//! The binaries are built on first use with the same cargo that runs the tests, so `cargo test` alone is
//! enough.

pub mod browser;
pub mod lab;
pub mod netns;
pub mod ota;
pub mod power_lab;
pub mod responders;
pub mod smtp;
pub mod totp;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;

/// Where the workspace's binaries are, built once per test process.
fn bin_dir() -> Result<&'static Path> {
    static DIR: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| build_bins().map_err(|e| format!("{e:#}")))
        .as_deref()
        .map_err(|e| anyhow!("{e}"))
}

fn build_bins() -> Result<PathBuf> {
    // target/<profile>/deps/<test binary>: the binaries live in target/<profile>.
    let exe = std::env::current_exe().context("locating the test binary")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary is not inside target/<profile>/deps")?
        .to_path_buf();
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    cargo_build(&["outpost-portal", "outpost-agent"], release)?;
    Ok(profile_dir)
}

/// The optimized agent, as it ships (built once per test process): for measurements such as memory, where
/// a debug build says little.
pub fn release_agent_bin() -> Result<PathBuf> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().map_err(|e| format!("locating the test binary: {e}"))?;
        let target = exe
            .ancestors()
            .nth(3)
            .ok_or("test binary is not inside target/<profile>/deps")?
            .to_path_buf();
        cargo_build(&["outpost-agent"], true).map_err(|e| format!("{e:#}"))?;
        Ok(target.join("release").join("outpost-agent"))
    })
    .clone()
    .map_err(|e| anyhow!("{e}"))
}

/// `cargo build -p PACKAGE...` in the workspace, with this test process's per-package variables removed.
fn cargo_build(packages: &[&str], release: bool) -> Result<()> {
    let mut cmd = cargo_command();
    cmd.args(["build", "--quiet"]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    if release {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .context("running cargo build for the binaries")?;
    if !status.success() {
        bail!("cargo build of {} failed", packages.join(", "));
    }
    Ok(())
}

/// The workspace's root folder.
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `cargo` in the workspace, with this test process's per-package variables removed.
pub fn cargo_command() -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let workspace = workspace_dir();
    let mut cmd = Command::new(cargo);
    // Cargo gives this test process the variables of the package under test; passed on, they would look like
    // a changed environment to build scripts that watch them (ring does) and rebuild half the tree.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let per_package = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_BIN_",
            "CARGO_CRATE_",
        ]
        .iter()
        .any(|p| key.starts_with(p))
            || [
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .contains(&&*key);
        if per_package {
            cmd.env_remove(&*key);
        }
    }
    cmd.current_dir(&workspace);
    cmd
}

pub fn portal_bin() -> Result<PathBuf> {
    Ok(bin_dir()?.join("outpost-portal"))
}

pub fn agent_bin() -> Result<PathBuf> {
    Ok(bin_dir()?.join("outpost-agent"))
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Polls `f` every 50 ms until it returns `Some`, or fails after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > deadline {
            return Err(match last_err {
                Some(e) => e.context(format!("timed out after {timeout:?} waiting for {what}")),
                None => anyhow!("timed out after {timeout:?} waiting for {what}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops a child we started: SIGTERM, a grace period, then SIGKILL.
fn stop_child(child: &mut Child, grace: Duration) -> Option<std::process::ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().ok()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A command for a daemon with extra environment. When that environment asks for a watchdog, the daemon is
/// started as systemd starts it: with `WATCHDOG_PID` naming its own pid (set by a shell that then `exec`s it).
fn service_command(bin: &Path, env: &[(String, String)]) -> Command {
    let mut cmd = if env.iter().any(|(k, _)| k == "WATCHDOG_USEC") {
        let mut sh = Command::new("/bin/sh");
        sh.args(["-c", r#"WATCHDOG_PID=$$ exec "$0" "$@""#])
            .arg(bin);
        sh
    } else {
        Command::new(bin)
    };
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// Options for starting a portal.
#[derive(Debug, Clone)]
pub struct PortalOptions {
    pub activation_rate: u32,
    pub offline_after_s: u64,
    /// Extra environment for the portal process.
    pub env: Vec<(String, String)>,
    /// Where the HTTPS API and the broker listen (default 127.0.0.1); a lab's `Uplink::outside` lets an
    /// agent in the lab reach the portal.
    pub listen: std::net::Ipv4Addr,
}

impl Default for PortalOptions {
    fn default() -> Self {
        Self {
            activation_rate: 100,
            offline_after_s: 30,
            env: Vec::new(),
            listen: std::net::Ipv4Addr::LOCALHOST,
        }
    }
}

/// A running `outpost-portal up` (with its Mosquitto) on free loopback ports.
pub struct Portal {
    pub dir: TempDir,
    pub listen: std::net::Ipv4Addr,
    pub https: u16,
    pub mqtts: u16,
    pub token: String,
    child: Option<Child>,
    client: reqwest::Client,
}

impl Portal {
    pub async fn start() -> Result<Self> {
        Self::start_with(PortalOptions::default()).await
    }

    pub async fn start_with(opts: PortalOptions) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("outpost-portal-")
            .tempdir()?;
        let https = free_port()?;
        let mqtts = free_port()?;
        let mut portal = Self {
            dir,
            listen: opts.listen,
            https,
            mqtts,
            token: String::new(),
            child: None,
            client: reqwest::Client::new(),
        };
        portal.spawn(&opts)?;
        portal.wait_ready().await?;
        portal.token = portal.cli(&["token", "new", "--name", "e2e"])?;
        Ok(portal)
    }

    pub fn data(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self, opts: &PortalOptions) -> Result<()> {
        let log = fs::File::create(self.data().join("portal.log"))?;
        let child = service_command(&portal_bin()?, &opts.env)
            .args(["up", "--data"])
            .arg(self.data().join("data"))
            .args(["--https", &format!("{}:{}", opts.listen, self.https)])
            .args(["--mqtts", &format!("{}:{}", opts.listen, self.mqtts)])
            .args(if opts.listen.is_loopback() {
                vec![]
            } else {
                vec!["--hostname".to_owned(), opts.listen.to_string()]
            })
            .args(["--activation-rate", &opts.activation_rate.to_string()])
            .args(["--offline-after", &opts.offline_after_s.to_string()])
            .args(["--sweep-interval", "1", "--dev-clock"])
            .env("OUTPOST_LOG", "info,outpost_portal=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting outpost-portal")?;
        self.child = Some(child);
        Ok(())
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "outpost-portal exited with {status} while starting:\n{}",
                        self.log_tail()
                    );
                }
            }
            if fs::metadata(self.ca_path()).is_ok() {
                if let Ok(client) = self.make_client() {
                    let url = format!("{}/api/v1/openapi.json", self.base_url());
                    if let Ok(resp) = client.get(&url).send().await {
                        if resp.status().is_success() {
                            self.client = client;
                            return Ok(());
                        }
                    }
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "outpost-portal did not serve HTTPS within 30 s:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn make_client(&self) -> Result<reqwest::Client> {
        let ca = reqwest::Certificate::from_pem(&fs::read(self.ca_path())?)?;
        Ok(reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(20))
            .build()?)
    }

    pub fn log_tail(&self) -> String {
        tail(&self.data().join("portal.log"), 40)
    }

    pub fn ca_path(&self) -> PathBuf {
        self.data().join("data").join("ca.pem")
    }

    pub fn base_url(&self) -> String {
        format!("https://{}:{}", self.listen, self.https)
    }

    /// Runs `outpost-portal ARGS --data DIR` and returns its trimmed stdout.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(portal_bin()?)
            .args(args)
            .arg("--data")
            .arg(self.data().join("data"))
            .output()?;
        if !out.status.success() {
            bail!(
                "outpost-portal {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    /// A fresh single-use activation code from the CLI.
    pub fn new_code(&self) -> Result<String> {
        self.cli(&["codes", "new"])
    }

    /// Calls the API with the bearer token; returns status and JSON body (`Null` when empty).
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        let mut req = self
            .client
            .request(method, format!("{}/api/v1{path}", self.base_url()))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)?
        };
        Ok((status, value))
    }

    /// Like [`Portal::api`] but fails unless the status is `expect`.
    pub async fn api_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        expect: StatusCode,
    ) -> Result<Value> {
        let (status, value) = self.api(method.clone(), path, body).await?;
        if status != expect {
            bail!("{method} {path}: expected {expect}, got {status}: {value}");
        }
        Ok(value)
    }

    pub async fn agent(&self, id: &str) -> Result<Value> {
        self.api_ok(Method::GET, &format!("/agents/{id}"), None, StatusCode::OK)
            .await
    }

    /// `PATCH /agents/{id}` with a new name; returns the agent's record.
    pub async fn rename(&self, id: &str, name: &str) -> Result<Value> {
        let body = json!({ "name": name });
        self.api_ok(
            Method::PATCH,
            &format!("/agents/{id}"),
            Some(body),
            StatusCode::OK,
        )
        .await
    }

    /// `POST /agents/{id}/cleanup`: returns the agent's record (with its new `data_epoch`).
    pub async fn cleanup(&self, id: &str) -> Result<Value> {
        self.api_ok(
            Method::POST,
            &format!("/agents/{id}/cleanup"),
            None,
            StatusCode::ACCEPTED,
        )
        .await
    }

    /// A device-control route: `METHOD /agents/{id}/devices/{device}/{what}` (`block`, `unblock`, `power`,
    /// `power-outlet`, …) with an optional JSON body; returns status and body.
    pub async fn device_control(
        &self,
        method: Method,
        id: &str,
        device: &str,
        what: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        self.api(
            method,
            &format!("/agents/{id}/devices/{device}/{what}"),
            body,
        )
        .await
    }

    /// `POST .../{verb}` (`block`, `unblock`, `power`) that must be acknowledged: returns the command as the
    /// agent answered it (`status` `done` or `failed` with `code` and `message`).
    pub async fn act(
        &self,
        id: &str,
        device: &str,
        verb: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let (status, value) = self
            .device_control(Method::POST, id, device, verb, body)
            .await?;
        if status != StatusCode::OK {
            bail!("POST .../{device}/{verb}: expected 200 with the agent's answer, got {status}: {value}");
        }
        Ok(value)
    }

    /// Invites `email` as the owner of agent `id` and accepts the invitation with `password`, as the owner
    /// would in a browser: the owner's signed-in session.
    pub async fn owner_session(
        &self,
        id: &str,
        email: &str,
        password: &str,
    ) -> Result<OwnerSession> {
        let owner = self
            .api_ok(
                Method::PUT,
                &format!("/agents/{id}/owner"),
                Some(json!({ "email": email, "enabled": true, "invite": true })),
                StatusCode::OK,
            )
            .await?;
        let url = owner["invitation"]["url"]
            .as_str()
            .with_context(|| format!("no invitation link in {owner}"))?;
        let path = url
            .find("/owner/invite/")
            .map(|i| &url[i..])
            .with_context(|| format!("not an invitation link: {url}"))?;
        let ca = reqwest::Certificate::from_pem(&fs::read(self.ca_path())?)?;
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()?;
        let resp = client
            .post(format!("{}{path}", self.base_url()))
            .form(&[("password", password), ("confirm", password)])
            .send()
            .await?;
        if resp.status() != StatusCode::SEE_OTHER {
            let status = resp.status();
            bail!("accepting the invitation: {status}: {}", resp.text().await?);
        }
        let cookie = resp
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("outpost_owner="))
            .and_then(|v| v.split(';').next())
            .context("no session cookie after accepting the invitation")?
            .to_owned();
        let mut session = OwnerSession {
            client,
            base: self.base_url(),
            cookie,
            csrf: String::new(),
        };
        let (status, devices) = session.api(Method::GET, "/owner/devices", None).await?;
        if status != StatusCode::OK {
            bail!("GET /owner/devices: {status}: {devices}");
        }
        session.csrf = devices["csrf_token"]
            .as_str()
            .context("no csrf_token")?
            .to_owned();
        Ok(session)
    }

    /// `GET /agents/{id}/history`.
    pub async fn history(&self, id: &str) -> Result<Value> {
        self.api_ok(
            Method::GET,
            &format!("/agents/{id}/history"),
            None,
            StatusCode::OK,
        )
        .await
    }

    /// `GET /agents/{id}/data`.
    pub async fn reports(&self, id: &str) -> Result<Value> {
        self.api_ok(
            Method::GET,
            &format!("/agents/{id}/data"),
            None,
            StatusCode::OK,
        )
        .await
    }

    /// Every device of the agent (`GET /agents/{id}/devices?QUERY`, all pages).
    pub async fn devices(&self, id: &str, query: &str) -> Result<Vec<Value>> {
        self.all_pages(&format!("/agents/{id}/devices"), query, "devices")
            .await
    }

    /// Every event of the agent, newest first (`GET /agents/{id}/events?QUERY`, all pages).
    pub async fn events(&self, id: &str, query: &str) -> Result<Vec<Value>> {
        self.all_pages(&format!("/agents/{id}/events"), query, "events")
            .await
    }

    async fn all_pages(&self, path: &str, query: &str, key: &str) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = format!("limit=1000&{query}");
            if let Some(c) = &cursor {
                q.push_str(&format!("&cursor={c}"));
            }
            let page = self
                .api_ok(Method::GET, &format!("{path}?{q}"), None, StatusCode::OK)
                .await?;
            out.extend(page[key].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return Ok(out),
            }
        }
    }

    /// Waits until `pred` holds for the agent's record.
    pub async fn wait_agent(
        &self,
        id: &str,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        wait_for(what, Duration::from_secs(20), || async {
            let a = self.agent(id).await?;
            Ok(pred(&a).then_some(a))
        })
        .await
    }

    /// Sets the portal's clock (it was started with `--dev-clock`) and runs its sweep.
    pub async fn set_clock(&self, now: &str) -> Result<()> {
        self.api_ok(
            Method::PUT,
            "/dev/clock",
            Some(json!({ "now": now })),
            StatusCode::OK,
        )
        .await
        .map(|_| ())
    }

    /// The pid of the Mosquitto the portal supervises.
    pub fn broker_pid(&self) -> Result<i32> {
        let text = fs::read_to_string(self.data().join("data/broker/mosquitto.pid"))?;
        Ok(text.trim().parse()?)
    }

    /// The portal's own broker credentials (for tests that speak MQTT as the portal would).
    pub fn admin_credentials(&self) -> Result<(String, String)> {
        let v: Value =
            serde_json::from_slice(&fs::read(self.data().join("data/broker/admin.json"))?)?;
        let user = v["username"]
            .as_str()
            .context("admin.json has no username")?
            .to_owned();
        let pass = v["password"]
            .as_str()
            .context("admin.json has no password")?
            .to_owned();
        Ok((user, pass))
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.client
    }
}

/// A site owner signed in to the portal (cookie session, CSRF token for changes).
pub struct OwnerSession {
    client: reqwest::Client,
    base: String,
    cookie: String,
    csrf: String,
}

impl OwnerSession {
    /// Calls the owner API (`/api/v1/owner...`); returns status and JSON body.
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        let mut req = self
            .client
            .request(method, format!("{}/api/v1{path}", self.base))
            .header(reqwest::header::COOKIE, &self.cookie)
            .header("X-CSRF-Token", &self.csrf);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)?
        };
        Ok((status, value))
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        let broker = self.broker_pid().ok();
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Duration::from_secs(10));
        }
        // The portal stops its broker; make sure, should it have died without doing so.
        if let Some(pid) = broker {
            let pid = Pid::from_raw(pid);
            if kill(pid, None).is_ok() && is_our_mosquitto(pid, self.data()) {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
    }
}

/// Only ever kill a Mosquitto whose command line names this portal's data directory.
fn is_our_mosquitto(pid: Pid, data: &Path) -> bool {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&cmdline).contains(&*data.to_string_lossy())
}

/// An agent with its own state directory, driven through its CLI.
pub struct Agent {
    pub dir: TempDir,
    child: Option<Child>,
    /// The network namespace every command of this agent runs in (`None`: the test's own).
    netns: Option<String>,
    /// The binary to run instead of the test profile's `outpost-agent`.
    bin: Option<PathBuf>,
}

/// Agent timings for tests: fast heartbeats and polls. Discovery is off: an agent in the test machine's own
/// namespace must never sweep its real network (discovery tests run the agent inside a lab namespace).
pub const FAST_CONFIG: &str = r#"
interfaces = []
heartbeat_secs = 0.2
disabled_poll_secs = 0.5
reconnect_initial_ms = 100
reconnect_max_secs = 1

[discovery]
enabled = false
"#;

impl Agent {
    pub fn new() -> Result<Self> {
        Self::with_config(FAST_CONFIG)
    }

    /// An agent whose `run` uses this TOML config. The config must say what discovery does (a
    /// `[discovery]` table): with none, the agent would sweep the network of the default route.
    pub fn with_config(config: &str) -> Result<Self> {
        if !config.contains("[discovery]") {
            bail!("a test agent's config needs a [discovery] table (enabled = false outside a lab namespace): without one it would sweep the default route's network");
        }
        let dir = tempfile::Builder::new()
            .prefix("outpost-agent-")
            .tempdir()?;
        fs::write(dir.path().join("agent.toml"), config)?;
        Ok(Self {
            dir,
            child: None,
            netns: None,
            bin: None,
        })
    }

    /// Runs this binary (e.g. [`release_agent_bin`]) instead of the test profile's.
    pub fn with_binary(mut self, bin: PathBuf) -> Self {
        self.bin = Some(bin);
        self
    }

    /// Runs every command of this agent (activate, run, status, devices...) inside network namespace `ns`
    /// (a lab's agent namespace).
    pub fn in_netns(mut self, ns: &str) -> Self {
        self.netns = Some(ns.to_owned());
        self
    }

    /// A command running the agent binary, inside the agent's namespace if it has one.
    fn bin_command(&self, env: &[(String, String)]) -> Result<Command> {
        let bin = match &self.bin {
            Some(b) => b.clone(),
            None => agent_bin()?,
        };
        Ok(match &self.netns {
            None => service_command(&bin, env),
            Some(ns) => {
                // `ip netns exec` execs the program: the child's pid is the agent's.
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).arg(bin);
                cmd.envs(env.iter().map(|(k, v)| (k, v)));
                cmd
            }
        })
    }

    /// The pid of the running `run` process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn command(&self) -> Result<Command> {
        let mut cmd = self.bin_command(&[])?;
        cmd.arg("--state")
            .arg(self.state())
            .env("OUTPOST_LOG", "info,outpost_agent=debug");
        Ok(cmd)
    }

    /// Runs `activate CODE` against `portal`.
    pub fn activate(&self, portal: &Portal, code: &str) -> Result<Output> {
        Ok(self
            .command()?
            .args(["activate", code, "--portal", &portal.base_url(), "--ca"])
            .arg(portal.ca_path())
            .output()?)
    }

    /// Activates with a fresh code and returns the agent id.
    pub fn activate_new(&self, portal: &Portal) -> Result<String> {
        let out = self.activate(portal, &portal.new_code()?)?;
        if !out.status.success() {
            bail!(
                "activation failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let status = self.status()?;
        Ok(status["agent_id"]
            .as_str()
            .context("status has no agent_id")?
            .to_owned())
    }

    /// Starts `run` in the background with the fast test config.
    pub fn start(&mut self) -> Result<()> {
        self.start_with_env(&[])
    }

    /// Starts `run` with extra environment variables.
    pub fn start_with_env(&mut self, env: &[(&str, &str)]) -> Result<()> {
        self.spawn(env, None)
    }

    /// Starts the agent as its service does, under `launch` (so it can install updates), with these
    /// options of the launcher (`--deadline-secs 5`).
    pub fn start_launched(&mut self, launch_args: &[&str]) -> Result<()> {
        self.spawn(&[], Some(launch_args))
    }

    fn spawn(&mut self, env: &[(&str, &str)], launch: Option<&[&str]>) -> Result<()> {
        if self.child.is_some() {
            bail!("agent already running");
        }
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = self
            .bin_command(&env)?
            .arg("--state")
            .arg(self.state())
            .env("OUTPOST_LOG", "info,outpost_agent=debug")
            .args(
                launch
                    .map(|a| {
                        let mut v = vec!["launch"];
                        v.extend_from_slice(a);
                        v.push("--");
                        v
                    })
                    .unwrap_or_default(),
            )
            .arg("run")
            .arg("--config")
            .arg(self.dir.path().join("agent.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting outpost-agent run")?;
        self.child = Some(child);
        Ok(())
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log_path(), 40)
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        stop_child(&mut child, Duration::from_secs(10)).and_then(|s| s.code())
    }

    /// Waits for `run` to exit by itself; returns its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut().context("agent is not running")?;
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                bail!(
                    "agent did not exit within {timeout:?}:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// `status --json`.
    pub fn status(&self) -> Result<Value> {
        let out = self.command()?.args(["status", "--json"]).output()?;
        if !out.status.success() {
            bail!("status failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// The identity the agent stored at activation.
    pub fn identity(&self) -> Result<Value> {
        Ok(serde_json::from_slice(&fs::read(
            self.state().join("identity.json"),
        )?)?)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}
