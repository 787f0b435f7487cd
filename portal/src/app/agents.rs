//! Operator actions on agents (rename, cleanup, delete, deactivate/reactivate/extend), the subscription
//! sweep, and the agents list (search, filters, sort, pages, the CSV export's rows). Every action writes a
//! history line in the same transaction as the change. A cleanup keeps the site configuration (customer
//! data, not agent data) but removes the settings document made for the agent (`app::settings`: its
//! pending `apply_settings` commands are cancelled, and acknowledgements of older ones are ignored); a
//! deletion removes everything of the agent but the account history's `deleted` line.

use outpost_cloud_link::protocol::Command;
use outpost_cloud_link::AgentId;
use tracing::{info, warn};

use super::{Actor, App, OpError};
use crate::access::Scope;
use crate::export::MAX_EXPORT_ROWS;
use crate::lifecycle::{self, Action, BrokerEffect, Transition};
use crate::listing::{self, AgentListItem, AgentQuery};
use crate::site::SiteConfig;
use crate::store::agents::{self, AgentRow, SearchClock};
use crate::store::history::{self, Entry, Line};
use crate::store::reports::{self, ReportRow};
use crate::store::{commands, devices, owners, settings, sites, StoreError};

/// The code of a pending `apply_settings` command a cleanup cancelled.
pub const CANCELLED_BY_CLEANUP: &str = "cancelled-by-cleanup";

impl App {
    /// How the store judges `online` now, by the same rule as [`App::is_online`].
    fn search_clock(&self, now: chrono::DateTime<chrono::Utc>) -> SearchClock {
        SearchClock {
            online_since: listing::online_cutoff(now, self.settings().offline_after),
            renewal_due_before: listing::renewal_horizon(now),
        }
    }

    fn list_item(
        &self,
        agent: AgentRow,
        site: SiteConfig,
        now: chrono::DateTime<chrono::Utc>,
    ) -> AgentListItem {
        AgentListItem::new(agent, site, now, self.settings().offline_after)
    }

    /// A page of the agents list, with how many agents match the query in all.
    pub async fn search_agents(
        &self,
        query: &AgentQuery,
        scope: &Scope,
    ) -> Result<(Vec<AgentListItem>, u64), OpError> {
        let now = self.now();
        let clock = self.search_clock(now);
        let mut conn = self.store().conn().await?;
        let total = agents::count(&mut conn, query, scope, clock).await?;
        let rows =
            agents::search(&mut conn, query, scope, clock, query.limit, query.offset).await?;
        let items = rows
            .into_iter()
            .map(|(agent, site)| self.list_item(agent, site, now))
            .collect();
        Ok((items, total))
    }

    /// Every agent matching the query (its page ignored), in its sort: what the CSV export holds. More
    /// than [`MAX_EXPORT_ROWS`] is refused with [`OpError::ExportTooLarge`].
    pub async fn export_agents(
        &self,
        query: &AgentQuery,
        scope: &Scope,
    ) -> Result<Vec<AgentListItem>, OpError> {
        let now = self.now();
        let clock = self.search_clock(now);
        let mut conn = self.store().conn().await?;
        let total = agents::count(&mut conn, query, scope, clock).await?;
        if total > MAX_EXPORT_ROWS {
            return Err(OpError::ExportTooLarge {
                total,
                cap: MAX_EXPORT_ROWS,
            });
        }
        let limit = u32::try_from(MAX_EXPORT_ROWS).unwrap_or(u32::MAX);
        let rows = agents::search(&mut conn, query, scope, clock, limit, 0).await?;
        Ok(rows
            .into_iter()
            .map(|(agent, site)| self.list_item(agent, site, now))
            .collect())
    }

    /// One agent as the list shows it (with its site configuration).
    pub async fn agent_item(&self, id: &AgentId) -> Result<AgentListItem, OpError> {
        let agent = self.agent(id).await?;
        let site = {
            let mut conn = self.store().conn().await?;
            sites::get(&mut conn, id).await?.unwrap_or_default()
        };
        Ok(self.list_item(agent, site, self.now()))
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
        // The settings document is configuration made for the agent: it goes (the agent wipes its copy
        // when it runs the cleanup), and a document still waiting to be sent is not sent.
        let settings_removed = settings::delete(&mut tx, id).await?;
        let cancelled = commands::cancel_pending(
            &mut tx,
            id,
            "apply_settings",
            CANCELLED_BY_CLEANUP,
            &format!("cancelled: a cleanup removed the agent's settings before it was sent; store new settings (PUT /api/v1/agents/{id}/settings) if the agent needs some"),
            now,
        )
        .await?;
        let epoch = agents::bump_epoch(&mut tx, id).await?;
        let cmd = Command::Cleanup { epoch };
        let command_id = commands::insert(&mut tx, id, &cmd, now).await?;
        let mut details = format!(
            "data epoch {epoch}; {removed} report(s), {} device(s), {} device event(s) removed",
            inventory.devices, inventory.events
        );
        if let Some(version) = settings_removed {
            details.push_str(&format!("; settings v{version} removed"));
        }
        if cancelled > 0 {
            details.push_str(&format!(
                "; {cancelled} unsent settings command(s) cancelled"
            ));
        }
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
            devices = inventory.devices, events = inventory.events, settings = ?settings_removed,
            "agent data cleaned up");
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
        // A rollout stage that waited for this agent can now go on.
        if let Err(e) = self.drive_rollouts().await {
            warn!(agent = %id, error = %e, "rollouts not moved on after the deletion; the sweeper's next tick does it");
        }
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

    /// Disables in the broker every agent the store says is deactivated or expired. A transition changes
    /// the broker before it commits: if the commit failed (or the broker's file was restored from an
    /// older copy) the broker could let such an agent in. Idempotent; run at `up` once the admin session
    /// is connected, and at every sweep. Returns how many it had to disable.
    pub async fn reconcile_broker(&self) -> Result<usize, OpError> {
        let refused = {
            let mut conn = self.store().conn().await?;
            agents::refused_ids(&mut conn).await?
        };
        let disabled = self.broker().ensure_disabled(&refused).await?;
        if disabled > 0 {
            warn!(
                disabled,
                refused = refused.len(),
                "deactivated or expired agents were enabled in the broker; disabled them"
            );
        }
        Ok(disabled)
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

    /// The company's history (agent and account lines) matching `filter`.
    pub async fn account_history(
        &self,
        company: i64,
        filter: &history::Filter,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<Entry>, OpError> {
        let mut conn = self.store().conn().await?;
        Ok(history::of_company(&mut conn, company, filter, limit, offset).await?)
    }

    /// The agent's data epoch and reports.
    pub async fn agent_data(&self, id: &AgentId) -> Result<(u64, Vec<ReportRow>), OpError> {
        let agent = self.agent(id).await?;
        let mut conn = self.store().conn().await?;
        Ok((agent.data_epoch, reports::list(&mut conn, id).await?))
    }
}
