//! Commands: queue them (in the same transaction as the change that needs them), send them when the agent
//! is online or says hello, record acknowledgements and wake whoever waits for one.

use std::time::Duration;

use outpost_cloud_link::protocol::{Ack, Command, CommandEnvelope, Outcome};
use outpost_cloud_link::AgentId;
use tracing::{debug, info, warn};

use super::{App, OpError};
use crate::store::commands::{self, CommandRow};
use crate::store::StoreError;

/// Longest `wait_ms` a caller may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

impl App {
    /// Sends one command; a failure leaves it pending (it is sent again on the agent's next hello).
    pub(crate) async fn send(&self, agent: &AgentId, id: u64, cmd: &Command) -> bool {
        let envelope = CommandEnvelope::new(id, cmd.clone());
        match self.sender().send_command(agent, &envelope).await {
            Ok(()) => {
                debug!(agent = %agent, command_id = id, kind = cmd.name(), "command sent");
                true
            }
            Err(e) => {
                warn!(agent = %agent, command_id = id, kind = cmd.name(), error = %e,
                    "command not sent; it stays pending until the agent's next hello");
                false
            }
        }
    }

    /// Sends a freshly queued command now if the agent is online; otherwise it waits for the next hello.
    pub(crate) async fn send_if_online(&self, agent: &AgentId, id: u64, cmd: &Command) {
        match self.agent(agent).await {
            Ok(row) if row.online => {
                self.send(agent, id, cmd).await;
            }
            Ok(_) => {
                debug!(agent = %agent, command_id = id, "agent offline; command sent on its next hello")
            }
            Err(e) => {
                warn!(agent = %agent, command_id = id, error = %e, "cannot look up the agent")
            }
        }
    }

    /// Sends every pending command of the agent, oldest first (after its hello).
    pub async fn send_pending(&self, agent: &AgentId) -> Result<usize, OpError> {
        let pending = {
            let mut conn = self.store().conn().await?;
            commands::pending(&mut conn, agent).await?
        };
        let mut sent = 0;
        for cmd in &pending {
            if self.send(agent, cmd.id, &cmd.command).await {
                sent += 1;
            }
        }
        if !pending.is_empty() {
            info!(agent = %agent, pending = pending.len(), sent, "pending commands re-sent after hello");
        }
        Ok(sent)
    }

    /// Queues `cmd` for the agent (outside any other change), sends it if online, and returns its id.
    pub async fn queue_command(&self, agent: &AgentId, cmd: Command) -> Result<u64, OpError> {
        let id = {
            let mut conn = self.store().conn().await?;
            commands::insert(&mut conn, agent, &cmd, self.now()).await?
        };
        self.send_if_online(agent, id, &cmd).await;
        Ok(id)
    }

    /// Runs a command an operator asked for (only `ping` today) and waits up to `wait` for its
    /// acknowledgement; returns the command as it is then.
    pub async fn run_command(
        &self,
        agent: &AgentId,
        cmd: Command,
        wait: Duration,
    ) -> Result<CommandRow, OpError> {
        self.agent(agent).await?;
        let wait = wait.min(MAX_WAIT);
        let id = {
            let mut conn = self.store().conn().await?;
            commands::insert(&mut conn, agent, &cmd, self.now()).await?
        };
        // Register before sending so an acknowledgement that beats us here still wakes us.
        let notify = (!wait.is_zero()).then(|| self.waiter(id));
        self.send_if_online(agent, id, &cmd).await;
        if let Some(notify) = notify {
            let acked = tokio::time::timeout(wait, notify.notified()).await.is_ok();
            self.forget_waiter(id);
            debug!(agent = %agent, command_id = id, acked, "command wait over");
        }
        self.command(agent, id).await
    }

    /// The agent's most recent commands, newest first.
    pub async fn recent_commands(
        &self,
        agent: &AgentId,
        limit: u32,
    ) -> Result<Vec<CommandRow>, OpError> {
        self.agent(agent).await?;
        let mut conn = self.store().conn().await?;
        Ok(commands::recent(&mut conn, agent, limit).await?)
    }

    pub async fn command(&self, agent: &AgentId, id: u64) -> Result<CommandRow, OpError> {
        let mut conn = self.store().conn().await?;
        commands::get(&mut conn, agent, id)
            .await?
            .ok_or_else(|| OpError::UnknownCommand {
                agent: agent.to_string(),
                command: id,
            })
    }

    /// Records an acknowledgement from the agent and wakes anyone waiting for it.
    pub async fn record_ack(&self, agent: &AgentId, ack: &Ack) -> Result<(), StoreError> {
        let failed = match &ack.outcome {
            Outcome::Done => None,
            Outcome::Failed { message } => Some(message.as_str()),
        };
        let row = {
            let mut conn = self.store().conn().await?;
            commands::ack(&mut conn, agent, ack.command_id, failed, self.now()).await?
        };
        match row {
            Some(row) => {
                debug!(agent = %agent, command_id = row.id, kind = %row.kind, status = %row.status, "command acknowledged");
                if let Some(message) = failed {
                    info!(agent = %agent, command_id = row.id, kind = %row.kind, message, "command failed on the agent");
                }
                self.wake_waiter(row.id);
            }
            None => {
                warn!(agent = %agent, command_id = ack.command_id, "acknowledgement for an unknown command ignored")
            }
        }
        Ok(())
    }
}
