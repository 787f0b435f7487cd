//! Shelly Gen2 plugs and relays: JSON-RPC 2.0 frames `POST /rpc` (`Switch.Set {id, on}`, `Switch.GetStatus {id}`
//! → `output`), with the HTTP digest authentication Gen2 devices use when a password is set (RFC 7616,
//! SHA-256, user `admin`, realm the device id): the device answers 401 with a challenge, the request is sent
//! again with the digest of the password.

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::http::{excerpt, Endpoint};
use super::{PowerError, Switch};
use crate::config::PowerConfig;
use outpost_cloud_link::control::PowerState;

/// Gen2 devices always authenticate the user `admin`.
pub const USER: &str = "admin";
/// The RPC error of an argument value that names nothing (e.g. a switch id the device does not have).
const NOT_FOUND: i64 = -105;
/// Where JSON-RPC frames go.
const RPC_PATH: &str = "/rpc";

/// One switch component of a Shelly.
#[derive(Debug)]
pub struct ShellySwitch {
    endpoint: Endpoint,
    switch_id: u32,
    password: Option<String>,
}

impl ShellySwitch {
    pub fn new(
        config: &PowerConfig,
        host: &str,
        switch_id: u32,
        password: Option<&str>,
    ) -> Result<Self, PowerError> {
        Ok(ShellySwitch {
            endpoint: Endpoint::new(config, host)?,
            switch_id,
            password: password.filter(|p| !p.is_empty()).map(str::to_owned),
        })
    }

    /// Calls `method` with `params` and returns the frame's `result`.
    async fn call(&self, method: &str, params: Value) -> Result<Value, PowerError> {
        let body = request_frame(method, params);
        let url = self.endpoint.url(RPC_PATH)?;
        let http = self.endpoint.client();
        let post = || {
            http.post(url.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone())
        };
        let mut resp = self.endpoint.send(post).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let Some(password) = &self.password else {
                return Err(self.auth_failed(
                    "the Shelly asks for a password and the binding has none: set the device's password in the outlet binding",
                ));
            };
            let challenge = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let authorization = digest_response(&challenge, password, body.as_bytes())
                .map_err(|detail| self.outlet_error(detail))?;
            resp = self
                .endpoint
                .send(|| post().header(AUTHORIZATION, authorization.clone()))
                .await?;
            if resp.status() == StatusCode::UNAUTHORIZED {
                return Err(self.auth_failed(
                    "the Shelly refused the password (HTTP 401 to the digest of user admin): check the password in the outlet binding",
                ));
            }
        }
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| self.endpoint.transport_error(e, 1))?;
        match parse_frame(status.as_u16(), &text) {
            Ok(result) => Ok(result),
            Err(FrameError::Unauthorized) => Err(self.auth_failed(
                "the Shelly refused the request (error 401): check the password in the outlet binding",
            )),
            Err(FrameError::Rpc { code, message }) if code == NOT_FOUND => {
                Err(self.outlet_error(format!(
                    "{method} failed with error {code} ({message}): the device has no switch id {}; check it in the binding",
                    self.switch_id
                )))
            }
            Err(FrameError::Rpc { code, message }) => Err(self.outlet_error(format!(
                "{method} failed with error {code}: {message}"
            ))),
            Err(FrameError::Unreadable(why)) => Err(self.outlet_error(format!(
                "{method} answered HTTP {status} with {why}: {}",
                excerpt(&text)
            ))),
        }
    }

    fn auth_failed(&self, detail: &str) -> PowerError {
        PowerError::AuthFailed {
            host: self.endpoint.host.clone(),
            detail: detail.to_owned(),
        }
    }

    fn outlet_error(&self, detail: String) -> PowerError {
        PowerError::Outlet {
            host: self.endpoint.host.clone(),
            detail,
        }
    }
}

impl Switch for ShellySwitch {
    fn host(&self) -> &str {
        &self.endpoint.host
    }

    fn what(&self) -> String {
        format!("Shelly switch {}", self.switch_id)
    }

    fn method(&self) -> &'static str {
        "a Shelly"
    }

    async fn set(&self, on: bool) -> Result<(), PowerError> {
        self.call("Switch.Set", json!({ "id": self.switch_id, "on": on }))
            .await
            .map(drop)
    }

    async fn read(&self) -> Result<PowerState, PowerError> {
        let result = self
            .call("Switch.GetStatus", json!({ "id": self.switch_id }))
            .await?;
        match result.get("output").and_then(Value::as_bool) {
            Some(true) => Ok(PowerState::On),
            Some(false) => Ok(PowerState::Off),
            None => Err(self.outlet_error(format!(
                "Switch.GetStatus has no boolean `output`: {}",
                excerpt(&result.to_string())
            ))),
        }
    }
}

/// A JSON-RPC request frame.
pub fn request_frame(method: &str, params: Value) -> String {
    json!({ "id": 1, "src": "outpost-agent", "method": method, "params": params }).to_string()
}

/// Why a Gen2 answer is not a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Error code 401 in the frame.
    Unauthorized,
    /// An RPC error (`{"code": -105, "message": "..."}`).
    Rpc {
        code: i64,
        message: String,
    },
    Unreadable(&'static str),
}

/// The `result` of a Gen2 answer to `POST /rpc`: a frame `{id, src, result}` or `{id, src, error: {code,
/// message}}`; a failed call may also come as a bare `{code, message}` with an HTTP error status.
pub fn parse_frame(status: u16, body: &str) -> Result<Value, FrameError> {
    let value: Value = serde_json::from_str(body).map_err(|_| {
        FrameError::Unreadable(if (200..300).contains(&status) {
            "something that is not JSON"
        } else {
            "an HTTP error"
        })
    })?;
    let error = value
        .get("error")
        .or_else(|| value.get("code").is_some().then_some(&value));
    if let Some(error) = error {
        let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
        if code == 401 {
            return Err(FrameError::Unauthorized);
        }
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("no message")
            .to_owned();
        return Err(FrameError::Rpc { code, message });
    }
    if !(200..300).contains(&status) {
        return Err(FrameError::Unreadable("an HTTP error"));
    }
    value
        .get("result")
        .cloned()
        .ok_or(FrameError::Unreadable("a frame without `result`"))
}

/// The `Authorization` header answering a digest `challenge` (`WWW-Authenticate`) for `POST /rpc` with `body`.
pub fn digest_response(challenge: &str, password: &str, body: &[u8]) -> Result<String, String> {
    if challenge.trim().is_empty() {
        return Err("it answered 401 without a WWW-Authenticate challenge".to_owned());
    }
    if !challenge.trim_start().starts_with("Digest") {
        return Err(format!(
            "it asks for a password but not with a digest challenge (WWW-Authenticate: {})",
            excerpt(challenge)
        ));
    }
    let mut prompt = digest_auth::parse(challenge).map_err(|_| {
        format!(
            "its digest challenge is unreadable (WWW-Authenticate: {})",
            excerpt(challenge)
        )
    })?;
    let context = digest_auth::AuthContext::new_post(USER, password, RPC_PATH, Some(body));
    prompt
        .respond(&context)
        .map(|h| h.to_header_string())
        .map_err(|_| "its digest challenge cannot be answered".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256_hex(s: &str) -> String {
        use sha2::Digest;
        sha2::Sha256::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Splits `k="v", k=v` pairs of an Authorization header.
    fn params(header: &str) -> std::collections::HashMap<String, String> {
        header
            .trim_start_matches("Digest ")
            .split(", ")
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim_matches('"').to_owned()))
            .collect()
    }

    #[test]
    fn the_digest_answers_a_gen2_challenge_with_sha256() {
        let challenge = r#"Digest qop="auth", realm="shellyplus1pm-a8032ab12345", nonce="1672527632", algorithm=SHA-256"#;
        let header = digest_response(challenge, "s3cret-pw", b"{}").unwrap();
        let p = params(&header);
        assert_eq!(p["username"], "admin");
        assert_eq!(p["realm"], "shellyplus1pm-a8032ab12345");
        assert_eq!(p["uri"], "/rpc");
        assert_eq!(p["algorithm"], "SHA-256");
        assert_eq!(p["qop"], "auth");
        // RFC 7616 with SHA-256, as the device checks it.
        let ha1 = sha256_hex("admin:shellyplus1pm-a8032ab12345:s3cret-pw");
        let ha2 = sha256_hex("POST:/rpc");
        let expected = sha256_hex(&format!(
            "{ha1}:1672527632:{}:{}:auth:{ha2}",
            p["nc"], p["cnonce"]
        ));
        assert_eq!(p["response"], expected);
        assert!(!header.contains("s3cret-pw"));
    }

    #[test]
    fn a_challenge_that_is_not_digest_is_an_error_that_names_it() {
        let err = digest_response(r#"Basic realm="x""#, "pw", b"").unwrap_err();
        assert!(err.contains("Basic"), "{err}");
    }

    #[test]
    fn frames_give_results_or_errors() {
        assert_eq!(
            parse_frame(
                200,
                r#"{"id":1,"src":"shellyplus1pm-a8032ab12345","result":{"was_on":false}}"#
            ),
            Ok(json!({"was_on": false}))
        );
        assert_eq!(
            parse_frame(
                200,
                r#"{"id":1,"src":"s","error":{"code":-105,"message":"Argument 'id', value 3 not found!"}}"#
            ),
            Err(FrameError::Rpc {
                code: -105,
                message: "Argument 'id', value 3 not found!".into()
            })
        );
        assert_eq!(
            parse_frame(500, r#"{"code":-105,"message":"not found"}"#),
            Err(FrameError::Rpc {
                code: -105,
                message: "not found".into()
            })
        );
        assert_eq!(
            parse_frame(
                200,
                r#"{"id":1,"error":{"code":401,"message":"{\"auth_type\":\"digest\"}"}}"#
            ),
            Err(FrameError::Unauthorized)
        );
        assert!(matches!(
            parse_frame(200, "<html>"),
            Err(FrameError::Unreadable(_))
        ));
        assert!(matches!(
            parse_frame(404, "Not Found"),
            Err(FrameError::Unreadable(_))
        ));
        assert!(matches!(
            parse_frame(200, r#"{"id":1}"#),
            Err(FrameError::Unreadable(_))
        ));
    }

    #[test]
    fn request_frames_are_json_rpc() {
        let frame: Value =
            serde_json::from_str(&request_frame("Switch.Set", json!({"id": 0, "on": true})))
                .unwrap();
        assert_eq!(frame["method"], "Switch.Set");
        assert_eq!(frame["params"], json!({"id": 0, "on": true}));
        assert_eq!(frame["id"], 1);
    }
}
