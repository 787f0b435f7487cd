//! The agent's devices in the technician pages: a table sortable and filterable by name, IP, MAC, vendor,
//! VLAN, online state and last sight; a device page with its names, services and events; block, unblock
//! and power buttons where the platform and the outlet binding allow (turning a device off or cycling it
//! asks first); the owner-access flags. An action waits up to [`PAGE_WAIT`] for the agent's answer, then
//! redirects to the device page, which shows the command's outcome.

use std::cmp::Ordering;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use maud::{html, Markup};
use outpost_cloud_link::control::{DeviceRef, PowerAction};
use outpost_cloud_link::inventory::Device;
use outpost_cloud_link::AgentId;
use serde::Deserialize;

use super::auth::{redirect, Tech};
use super::layout::{confirm_page, html_response, page, query_value, when, when_ms, Notice};
use super::WebState;
use crate::access::Action;
use crate::api::owner::pages::PAGE_WAIT;
use crate::api::owner::Problem;
use crate::app::control::{ControlAction, DeviceControl};
use crate::app::owner::{display_name, power_actions, unblockable_sentence, OwnerError};
use crate::app::{App, OpError};
use crate::store::devices::{DeviceFilter, EventFilter};
use crate::store::owners::Flags;

/// Most devices one table shows (a site with more is filtered first).
pub const MAX_ROWS: usize = 5_000;

/// What the device table can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Name,
    Ip,
    Mac,
    Vendor,
    Vlan,
    Online,
    LastSeen,
}

impl SortKey {
    pub const ALL: [SortKey; 7] = [
        SortKey::Name,
        SortKey::Ip,
        SortKey::Mac,
        SortKey::Vendor,
        SortKey::Vlan,
        SortKey::Online,
        SortKey::LastSeen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::Ip => "ip",
            SortKey::Mac => "mac",
            SortKey::Vendor => "vendor",
            SortKey::Vlan => "vlan",
            SortKey::Online => "online",
            SortKey::LastSeen => "last_seen",
        }
    }

    fn label(self) -> &'static str {
        match self {
            SortKey::Name => "Name",
            SortKey::Ip => "IP",
            SortKey::Mac => "MAC",
            SortKey::Vendor => "Vendor",
            SortKey::Vlan => "VLAN",
            SortKey::Online => "Online",
            SortKey::LastSeen => "Last seen",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct DeviceLine {
    pub device: Device,
    pub name: String,
}

impl DeviceLine {
    pub fn new(device: Device) -> Self {
        let name = display_name(&device);
        Self { device, name }
    }

    fn id(&self) -> String {
        DeviceRef {
            mac: self.device.mac.clone(),
            vlan: self.device.vlan,
        }
        .id()
    }
}

/// Sorts the table: by `key`, then by VLAN and MAC so equal keys keep one order; missing values (no IP,
/// no vendor) go last in both directions.
pub fn sort_devices(lines: &mut [DeviceLine], key: SortKey, descending: bool) {
    fn missing_last<T: Ord>(a: Option<T>, b: Option<T>, descending: bool) -> Ordering {
        match (a, b) {
            (Some(a), Some(b)) if descending => b.cmp(&a),
            (Some(a), Some(b)) => a.cmp(&b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
    }
    let tie = |a: &DeviceLine, b: &DeviceLine| {
        (a.device.vlan, &a.device.mac).cmp(&(b.device.vlan, &b.device.mac))
    };
    lines.sort_by(|a, b| {
        let (x, y) = (&a.device, &b.device);
        let by_key = match key {
            SortKey::Name => missing_last(
                Some(a.name.to_lowercase()),
                Some(b.name.to_lowercase()),
                descending,
            ),
            SortKey::Ip => missing_last(x.ipv4, y.ipv4, descending),
            SortKey::Mac => missing_last(Some(&x.mac), Some(&y.mac), descending),
            SortKey::Vendor => missing_last(
                x.vendor.as_ref().map(|v| v.to_lowercase()),
                y.vendor.as_ref().map(|v| v.to_lowercase()),
                descending,
            ),
            SortKey::Vlan => missing_last(x.vlan, y.vlan, descending),
            SortKey::Online => missing_last(Some(x.online), Some(y.online), descending),
            SortKey::LastSeen => {
                missing_last(Some(x.last_seen_ms), Some(y.last_seen_ms), descending)
            }
        };
        by_key.then_with(|| tie(a, b))
    });
}

#[derive(Debug, Default, Deserialize)]
pub struct TableQuery {
    pub q: Option<String>,
    pub online: Option<String>,
    pub vlan: Option<String>,
    pub sort: Option<String>,
    pub order: Option<String>,
}

/// The table's filter and order, read from the query string; a bad value is named.
#[derive(Debug, Clone, PartialEq)]
pub struct TableView {
    pub q: String,
    pub online: Option<bool>,
    pub vlan: Option<u16>,
    pub sort: SortKey,
    pub descending: bool,
}

impl TableView {
    pub fn parse(query: &TableQuery) -> Result<Self, String> {
        let online = match query.online.as_deref().unwrap_or("") {
            "" => None,
            "yes" => Some(true),
            "no" => Some(false),
            other => return Err(format!("online: {other:?} is not one of yes, no")),
        };
        let vlan = match query.vlan.as_deref().map(str::trim).unwrap_or("") {
            "" => None,
            "none" => Some(crate::store::devices::NO_VLAN),
            v => Some(
                v.parse::<u16>()
                    .ok()
                    .filter(|v| (1..=4094).contains(v))
                    .ok_or_else(|| format!("vlan: {v:?} is not a VLAN id (1 to 4094) or none"))?,
            ),
        };
        let sort = match query.sort.as_deref().unwrap_or("") {
            "" => SortKey::Name,
            s => SortKey::parse(s).ok_or_else(|| {
                let all: Vec<_> = SortKey::ALL.iter().map(|k| k.as_str()).collect();
                format!("sort: {s:?} is not one of {}", all.join(", "))
            })?,
        };
        let descending = match query.order.as_deref().unwrap_or("") {
            "" | "asc" => false,
            "desc" => true,
            other => return Err(format!("order: {other:?} is not one of asc, desc")),
        };
        Ok(Self {
            q: query.q.as_deref().unwrap_or("").trim().to_owned(),
            online,
            vlan,
            sort,
            descending,
        })
    }

    /// The query string of this view sorted by `key` (toggling the order when already sorted by it).
    fn sorted_by(&self, key: SortKey) -> String {
        let order = if self.sort == key && !self.descending {
            "desc"
        } else {
            "asc"
        };
        let mut qs = format!("sort={}&order={order}", key.as_str());
        if !self.q.is_empty() {
            qs.push_str(&format!("&q={}", query_value(&self.q)));
        }
        if let Some(o) = self.online {
            qs.push_str(if o { "&online=yes" } else { "&online=no" });
        }
        if let Some(v) = self.vlan {
            if v == crate::store::devices::NO_VLAN {
                qs.push_str("&vlan=none");
            } else {
                qs.push_str(&format!("&vlan={v}"));
            }
        }
        qs
    }
}

fn parse_ids(agent: &str, device: Option<&str>) -> Result<(AgentId, Option<DeviceRef>), OpError> {
    let agent = App::parse_agent_id(agent)?;
    let device = device.map(str::parse::<DeviceRef>).transpose()?;
    Ok((agent, device))
}

/// Every device of the agent matching the filter, up to [`MAX_ROWS`]; and the total matching.
async fn load_devices(
    app: &App,
    agent: &AgentId,
    view: &TableView,
) -> Result<(Vec<DeviceLine>, u64), OpError> {
    let filter = DeviceFilter {
        online: view.online,
        vlan: view.vlan,
        text: (!view.q.is_empty()).then(|| view.q.clone()),
        ..DeviceFilter::default()
    };
    let mut lines = Vec::new();
    let mut after = None;
    let total = loop {
        let page = app.devices(agent, &filter, after.as_ref(), 500).await?;
        for row in page.devices {
            match serde_json::from_value::<Device>(row.record) {
                Ok(d) => lines.push(DeviceLine::new(d)),
                Err(e) => {
                    tracing::warn!(agent = %agent, error = %e, "stored device record unreadable")
                }
            }
        }
        match page.next {
            Some(next) if lines.len() < MAX_ROWS => after = Some(next),
            _ => break page.total,
        }
    };
    lines.truncate(MAX_ROWS);
    Ok((lines, total))
}

pub async fn table(
    State(state): State<WebState>,
    tech: Tech,
    Path(agent): Path<String>,
    Query(query): Query<TableQuery>,
) -> Response {
    let (agent, _) = match parse_ids(&agent, None) {
        Ok(ids) => ids,
        Err(e) => return tech.problem(e, ("/agents", "Back to the agents")),
    };
    let back = format!("/agents/{agent}");
    let row = match state.app.agent(&agent).await {
        Ok(row) => row,
        Err(e) => return tech.problem(e, ("/agents", "Back to the agents")),
    };
    let (view, notice) = match TableView::parse(&query) {
        Ok(view) => (view, None),
        Err(message) => (
            TableView::parse(&TableQuery::default()).unwrap_or(TableView {
                q: String::new(),
                online: None,
                vlan: None,
                sort: SortKey::Name,
                descending: false,
            }),
            Some(Notice::error(message)),
        ),
    };
    let (mut lines, total) = match load_devices(&state.app, &agent, &view).await {
        Ok(found) => found,
        Err(e) => return tech.problem(e, (&back, "Back to the agent")),
    };
    sort_devices(&mut lines, view.sort, view.descending);
    let base = format!("/agents/{agent}/devices");
    let arrow = |key: SortKey| match (view.sort == key, view.descending) {
        (true, false) => " ▲",
        (true, true) => " ▼",
        _ => "",
    };
    let aria_sort = |key: SortKey| match (view.sort == key, view.descending) {
        (true, false) => "ascending",
        (true, true) => "descending",
        _ => "none",
    };
    let body = html! {
        p { a href=(back) { "← " (row.name) } }
        h1 { "Devices" }
        form.filters method="get" action=(base) role="search" {
            label { "Search" input type="search" name="q" value=(view.q) placeholder="name, IP, MAC, vendor"; }
            label { "Online"
                select name="online" {
                    option value="" selected[view.online.is_none()] { "any" }
                    option value="yes" selected[view.online == Some(true)] { "online" }
                    option value="no" selected[view.online == Some(false)] { "offline" }
                }
            }
            label { "VLAN" input type="text" name="vlan" inputmode="numeric" size="6"
                value=(view.vlan.map(|v| if v == crate::store::devices::NO_VLAN { "none".to_owned() } else { v.to_string() }).unwrap_or_default()); }
            input type="hidden" name="sort" value=(view.sort.as_str());
            input type="hidden" name="order" value=(if view.descending { "desc" } else { "asc" });
            button type="submit" { "Filter" }
            a.button.quiet href=(base) { "Clear" }
        }
        p.muted #device-count { (total) " device" @if total != 1 { "s" } " match" @if total == 1 { "es" } "." }
        div.scroll {
            table #devices {
                thead { tr {
                    @for key in SortKey::ALL {
                        th scope="col" aria-sort=(aria_sort(key)) {
                            a href={ (base) "?" (view.sorted_by(key)) } { (key.label()) (arrow(key)) }
                        }
                    }
                } }
                tbody {
                    @for line in &lines {
                        @let d = &line.device;
                        tr {
                            td { a href={ (base) "/" (line.id()) } { (line.name) } }
                            td.num { (d.ipv4.map(|ip| ip.to_string()).unwrap_or_default()) }
                            td.num { code { (d.mac) } }
                            td { (d.vendor.as_deref().unwrap_or("")) }
                            td.num { (d.vlan.map(|v| v.to_string()).unwrap_or_default()) }
                            td { @if d.online { span.badge.on { "online" } } @else { span.badge.off { "offline" } } }
                            td { (when_ms(d.last_seen_ms)) }
                        }
                    }
                }
            }
        }
    };
    let title = format!("Devices of {}", row.name);
    html_response(
        StatusCode::OK,
        page(&title, Some(tech.viewer()), notice.as_ref(), body),
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct DeviceQuery {
    pub command: Option<u64>,
}

/// The sentence for a command's state, as the device page shows it after an action.
pub fn command_notice(label: &str, status: &str, message: Option<&str>) -> Notice {
    match status {
        "done" => Notice::ok(format!("{label}: done.")),
        "failed" => Notice::error(format!(
            "{label}: failed: {}",
            message.unwrap_or("the agent gave no reason")
        )),
        _ => Notice::ok(format!(
            "{label}: sent; the agent has not answered yet. Reload this page in a moment to see the result."
        )),
    }
}

fn control_markup(csrf: &str, base: &str, control: &DeviceControl) -> Markup {
    html! {
        h2 { "Control" }
        @if control.blocked {
            p { span.badge.blocked { "blocked" } " Internet access is paused." }
        }
        div.actions {
            @if control.blocked {
                form.inline method="post" action={ (base) "/unblock" } {
                    input type="hidden" name="csrf" value=(csrf);
                    button #unblock type="submit" { "Unblock" }
                }
            } @else if control.blockable {
                form.inline method="post" action={ (base) "/block" } {
                    input type="hidden" name="csrf" value=(csrf);
                    button #block type="submit" { "Block internet access" }
                }
            }
            @if let Some(binding) = &control.power_outlet {
                @for action in power_actions(binding) {
                    form.inline method="post" action={ (base) "/power" } {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="action" value=(action.as_str());
                        button.quiet type="submit" { "Power " (action.as_str()) }
                    }
                }
            }
        }
        @if let Some(code) = control.unblockable_reason.filter(|_| !control.blocked) {
            p.muted { (unblockable_sentence(code)) }
        }
        @if control.power_outlet.is_none() {
            p.muted { "No power outlet is bound to this device (bind one through the API: "
                code { "PUT /api/v1/agents/{id}/devices/{device}/power-outlet" } ")." }
        }
    }
}

fn flags_markup(csrf: &str, base: &str, flags: Flags, owner: bool) -> Markup {
    html! {
        h2 { "Owner access" }
        @if !owner {
            p.muted { "This site has no owner yet; set one on the agent's page to share devices." }
        }
        form method="post" action={ (base) "/owner-flags" } {
            input type="hidden" name="csrf" value=(csrf);
            fieldset {
                legend { "What the site's owner may see and do with this device" }
                label { input type="checkbox" name="visible" value="yes" checked[flags.visible]; " Visible to the owner" }
                label { input type="checkbox" name="can_block" value="yes" checked[flags.block]; " Owner may block and unblock it" }
                label { input type="checkbox" name="can_power" value="yes" checked[flags.power]; " Owner may switch its power" }
            }
            div.actions { button #save-flags type="submit" { "Save owner access" } }
        }
    }
}

pub async fn device(
    State(state): State<WebState>,
    tech: Tech,
    Path((agent, device)): Path<(String, String)>,
    Query(query): Query<DeviceQuery>,
) -> Response {
    let (agent, device) = match parse_ids(&agent, Some(&device)) {
        Ok((a, Some(d))) => (a, d),
        Ok(_) => return redirect("/agents", None),
        Err(e) => return tech.problem(e, ("/agents", "Back to the agents")),
    };
    let notice = match query.command {
        Some(id) => match state.app.command(&agent, id).await {
            Ok(c) => Some(command_notice(&c.kind, &c.status, c.message.as_deref())),
            Err(_) => None,
        },
        None => None,
    };
    render_device(&state.app, &tech, &agent, &device, notice, StatusCode::OK).await
}

async fn render_device(
    app: &App,
    tech: &Tech,
    agent: &AgentId,
    device: &DeviceRef,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let devices_path = format!("/agents/{agent}/devices");
    let row = match app.agent(agent).await {
        Ok(row) => row,
        Err(e) => return tech.problem(e, ("/agents", "Back to the agents")),
    };
    let (stored, control) = match app.device(agent, device).await {
        Ok(found) => found,
        Err(e) => return tech.problem(e, (&devices_path, "Back to the devices")),
    };
    let d: Device = match serde_json::from_value(stored.record) {
        Ok(d) => d,
        Err(e) => {
            return tech.problem(
                OpError::Store(crate::store::StoreError::Corrupt(format!(
                    "devices.record: {e}"
                ))),
                (&devices_path, "Back to the devices"),
            )
        }
    };
    let flags = match app.device_owner_flags(agent, device).await {
        Ok(flags) => flags,
        Err(e) => return tech.problem(e, (&devices_path, "Back to the devices")),
    };
    let has_owner = app
        .owner_settings(agent)
        .await
        .map(|o| o.email.is_some())
        .unwrap_or(false);
    let events = app
        .device_events(
            agent,
            &EventFilter {
                mac: Some(device.mac.clone()),
                ..EventFilter::default()
            },
            None,
            50,
        )
        .await
        .map(|p| p.events)
        .unwrap_or_default();
    let name = display_name(&d);
    let base = format!("{devices_path}/{}", device.id());
    let body = html! {
        p { a href=(devices_path) { "← Devices of " (row.name) } }
        h1 { (name) " " @if d.online { span.badge.on { "online" } } @else { span.badge.off { "offline" } } }
        dl.facts {
            dt { "MAC" } dd { code { (d.mac) } @if d.locally_administered { " (locally administered)" } }
            dt { "IPv4" } dd { (d.ipv4.map(|ip| ip.to_string()).unwrap_or_else(|| "—".into())) }
            @if !d.ipv6.is_empty() {
                dt { "IPv6" } dd { @for (i, ip) in d.ipv6.iter().enumerate() { @if i > 0 { ", " } (ip) } }
            }
            dt { "Vendor" } dd { (d.vendor.as_deref().unwrap_or("—")) }
            dt { "VLAN" } dd { (d.vlan.map(|v| v.to_string()).unwrap_or_else(|| "none".into())) }
            dt { "Interface" } dd { (d.interface) }
            @if let Some(class) = &d.dhcp_vendor_class { dt { "DHCP class" } dd { (class) } }
            dt { "First seen" } dd { (when_ms(d.first_seen_ms)) }
            dt { "Last seen" } dd { (when_ms(d.last_seen_ms)) }
        }
        h2 { "Names" }
        @if d.names.is_empty() { p.muted { "The agent found no name for this device." } }
        @else {
            ul #names { @for n in &d.names { li { (n.name) " " span.muted { "(" (format!("{:?}", n.source).to_lowercase()) ")" } } } }
        }
        h2 { "Services" }
        @if d.services.is_empty() { p.muted { "No announced services." } }
        @else {
            div.scroll { table #services {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Type" } th scope="col" { "Port" } th scope="col" { "Heard through" } } }
                tbody { @for s in &d.services { tr {
                    td { (s.name) } td { code { (s.kind) } }
                    td.num { (s.port.map(|p| p.to_string()).unwrap_or_default()) } td { (s.source) }
                } } }
            } }
        }
        fieldset.plain disabled[!tech.may(Action::AgentsControl)] {
            (control_markup(tech.csrf(), &base, &control))
        }
        fieldset.plain disabled[!tech.may(Action::AgentsEdit)] {
            (flags_markup(tech.csrf(), &base, flags, has_owner))
        }
        h2 { "Events" }
        @if events.is_empty() { p.muted { "No events recorded." } }
        @else {
            div.scroll { table #events {
                thead { tr { th scope="col" { "When" } th scope="col" { "Event" } } }
                tbody { @for e in &events { tr {
                    td { (when(e.received_at)) }
                    td { (e.record.get("type").and_then(|t| t.as_str()).unwrap_or("event")) }
                } } }
            } }
        }
    };
    html_response(
        status,
        page(&name, Some(tech.viewer()), notice.as_ref(), body),
    )
}

fn owner_op(e: OwnerError) -> OpError {
    match e {
        OwnerError::Op(op) => op,
        other => OpError::Invalid {
            field: "owner",
            message: other.to_string(),
        },
    }
}

#[derive(Debug, Deserialize)]
pub struct ActionForm {
    pub csrf: Option<String>,
    pub action: Option<String>,
    pub confirm: Option<String>,
}

async fn act(
    state: WebState,
    tech: Tech,
    headers: HeaderMap,
    ids: (String, String),
    form: Result<Form<ActionForm>, FormRejection>,
    kind: Option<ControlAction>,
) -> Response {
    let form = form.ok().map(|Form(f)| f);
    if let Some(refused) = tech.refuse_post(&headers, form.as_ref().and_then(|f| f.csrf.as_deref()))
    {
        return refused;
    }
    let (agent, device) = match parse_ids(&ids.0, Some(&ids.1)) {
        Ok((a, Some(d))) => (a, d),
        Ok(_) => return redirect("/agents", None),
        Err(e) => return tech.problem(e, ("/agents", "Back to the agents")),
    };
    let base = format!("/agents/{agent}/devices/{}", device.id());
    let action = match kind {
        Some(action) => action,
        None => {
            let raw = form
                .as_ref()
                .and_then(|f| f.action.as_deref())
                .unwrap_or("");
            let Some(power) = PowerAction::parse(raw) else {
                let e = OpError::Invalid {
                    field: "action",
                    message: format!("{raw:?} is not one of on, off, cycle"),
                };
                return tech.problem(e, (&base, "Back to the device"));
            };
            let confirmed = form.as_ref().and_then(|f| f.confirm.as_deref()) == Some("yes");
            if power != PowerAction::On && !confirmed {
                let what = if power == PowerAction::Off {
                    "Switching the device off cuts its power until someone switches it on again."
                } else {
                    "Cycling switches the device off, waits, and switches it on: it restarts."
                };
                let explanation = html! { p { (what) } };
                let title = format!("Power {} {}?", power.as_str(), device.id());
                let action_url = format!("{base}/power");
                let html = confirm_page(
                    tech.viewer(),
                    &title,
                    explanation,
                    &action_url,
                    &[("action", power.as_str())],
                    &format!("Power {}", power.as_str()),
                    &base,
                );
                return html_response(StatusCode::OK, html);
            }
            ControlAction::Power(power)
        }
    };
    match state
        .app
        .control_device(&agent, &device, action, &tech.actor(), PAGE_WAIT)
        .await
    {
        Ok(row) => redirect(&format!("{base}?command={}", row.id), None),
        Err(e) => {
            let problem = Problem::from(e);
            render_device(
                &state.app,
                &tech,
                &agent,
                &device,
                Some(Notice::error(problem.message)),
                problem.status,
            )
            .await
        }
    }
}

pub async fn block(
    State(state): State<WebState>,
    tech: Tech,
    headers: HeaderMap,
    Path(ids): Path<(String, String)>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    act(state, tech, headers, ids, form, Some(ControlAction::Block)).await
}

pub async fn unblock(
    State(state): State<WebState>,
    tech: Tech,
    headers: HeaderMap,
    Path(ids): Path<(String, String)>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    act(
        state,
        tech,
        headers,
        ids,
        form,
        Some(ControlAction::Unblock),
    )
    .await
}

pub async fn power(
    State(state): State<WebState>,
    tech: Tech,
    headers: HeaderMap,
    Path(ids): Path<(String, String)>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    act(state, tech, headers, ids, form, None).await
}

#[derive(Debug, Deserialize)]
pub struct FlagsForm {
    pub csrf: Option<String>,
    pub visible: Option<String>,
    pub can_block: Option<String>,
    pub can_power: Option<String>,
}

pub async fn set_flags(
    State(state): State<WebState>,
    tech: Tech,
    headers: HeaderMap,
    Path(ids): Path<(String, String)>,
    form: Result<Form<FlagsForm>, FormRejection>,
) -> Response {
    let form = form.ok().map(|Form(f)| f);
    if let Some(refused) = tech.refuse_post(&headers, form.as_ref().and_then(|f| f.csrf.as_deref()))
    {
        return refused;
    }
    let (agent, device) = match parse_ids(&ids.0, Some(&ids.1)) {
        Ok((a, Some(d))) => (a, d),
        Ok(_) => return redirect("/agents", None),
        Err(e) => return tech.problem(e, ("/agents", "Back to the agents")),
    };
    let on = |v: Option<&String>| v.is_some_and(|v| v == "yes");
    let flags = Flags {
        visible: on(form.as_ref().and_then(|f| f.visible.as_ref())),
        block: on(form.as_ref().and_then(|f| f.can_block.as_ref())),
        power: on(form.as_ref().and_then(|f| f.can_power.as_ref())),
    };
    let status = match state
        .app
        .set_owner_flags(&agent, &device, flags, &tech.actor())
        .await
    {
        Ok(_) => (StatusCode::OK, Notice::ok("Owner access saved.")),
        Err(e) => {
            let problem = Problem::from(owner_op(e));
            (problem.status, Notice::error(problem.message))
        }
    };
    render_device(&state.app, &tech, &agent, &device, Some(status.1), status.0).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(
        mac: &str,
        ip: Option<&str>,
        vendor: Option<&str>,
        seen: i64,
        online: bool,
    ) -> DeviceLine {
        let d: Device = serde_json::from_value(serde_json::json!({
            "mac": mac, "interface": "lan0", "ipv4": ip, "vendor": vendor,
            "first_seen_ms": 0, "last_seen_ms": seen, "online": online,
        }))
        .unwrap();
        DeviceLine::new(d)
    }

    fn macs(lines: &[DeviceLine]) -> Vec<&str> {
        lines.iter().map(|l| &l.device.mac[15..]).collect()
    }

    #[test]
    fn sorting_keeps_missing_values_last_and_ties_by_mac() {
        let mut lines = vec![
            line(
                "02:00:00:00:00:03",
                Some("192.168.1.20"),
                Some("Acme"),
                30,
                true,
            ),
            line("02:00:00:00:00:01", None, None, 10, false),
            line(
                "02:00:00:00:00:02",
                Some("192.168.1.3"),
                Some("acme"),
                20,
                true,
            ),
        ];
        sort_devices(&mut lines, SortKey::Ip, false);
        assert_eq!(
            macs(&lines),
            ["02", "03", "01"],
            "numeric IP order, none last"
        );
        sort_devices(&mut lines, SortKey::Ip, true);
        assert_eq!(
            macs(&lines),
            ["03", "02", "01"],
            "none stays last descending"
        );
        sort_devices(&mut lines, SortKey::Vendor, false);
        assert_eq!(macs(&lines), ["02", "03", "01"], "equal vendors tie by MAC");
        sort_devices(&mut lines, SortKey::LastSeen, true);
        assert_eq!(macs(&lines), ["03", "02", "01"]);
        sort_devices(&mut lines, SortKey::Online, true);
        assert_eq!(macs(&lines), ["02", "03", "01"]);
    }

    #[test]
    fn the_view_is_read_from_the_query_and_bad_values_are_named() {
        let view = TableView::parse(&TableQuery {
            q: Some(" tv ".into()),
            online: Some("yes".into()),
            vlan: Some("10".into()),
            sort: Some("last_seen".into()),
            order: Some("desc".into()),
        })
        .unwrap();
        assert_eq!(view.q, "tv");
        assert_eq!((view.online, view.vlan), (Some(true), Some(10)));
        assert_eq!((view.sort, view.descending), (SortKey::LastSeen, true));
        assert_eq!(
            view.sorted_by(SortKey::LastSeen),
            "sort=last_seen&order=asc&q=tv&online=yes&vlan=10"
        );
        assert!(view.sorted_by(SortKey::Ip).starts_with("sort=ip&order=asc"));
        for (q, needle) in [
            (
                TableQuery {
                    online: Some("maybe".into()),
                    ..Default::default()
                },
                "online",
            ),
            (
                TableQuery {
                    vlan: Some("5000".into()),
                    ..Default::default()
                },
                "vlan",
            ),
            (
                TableQuery {
                    sort: Some("color".into()),
                    ..Default::default()
                },
                "sort",
            ),
            (
                TableQuery {
                    order: Some("up".into()),
                    ..Default::default()
                },
                "order",
            ),
        ] {
            assert!(TableView::parse(&q).unwrap_err().starts_with(needle));
        }
    }

    #[test]
    fn command_outcomes_read_as_sentences() {
        assert!(command_notice("block", "done", None).ok);
        let failed = command_notice("block", "failed", Some("device_is_gateway"));
        assert!(!failed.ok && failed.text.contains("device_is_gateway"));
        assert!(command_notice("power", "sent", None)
            .text
            .contains("Reload"));
    }
}
