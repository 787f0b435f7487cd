//! Operator actions on agents (rename, cleanup, delete, deactivate/reactivate/extend) and the subscription
//! sweep. Every action writes a history line in the same transaction as the change.

use outpost_cloud_link::protocol::Command;
use outpost_cloud_link::AgentId;
use tracing::{info, warn};

use super::{Actor, App, OpError};
use crate::lifecycle::{self, Action, BrokerEffect, Status, Transition};
use crate::store::agents::{self, AgentRow};
use crate::store::history::{self, Entry, Line};
use crate::store::reports::{self, ReportRow};
use crate::store::{commands, devices, owners, StoreError};

impl App {
    pub async fn list_agents(
        &self,
        status: Option<Status>,
        name_contains: Option<&str>,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<AgentRow>, u64), OpError> {
        let mut conn = self.store().conn().await?;
        Ok(agents::list(&mut conn, status, name_contains, limit, offset).await?)
    }

    /// Renames the agent at once and queues a `Rename` command so the agent learns its name.
    pub async fn rename(
        &self,
        id: &AgentId,
        name: &str,
        actor: &Actor,
    ) -> Result<AgentRow, OpError> {
        let name = super::validate_name(name)?;
        let agent = self.agent(id).await?;
        let now = self.now();
        let cmd = Command::Rename { name: name.clone() };
        let mut tx = self.store().begin().await?;
        agents::set_name(&mut tx, id, &name).await?;
        let command_id = commands::insert(&mut tx, id, &cmd, now).await?;
        let details = format!("{:?} → {:?}", agent.name, name);
        history::append(
            &mut tx,
            Line {
                agent: id,
                agent_name: &name,
                action: "renamed",
                actor: actor.as_str(),
                details: &details,
            },
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(agent = %id, name = %name, actor = actor.as_str(), command_id, "agent renamed");
        self.send_if_online(id, command_id, &cmd).await;
        self.agent(id).await
    }

    /// Wipes the agent's data on the portal, starts a new data epoch and queues `Cleanup { epoch }`.
    /// Returns the command id and the new epoch.
    pub async fn cleanup(&self, id: &AgentId, actor: &Actor) -> Result<(u64, u64), OpError> {
        let agent = self.agent(id).await?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let removed = reports::delete_all(&mut tx, id).await?;
        let inventory = devices::delete_all(&mut tx, id).await?;
        // Owner flags are data like the inventory; the owner email and switch are configuration and stay.
        owners::delete_flags(&mut tx, id).await?;
        let epoch = agents::bump_epoch(&mut tx, id).await?;
        let cmd = Command::Cleanup { epoch };
        let command_id = commands::insert(&mut tx, id, &cmd, now).await?;
        let details = format!(
            "data epoch {epoch}; {removed} report(s), {} device(s), {} device event(s) removed",
            inventory.devices, inventory.events
        );
        history::append(
            &mut tx,
            Line {
                agent: id,
                agent_name: &agent.name,
                action: "cleanup",
                actor: actor.as_str(),
                details: &details,
            },
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(agent = %id, epoch, command_id, actor = actor.as_str(), reports = removed,
            devices = inventory.devices, events = inventory.events, "agent data cleaned up");
        self.send_if_online(id, command_id, &cmd).await;
        Ok((command_id, epoch))
    }

    /// Deletes a disconnected agent: its broker client, every row, leaving a tombstone and an account
    /// history line.
    pub async fn delete(&self, id: &AgentId, actor: &Actor) -> Result<(), OpError> {
        let agent = self.agent(id).await?;
        if self.is_online(&agent) {
            return Err(OpError::AgentConnected);
        }
        self.broker().delete_agent(id).await?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let inventory = devices::delete_all(&mut tx, id).await?;
        owners::delete_agent(&mut tx, id).await?;
        agents::delete_with_tombstone(&mut tx, &agent, now).await?;
        history::append(
            &mut tx,
            Line {
                agent: id,
                agent_name: &agent.name,
                action: "deleted",
                actor: actor.as_str(),
                details: "",
            },
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(agent = %id, name = %agent.name, actor = actor.as_str(), devices = inventory.devices,
            events = inventory.events, "agent deleted");
        Ok(())
    }

    /// Applies an operator's lifecycle action (deactivate, reactivate, extend).
    pub async fn lifecycle(
        &self,
        id: &AgentId,
        action: Action,
        actor: &Actor,
    ) -> Result<AgentRow, OpError> {
        let agent = self.agent(id).await?;
        let transition = lifecycle::apply(agent.subscription, action, self.now())?;
        let details = match action {
            Action::Extend { until } => format!("until {}", until.to_rfc3339()),
            _ => String::new(),
        };
        self.apply_transition(&agent, transition, actor, &details)
            .await?;
        self.agent(id).await
    }

    /// Applies every transition that time has made due; returns how many were applied. A failure on one
    /// agent is logged and retried on the next sweep.
    pub async fn sweep(&self) -> Result<usize, OpError> {
        let candidates = {
            let mut conn = self.store().conn().await?;
            agents::sweepable(&mut conn).await?
        };
        let now = self.now();
        let mut applied = 0;
        for agent in candidates {
            let Some(transition) = lifecycle::due(agent.subscription, now) else {
                continue;
            };
            match self
                .apply_transition(&agent, transition, &Actor::system(), "")
                .await
            {
                Ok(()) => applied += 1,
                Err(e) => {
                    warn!(agent = %agent.id, error = %e, "subscription change failed; retrying on the next sweep")
                }
            }
        }
        Ok(applied)
    }

    /// The broker change first (so a refused one changes nothing), then the row and its history line.
    async fn apply_transition(
        &self,
        agent: &AgentRow,
        t: Transition,
        actor: &Actor,
        details: &str,
    ) -> Result<(), OpError> {
        match t.broker {
            BrokerEffect::None => {}
            BrokerEffect::Disable => self.broker().disable_agent(&agent.id).await?,
            BrokerEffect::Enable => self.broker().enable_agent(&agent.id).await?,
        }
        let now = self.now();
        let mut tx = self.store().begin().await?;
        agents::set_subscription(&mut tx, &agent.id, &t.next).await?;
        let details = match (details.is_empty(), t.next.deactivates_at) {
            (true, Some(at)) => format!("takes effect at {}", at.to_rfc3339()),
            _ => details.to_owned(),
        };
        history::append(
            &mut tx,
            Line {
                agent: &agent.id,
                agent_name: &agent.name,
                action: t.history,
                actor: actor.as_str(),
                details: &details,
            },
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        if t.broker == BrokerEffect::Disable {
            agents::set_online(&mut *self.store().conn().await?, &agent.id, false).await?;
        }
        info!(agent = %agent.id, from = %agent.subscription.status, to = %t.next.status,
            action = t.history, actor = actor.as_str(), "subscription changed");
        Ok(())
    }

    pub async fn agent_history(&self, id: &AgentId) -> Result<Vec<Entry>, OpError> {
        self.agent(id).await?;
        let mut conn = self.store().conn().await?;
        Ok(history::for_agent(&mut conn, id).await?)
    }

    pub async fn account_history(&self, limit: u32, offset: u32) -> Result<Vec<Entry>, OpError> {
        let mut conn = self.store().conn().await?;
        Ok(history::all(&mut conn, limit, offset).await?)
    }

    /// The agent's data epoch and reports.
    pub async fn agent_data(&self, id: &AgentId) -> Result<(u64, Vec<ReportRow>), OpError> {
        let agent = self.agent(id).await?;
        let mut conn = self.store().conn().await?;
        Ok((agent.data_epoch, reports::list(&mut conn, id).await?))
    }
}
