//! Which address each broker client connects from, learned by following Mosquitto's log file
//! (`connection_messages true`, log type `notice`).
//!
//! Mosquitto 2.0.11 writes, and flushes, one line per accepted connection before it sends the CONNACK:
//! `2026-04-01T10:00:00: New client connected from 203.0.113.7:51674 as ag-x (p2, c0, k30, u'ag-x').`
//! (IPv6 addresses without brackets: `from ::1:51674`), and one line when a client goes:
//! `Client ag-x closed its connection.`, `Client ag-x disconnected.`, `Socket error on client ag-x,
//! disconnecting.`, `Client ag-x has exceeded timeout, disconnecting.`, `Client ag-x already connected,
//! closing old connection.` (a takeover, followed by the new connection's line).
//!
//! [`ConnectionLog`] reads the bytes appended since it last looked (a follower task every second, and at
//! once when asked), keeps each client's last address and whether it is connected, and answers
//! [`ConnectionLog::address`] for a client that is connected now, waiting briefly for its line. The parser
//! ([`parse_line`]) is pure.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// How often the follower task reads what was appended.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// How often [`ConnectionLog::address`] looks again while it waits for a client's line.
const WAIT_STEP: Duration = Duration::from_millis(50);
/// Most bytes read at once (a huge backlog is read in several steps).
const READ_CHUNK: u64 = 1 << 20;
/// A partial line longer than this is not a Mosquitto line: dropped.
const MAX_LINE: usize = 64 * 1024;

/// What one log line says about a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent {
    /// The client connected (authenticated) from this address.
    Connected { client: String, addr: SocketAddr },
    /// The client's connection ended.
    Disconnected { client: String },
}

/// Reads one Mosquitto log line (with or without its timestamp prefix); `None` when it says nothing about
/// a client connecting or going.
pub fn parse_line(line: &str) -> Option<LogEvent> {
    const CONNECTED: &str = "New client connected from ";
    let line = line.trim_end();
    if let Some(at) = line.find(CONNECTED) {
        let rest = &line[at + CONNECTED.len()..];
        let (addr, rest) = rest.split_once(" as ")?;
        let (host, port) = addr.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = host.parse().ok()?;
        let port: u16 = port.parse().ok()?;
        let client = rest.split(' ').next()?.trim_end_matches('.');
        if client.is_empty() {
            return None;
        }
        return Some(LogEvent::Connected {
            client: client.to_owned(),
            addr: SocketAddr::new(ip.to_canonical(), port),
        });
    }
    let message = line.split_once(": ").map_or(line, |(_, m)| m);
    let gone = |client: &str| {
        (!client.is_empty()).then(|| LogEvent::Disconnected {
            client: client.to_owned(),
        })
    };
    if let Some(rest) = message.strip_prefix("Socket error on client ") {
        return gone(rest.split(", ").next()?);
    }
    let rest = message.strip_prefix("Client ")?;
    let (client, what) = rest.split_once(' ')?;
    let ended = what.starts_with("closed its connection")
        || what.starts_with("disconnected")
        || what.starts_with("has exceeded timeout")
        || what.starts_with("already connected, closing old connection");
    if ended {
        gone(client.trim_end_matches(','))
    } else {
        None
    }
}

/// What is known about one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    ip: IpAddr,
    connected: bool,
}

#[derive(Debug, Default)]
struct Follow {
    /// The next byte of the file to read.
    offset: u64,
    /// The start of a line whose end has not been written yet.
    partial: Vec<u8>,
    clients: HashMap<String, Seen>,
}

impl Follow {
    fn apply(&mut self, event: LogEvent) {
        match event {
            LogEvent::Connected { client, addr } => {
                self.clients.insert(
                    client,
                    Seen {
                        ip: addr.ip(),
                        connected: true,
                    },
                );
            }
            LogEvent::Disconnected { client } => {
                if let Some(seen) = self.clients.get_mut(&client) {
                    seen.connected = false;
                }
            }
        }
    }

    /// Feeds bytes appended to the file.
    fn feed(&mut self, bytes: &[u8]) {
        let mut start = 0;
        for (i, b) in bytes.iter().enumerate() {
            if *b != b'\n' {
                continue;
            }
            let line = if self.partial.is_empty() {
                String::from_utf8_lossy(&bytes[start..i]).into_owned()
            } else {
                self.partial.extend_from_slice(&bytes[start..i]);
                let line = String::from_utf8_lossy(&self.partial).into_owned();
                self.partial.clear();
                line
            };
            if let Some(event) = parse_line(&line) {
                self.apply(event);
            }
            start = i + 1;
        }
        self.partial.extend_from_slice(&bytes[start..]);
        if self.partial.len() > MAX_LINE {
            self.partial.clear();
        }
    }
}

/// Follows Mosquitto's log file; cheap to clone.
#[derive(Debug, Clone)]
pub struct ConnectionLog {
    path: PathBuf,
    follow: Arc<Mutex<Follow>>,
}

impl ConnectionLog {
    /// Follows `path` from byte `from` on (what was there before is about connections of an earlier
    /// broker run).
    pub fn new(path: impl Into<PathBuf>, from: u64) -> Self {
        Self {
            path: path.into(),
            follow: Arc::new(Mutex::new(Follow {
                offset: from,
                ..Follow::default()
            })),
        }
    }

    /// The size of `path` now (0 when it does not exist): where a follower of a broker about to start
    /// begins.
    pub fn end_of(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Follow> {
        self.follow.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads what was appended since the last look. A file shorter than what was read (replaced or
    /// truncated) is read again from its start.
    pub fn catch_up(&self) -> std::io::Result<()> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        let mut follow = self.lock();
        if len < follow.offset {
            follow.offset = 0;
            follow.partial.clear();
        }
        while follow.offset < len {
            let want = (len - follow.offset).min(READ_CHUNK);
            file.seek(SeekFrom::Start(follow.offset))?;
            let mut buf = Vec::with_capacity(want as usize);
            let got = (&mut file).take(want).read_to_end(&mut buf)?;
            if got == 0 {
                break;
            }
            follow.offset += got as u64;
            follow.feed(&buf);
        }
        Ok(())
    }

    /// The address `client` is connected from now, as far as the log has said so far (no reading).
    fn connected_address(&self, client: &str) -> Option<IpAddr> {
        self.lock()
            .clients
            .get(client)
            .filter(|s| s.connected)
            .map(|s| s.ip)
    }

    /// The address `client` is connected from, reading the log at once and, if its connection is not in
    /// the log yet, again for at most `wait`. `None` when the log does not show it connected by then.
    pub async fn address(&self, client: &str, wait: Duration) -> Option<IpAddr> {
        let deadline = Instant::now() + wait;
        loop {
            let log = self.clone();
            match tokio::task::spawn_blocking(move || log.catch_up()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(log = %self.path.display(), error = %e, "cannot read the broker log for client addresses");
                }
                Err(e) => tracing::warn!(error = %e, "reading the broker log failed"),
            }
            if let Some(ip) = self.connected_address(client) {
                return Some(ip);
            }
            if Instant::now() >= deadline {
                tracing::debug!(client, "the broker log does not show this client connected");
                return None;
            }
            tokio::time::sleep(WAIT_STEP).await;
        }
    }

    /// Reads the log every second until aborted, so the backlog never grows large.
    pub async fn follow(self) {
        let mut warned = false;
        loop {
            let log = self.clone();
            match tokio::task::spawn_blocking(move || log.catch_up()).await {
                Ok(Ok(())) => warned = false,
                Ok(Err(e)) if !warned => {
                    warned = true;
                    tracing::warn!(log = %self.path.display(), error = %e, "cannot read the broker log for client addresses");
                }
                _ => {}
            }
            tokio::time::sleep(FOLLOW_EVERY).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn connected(client: &str, addr: &str) -> Option<LogEvent> {
        Some(LogEvent::Connected {
            client: client.into(),
            addr: addr.parse().unwrap(),
        })
    }

    fn gone(client: &str) -> Option<LogEvent> {
        Some(LogEvent::Disconnected {
            client: client.into(),
        })
    }

    #[test]
    fn parses_what_mosquitto_2_0_11_writes() {
        // Lines as the real broker wrote them (see the module documentation).
        assert_eq!(
            parse_line("2026-12-02T16:04:40: New client connected from 127.0.0.1:52434 as ag-test4 (p2, c1, k60)."),
            connected("ag-test4", "127.0.0.1:52434")
        );
        assert_eq!(
            parse_line("2026-12-02T16:04:40: New client connected from 203.0.113.7:40000 as ag-abc (p2, c0, k30, u'ag-abc').\n"),
            connected("ag-abc", "203.0.113.7:40000")
        );
        assert_eq!(
            parse_line("2026-12-02T16:04:40: New client connected from ::1:51674 as ag-test6 (p2, c1, k60)."),
            connected("ag-test6", "[::1]:51674")
        );
        assert_eq!(
            parse_line("New client connected from 2001:db8::7:8883 as ag-v6 (p2, c0, k30)."),
            connected("ag-v6", "[2001:db8::7]:8883")
        );
        assert_eq!(
            parse_line("t: New client connected from [2001:db8::9]:1234 as ag-b (p2, c0, k30)."),
            connected("ag-b", "[2001:db8::9]:1234")
        );
        // A dual-stack listener shows IPv4 clients as mapped addresses: the IPv4 address is what counts.
        assert_eq!(
            parse_line(
                "t: New client connected from ::ffff:198.51.100.4:5000 as ag-m (p2, c0, k30)."
            ),
            connected("ag-m", "198.51.100.4:5000")
        );
        assert_eq!(
            parse_line("2026-12-02T16:04:40: Client ag-test6 closed its connection."),
            gone("ag-test6")
        );
        assert_eq!(
            parse_line(
                "2026-12-02T16:04:40: Client ag-test4 already connected, closing old connection."
            ),
            gone("ag-test4")
        );
        assert_eq!(parse_line("t: Client ag-1 disconnected."), gone("ag-1"));
        assert_eq!(
            parse_line("t: Client ag-1 disconnected, not authorised."),
            gone("ag-1")
        );
        assert_eq!(
            parse_line("t: Client ag-1 has exceeded timeout, disconnecting."),
            gone("ag-1")
        );
        assert_eq!(
            parse_line("t: Socket error on client ag-1, disconnecting."),
            gone("ag-1")
        );
    }

    #[test]
    fn other_lines_say_nothing() {
        for line in [
            "2026-12-02T16:04:40: New connection from 127.0.0.1:52442 on port 18932.",
            "2026-12-02T16:04:39: mosquitto version 2.0.11 running",
            "2026-12-02T16:04:39: Opening ipv6 listen socket on port 18931.",
            "t: New client connected from nowhere as ag-1 (p2).",
            "t: New client connected from 1.2.3.4:notaport as ag-1 (p2).",
            "t: Client ag-1 subscribed.",
            "",
        ] {
            assert_eq!(parse_line(line), None, "{line}");
        }
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        let mut f = Follow::default();
        f.feed(b"t: New client connected from 203.0.");
        assert!(f.clients.is_empty());
        f.feed(b"113.7:1 as ag-1 (p2, c0, k30).\nt: Client ag-2 closed");
        assert_eq!(
            f.clients.get("ag-1").map(|s| (s.ip, s.connected)),
            Some(("203.0.113.7".parse().unwrap(), true))
        );
        f.feed(b" its connection.\nt: Client ag-1 closed its connection.\n");
        assert!(!f.clients["ag-1"].connected);
        assert!(f.partial.is_empty());
    }

    #[tokio::test]
    async fn answers_for_connected_clients_and_waits_briefly_for_a_new_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mosquitto.log");
        std::fs::write(
            &path,
            "t: New client connected from 198.51.100.1:1 as ag-old (p2).\n",
        )
        .unwrap();
        // Lines from before the follower started are about an earlier broker run.
        let log = ConnectionLog::new(&path, ConnectionLog::end_of(&path));
        assert_eq!(log.address("ag-old", Duration::ZERO).await, None);

        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        writeln!(
            file,
            "t: New client connected from 203.0.113.7:40000 as ag-1 (p2)."
        )
        .unwrap();
        assert_eq!(
            log.address("ag-1", Duration::ZERO).await,
            Some("203.0.113.7".parse().unwrap())
        );
        // Gone: nothing until it connects again (from elsewhere).
        writeln!(file, "t: Client ag-1 closed its connection.").unwrap();
        assert_eq!(log.address("ag-1", Duration::from_millis(100)).await, None);
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            writeln!(
                file,
                "t: New client connected from 203.0.113.8:40001 as ag-1 (p2)."
            )
            .unwrap();
        });
        let started = std::time::Instant::now();
        assert_eq!(
            log.address("ag-1", Duration::from_secs(2)).await,
            Some("203.0.113.8".parse().unwrap())
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        writer.await.unwrap();

        // A truncated (or replaced) file is read from its start again.
        std::fs::write(
            &path,
            "t: New client connected from 192.0.2.5:2 as ag-2 (p2).\n",
        )
        .unwrap();
        assert_eq!(
            log.address("ag-2", Duration::ZERO).await,
            Some("192.0.2.5".parse().unwrap())
        );
    }
}
