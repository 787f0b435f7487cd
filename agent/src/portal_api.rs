//! The portal's agent-facing HTTPS API: `POST /api/v1/activate` and `GET /api/v1/agent/status`.
//!
//! The portal's JSON errors (`{ error, message }`) become [`PortalError`] variants whose messages say what to do.
//! TLS trusts exactly the `--ca` PEM when one is given, else the system's roots.

use std::sync::Arc;
use std::time::Duration;

pub use outpost_cloud_link::enrollment::{ActivateRequest, ActivateResponse, AgentStatus};
use outpost_cloud_link::enrollment::{ApiError, ACTIVATE_PATH, STATUS_PATH};
use reqwest::{StatusCode, Url};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error("portal URL {0:?} is not valid: expected https://HOST[:PORT]")]
    BadUrl(String),
    #[error("CA file is not usable: {0}")]
    BadCa(String),
    #[error("no trusted CA certificates: the system has none ({0}); pass the portal's CA with --ca FILE")]
    NoSystemRoots(String),
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("cannot reach the portal at {url}: {detail}; check the URL, the network and --ca")]
    Unreachable { url: String, detail: String },
    #[error("activation code is malformed: {0}; check for typos (codes are case-insensitive)")]
    MalformedCode(String),
    #[error("unknown activation code: check it, or ask for a new code in the portal")]
    UnknownCode,
    #[error("activation code already used up: ask for a new code in the portal")]
    CodeUsedUp,
    #[error("activation code expired: ask for a new code in the portal")]
    CodeExpired,
    #[error("too many attempts from this address; wait {0} s and try again")]
    RateLimited(u64),
    #[error("the portal refused the request: {0}")]
    InvalidRequest(String),
    #[error("the portal does not accept this agent's credentials (HTTP 401 bad_credentials): the identity in the state directory is not one the portal knows (the agent was activated again elsewhere, or identity.json was replaced); activate it again with a new code from the portal: outpost-agent activate CODE --portal URL --force")]
    BadCredentials,
    #[error("this agent was deleted in the portal")]
    AgentDeleted,
    #[error("the portal answered HTTP 410 Gone without saying this agent was deleted (no agent_deleted code): {body}; the agent keeps its state and asks again later. Check that the portal URL points at the Outpost portal itself (not a proxy or another service) and that the portal is up to date")]
    Gone { body: String },
    #[error("unexpected answer from the portal: HTTP {status}: {body}; check that the portal URL points at the Outpost portal itself (not a proxy or another service) and that the portal is up to date; the portal's log says more")]
    Unexpected { status: u16, body: String },
}

/// Turns a non-success answer into the error it stands for.
pub fn map_error(status: StatusCode, retry_after: Option<u64>, body: &str) -> PortalError {
    let parsed: Option<ApiError> = serde_json::from_str(body).ok();
    let (code, message) = match &parsed {
        Some(b) => (b.error.as_str(), b.message.clone()),
        None => ("", String::new()),
    };
    let detail = if message.is_empty() {
        body.chars().take(300).collect::<String>()
    } else {
        message
    };
    match (status.as_u16(), code) {
        (400, "malformed_code") => PortalError::MalformedCode(detail),
        (404, "unknown_code") => PortalError::UnknownCode,
        (409, "code_used_up") => PortalError::CodeUsedUp,
        (410, "code_expired") => PortalError::CodeExpired,
        (429, _) => PortalError::RateLimited(retry_after.unwrap_or(60)),
        (400, _) => PortalError::InvalidRequest(detail),
        (401, _) => PortalError::BadCredentials,
        // Only the portal's own word deletes this agent's state: a bare 410 (a proxy, another service, a
        // route gone in another portal version) must not.
        (410, "agent_deleted") => PortalError::AgentDeleted,
        (410, _) => PortalError::Gone {
            body: if body.trim().is_empty() {
                "empty body".to_owned()
            } else {
                format!("body: {}", body.chars().take(300).collect::<String>())
            },
        },
        (s, _) => PortalError::Unexpected {
            status: s,
            body: detail,
        },
    }
}

/// Builds the rustls config for the portal: only `ca_pem` when given, else the system roots.
fn tls_config(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, PortalError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| PortalError::BadCa(e.to_string()))?;
                roots
                    .add(cert)
                    .map_err(|e| PortalError::BadCa(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(PortalError::BadCa("it holds no PEM certificate".to_owned()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "no certificates found".to_owned());
                return Err(PortalError::NoSystemRoots(why));
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| PortalError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(config)
}

/// Checks a portal base URL: `https://host[:port]`, path ignored. Returns it without a trailing slash.
pub fn parse_portal_url(raw: &str) -> Result<Url, PortalError> {
    let url = Url::parse(raw.trim()).map_err(|_| PortalError::BadUrl(raw.to_owned()))?;
    if url.scheme() != "https" || url.host_str().is_none() {
        return Err(PortalError::BadUrl(raw.to_owned()));
    }
    Ok(url)
}

/// A client for one portal.
#[derive(Debug, Clone)]
pub struct PortalClient {
    base: Url,
    http: reqwest::Client,
}

impl PortalClient {
    pub fn new(base_url: &str, ca_pem: Option<&[u8]>) -> Result<Self, PortalError> {
        let base = parse_portal_url(base_url)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config(ca_pem)?)
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("outpost-agent/", env!("OUTPOST_AGENT_VERSION")))
            .build()
            .map_err(|e| PortalError::Tls(e.to_string()))?;
        Ok(Self { base, http })
    }

    /// The portal's `host` and port (443 when the URL names none).
    pub fn host_port(&self) -> (String, u16) {
        (
            self.base
                .host_str()
                .unwrap_or_default()
                .trim_matches(['[', ']'])
                .to_owned(),
            self.base.port_or_known_default().unwrap_or(443),
        )
    }

    pub fn base_url(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_owned()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    fn unreachable(&self, e: reqwest::Error) -> PortalError {
        // The chain carries the useful part (connection refused, certificate unknown, ...).
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        PortalError::Unreachable {
            url: self.base_url(),
            detail,
        }
    }

    async fn failure(resp: reqwest::Response) -> PortalError {
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = resp.text().await.unwrap_or_default();
        map_error(status, retry_after, &body)
    }

    /// `POST /api/v1/activate`.
    pub async fn activate(&self, req: &ActivateRequest) -> Result<ActivateResponse, PortalError> {
        let resp = self
            .http
            .post(self.url(ACTIVATE_PATH))
            .json(req)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !resp.status().is_success() {
            return Err(Self::failure(resp).await);
        }
        resp.json::<ActivateResponse>()
            .await
            .map_err(|e| PortalError::Unexpected {
                status: 201,
                body: format!("activation answer is not understood: {e}"),
            })
    }

    /// `GET /api/v1/agent/status` with the agent's credentials.
    pub async fn agent_status(
        &self,
        agent_id: &str,
        secret: &str,
    ) -> Result<AgentStatus, PortalError> {
        let resp = self
            .http
            .get(self.url(STATUS_PATH))
            .basic_auth(agent_id, Some(secret))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !resp.status().is_success() {
            return Err(Self::failure(resp).await);
        }
        resp.json::<AgentStatus>()
            .await
            .map_err(|e| PortalError::Unexpected {
                status: 200,
                body: format!("status answer is not understood: {e}"),
            })
    }
    /// `GET /api/v1/agent/releases/{id}/manifest`: the signed release file, as bytes (verified by the caller).
    pub async fn release_file(
        &self,
        agent_id: &str,
        secret: &str,
        release_id: i64,
    ) -> Result<Vec<u8>, PortalError> {
        let resp = self
            .http
            .get(self.url(&format!("/api/v1/agent/releases/{release_id}/manifest")))
            .basic_auth(agent_id, Some(secret))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !resp.status().is_success() {
            return Err(Self::failure(resp).await);
        }
        let status = resp.status().as_u16();
        resp.bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| PortalError::Unexpected {
                status,
                body: format!("the release file download broke off: {e}"),
            })
    }

    /// `GET /api/v1/agent/releases/{id}/binary` from byte `offset` on (a `Range` request when `offset > 0`).
    /// The answer is 200 (the whole file), 206 (from `offset`) or 416 (nothing left from there); its body is
    /// read by the caller in chunks, with no overall time limit (`DOWNLOAD_STALL` guards each chunk).
    pub async fn release_binary(
        &self,
        agent_id: &str,
        secret: &str,
        release_id: i64,
        offset: u64,
    ) -> Result<reqwest::Response, PortalError> {
        let mut req = self
            .http
            .get(self.url(&format!("/api/v1/agent/releases/{release_id}/binary")))
            .basic_auth(agent_id, Some(secret))
            .timeout(Duration::from_secs(24 * 3600));
        if offset > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        if status.is_success() || status == StatusCode::RANGE_NOT_SATISFIABLE {
            return Ok(resp);
        }
        Err(Self::failure(resp).await)
    }
}

/// A throwaway self-signed CA (only parsed, never used to verify anything).
#[cfg(test)]
pub(crate) const TEST_CA: &str = include_str!("../tests/fixtures/test-ca.pem");

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: u16, code: &str) -> PortalError {
        let body = format!(r#"{{"error":"{code}","message":"portal says {code}"}}"#);
        map_error(StatusCode::from_u16(status).unwrap(), None, &body)
    }

    #[test]
    fn activation_errors_say_what_to_do() {
        assert!(
            matches!(err(400, "malformed_code"), PortalError::MalformedCode(m) if m == "portal says malformed_code")
        );
        assert!(matches!(err(404, "unknown_code"), PortalError::UnknownCode));
        assert!(matches!(err(409, "code_used_up"), PortalError::CodeUsedUp));
        let expired = err(410, "code_expired");
        assert_eq!(
            expired.to_string(),
            "activation code expired: ask for a new code in the portal"
        );
        assert!(
            matches!(err(400, "invalid_request"), PortalError::InvalidRequest(m) if m.contains("invalid_request"))
        );
    }

    #[test]
    fn rate_limits_carry_the_wait() {
        let e = map_error(
            StatusCode::TOO_MANY_REQUESTS,
            Some(42),
            r#"{"error":"rate_limited","message":"slow down"}"#,
        );
        assert_eq!(
            e.to_string(),
            "too many attempts from this address; wait 42 s and try again"
        );
    }

    #[test]
    fn status_errors() {
        assert!(matches!(
            err(401, "bad_credentials"),
            PortalError::BadCredentials
        ));
        assert!(matches!(
            err(410, "agent_deleted"),
            PortalError::AgentDeleted
        ));
        let e = map_error(StatusCode::BAD_GATEWAY, None, "<html>oops</html>");
        assert!(
            matches!(e, PortalError::Unexpected { status: 502, ref body } if body.contains("oops"))
        );
    }

    #[test]
    fn errors_without_an_activation_code_context_say_what_to_do() {
        let bad = err(401, "bad_credentials").to_string();
        assert!(
            bad.contains("activate it again with a new code") && bad.contains("--force"),
            "{bad}"
        );
        let e = map_error(StatusCode::BAD_GATEWAY, None, "<html>oops</html>").to_string();
        assert!(
            e.contains("HTTP 502") && e.contains("oops") && e.contains("check that the portal URL"),
            "{e}"
        );
    }

    #[test]
    fn only_a_410_saying_agent_deleted_means_deleted() {
        assert!(matches!(
            err(410, "agent_deleted"),
            PortalError::AgentDeleted
        ));
        for body in [
            "",
            "<html>Gone</html>",
            r#"{"error":"gone","message":"no such route"}"#,
        ] {
            let e = map_error(StatusCode::GONE, None, body);
            assert!(matches!(e, PortalError::Gone { .. }), "{body:?}: {e:?}");
            let text = e.to_string();
            assert!(text.contains("HTTP 410"), "{text}");
            if !body.is_empty() {
                assert!(text.contains("Gone") && text.contains(&body[..5]), "{text}");
            } else {
                assert!(text.contains("empty body"), "{text}");
            }
        }
    }

    #[test]
    fn only_https_urls() {
        assert!(parse_portal_url("https://127.0.0.1:8443").is_ok());
        assert!(parse_portal_url("http://127.0.0.1:8443").is_err());
        assert!(parse_portal_url("127.0.0.1:8443").is_err());
        let c = PortalClient::new("https://[::1]:9443/", Some(TEST_CA.as_bytes())).unwrap();
        assert_eq!(c.host_port(), ("::1".to_owned(), 9443));
        assert_eq!(c.url(ACTIVATE_PATH), "https://[::1]:9443/api/v1/activate");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        assert!(matches!(
            PortalClient::new("https://127.0.0.1:1", Some(b"not a pem")),
            Err(PortalError::BadCa(_))
        ));
    }

    #[tokio::test]
    async fn an_unreachable_portal_names_the_url() {
        // A port on loopback nothing listens on: bind, learn the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = PortalClient::new(
            &format!("https://127.0.0.1:{port}"),
            Some(TEST_CA.as_bytes()),
        )
        .unwrap();
        let e = c.agent_status("ag-1", "x").await.unwrap_err();
        assert!(matches!(e, PortalError::Unreachable { .. }), "{e}");
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")));
    }
}
