//! Real power-control peers in lab hosts, for the agent's power tests:
//!
//! - [`Snmpd`]: net-snmp's `snmpd` with its own configuration in a temporary directory (a v2c read-write
//!   community, optionally a read-only one, SNMPv3 users created with `createUser`, the persistent directory
//!   there too) and a `pass_persist` handler (`fixtures/snmp_pass_persist.py`) serving a PoE port table
//!   (`pethPsePortAdminEnable`) and an APC PDU outlet table (`sPDUOutletCtl`) that records every SET.
//! - [`SmartPlug`]: `fixtures/smartplug.py`, the HTTP API of a Shelly Gen2 device (JSON-RPC, SHA-256 digest
//!   authentication when it has a password) or of a Tasmota device (`/cm?cmnd=`), recording every request.
//!
//! Both run in a lab host's namespace (started with `ip netns exec`, so the child's PID is the program's), are
//! ready when `start` returns (a `snmpget` answered, the plug printed `READY`), fail with their output if they
//! exit first, and are stopped by PID when dropped (SIGTERM, SIGKILL after 3 s). The plug also exits by itself
//! when the test process dies (it watches the stdin pipe this side holds); the `pass_persist` handlers exit
//! when snmpd does.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Deserialize;
use serde_json::Value;
use tempfile::TempDir;

use crate::lab::{HostInfo, Lab};
use crate::responders::{fixture, Responder, PYTHON};

/// Debian's net-snmp agent.
pub const SNMPD: &str = "/usr/sbin/snmpd";
/// `pethPsePortAdminEnable` (POWER-ETHERNET-MIB), without the `.group.port` index.
pub const POE_ADMIN_ENABLE: &str = ".1.3.6.1.2.1.105.1.1.1.3";
/// `sPDUOutletCtl` (PowerNet-MIB), without the `.outlet` index.
pub const PDU_OUTLET_CTL: &str = ".1.3.6.1.4.1.318.1.1.4.4.2.1.3";
/// How long a peer may take to answer after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stopped peer gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// An SNMPv3 user with SHA authentication and AES privacy (authPriv), read-write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnmpV3User {
    pub name: String,
    pub auth_password: String,
    pub priv_password: String,
}

/// One PoE port: `pethPsePortAdminEnable.<group>.<port>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoePort {
    pub group: u32,
    pub port: u32,
    pub on: bool,
    /// Accepts a SET but keeps its value.
    pub stuck: bool,
}

/// One APC PDU outlet: `sPDUOutletCtl.<outlet>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PduOutlet {
    pub outlet: u32,
    pub on: bool,
    /// Accepts a SET but keeps its value.
    pub stuck: bool,
}

/// What an [`Snmpd`] serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnmpdSpec {
    /// UDP port (default 161: the agent has the host's namespace to itself).
    pub port: u16,
    pub rw_community: String,
    pub ro_community: Option<String>,
    pub v3_users: Vec<SnmpV3User>,
    pub poe: Vec<PoePort>,
    pub pdu: Vec<PduOutlet>,
    /// A SET takes effect this much later (default none).
    pub lag: Duration,
    /// How long an APC outlet stays off after `immediateReboot` (3) (default 1 s).
    pub reboot: Duration,
}

impl SnmpdSpec {
    pub fn new(rw_community: &str) -> Self {
        SnmpdSpec {
            port: 161,
            rw_community: rw_community.to_owned(),
            ro_community: None,
            v3_users: Vec::new(),
            poe: Vec::new(),
            pdu: Vec::new(),
            lag: Duration::ZERO,
            reboot: Duration::from_secs(1),
        }
    }

    pub fn ro_community(mut self, community: &str) -> Self {
        self.ro_community = Some(community.to_owned());
        self
    }

    /// Adds a read-write SNMPv3 user (SHA + AES, authPriv).
    pub fn v3_user(mut self, name: &str, auth_password: &str, priv_password: &str) -> Self {
        self.v3_users.push(SnmpV3User {
            name: name.to_owned(),
            auth_password: auth_password.to_owned(),
            priv_password: priv_password.to_owned(),
        });
        self
    }

    pub fn poe_port(mut self, group: u32, port: u32, on: bool) -> Self {
        self.poe.push(PoePort {
            group,
            port,
            on,
            stuck: false,
        });
        self
    }

    /// A PoE port that accepts SETs and never changes.
    pub fn stuck_poe_port(mut self, group: u32, port: u32, on: bool) -> Self {
        self.poe.push(PoePort {
            group,
            port,
            on,
            stuck: true,
        });
        self
    }

    pub fn pdu_outlet(mut self, outlet: u32, on: bool) -> Self {
        self.pdu.push(PduOutlet {
            outlet,
            on,
            stuck: false,
        });
        self
    }

    /// A PDU outlet that accepts SETs and never changes.
    pub fn stuck_pdu_outlet(mut self, outlet: u32, on: bool) -> Self {
        self.pdu.push(PduOutlet {
            outlet,
            on,
            stuck: true,
        });
        self
    }

    pub fn lag(mut self, lag: Duration) -> Self {
        self.lag = lag;
        self
    }

    /// `snmpd.conf` for this spec; the handler writes its SET log to `set_log`.
    fn config(&self, host: &HostInfo, set_log: &Path) -> Result<String> {
        let mut c = String::new();
        writeln!(c, "agentaddress udp:{}:{}", host.ip, self.port)?;
        writeln!(c, "rwcommunity {} default", self.rw_community)?;
        if let Some(ro) = &self.ro_community {
            writeln!(c, "rocommunity {ro} default")?;
        }
        for u in &self.v3_users {
            writeln!(
                c,
                "createUser {} SHA \"{}\" AES \"{}\"",
                u.name, u.auth_password, u.priv_password
            )?;
            writeln!(c, "rwuser {} priv", u.name)?;
        }
        let script = fixture("snmp_pass_persist.py");
        let script = script
            .to_str()
            .ok_or_else(|| anyhow!("fixture path {script:?} is not UTF-8"))?;
        let log = set_log
            .to_str()
            .ok_or_else(|| anyhow!("{set_log:?} is not UTF-8"))?;
        let common = format!(
            "--log {log} --lag-ms {} --reboot-ms {}",
            self.lag.as_millis(),
            self.reboot.as_millis()
        );
        if !self.poe.is_empty() {
            let mut line =
                format!("pass_persist {POE_ADMIN_ENABLE} {PYTHON} {script} --table poe {common}");
            for p in &self.poe {
                write!(line, " --entry {}.{}={}", p.group, p.port, value(p.on))?;
                if p.stuck {
                    write!(line, " --stuck {}.{}", p.group, p.port)?;
                }
            }
            writeln!(c, "{line}")?;
        }
        if !self.pdu.is_empty() {
            let mut line =
                format!("pass_persist {PDU_OUTLET_CTL} {PYTHON} {script} --table pdu {common}");
            for o in &self.pdu {
                write!(line, " --entry {}={}", o.outlet, value(o.on))?;
                if o.stuck {
                    write!(line, " --stuck {}", o.outlet)?;
                }
            }
            writeln!(c, "{line}")?;
        }
        Ok(c)
    }
}

/// 1 (on, true) or 2 (off, false).
fn value(on: bool) -> u8 {
    if on {
        1
    } else {
        2
    }
}

/// One SET the `pass_persist` handler received.
#[derive(Debug, Clone, PartialEq)]
pub struct SnmpSet {
    /// `poe` or `pdu`.
    pub table: String,
    /// `1.4` (group.port) or `3` (outlet); the full OID when it is outside the table.
    pub index: String,
    pub value: String,
    /// Unix time, seconds.
    pub at: f64,
    /// What the handler answered: `DONE`, `not-writable`, `wrong-value`, ...
    pub answer: String,
}

/// A running snmpd in a lab host; stopped when dropped.
pub struct Snmpd {
    child: Child,
    dir: TempDir,
    ns: String,
    host: HostInfo,
    port: u16,
    rw_community: String,
}

impl Snmpd {
    /// Starts snmpd in `host` and waits until it answers a v2c GET (and its tables, when it has some).
    pub fn start(lab: &Lab, host: &HostInfo, spec: &SnmpdSpec) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("outpost-snmpd-")
            .tempdir()
            .context("creating snmpd's directory")?;
        let conf = dir.path().join("snmpd.conf");
        fs::write(&conf, spec.config(host, &dir.path().join("sets.log"))?)
            .with_context(|| format!("writing {}", conf.display()))?;
        let out = fs::File::create(dir.path().join("snmpd.out")).context("creating snmpd.out")?;
        let err = out.try_clone().context("duplicating snmpd.out")?;
        let conf_arg = conf
            .to_str()
            .ok_or_else(|| anyhow!("{conf:?} is not UTF-8"))?
            .to_owned();
        // -f foreground, -Lo log to stdout, -C no other configuration files; no MIB files (numeric OIDs only).
        let child = lab
            .host_exec(
                &host.ns,
                &[
                    SNMPD,
                    "-f",
                    "-Lo",
                    "-C",
                    "-c",
                    &conf_arg,
                    "-M",
                    "/dev/null",
                    "-m",
                    "",
                ],
            )
            .env("SNMP_PERSISTENT_DIR", dir.path())
            .env("SNMPCONFPATH", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("starting {SNMPD} in {}", host.ns))?;
        let mut snmpd = Snmpd {
            child,
            dir,
            ns: host.ns.clone(),
            host: host.clone(),
            port: spec.port,
            rw_community: spec.rw_community.clone(),
        };
        let probe = spec
            .poe
            .first()
            .map(|p| format!("{POE_ADMIN_ENABLE}.{}.{}", p.group, p.port))
            .or_else(|| {
                spec.pdu
                    .first()
                    .map(|o| format!("{PDU_OUTLET_CTL}.{}", o.outlet))
            });
        snmpd.wait_ready(probe.as_deref())?;
        Ok(snmpd)
    }

    fn wait_ready(&mut self, table_oid: Option<&str>) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let sys_uptime = ".1.3.6.1.2.1.1.3.0";
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "snmpd in {} exited ({status}) before it answered: {}",
                    self.ns,
                    self.output_tail()
                );
            }
            let up = self.get(sys_uptime).is_ok_and(|v| v.is_some());
            let table = match table_oid {
                None => true,
                Some(oid) => self.get(oid).is_ok_and(|v| v.is_some()),
            };
            if up && table {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "snmpd in {} did not answer within {READY_TIMEOUT:?}: {}",
                    self.ns,
                    self.output_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `IP:PORT`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host.ip, self.port)
    }

    pub fn host(&self) -> &HostInfo {
        &self.host
    }

    /// The value of `oid` (numeric, e.g. `.1.3.6.1.2.1.105.1.1.1.3.1.4`), read with `snmpget` and the read-write
    /// community from inside the host: `None` when the agent has no such instance.
    pub fn get(&self, oid: &str) -> Result<Option<String>> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "snmpget", "-v2c", "-c"])
            .arg(&self.rw_community)
            .args([
                "-t",
                "0.5",
                "-r",
                "0",
                "-On",
                "-Oqv",
                "-M",
                "/dev/null",
                "-m",
                "",
            ])
            .arg(self.address())
            .arg(oid)
            .env("SNMP_PERSISTENT_DIR", self.dir.path())
            .env("SNMPCONFPATH", self.dir.path())
            .stdin(Stdio::null())
            .output()
            .context("running snmpget")?;
        if !out.status.success() {
            bail!(
                "snmpget {oid} from {}: {}",
                self.address(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if text.starts_with("No Such") || text.is_empty() {
            Ok(None)
        } else {
            Ok(Some(text))
        }
    }

    /// Every SET the tables received, in order.
    pub fn sets(&self) -> Result<Vec<SnmpSet>> {
        let path = self.dir.path().join("sets.log");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        text.lines()
            .map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                match f.as_slice() {
                    ["SET", table, index, value, at, answer] => Ok(SnmpSet {
                        table: (*table).to_owned(),
                        index: (*index).to_owned(),
                        value: (*value).to_owned(),
                        at: at
                            .parse()
                            .with_context(|| format!("bad time in {line:?}"))?,
                        answer: (*answer).to_owned(),
                    }),
                    _ => bail!("bad SET log line {line:?}"),
                }
            })
            .collect()
    }

    /// The end of snmpd's output (for messages).
    pub fn output_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.path().join("snmpd.out")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Snmpd {
    fn drop(&mut self) {
        stop(&mut self.child, "snmpd");
    }
}

/// Stops a child by PID: SIGTERM, SIGKILL after [`STOP_GRACE`].
fn stop(child: &mut Child, what: &str) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let pid = Pid::from_raw(child.id() as i32);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("{what}: no exit {STOP_GRACE:?} after SIGTERM, killing it");
    let _ = kill(pid, Signal::SIGKILL);
    let _ = child.wait();
}

/// Which API a [`SmartPlug`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlugKind {
    /// Shelly Gen2 JSON-RPC (`POST /rpc`, `GET /rpc/<Method>`); switch ids from 0.
    Shelly,
    /// Tasmota web commands (`GET /cm?cmnd=`); relays from 1.
    Tasmota,
}

/// What a [`SmartPlug`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlugSpec {
    pub kind: PlugKind,
    /// TCP port (default 80).
    pub port: u16,
    /// Tasmota's web user (default `admin`; Shelly's is always `admin`).
    pub user: Option<String>,
    pub password: Option<String>,
    /// Switch ids (Shelly) or relay numbers (Tasmota) and their state.
    pub switches: Vec<(u32, bool)>,
    /// Switches that accept commands and never change.
    pub stuck: Vec<u32>,
    pub lag: Duration,
}

impl PlugSpec {
    pub fn new(kind: PlugKind) -> Self {
        PlugSpec {
            kind,
            port: 80,
            user: None,
            password: None,
            switches: Vec::new(),
            stuck: Vec::new(),
            lag: Duration::ZERO,
        }
    }

    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.to_owned());
        self
    }

    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }

    pub fn switch(mut self, id: u32, on: bool) -> Self {
        self.switches.push((id, on));
        self
    }

    pub fn stuck_switch(mut self, id: u32, on: bool) -> Self {
        self.switches.push((id, on));
        self.stuck.push(id);
        self
    }

    pub fn lag(mut self, lag: Duration) -> Self {
        self.lag = lag;
        self
    }
}

/// One request a [`SmartPlug`] served.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PlugRequest {
    /// `GET`, `POST`.
    pub method: String,
    /// Path and query as sent (`/rpc`, `/cm?cmnd=Power%20On`).
    pub path: String,
    /// Whether it carried valid credentials (`false` for a plug without a password; `None` when unparsed).
    pub authorized: Option<bool>,
    /// The HTTP status of the answer.
    pub status: u16,
    /// Shelly: the RPC method.
    pub rpc: Option<String>,
    /// Shelly: the RPC parameters.
    pub params: Option<Value>,
    /// Tasmota: the command, decoded.
    pub cmnd: Option<String>,
    /// Tasmota: the `user` query parameter.
    pub user: Option<String>,
    /// Unix time, seconds.
    pub at: f64,
}

/// A running smart plug in a lab host; stopped when dropped.
pub struct SmartPlug {
    process: Responder,
    host: HostInfo,
    port: u16,
}

impl SmartPlug {
    /// Starts `smartplug.py` in `host` (on its address) and waits until it listens.
    pub fn start(lab: &Lab, host: &HostInfo, spec: &PlugSpec) -> Result<Self> {
        let kind = match spec.kind {
            PlugKind::Shelly => "shelly",
            PlugKind::Tasmota => "tasmota",
        };
        let mut args: Vec<String> = vec![
            "--kind".into(),
            kind.into(),
            "--address".into(),
            host.ip.to_string(),
            "--port".into(),
            spec.port.to_string(),
            "--lag-ms".into(),
            spec.lag.as_millis().to_string(),
        ];
        if let Some(user) = &spec.user {
            args.extend(["--user".into(), user.clone()]);
        }
        if let Some(password) = &spec.password {
            args.extend(["--password".into(), password.clone()]);
        }
        for (id, on) in &spec.switches {
            args.extend([
                "--switch".into(),
                format!("{id}={}", if *on { "on" } else { "off" }),
            ]);
        }
        for id in &spec.stuck {
            args.extend(["--stuck".into(), id.to_string()]);
        }
        let process = Responder::start_fixture(
            lab,
            host,
            "smartplug.py",
            format!("{kind} plug in {}", host.ns),
            &args,
        )?;
        Ok(SmartPlug {
            process,
            host: host.clone(),
            port: spec.port,
        })
    }

    /// `IP:PORT`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host.ip, self.port)
    }

    pub fn host(&self) -> &HostInfo {
        &self.host
    }

    /// What it printed on stderr so far.
    pub fn stderr_text(&self) -> String {
        self.process.stderr_text()
    }

    /// Every request it served so far, in order.
    pub fn requests(&self) -> Result<Vec<PlugRequest>> {
        self.process
            .lines()
            .iter()
            .filter_map(|l| l.strip_prefix("REQ "))
            .map(|json| {
                serde_json::from_str(json).with_context(|| format!("bad request record {json:?}"))
            })
            .collect()
    }

    /// Forgets the requests recorded so far (the next [`SmartPlug::requests`] starts after them).
    pub fn clear_requests(&self) {
        self.process.forget_lines("REQ ");
    }
}
