//! The JSON shapes the API answers with (see ARCHITECTURE.md), built from store rows.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::listing::AgentListItem;
use crate::site::SiteConfig;
use crate::store::agents::LinkStats;
use crate::store::commands::CommandRow;
use crate::store::history::Entry;
use crate::store::reports::ReportRow;

/// Times in the API: RFC 3339 in UTC with milliseconds.
pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn opt_time(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(time)
}

#[derive(Debug, Serialize)]
pub struct SubscriptionView {
    pub plan: &'static str,
    pub expires_at: Option<String>,
    pub deactivates_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct AgentView {
    pub id: String,
    pub name: String,
    pub status: &'static str,
    pub subscription: SubscriptionView,
    pub expires_at: Option<String>,
    pub activated_at: String,
    pub version: Option<String>,
    pub local_ip: Option<String>,
    pub mac: Option<String>,
    pub public_ip: Option<String>,
    pub platform: Option<String>,
    pub hostname: Option<String>,
    pub online: bool,
    pub last_seen: Option<String>,
    pub data_epoch: u64,
    pub link: LinkStats,
    /// `status`, except `activation_pending` for an active agent that never connected.
    pub display_status: &'static str,
    /// The prepaid expiration or the end date falls within the next 28 days (`due_at`).
    pub due_soon: bool,
    pub due_at: Option<String>,
    /// `subscription.plan`, at the top for lists.
    pub plan: &'static str,
    /// The renewal date of an active yearly or quarterly agent (its `expires_at`).
    pub renews_at: Option<String>,
    /// `due` (orange: renews within 28 days, not confirmed), `overdue` (red: renewed automatically without
    /// a decision) or none.
    pub renewal: Option<&'static str>,
    /// The site configuration (empty fields when none was set).
    pub site: SiteConfig,
    /// GeoIP: the agent's latest `location` report (its location or why it has none, and who looked it
    /// up). Only `GET /agents/{id}` includes it ([`AgentView::with_location`]); absent elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<outpost_cloud_link::geoip::LocationReport>,
    /// The Rust target the agent's binary was built for, as its hello said (none from agents older than
    /// updates): the releases it can install.
    pub target: Option<String>,
    /// The agent can install updates (it runs under `outpost-agent launch`).
    pub updatable: bool,
    /// Its latest update attempt (`GET /agents/{id}/updates` lists them all).
    pub update: Option<UpdateSummary>,
    /// The portal settings version the agent runs with, as its latest hello said (none: it runs with
    /// none, or is older than portal settings); `GET /agents/{id}/settings` has the record.
    pub settings_version: Option<u64>,
}

/// An agent's latest update attempt, on the agent JSON.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateSummary {
    pub version: String,
    pub state: &'static str,
    pub reason: Option<String>,
    pub code: Option<String>,
    /// When it last changed.
    pub at: String,
}

impl From<&crate::store::rollouts::UpdateRow> for UpdateSummary {
    fn from(u: &crate::store::rollouts::UpdateRow) -> Self {
        Self {
            version: u.version.clone(),
            state: u.state.as_str(),
            reason: u.reason.clone(),
            code: u.code.clone(),
            at: time(u.updated_at),
        }
    }
}

impl AgentView {
    /// The agent as the list shows it: row, site and what was judged at one instant (online, flags).
    pub fn new(item: &AgentListItem) -> Self {
        let a = &item.agent;
        let s = &a.subscription;
        Self {
            id: a.id.to_string(),
            name: a.name.clone(),
            status: s.status.as_str(),
            subscription: SubscriptionView {
                plan: s.plan.as_str(),
                expires_at: opt_time(s.expires_at),
                deactivates_at: opt_time(s.deactivates_at),
            },
            expires_at: opt_time(s.expires_at),
            activated_at: time(a.activated_at),
            version: a.version.clone(),
            local_ip: a.local_ip.clone(),
            mac: a.mac.clone(),
            public_ip: a.public_ip.clone(),
            platform: a.platform.clone(),
            hostname: a.hostname.clone(),
            online: item.online,
            last_seen: opt_time(a.last_seen),
            data_epoch: a.data_epoch,
            link: a.link,
            display_status: item.display_status.as_str(),
            due_soon: item.due_soon(),
            due_at: opt_time(item.due_at),
            plan: s.plan.as_str(),
            renews_at: opt_time(crate::listing::renews_at(a)),
            renewal: item.renewal.map(|f| f.as_str()),
            site: item.site.clone(),
            location: None,
            target: None,
            updatable: false,
            update: None,
            settings_version: None,
        }
    }

    /// The view with the agent's update facts (`App::update_facts`).
    pub fn with_update(mut self, facts: crate::app::rollouts::UpdateFacts) -> Self {
        self.target = facts.target;
        self.updatable = facts.updatable;
        self.update = facts.latest.as_ref().map(UpdateSummary::from);
        self
    }

    /// The view with the settings version the agent runs with (`App::running_settings_version`).
    pub fn with_settings_version(mut self, version: Option<u64>) -> Self {
        self.settings_version = version;
        self
    }

    /// The view with the agent's location report (`App::location`).
    pub fn with_location(
        mut self,
        location: Option<outpost_cloud_link::geoip::LocationReport>,
    ) -> Self {
        self.location = location;
        self
    }
}

#[derive(Debug, Serialize)]
pub struct AgentList {
    pub agents: Vec<AgentView>,
    pub total: u64,
}

#[derive(Debug, Serialize)]
pub struct CommandView {
    pub id: u64,
    pub kind: String,
    pub status: String,
    pub created_at: String,
    pub acked_at: Option<String>,
    pub message: Option<String>,
    /// A failure's machine-readable code (`control::codes`), when the agent gave one.
    pub code: Option<String>,
    /// What the acknowledgement had to say (a power command's state, a block's record).
    pub result: Option<serde_json::Value>,
}

impl From<&CommandRow> for CommandView {
    fn from(c: &CommandRow) -> Self {
        Self {
            id: c.id,
            kind: c.kind.clone(),
            status: c.status.clone(),
            created_at: time(c.created_at),
            acked_at: opt_time(c.acked_at),
            message: c.message.clone(),
            code: c.code.clone(),
            result: c.result.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct HistoryEntry {
    pub at: String,
    pub action: String,
    pub actor: String,
    pub details: String,
    pub agent_id: Option<String>,
    pub agent_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl From<&Entry> for HistoryEntry {
    fn from(e: &Entry) -> Self {
        Self {
            at: time(e.at),
            action: e.action.clone(),
            actor: e.actor.clone(),
            details: e.details.clone(),
            agent_id: e.agent_id.clone(),
            agent_name: e.agent_name.clone(),
            address: e.address.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct History {
    pub entries: Vec<HistoryEntry>,
}

#[derive(Debug, Serialize)]
pub struct ReportView {
    pub kind: String,
    pub epoch: u64,
    pub body: serde_json::Value,
    pub updated_at: String,
}

impl From<&ReportRow> for ReportView {
    fn from(r: &ReportRow) -> Self {
        Self {
            kind: r.kind.clone(),
            epoch: r.epoch,
            body: r.body.clone(),
            updated_at: time(r.updated_at),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct AgentData {
    pub data_epoch: u64,
    pub reports: Vec<ReportView>,
}

/// A device as the API shows it: the record as the agent sent it plus the portal's control view:
/// `id` (the device id of the control routes), `blocked`, `block`, `blockable`, `unblockable_reason` and
/// `power_outlet` (the outlet type, or `null`).
pub fn device_view(
    mut record: serde_json::Value,
    control: &crate::app::control::DeviceControl,
) -> serde_json::Value {
    if let Some(object) = record.as_object_mut() {
        let fields = [
            ("id", control.device.id().into()),
            ("blocked", control.blocked.into()),
            (
                "block",
                serde_json::to_value(&control.block).unwrap_or_default(),
            ),
            ("blockable", control.blockable.into()),
            ("unblockable_reason", control.unblockable_reason.into()),
            (
                "power_outlet",
                control
                    .power_outlet
                    .as_ref()
                    .map(|b| b.outlet.kind())
                    .into(),
            ),
        ];
        for (key, value) in fields {
            object.insert(key.to_owned(), value);
        }
    }
    record
}

/// A device's outlet binding, secrets redacted: the binding's fields plus who set it when.
#[derive(Debug, Serialize)]
pub struct OutletView {
    pub device: String,
    #[serde(flatten)]
    pub binding: outpost_cloud_link::control::OutletBinding,
    pub updated_at: String,
    pub updated_by: String,
}

impl OutletView {
    pub fn new(
        device: &outpost_cloud_link::control::DeviceRef,
        o: &crate::app::control::OutletInfo,
    ) -> Self {
        Self {
            device: device.id(),
            binding: o.binding.clone(),
            updated_at: time(o.updated_at),
            updated_by: o.updated_by.clone(),
        }
    }
}

/// `GET /agents/{id}/devices`: each device is the record as the agent sent it plus its control view.
#[derive(Debug, Serialize)]
pub struct DeviceList {
    pub devices: Vec<serde_json::Value>,
    /// The `cursor` of the next page; `null` on the last one.
    pub next_cursor: Option<String>,
    pub total: u64,
}

/// `GET /agents/{id}/events`: each event is the record as the agent sent it plus the portal's `id`.
#[derive(Debug, Serialize)]
pub struct EventList {
    pub events: Vec<serde_json::Value>,
    pub next_cursor: Option<String>,
}
