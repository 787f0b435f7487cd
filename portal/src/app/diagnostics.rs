//! Diagnostics from the agent's page: restart the agent (`Command::Restart`, queued like any command, with
//! a history line), and ask a connected agent for its recent log lines (`Command::Logs`) or a health
//! snapshot (`Command::Health`), waiting up to [`DIAGNOSTICS_WAIT`] for the answer. Logs and health come
//! live from the agent: an offline agent is not asked at all, and a question left unanswered is given up
//! (failed with [`NO_ANSWER`]) so it is not sent again at the agent's next hello.

use std::time::Duration;

use outpost_cloud_link::diagnostics::{Health, LogLines, MAX_LOG_LINES};
use outpost_cloud_link::protocol::{Command, Outcome};
use outpost_cloud_link::AgentId;
use serde::de::DeserializeOwned;
use tracing::info;

use super::{Actor, App, OpError};
use crate::store::commands::{self, CommandRow};
use crate::store::history::{self, Line};
use crate::store::StoreError;

/// Longest wait for the answer to `logs` or `health`.
pub const DIAGNOSTICS_WAIT: Duration = Duration::from_secs(10);

/// Log lines asked for unless told otherwise.
pub const DEFAULT_LOG_LINES: u32 = 200;

/// The code a `logs` or `health` command is failed with when the agent did not answer in time.
pub const NO_ANSWER: &str = "no-answer";

/// Why the agent's logs or health could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum DiagnosticsError {
    #[error(transparent)]
    Op(#[from] OpError),
    #[error("agent {0} is offline; its logs and health come live from the agent, so try again once it is connected")]
    Offline(String),
    #[error("agent {agent} did not answer within {} s (command {command}); it may be busy or its link slow; try again", .waited.as_secs())]
    NoAnswer {
        agent: String,
        command: u64,
        waited: Duration,
    },
    #[error("agent {agent} could not answer: {message}")]
    Failed {
        agent: String,
        code: Option<String>,
        message: String,
    },
    #[error("agent {agent}'s answer could not be read ({message}); is it a version older than diagnostics?")]
    Unreadable { agent: String, message: String },
}

impl From<StoreError> for DiagnosticsError {
    fn from(e: StoreError) -> Self {
        DiagnosticsError::Op(e.into())
    }
}

impl App {
    /// Queues a restart of the agent (sent now if it is online, else at its next hello) with a history
    /// line; returns the command.
    pub async fn restart_agent(
        &self,
        agent: &AgentId,
        actor: &Actor,
    ) -> Result<CommandRow, OpError> {
        let row = self.agent(agent).await?;
        let now = self.now();
        let cmd = Command::Restart;
        let mut tx = self.store().begin().await?;
        let id = commands::insert(&mut tx, agent, &cmd, now).await?;
        let online = self.is_online(&row);
        let details = if online {
            format!("restart requested; command {id}")
        } else {
            format!("restart requested while the agent is offline: sent when it next connects; command {id}")
        };
        history::append(
            &mut tx,
            Line {
                agent,
                agent_name: &row.name,
                action: "restart",
                actor: actor.as_str(),
                details: &details,
            },
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        if online {
            self.send(agent, id, &cmd).await;
        }
        info!(agent = %agent, command_id = id, actor = actor.as_str(), online, "agent restart queued");
        self.command(agent, id).await
    }

    /// The agent's most recent `lines` log lines (at most [`MAX_LOG_LINES`]), asked live.
    pub async fn agent_logs(
        &self,
        agent: &AgentId,
        lines: u32,
        wait: Duration,
    ) -> Result<LogLines, DiagnosticsError> {
        let lines = lines.clamp(1, MAX_LOG_LINES);
        self.ask(agent, Command::Logs { lines }, wait).await
    }

    /// The agent's health snapshot, asked live.
    pub async fn agent_health(
        &self,
        agent: &AgentId,
        wait: Duration,
    ) -> Result<Health, DiagnosticsError> {
        self.ask(agent, Command::Health, wait).await
    }

    async fn ask<T: DeserializeOwned>(
        &self,
        agent: &AgentId,
        cmd: Command,
        wait: Duration,
    ) -> Result<T, DiagnosticsError> {
        let row = self.agent(agent).await?;
        if !self.is_online(&row) {
            return Err(DiagnosticsError::Offline(agent.to_string()));
        }
        let wait = wait.min(DIAGNOSTICS_WAIT);
        let id = {
            let mut conn = self.store().conn().await?;
            commands::insert(&mut conn, agent, &cmd, self.now()).await?
        };
        let done = self.deliver_and_wait(agent, id, &cmd, wait).await?;
        match (done.status.as_str(), &done.result) {
            ("pending", _) => {
                let outcome = Outcome::failed_with(
                    NO_ANSWER,
                    format!(
                        "no answer within {} s; given up so it is not sent again later",
                        wait.as_secs()
                    ),
                );
                let mut conn = self.store().conn().await?;
                commands::ack(&mut conn, agent, id, &outcome, None, self.now()).await?;
                Err(DiagnosticsError::NoAnswer {
                    agent: agent.to_string(),
                    command: id,
                    waited: wait,
                })
            }
            ("failed", _) => Err(DiagnosticsError::Failed {
                agent: agent.to_string(),
                code: done.code.clone(),
                message: done.message.clone().unwrap_or_default(),
            }),
            (_, Some(result)) => {
                serde_json::from_value(result.clone()).map_err(|e| DiagnosticsError::Unreadable {
                    agent: agent.to_string(),
                    message: e.to_string(),
                })
            }
            (_, None) => Err(DiagnosticsError::Unreadable {
                agent: agent.to_string(),
                message: "the acknowledgement carried no result".into(),
            }),
        }
    }
}
