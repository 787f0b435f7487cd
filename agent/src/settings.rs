//! The portal's settings over the local configuration file: the local `agent.toml` is the bootstrap, the
//! portal's document (`outpost_cloud_link::settings::SettingsDoc`) is laid over it except for the settings the
//! file pins, and the result is checked with the same rules as the file alone. The document the agent runs
//! with is kept in `STATE/settings.json` and laid over the file again at every start; a cleanup removes it
//! (the agent goes back to the file alone).
//!
//! What changes without a restart ([`needs_restart`] says): the heartbeat, the outbox's size and the report
//! interval. Anything else (interfaces, platform, discovery, blocking, power) takes a restart, which the
//! agent does by itself under its launcher.

use std::path::{Path, PathBuf};
use std::time::Duration;

use outpost_cloud_link::settings::{Settings, SettingsDoc};
use serde_json::{Map, Value};

use crate::config::{Config, ConfigError, RawConfig, DEFAULT_PATH};
use crate::state_dir::{atomic_write, remove_if_exists, StateDirError};

/// The local configuration file as read, kept to lay the portal's settings over it.
#[derive(Debug, Clone)]
pub struct LocalFile {
    path: PathBuf,
    /// The file's TOML as a JSON tree (an empty table when the default file is missing).
    value: Value,
}

/// Why a settings document is refused: a message naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

impl LocalFile {
    /// Reads `explicit` (which must exist) or else the default path (whose absence means the defaults).
    pub fn load(explicit: Option<&Path>) -> Result<LocalFile, ConfigError> {
        let (path, required) = match explicit {
            Some(p) => (p.to_owned(), true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => String::new(),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        // Parse as the configuration first: its errors are the precise ones.
        RawConfig::parse(&text, &path)?;
        let value: Value = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.clone(),
            source,
        })?;
        Ok(LocalFile { path, value })
    }

    /// The file alone.
    pub fn config(&self) -> Result<Config, ConfigError> {
        self.raw(&self.value)?.validate(&self.path)
    }

    fn raw(&self, value: &Value) -> Result<RawConfig, ConfigError> {
        serde_json::from_value(value.clone()).map_err(|e| ConfigError::Invalid {
            path: self.path.clone(),
            message: e.to_string(),
        })
    }

    /// The settings the file pins.
    pub fn pinned(&self) -> Vec<String> {
        self.value["pinned"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The file with `settings` laid over it: the configuration and the settings left at their local value
    /// because the file pins them. Refused, naming the field, when the document or the result is invalid.
    pub fn with_settings(&self, settings: &Settings) -> Result<(Config, Vec<String>), Refused> {
        settings.validate().map_err(|e| Refused(e.to_string()))?;
        let pinned = self.pinned();
        let kept: Vec<String> = settings
            .paths()
            .into_iter()
            .filter(|p| pinned.iter().any(|q| q == p))
            .map(str::to_owned)
            .collect();
        let mut overlay = serde_json::to_value(settings).unwrap_or(Value::Object(Map::new()));
        for p in &kept {
            remove_path(&mut overlay, p);
        }
        let mut merged = self.value.clone();
        merge(&mut merged, overlay);
        let raw = self.raw(&merged).map_err(|e| Refused(e.to_string()))?;
        let config = raw.validate(&self.path).map_err(|e| match e {
            ConfigError::Invalid { message, .. } => Refused(message),
            other => Refused(other.to_string()),
        })?;
        Ok((config, kept))
    }
}

/// Removes `a` or `a.b` from a JSON tree.
fn remove_path(value: &mut Value, path: &str) {
    match path.split_once('.') {
        None => {
            if let Some(o) = value.as_object_mut() {
                o.remove(path);
            }
        }
        Some((table, key)) => {
            if let Some(t) = value.get_mut(table).and_then(Value::as_object_mut) {
                t.remove(key);
            }
        }
    }
}

/// Lays `over` onto `base`: tables are merged key by key, anything else replaced.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// What moving the running configuration from `old` to `new` takes (new settings from the portal, or the
/// local file alone again after a cleanup): the live settings to change at once, and whether anything else
/// changed, which takes a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub heartbeat: Option<Duration>,
    pub outbox_max_bytes: Option<u64>,
    pub report_interval: Option<Duration>,
    pub restart: bool,
}

impl Change {
    pub fn between(old: &Config, new: &Config) -> Change {
        Change {
            heartbeat: (new.heartbeat != old.heartbeat).then_some(new.heartbeat),
            outbox_max_bytes: (new.outbox_max_bytes != old.outbox_max_bytes)
                .then_some(new.outbox_max_bytes),
            report_interval: (new.discovery.report_interval != old.discovery.report_interval)
                .then_some(new.discovery.report_interval),
            restart: needs_restart(old, new),
        }
    }
}

/// Whether going from `old` to `new` needs a restart (anything but the heartbeat, the outbox size and the
/// report interval changed).
pub fn needs_restart(old: &Config, new: &Config) -> bool {
    let mut live = new.clone();
    live.heartbeat = old.heartbeat;
    live.outbox_max_bytes = old.outbox_max_bytes;
    live.discovery.report_interval = old.discovery.report_interval;
    live != *old
}

/// `STATE/settings.json`: the document the agent runs with.
#[derive(Debug, Clone)]
pub struct StoredSettings {
    path: PathBuf,
}

impl StoredSettings {
    /// The file (`StateDir::settings`).
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored document; an unreadable one is an error naming the file.
    pub fn load(&self) -> Result<Option<SettingsDoc>, StateDirError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => SettingsDoc::parse(&bytes).map(Some).map_err(|e| {
                StateDirError::io(
                    "parse",
                    &self.path,
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StateDirError::io("read", &self.path, e)),
        }
    }

    /// Stores the document durably (fsynced).
    pub fn save(&self, doc: &SettingsDoc) -> Result<(), StateDirError> {
        let bytes = serde_json::to_vec_pretty(doc).map_err(|e| {
            StateDirError::io(
                "encode",
                &self.path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            )
        })?;
        atomic_write(&self.path, &bytes, 0o600, true)
    }

    /// Forgets the document (a cleanup): the agent runs with the local file alone.
    pub fn remove(&self) -> Result<(), StateDirError> {
        remove_if_exists(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_cloud_link::settings::limits;

    fn local(text: &str) -> LocalFile {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, text).unwrap();
        LocalFile::load(Some(&path)).unwrap()
    }

    fn settings(json: &str) -> Settings {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_portals_settings_win_over_the_file_except_where_it_pins_them() {
        let file = local(
            "pinned = [\"interfaces\"]\ninterfaces = [\"lan0\"]\nheartbeat_secs = 30\n[discovery]\nsweep_interval_secs = 300\nmdns = false\n",
        );
        let (config, kept) = file
            .with_settings(&settings(
                r#"{"interfaces": [{"name": "eth9", "vlan": 9}], "heartbeat_secs": 5,
                    "discovery": {"sweep_interval_secs": 60}}"#,
            ))
            .unwrap();
        assert_eq!(kept, ["interfaces"]);
        assert_eq!(config.interfaces.as_deref().map(<[_]>::len), Some(1));
        assert_eq!(
            config.interfaces.as_deref().unwrap_or_default()[0].name,
            "lan0",
            "pinned: the file's"
        );
        assert_eq!(config.heartbeat, Duration::from_secs(5));
        assert_eq!(config.discovery.sweep_interval, Duration::from_secs(60));
        assert!(
            !config.discovery.mdns,
            "a key the document leaves out keeps the file's value"
        );
    }

    #[test]
    fn an_invalid_document_is_refused_naming_the_field_and_the_file_alone_still_holds() {
        let file = local("[discovery]\nenabled = false\n");
        let e = file
            .with_settings(&settings(r#"{"discovery": {"retries": 50}}"#))
            .unwrap_err();
        assert!(e.0.starts_with("discovery.retries:"), "{e}");
        // A combination only the agent's rules catch: a tagged interface without the VLAN on the table.
        let e = file
            .with_settings(&settings(
                r#"{"interfaces": [{"name": "a", "vlan": 3}, {"name": "b", "vlan": 3}]}"#,
            ))
            .unwrap_err();
        assert!(e.0.contains("interfaces[1].vlan"), "{e}");
        assert!(file.config().is_ok());
    }

    #[test]
    fn only_heartbeat_outbox_and_report_interval_change_live() {
        let file = local("[discovery]\nenabled = false\n");
        let old = file.config().unwrap();
        let (live, _) = file
            .with_settings(&settings(
                r#"{"heartbeat_secs": 2, "outbox_max_bytes": 100000, "discovery": {"report_interval_secs": 1}}"#,
            ))
            .unwrap();
        assert!(!needs_restart(&old, &live));
        let (restart, _) = file
            .with_settings(&settings(r#"{"discovery": {"rate_pps": 100}}"#))
            .unwrap();
        assert!(needs_restart(&old, &restart));
    }

    #[test]
    fn going_back_to_the_file_changes_the_live_settings_at_once_and_restarts_for_the_others() {
        let file = local("heartbeat_secs = 30\n[discovery]\nenabled = false\n");
        let alone = file.config().unwrap();
        // Nothing was pushed: nothing changes.
        assert_eq!(
            Change::between(&alone, &alone),
            Change {
                heartbeat: None,
                outbox_max_bytes: None,
                report_interval: None,
                restart: false
            }
        );
        // Only live settings were pushed: they go back to the file's now, no restart.
        let (live, _) = file
            .with_settings(&settings(
                r#"{"heartbeat_secs": 2, "outbox_max_bytes": 100000, "discovery": {"report_interval_secs": 1}}"#,
            ))
            .unwrap();
        assert_eq!(
            Change::between(&live, &alone),
            Change {
                heartbeat: Some(Duration::from_secs(30)),
                outbox_max_bytes: Some(alone.outbox_max_bytes),
                report_interval: Some(alone.discovery.report_interval),
                restart: false
            }
        );
        // A setting that is not live was pushed too: the live ones still go back at once, and a restart.
        let (both, _) = file
            .with_settings(&settings(
                r#"{"heartbeat_secs": 2, "discovery": {"rate_pps": 100}}"#,
            ))
            .unwrap();
        let back = Change::between(&both, &alone);
        assert_eq!(back.heartbeat, Some(Duration::from_secs(30)));
        assert_eq!(back.outbox_max_bytes, None);
        assert!(back.restart);
    }

    /// The portal checks documents with the shared limits; the agent with its own rules. They must agree at
    /// every boundary, or the portal would accept what the agent refuses (or the other way round).
    #[test]
    fn the_shared_limits_agree_with_the_agents_own_rules() {
        let file = local("[discovery]\nenabled = false\n");
        let cases: Vec<(String, bool)> = vec![
            (
                format!(r#"{{"heartbeat_secs": {}}}"#, limits::HEARTBEAT_MIN_SECS),
                true,
            ),
            (
                format!(
                    r#"{{"heartbeat_secs": {}}}"#,
                    limits::HEARTBEAT_MIN_SECS / 2.0
                ),
                false,
            ),
            (
                format!(r#"{{"outbox_max_bytes": {}}}"#, limits::OUTBOX_MIN_BYTES),
                true,
            ),
            (
                format!(
                    r#"{{"outbox_max_bytes": {}}}"#,
                    limits::OUTBOX_MIN_BYTES - 1
                ),
                false,
            ),
            (
                format!(
                    r#"{{"discovery": {{"sweep_interval_secs": {}}}}}"#,
                    limits::SWEEP_INTERVAL_MIN_SECS
                ),
                true,
            ),
            (
                format!(
                    r#"{{"discovery": {{"sweep_interval_secs": {}}}}}"#,
                    limits::SWEEP_INTERVAL_MIN_SECS / 2.0
                ),
                false,
            ),
            (
                format!(
                    r#"{{"discovery": {{"rate_pps": {}}}}}"#,
                    limits::RATE_PPS_MAX
                ),
                true,
            ),
            (
                format!(
                    r#"{{"discovery": {{"rate_pps": {}}}}}"#,
                    limits::RATE_PPS_MAX + 1
                ),
                false,
            ),
            (
                format!(r#"{{"discovery": {{"retries": {}}}}}"#, limits::RETRIES_MAX),
                true,
            ),
            (
                format!(
                    r#"{{"discovery": {{"retries": {}}}}}"#,
                    limits::RETRIES_MAX + 1
                ),
                false,
            ),
            (
                format!(
                    r#"{{"discovery": {{"probe_interval_secs": {}}}}}"#,
                    limits::PROBE_INTERVAL_MIN_SECS
                ),
                true,
            ),
            (
                format!(
                    r#"{{"discovery": {{"probe_interval_secs": {}}}}}"#,
                    limits::PROBE_INTERVAL_MIN_SECS / 2.0
                ),
                false,
            ),
            (
                format!(
                    r#"{{"discovery": {{"offline_after_missed": {}}}}}"#,
                    limits::OFFLINE_AFTER_MISSED_MAX
                ),
                true,
            ),
            (
                format!(
                    r#"{{"discovery": {{"offline_after_missed": {}}}}}"#,
                    limits::OFFLINE_AFTER_MISSED_MAX + 1
                ),
                false,
            ),
            (
                r#"{"discovery": {"offline_after_missed": 0}}"#.to_owned(),
                false,
            ),
            (
                format!(
                    r#"{{"discovery": {{"ssdp_interval_secs": {}}}}}"#,
                    limits::SSDP_INTERVAL_MIN_SECS
                ),
                true,
            ),
            (
                format!(
                    r#"{{"discovery": {{"report_interval_secs": {}}}}}"#,
                    limits::REPORT_INTERVAL_MIN_SECS
                ),
                true,
            ),
            (
                format!(
                    r#"{{"blocking": {{"repeat_secs": {}}}}}"#,
                    limits::REPEAT_MIN_SECS
                ),
                true,
            ),
            (
                format!(
                    r#"{{"blocking": {{"repeat_secs": {}}}}}"#,
                    limits::REPEAT_MIN_SECS / 2.0
                ),
                false,
            ),
            (
                format!(
                    r#"{{"blocking": {{"restore_replies": {}}}}}"#,
                    limits::RESTORE_REPLIES_MAX
                ),
                true,
            ),
            (
                format!(
                    r#"{{"blocking": {{"restore_replies": {}}}}}"#,
                    limits::RESTORE_REPLIES_MAX + 1
                ),
                false,
            ),
            (
                format!(
                    r#"{{"power": {{"timeout_secs": {}}}}}"#,
                    limits::POWER_TIMEOUT_MIN_SECS
                ),
                true,
            ),
            (
                format!(
                    r#"{{"power": {{"retries": {}}}}}"#,
                    limits::POWER_RETRIES_MAX
                ),
                true,
            ),
            (
                format!(
                    r#"{{"power": {{"retries": {}}}}}"#,
                    limits::POWER_RETRIES_MAX + 1
                ),
                false,
            ),
            (
                r#"{"interfaces": [{"name": "eth0.20", "vlan": 20, "tagged": true}]}"#.to_owned(),
                true,
            ),
        ];
        for (json, ok) in cases {
            let s = settings(&json);
            let shared = s.validate().is_ok();
            // The agent's own rules, on the merged file, without the shared check in front.
            let mut merged = file.value.clone();
            merge(&mut merged, serde_json::to_value(&s).unwrap());
            let agent = file
                .raw(&merged)
                .and_then(|r| r.validate(Path::new("x")))
                .is_ok();
            assert_eq!((shared, agent), (ok, ok), "{json}");
        }
    }

    #[test]
    fn the_stored_document_survives_and_a_damaged_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let stored = StoredSettings::new(dir.path().join("settings.json"));
        assert_eq!(stored.load().unwrap(), None);
        let doc = SettingsDoc {
            version: 7,
            settings: settings(r#"{"heartbeat_secs": 3}"#),
        };
        stored.save(&doc).unwrap();
        assert_eq!(stored.load().unwrap(), Some(doc));
        std::fs::write(stored.path(), "{").unwrap();
        assert!(stored.load().is_err());
    }
}
