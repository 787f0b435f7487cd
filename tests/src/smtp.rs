//! A real SMTP server for tests: Debian's `python3-aiosmtpd` on a free loopback port, storing every mail it
//! accepts in a Maildir, and a reader for those mails (MIME decoded by `mail-parser`).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let smtp = outpost_tests::smtp::SmtpCapture::start()?;
//! // ... point the code under test at 127.0.0.1:smtp.port(), security "none" ...
//! let mail = smtp
//!     .wait_for("bob@example.com", "Reset", std::time::Duration::from_secs(10))
//!     .await?;
//! let link = &mail.links()[0];
//! # let _ = link; Ok(()) }
//! ```

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

/// Debian's interpreter, which has the `aiosmtpd` package (a `python3` found on `PATH` may not).
const PYTHON: &str = "/usr/bin/python3";
const PACKAGE_HINT: &str = "install Debian's python3-aiosmtpd (`scripts/setup-debian --test`)";
/// How long the server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running aiosmtpd that keeps every mail; stopped when dropped.
pub struct SmtpCapture {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
}

/// One mail the server accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The addresses of the `To` header.
    pub to: Vec<String>,
    /// The envelope recipients (`RCPT TO`), as the server recorded them.
    pub envelope_to: Vec<String>,
    /// The address of the `From` header.
    pub from: Option<String>,
    /// The `Subject`, RFC 2047 words decoded.
    pub subject: String,
    /// The first text body, transfer encoding and charset decoded.
    pub text: String,
    /// The headers as they arrived, unfolded and undecoded (for checks such as `Content-Type`).
    pub headers: Vec<(String, String)>,
    /// The Maildir file it was read from.
    pub path: PathBuf,
}

impl SmtpCapture {
    /// Starts `aiosmtpd` on a free port of 127.0.0.1 and waits until it greets.
    pub fn start() -> Result<SmtpCapture> {
        let dir = tempfile::Builder::new()
            .prefix("outpost-smtp-")
            .tempdir()
            .context("creating the SMTP capture's directory")?;
        let mut last_error = None;
        // A free port can be taken by someone else between finding and binding it: try a few.
        for _ in 0..3 {
            let port = crate::free_port()?;
            match Self::spawn(dir.path(), port) {
                Ok(child) => {
                    return Ok(SmtpCapture {
                        child: Some(child),
                        port,
                        dir,
                    })
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("aiosmtpd did not start")))
    }

    fn spawn(dir: &Path, port: u16) -> Result<Child> {
        let log_path = dir.join("aiosmtpd.log");
        let log = fs::File::create(&log_path).context("creating aiosmtpd.log")?;
        let mut child = Command::new(PYTHON)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.join("maildir"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {PYTHON} -m aiosmtpd: {PACKAGE_HINT}"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                bail!(
                    "aiosmtpd exited at start ({status}); is python3-aiosmtpd installed? {PACKAGE_HINT}\n{}",
                    log.trim()
                );
            }
            if greets(addr) {
                return Ok(child);
            }
            if Instant::now() > deadline {
                crate::stop_child(&mut child, Duration::from_secs(2));
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                bail!(
                    "aiosmtpd did not answer on {addr} within {START_TIMEOUT:?} ({PACKAGE_HINT})\n{}",
                    log.trim()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The port it listens on, at 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The Maildir the mails are stored in.
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("maildir")
    }

    /// Every mail received so far, oldest first.
    pub fn messages(&self) -> Result<Vec<Mail>> {
        let mut files: Vec<(SystemTime, PathBuf)> = Vec::new();
        for sub in ["new", "cur"] {
            let dir = self.maildir().join(sub);
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
            };
            for entry in entries {
                let entry = entry?;
                let modified = entry.metadata()?.modified()?;
                files.push((modified, entry.path()));
            }
        }
        files.sort();
        files
            .into_iter()
            .map(|(_, path)| Mail::read(&path))
            .collect()
    }

    /// Waits for a mail to `to` (a `To` or envelope recipient, any case) whose subject contains
    /// `subject_contains`.
    pub async fn wait_for(
        &self,
        to: &str,
        subject_contains: &str,
        timeout: Duration,
    ) -> Result<Mail> {
        let what = format!("a mail to {to} with {subject_contains:?} in its subject");
        let found = crate::wait_for(&what, timeout, || async {
            Ok(self
                .messages()?
                .into_iter()
                .find(|m| m.is_to(to) && m.subject.contains(subject_contains)))
        })
        .await;
        found.map_err(|e| {
            let seen: Vec<String> = self
                .messages()
                .unwrap_or_default()
                .iter()
                .map(|m| format!("  to {:?}: {:?}", m.to, m.subject))
                .collect();
            e.context(format!("mails received:\n{}", seen.join("\n")))
        })
    }
}

impl Drop for SmtpCapture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::stop_child(&mut child, Duration::from_secs(2));
        }
    }
}

/// Whether an SMTP server at `addr` sends its `220` greeting.
fn greets(addr: SocketAddr) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    if stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .is_err()
    {
        return false;
    }
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("220")
}

impl Mail {
    /// Parses one Maildir file.
    pub fn read(path: &Path) -> Result<Mail> {
        let raw = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&raw, path)
    }

    fn parse(raw: &[u8], path: &Path) -> Result<Mail> {
        let message = mail_parser::MessageParser::default()
            .parse(raw)
            .with_context(|| format!("{} is not a mail", path.display()))?;
        let addresses = |a: Option<&mail_parser::Address>| -> Vec<String> {
            a.map(|a| {
                a.iter()
                    .filter_map(|addr| addr.address().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
        };
        let envelope_to = message
            .header_raw("X-RcptTo")
            .map(|v| {
                v.split(',')
                    .map(|a| a.trim().to_owned())
                    .filter(|a| !a.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let headers = message
            .headers_raw()
            .map(|(name, value)| (name.to_owned(), unfold(value)))
            .collect();
        Ok(Mail {
            to: addresses(message.to()),
            envelope_to,
            from: addresses(message.from()).into_iter().next(),
            subject: message.subject().unwrap_or_default().to_owned(),
            text: message
                .body_text(0)
                .map(|t| t.into_owned())
                .unwrap_or_default(),
            headers,
            path: path.to_owned(),
        })
    }

    /// Whether `address` is among the `To` or envelope recipients (any case).
    pub fn is_to(&self, address: &str) -> bool {
        self.to
            .iter()
            .chain(&self.envelope_to)
            .any(|a| a.eq_ignore_ascii_case(address))
    }

    /// The first raw value of header `name` (any case), unfolded.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every `http://` or `https://` URL in the body, in order.
    pub fn links(&self) -> Vec<String> {
        find_links(&self.text)
    }
}

/// A header value on one line, trimmed.
fn unfold(value: &str) -> String {
    value
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// URLs in `text`: from `http://` or `https://` to the next space, quote or angle bracket, without trailing
/// sentence punctuation.
fn find_links(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut rest = text;
    while let Some(start) = ["https://", "http://"]
        .iter()
        .filter_map(|scheme| rest.find(scheme))
        .min()
    {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\''))
            .unwrap_or(tail.len());
        let link = tail[..end].trim_end_matches(['.', ',', ';', ':', ')', '!', '?']);
        if link.len() > "https://".len() {
            links.push(link.to_owned());
        }
        rest = &tail[end..];
    }
    links
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_links() {
        let text =
            "Open\nhttps://a.example/x?t=1_2-3\nor (http://b.example/y). Not ftp://c.example \
                    <https://d.example/z> \"https://e.example\"";
        assert_eq!(
            find_links(text),
            vec![
                "https://a.example/x?t=1_2-3",
                "http://b.example/y",
                "https://d.example/z",
                "https://e.example",
            ]
        );
        assert!(find_links("no links, only https:// alone").is_empty());
    }

    #[test]
    fn parses_encoded_mail() {
        let raw = b"From: Outpost <portal@example.com>\r\n\
            To: bob@example.com\r\n\
            Subject: =?utf-8?q?Caf=C3=A9_=C3=9Cn=C3=AFcode?=\r\n\
            X-RcptTo: bob@example.com\r\n\
            Content-Type: text/plain; charset=utf-8\r\n\
            Content-Transfer-Encoding: quoted-printable\r\n\
            \r\n\
            Caf=C3=A9\r\n\
            https://portal.example.com/a-very-long-token-that-quoted-printable-splits-=\r\n\
            over-two-lines\r\n";
        let mail = Mail::parse(raw, Path::new("test")).unwrap();
        assert_eq!(mail.subject, "Café Ünïcode");
        assert_eq!(mail.to, vec!["bob@example.com"]);
        assert_eq!(mail.envelope_to, vec!["bob@example.com"]);
        assert_eq!(mail.from.as_deref(), Some("portal@example.com"));
        assert!(mail.is_to("BOB@example.com"));
        assert!(mail.text.starts_with("Café\n") || mail.text.starts_with("Café\r\n"));
        assert_eq!(
            mail.links(),
            vec!["https://portal.example.com/a-very-long-token-that-quoted-printable-splits-over-two-lines"]
        );
        assert_eq!(
            mail.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
    }
}
