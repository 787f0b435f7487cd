//! Tasmota plugs: web commands `GET /cm?cmnd=Power<relay>%20On|Off` and `cmnd=Power<relay>` (state), with
//! `user` and `password` in the query when the web interface has a password; answers `{"POWER":"ON"}` or
//! `{"POWER1":"OFF"}`, and `{"WARNING":"Need user=<username>&password=<password>"}` (HTTP 401) for missing or
//! wrong credentials.

use reqwest::StatusCode;
use serde_json::Value;

use super::http::{encode_query_value, excerpt, Endpoint};
use super::{PowerError, Switch};
use crate::config::PowerConfig;
use outpost_cloud_link::control::PowerState;

/// Tasmota's web user when the binding names none.
pub const DEFAULT_USER: &str = "admin";

/// One relay of a Tasmota device.
#[derive(Debug)]
pub struct TasmotaSwitch {
    endpoint: Endpoint,
    relay: u32,
    /// `(user, password)` when the web interface has a password.
    credentials: Option<(String, String)>,
}

impl TasmotaSwitch {
    pub fn new(
        config: &PowerConfig,
        host: &str,
        relay: u32,
        user: Option<&str>,
        password: Option<&str>,
    ) -> Result<Self, PowerError> {
        let user = user.filter(|u| !u.is_empty());
        let password = password.filter(|p| !p.is_empty());
        let credentials = match (user, password) {
            (_, Some(p)) => Some((user.unwrap_or(DEFAULT_USER).to_owned(), p.to_owned())),
            (Some(u), None) => Some((u.to_owned(), String::new())),
            (None, None) => None,
        };
        Ok(TasmotaSwitch {
            endpoint: Endpoint::new(config, host)?,
            relay,
            credentials,
        })
    }

    /// Runs one command (`Power1 On`, `Power1`) and returns what the relay reports.
    async fn command(&self, command: &str) -> Result<PowerState, PowerError> {
        let url = self
            .endpoint
            .url(&command_path(command, self.credentials.as_ref()))?;
        let http = self.endpoint.client();
        let resp = self.endpoint.send(|| http.get(url.clone())).await?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| self.endpoint.transport_error(e, 1))?;
        let host = self.endpoint.host.clone();
        match parse_answer(status, &text, self.relay) {
            Ok(state) => Ok(state),
            Err(Answer::NeedsCredentials) => Err(PowerError::AuthFailed {
                host,
                detail: if self.credentials.is_some() {
                    "Tasmota refused the user and password (\"Need user=<username>&password=<password>\"): check them in the outlet binding".to_owned()
                } else {
                    "Tasmota asks for a user and password and the binding has none: set the web password (and user, admin by default) in the outlet binding".to_owned()
                },
            }),
            Err(Answer::UnknownCommand) => Err(PowerError::Outlet {
                host,
                detail: format!(
                    "Tasmota does not know the command {:?}: check the relay number ({})",
                    command.split(' ').next().unwrap_or(command),
                    self.relay
                ),
            }),
            Err(Answer::Unreadable) => Err(PowerError::Outlet {
                host,
                detail: format!(
                    "{:?} answered HTTP {status} with no power state for relay {}: {}",
                    command.split(' ').next().unwrap_or(command),
                    self.relay,
                    excerpt(&text)
                ),
            }),
        }
    }
}

impl Switch for TasmotaSwitch {
    fn host(&self) -> &str {
        &self.endpoint.host
    }

    fn what(&self) -> String {
        format!("Tasmota relay {}", self.relay.max(1))
    }

    fn method(&self) -> &'static str {
        "a Tasmota plug"
    }

    async fn set(&self, on: bool) -> Result<(), PowerError> {
        let command = format!(
            "{} {}",
            power_command(self.relay),
            if on { "On" } else { "Off" }
        );
        self.command(&command).await.map(drop)
    }

    async fn read(&self) -> Result<PowerState, PowerError> {
        self.command(&power_command(self.relay)).await
    }
}

/// `Power` for relay 0 (the first relay), `Power<N>` otherwise.
pub fn power_command(relay: u32) -> String {
    if relay == 0 {
        "Power".to_owned()
    } else {
        format!("Power{relay}")
    }
}

/// `/cm?user=U&password=P&cmnd=C` (credentials only when set), every value percent-encoded.
pub fn command_path(command: &str, credentials: Option<&(String, String)>) -> String {
    let mut path = String::from("/cm?");
    if let Some((user, password)) = credentials {
        path.push_str(&format!(
            "user={}&password={}&",
            encode_query_value(user),
            encode_query_value(password)
        ));
    }
    path.push_str("cmnd=");
    path.push_str(&encode_query_value(command));
    path
}

/// Why an answer carries no power state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// HTTP 401, or `{"WARNING":"Need user=<username>&password=<password>"}`.
    NeedsCredentials,
    /// `{"Command":"Unknown"}` (e.g. a relay the device does not have).
    UnknownCommand,
    Unreadable,
}

/// The state of `relay` in an answer: `POWER<relay>`, or `POWER` for the first relay (a device with one relay
/// answers `POWER` whatever index it was asked with).
pub fn parse_answer(status: StatusCode, body: &str, relay: u32) -> Result<PowerState, Answer> {
    let value: Option<Value> = serde_json::from_str(body).ok();
    let field = |key: &str| value.as_ref().and_then(|v| v.get(key));
    let warning = field("WARNING").and_then(Value::as_str).unwrap_or_default();
    if status == StatusCode::UNAUTHORIZED || warning.contains("Need user") {
        return Err(Answer::NeedsCredentials);
    }
    if field("Command").and_then(Value::as_str) == Some("Unknown") {
        return Err(Answer::UnknownCommand);
    }
    if !status.is_success() {
        return Err(Answer::Unreadable);
    }
    let mut keys = vec![format!("POWER{}", relay.max(1))];
    if relay <= 1 {
        keys.insert(0, "POWER".to_owned());
    }
    let word = keys
        .iter()
        .find_map(|k| field(k))
        .and_then(Value::as_str)
        .ok_or(Answer::Unreadable)?;
    match word.to_ascii_uppercase().as_str() {
        "ON" | "1" | "TRUE" => Ok(PowerState::On),
        "OFF" | "0" | "FALSE" => Ok(PowerState::Off),
        _ => Err(Answer::Unreadable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_name_the_relay_and_are_encoded() {
        assert_eq!(power_command(0), "Power");
        assert_eq!(power_command(2), "Power2");
        assert_eq!(command_path("Power On", None), "/cm?cmnd=Power%20On");
        let creds = ("admin".to_owned(), "p&ss=w rd".to_owned());
        assert_eq!(
            command_path("Power2 Off", Some(&creds)),
            "/cm?user=admin&password=p%26ss%3Dw%20rd&cmnd=Power2%20Off"
        );
    }

    #[test]
    fn answers_give_the_relay_state() {
        let ok = StatusCode::OK;
        assert_eq!(parse_answer(ok, r#"{"POWER":"ON"}"#, 0), Ok(PowerState::On));
        assert_eq!(
            parse_answer(ok, r#"{"POWER":"OFF"}"#, 1),
            Ok(PowerState::Off)
        );
        assert_eq!(
            parse_answer(ok, r#"{"POWER1":"OFF"}"#, 0),
            Ok(PowerState::Off)
        );
        assert_eq!(
            parse_answer(ok, r#"{"POWER2":"ON"}"#, 2),
            Ok(PowerState::On)
        );
        // Another relay's state is not this one's.
        assert_eq!(
            parse_answer(ok, r#"{"POWER":"ON"}"#, 2),
            Err(Answer::Unreadable)
        );
        assert_eq!(
            parse_answer(ok, r#"{"Command":"Unknown"}"#, 5),
            Err(Answer::UnknownCommand)
        );
        assert_eq!(parse_answer(ok, "<html>", 0), Err(Answer::Unreadable));
    }

    #[test]
    fn the_need_user_warning_is_an_auth_failure() {
        let body = r#"{"WARNING":"Need user=<username>&password=<password>"}"#;
        assert_eq!(
            parse_answer(StatusCode::UNAUTHORIZED, body, 0),
            Err(Answer::NeedsCredentials)
        );
        assert_eq!(
            parse_answer(StatusCode::OK, body, 0),
            Err(Answer::NeedsCredentials)
        );
        assert_eq!(
            parse_answer(StatusCode::UNAUTHORIZED, "", 0),
            Err(Answer::NeedsCredentials)
        );
    }

    #[test]
    fn a_password_without_a_user_uses_admin() {
        let config = PowerConfig::default();
        let t = TasmotaSwitch::new(&config, "10.0.0.4", 1, None, Some("pw")).unwrap();
        assert_eq!(t.credentials, Some(("admin".into(), "pw".into())));
        let t = TasmotaSwitch::new(&config, "10.0.0.4", 1, Some(""), Some("")).unwrap();
        assert_eq!(t.credentials, None);
    }
}
