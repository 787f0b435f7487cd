//! Users and how they prove who they are: the bootstrap (`users new`, `token new`), invitations and other
//! single-use links, API tokens acting as a user, and resolving a token or a session to a [`Caller`] with
//! the scope its role, groups and support grants give it, read afresh on every request (so a removed
//! group, an expired grant or a deleted token stops working at once).

use chrono::{DateTime, Duration, Utc};
use tracing::info;

use super::owner::normalize_email;
use super::session_tokens::{new_token, well_formed};
use super::{App, OpError};
use crate::access::{Action, Caller, Role, Via};
use crate::secrets;
use crate::store::history::{self, AccountLine};
use crate::store::users::{self, LinkPurpose, NewUser, TokenRow, UserRow};
use crate::store::{groups, Conn, Store, StoreError};

/// How long an invitation link works.
pub const INVITE_LIFETIME: Duration = Duration::hours(72);
/// How long a password reset link works.
pub const RESET_LIFETIME: Duration = Duration::minutes(30);
/// How long an email change link works.
pub const EMAIL_LIFETIME: Duration = Duration::hours(24);
/// The name of the company a single-company install makes with its first user.
pub const DEFAULT_COMPANY: &str = "My company";
/// Longest display name, in characters.
pub const MAX_NAME: usize = 100;
/// Longest API token lifetime.
pub const MAX_TOKEN_DAYS: i64 = 3650;

/// A fresh single-use link (the token is shown once, in the link).
#[derive(Debug, Clone)]
pub struct NewLink {
    pub user: UserRow,
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// Where a link of `purpose` with `token` leads.
pub fn link_url(base: &str, purpose: LinkPurpose, token: &str) -> String {
    let base = base.trim_end_matches('/');
    match purpose {
        LinkPurpose::Invite | LinkPurpose::Reset => {
            format!("{base}/account/password?token={token}")
        }
        LinkPurpose::Email => format!("{base}/account/email?token={token}"),
    }
}

/// A username made from the email's local part: lower-case `[a-z0-9._-]`, at most 32 characters, made
/// unique with `-2`, `-3`, ...
async fn new_username(conn: &mut Conn, email: &str) -> Result<String, StoreError> {
    let local = email.split('@').next().unwrap_or("user");
    let mut base: String = local
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .take(32)
        .collect();
    if base.is_empty() {
        base = "user".into();
    }
    let mut candidate = base.clone();
    let mut n = 1;
    while users::username_taken(conn, &candidate).await? {
        n += 1;
        candidate = format!("{base}-{n}");
    }
    Ok(candidate)
}

/// The company a single-company install uses: the named one, or the only one (made on first use).
pub async fn company_for(
    conn: &mut Conn,
    name: Option<&str>,
    now: DateTime<Utc>,
) -> Result<i64, OpError> {
    if let Some(name) = name {
        let name = super::validate_name(name).map_err(|_| OpError::Invalid {
            field: "company",
            message: "the company name must have 1 to 64 printable characters".into(),
        })?;
        return match users::company_by_name(conn, &name).await? {
            Some(id) => Ok(id),
            None => Ok(users::insert_company(conn, &name, now).await?),
        };
    }
    let companies = users::companies(conn).await?;
    match companies.as_slice() {
        [] => Ok(users::insert_company(conn, DEFAULT_COMPANY, now).await?),
        [only] => Ok(only.id),
        _ => Err(OpError::Invalid {
            field: "company",
            message: format!(
                "this portal holds {} companies; name one with --company",
                companies.len()
            ),
        }),
    }
}

/// What `users new` and an invitation create.
#[derive(Debug, Clone)]
pub struct NewMember<'a> {
    pub email: &'a str,
    pub name: Option<&'a str>,
    pub role: Role,
    pub require_2fa: bool,
}

pub(super) fn check_name(name: &str) -> Result<String, OpError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(OpError::Invalid {
            field: "name",
            message: format!(
                "the name must have 1 to {MAX_NAME} characters and no control characters"
            ),
        });
    }
    Ok(name.to_owned())
}

/// Creates the user and an invitation link for them, in `tx`.
pub(super) async fn create_member(
    tx: &mut Conn,
    company: Option<i64>,
    member: &NewMember<'_>,
    base_url: &str,
    now: DateTime<Utc>,
) -> Result<(NewLink, String), OpError> {
    let email = normalize_email(member.email).map_err(|e| OpError::Invalid {
        field: "email",
        message: e.to_string(),
    })?;
    if users::by_email(tx, &email).await?.is_some() {
        return Err(OpError::Conflict(format!(
            "there is already a user with the email {email}; choose another address"
        )));
    }
    let name = match member.name {
        Some(n) => check_name(n)?,
        None => email.split('@').next().unwrap_or(&email).to_owned(),
    };
    let username = new_username(tx, &email).await?;
    let id = users::insert(
        tx,
        &NewUser {
            company_id: company,
            username: &username,
            email: Some(&email),
            name: &name,
            role: member.role,
            require_2fa: member.require_2fa,
        },
        now,
    )
    .await?;
    let token = new_token();
    let expires_at = now + INVITE_LIFETIME;
    users::insert_link(
        tx,
        &secrets::hash(&token),
        id,
        LinkPurpose::Invite,
        None,
        now,
        expires_at,
    )
    .await?;
    let user = users::by_id(tx, id)
        .await?
        .ok_or_else(|| OpError::Store(StoreError::Corrupt(format!("user {id} vanished"))))?;
    Ok((
        NewLink {
            user,
            url: link_url(base_url, LinkPurpose::Invite, &token),
            expires_at,
        },
        email,
    ))
}

/// `outpost-portal users new`: creates a user (and, for the first one, the company) and returns the
/// link where they set their password. Support engineers belong to no company.
pub async fn bootstrap_user(
    store: &Store,
    member: &NewMember<'_>,
    company: Option<&str>,
    group: Option<&str>,
    base_url: &str,
    now: DateTime<Utc>,
) -> Result<NewLink, OpError> {
    let mut tx = store.begin().await?;
    let company_id = match member.role {
        Role::Support => {
            if company.is_some() || group.is_some() {
                return Err(OpError::Invalid {
                    field: "role",
                    message:
                        "support engineers belong to the operator, not to a company or group; \
                              drop --company and --group (a company grants them access later)"
                            .into(),
                });
            }
            None
        }
        _ => Some(company_for(&mut tx, company, now).await?),
    };
    let group_id = match (group, company_id) {
        (Some(name), Some(company)) => {
            Some(match groups::by_name(&mut tx, company, name).await? {
                Some(id) => id,
                None => groups::insert(&mut tx, company, None, name.trim(), "", now).await?,
            })
        }
        _ => None,
    };
    if member.role.uses_groups() && group_id.is_none() {
        return Err(OpError::Invalid {
            field: "group",
            message: format!(
                "a {} sees only the agents of their groups; give one with --group NAME",
                member.role
            ),
        });
    }
    let (link, _) = create_member(&mut tx, company_id, member, base_url, now).await?;
    if let Some(group) = group_id {
        let mut members = groups::users_of(&mut tx, group).await?;
        members.push(link.user.id);
        groups::set_users(&mut tx, group, &members).await?;
    }
    history::append_account(
        &mut tx,
        AccountLine {
            company: company_id,
            action: "user-created",
            actor: "system (outpost-portal users new)",
            details: &format!("{} as {}", link.user.username, member.role),
            address: None,
        },
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    info!(user = link.user.id, role = %member.role, "user created from the command line");
    Ok(link)
}

/// `outpost-portal token new`: a token acting as the user with `email`, or as the first company admin
/// (on an install without one, a token-only admin `admin` of the install's company is made).
pub async fn bootstrap_token(
    store: &Store,
    email: Option<&str>,
    name: &str,
    read_only: bool,
    now: DateTime<Utc>,
) -> Result<String, OpError> {
    let name = super::validate_name(name)?;
    let mut tx = store.begin().await?;
    let user = match email {
        Some(email) => {
            let email = normalize_email(email).map_err(|e| OpError::Invalid {
                field: "user",
                message: e.to_string(),
            })?;
            users::by_email(&mut tx, &email)
                .await?
                .ok_or_else(|| OpError::Invalid {
                    field: "user",
                    message: format!(
                        "there is no user {email}; make one with `outpost-portal users new`"
                    ),
                })?
        }
        None => match users::first_company_admin(&mut tx, None).await? {
            Some(user) => user,
            None => {
                let company = company_for(&mut tx, None, now).await?;
                let username = if users::username_taken(&mut tx, "admin").await? {
                    new_username(&mut tx, "admin@token").await?
                } else {
                    "admin".to_owned()
                };
                let id = users::insert(
                    &mut tx,
                    &NewUser {
                        company_id: Some(company),
                        username: &username,
                        email: None,
                        name: "API tokens",
                        role: Role::CompanyAdmin,
                        require_2fa: false,
                    },
                    now,
                )
                .await?;
                users::by_id(&mut tx, id).await?.ok_or_else(|| {
                    OpError::Store(StoreError::Corrupt(format!("user {id} vanished")))
                })?
            }
        },
    };
    let token = secrets::new_api_token();
    let id = users::insert_token(
        &mut tx,
        &secrets::hash(&token),
        user.id,
        &name,
        read_only,
        None,
        now,
    )
    .await?;
    history::append_account(
        &mut tx,
        AccountLine {
            company: user.company_id,
            action: "token-created",
            actor: "system (outpost-portal token new)",
            details: &format!(
                "token {id} {name:?} for {}{}",
                user.username,
                if read_only { ", read-only" } else { "" }
            ),
            address: None,
        },
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    info!(
        user = user.id,
        token = id,
        "API token created from the command line"
    );
    Ok(token)
}

/// A token as listed (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenView {
    pub id: i64,
    pub name: String,
    pub user: String,
    pub read_only: bool,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used: Option<DateTime<Utc>>,
}

impl App {
    /// The caller a user is, seen through `via`, with their scope as of now.
    pub async fn caller_for(
        &self,
        conn: &mut Conn,
        user: UserRow,
        via: Via,
    ) -> Result<Caller, OpError> {
        let (scope, grants) =
            groups::scope_of(conn, user.id, user.role, user.company_id, self.now()).await?;
        Ok(Caller {
            user_id: user.id,
            username: user.username,
            name: user.name,
            email: user.email,
            company_id: user.company_id,
            role: user.role,
            via,
            scope,
            grants,
        })
    }

    /// The caller an API token acts as, if it is a live one.
    pub async fn token_caller(&self, token: &str) -> Result<Option<Caller>, OpError> {
        let mut conn = self.store().conn().await?;
        let Some(row) = users::use_token(&mut conn, &secrets::hash(token), self.now()).await?
        else {
            return Ok(None);
        };
        let Some(user) = users::by_id(&mut conn, row.user_id).await? else {
            return Ok(None);
        };
        let via = Via::Token {
            id: row.id,
            read_only: row.read_only,
        };
        Ok(Some(self.caller_for(&mut conn, user, via).await?))
    }

    /// Whether the caller sees the agent `id` (unknown agents are not seen).
    pub async fn sees_agent(&self, caller: &Caller, id: &str) -> Result<bool, OpError> {
        let mut conn = self.store().conn().await?;
        Ok(match groups::agent_place(&mut conn, id).await? {
            Some((company, group)) => caller.scope.sees(id, company, group),
            None => false,
        })
    }

    /// Makes a token acting as the caller: read-only if asked (or if the caller's token is), expiring
    /// after `days` days if given. Returns it with the token itself (shown once).
    pub async fn create_token(
        &self,
        caller: &Caller,
        name: &str,
        read_only: bool,
        days: Option<i64>,
        address: Option<&str>,
    ) -> Result<(TokenView, String), OpError> {
        let name = super::validate_name(name)?;
        if days.is_some_and(|d| !(1..=MAX_TOKEN_DAYS).contains(&d)) {
            return Err(OpError::Invalid {
                field: "expires_in_days",
                message: format!("give 1 to {MAX_TOKEN_DAYS} days, or leave it out for no expiry"),
            });
        }
        let read_only = read_only
            || matches!(
                caller.via,
                Via::Token {
                    read_only: true,
                    ..
                }
            )
            || !caller.may(Action::AgentsEdit);
        let now = self.now();
        let expires_at = days.map(|d| now + Duration::days(d));
        let token = secrets::new_api_token();
        let mut tx = self.store().begin().await?;
        let id = users::insert_token(
            &mut tx,
            &secrets::hash(&token),
            caller.user_id,
            &name,
            read_only,
            expires_at,
            now,
        )
        .await?;
        history::append_account(
            &mut tx,
            AccountLine {
                company: caller.company_id,
                action: "token-created",
                actor: &caller.actor_name(),
                details: &format!(
                    "token {id} {name:?}{}",
                    if read_only { ", read-only" } else { "" }
                ),
                address,
            },
            now,
        )
        .await?;
        let row = users::token(&mut tx, id)
            .await?
            .ok_or_else(|| OpError::Store(StoreError::Corrupt(format!("token {id} vanished"))))?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(
            user = caller.user_id,
            token = id,
            read_only,
            "API token created"
        );
        Ok((self.token_view(row, &caller.username), token))
    }

    fn token_view(&self, row: TokenRow, username: &str) -> TokenView {
        TokenView {
            id: row.id,
            name: row.name,
            user: username.to_owned(),
            read_only: row.read_only,
            created_at: row.created_at,
            expires_at: row.expires_at,
            last_used: row.last_used,
        }
    }

    /// The caller's tokens; a company admin sees every token of the company.
    pub async fn tokens(&self, caller: &Caller) -> Result<Vec<TokenView>, OpError> {
        let mut conn = self.store().conn().await?;
        let rows = match (caller.role, caller.company_id) {
            (Role::CompanyAdmin, Some(company)) => {
                users::tokens_of_company(&mut conn, company).await?
            }
            _ => users::tokens_of(&mut conn, caller.user_id).await?,
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let username = if row.user_id == caller.user_id {
                caller.username.clone()
            } else {
                users::by_id(&mut conn, row.user_id)
                    .await?
                    .map(|u| u.username)
                    .unwrap_or_default()
            };
            out.push(self.token_view(row, &username));
        }
        Ok(out)
    }

    /// Revokes a token of the caller's (a company admin: of the company's).
    pub async fn revoke_token(
        &self,
        caller: &Caller,
        id: i64,
        address: Option<&str>,
    ) -> Result<(), OpError> {
        let mut tx = self.store().begin().await?;
        let row = users::token(&mut tx, id)
            .await?
            .ok_or(OpError::UnknownToken(id))?;
        let owner = users::by_id(&mut tx, row.user_id).await?;
        let visible = row.user_id == caller.user_id
            || (caller.role == Role::CompanyAdmin
                && owner
                    .as_ref()
                    .is_some_and(|o| o.company_id.is_some() && o.company_id == caller.company_id));
        if !visible {
            return Err(OpError::UnknownToken(id));
        }
        users::delete_token(&mut tx, id).await?;
        history::append_account(
            &mut tx,
            AccountLine {
                company: owner
                    .as_ref()
                    .and_then(|o| o.company_id)
                    .or(caller.company_id),
                action: "token-revoked",
                actor: &caller.actor_name(),
                details: &format!("token {id} {:?}", row.name),
                address,
            },
            self.now(),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(user = caller.user_id, token = id, "API token revoked");
        Ok(())
    }

    /// The link a person reached with `token` for `purpose`: unknown, expired, or good.
    pub async fn check_link(
        &self,
        token: &str,
        purpose: LinkPurpose,
    ) -> Result<(UserRow, users::LinkRow), OpError> {
        if !well_formed(token) {
            return Err(OpError::LinkUnknown);
        }
        let mut conn = self.store().conn().await?;
        let link = users::link(&mut conn, &secrets::hash(token), purpose)
            .await?
            .ok_or(OpError::LinkUnknown)?;
        if link.expires_at <= self.now() {
            return Err(OpError::LinkExpired);
        }
        let user = users::by_id(&mut conn, link.user_id)
            .await?
            .ok_or(OpError::LinkUnknown)?;
        Ok((user, link))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_lead_to_the_account_pages() {
        assert_eq!(
            link_url("https://p.example:8443/", LinkPurpose::Invite, "tok"),
            "https://p.example:8443/account/password?token=tok"
        );
        assert_eq!(
            link_url("https://p.example", LinkPurpose::Email, "t"),
            "https://p.example/account/email?token=t"
        );
    }
}
