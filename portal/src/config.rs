//! The portal's TOML configuration file (`outpost-portal up --config FILE`): the public URL that links in
//! emails start with (`[web]`) and the SMTP server that sends them (`[smtp]`), checked on load.
//!
//! `portal.example.toml` beside the crate documents every key and its default. Unknown keys are refused,
//! so a misspelt key is an error instead of a silently ignored setting. The SMTP password is never in this
//! file: `[smtp] password_file` names a file holding it (a relative path is read from the configuration
//! file's directory).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::Mailbox;
use serde::Deserialize;

/// `[smtp] timeout_secs` when the file does not say.
pub const DEFAULT_SMTP_TIMEOUT_SECS: u64 = 10;
/// The longest accepted `[smtp] timeout_secs`: a page waiting on a mail should not hang longer.
pub const MAX_SMTP_TIMEOUT_SECS: u64 = 300;

/// The whole configuration. `PortalConfig::default()` sends no mail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortalConfig {
    pub web: WebSettings,
    /// `None`: no `[smtp]` table, the portal sends no mail.
    pub smtp: Option<SmtpSettings>,
}

/// `[web]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebSettings {
    /// The base of every link in emails, without a trailing `/` (e.g. `https://portal.example.com:8443`
    /// or `https://example.com/portal`).
    pub public_url: Option<String>,
}

impl WebSettings {
    /// `path` (starting with `/`, may carry a query) under the public URL; `None` without a public URL.
    pub fn link(&self, path: &str) -> Option<String> {
        let base = self.public_url.as_deref()?;
        Some(if path.starts_with('/') {
            format!("{base}{path}")
        } else {
            format!("{base}/{path}")
        })
    }
}

/// How the SMTP connection is protected (`[smtp] security`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which must succeed (usually port 587).
    #[default]
    Starttls,
    /// TLS from the first byte, "SMTPS" (usually port 465).
    Tls,
    /// No encryption at all: only for a relay on the same machine.
    None,
}

impl SmtpSecurity {
    /// The usual port for this kind of connection.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SmtpSecurity::Starttls => "starttls",
            SmtpSecurity::Tls => "tls",
            SmtpSecurity::None => "none",
        }
    }
}

/// The SMTP account the portal signs in with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpAuth {
    pub username: String,
    /// The file whose content (trailing newline removed) is the password; read when the mailer is made.
    pub password_file: PathBuf,
}

/// `[smtp]`, checked: the port resolved, the sender parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    /// A host name or IP address, without scheme or port.
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// `None`: the server takes mail without signing in.
    pub auth: Option<SmtpAuth>,
    /// The `From` of every mail.
    pub from: Mailbox,
    /// For connecting and for each SMTP command.
    pub timeout: Duration,
    /// The name the portal greets the server with (EHLO): the host of `[web] public_url` when it is a
    /// domain name; `None`: the address literal `[127.0.0.1]`.
    pub hello_name: Option<String>,
}

impl SmtpSettings {
    /// Settings for `host` with `security`'s usual port, no sign-in and the default timeout.
    pub fn new(host: impl Into<String>, security: SmtpSecurity, from: Mailbox) -> Self {
        SmtpSettings {
            host: host.into(),
            port: security.default_port(),
            security,
            auth: None,
            from,
            timeout: Duration::from_secs(DEFAULT_SMTP_TIMEOUT_SECS),
            hello_name: None,
        }
    }

    /// Whether the mail travels unencrypted to another machine (`security = "none"` off loopback).
    pub fn plaintext_off_loopback(&self) -> bool {
        self.security == SmtpSecurity::None && !is_loopback_host(&self.host)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the portal configuration file {} does not exist: create it (portal.example.toml shows every key) or correct the path given to --config", path.display())]
    Missing { path: PathBuf },
    #[error("cannot read the portal configuration file {}: {source}: check that the portal's user may read it", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}{}: {message}: correct it (portal.example.toml shows every key and its allowed values)", path.display(), line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Parse {
        path: PathBuf,
        /// 1-based line of the error, when known.
        line: Option<usize>,
        message: String,
    },
    #[error("{}: {key}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        /// The key at fault, as `[table] key`.
        key: &'static str,
        message: String,
    },
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    web: RawWeb,
    #[serde(default)]
    smtp: Option<RawSmtp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    #[serde(default)]
    public_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: String,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    security: SmtpSecurity,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    from: String,
    #[serde(default = "default_timeout_secs")]
    timeout_secs: u64,
}

fn default_timeout_secs() -> u64 {
    DEFAULT_SMTP_TIMEOUT_SECS
}

/// Reads and checks the configuration file at `path`.
pub fn load(path: &Path) -> Result<PortalConfig, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError::Missing {
                path: path.to_owned(),
            })
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let config = PortalConfig::from_toml(&text, path)?;
    if let Some(smtp) = &config.smtp {
        if smtp.plaintext_off_loopback() {
            tracing::warn!(
                config = %path.display(),
                host = %smtp.host,
                port = smtp.port,
                "[smtp] security = \"none\" sends mail (and its single-use links) unencrypted to another machine: use \"starttls\" or \"tls\" unless the network between them is trusted"
            );
        }
    }
    if let Some(url) = &config.web.public_url {
        if url.starts_with("http://") && !is_loopback_host(&url_host(url)) {
            tracing::warn!(
                config = %path.display(),
                public_url = %url,
                "[web] public_url is plain http: the single-use links in emails would travel unencrypted; use https"
            );
        }
    }
    Ok(config)
}

impl PortalConfig {
    /// Parses and checks TOML text; `path` names the source in errors and anchors a relative
    /// `password_file`.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            line: e
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1),
            message: e.message().trim_end().to_owned(),
        })?;
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        let public_url = raw
            .web
            .public_url
            .map(|u| check_public_url(&u).map_err(|m| invalid("[web] public_url", m)))
            .transpose()?;
        let smtp = match raw.smtp {
            None => None,
            Some(smtp) => {
                let Some(url) = &public_url else {
                    return Err(invalid(
                        "[web] public_url",
                        "missing, and [smtp] is set: emails carry links to the portal, so add the address people open it at, e.g. public_url = \"https://portal.example.com:8443\" under [web]".to_owned(),
                    ));
                };
                let base_dir = path.parent().unwrap_or(Path::new("."));
                Some(check_smtp(smtp, base_dir, &url_host(url)).map_err(|(k, m)| invalid(k, m))?)
            }
        };
        Ok(PortalConfig {
            web: WebSettings { public_url },
            smtp,
        })
    }
}

/// `[smtp]` as written → checked settings, or the key at fault and what to do.
fn check_smtp(
    raw: RawSmtp,
    base_dir: &Path,
    public_host: &str,
) -> Result<SmtpSettings, (&'static str, String)> {
    let host = raw.host.trim();
    if host.is_empty() {
        return Err((
            "[smtp] host",
            "empty: write the SMTP server's name or IP address, e.g. host = \"smtp.example.com\""
                .to_owned(),
        ));
    }
    if host.contains("://") || host.contains('/') || host.chars().any(char::is_whitespace) {
        return Err((
            "[smtp] host",
            format!("{host:?} is not a host name: write only the name or IP address (no scheme, no path), e.g. host = \"smtp.example.com\""),
        ));
    }
    if host.contains(':') && host.parse::<IpAddr>().is_err() {
        return Err((
            "[smtp] host",
            format!("{host:?} is not a host name: write the port in `port`, not in `host`"),
        ));
    }
    if raw.port == Some(0) {
        return Err((
            "[smtp] port",
            format!(
                "0 is not a port: remove the key for the default ({} with security = \"{}\") or write the server's port",
                raw.security.default_port(),
                raw.security.as_str()
            ),
        ));
    }
    let auth = match (raw.username, raw.password_file) {
        (None, None) => None,
        (Some(_), None) => {
            return Err((
                "[smtp] password_file",
                "missing, and username is set: name a file holding the SMTP password (readable by the portal's user only), e.g. password_file = \"/etc/outpost/smtp-password\"".to_owned(),
            ))
        }
        (None, Some(_)) => {
            return Err((
                "[smtp] username",
                "missing, and password_file is set: add the account to sign in with, or remove password_file if the server needs no sign-in".to_owned(),
            ))
        }
        (Some(username), Some(file)) => {
            if username.trim().is_empty() {
                return Err((
                    "[smtp] username",
                    "empty: write the SMTP account, or remove username and password_file if the server needs no sign-in".to_owned(),
                ));
            }
            if file.as_os_str().is_empty() {
                return Err((
                    "[smtp] password_file",
                    "empty: name the file holding the SMTP password".to_owned(),
                ));
            }
            Some(SmtpAuth {
                username,
                password_file: base_dir.join(file),
            })
        }
    };
    let from: Mailbox = check_mailbox(&raw.from).map_err(|m| ("[smtp] from", m))?;
    if raw.timeout_secs == 0 || raw.timeout_secs > MAX_SMTP_TIMEOUT_SECS {
        return Err((
            "[smtp] timeout_secs",
            format!(
                "{} is out of range: write 1 to {MAX_SMTP_TIMEOUT_SECS} seconds (default {DEFAULT_SMTP_TIMEOUT_SECS})",
                raw.timeout_secs
            ),
        ));
    }
    let hello_name = (!public_host.is_empty()
        && public_host.parse::<IpAddr>().is_err()
        && public_host.contains('.'))
    .then(|| public_host.to_owned());
    Ok(SmtpSettings {
        host: host.to_owned(),
        port: raw.port.unwrap_or(raw.security.default_port()),
        security: raw.security,
        auth,
        from,
        timeout: Duration::from_secs(raw.timeout_secs),
        hello_name,
    })
}

/// `from` must be one mailbox, `user@domain` or `Name <user@domain>`, and nothing else.
fn check_mailbox(text: &str) -> Result<Mailbox, String> {
    let what_to_do = "write one address, e.g. from = \"Outpost <portal@example.com>\" or from = \"portal@example.com\"";
    let text = text.trim();
    let mailbox: Mailbox = text
        .parse()
        .map_err(|e| format!("{text:?} is not a mailbox ({e}): {what_to_do}"))?;
    // lettre's parser stops after the first mailbox; refuse anything left over ("a@b.c, d@e.f", "a@b.c x").
    let leftover = match text.find('>') {
        Some(end) if text.contains('<') => &text[end + 1..],
        _ => {
            if text == mailbox.email.to_string() {
                ""
            } else {
                text
            }
        }
    };
    if !leftover.trim().is_empty() {
        return Err(format!("{text:?} is not a single mailbox: {what_to_do}"));
    }
    Ok(mailbox)
}

/// The public URL without a trailing `/`, or what is wrong with it.
fn check_public_url(text: &str) -> Result<String, String> {
    let example = "e.g. public_url = \"https://portal.example.com:8443\"";
    let text = text.trim();
    let uri: axum::http::Uri = text.parse().map_err(|e| {
        format!(
            "{text:?} is not a URL ({e}): write the address people open the portal at, {example}"
        )
    })?;
    match uri.scheme_str() {
        Some("https") | Some("http") => {}
        _ => {
            return Err(format!(
            "{text:?} does not start with https:// (or http://): write the full address, {example}"
        ))
        }
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("{text:?} has no host: {example}"));
    };
    if authority.host().is_empty() || authority.as_str().contains('@') {
        return Err(format!(
            "{text:?} must name a host and nothing before it (no user:password@): {example}"
        ));
    }
    if uri.query().is_some() || text.contains('#') {
        return Err(format!(
            "{text:?} has a query or fragment: the links are built by adding paths to it, so write only scheme, host, port and an optional path prefix, {example}"
        ));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

/// The host of a URL already checked by [`check_public_url`] (brackets of an IPv6 literal removed).
fn url_host(url: &str) -> String {
    url.parse::<axum::http::Uri>()
        .ok()
        .and_then(|u| u.host().map(|h| h.trim_matches(['[', ']']).to_owned()))
        .unwrap_or_default()
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_matches(['[', ']']);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
[web]
public_url = "https://portal.example.com:8443/"

[smtp]
host = "smtp.example.com"
security = "tls"
username = "portal"
password_file = "secrets/smtp-password"
from = "Outpost <portal@example.com>"
timeout_secs = 20
"#;

    fn parse(text: &str) -> Result<PortalConfig, ConfigError> {
        PortalConfig::from_toml(text, Path::new("/etc/outpost/portal.toml"))
    }

    fn invalid_key(text: &str) -> (&'static str, String) {
        match parse(text) {
            Err(ConfigError::Invalid { key, message, .. }) => (key, message),
            other => panic!("expected an Invalid error, got {other:?}"),
        }
    }

    fn with_smtp(smtp_body: &str) -> String {
        format!("[web]\npublic_url = \"https://portal.example.com\"\n[smtp]\n{smtp_body}\n")
    }

    #[test]
    fn empty_file_is_the_default_without_smtp() {
        let config = parse("").unwrap();
        assert_eq!(config, PortalConfig::default());
        assert!(config.smtp.is_none());
        assert!(config.web.public_url.is_none());
        assert_eq!(config.web.link("/x"), None);
    }

    #[test]
    fn full_file_is_read_and_resolved() {
        let config = parse(FULL).unwrap();
        assert_eq!(
            config.web.public_url.as_deref(),
            Some("https://portal.example.com:8443")
        );
        assert_eq!(
            config.web.link("/invite?t=abc").as_deref(),
            Some("https://portal.example.com:8443/invite?t=abc")
        );
        let smtp = config.smtp.unwrap();
        assert_eq!(smtp.host, "smtp.example.com");
        assert_eq!(smtp.security, SmtpSecurity::Tls);
        assert_eq!(smtp.port, 465, "tls defaults to 465");
        assert_eq!(
            smtp.auth,
            Some(SmtpAuth {
                username: "portal".into(),
                password_file: PathBuf::from("/etc/outpost/secrets/smtp-password"),
            }),
            "a relative password_file is read from the config file's directory"
        );
        assert_eq!(smtp.from.email.to_string(), "portal@example.com");
        assert_eq!(smtp.from.name.as_deref(), Some("Outpost"));
        assert_eq!(smtp.timeout, Duration::from_secs(20));
        assert_eq!(smtp.hello_name.as_deref(), Some("portal.example.com"));
    }

    #[test]
    fn smtp_defaults() {
        let smtp = parse(&with_smtp(
            "host = \"smtp.example.com\"\nfrom = \"portal@example.com\"",
        ))
        .unwrap()
        .smtp
        .unwrap();
        assert_eq!(smtp.security, SmtpSecurity::Starttls);
        assert_eq!(smtp.port, 587);
        assert_eq!(smtp.auth, None);
        assert_eq!(smtp.timeout, Duration::from_secs(DEFAULT_SMTP_TIMEOUT_SECS));
        assert_eq!(smtp.from.name, None);

        let plain = parse(&with_smtp(
            "host = \"127.0.0.1\"\nsecurity = \"none\"\nfrom = \"portal@example.com\"",
        ))
        .unwrap()
        .smtp
        .unwrap();
        assert_eq!(plain.port, 25);
        assert!(!plain.plaintext_off_loopback());

        let explicit = parse(&with_smtp(
            "host = \"mail.example.net\"\nsecurity = \"none\"\nport = 2525\nfrom = \"portal@example.com\"",
        ))
        .unwrap()
        .smtp
        .unwrap();
        assert_eq!(explicit.port, 2525);
        assert!(explicit.plaintext_off_loopback());
    }

    #[test]
    fn the_example_file_is_valid_and_documents_the_defaults() {
        let text = include_str!("../portal.example.toml");
        let path = Path::new("/etc/outpost/portal.toml");
        // As shipped every setting is commented out: no mail.
        let shipped = PortalConfig::from_toml(text, path).unwrap();
        assert!(shipped.smtp.is_none() && shipped.web.public_url.is_none());
        // With the settings' `#` removed (prose comments are `# `), it is a valid mail configuration.
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if !rest.is_empty() && !rest.starts_with([' ', '#']) => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert_ne!(uncommented, text);
        let config = PortalConfig::from_toml(&uncommented, path).unwrap();
        assert!(config.web.public_url.is_some());
        let smtp = config.smtp.unwrap();
        assert_eq!(smtp.security, SmtpSecurity::default());
        assert_eq!(smtp.port, SmtpSecurity::default().default_port());
        assert_eq!(smtp.timeout, Duration::from_secs(DEFAULT_SMTP_TIMEOUT_SECS));
    }

    #[test]
    fn missing_file_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portal.toml");
        let err = load(&path).unwrap_err();
        assert!(matches!(err, ConfigError::Missing { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("does not exist") && text.contains("portal.toml"),
            "{text}"
        );
    }

    #[test]
    fn load_reads_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portal.toml");
        std::fs::write(&path, FULL).unwrap();
        let config = load(&path).unwrap();
        assert_eq!(
            config.smtp.unwrap().auth.unwrap().password_file,
            dir.path().join("secrets/smtp-password")
        );
    }

    #[test]
    fn toml_errors_name_the_line() {
        let err = parse("[web]\npublic_url = \"https://a.example\"\n\n[smtp\n").unwrap_err();
        match &err {
            ConfigError::Parse { line, .. } => assert_eq!(*line, Some(4)),
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("line 4"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = parse(&with_smtp(
            "host = \"smtp.example.com\"\nfrom = \"a@example.com\"\npasword = \"x\"",
        ))
        .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, ConfigError::Parse { line: Some(6), .. }),
            "{err:?}"
        );
        assert!(
            text.contains("pasword") && text.contains("password_file"),
            "{text}"
        );

        let err = parse("[mail]\nhost = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("mail"), "{err}");
        let err = parse("[web]\nurl = \"https://x.example\"\n").unwrap_err();
        assert!(err.to_string().contains("`url`"), "{err}");
    }

    #[test]
    fn missing_required_smtp_keys_are_named() {
        let err = parse(&with_smtp("from = \"a@example.com\"")).unwrap_err();
        assert!(err.to_string().contains("host"), "{err}");
        let err = parse(&with_smtp("host = \"smtp.example.com\"")).unwrap_err();
        assert!(err.to_string().contains("from"), "{err}");
    }

    #[test]
    fn unknown_security_is_refused() {
        let err = parse(&with_smtp(
            "host = \"h.example\"\nfrom = \"a@example.com\"\nsecurity = \"ssl\"",
        ))
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("ssl") && text.contains("starttls"), "{text}");
    }

    #[test]
    fn from_must_be_one_mailbox() {
        for bad in [
            "portal",
            "portal@",
            "Outpost portal@example.com",
            "a@example.com, b@example.com",
            "Outpost <portal@example.com> extra",
            "A <a@example.com>, B <b@example.com>",
            "",
        ] {
            let (key, message) =
                invalid_key(&with_smtp(&format!("host = \"h.example\"\nfrom = {bad:?}")));
            assert_eq!(key, "[smtp] from", "{bad:?}");
            assert!(message.contains("from = \""), "{bad:?}: {message}");
        }
        for good in [
            "portal@example.com",
            "Outpost <portal@example.com>",
            "\"Out, post\" <p@example.com>",
        ] {
            let config = parse(&with_smtp(&format!(
                "host = \"h.example\"\nfrom = {good:?}"
            )));
            assert!(config.is_ok(), "{good:?}: {config:?}");
        }
    }

    #[test]
    fn bad_public_urls_are_refused() {
        for bad in [
            "portal.example.com",
            "ftp://portal.example.com",
            "https://",
            "https://user:pw@portal.example.com",
            "https://portal.example.com/?a=b",
            "https://portal.example.com/#top",
            "not a url",
        ] {
            let (key, message) = invalid_key(&format!("[web]\npublic_url = {bad:?}\n"));
            assert_eq!(key, "[web] public_url", "{bad:?}");
            assert!(message.contains("e.g. public_url"), "{bad:?}: {message}");
        }
        let config = parse("[web]\npublic_url = \"http://127.0.0.1:8443/portal/\"\n").unwrap();
        assert_eq!(
            config.web.link("reset").as_deref(),
            Some("http://127.0.0.1:8443/portal/reset")
        );
    }

    #[test]
    fn smtp_needs_a_public_url() {
        let (key, message) =
            invalid_key("[smtp]\nhost = \"h.example\"\nfrom = \"a@example.com\"\n");
        assert_eq!(key, "[web] public_url");
        assert!(
            message.contains("[smtp]") && message.contains("public_url ="),
            "{message}"
        );
    }

    #[test]
    fn username_and_password_file_go_together() {
        let (key, _) = invalid_key(&with_smtp(
            "host = \"h.example\"\nfrom = \"a@example.com\"\nusername = \"portal\"",
        ));
        assert_eq!(key, "[smtp] password_file");
        let (key, _) = invalid_key(&with_smtp(
            "host = \"h.example\"\nfrom = \"a@example.com\"\npassword_file = \"/p\"",
        ));
        assert_eq!(key, "[smtp] username");
        let (key, _) = invalid_key(&with_smtp(
            "host = \"h.example\"\nfrom = \"a@example.com\"\nusername = \" \"\npassword_file = \"/p\"",
        ));
        assert_eq!(key, "[smtp] username");
    }

    #[test]
    fn bad_hosts_ports_and_timeouts_are_refused() {
        for (body, want) in [
            ("host = \"\"", "[smtp] host"),
            ("host = \"smtp://h.example\"", "[smtp] host"),
            ("host = \"h.example:587\"", "[smtp] host"),
            ("host = \"h.example\"\nport = 0", "[smtp] port"),
            (
                "host = \"h.example\"\ntimeout_secs = 0",
                "[smtp] timeout_secs",
            ),
            (
                "host = \"h.example\"\ntimeout_secs = 301",
                "[smtp] timeout_secs",
            ),
        ] {
            let (key, _) = invalid_key(&with_smtp(&format!("{body}\nfrom = \"a@example.com\"")));
            assert_eq!(key, want, "{body}");
        }
        let err = parse(&with_smtp(
            "host = \"h.example\"\nport = 70000\nfrom = \"a@example.com\"",
        ))
        .unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
        let ipv6 = parse(&with_smtp("host = \"::1\"\nfrom = \"a@example.com\"")).unwrap();
        assert_eq!(ipv6.smtp.unwrap().host, "::1");
    }

    #[test]
    fn hello_name_is_the_public_host_when_it_is_a_domain() {
        let config = parse(
            "[web]\npublic_url = \"https://127.0.0.1:8443\"\n[smtp]\nhost = \"h.example\"\nfrom = \"a@example.com\"\n",
        )
        .unwrap();
        assert_eq!(config.smtp.unwrap().hello_name, None);
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback_host("localhost"));
        assert!(is_loopback_host("127.0.0.1"));
        assert!(is_loopback_host("::1"));
        assert!(is_loopback_host("[::1]"));
        assert!(!is_loopback_host("10.0.0.1"));
        assert!(!is_loopback_host("smtp.example.com"));
    }
}
