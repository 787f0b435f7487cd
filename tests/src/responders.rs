//! Real mDNS and SSDP/UPnP responders in lab hosts, for the agent's discovery tests: the Python programs in
//! `tests/fixtures/` (`mdns_responder.py`: Debian's python3-zeroconf; `ssdp_responder.py`: standard library
//! only), started in a host's namespace with `ip netns exec` under `/usr/bin/python3` (Debian's interpreter,
//! which has zeroconf, not whatever `python3` is first on `PATH`).
//!
//! [`Responder::start_mdns`] and [`Responder::start_ssdp`] return once the program printed `READY` (every
//! mDNS service registered, or the SSDP and HTTP sockets open) and fail with its stderr if it exits first.
//! Dropping a [`Responder`] stops it by PID (SIGTERM, SIGKILL after 3 s); it also stops by itself when the
//! test process dies, because it watches the stdin pipe this side holds.
//!
//! Neither needs a multicast route in the host namespace: both bind to the host's address on `eth0`
//! (python-zeroconf sets `IP_MULTICAST_IF` to it, the SSDP responder joins the group on it and answers by
//! unicast).

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::lab::{HostInfo, Lab};

/// Debian's interpreter: it has python3-zeroconf.
pub const PYTHON: &str = "/usr/bin/python3";
/// How long a responder may take to say `READY` (python-zeroconf probes each name before registering it).
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopped responder gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// A fixture program under `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// One DNS-SD service a host announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdnsServiceSpec {
    /// E.g. `_http._tcp` (without `.local.`).
    pub service_type: String,
    /// E.g. `Living Room TV`.
    pub instance: String,
    pub port: u16,
    /// TXT entries, in order.
    pub txt: Vec<(String, String)>,
}

impl MdnsServiceSpec {
    pub fn new(service_type: &str, instance: &str, port: u16) -> Self {
        MdnsServiceSpec {
            service_type: service_type.to_owned(),
            instance: instance.to_owned(),
            port,
            txt: Vec::new(),
        }
    }

    /// Adds a TXT entry `key=value`.
    pub fn txt(mut self, key: &str, value: &str) -> Self {
        self.txt.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// What an mDNS responder announces: a host name (without `.local`) and its services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdnsResponderSpec {
    pub hostname: String,
    pub services: Vec<MdnsServiceSpec>,
}

impl MdnsResponderSpec {
    pub fn new(hostname: &str) -> Self {
        MdnsResponderSpec {
            hostname: hostname.to_owned(),
            services: Vec::new(),
        }
    }

    pub fn service(mut self, service: MdnsServiceSpec) -> Self {
        self.services.push(service);
        self
    }
}

/// What an SSDP responder's UPnP description says, and where it serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsdpResponderSpec {
    pub friendly_name: String,
    pub manufacturer: String,
    pub model_name: String,
    pub model_number: String,
    /// Default `urn:schemas-upnp-org:device:MediaRenderer:1`.
    pub device_type: Option<String>,
    /// `uuid:...`; random when `None`.
    pub udn: Option<String>,
    /// The `SERVER` header; the responder's default when `None`.
    pub server: Option<String>,
    /// The HTTP port of the description (default 49152).
    pub http_port: u16,
    /// A LOCATION to send instead of its own URL (e.g. one on another host).
    pub advertise_location: Option<String>,
}

impl SsdpResponderSpec {
    pub fn new(friendly_name: &str, manufacturer: &str, model_name: &str) -> Self {
        SsdpResponderSpec {
            friendly_name: friendly_name.to_owned(),
            manufacturer: manufacturer.to_owned(),
            model_name: model_name.to_owned(),
            model_number: String::new(),
            device_type: None,
            udn: None,
            server: None,
            http_port: 49152,
            advertise_location: None,
        }
    }

    pub fn model_number(mut self, n: &str) -> Self {
        self.model_number = n.to_owned();
        self
    }

    pub fn device_type(mut self, t: &str) -> Self {
        self.device_type = Some(t.to_owned());
        self
    }

    pub fn udn(mut self, udn: &str) -> Self {
        self.udn = Some(udn.to_owned());
        self
    }

    pub fn server(mut self, server: &str) -> Self {
        self.server = Some(server.to_owned());
        self
    }

    pub fn advertise_location(mut self, url: &str) -> Self {
        self.advertise_location = Some(url.to_owned());
        self
    }
}

/// Lines a responder printed, and a signal for each new one.
#[derive(Default)]
struct Output {
    lines: Mutex<Vec<String>>,
    changed: Condvar,
}

/// A running responder in a lab host; stopped (by PID) when dropped.
pub struct Responder {
    what: String,
    child: Child,
    /// Held open so the responder notices when this process is gone (`--watch-stdin`).
    stdin: Option<ChildStdin>,
    stdout: Arc<Output>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Responder {
    /// Starts `mdns_responder.py` in `host` (on its address) and waits until every service is registered.
    pub fn start_mdns(lab: &Lab, host: &HostInfo, spec: &MdnsResponderSpec) -> Result<Self> {
        if spec.services.is_empty() {
            bail!("an mDNS responder needs at least one service");
        }
        let mut args = vec![
            "--address".to_owned(),
            host.ip.to_string(),
            "--hostname".to_owned(),
            spec.hostname.clone(),
        ];
        for s in &spec.services {
            args.extend([
                "--service".to_owned(),
                s.service_type.clone(),
                s.instance.clone(),
                s.port.to_string(),
            ]);
            args.extend(s.txt.iter().map(|(k, v)| format!("{k}={v}")));
        }
        Self::start_fixture(
            lab,
            host,
            "mdns_responder.py",
            format!("mDNS responder {} at {}", spec.hostname, host.ip),
            &args,
        )
    }

    /// Starts `ssdp_responder.py` in `host` (on its address) and waits until it answers.
    pub fn start_ssdp(lab: &Lab, host: &HostInfo, spec: &SsdpResponderSpec) -> Result<Self> {
        let mut args = vec![
            "--address".to_owned(),
            host.ip.to_string(),
            "--http-port".to_owned(),
            spec.http_port.to_string(),
            "--friendly-name".to_owned(),
            spec.friendly_name.clone(),
            "--manufacturer".to_owned(),
            spec.manufacturer.clone(),
            "--model-name".to_owned(),
            spec.model_name.clone(),
            "--model-number".to_owned(),
            spec.model_number.clone(),
        ];
        let optional = [
            ("--device-type", &spec.device_type),
            ("--udn", &spec.udn),
            ("--server", &spec.server),
            ("--advertise-location", &spec.advertise_location),
        ];
        for (flag, value) in optional {
            if let Some(v) = value {
                args.extend([flag.to_owned(), v.clone()]);
            }
        }
        Self::start_fixture(
            lab,
            host,
            "ssdp_responder.py",
            format!("SSDP responder {:?} at {}", spec.friendly_name, host.ip),
            &args,
        )
    }

    /// Starts the fixture `program` (a python3 script in `fixtures/` that takes `--watch-stdin` and prints
    /// `READY` once it serves) in `host` with `args`, and waits until it is ready; `what` names it in errors.
    pub fn start_fixture(
        lab: &Lab,
        host: &HostInfo,
        program: &str,
        what: String,
        args: &[String],
    ) -> Result<Self> {
        let script = fixture(program);
        let script = script
            .to_str()
            .ok_or_else(|| anyhow!("fixture path {script:?} is not UTF-8"))?
            .to_owned();
        let mut argv: Vec<&str> = vec![PYTHON, "-u", &script, "--watch-stdin"];
        argv.extend(args.iter().map(String::as_str));
        // `ip netns exec` execs the program, so the child's PID is the responder's.
        let mut child = lab
            .host_exec(&host.ns, &argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting the {what} ({PYTHON} {script})"))?;
        let stdin = child.stdin.take();
        let stdout = Arc::new(Output::default());
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            let sink = Arc::clone(&stdout);
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut lines) = sink.lines.lock() {
                        lines.push(line);
                    }
                    sink.changed.notify_all();
                }
                sink.changed.notify_all();
            }));
        }
        if let Some(mut err) = child.stderr.take() {
            let sink = Arc::clone(&stderr);
            readers.push(std::thread::spawn(move || {
                let mut buf = String::new();
                let _ = err.read_to_string(&mut buf);
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&buf);
                }
            }));
        }
        let mut responder = Responder {
            what,
            child,
            stdin,
            stdout,
            stderr,
            readers,
        };
        responder.wait_ready()?;
        Ok(responder)
    }

    /// Waits for the `READY` line; an error carries the program's stderr if it exited.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.lines().iter().any(|l| l.starts_with("READY")) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                // Let the readers finish so stderr is complete.
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                bail!(
                    "the {} exited ({status}) before it was ready: {}",
                    self.what,
                    self.stderr_text().trim()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "the {} was not ready after {READY_TIMEOUT:?}; stderr: {}",
                    self.what,
                    self.stderr_text().trim()
                );
            }
            let lines = self
                .stdout
                .lines
                .lock()
                .map_err(|_| anyhow!("responder output lock poisoned"))?;
            if !lines.iter().any(|l| l.starts_with("READY")) {
                drop(
                    self.stdout
                        .changed
                        .wait_timeout(lines, Duration::from_millis(100)),
                );
            }
        }
    }

    /// The responder's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it printed on stdout so far.
    pub fn lines(&self) -> Vec<String> {
        self.stdout
            .lines
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// Forgets the output lines that start with `prefix` (later [`Responder::lines`] start after them).
    pub fn forget_lines(&self, prefix: &str) {
        if let Ok(mut lines) = self.stdout.lines.lock() {
            lines.retain(|l| !l.starts_with(prefix));
        }
    }

    /// The paths of the HTTP requests an SSDP responder served (`GET <path> FROM <ip>` lines).
    pub fn http_requests(&self) -> Vec<String> {
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix("GET "))
            .filter_map(|rest| rest.split(' ').next())
            .map(str::to_owned)
            .collect()
    }

    /// How many M-SEARCHes an SSDP responder answered.
    pub fn searches(&self) -> usize {
        self.lines()
            .iter()
            .filter(|l| l.starts_with("SEARCH "))
            .count()
    }

    /// What it printed on stderr so far (complete once it has exited).
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "{}: no exit {STOP_GRACE:?} after SIGTERM, killing it",
            self.what
        );
        let _ = kill(pid, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop();
        drop(self.stdin.take());
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

/// Another program running in a lab host (dnsmasq, a DHCP client); stopped by PID when dropped.
pub struct LabProcess {
    what: &'static str,
    child: Child,
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LabProcess {
    fn start(what: &'static str, mut cmd: std::process::Command) -> Result<Self> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {what}"))?;
        Ok(Self { what, child })
    }

    /// Fails when the program already exited (a bad option, a port in use), with its stderr.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let mut err = String::new();
            if let Some(mut e) = self.child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            bail!("{} exited early ({status}): {}", self.what, err.trim());
        }
        Ok(())
    }

    /// A DNS server in `host` (Debian's dnsmasq) answering PTR (and A) queries for `names` and nothing else:
    /// no upstream, no /etc/hosts. Its hosts file and pid file go to `dir`.
    pub fn dns_server(
        lab: &Lab,
        host: &HostInfo,
        dir: &std::path::Path,
        names: &[(std::net::Ipv4Addr, &str)],
    ) -> Result<Self> {
        let hosts = dir.join(format!("dns-{}.hosts", host.ip));
        let text: String = names.iter().map(|(ip, n)| format!("{ip} {n}\n")).collect();
        std::fs::write(&hosts, text)?;
        let mut cmd = lab.host_exec(&host.ns, &["/usr/sbin/dnsmasq"]);
        cmd.args([
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--conf-file=/dev/null",
            "--bind-interfaces",
            "--user=root",
            "--port=53",
        ])
        .arg(format!("--listen-address={}", host.ip))
        .arg(format!("--addn-hosts={}", hosts.display()))
        .arg(format!(
            "--pid-file={}",
            dir.join(format!("dns-{}.pid", host.ip)).display()
        ));
        let mut d = Self::start("dnsmasq", cmd)?;
        std::thread::sleep(Duration::from_millis(300));
        d.check_alive()?;
        Ok(d)
    }

    /// A DHCP client in `host` (busybox udhcpc) sending `discovers` DISCOVERs, about two seconds apart,
    /// with a hostname (option 12) and vendor class (option 60); there is no server.
    pub fn dhcp_client(
        lab: &Lab,
        host: &HostInfo,
        hostname: &str,
        vendor: &str,
        discovers: u32,
    ) -> Result<Self> {
        let mut cmd = lab.host_exec(&host.ns, &["busybox", "udhcpc"]);
        let discovers = discovers.to_string();
        cmd.args([
            "-i", "eth0", "-f", "-n", "-t", &discovers, "-T", "1", "-A", "1",
        ])
        .args([
            "-s",
            "/bin/true",
            "-x",
            &format!("hostname:{hostname}"),
            "-V",
            vendor,
        ]);
        Self::start("udhcpc", cmd)
    }
}
