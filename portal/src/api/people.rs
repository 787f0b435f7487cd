//! The people routes: the company's users (list, invite, change, remove, force out), the caller's own
//! account (`GET /users/me`), and the caller's API tokens (list, create, revoke). Users and tokens of
//! another company are answered 404, as if they did not exist.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;

use super::auth::{Operator, PeerAddr};
use super::error::AppError;
use super::views::time;
use super::ApiState;
use crate::access::Role;
use crate::app::members::{Invitation, Member, MemberChange};
use crate::app::users::TokenView;

/// The caller's address as the history writes it.
pub(super) fn address(peer: PeerAddr) -> Option<String> {
    peer.0.map(|ip| ip.to_string())
}

/// A numeric id from the path; anything else names the list to look in.
pub(super) fn parse_id(raw: &str, what: &str, list: &str) -> Result<i64, AppError> {
    raw.parse::<i64>().map_err(|_| {
        AppError::bad_request(
            "id",
            format!("{raw:?} is not a {what} id; GET /api/v1/{list} lists them"),
        )
    })
}

/// For fields where `null` means something: absent is `None`, `null` is `Some(None)`.
pub(super) fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

fn parse_role(raw: &str) -> Result<Role, AppError> {
    raw.parse::<Role>()
        .map_err(|e| AppError::bad_request("role", e.to_string()))
}

/// A user as the API shows them.
#[derive(Debug, Serialize)]
pub struct UserView {
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    pub name: String,
    pub role: Role,
    /// The groups they are assigned to (ids; their sub-groups come with them).
    pub groups: Vec<i64>,
    /// Whether they have set up two-factor sign-in.
    pub two_factor: bool,
    /// Whether their company requires them to.
    pub require_2fa: bool,
    pub created_at: String,
}

impl From<Member> for UserView {
    fn from(m: Member) -> Self {
        UserView {
            id: m.user.id,
            two_factor: m.user.has_2fa(),
            username: m.user.username,
            email: m.user.email,
            name: m.user.name,
            role: m.user.role,
            groups: m.groups,
            require_2fa: m.user.require_2fa,
            created_at: time(m.user.created_at),
        }
    }
}

/// `GET /users`: the caller's company's users, by username.
pub async fn list_users(
    op: Operator,
    State(state): State<ApiState>,
) -> Result<Json<serde_json::Value>, AppError> {
    let members = state.app.members(&op.caller).await?;
    let users: Vec<UserView> = members.into_iter().map(UserView::from).collect();
    Ok(Json(json!({ "users": users })))
}

/// `GET /users/me`: the caller.
pub async fn me(op: Operator, State(state): State<ApiState>) -> Result<Json<UserView>, AppError> {
    Ok(Json(state.app.member_self(&op.caller).await?.into()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteBody {
    pub email: String,
    pub name: Option<String>,
    pub role: String,
    #[serde(default)]
    pub groups: Vec<i64>,
    #[serde(default)]
    pub require_2fa: bool,
}

/// `POST /users`: invites a user. With a mailer the link goes to them only; without one it is answered
/// as `link` for the admin to pass on.
pub async fn invite(
    op: Operator,
    State(state): State<ApiState>,
    peer: PeerAddr,
    body: Result<Json<InviteBody>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), AppError> {
    let Json(body) = body.map_err(AppError::from_json)?;
    let role = parse_role(&body.role)?;
    let invitation = Invitation {
        email: &body.email,
        name: body.name.as_deref(),
        role,
        groups: &body.groups,
        require_2fa: body.require_2fa,
    };
    let invited = state
        .app
        .invite_member(&op.caller, &invitation, address(peer).as_deref())
        .await?;
    let mut answer = json!({
        "user": UserView::from(invited.member),
        "mailed": invited.link.is_none(),
        "link_expires_at": time(invited.expires_at),
    });
    if let Some(link) = invited.link {
        answer["link"] = json!(link);
    }
    Ok((StatusCode::CREATED, Json(answer)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeBody {
    pub role: Option<String>,
    pub require_2fa: Option<bool>,
    pub name: Option<String>,
}

/// `PATCH /users/{id}`: role, two-factor requirement, name.
pub async fn change(
    op: Operator,
    State(state): State<ApiState>,
    peer: PeerAddr,
    Path(id): Path<String>,
    body: Result<Json<ChangeBody>, JsonRejection>,
) -> Result<Json<UserView>, AppError> {
    let id = parse_id(&id, "user", "users")?;
    let Json(body) = body.map_err(AppError::from_json)?;
    let change = MemberChange {
        role: body.role.as_deref().map(parse_role).transpose()?,
        require_2fa: body.require_2fa,
        name: body.name.as_deref(),
    };
    let member = state
        .app
        .change_member(&op.caller, id, &change, address(peer).as_deref())
        .await?;
    Ok(Json(member.into()))
}

/// `DELETE /users/{id}`: removes a user (not the caller).
pub async fn remove(
    op: Operator,
    State(state): State<ApiState>,
    peer: PeerAddr,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    let id = parse_id(&id, "user", "users")?;
    state
        .app
        .remove_member(&op.caller, id, address(peer).as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /users/{id}/sign-out`: ends every browser session of the user.
pub async fn sign_out(
    op: Operator,
    State(state): State<ApiState>,
    peer: PeerAddr,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, AppError> {
    let id = parse_id(&id, "user", "users")?;
    let ended = state
        .app
        .sign_out_member(&op.caller, id, address(peer).as_deref())
        .await?;
    Ok(Json(json!({ "sessions_ended": ended })))
}

/// A token as listed (never the token itself).
#[derive(Debug, Serialize)]
pub struct TokenOut {
    pub id: i64,
    pub name: String,
    /// The username it acts as.
    pub user: String,
    pub read_only: bool,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used: Option<String>,
}

impl From<TokenView> for TokenOut {
    fn from(t: TokenView) -> Self {
        TokenOut {
            id: t.id,
            name: t.name,
            user: t.user,
            read_only: t.read_only,
            created_at: time(t.created_at),
            expires_at: t.expires_at.map(time),
            last_used: t.last_used.map(time),
        }
    }
}

/// `GET /tokens`: the caller's tokens (a company admin: the company's).
pub async fn list_tokens(
    op: Operator,
    State(state): State<ApiState>,
) -> Result<Json<serde_json::Value>, AppError> {
    let tokens: Vec<TokenOut> = state
        .app
        .tokens(&op.caller)
        .await?
        .into_iter()
        .map(TokenOut::from)
        .collect();
    Ok(Json(json!({ "tokens": tokens })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    pub name: String,
    #[serde(default)]
    pub read_only: bool,
    pub expires_in_days: Option<i64>,
}

/// `POST /tokens`: a token acting as the caller; the token is in the answer, once.
pub async fn create_token(
    op: Operator,
    State(state): State<ApiState>,
    peer: PeerAddr,
    body: Result<Json<TokenBody>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), AppError> {
    let Json(body) = body.map_err(AppError::from_json)?;
    let (view, token) = state
        .app
        .create_token(
            &op.caller,
            &body.name,
            body.read_only,
            body.expires_in_days,
            address(peer).as_deref(),
        )
        .await?;
    let mut answer = json!(TokenOut::from(view));
    answer["token"] = json!(token);
    Ok((StatusCode::CREATED, Json(answer)))
}

/// `DELETE /tokens/{id}`: revokes a token of the caller's (a company admin: of the company's).
pub async fn revoke_token(
    op: Operator,
    State(state): State<ApiState>,
    peer: PeerAddr,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    let id = parse_id(&id, "token", "tokens")?;
    state
        .app
        .revoke_token(&op.caller, id, address(peer).as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Probe {
        #[serde(default, deserialize_with = "present")]
        group: Option<Option<i64>>,
    }

    #[test]
    fn null_and_absent_differ() {
        let p: Probe = serde_json::from_str("{}").unwrap();
        assert_eq!(p.group, None);
        let p: Probe = serde_json::from_str(r#"{"group":null}"#).unwrap();
        assert_eq!(p.group, Some(None));
        let p: Probe = serde_json::from_str(r#"{"group":7}"#).unwrap();
        assert_eq!(p.group, Some(Some(7)));
    }

    #[test]
    fn ids_and_roles_say_what_is_wrong() {
        assert_eq!(parse_id("12", "user", "users").unwrap(), 12);
        let e = parse_id("me", "user", "users").unwrap_err().to_string();
        assert!(e.contains("GET /api/v1/users"), "{e}");
        assert_eq!(parse_role("supervisor").unwrap(), Role::Supervisor);
        let e = parse_role("boss").unwrap_err().to_string();
        assert!(e.starts_with("role:") && e.contains("company-admin"), "{e}");
    }
}
