//! Each agent's site configuration: read it (the empty one when none was set) and replace it after
//! validation, writing a `site_updated` history line with the actor and the names of the changed fields
//! (never their values: they are personal data) in the same transaction.

use outpost_cloud_link::AgentId;
use tracing::info;

use super::{Actor, App, OpError};
use crate::site::{self, InvalidSite, SiteConfig, SiteInput};
use crate::store::history::{self, Line};
use crate::store::{sites, StoreError};

impl App {
    /// The agent's site configuration; the empty one when none was set.
    pub async fn site(&self, id: &AgentId) -> Result<SiteConfig, OpError> {
        self.agent(id).await?;
        let mut conn = self.store().conn().await?;
        Ok(sites::get(&mut conn, id).await?.unwrap_or_default())
    }

    /// Validates `input` (every bad field at once, [`OpError::InvalidSite`]) and stores it as the agent's
    /// whole site configuration. A change writes a history line naming the changed fields; storing the
    /// same configuration again writes none.
    pub async fn set_site(
        &self,
        id: &AgentId,
        input: &SiteInput,
        actor: &Actor,
    ) -> Result<SiteConfig, OpError> {
        let agent = self.agent(id).await?;
        let config = site::validate(input).map_err(InvalidSite)?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let before = sites::get(&mut tx, id).await?.unwrap_or_default();
        let changed = before.changed_fields(&config);
        if !changed.is_empty() {
            sites::upsert(&mut tx, id, &config, now).await?;
            let details = format!("changed: {}", changed.join(", "));
            history::append(
                &mut tx,
                Line {
                    agent: id,
                    agent_name: &agent.name,
                    action: "site_updated",
                    actor: actor.as_str(),
                    details: &details,
                },
                now,
            )
            .await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        info!(agent = %id, actor = actor.as_str(), fields = %changed.join(","), "site configuration saved");
        Ok(config)
    }
}
