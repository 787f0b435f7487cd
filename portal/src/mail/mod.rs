//! Sending the portal's emails over SMTP (lettre): a [`Mailer`] built from the checked `[smtp]` settings,
//! and [`Outgoing`], one plain-text UTF-8 mail. [`messages`] writes the texts.
//!
//! Bodies hold single-use links, which are secrets: neither the body nor the full recipient is ever logged
//! (only the recipient's domain), and [`Outgoing`]'s `Debug` leaves the body out.

pub mod messages;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{CertificateStore, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rand::RngCore;

use crate::config::{SmtpSecurity, SmtpSettings};

/// One mail to send: plain text, UTF-8.
#[derive(Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The recipient's address (`user@domain`).
    pub to: String,
    pub subject: String,
    pub text: String,
}

impl fmt::Debug for Outgoing {
    /// Leaves out the body (its links are secrets) and the recipient's local part.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outgoing")
            .field("to_domain", &recipient_domain(&self.to))
            .field("subject", &self.subject)
            .field("text", &format_args!("<{} bytes>", self.text.len()))
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("cannot read the SMTP password file {}: {source}: check [smtp] password_file and that the portal's user may read it", path.display())]
    PasswordFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the SMTP password file {} is empty: write the password of [smtp] username into it", path.display())]
    EmptyPassword { path: PathBuf },
    #[error("cannot set up TLS for the SMTP server {host}: {source}")]
    TlsSetup {
        host: String,
        #[source]
        source: lettre::transport::smtp::Error,
    },
    #[error("{address:?} is not a valid email address ({reason}): correct the address")]
    BadAddress { address: String, reason: String },
    #[error("cannot build the mail: {source}")]
    Build {
        #[source]
        source: lettre::error::Error,
    },
    #[error("the SMTP server {host}:{port} is unreachable ({detail}): check [smtp] host and port, that the server is up, and that the portal's machine may connect to it")]
    Unreachable {
        host: String,
        port: u16,
        detail: String,
    },
    #[error("the SMTP server {host}:{port} did not answer in time: check that it is up, and [smtp] port, security and timeout_secs")]
    Timeout { host: String, port: u16 },
    #[error("TLS with the SMTP server {host}:{port} failed ({detail}): check [smtp] security (\"starttls\" usually on port 587, \"tls\" on 465) and that the server's certificate is valid for {host}")]
    Tls {
        host: String,
        port: u16,
        detail: String,
    },
    #[error("the SMTP server {host}:{port} refused the sign-in ({detail}): check [smtp] username and the password in password_file (and whether the server needs them at all)")]
    AuthFailed {
        host: String,
        port: u16,
        detail: String,
    },
    #[error("the SMTP server {host}:{port} refused the mail to a recipient at {recipient_domain} ({detail}): check the recipient's address, and that [smtp] from is an address this server lets the portal send as")]
    Refused {
        host: String,
        port: u16,
        recipient_domain: String,
        detail: String,
    },
    #[error("the SMTP server {host}:{port} cannot take the mail now ({detail}): try again later")]
    Temporary {
        host: String,
        port: u16,
        detail: String,
    },
    #[error("the SMTP exchange with {host}:{port} failed ({detail}): check [smtp] security and port against what the server offers")]
    Protocol {
        host: String,
        port: u16,
        detail: String,
    },
}

impl MailError {
    /// A short name of the failure, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            MailError::PasswordFile { .. } | MailError::EmptyPassword { .. } => "password_file",
            MailError::TlsSetup { .. } => "tls_setup",
            MailError::BadAddress { .. } => "bad_address",
            MailError::Build { .. } => "build",
            MailError::Unreachable { .. } => "unreachable",
            MailError::Timeout { .. } => "timeout",
            MailError::Tls { .. } => "tls",
            MailError::AuthFailed { .. } => "auth_failed",
            MailError::Refused { .. } => "refused",
            MailError::Temporary { .. } => "temporary",
            MailError::Protocol { .. } => "protocol",
        }
    }
}

/// Sends mail through one SMTP server; a new connection per mail. Cheap to share behind an `Arc`.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    host: String,
    port: u16,
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from.email.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// A mailer for `settings`; reads the password file now. Connects only when sending.
    pub fn new(settings: &SmtpSettings) -> Result<Mailer, MailError> {
        let host = settings.host.as_str();
        let tls_parameters = || {
            TlsParameters::builder(host.to_owned())
                .certificate_store(CertificateStore::WebpkiRoots)
                .build_rustls()
                .map_err(|source| MailError::TlsSetup {
                    host: host.to_owned(),
                    source,
                })
        };
        let tls = match settings.security {
            SmtpSecurity::Starttls => Tls::Required(tls_parameters()?),
            SmtpSecurity::Tls => Tls::Wrapper(tls_parameters()?),
            SmtpSecurity::None => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(settings.port)
            .tls(tls)
            .timeout(Some(settings.timeout));
        if let Some(name) = &settings.hello_name {
            builder = builder.hello_name(ClientId::Domain(name.clone()));
        }
        if let Some(auth) = &settings.auth {
            let password = read_password(&auth.password_file)?;
            builder = builder.credentials(Credentials::new(auth.username.clone(), password));
        }
        tracing::info!(
            host,
            port = settings.port,
            security = settings.security.as_str(),
            sign_in = settings.auth.is_some(),
            "SMTP mailer ready"
        );
        Ok(Mailer {
            transport: builder.build(),
            from: settings.from.clone(),
            host: settings.host.clone(),
            port: settings.port,
        })
    }

    /// Sends `mail`; the error says what failed and what to check.
    pub async fn send(&self, mail: &Outgoing) -> Result<(), MailError> {
        let domain = recipient_domain(&mail.to);
        let started = Instant::now();
        let result = self.try_send(mail).await;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match &result {
            Ok(()) => tracing::info!(
                recipient_domain = domain,
                subject = %mail.subject,
                elapsed_ms,
                "mail sent"
            ),
            Err(e) => tracing::warn!(
                recipient_domain = domain,
                host = %self.host,
                port = self.port,
                failure = e.kind(),
                elapsed_ms,
                "mail not sent"
            ),
        }
        result
    }

    async fn try_send(&self, mail: &Outgoing) -> Result<(), MailError> {
        let message = self.build(mail)?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| self.classify(e, &mail.to))
    }

    fn build(&self, mail: &Outgoing) -> Result<Message, MailError> {
        let to: Address = mail
            .to
            .trim()
            .parse()
            .map_err(|e: lettre::address::AddressError| MailError::BadAddress {
                address: mail.to.clone(),
                reason: e.to_string(),
            })?;
        let mut id = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut id);
        Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(one_line(&mail.subject))
            .message_id(Some(format!(
                "<{}@{}>",
                hex::encode(id),
                self.from.email.domain()
            )))
            // RFC 3834: no vacation replies or other auto-responses to these.
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".to_owned(),
            ))
            .header(ContentType::TEXT_PLAIN)
            .body(mail.text.clone())
            .map_err(|source| MailError::Build { source })
    }

    /// What a lettre error means for the person configuring the portal.
    fn classify(&self, e: lettre::transport::smtp::Error, to: &str) -> MailError {
        let host = self.host.clone();
        let port = self.port;
        let detail = error_detail(&e);
        if e.is_timeout() {
            return MailError::Timeout { host, port };
        }
        if e.is_tls() {
            return MailError::Tls { host, port, detail };
        }
        if let Some(code) = e.status() {
            let code = u16::from(code);
            return match code {
                // Authentication required / too weak / credentials invalid / encryption required for it.
                530 | 534 | 535 | 538 => MailError::AuthFailed { host, port, detail },
                400..=499 => MailError::Temporary { host, port, detail },
                _ => MailError::Refused {
                    host,
                    port,
                    recipient_domain: recipient_domain(to).to_owned(),
                    detail,
                },
            };
        }
        if e.is_client() {
            // lettre refuses by itself when the server offers no mechanism it may use (for instance no
            // AUTH on an unencrypted connection) or no STARTTLS.
            let lower = detail.to_ascii_lowercase();
            if lower.contains("authentication") {
                return MailError::AuthFailed { host, port, detail };
            }
            if lower.contains("starttls") {
                return MailError::Tls { host, port, detail };
            }
            return MailError::Protocol { host, port, detail };
        }
        if e.is_response() {
            return MailError::Protocol { host, port, detail };
        }
        MailError::Unreachable { host, port, detail }
    }
}

/// lettre's message with its sources, on one line.
fn error_detail(e: &lettre::transport::smtp::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    one_line(&text)
}

/// The password in `path`, without the trailing newline.
fn read_password(path: &Path) -> Result<String, MailError> {
    let text = std::fs::read_to_string(path).map_err(|source| MailError::PasswordFile {
        path: path.to_owned(),
        source,
    })?;
    let password = text.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(MailError::EmptyPassword {
            path: path.to_owned(),
        });
    }
    Ok(password.to_owned())
}

/// The part of an address after the last `@` (what logs may show), or `?`.
pub fn recipient_domain(address: &str) -> &str {
    match address.trim().rsplit_once('@') {
        Some((_, domain)) if !domain.is_empty() => domain,
        _ => "?",
    }
}

/// `text` with control characters and line separators turned into spaces, trimmed: for header values and
/// names people chose, which must not start new lines.
pub(crate) fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
                ' '
            } else {
                c
            }
        })
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SmtpAuth;

    fn settings(security: SmtpSecurity) -> SmtpSettings {
        SmtpSettings::new(
            "smtp.example.com",
            security,
            "Outpost <portal@example.com>".parse().unwrap(),
        )
    }

    fn mail(to: &str) -> Outgoing {
        Outgoing {
            to: to.into(),
            subject: "Hello\r\nBcc: evil@example.net".into(),
            text: "Café https://portal.example.com/secret-token\n".into(),
        }
    }

    #[test]
    fn recipient_domain_is_all_logs_see() {
        assert_eq!(recipient_domain("bob@example.com"), "example.com");
        assert_eq!(recipient_domain("\"a@b\"@example.org"), "example.org");
        assert_eq!(recipient_domain("nobody"), "?");
        assert_eq!(recipient_domain("x@"), "?");
    }

    #[test]
    fn debug_hides_the_body_and_local_part() {
        let text = format!("{:?}", mail("bob@example.com"));
        assert!(!text.contains("secret-token"), "{text}");
        assert!(!text.contains("bob"), "{text}");
        assert!(text.contains("example.com"), "{text}");
    }

    #[test]
    fn one_line_removes_line_breaks() {
        assert_eq!(one_line(" a\r\nb\u{2028}c\td "), "a  b c d");
        assert_eq!(one_line("Café Ünïcode"), "Café Ünïcode");
    }

    #[test]
    fn builds_for_every_security() {
        for security in [
            SmtpSecurity::Starttls,
            SmtpSecurity::Tls,
            SmtpSecurity::None,
        ] {
            let mailer = Mailer::new(&settings(security)).unwrap();
            assert_eq!(mailer.port, security.default_port());
        }
    }

    #[test]
    fn password_file_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("smtp-password");
        let mut s = settings(SmtpSecurity::Starttls);
        s.auth = Some(SmtpAuth {
            username: "portal".into(),
            password_file: file.clone(),
        });
        let err = Mailer::new(&s).unwrap_err();
        assert!(matches!(err, MailError::PasswordFile { .. }), "{err:?}");
        assert!(err.to_string().contains("password_file"), "{err}");

        std::fs::write(&file, "\n").unwrap();
        let err = Mailer::new(&s).unwrap_err();
        assert!(matches!(err, MailError::EmptyPassword { .. }), "{err:?}");

        std::fs::write(&file, "s3cret pass\n").unwrap();
        assert_eq!(read_password(&file).unwrap(), "s3cret pass");
        assert!(Mailer::new(&s).is_ok());
        let debug = format!("{:?}", Mailer::new(&s).unwrap());
        assert!(!debug.contains("s3cret"), "{debug}");
    }

    #[test]
    fn bad_recipient_is_refused_before_connecting() {
        let mailer = Mailer::new(&settings(SmtpSecurity::None)).unwrap();
        for bad in [
            "nobody",
            "a@",
            "a b@example.com",
            "a@example.com, c@example.com",
        ] {
            let err = mailer.build(&mail(bad)).unwrap_err();
            assert!(
                matches!(err, MailError::BadAddress { .. }),
                "{bad}: {err:?}"
            );
            assert!(
                err.to_string().contains("not a valid email address"),
                "{err}"
            );
        }
    }

    #[test]
    fn built_message_is_plain_utf8_text_without_header_injection() {
        let mailer = Mailer::new(&settings(SmtpSecurity::None)).unwrap();
        let message = mailer.build(&mail("bob@example.com")).unwrap();
        let raw = String::from_utf8(message.formatted()).unwrap();
        let (headers, _) = raw.split_once("\r\n\r\n").unwrap();
        assert!(
            headers.contains("Content-Type: text/plain; charset=utf-8"),
            "{headers}"
        );
        assert!(
            headers.contains("Auto-Submitted: auto-generated"),
            "{headers}"
        );
        assert!(
            headers.contains("@example.com>"),
            "Message-ID on the sender's domain: {headers}"
        );
        assert!(
            !headers.lines().any(|l| l.starts_with("Bcc:")),
            "a line break in the subject must not start a header: {headers}"
        );
        assert_eq!(
            message.envelope().to(),
            &["bob@example.com".parse::<Address>().unwrap()]
        );
    }
}
