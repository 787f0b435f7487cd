//! Agent settings pushed from the portal: each agent has one versioned settings document
//! (`cloud_link::settings`), checked here with the agent's own rules ([`Settings::validate`]) and sent as
//! `Command::ApplySettings` through the command queue (now if the agent is online, else at its next hello).
//! The agent's acknowledgement (`SettingsApplied`, or a refusal with its code and message) updates the
//! record; every step is a line of the agent's history. A hello with an older version than the stored one
//! (or none while one is stored) queues the current document again, unless it is already on its way or the
//! agent refused it as invalid: the agent re-syncs after a restore or a re-install.
//!
//! A cleanup (`app::agents`) deletes the record: the agent is then like one that never had settings
//! (version numbers start again at 1), whatever settings version its hello still reports, and the
//! acknowledgement of a document sent before the cleanup is ignored.

use outpost_cloud_link::protocol::{Ack, Command, Outcome};
use outpost_cloud_link::settings::{
    BlockingSettings, DiscoverySettings, InterfaceSetting, PowerSettings, Settings,
    SettingsApplied, SettingsDoc, SettingsError,
};
use outpost_cloud_link::AgentId;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tracing::{info, warn};

use super::{Actor, App, OpError};
use crate::store::commands::{self, CommandRow};
use crate::store::history::{self, Line};
use crate::store::settings::{self as store, SettingsRow};
use crate::store::{Conn, StoreError};

/// The history action of every settings line.
pub const HISTORY_ACTION: &str = "settings";

/// The code of the agent's refusal of a document it found invalid.
pub const INVALID_SETTINGS: &str = "invalid-settings";

/// Why a settings change was not stored.
#[derive(Debug, thiserror::Error)]
pub enum PutSettingsError {
    #[error(transparent)]
    Op(#[from] OpError),
    /// A setting out of its range, an unknown field or a value of the wrong type, named by its path.
    #[error("{0}")]
    Invalid(SettingsError),
    /// `base_version` is not the stored version: someone else changed the settings meanwhile.
    #[error("the settings are at version {current}, not {base}: someone changed them meanwhile; reload them (GET /api/v1/agents/{agent}/settings), redo your change and send it with base_version {current}")]
    Stale {
        agent: String,
        base: u64,
        current: u64,
    },
}

impl From<StoreError> for PutSettingsError {
    fn from(e: StoreError) -> Self {
        PutSettingsError::Op(e.into())
    }
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> SettingsError {
    SettingsError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// The first key of `value` (an object) whose value alone does not deserialize into `T`, with serde's
/// message; `extra` is merged into each probe (the required fields of `T`).
fn failing_key<T: DeserializeOwned>(value: &Value, extra: &Value) -> Option<(String, String)> {
    let obj = value.as_object()?;
    for (k, v) in obj {
        let mut probe = extra.as_object().cloned().unwrap_or_default();
        probe.insert(k.clone(), v.clone());
        if let Err(e) = serde_json::from_value::<T>(Value::Object(probe)) {
            return Some((k.clone(), e.to_string()));
        }
    }
    None
}

/// Reads a settings JSON object like `SettingsDoc::parse` does, but names the field of an unknown key or
/// a value of the wrong type by its path (`discovery.retries`, `interfaces[1].vlan`), then checks every
/// range with [`Settings::validate`].
pub fn parse_settings(value: &Value) -> Result<Settings, SettingsError> {
    let hint = "(the settings schema, GET /api/v1/agent-settings/schema, lists the fields and their types)";
    let Some(top) = value.as_object() else {
        return Err(invalid(
            "settings",
            format!("must be a JSON object of settings {hint}"),
        ));
    };
    let settings: Settings = match serde_json::from_value(value.clone()) {
        Ok(s) => s,
        Err(whole) => {
            let (key, message) = failing_key::<Settings>(value, &json!({}))
                .unwrap_or_else(|| ("settings".into(), whole.to_string()));
            let inner = top.get(&key).cloned().unwrap_or(Value::Null);
            let nested = match key.as_str() {
                "discovery" => failing_key::<DiscoverySettings>(&inner, &json!({})),
                "blocking" => failing_key::<BlockingSettings>(&inner, &json!({})),
                "power" => failing_key::<PowerSettings>(&inner, &json!({})),
                "interfaces" => inner.as_array().and_then(|list| {
                    list.iter().enumerate().find_map(|(i, item)| {
                        let e = serde_json::from_value::<InterfaceSetting>(item.clone()).err()?;
                        let (k, m) = failing_key::<InterfaceSetting>(item, &json!({"name": "x"}))
                            .unwrap_or_else(|| ("name".into(), e.to_string()));
                        Some((format!("[{i}].{k}"), m))
                    })
                }),
                _ => None,
            };
            let (field, message) = match nested {
                Some((k, m)) if k.starts_with('[') => (format!("{key}{k}"), m),
                Some((k, m)) => (format!("{key}.{k}"), m),
                None => (key, message),
            };
            return Err(invalid(field, format!("{message} {hint}")));
        }
    };
    settings.validate()?;
    Ok(settings)
}

/// The version of the document an `apply_settings` command carries.
pub fn command_version(cmd: &Command) -> Option<u64> {
    match cmd {
        Command::ApplySettings { doc } => doc.get("version").and_then(Value::as_u64),
        _ => None,
    }
}

fn apply_command(version: u64, settings: &Settings) -> Result<Command, OpError> {
    let doc = SettingsDoc {
        version,
        settings: settings.clone(),
    };
    let doc = serde_json::to_value(&doc)
        .map_err(|e| OpError::Internal(format!("settings document: {e}")))?;
    Ok(Command::ApplySettings { doc })
}

async fn line(
    conn: &mut Conn,
    agent: &AgentId,
    agent_name: &str,
    actor: &str,
    details: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), StoreError> {
    history::append(
        conn,
        Line {
            agent,
            agent_name,
            action: HISTORY_ACTION,
            actor,
            details,
        },
        now,
    )
    .await
}

impl App {
    /// The agent's settings record (none while it has none: no document stored, no hello naming one).
    pub async fn agent_settings(&self, agent: &AgentId) -> Result<Option<SettingsRow>, OpError> {
        self.agent(agent).await?;
        let mut conn = self.store().conn().await?;
        Ok(store::get(&mut conn, agent).await?)
    }

    /// The settings version the agent's latest hello says it runs with.
    pub async fn running_settings_version(&self, agent: &AgentId) -> Result<Option<u64>, OpError> {
        let mut conn = self.store().conn().await?;
        Ok(store::get(&mut conn, agent)
            .await?
            .and_then(|r| r.running_version))
    }

    /// Checks and stores a new version of the agent's settings (the stored one plus one), queues its
    /// `apply_settings` command (sent now if the agent is online) and writes the history; returns the
    /// record. With `base_version`, refuses unless it is the stored version.
    pub async fn put_settings(
        &self,
        agent: &AgentId,
        settings: &Value,
        base_version: Option<u64>,
        actor: &Actor,
    ) -> Result<SettingsRow, PutSettingsError> {
        let row = self.agent(agent).await?;
        let parsed = parse_settings(settings).map_err(PutSettingsError::Invalid)?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let current = store::get(&mut tx, agent)
            .await?
            .map(|r| r.version)
            .unwrap_or(0);
        if let Some(base) = base_version {
            if base != current {
                return Err(PutSettingsError::Stale {
                    agent: agent.to_string(),
                    base,
                    current,
                });
            }
        }
        let version = current + 1;
        let stored = serde_json::to_value(&parsed)
            .map_err(|e| OpError::Internal(format!("settings: {e}")))?;
        if !store::put(&mut tx, agent, version, &stored, actor.as_str(), now).await? {
            // Another change committed between our read and our write.
            let current = store::get(&mut tx, agent).await?.map_or(0, |r| r.version);
            return Err(PutSettingsError::Stale {
                agent: agent.to_string(),
                base: base_version.unwrap_or(version - 1),
                current,
            });
        }
        let cmd = apply_command(version, &parsed)?;
        let id = commands::insert(&mut tx, agent, &cmd, now).await?;
        let changed = parsed.paths().join(", ");
        let changed = if changed.is_empty() {
            "nothing set: the agent's local values".to_owned()
        } else {
            changed
        };
        line(
            &mut tx,
            agent,
            &row.name,
            actor.as_str(),
            &format!("settings v{version} stored ({changed}); command {id}"),
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        let sent = self.is_online(&row) && self.send(agent, id, &cmd).await;
        let details = if sent {
            format!("settings v{version} sent")
        } else {
            format!("settings v{version} queued: sent when the agent next connects")
        };
        {
            let mut conn = self.store().conn().await?;
            line(&mut conn, agent, &row.name, "system", &details, self.now()).await?;
        }
        info!(agent = %agent, version, command_id = id, sent, actor = actor.as_str(), "settings stored");
        let mut conn = self.store().conn().await?;
        store::get(&mut conn, agent)
            .await?
            .ok_or_else(|| OpError::Internal("settings record vanished".into()).into())
    }

    /// After the acknowledgement of an `apply_settings` command is recorded: the record and the history.
    pub async fn apply_settings_ack(&self, agent: &AgentId, ack: &Ack) -> Result<(), OpError> {
        let cmd: CommandRow = {
            let mut conn = self.store().conn().await?;
            match commands::get(&mut conn, agent, ack.command_id).await? {
                Some(c) => c,
                None => return Ok(()),
            }
        };
        let Some(version) = command_version(&cmd.command) else {
            return Ok(());
        };
        // A document sent before a cleanup was removed by it: its late acknowledgement changes nothing.
        {
            let mut conn = self.store().conn().await?;
            let cleanup = commands::latest_of_kind(&mut conn, agent, "cleanup").await?;
            if cleanup.is_some_and(|c| c > cmd.id) {
                info!(agent = %agent, version, command_id = cmd.id, cleanup_command = ?cleanup,
                    "acknowledgement of settings a cleanup removed ignored");
                return Ok(());
            }
        }
        let Ok(row) = self.agent(agent).await else {
            return Ok(());
        };
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let details = match &ack.outcome {
            Outcome::Done => {
                let applied: SettingsApplied = match ack
                    .result
                    .clone()
                    .map(serde_json::from_value::<SettingsApplied>)
                {
                    Some(Ok(a)) => a,
                    other => {
                        warn!(agent = %agent, command_id = cmd.id, result = ?other,
                            "settings acknowledged without a readable SettingsApplied; taking the command's version");
                        SettingsApplied {
                            version,
                            pinned: Vec::new(),
                            restart: false,
                        }
                    }
                };
                store::applied(
                    &mut tx,
                    agent,
                    applied.version,
                    &applied.pinned,
                    applied.restart,
                    now,
                )
                .await?;
                let mut d = format!("settings v{} applied", applied.version);
                if applied.restart {
                    d.push_str(" (restarting)");
                }
                if !applied.pinned.is_empty() {
                    d.push_str(&format!(
                        "; kept at the agent's local values (pinned): {}",
                        applied.pinned.join(", ")
                    ));
                }
                d
            }
            Outcome::Failed { message, code } => {
                store::refused(&mut tx, agent, version, code.as_deref(), message, now).await?;
                match code.as_deref() {
                    Some(c) if c != INVALID_SETTINGS => {
                        format!("settings v{version} refused ({c}): {message}")
                    }
                    _ => format!("settings v{version} refused: {message}"),
                }
            }
        };
        line(&mut tx, agent, &row.name, "agent", &details, now).await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(agent = %agent, version, command_id = cmd.id, details = %details, "settings acknowledged");
        Ok(())
    }

    /// At the agent's hello: stores the version it runs with, and queues the current document again if
    /// the agent runs an older one (or none) and no command for the current version is pending. The
    /// caller sends pending commands afterwards.
    pub async fn settings_hello(
        &self,
        agent: &AgentId,
        running: Option<u64>,
    ) -> Result<(), OpError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        store::set_running(&mut tx, agent, running).await?;
        let Some(record) = store::get(&mut tx, agent).await? else {
            tx.commit().await.map_err(StoreError::from)?;
            return Ok(());
        };
        let behind = record.version > 0 && running.is_none_or(|r| r < record.version);
        // A document the agent found invalid is not sent again at every hello (it would only be refused
        // again); a new version from the portal replaces it. Other refusals (`settings-store`: the agent
        // could not save it) are worth another try.
        let refused_as_invalid = record.state.as_deref() == Some(store::REFUSED)
            && record.error_code.as_deref() == Some(INVALID_SETTINGS);
        if behind && !refused_as_invalid {
            let on_its_way = commands::pending(&mut tx, agent)
                .await?
                .iter()
                .any(|c| command_version(&c.command) == Some(record.version));
            if !on_its_way {
                if let Some(settings) = &record.settings {
                    let parsed: Settings = serde_json::from_value(settings.clone())
                        .map_err(|e| StoreError::Corrupt(format!("stored settings: {e}")))?;
                    let cmd = apply_command(record.version, &parsed)?;
                    let id = commands::insert(&mut tx, agent, &cmd, now).await?;
                    let name = crate::store::agents::get(&mut tx, agent)
                        .await?
                        .map(|a| a.name)
                        .unwrap_or_default();
                    let runs = running
                        .map(|r| format!("v{r}"))
                        .unwrap_or_else(|| "no portal settings".into());
                    line(
                        &mut tx,
                        agent,
                        &name,
                        "system",
                        &format!(
                            "settings v{} sent again: the agent runs {runs}; command {id}",
                            record.version
                        ),
                        now,
                    )
                    .await?;
                    info!(agent = %agent, version = record.version, running = ?running, command_id = id,
                        "agent runs older settings; the current ones queued again");
                }
            }
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_and_wrong_types_are_named_by_their_path() {
        let field = |v: Value| parse_settings(&v).unwrap_err().field;
        assert_eq!(field(json!({"heartbeat": 5})), "heartbeat");
        assert_eq!(field(json!({"heartbeat_secs": "often"})), "heartbeat_secs");
        assert_eq!(
            field(json!({"discovery": {"retries": "x"}})),
            "discovery.retries"
        );
        assert_eq!(
            field(json!({"discovery": {"bogus": true}})),
            "discovery.bogus"
        );
        assert_eq!(
            field(json!({"interfaces": [{"name": "a"}, {"name": "b", "vlan": "x"}]})),
            "interfaces[1].vlan"
        );
        assert_eq!(
            field(json!({"interfaces": [{"vlan": 2}]})),
            "interfaces[0].name"
        );
        assert_eq!(field(json!({"platform": "toaster"})), "platform");
        assert_eq!(field(json!([])), "settings");
        assert_eq!(field(json!({"power": {"retries": 11}})), "power.retries");
        let e = parse_settings(&json!({"heartbeat": 5})).unwrap_err();
        assert!(e.problem.contains("unknown field `heartbeat`"), "{e}");
    }

    #[test]
    fn a_good_document_parses_and_the_version_is_read_back_from_its_command() {
        let s =
            parse_settings(&json!({"heartbeat_secs": 10, "discovery": {"retries": 2}})).unwrap();
        let cmd = apply_command(4, &s).unwrap();
        assert_eq!(command_version(&cmd), Some(4));
        assert_eq!(command_version(&Command::Ping), None);
    }
}
