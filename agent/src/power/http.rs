//! The HTTP side both smart-plug drivers share: a plain-HTTP client with the configured timeout, retries of
//! requests that timed out, and how a transport failure reads. URLs are never put in a message: a Tasmota URL
//! carries the password.

use std::time::Duration;

use reqwest::{Client, RequestBuilder, Response, Url};

use super::{split_host, PowerError};
use crate::config::PowerConfig;

/// What a plug that does not answer should make a person check.
pub(crate) const NO_ANSWER_HINT: &str =
    "check the address and that the plug is powered and on the network";

/// A plug's HTTP endpoint: its base URL and how it is named in messages.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    client: Client,
    base: Url,
    /// `host:port`.
    pub host: String,
    timeout: Duration,
    retries: u32,
}

impl Endpoint {
    /// `host` is the binding's `host` or `host:port` (default 80).
    pub fn new(config: &PowerConfig, host: &str) -> Result<Self, PowerError> {
        let (name, port) = split_host(host, 80)?;
        let shown = super::host_port(&name, port);
        let base = Url::parse(&format!("http://{shown}/")).map_err(|_| {
            PowerError::BadBinding(format!("host {host:?} is not a host name or address"))
        })?;
        let client = Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .pool_max_idle_per_host(0)
            .http1_only()
            .user_agent(concat!("outpost-agent/", env!("OUTPOST_AGENT_VERSION")))
            .build()
            .map_err(|e| PowerError::Outlet {
                host: shown.clone(),
                detail: format!("cannot set up an HTTP client: {}", e.without_url()),
            })?;
        Ok(Endpoint {
            client,
            base,
            host: shown,
            timeout: config.timeout,
            retries: config.retries,
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The URL of `path_and_query` (which starts with `/`, and is already percent-encoded) on the plug.
    pub fn url(&self, path_and_query: &str) -> Result<Url, PowerError> {
        self.base
            .join(path_and_query)
            .map_err(|_| PowerError::BadBinding(format!("cannot build a URL for {}", self.host)))
    }

    /// Sends the request `build` makes, again up to `retries` times while it times out.
    pub async fn send(&self, build: impl Fn() -> RequestBuilder) -> Result<Response, PowerError> {
        let attempts = self.retries + 1;
        let mut tried = 0;
        loop {
            tried += 1;
            match build().send().await {
                Ok(resp) => return Ok(resp),
                Err(e) if e.is_timeout() && tried < attempts => continue,
                Err(e) => return Err(self.transport_error(e, tried)),
            }
        }
    }

    /// A failed request as a [`PowerError`]: timeouts, refused or unroutable connections, the rest.
    pub fn transport_error(&self, e: reqwest::Error, attempts: u32) -> PowerError {
        if e.is_timeout() {
            return PowerError::Timeout {
                host: self.host.clone(),
                waited: self.timeout * attempts,
                attempts,
                hint: NO_ANSWER_HINT,
            };
        }
        let connect = e.is_connect();
        let detail = root_cause(&e.without_url());
        if connect {
            PowerError::Unreachable {
                host: self.host.clone(),
                detail,
                hint: super::UNREACHABLE_HINT,
            }
        } else {
            PowerError::Outlet {
                host: self.host.clone(),
                detail: format!("the HTTP exchange failed: {detail}"),
            }
        }
    }
}

/// The innermost cause of an error ("Connection refused (os error 111)"), lower-cased at the start.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last: &dyn std::error::Error = e;
    while let Some(next) = last.source() {
        last = next;
    }
    let text = last.to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

/// Percent-encodes a query value: everything but RFC 3986's unreserved characters.
pub(crate) fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The start of a body for a message: at most 200 characters, one line.
pub(crate) fn excerpt(body: &str) -> String {
    let one_line: String = body
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    if one_line.is_empty() {
        "an empty body".to_owned()
    } else {
        format!("{one_line:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode_query_value("Power1 On"), "Power1%20On");
        assert_eq!(encode_query_value("a&b=c?d+e%"), "a%26b%3Dc%3Fd%2Be%25");
        assert_eq!(encode_query_value("pässwort"), "p%C3%A4sswort");
        assert_eq!(encode_query_value("A-z_0.9~"), "A-z_0.9~");
    }

    #[test]
    fn endpoints_default_to_port_80() {
        let e = Endpoint::new(&PowerConfig::default(), "10.0.0.3").unwrap();
        assert_eq!(e.host, "10.0.0.3:80");
        assert_eq!(e.url("/rpc").unwrap().as_str(), "http://10.0.0.3/rpc");
        let e = Endpoint::new(&PowerConfig::default(), "plug.lan:8080").unwrap();
        assert_eq!(
            e.url("/cm?cmnd=Power%20On").unwrap().as_str(),
            "http://plug.lan:8080/cm?cmnd=Power%20On"
        );
    }

    #[test]
    fn excerpts_are_short_and_on_one_line() {
        assert_eq!(excerpt(""), "an empty body");
        assert_eq!(excerpt("a\nb"), "\"a b\"");
        assert_eq!(excerpt(&"x".repeat(500)).len(), 202);
    }
}
