//! Operator routes on an agent's device inventory: `GET /agents/{id}/devices` and `GET /agents/{id}/events`,
//! filtered, paged with an opaque cursor (`next_cursor` of one page is the `cursor` of the next), and
//! `GET /agents/{id}/devices/{device}`. Every device carries the portal's control view
//! ([`super::views::device_view`]).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use outpost_cloud_link::control::DeviceRef;
use outpost_cloud_link::inventory::{normalize_mac, EventKind};
use serde::Deserialize;

use super::auth::Operator;
use super::error::AppError;
use super::views::{device_view, DeviceList, EventList};
use super::ApiState;
use crate::app::{App, OpError};
use crate::store::devices::{DeviceFilter, DeviceKey, EventFilter, NO_VLAN};

/// Default and largest page size of both lists.
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;
/// Longest `q` accepted.
const MAX_TEXT: usize = 200;

/// Cursor prefixes: a cursor of one list is refused by the other.
const DEVICE_CURSOR: &str = "d1";
const EVENT_CURSOR: &str = "e1";

#[derive(Debug, Deserialize)]
pub struct DeviceQuery {
    pub online: Option<String>,
    pub vlan: Option<String>,
    pub interface: Option<String>,
    pub q: Option<String>,
    pub mac: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
    pub offset: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct EventQuery {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub mac: Option<String>,
    pub since_ms: Option<String>,
    pub until_ms: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
    pub offset: Option<String>,
}

/// A parameter's value, `None` when absent or blank.
fn given(raw: &Option<String>) -> Option<&str> {
    raw.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn limit(raw: &Option<String>) -> Result<u32, AppError> {
    match given(raw) {
        None => Ok(DEFAULT_LIMIT),
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(AppError::bad_request(
                "limit",
                format!("{s:?} is not a page size; give a whole number from 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})"),
            )),
        },
    }
}

fn no_offset(raw: &Option<String>) -> Result<(), AppError> {
    match raw {
        None => Ok(()),
        Some(_) => Err(AppError::bad_request(
            "offset",
            "this list pages with a cursor, not an offset; omit offset and pass the previous page's \
             next_cursor as cursor",
        )),
    }
}

fn bad_cursor() -> AppError {
    AppError::bad_request(
        "cursor",
        "not a cursor of this list; pass the next_cursor of the previous page unchanged, or omit cursor \
         for the first page",
    )
}

fn encode_cursor(prefix: &str, rest: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{prefix}:{rest}"))
}

/// The text after `prefix:` of a cursor.
fn decode_cursor(prefix: &str, raw: &str) -> Result<String, AppError> {
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad_cursor())?;
    let text = String::from_utf8(bytes).map_err(|_| bad_cursor())?;
    text.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix(':'))
        .map(str::to_owned)
        .ok_or_else(bad_cursor)
}

fn device_cursor(key: &DeviceKey) -> String {
    encode_cursor(DEVICE_CURSOR, &format!("{}/{}", key.vlan, key.mac))
}

fn parse_device_cursor(raw: &str) -> Result<DeviceKey, AppError> {
    let rest = decode_cursor(DEVICE_CURSOR, raw)?;
    let (vlan, mac) = rest.split_once('/').ok_or_else(bad_cursor)?;
    let vlan: u16 = vlan.parse().map_err(|_| bad_cursor())?;
    let mac = normalize_mac(mac).ok_or_else(bad_cursor)?;
    Ok(DeviceKey { vlan, mac })
}

fn mac_filter(raw: &Option<String>) -> Result<Option<String>, AppError> {
    given(raw)
        .map(|s| {
            normalize_mac(s).ok_or_else(|| {
                AppError::bad_request(
                    "mac",
                    format!(
                        "{s:?} is not a MAC address; give six hex octets like 00:1a:2b:3c:4d:5e"
                    ),
                )
            })
        })
        .transpose()
}

fn parse_online(raw: &Option<String>) -> Result<Option<bool>, AppError> {
    match given(raw) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(s) => Err(AppError::bad_request(
            "online",
            format!("{s:?} is not accepted; give true or false"),
        )),
    }
}

fn parse_vlan(raw: &Option<String>) -> Result<Option<u16>, AppError> {
    match given(raw) {
        None => Ok(None),
        Some("none") => Ok(Some(NO_VLAN)),
        Some(s) => match s.parse::<u16>() {
            Ok(v) if (1..=4094).contains(&v) => Ok(Some(v)),
            _ => Err(AppError::bad_request(
                "vlan",
                format!("{s:?} is not a VLAN; give a VLAN id from 1 to 4094, or none for devices seen on untagged segments"),
            )),
        },
    }
}

fn parse_text(raw: &Option<String>) -> Result<Option<String>, AppError> {
    match given(raw) {
        Some(s) if s.chars().count() > MAX_TEXT => Err(AppError::bad_request(
            "q",
            format!("the search text is longer than {MAX_TEXT} characters; shorten it"),
        )),
        other => Ok(other.map(str::to_owned)),
    }
}

/// `GET /agents/{id}/devices`: a page of the agent's devices, ordered by (VLAN, MAC).
pub async fn list(
    _: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    query: Result<Query<DeviceQuery>, QueryRejection>,
) -> Result<Json<DeviceList>, AppError> {
    let id = App::parse_agent_id(&id)?;
    let Query(query) = query.map_err(AppError::from_query)?;
    no_offset(&query.offset)?;
    let filter = DeviceFilter {
        online: parse_online(&query.online)?,
        vlan: parse_vlan(&query.vlan)?,
        interface: given(&query.interface).map(str::to_owned),
        text: parse_text(&query.q)?,
        mac: mac_filter(&query.mac)?,
    };
    let limit = limit(&query.limit)?;
    let after = given(&query.cursor).map(parse_device_cursor).transpose()?;
    let page = state
        .app
        .devices(&id, &filter, after.as_ref(), limit)
        .await?;
    let facts = state.app.control_facts(&id).await?;
    Ok(Json(DeviceList {
        devices: page
            .devices
            .into_iter()
            .map(|d| {
                let control = facts.device(&d);
                device_view(d.record, &control)
            })
            .collect(),
        next_cursor: page.next.as_ref().map(device_cursor),
        total: page.total,
    }))
}

/// `GET /agents/{id}/devices/{device}`: one device (`MAC` or `MAC@VLAN`) with its control view.
pub async fn get(
    _: Operator,
    State(state): State<ApiState>,
    Path((id, device)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, AppError> {
    let id = App::parse_agent_id(&id)?;
    let device: DeviceRef = device.parse().map_err(OpError::from)?;
    let (row, control) = state.app.device(&id, &device).await?;
    Ok(Json(device_view(row.record, &control)))
}

fn parse_kinds(raw: &Option<String>) -> Result<Vec<String>, AppError> {
    let Some(raw) = given(raw) else {
        return Ok(Vec::new());
    };
    let mut kinds: Vec<String> = Vec::new();
    for kind in raw.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        if !EventKind::ALL.contains(&kind) {
            return Err(AppError::bad_request(
                "type",
                format!(
                    "{kind:?} is not an event type; give one or more of {} separated by commas",
                    EventKind::ALL.join(", ")
                ),
            ));
        }
        if !kinds.iter().any(|k| k == kind) {
            kinds.push(kind.to_owned());
        }
    }
    Ok(kinds)
}

fn parse_ms(field: &str, raw: &Option<String>) -> Result<Option<i64>, AppError> {
    given(raw)
        .map(|s| {
            s.parse::<i64>().map_err(|_| {
                AppError::bad_request(
                    field,
                    format!("{s:?} is not a time; give Unix milliseconds (a whole number)"),
                )
            })
        })
        .transpose()
}

/// `GET /agents/{id}/events`: a page of the agent's device events, newest first.
pub async fn events(
    _: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    query: Result<Query<EventQuery>, QueryRejection>,
) -> Result<Json<EventList>, AppError> {
    let id = App::parse_agent_id(&id)?;
    let Query(query) = query.map_err(AppError::from_query)?;
    no_offset(&query.offset)?;
    let filter = EventFilter {
        kinds: parse_kinds(&query.kind)?,
        mac: mac_filter(&query.mac)?,
        since_ms: parse_ms("since_ms", &query.since_ms)?,
        until_ms: parse_ms("until_ms", &query.until_ms)?,
    };
    if let (Some(since), Some(until)) = (filter.since_ms, filter.until_ms) {
        if until < since {
            return Err(AppError::bad_request(
                "until_ms",
                format!(
                    "{until} is before since_ms ({since}); give an until_ms at or after since_ms"
                ),
            ));
        }
    }
    let limit = limit(&query.limit)?;
    let before = given(&query.cursor)
        .map(|raw| {
            decode_cursor(EVENT_CURSOR, raw)?
                .parse::<u64>()
                .map_err(|_| bad_cursor())
        })
        .transpose()?;
    let page = state.app.device_events(&id, &filter, before, limit).await?;
    Ok(Json(EventList {
        events: page
            .events
            .into_iter()
            .map(|e| {
                let mut record = e.record;
                if let Some(object) = record.as_object_mut() {
                    object.insert("id".into(), e.id.into());
                }
                record
            })
            .collect(),
        next_cursor: page
            .next
            .map(|id| encode_cursor(EVENT_CURSOR, &id.to_string())),
    }))
}
