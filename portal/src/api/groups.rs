//! The group routes: groups of agents with sub-groups (list, create, change, delete, set their users),
//! moving an agent to another group (`PUT /agents/{id}/group`), and support access grants. Groups,
//! agents and grants outside the caller's company or scope are answered 404.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::{Operator, PeerAddr};
use super::error::AppError;
use super::people::{address, parse_id, present};
use super::views::time;
use super::ApiState;
use crate::app::groups::{GrantInfo, GrantTarget, GroupChange, GroupInfo, NewGrant, NewGroup};
use crate::app::App;

/// A group as the API shows it.
#[derive(Debug, Serialize)]
pub struct GroupView {
    pub id: i64,
    pub name: String,
    pub note: String,
    pub parent: Option<i64>,
    /// Whether it holds an active agent (directly).
    pub active: bool,
    pub active_agents: u64,
    /// Of its active agents, how many renew or expire within the next four weeks.
    pub due_for_renewal: u64,
    /// The usernames of its group admins and supervisors.
    pub users: Vec<String>,
}

impl From<GroupInfo> for GroupView {
    fn from(g: GroupInfo) -> Self {
        GroupView {
            id: g.row.id,
            name: g.row.name,
            note: g.row.note,
            parent: g.row.parent_id,
            active: g.row.active_agents > 0,
            active_agents: g.row.active_agents,
            due_for_renewal: g.row.due_agents,
            users: g.users,
        }
    }
}

/// `GET /groups`: the groups the caller sees, by name.
pub async fn list(
    op: Operator,
    State(state): State<ApiState>,
) -> Result<Json<serde_json::Value>, AppError> {
    let groups: Vec<GroupView> = state
        .app
        .groups_in_scope(&op.caller)
        .await?
        .into_iter()
        .map(GroupView::from)
        .collect();
    Ok(Json(json!({ "groups": groups })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGroupBody {
    pub name: String,
    pub note: Option<String>,
    pub parent: Option<i64>,
}

/// `POST /groups`.
pub async fn create(
    op: Operator,
    State(state): State<ApiState>,
    peer: PeerAddr,
    body: Result<Json<NewGroupBody>, JsonRejection>,
) -> Result<(StatusCode, Json<GroupView>), AppError> {
    let Json(body) = body.map_err(AppError::from_json)?;
    let new = NewGroup {
        name: &body.name,
        note: body.note.as_deref(),
        parent: body.parent,
    };
    let info = state
        .app
        .create_group(&op.caller, &new, address(peer).as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(info.into())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeGroupBody {
    pub name: Option<String>,
    pub note: Option<String>,
    /// Absent: unchanged; null: top-level.
    #[serde(default, deserialize_with = "present")]
    pub parent: Option<Option<i64>>,
}

/// `PATCH /groups/{id}`: name, note, parent.
pub async fn change(
    op: Operator,
    State(state): State<ApiState>,
    peer: PeerAddr,
    Path(id): Path<String>,
    body: Result<Json<ChangeGroupBody>, JsonRejection>,
) -> Result<Json<GroupView>, AppError> {
    let id = parse_id(&id, "group", "groups")?;
    let Json(body) = body.map_err(AppError::from_json)?;
    let change = GroupChange {
        name: body.name.as_deref(),
        note: body.note.as_deref(),
        parent: body.parent,
    };
    let info = state
        .app
        .change_group(&op.caller, id, &change, address(peer).as_deref())
        .await?;
    Ok(Json(info.into()))
}

/// `DELETE /groups/{id}`: only an empty group.
pub async fn delete(
    op: Operator,
    State(state): State<ApiState>,
    peer: PeerAddr,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    let id = parse_id(&id, "group", "groups")?;
    state
        .app
        .delete_group(&op.caller, id, address(peer).as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupUsersBody {
    pub users: Vec<i64>,
}

/// `PUT /groups/{id}/users`: the group's users become exactly these.
pub async fn set_users(
    op: Operator,
    State(state): State<ApiState>,
    peer: PeerAddr,
    Path(id): Path<String>,
    body: Result<Json<GroupUsersBody>, JsonRejection>,
) -> Result<Json<GroupView>, AppError> {
    let id = parse_id(&id, "group", "groups")?;
    let Json(body) = body.map_err(AppError::from_json)?;
    let info = state
        .app
        .set_group_users(&op.caller, id, &body.users, address(peer).as_deref())
        .await?;
    Ok(Json(info.into()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveBody {
    /// Required: a group id, or null for no group.
    #[serde(default, deserialize_with = "present")]
    pub group: Option<Option<i64>>,
}

/// `PUT /agents/{id}/group`: moves the agent to a group the caller sees (null: out of every group, for
/// company admins).
pub async fn move_agent(
    op: Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Result<Json<MoveBody>, JsonRejection>,
) -> Result<Json<serde_json::Value>, AppError> {
    let agent = App::parse_agent_id(&id)?;
    let Json(body) = body.map_err(AppError::from_json)?;
    let group = body.group.ok_or_else(|| {
        AppError::bad_request(
            "group",
            "give the id of the group to move the agent to (GET /api/v1/groups lists them), or null \
             for no group",
        )
    })?;
    let name = state
        .app
        .move_agent_to_group(&op.caller, &agent, group)
        .await?;
    Ok(Json(json!({
        "agent_id": agent.as_str(),
        "group": group,
        "group_name": name,
    })))
}

/// A support grant as the API shows it.
#[derive(Debug, Serialize)]
pub struct GrantView {
    pub id: i64,
    /// The support engineer: id, username and name.
    pub user: serde_json::Value,
    /// `company`, `group` or `agent`.
    pub scope: String,
    pub group: Option<i64>,
    pub agent: Option<String>,
    /// What it covers, in words.
    pub covers: String,
    /// When it ends; null: when removed.
    pub until: Option<String>,
    pub in_force: bool,
    pub created_by: String,
    pub created_at: String,
}

impl From<GrantInfo> for GrantView {
    fn from(g: GrantInfo) -> Self {
        GrantView {
            id: g.row.id,
            user: json!({ "id": g.row.user_id, "username": g.username, "name": g.user_name }),
            scope: g.row.scope,
            group: g.row.group_id,
            agent: g.row.agent_id,
            covers: g.covers,
            until: g.row.until.map(time),
            in_force: g.in_force,
            created_by: g.row.created_by,
            created_at: time(g.row.created_at),
        }
    }
}

/// `GET /support-grants`: the company's grants, newest first, ended ones too.
pub async fn list_grants(
    op: Operator,
    State(state): State<ApiState>,
) -> Result<Json<serde_json::Value>, AppError> {
    let grants: Vec<GrantView> = state
        .app
        .support_grants(&op.caller)
        .await?
        .into_iter()
        .map(GrantView::from)
        .collect();
    Ok(Json(json!({ "grants": grants })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    pub user: i64,
    pub scope: String,
    pub group: Option<i64>,
    pub agent: Option<String>,
    pub until: Option<String>,
}

/// Reads what a grant body covers: `company`, `group` with `group`, or `agent` with `agent`.
fn target(body: &GrantBody) -> Result<GrantTarget, AppError> {
    let mismatch = |msg: &str| AppError::bad_request("scope", msg.to_owned());
    match (body.scope.as_str(), body.group, body.agent.as_deref()) {
        ("company", None, None) => Ok(GrantTarget::Company),
        ("group", Some(g), None) => Ok(GrantTarget::Group(g)),
        ("agent", None, Some(a)) => Ok(GrantTarget::Agent(a.trim().to_owned())),
        ("company", _, _) => Err(mismatch(
            "a company-wide grant names no group or agent; leave group and agent out",
        )),
        ("group", _, _) => Err(mismatch(
            "a group grant needs `group` (a group id) and no `agent`",
        )),
        ("agent", _, _) => Err(mismatch(
            "an agent grant needs `agent` (an agent id) and no `group`",
        )),
        (other, _, _) => Err(AppError::bad_request(
            "scope",
            format!("{other:?} is not a grant scope; use company, group or agent"),
        )),
    }
}

fn parse_until(raw: Option<&str>) -> Result<Option<DateTime<Utc>>, AppError> {
    raw.map(|raw| {
        DateTime::parse_from_rfc3339(raw.trim())
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                AppError::bad_request(
                    "until",
                    format!(
                        "{raw:?} is not a time; give RFC 3339 (2027-01-31T18:00:00Z), or null for a \
                         grant that lasts until removed"
                    ),
                )
            })
    })
    .transpose()
}

/// `POST /support-grants`: lets a support engineer in, to the company, a group or an agent.
pub async fn create_grant(
    op: Operator,
    State(state): State<ApiState>,
    peer: PeerAddr,
    body: Result<Json<GrantBody>, JsonRejection>,
) -> Result<(StatusCode, Json<GrantView>), AppError> {
    let Json(body) = body.map_err(AppError::from_json)?;
    let new = NewGrant {
        user: body.user,
        target: target(&body)?,
        until: parse_until(body.until.as_deref())?,
    };
    let info = state
        .app
        .create_grant(&op.caller, &new, address(peer).as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(info.into())))
}

/// `DELETE /support-grants/{id}`: ends the grant at once.
pub async fn delete_grant(
    op: Operator,
    State(state): State<ApiState>,
    peer: PeerAddr,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    let id = parse_id(&id, "support grant", "support-grants")?;
    state
        .app
        .delete_grant(&op.caller, id, address(peer).as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(scope: &str, group: Option<i64>, agent: Option<&str>) -> GrantBody {
        GrantBody {
            user: 1,
            scope: scope.into(),
            group,
            agent: agent.map(str::to_owned),
            until: None,
        }
    }

    #[test]
    fn grant_scopes_need_exactly_their_target() {
        assert_eq!(
            target(&body("company", None, None)).unwrap(),
            GrantTarget::Company
        );
        assert_eq!(
            target(&body("group", Some(3), None)).unwrap(),
            GrantTarget::Group(3)
        );
        assert_eq!(
            target(&body("agent", None, Some(" ag-1 "))).unwrap(),
            GrantTarget::Agent("ag-1".into())
        );
        for bad in [
            body("company", Some(3), None),
            body("group", None, None),
            body("group", Some(3), Some("ag-1")),
            body("agent", None, None),
            body("everything", None, None),
        ] {
            let e = target(&bad).unwrap_err().to_string();
            assert!(e.starts_with("scope:"), "{e}");
        }
    }

    #[test]
    fn until_is_rfc3339_or_absent() {
        assert_eq!(parse_until(None).unwrap(), None);
        let t = parse_until(Some("2027-01-31T18:00:00+01:00"))
            .unwrap()
            .unwrap();
        assert_eq!(t.to_rfc3339(), "2027-01-31T17:00:00+00:00");
        let e = parse_until(Some("tomorrow")).unwrap_err().to_string();
        assert!(e.contains("RFC 3339"), "{e}");
    }
}
