//! Reading an agent's device inventory and device events (the ingest loop writes them).

use outpost_cloud_link::AgentId;

use super::{App, OpError};
use crate::store::devices::{self, DeviceFilter, DeviceKey, DevicePage, EventFilter, EventPage};

impl App {
    /// A page of the agent's devices (ordered by VLAN, then MAC), after `after`.
    pub async fn devices(
        &self,
        id: &AgentId,
        filter: &DeviceFilter,
        after: Option<&DeviceKey>,
        limit: u32,
    ) -> Result<DevicePage, OpError> {
        self.agent(id).await?;
        let mut conn = self.store().conn().await?;
        Ok(devices::list(&mut conn, id, filter, after, limit).await?)
    }

    /// A page of the agent's device events, newest first, with ids below `before`.
    pub async fn device_events(
        &self,
        id: &AgentId,
        filter: &EventFilter,
        before: Option<u64>,
        limit: u32,
    ) -> Result<EventPage, OpError> {
        self.agent(id).await?;
        let mut conn = self.store().conn().await?;
        Ok(devices::events(&mut conn, id, filter, before, limit).await?)
    }
}
