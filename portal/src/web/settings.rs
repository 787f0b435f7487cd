//! The agent's settings page (`/agents/{id}/settings`): the state of its portal-managed settings (pending,
//! applied vN with the settings its local file pins, or refused with the agent's message), and a form with
//! one field per setting. An empty field means "the agent's local value" (its `agent.toml`); interfaces
//! are one per line, `NAME [vlan=N] [tagged] [cidr=..] [gateway=..]`. The form posts to the same
//! `App::put_settings` as `PUT /api/v1/agents/{id}/settings`; a refused form comes back as typed with the
//! error next to its field. Roles that may not change settings see the form disabled.

use std::collections::HashMap;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use maud::{html, Markup};
use outpost_cloud_link::AgentId;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::auth::{redirect, Tech};
use super::layout::{html_response, page, when_opt, Notice};
use super::WebState;
use crate::access::Action;
use crate::api::owner::Problem;
use crate::app::settings::PutSettingsError;
use crate::store::settings::SettingsRow;

/// How a field is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Platform,
    Secs,
    Count,
    Bool,
}

/// Every field of the form but the interfaces: (path = input name, label, kind).
const FIELDS: [(&str, &str, Kind); 18] = [
    ("platform", "Platform", Kind::Platform),
    ("heartbeat_secs", "Heartbeat (seconds)", Kind::Secs),
    ("outbox_max_bytes", "Outbox size (bytes)", Kind::Count),
    ("discovery.enabled", "Discovery", Kind::Bool),
    (
        "discovery.sweep_interval_secs",
        "Sweep interval (seconds)",
        Kind::Secs,
    ),
    (
        "discovery.rate_pps",
        "Sweep rate (ARP requests per second; 0: automatic)",
        Kind::Count,
    ),
    ("discovery.retries", "Sweep retries", Kind::Count),
    (
        "discovery.probe_interval_secs",
        "Probe interval (seconds)",
        Kind::Secs,
    ),
    (
        "discovery.offline_after_missed",
        "Offline after missed probes",
        Kind::Count,
    ),
    ("discovery.mdns", "mDNS", Kind::Bool),
    ("discovery.ssdp", "SSDP / UPnP", Kind::Bool),
    (
        "discovery.ssdp_interval_secs",
        "SSDP interval (seconds)",
        Kind::Secs,
    ),
    ("discovery.reverse_dns", "Reverse DNS", Kind::Bool),
    (
        "discovery.report_interval_secs",
        "Report interval (seconds)",
        Kind::Secs,
    ),
    (
        "blocking.repeat_secs",
        "Blocking: repeat (seconds)",
        Kind::Secs,
    ),
    (
        "blocking.restore_replies",
        "Blocking: restore replies",
        Kind::Count,
    ),
    ("power.timeout_secs", "Power: timeout (seconds)", Kind::Secs),
    ("power.retries", "Power: retries", Kind::Count),
];

/// One error of the form, by setting path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn error(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// The form as typed: input name → value.
pub type FormInput = HashMap<String, String>;

/// The input an error of `path` is shown next to.
fn input_of(path: &str) -> Option<&'static str> {
    if path.starts_with("interfaces") {
        return Some("interfaces");
    }
    FIELDS.iter().map(|(p, _, _)| *p).find(|p| *p == path)
}

/// One interface line: `NAME [vlan=N] [tagged] [cidr=..] [gateway=..]`.
fn interface_of(i: usize, line: &str) -> Result<Value, FieldError> {
    let mut words = line.split_whitespace();
    let name = words.next().unwrap_or_default();
    let mut iface = Map::new();
    iface.insert("name".into(), Value::String(name.to_owned()));
    for word in words {
        let (key, value) = word.split_once('=').unwrap_or((word, ""));
        match (key, value) {
            ("tagged", "") => {
                iface.insert("tagged".into(), Value::Bool(true));
            }
            ("vlan", v) => {
                let n: u16 = v.parse().map_err(|_| {
                    error(
                        format!("interfaces[{i}].vlan"),
                        format!("interfaces[{i}].vlan: {v:?} is not a VLAN id (1-4094)"),
                    )
                })?;
                iface.insert("vlan".into(), Value::from(n));
            }
            ("cidr", v) | ("gateway", v) if !v.is_empty() => {
                iface.insert(key.into(), Value::String(v.to_owned()));
            }
            _ => {
                return Err(error(
                    format!("interfaces[{i}]"),
                    format!("interfaces[{i}] ({name}): {word:?} is not understood; write NAME [vlan=N] [tagged] [cidr=A.B.C.D/N] [gateway=A.B.C.D]"),
                ))
            }
        }
    }
    Ok(Value::Object(iface))
}

/// The settings JSON the form stands for (empty fields left out), or the errors only the form can make (a
/// number that is not one, an interface line it cannot read).
pub fn settings_of(form: &FormInput) -> Result<Value, Vec<FieldError>> {
    let mut top = Map::new();
    let mut errors = Vec::new();
    for (path, label, kind) in FIELDS {
        let raw = form.get(path).map(|s| s.trim()).unwrap_or("");
        if raw.is_empty() {
            continue;
        }
        let value = match kind {
            Kind::Platform => Value::String(raw.to_owned()),
            Kind::Bool => match raw {
                "on" | "true" => Value::Bool(true),
                "off" | "false" => Value::Bool(false),
                other => {
                    errors.push(error(path, format!("{path}: {other:?} is not on or off")));
                    continue;
                }
            },
            Kind::Secs => match raw.replace(',', ".").parse::<f64>() {
                Ok(v) if v.is_finite() => Value::from(v),
                _ => {
                    errors.push(error(
                        path,
                        format!("{path}: {label}: {raw:?} is not a number of seconds"),
                    ));
                    continue;
                }
            },
            Kind::Count => match raw.parse::<u64>() {
                Ok(v) => Value::from(v),
                Err(_) => {
                    errors.push(error(
                        path,
                        format!("{path}: {label}: {raw:?} is not a whole number"),
                    ));
                    continue;
                }
            },
        };
        match path.split_once('.') {
            None => {
                top.insert(path.into(), value);
            }
            Some((table, key)) => {
                if let Value::Object(t) = top
                    .entry(table)
                    .or_insert_with(|| Value::Object(Map::new()))
                {
                    t.insert(key.into(), value);
                }
            }
        }
    }
    let lines: Vec<&str> = form
        .get("interfaces")
        .map(String::as_str)
        .unwrap_or("")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if !lines.is_empty() {
        let mut list = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            match interface_of(i, line) {
                Ok(v) => list.push(v),
                Err(e) => errors.push(e),
            }
        }
        top.insert("interfaces".into(), Value::Array(list));
    }
    if errors.is_empty() {
        Ok(Value::Object(top))
    } else {
        Err(errors)
    }
}

/// The form filled in with stored settings.
pub fn form_of(settings: &Value) -> FormInput {
    let mut form = FormInput::new();
    for (path, _, kind) in FIELDS {
        let v = match path.split_once('.') {
            None => settings.get(path),
            Some((table, key)) => settings.get(table).and_then(|t| t.get(key)),
        };
        let text = match (v, kind) {
            (None, _) => continue,
            (Some(Value::Bool(b)), _) => (if *b { "on" } else { "off" }).to_owned(),
            (Some(Value::String(s)), _) => s.clone(),
            (Some(other), _) => other.to_string(),
        };
        form.insert(path.into(), text);
    }
    if let Some(list) = settings.get("interfaces").and_then(Value::as_array) {
        let lines: Vec<String> = list
            .iter()
            .map(|i| {
                let mut line = i["name"].as_str().unwrap_or_default().to_owned();
                if let Some(v) = i.get("vlan").and_then(Value::as_u64) {
                    line.push_str(&format!(" vlan={v}"));
                }
                if i.get("tagged").and_then(Value::as_bool) == Some(true) {
                    line.push_str(" tagged");
                }
                for key in ["cidr", "gateway"] {
                    if let Some(v) = i.get(key).and_then(Value::as_str) {
                        line.push_str(&format!(" {key}={v}"));
                    }
                }
                line
            })
            .collect();
        form.insert("interfaces".into(), lines.join("\n"));
    }
    form
}

/// What the agent did with its settings, in words.
fn state_markup(row: Option<&SettingsRow>) -> Markup {
    let stored = row.filter(|r| r.version > 0);
    html! {
        dl.facts #settings-state {
            dt { "Portal settings" }
            dd #state {
                @match stored {
                    None => { "None: the agent runs with its local settings." }
                    Some(r) => {
                        @match r.state.as_deref() {
                            Some("applied") => { "Applied v" (r.version)
                                @if r.restart { " (the agent restarts to apply them)" } }
                            Some("refused") => { strong { "Refused v" (r.version) }
                                @if let Some(m) = &r.error_message { ": " (m) } }
                            _ => { "Pending v" (r.version) ": waiting for the agent (sent when it is connected)" }
                        }
                    }
                }
            }
            @if let Some(r) = stored {
                dt { "Changed" } dd { (when_opt(r.updated_at)) " by " (r.updated_by.as_deref().unwrap_or("—")) }
            }
            @if let Some(v) = row.and_then(|r| r.applied_version) {
                dt { "Last applied" } dd #applied { "v" (v) }
            }
            dt { "Pinned by the agent's local file" }
            dd #pinned {
                @match row.map(|r| r.pinned.as_slice()).unwrap_or(&[]) {
                    [] => { span.muted { "nothing" } }
                    list => { (list.join(", ")) }
                }
            }
            dt { "Agent runs with" }
            dd #running { @match row.and_then(|r| r.running_version) {
                Some(v) => { "v" (v) }
                None => { span.muted { "no portal settings (or it has not said)" } }
            } }
        }
    }
}

/// The form; `errors` are shown next to their fields and in a summary at the top.
pub fn form(
    csrf: &str,
    id: &AgentId,
    base_version: u64,
    v: &FormInput,
    errors: &[FieldError],
) -> Markup {
    let value = |name: &str| v.get(name).map(String::as_str).unwrap_or("");
    let errs = |name: &str| -> Vec<&str> {
        errors
            .iter()
            .filter(|e| input_of(&e.field) == Some(name))
            .map(|e| e.message.as_str())
            .collect()
    };
    let input_id = |name: &str| name.replace('.', "-");
    let unmapped: Vec<&FieldError> = errors
        .iter()
        .filter(|e| input_of(&e.field).is_none())
        .collect();
    html! {
        @if !errors.is_empty() {
            div.notice.error role="alert" #settings-errors {
                p { "The settings were not saved; fix:" }
                ul { @for e in errors { li { (e.message) } } }
            }
        }
        form #settings method="post" action={ "/agents/" (id) "/settings" } {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="base_version" value=(base_version);
            p.muted { "An empty field keeps the agent's local value (its agent.toml)." }
            div.grid {
                @for (path, label, kind) in FIELDS {
                    @let e = errs(path);
                    @let iid = input_id(path);
                    @let described = format!("{iid}-error");
                    div {
                        label for=(iid) { (label) }
                        @match kind {
                            Kind::Platform => {
                                select id=(iid) name=(path) aria-invalid=[(!e.is_empty()).then_some("true")] {
                                    option value="" selected[value(path).is_empty()] { "(the agent's local value)" }
                                    @for (p, l) in [("box", "box (ARP pausing)"), ("router", "router (nftables)"), ("linux", "linux (no blocking)")] {
                                        option value=(p) selected[value(path) == p] { (l) }
                                    }
                                }
                            }
                            Kind::Bool => {
                                select id=(iid) name=(path) aria-invalid=[(!e.is_empty()).then_some("true")] {
                                    option value="" selected[value(path).is_empty()] { "(the agent's local value)" }
                                    option value="on" selected[value(path) == "on"] { "on" }
                                    option value="off" selected[value(path) == "off"] { "off" }
                                }
                            }
                            _ => {
                                input id=(iid) name=(path) type="text" inputmode="decimal" value=(value(path))
                                    aria-invalid=[(!e.is_empty()).then_some("true")]
                                    aria-describedby=[(!e.is_empty()).then_some(described.as_str())];
                            }
                        }
                        @for m in &e { p.field-error id=(described) { (m) } }
                    }
                }
                @let e = errs("interfaces");
                div.wide {
                    label for="interfaces" { "Interfaces " span.muted { "(one per line: NAME [vlan=N] [tagged] [cidr=..] [gateway=..]; empty: the agent's local list)" } }
                    textarea #interfaces name="interfaces" rows="4"
                        aria-invalid=[(!e.is_empty()).then_some("true")]
                        aria-describedby=[(!e.is_empty()).then_some("interfaces-error")] { (value("interfaces")) }
                    @for m in &e { p.field-error id="interfaces-error" { (m) } }
                }
            }
            @for e in &unmapped { p.field-error { (e.message) } }
            div.actions { button #save-settings type="submit" { "Save and send to the agent" } }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct OkQuery {
    pub ok: Option<String>,
}

async fn render(
    state: &WebState,
    tech: &Tech,
    id: &AgentId,
    notice: Option<Notice>,
    refused: Option<(FormInput, Vec<FieldError>)>,
    status: StatusCode,
) -> Response {
    let app = &state.app;
    let agent = match app.agent(id).await {
        Ok(a) => a,
        Err(e) => return tech.problem(e, ("/agents", "Back to the agents")),
    };
    let row = match app.agent_settings(id).await {
        Ok(r) => r,
        Err(e) => return tech.problem(e, ("/agents", "Back to the agents")),
    };
    let version = row.as_ref().map_or(0, |r| r.version);
    let change = tech.may(Action::AgentsControl);
    let (input, errors) = match refused {
        Some((input, errors)) => (input, errors),
        None => (
            row.as_ref()
                .and_then(|r| r.settings.as_ref())
                .map(form_of)
                .unwrap_or_default(),
            Vec::new(),
        ),
    };
    let body = html! {
        p { a href={ "/agents/" (id) } { "← " (agent.name) } }
        h1 { "Settings of " (agent.name) }
        (state_markup(row.as_ref()))
        @if !change {
            p.muted #read-only { "Your role (" (tech.caller.role.label()) ") may look at these settings but not change them." }
        }
        fieldset.plain disabled[!change] { (form(tech.csrf(), id, version, &input, &errors)) }
    };
    html_response(
        status,
        page(
            &format!("Settings of {}", agent.name),
            Some(tech.viewer()),
            notice.as_ref(),
            body,
        ),
    )
}

/// `GET /agents/{id}/settings`.
pub async fn show(
    State(state): State<WebState>,
    tech: Tech,
    Path(id): Path<String>,
    Query(q): Query<OkQuery>,
) -> Response {
    let id = match tech.agent_id(&id) {
        Ok(id) => id,
        Err(page) => return *page,
    };
    let notice = (q.ok.as_deref() == Some("saved"))
        .then(|| Notice::ok("Settings saved and sent to the agent (or queued until it connects)."));
    render(&state, &tech, &id, notice, None, StatusCode::OK).await
}

/// `POST /agents/{id}/settings`.
pub async fn save(
    State(state): State<WebState>,
    tech: Tech,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<FormInput>, FormRejection>,
) -> Response {
    let form = form.ok().map(|Form(f)| f);
    if let Some(refused) = tech.refuse_post(
        &headers,
        form.as_ref()
            .and_then(|f| f.get("csrf"))
            .map(String::as_str),
    ) {
        return refused;
    }
    let Some(form) = form else {
        return redirect("/agents", None);
    };
    let id = match tech.agent_id(&id) {
        Ok(id) => id,
        Err(page) => return *page,
    };
    let settings = match settings_of(&form) {
        Ok(s) => s,
        Err(errors) => {
            return render(
                &state,
                &tech,
                &id,
                None,
                Some((form, errors)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    };
    let base = form
        .get("base_version")
        .and_then(|b| b.trim().parse::<u64>().ok());
    match state
        .app
        .put_settings(&id, &settings, base, &tech.actor())
        .await
    {
        Ok(_) => redirect(&format!("/agents/{id}/settings?ok=saved"), None),
        Err(PutSettingsError::Invalid(e)) => {
            let errors = vec![error(e.field.clone(), e.to_string())];
            render(
                &state,
                &tech,
                &id,
                None,
                Some((form, errors)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(stale @ PutSettingsError::Stale { .. }) => {
            render(
                &state,
                &tech,
                &id,
                Some(Notice::error(format!(
                    "Not saved: someone changed these settings meanwhile. The page now shows theirs; redo your change. ({stale})"
                ))),
                None,
                StatusCode::CONFLICT,
            )
            .await
        }
        Err(PutSettingsError::Op(e)) => {
            let problem = Problem::from(e);
            render(
                &state,
                &tech,
                &id,
                Some(Notice::error(problem.message)),
                Some((form, Vec::new())),
                problem.status,
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(pairs: &[(&str, &str)]) -> FormInput {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_form_maps_onto_the_settings_and_back() {
        let form = input(&[
            ("platform", "router"),
            ("heartbeat_secs", "15"),
            ("discovery.retries", "2"),
            ("discovery.mdns", "off"),
            ("power.timeout_secs", "2,5"),
            ("discovery.rate_pps", ""),
            (
                "interfaces",
                "eth0 vlan=1\n\n eth0.20 vlan=20 tagged gateway=10.0.20.1 \n",
            ),
        ]);
        let s = settings_of(&form).unwrap();
        assert_eq!(
            s,
            serde_json::json!({
                "platform": "router", "heartbeat_secs": 15.0,
                "discovery": {"retries": 2, "mdns": false},
                "power": {"timeout_secs": 2.5},
                "interfaces": [{"name": "eth0", "vlan": 1},
                    {"name": "eth0.20", "vlan": 20, "tagged": true, "gateway": "10.0.20.1"}]
            })
        );
        crate::app::settings::parse_settings(&s).unwrap();
        let back = form_of(&s);
        assert_eq!(back["discovery.mdns"], "off");
        assert_eq!(back["discovery.retries"], "2");
        assert_eq!(
            back["interfaces"],
            "eth0 vlan=1\neth0.20 vlan=20 tagged gateway=10.0.20.1"
        );
        assert!(!back.contains_key("discovery.rate_pps"));
    }

    #[test]
    fn what_the_form_cannot_read_is_named() {
        let errors = settings_of(&input(&[
            ("discovery.retries", "many"),
            ("interfaces", "eth0\neth1 vlan=x"),
        ]))
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["discovery.retries", "interfaces[1].vlan"]);
        let id: AgentId = "agent-1".parse().unwrap();
        let html = form("tok", &id, 0, &FormInput::new(), &errors).into_string();
        assert!(html.contains("id=\"discovery-retries-error\""), "{html}");
        assert!(html.contains("id=\"interfaces-error\""), "{html}");
    }
}
