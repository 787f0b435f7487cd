//! Reverse DNS: the PTR name the LAN's resolver gives each device address, looked up many at a time.
//!
//! The resolver is the system's (`/etc/resolv.conf`, [`ReverseDns::system`]), another resolv.conf
//! ([`ReverseDns::from_resolv_conf`]), or one server given by address ([`ReverseDns::with_server`], for
//! configurations and tests). Lookups run with bounded concurrency ([`DEFAULT_CONCURRENCY`]) and a timeout
//! each ([`DEFAULT_TIMEOUT`]); an address without a name (NXDOMAIN, no PTR record, a timeout, a server
//! error) simply gets none. Names are normalized by [`normalize`]: lower case, no trailing dot, at most
//! [`MAX_NAME_LEN`] bytes.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, warn};

/// Where the system's resolver configuration lives.
pub const SYSTEM_RESOLV_CONF: &str = "/etc/resolv.conf";
/// Lookups in flight at once.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// How long one address may take, retries included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest name kept (a DNS name has at most 253 characters in text form).
pub const MAX_NAME_LEN: usize = 253;

/// Timeout of one query to one server (the resolver retries once within [`ReverseDns::timeout`]).
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// A resolver configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RdnsError {
    #[error("reverse DNS: cannot read the resolver configuration {}: {source} (fix the file, or configure the DNS server's address explicitly)", path.display())]
    ReadConfig { path: PathBuf, source: io::Error },
    #[error("reverse DNS: the resolver configuration {} is not usable: {reason} (it needs at least one `nameserver` line)", path.display())]
    BadConfig { path: PathBuf, reason: String },
}

/// Looks up PTR names through one resolver configuration. Cheap to clone.
#[derive(Clone)]
pub struct ReverseDns {
    resolver: TokioResolver,
    concurrency: usize,
    timeout: Duration,
    /// Where the configuration came from, for logs.
    source: Arc<str>,
}

impl std::fmt::Debug for ReverseDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReverseDns")
            .field("source", &self.source)
            .field("concurrency", &self.concurrency)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ReverseDns {
    /// The system's resolvers, from [`SYSTEM_RESOLV_CONF`] (the hosts file is consulted too, as the system
    /// resolver would).
    pub fn system() -> Result<Self, RdnsError> {
        Self::from_resolv_conf(Path::new(SYSTEM_RESOLV_CONF))
    }

    /// The resolvers a resolv.conf file names.
    pub fn from_resolv_conf(path: &Path) -> Result<Self, RdnsError> {
        let data = std::fs::read(path).map_err(|source| RdnsError::ReadConfig {
            path: path.to_owned(),
            source,
        })?;
        let (config, mut opts) =
            hickory_resolver::system_conf::parse_resolv_conf(&data).map_err(|e| {
                RdnsError::BadConfig {
                    path: path.to_owned(),
                    reason: e.to_string(),
                }
            })?;
        opts.timeout = opts
            .timeout
            .clamp(Duration::from_millis(100), QUERY_TIMEOUT);
        opts.attempts = opts.attempts.clamp(1, 2);
        Ok(Self::build(config, opts, path.display().to_string()))
    }

    /// One DNS server at `addr` (UDP, TCP for truncated answers); the hosts file is not consulted.
    pub fn with_server(addr: SocketAddr) -> Self {
        let servers = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
        let config = ResolverConfig::from_parts(None, Vec::new(), servers);
        let mut opts = ResolverOpts::default();
        opts.timeout = QUERY_TIMEOUT;
        opts.attempts = 2;
        opts.use_hosts_file = ResolveHosts::Never;
        Self::build(config, opts, addr.to_string())
    }

    fn build(config: ResolverConfig, opts: ResolverOpts, source: String) -> Self {
        let mut builder =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
        *builder.options_mut() = opts;
        Self {
            resolver: builder.build(),
            concurrency: DEFAULT_CONCURRENCY,
            timeout: DEFAULT_TIMEOUT,
            source: source.into(),
        }
    }

    /// At most `n` lookups in flight (at least 1).
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// How long one address may take before it counts as nameless.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The normalized PTR name of `ip` (the first one when there are several); `None` when it has none or
    /// the lookup failed or timed out.
    pub async fn lookup(&self, ip: Ipv4Addr) -> Option<String> {
        let answer =
            tokio::time::timeout(self.timeout, self.resolver.reverse_lookup(IpAddr::V4(ip))).await;
        match answer {
            Ok(Ok(lookup)) => {
                let name = lookup.iter().find_map(|ptr| normalize(&ptr.0.to_utf8()));
                debug!(%ip, ?name, resolver = %self.source, "PTR");
                name
            }
            Ok(Err(e)) if e.is_nx_domain() || e.is_no_records_found() => {
                debug!(%ip, resolver = %self.source, "no PTR name");
                None
            }
            Ok(Err(e)) => {
                debug!(%ip, resolver = %self.source, error = %e, "PTR lookup failed");
                None
            }
            Err(_) => {
                debug!(%ip, resolver = %self.source, timeout = ?self.timeout, "PTR lookup timed out");
                None
            }
        }
    }

    /// The names of the addresses that have one, in the order of `ips` (each address once).
    pub async fn lookup_many(&self, ips: &[Ipv4Addr]) -> Vec<(Ipv4Addr, String)> {
        let mut seen = HashSet::new();
        let unique: Vec<Ipv4Addr> = ips.iter().copied().filter(|ip| seen.insert(*ip)).collect();
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let mut tasks = JoinSet::new();
        for (i, ip) in unique.iter().copied().enumerate() {
            let this = self.clone();
            let permits = Arc::clone(&permits);
            tasks.spawn(async move {
                let Ok(_permit) = permits.acquire_owned().await else {
                    return (i, ip, None);
                };
                (i, ip, this.lookup(ip).await)
            });
        }
        let mut named = Vec::new();
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok((i, ip, Some(name))) => named.push((i, ip, name)),
                Ok((_, _, None)) => {}
                Err(e) => warn!(error = %e, "a PTR lookup task failed"),
            }
        }
        named.sort_unstable_by_key(|(i, _, _)| *i);
        debug!(
            resolver = %self.source,
            asked = unique.len(),
            named = named.len(),
            "reverse DNS done"
        );
        named.into_iter().map(|(_, ip, name)| (ip, name)).collect()
    }
}

/// A PTR name as reported: lower case, without the trailing dot; `None` for the root, names longer than
/// [`MAX_NAME_LEN`] and names with control characters.
pub fn normalize(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name).to_lowercase();
    let bad = name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(|c| c.is_control());
    (!bad).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized() {
        assert_eq!(
            normalize("Printer-Lobby.Office.LAN."),
            Some("printer-lobby.office.lan".into())
        );
        assert_eq!(normalize("nas"), Some("nas".into()));
        assert_eq!(normalize("."), None);
        assert_eq!(normalize(""), None);
        assert_eq!(normalize("bad\u{7}name."), None);
        let long = format!("{}.lan.", "a".repeat(MAX_NAME_LEN));
        assert_eq!(normalize(&long), None);
        let just = format!("{}.", "a".repeat(MAX_NAME_LEN));
        assert_eq!(normalize(&just).map(|n| n.len()), Some(MAX_NAME_LEN));
    }

    #[test]
    fn a_missing_resolv_conf_is_a_read_error_that_names_it() {
        let err = ReverseDns::from_resolv_conf(Path::new("/nonexistent/outpost/resolv.conf"))
            .unwrap_err();
        assert!(matches!(err, RdnsError::ReadConfig { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("cannot read the resolver configuration /nonexistent/outpost/resolv.conf"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn a_resolv_conf_without_nameservers_is_refused_and_a_good_one_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.conf");
        std::fs::write(&empty, "# nothing here\nsearch lan\n").unwrap();
        let err = ReverseDns::from_resolv_conf(&empty).unwrap_err();
        assert!(matches!(err, RdnsError::BadConfig { .. }), "{err:?}");
        assert!(err.to_string().contains("nameserver"), "{err}");

        let good = dir.path().join("resolv.conf");
        std::fs::write(
            &good,
            "nameserver 127.0.0.1\noptions timeout:9 attempts:5\n",
        )
        .unwrap();
        let rdns = ReverseDns::from_resolv_conf(&good).unwrap();
        let servers: Vec<SocketAddr> = rdns
            .resolver
            .config()
            .name_servers()
            .iter()
            .map(|s| s.socket_addr)
            .collect();
        assert!(
            servers.contains(&"127.0.0.1:53".parse().unwrap()),
            "{servers:?}"
        );
        assert_eq!(rdns.resolver.options().timeout, QUERY_TIMEOUT);
        assert_eq!(rdns.resolver.options().attempts, 2);
    }

    #[tokio::test]
    async fn an_unanswering_server_gives_no_names_within_the_timeout() {
        // A bound UDP socket that never answers: every lookup times out.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let rdns = ReverseDns::with_server(silent.local_addr().unwrap())
            .with_timeout(Duration::from_millis(300))
            .with_concurrency(2);
        let started = std::time::Instant::now();
        let ips: Vec<Ipv4Addr> = (1..=6).map(|i| Ipv4Addr::new(192, 0, 2, i)).collect();
        assert!(rdns.lookup_many(&ips).await.is_empty());
        // Three waves of two lookups, 300 ms each.
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(850) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }
}
