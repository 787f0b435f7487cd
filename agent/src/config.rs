//! The agent's TOML configuration: raw serde form, validated into ready values, with compiled-in defaults.
//!
//! [`DEFAULT_TOML`] is the documented default file (`outpost-agent print-config` prints it); a missing
//! default config file means these defaults, a missing file named explicitly is an error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The documented default configuration, as `print-config` prints it.
pub const DEFAULT_TOML: &str = include_str!("../default-agent.toml");

/// Where `run` looks for its configuration unless `--config` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/outpost/agent.toml";

/// Smallest accepted outbox: a few heartbeats and a hello must fit.
const MIN_OUTBOX_BYTES: u64 = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The file as written: plain numbers, checked by [`RawConfig::validate`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub interfaces: Vec<String>,
    #[serde(default = "defaults::heartbeat_secs")]
    pub heartbeat_secs: f64,
    #[serde(default = "defaults::outbox_max_bytes")]
    pub outbox_max_bytes: u64,
    #[serde(default = "defaults::reconnect_initial_ms")]
    pub reconnect_initial_ms: u64,
    #[serde(default = "defaults::reconnect_max_secs")]
    pub reconnect_max_secs: f64,
    #[serde(default = "defaults::disabled_poll_secs")]
    pub disabled_poll_secs: f64,
    #[serde(default = "defaults::log_format")]
    pub log_format: LogFormat,
}

mod defaults {
    use super::LogFormat;
    pub fn heartbeat_secs() -> f64 {
        30.0
    }
    pub fn outbox_max_bytes() -> u64 {
        8 * 1024 * 1024
    }
    pub fn reconnect_initial_ms() -> u64 {
        500
    }
    pub fn reconnect_max_secs() -> f64 {
        60.0
    }
    pub fn disabled_poll_secs() -> f64 {
        60.0
    }
    pub fn log_format() -> LogFormat {
        LogFormat::Text
    }
}

/// The validated configuration the daemon runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Interfaces the agent watches (discovery and blocking read this later); empty means none.
    pub interfaces: Vec<String>,
    pub heartbeat: Duration,
    pub outbox_max_bytes: u64,
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    pub disabled_poll: Duration,
    pub log_format: LogFormat,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            heartbeat: Duration::from_secs(30),
            outbox_max_bytes: defaults::outbox_max_bytes(),
            reconnect_initial: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(60),
            disabled_poll: Duration::from_secs(60),
            log_format: LogFormat::Text,
        }
    }
}

/// A positive, finite number of seconds of at least `min_ms` milliseconds.
fn seconds(key: &str, value: f64, min_ms: u64) -> Result<Duration, String> {
    if !value.is_finite() || value <= 0.0 {
        return Err(format!(
            "{key} = {value}: must be a positive number of seconds"
        ));
    }
    if value > 86_400.0 * 30.0 {
        return Err(format!("{key} = {value}: at most 30 days (2592000)"));
    }
    let d = Duration::from_secs_f64(value);
    if d < Duration::from_millis(min_ms) {
        return Err(format!(
            "{key} = {value}: at least {} s",
            min_ms as f64 / 1000.0
        ));
    }
    Ok(d)
}

impl RawConfig {
    /// Parses TOML text (`path` only names the source in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Checks every value and turns it into what the daemon uses.
    pub fn validate(self, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        let heartbeat = seconds("heartbeat_secs", self.heartbeat_secs, 50).map_err(invalid)?;
        let reconnect_max =
            seconds("reconnect_max_secs", self.reconnect_max_secs, 10).map_err(invalid)?;
        let disabled_poll =
            seconds("disabled_poll_secs", self.disabled_poll_secs, 50).map_err(invalid)?;
        if self.reconnect_initial_ms == 0 {
            return Err(invalid(
                "reconnect_initial_ms = 0: must be at least 1".to_owned(),
            ));
        }
        let reconnect_initial = Duration::from_millis(self.reconnect_initial_ms);
        if reconnect_initial > reconnect_max {
            return Err(invalid(format!(
                "reconnect_initial_ms ({} ms) is larger than reconnect_max_secs ({} s)",
                self.reconnect_initial_ms, self.reconnect_max_secs
            )));
        }
        if self.outbox_max_bytes < MIN_OUTBOX_BYTES {
            return Err(invalid(format!(
                "outbox_max_bytes = {}: at least {MIN_OUTBOX_BYTES}",
                self.outbox_max_bytes
            )));
        }
        let mut interfaces = Vec::with_capacity(self.interfaces.len());
        for name in self.interfaces {
            // Linux interface names: 1..=15 bytes, no '/', no whitespace.
            if name.is_empty()
                || name.len() > 15
                || name.contains('/')
                || name.chars().any(char::is_whitespace)
            {
                return Err(invalid(format!(
                    "interfaces: {name:?} is not a network interface name (1-15 characters, no '/' or spaces)"
                )));
            }
            if !interfaces.contains(&name) {
                interfaces.push(name);
            }
        }
        Ok(Config {
            interfaces,
            heartbeat,
            outbox_max_bytes: self.outbox_max_bytes,
            reconnect_initial,
            reconnect_max,
            disabled_poll,
            log_format: self.log_format,
        })
    }
}

impl Config {
    /// Parses and validates TOML text.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        RawConfig::parse(text, path)?.validate(path)
    }

    /// Loads `explicit` (which must exist) or else the default path (whose absence means defaults).
    pub fn load(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        let (path, required) = match explicit {
            Some(p) => (p.to_owned(), true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_toml(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok(Config::default())
            }
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("test.toml"))
    }

    #[test]
    fn the_documented_default_file_is_the_default() {
        assert_eq!(parse(DEFAULT_TOML).unwrap(), Config::default());
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn fractional_seconds_for_tests() {
        let c = parse("heartbeat_secs = 0.2\ndisabled_poll_secs = 1\nreconnect_initial_ms = 50\nreconnect_max_secs = 0.5\ninterfaces = [\"lan0\", \"lan0\", \"br-lan\"]\nlog_format = \"json\"").unwrap();
        assert_eq!(c.heartbeat, Duration::from_millis(200));
        assert_eq!(c.disabled_poll, Duration::from_secs(1));
        assert_eq!(c.reconnect_initial, Duration::from_millis(50));
        assert_eq!(c.reconnect_max, Duration::from_millis(500));
        assert_eq!(c.interfaces, ["lan0", "br-lan"]);
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = parse("heartbeat = 3").unwrap_err().to_string();
        assert!(err.contains("unknown field `heartbeat`"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, key) in [
            ("heartbeat_secs = 0", "heartbeat_secs"),
            ("heartbeat_secs = -1", "heartbeat_secs"),
            ("heartbeat_secs = nan", "heartbeat_secs"),
            ("disabled_poll_secs = 0.001", "disabled_poll_secs"),
            ("outbox_max_bytes = 10", "outbox_max_bytes"),
            ("reconnect_initial_ms = 0", "reconnect_initial_ms"),
            (
                "reconnect_initial_ms = 5000\nreconnect_max_secs = 1",
                "reconnect_initial_ms",
            ),
            ("interfaces = [\"a/b\"]", "interfaces"),
            ("interfaces = [\"\"]", "interfaces"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(matches!(err, ConfigError::Invalid { .. }), "{text}: {err}");
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
        assert!(matches!(
            parse("log_format = \"xml\""),
            Err(ConfigError::Parse { .. })
        ));
        assert!(matches!(
            parse("heartbeat_secs = \"30\""),
            Err(ConfigError::Parse { .. })
        ));
    }

    #[test]
    fn a_missing_explicit_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        assert!(matches!(
            Config::load(Some(&missing)),
            Err(ConfigError::Read { .. })
        ));
        let present = dir.path().join("agent.toml");
        std::fs::write(&present, "heartbeat_secs = 5").unwrap();
        assert_eq!(
            Config::load(Some(&present)).unwrap().heartbeat,
            Duration::from_secs(5)
        );
    }
}
