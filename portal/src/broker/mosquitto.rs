//! Mosquitto as the portal's child process: finding it, starting it once its configuration is written
//! ([`super::config`]), and a supervisor that restarts it whenever it exits.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outpost_cloud_link::backoff::Backoff;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{io_err, BrokerError};
use crate::paths::DataDir;

/// How long to wait for the broker's TLS port to accept after spawning it.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a clean shutdown may take before the broker is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// A broker that ran this long before exiting restarts with the shortest delay again.
const STABLE_AFTER: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------------------
// Finding Mosquitto
// ---------------------------------------------------------------------------------------------------------

const NOT_INSTALLED: &str =
    "Mosquitto is not installed (or not found); install the Debian package mosquitto (version 2.0 or newer)";

/// The `mosquitto` executable: `$PATH` first, then the sbin directories Debian uses (not always on `$PATH`).
pub fn find_mosquitto() -> Result<PathBuf, BrokerError> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(
        [
            "/usr/sbin",
            "/usr/local/sbin",
            "/sbin",
            "/usr/bin",
            "/usr/local/bin",
        ]
        .map(PathBuf::from),
    );
    dirs.into_iter()
        .map(|d| d.join("mosquitto"))
        .find(|p| p.is_file())
        .ok_or_else(|| BrokerError::Setup(NOT_INSTALLED.into()))
}

/// The dynamic-security plugin shipped with Mosquitto 2.
pub fn find_dynsec_plugin() -> Result<PathBuf, BrokerError> {
    const NAME: &str = "mosquitto_dynamic_security.so";
    let mut candidates = Vec::new();
    for base in ["/usr/lib", "/usr/local/lib", "/usr/lib64", "/lib"] {
        candidates.push(PathBuf::from(base).join(NAME));
        candidates.push(PathBuf::from(base).join("mosquitto").join(NAME));
        if let Ok(entries) = std::fs::read_dir(base) {
            for e in entries.flatten() {
                candidates.push(e.path().join(NAME));
                candidates.push(e.path().join("mosquitto").join(NAME));
            }
        }
    }
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        BrokerError::Setup(format!(
            "Mosquitto's dynamic-security plugin ({NAME}) was not found; install the Debian package mosquitto \
             (version 2.0 or newer)"
        ))
    })
}

/// Parses `mosquitto version 2.0.11` from `mosquitto -h`.
pub fn parse_version(help: &str) -> Option<(u32, u32, u32)> {
    let rest = help.split("mosquitto version ").nth(1)?;
    let v = rest.split_whitespace().next()?;
    let mut it = v.split('.').map(|p| p.parse::<u32>().ok());
    Some((
        it.next()??,
        it.next().flatten().unwrap_or(0),
        it.next().flatten().unwrap_or(0),
    ))
}

async fn check_version(bin: &Path) -> Result<(), BrokerError> {
    let out = Command::new(bin)
        .arg("-h")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| spawn_error(bin, e))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match parse_version(&text) {
        Some(v) if v.0 >= 2 => Ok(()),
        Some((a, b, c)) => Err(BrokerError::Setup(format!(
            "Mosquitto {a}.{b}.{c} is too old: the portal needs 2.0 or newer (install the Debian package mosquitto \
             from a current release)"
        ))),
        None => {
            tracing::warn!(binary = %bin.display(), "could not tell Mosquitto's version; going on");
            Ok(())
        }
    }
}

fn spawn_error(bin: &Path, e: std::io::Error) -> BrokerError {
    if e.kind() == std::io::ErrorKind::NotFound {
        BrokerError::Setup(NOT_INSTALLED.into())
    } else {
        BrokerError::Io {
            context: format!("cannot start {}", bin.display()),
            source: e,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------------------

/// Where to connect to reach a listener on `listen` from this host.
pub fn connect_addr(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port())
        }
        _ => listen,
    }
}

fn process_is_live(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name: `pid (comm) S ...`.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// If the pid file names a live Mosquitto started with this data directory's configuration (an earlier
/// portal run that did not stop it), stops that process — and only that one.
async fn stop_stale(data: &DataDir) -> Result<(), BrokerError> {
    let pid_path = data.broker_pid();
    let Ok(text) = std::fs::read_to_string(&pid_path) else {
        return Ok(());
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return Ok(());
    };
    if pid <= 1 || pid as u32 == std::process::id() || !process_is_live(pid) {
        return Ok(());
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return Ok(());
    };
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let conf = data.broker_config().to_string_lossy().into_owned();
    let is_ours = args.first().is_some_and(|a0| {
        Path::new(a0)
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("mosquitto"))
    }) && args.iter().any(|a| a == &conf);
    if !is_ours {
        return Ok(());
    }
    tracing::warn!(
        pid,
        "stopping the Mosquitto left running by an earlier portal run on this data directory"
    );
    let target = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + STOP_TIMEOUT;
    while process_is_live(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if process_is_live(pid) {
        tracing::warn!(pid, "the old Mosquitto ignored SIGTERM; killing it");
        let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while process_is_live(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if process_is_live(pid) {
        return Err(BrokerError::Setup(format!(
            "the Mosquitto from an earlier run (pid {pid}) did not stop; stop it and start the portal again"
        )));
    }
    Ok(())
}

fn check_port_free(listen: SocketAddr) -> Result<(), BrokerError> {
    match std::net::TcpListener::bind(listen) {
        Ok(l) => {
            drop(l);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(BrokerError::Setup(format!(
            "the MQTT listen address {listen} is already in use by another program; stop it or choose another \
             address"
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => Err(BrokerError::Setup(format!(
            "the MQTT listen address {listen} is not an address of this host"
        ))),
        Err(e) => Err(BrokerError::Io {
            context: format!("cannot listen on {listen}"),
            source: e,
        }),
    }
}

/// The last lines Mosquitto wrote to stdout/stderr, for error messages.
type OutputTail = Arc<Mutex<VecDeque<String>>>;

fn forward_output<R>(reader: R, tail: OutputTail)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::warn!(target: "mosquitto", "{line}");
            let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
            if t.len() >= 20 {
                t.pop_front();
            }
            t.push_back(line);
        }
    });
}

/// The lines appended to the broker log since byte `from`, at most the last `max`.
fn log_tail(path: &Path, from: u64, max: usize) -> Vec<String> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let start = (from as usize).min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[start..]);
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[lines.len().saturating_sub(max)..].to_vec()
}

struct Launch<'a> {
    bin: &'a Path,
    data: &'a DataDir,
    listen: SocketAddr,
}

impl Launch<'_> {
    /// Spawns Mosquitto and waits until its TLS port accepts connections.
    async fn spawn_ready(&self) -> Result<Child, BrokerError> {
        check_port_free(self.listen)?;
        let log = self.data.broker_log();
        let log_start = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let mut child = Command::new(self.bin)
            .arg("-c")
            .arg(self.data.broker_config())
            // systemd's notify socket and watchdog are the portal's, not its child's: Mosquitto would
            // announce READY=1 on it by itself.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| spawn_error(self.bin, e))?;
        let tail: OutputTail = Arc::default();
        if let Some(out) = child.stdout.take() {
            forward_output(out, tail.clone());
        }
        if let Some(err) = child.stderr.take() {
            forward_output(err, tail.clone());
        }
        let probe = connect_addr(self.listen);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().map_err(io_err("cannot watch mosquitto"))? {
                // Give the output forwarders a moment to catch the last lines.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Err(BrokerError::Setup(
                    self.explain_exit(status, &tail, log_start),
                ));
            }
            let attempt = tokio::time::timeout(
                Duration::from_millis(250),
                tokio::net::TcpStream::connect(probe),
            )
            .await;
            if let Ok(Ok(stream)) = attempt {
                drop(stream);
                return Ok(child);
            }
            if Instant::now() >= deadline {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(BrokerError::Setup(format!(
                    "Mosquitto did not open {} within {READY_TIMEOUT:?}; see {}",
                    self.listen,
                    log.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn explain_exit(
        &self,
        status: std::process::ExitStatus,
        tail: &OutputTail,
        log_start: u64,
    ) -> String {
        let mut lines: Vec<String> = tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        lines.extend(log_tail(&self.data.broker_log(), log_start, 10));
        let joined = lines.join(" | ");
        let hint = if joined.contains("Address already in use") {
            format!(
                "; the MQTT listen address {} is already in use",
                self.listen
            )
        } else if joined.contains("Permission denied") {
            "; Mosquitto cannot read a file in the data directory (check owner and the `user` line of \
             mosquitto.conf)"
                .to_owned()
        } else {
            String::new()
        };
        format!(
            "Mosquitto exited at start ({status}){hint}: {}",
            if joined.is_empty() {
                "no output".to_owned()
            } else {
                joined
            }
        )
    }
}

/// Stops `child`: SIGTERM, then SIGKILL if it has not exited within [`STOP_TIMEOUT`].
async fn terminate(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
        Ok(_) => {}
        Err(_) => {
            tracing::warn!("Mosquitto did not stop within {STOP_TIMEOUT:?} of SIGTERM; killing it");
            let _ = child.kill().await;
        }
    }
}

/// Asks Mosquitto to write its persistence database now (SIGUSR1) rather than at the next autosave.
pub fn save_now(pid: u32) {
    let target = nix::unistd::Pid::from_raw(pid as i32);
    match nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGUSR1) {
        Ok(()) => tracing::debug!(pid, "asked Mosquitto to save its sessions"),
        Err(e) => tracing::warn!(pid, error = %e, "cannot ask Mosquitto to save its sessions"),
    }
}

/// Keeps the link's persistent session on disk: every time the link has (re)subscribed, Mosquitto saves at
/// once. After a crash the restarted broker then still holds the portal's subscription, and queues what agents
/// publish before the portal is back instead of dropping it. Ends when the link or the supervisor is gone.
pub async fn persist_link_session(
    mut subscriptions: watch::Receiver<u64>,
    pids: watch::Receiver<Option<u32>>,
) {
    loop {
        if let Some(pid) = *pids.borrow() {
            save_now(pid);
        }
        if subscriptions.changed().await.is_err() {
            return;
        }
    }
}

/// Runs Mosquitto and restarts it whenever it exits, until shut down.
pub struct Supervisor {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    pid: watch::Receiver<Option<u32>>,
}

impl Supervisor {
    /// Starts Mosquitto with the configuration [`super::config::prepare`] wrote (stopping a broker an earlier run left
    /// behind), waits until its TLS port accepts, and supervises it.
    pub async fn start(data: &DataDir, listen: SocketAddr) -> Result<Self, BrokerError> {
        let bin = find_mosquitto()?;
        Self::start_with(bin, data, listen).await
    }

    /// [`Supervisor::start`] with an explicit `mosquitto` executable.
    pub async fn start_with(
        bin: PathBuf,
        data: &DataDir,
        listen: SocketAddr,
    ) -> Result<Self, BrokerError> {
        check_version(&bin).await?;
        stop_stale(data).await?;
        let launch = Launch {
            bin: &bin,
            data,
            listen,
        };
        let child = launch.spawn_ready().await?;
        tracing::info!(pid = child.id(), %listen, "Mosquitto is up");
        let (stop_tx, stop_rx) = watch::channel(false);
        let (pid_tx, pid_rx) = watch::channel(child.id());
        let data = data.clone();
        let task = tokio::spawn(supervise(bin, data, listen, child, stop_rx, pid_tx));
        Ok(Self {
            stop: stop_tx,
            task: Some(task),
            pid: pid_rx,
        })
    }

    /// The pid of the Mosquitto running now, if any.
    pub fn pid(&self) -> Option<u32> {
        *self.pid.borrow()
    }

    /// Follows the pid of the Mosquitto running now (`None` while it is down).
    pub fn pid_watch(&self) -> watch::Receiver<Option<u32>> {
        self.pid.clone()
    }

    /// Stops the broker (SIGTERM, then waits) and the supervision.
    pub async fn shutdown(mut self) -> Result<(), BrokerError> {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.await
                .map_err(|e| BrokerError::Setup(format!("the broker supervisor failed: {e}")))?;
        }
        Ok(())
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // The task sees the stop and terminates the broker; if the runtime is going away instead, the child
        // is killed on drop.
        let _ = self.stop.send(true);
    }
}

async fn supervise(
    bin: PathBuf,
    data: DataDir,
    listen: SocketAddr,
    child: Child,
    mut stop: watch::Receiver<bool>,
    pid: watch::Sender<Option<u32>>,
) {
    let launch = Launch {
        bin: &bin,
        data: &data,
        listen,
    };
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    let mut child = Some(child);
    let mut started = Instant::now();
    loop {
        let Some(running) = child.as_mut() else {
            // Not running: wait the backoff, then try to start it again.
            let delay = backoff.next_delay();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
            match launch.spawn_ready().await {
                Ok(c) => {
                    tracing::warn!(pid = c.id(), "Mosquitto restarted");
                    let _ = pid.send(c.id());
                    started = Instant::now();
                    child = Some(c);
                }
                Err(e) => tracing::error!(error = %e, "restarting Mosquitto failed; trying again"),
            }
            continue;
        };
        tokio::select! {
            status = running.wait() => {
                let _ = pid.send(None);
                child = None;
                if started.elapsed() >= STABLE_AFTER {
                    backoff.reset();
                }
                match status {
                    Ok(s) => tracing::error!(status = %s, log = %data.broker_log().display(), "Mosquitto exited; restarting it"),
                    Err(e) => tracing::error!(error = %e, "lost track of Mosquitto; restarting it"),
                }
            }
            _ = stop.changed() => break,
        }
    }
    if let Some(mut c) = child {
        terminate(&mut c).await;
        tracing::info!("Mosquitto stopped");
    }
    let _ = pid.send(None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parsing() {
        assert_eq!(
            parse_version("mosquitto version 2.0.11\n\nmosquitto is"),
            Some((2, 0, 11))
        );
        assert_eq!(parse_version("mosquitto version 1.6.9"), Some((1, 6, 9)));
        assert_eq!(parse_version("something else"), None);
    }

    #[tokio::test]
    async fn a_missing_binary_says_what_to_install() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let err = Supervisor::start_with(
            dir.path().join("no-mosquitto"),
            &data,
            "127.0.0.1:1".parse().unwrap(),
        )
        .await
        .err()
        .unwrap();
        assert!(
            err.to_string()
                .contains("install the Debian package mosquitto"),
            "{err}"
        );
    }

    #[test]
    fn unspecified_listen_addresses_are_reached_on_loopback() {
        assert_eq!(
            connect_addr("0.0.0.0:8883".parse().unwrap()),
            "127.0.0.1:8883".parse().unwrap()
        );
        assert_eq!(
            connect_addr("[::]:8883".parse().unwrap()),
            "[::1]:8883".parse().unwrap()
        );
        assert_eq!(
            connect_addr("192.0.2.1:8883".parse().unwrap()),
            "192.0.2.1:8883".parse().unwrap()
        );
    }
}
