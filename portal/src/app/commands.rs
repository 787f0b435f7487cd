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

/// A power command still pending this long after it was queued is not sent again at the agent's next
/// hello but failed with [`EXPIRED`]: switching power minutes or hours after someone asked would surprise.
pub const POWER_RESEND_WINDOW: Duration = Duration::from_secs(300);

/// The code of a command the portal gave up on before the agent acknowledged it.
pub const EXPIRED: &str = "expired";

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
        let window =
            chrono::Duration::from_std(POWER_RESEND_WINDOW).unwrap_or(chrono::Duration::MAX);
        for cmd in &pending {
            if matches!(cmd.command, Command::Power { .. }) && self.now() - cmd.created_at > window
            {
                self.expire(agent, cmd).await?;
                continue;
            }
            if self.send(agent, cmd.id, &cmd.command).await {
                sent += 1;
            }
        }
        if !pending.is_empty() {
            info!(agent = %agent, pending = pending.len(), sent, "pending commands re-sent after hello");
        }
        Ok(sent)
    }

    /// Fails a pending command the agent never acknowledged with [`EXPIRED`] (if the agent did run it, its
    /// acknowledgement still arrives and wins).
    async fn expire(&self, agent: &AgentId, cmd: &CommandRow) -> Result<(), OpError> {
        let minutes = POWER_RESEND_WINDOW.as_secs() / 60;
        let outcome = Outcome::failed_with(
            EXPIRED,
            format!("not delivered within {minutes} minutes (the agent was offline), so not sent late; send it again if it is still wanted"),
        );
        let mut conn = self.store().conn().await?;
        commands::ack(&mut conn, agent, cmd.id, &outcome, None, self.now()).await?;
        info!(agent = %agent, command_id = cmd.id, kind = %cmd.kind, "pending command expired instead of being sent late");
        Ok(())
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
        let id = {
            let mut conn = self.store().conn().await?;
            commands::insert(&mut conn, agent, &cmd, self.now()).await?
        };
        self.deliver_and_wait(agent, id, &cmd, wait).await
    }

    /// Sends a queued command if the agent is online, waits up to `wait` (at most [`MAX_WAIT`]) for its
    /// acknowledgement and returns the command as it is then.
    pub(crate) async fn deliver_and_wait(
        &self,
        agent: &AgentId,
        id: u64,
        cmd: &Command,
        wait: Duration,
    ) -> Result<CommandRow, OpError> {
        let wait = wait.min(MAX_WAIT);
        // Register before sending so an acknowledgement that beats us here still wakes us.
        let notify = (!wait.is_zero()).then(|| self.waiter(id));
        self.send_if_online(agent, id, cmd).await;
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
        let row = {
            let mut conn = self.store().conn().await?;
            commands::ack(
                &mut conn,
                agent,
                ack.command_id,
                &ack.outcome,
                ack.result.as_ref(),
                self.now(),
            )
            .await?
        };
        match row {
            Some(row) => {
                debug!(agent = %agent, command_id = row.id, kind = %row.kind, status = %row.status, "command acknowledged");
                if let Outcome::Failed { message, code } = &ack.outcome {
                    info!(agent = %agent, command_id = row.id, kind = %row.kind, message = %message,
                        code = code.as_deref().unwrap_or(""), "command failed on the agent");
                }
                if let Err(e) = self.apply_control_ack(agent, &row, ack).await {
                    warn!(agent = %agent, command_id = row.id, error = %e,
                        "block state not updated from the acknowledgement; the agent's next blocks report will");
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
