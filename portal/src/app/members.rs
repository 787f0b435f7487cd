//! A company's members as its admins manage them: listing, inviting (a user and a 72 h single-use link,
//! mailed when the portal has a mailer, else handed back to the admin to pass on), changing role, name
//! and the two-factor requirement, removing, and forcing out. Every change is an account history line
//! with who made it and from where; users of another company are answered as if they did not exist.

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::users::{check_name, create_member, NewMember};
use super::{App, OpError};
use crate::access::{Caller, Role};
use crate::mail::messages;
use crate::store::history::{self, AccountLine};
use crate::store::users::{self, UserRow};
use crate::store::{groups, Conn, StoreError};

/// A user with the groups they are assigned to (directly; sub-groups come with them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user: UserRow,
    pub groups: Vec<i64>,
}

/// Whom to invite.
#[derive(Debug, Clone)]
pub struct Invitation<'a> {
    pub email: &'a str,
    pub name: Option<&'a str>,
    pub role: Role,
    /// The groups of a group admin or supervisor (at least one); none for a company admin.
    pub groups: &'a [i64],
    pub require_2fa: bool,
}

/// An invited user and their link: `link` is `None` when it was mailed to them (it is a secret: the
/// admin never sees it then).
#[derive(Debug, Clone)]
pub struct Invited {
    pub member: Member,
    pub link: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// What `PATCH /users/{id}` changes; `None` keeps the field.
#[derive(Debug, Clone, Default)]
pub struct MemberChange<'a> {
    pub role: Option<Role>,
    pub require_2fa: Option<bool>,
    pub name: Option<&'a str>,
}

/// The company whose people the caller manages.
pub(super) fn company_of(caller: &Caller) -> Result<i64, OpError> {
    caller.company_id.ok_or_else(|| {
        OpError::Forbidden(
            "support engineers belong to no company and manage no company's people or groups"
                .into(),
        )
    })
}

/// Refuses a role a company cannot give.
fn check_company_role(role: Role) -> Result<(), OpError> {
    if role == Role::Support {
        return Err(OpError::Invalid {
            field: "role",
            message: "support engineers belong to the portal's operator, not to a company (the operator \
                      makes them with `outpost-portal users new --role support`); choose company-admin, \
                      group-admin or supervisor, and give a support engineer access with POST \
                      /api/v1/support-grants"
                .into(),
        });
    }
    Ok(())
}

/// The user `id` if they belong to `company`.
async fn user_of(conn: &mut Conn, company: i64, id: i64) -> Result<UserRow, OpError> {
    match users::by_id(conn, id).await? {
        Some(u) if u.company_id == Some(company) => Ok(u),
        _ => Err(OpError::UnknownUser(id)),
    }
}

async fn member_of(conn: &mut Conn, user: UserRow) -> Result<Member, OpError> {
    let groups = groups::groups_of(conn, user.id).await?;
    Ok(Member { user, groups })
}

/// Removes the user from every group they are assigned to.
async fn clear_groups(conn: &mut Conn, user: i64) -> Result<(), StoreError> {
    for group in groups::groups_of(conn, user).await? {
        let rest: Vec<i64> = groups::users_of(conn, group)
            .await?
            .into_iter()
            .filter(|u| *u != user)
            .collect();
        groups::set_users(conn, group, &rest).await?;
    }
    Ok(())
}

/// "role group-admin → supervisor, two-factor required" for the history.
fn describe_change(before: &UserRow, after: &MemberChange<'_>, name: Option<&str>) -> Vec<String> {
    let mut parts = Vec::new();
    if let Some(role) = after.role.filter(|r| *r != before.role) {
        parts.push(format!("role {} → {role}", before.role));
    }
    if let Some(req) = after.require_2fa.filter(|r| *r != before.require_2fa) {
        parts.push(if req {
            "two-factor sign-in required".to_owned()
        } else {
            "two-factor sign-in no longer required".to_owned()
        });
    }
    if let Some(name) = name.filter(|n| *n != before.name) {
        parts.push(format!("name {:?} → {name:?}", before.name));
    }
    parts
}

impl App {
    /// The users of the caller's company, by username.
    pub async fn members(&self, caller: &Caller) -> Result<Vec<Member>, OpError> {
        let company = company_of(caller)?;
        let mut conn = self.store().conn().await?;
        let mut out = Vec::new();
        for user in users::of_company(&mut conn, Some(company)).await? {
            out.push(member_of(&mut conn, user).await?);
        }
        Ok(out)
    }

    /// The caller themself (support engineers too).
    pub async fn member_self(&self, caller: &Caller) -> Result<Member, OpError> {
        let mut conn = self.store().conn().await?;
        let user = users::by_id(&mut conn, caller.user_id)
            .await?
            .ok_or(OpError::UnknownUser(caller.user_id))?;
        member_of(&mut conn, user).await
    }

    /// Invites someone into the caller's company: makes the user (with their groups) and a link where
    /// they choose their password, and mails it if the portal can.
    pub async fn invite_member(
        &self,
        caller: &Caller,
        invitation: &Invitation<'_>,
        address: Option<&str>,
    ) -> Result<Invited, OpError> {
        let company = company_of(caller)?;
        check_company_role(invitation.role)?;
        let mut wanted = invitation.groups.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        if invitation.role.uses_groups() && wanted.is_empty() {
            return Err(OpError::Invalid {
                field: "groups",
                message: format!(
                    "a {} sees only the agents of their groups; give at least one group id (GET \
                     /api/v1/groups lists them)",
                    invitation.role
                ),
            });
        }
        if !invitation.role.uses_groups() && !wanted.is_empty() {
            return Err(OpError::Invalid {
                field: "groups",
                message: "a company admin sees every group; leave groups out".into(),
            });
        }
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let mut group_names = Vec::new();
        for &g in &wanted {
            match groups::get(&mut tx, g, now).await? {
                Some(row) if row.company_id == company => group_names.push(row.name),
                _ => return Err(OpError::UnknownGroup(g)),
            }
        }
        let member = NewMember {
            email: invitation.email,
            name: invitation.name,
            role: invitation.role,
            require_2fa: invitation.require_2fa,
        };
        let (link, email) = create_member(
            &mut tx,
            Some(company),
            &member,
            &self.settings().public_url,
            now,
        )
        .await?;
        for &g in &wanted {
            let mut members = groups::users_of(&mut tx, g).await?;
            members.push(link.user.id);
            groups::set_users(&mut tx, g, &members).await?;
        }
        let mut details = format!("{} <{email}> as {}", link.user.username, invitation.role);
        if !group_names.is_empty() {
            details.push_str(&format!(" in {}", group_names.join(", ")));
        }
        if invitation.require_2fa {
            details.push_str(", two-factor sign-in required");
        }
        history::append_account(
            &mut tx,
            AccountLine {
                company: Some(company),
                action: "user-invited",
                actor: &caller.actor_name(),
                details: &details,
                address,
            },
            now,
        )
        .await?;
        let company_name = users::company(&mut tx, company)
            .await?
            .map(|c| c.name)
            .unwrap_or_default();
        tx.commit().await.map_err(StoreError::from)?;
        info!(user = link.user.id, by = caller.user_id, role = %invitation.role, "user invited");

        let member = Member {
            user: link.user.clone(),
            groups: wanted,
        };
        let Some(mailer) = self.mailer() else {
            return Ok(Invited {
                member,
                link: Some(link.url),
                expires_at: link.expires_at,
            });
        };
        let mail = messages::invitation(
            &email,
            &company_name,
            &caller.name,
            &link.url,
            link.expires_at,
        );
        if let Err(e) = mailer.send(&mail).await {
            // Nobody can reach the link now: undo the invitation so the admin can simply try again.
            warn!(
                user = link.user.id,
                kind = e.kind(),
                "invitation mail failed; invitation undone"
            );
            let mut tx = self.store().begin().await?;
            users::delete(&mut tx, link.user.id).await?;
            history::append_account(
                &mut tx,
                AccountLine {
                    company: Some(company),
                    action: "user-removed",
                    actor: "system",
                    details: &format!(
                        "{}: the invitation mail could not be sent, so the invitation was undone",
                        link.user.username
                    ),
                    address: None,
                },
                self.now(),
            )
            .await?;
            tx.commit().await.map_err(StoreError::from)?;
            return Err(OpError::Mail(format!(
                "{e} (the invitation was undone; invite {email} again once mail works)"
            )));
        }
        Ok(Invited {
            member,
            link: None,
            expires_at: link.expires_at,
        })
    }

    /// Changes a user of the caller's company. The last company admin cannot stop being one.
    pub async fn change_member(
        &self,
        caller: &Caller,
        id: i64,
        change: &MemberChange<'_>,
        address: Option<&str>,
    ) -> Result<Member, OpError> {
        let company = company_of(caller)?;
        if let Some(role) = change.role {
            check_company_role(role)?;
        }
        let name = change.name.map(check_name).transpose()?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let before = user_of(&mut tx, company, id).await?;
        let parts = describe_change(&before, change, name.as_deref());
        if parts.is_empty() {
            return member_of(&mut tx, before).await;
        }
        if let Some(role) = change.role.filter(|r| *r != before.role) {
            if before.role == Role::CompanyAdmin {
                let admins = users::of_company(&mut tx, Some(company))
                    .await?
                    .iter()
                    .filter(|u| u.role == Role::CompanyAdmin)
                    .count();
                if admins <= 1 {
                    return Err(OpError::Conflict(format!(
                        "{} is the company's last company admin; make another user company admin \
                         first, then change this one",
                        before.username
                    )));
                }
            }
            users::set_role(&mut tx, id, role, now).await?;
            if !role.uses_groups() {
                clear_groups(&mut tx, id).await?;
            }
        }
        if let Some(req) = change.require_2fa.filter(|r| *r != before.require_2fa) {
            users::set_require_2fa(&mut tx, id, req, now).await?;
        }
        if let Some(name) = name.as_deref().filter(|n| *n != before.name) {
            users::set_preferences(
                &mut tx,
                id,
                name,
                &before.time_format,
                &before.time_zone,
                now,
            )
            .await?;
        }
        history::append_account(
            &mut tx,
            AccountLine {
                company: Some(company),
                action: "user-changed",
                actor: &caller.actor_name(),
                details: &format!("{}: {}", before.username, parts.join(", ")),
                address,
            },
            now,
        )
        .await?;
        let after = users::by_id(&mut tx, id)
            .await?
            .ok_or(OpError::UnknownUser(id))?;
        let member = member_of(&mut tx, after).await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(user = id, by = caller.user_id, "user changed");
        Ok(member)
    }

    /// Removes a user of the caller's company (not the caller), with their sessions and tokens.
    pub async fn remove_member(
        &self,
        caller: &Caller,
        id: i64,
        address: Option<&str>,
    ) -> Result<(), OpError> {
        let company = company_of(caller)?;
        let mut tx = self.store().begin().await?;
        let user = user_of(&mut tx, company, id).await?;
        if user.id == caller.user_id {
            return Err(OpError::Conflict(
                "you cannot remove your own account; ask another company admin to remove it".into(),
            ));
        }
        users::delete(&mut tx, id).await?;
        history::append_account(
            &mut tx,
            AccountLine {
                company: Some(company),
                action: "user-removed",
                actor: &caller.actor_name(),
                details: &format!(
                    "{} ({}{})",
                    user.username,
                    user.role,
                    user.email
                        .as_deref()
                        .map(|e| format!(", {e}"))
                        .unwrap_or_default()
                ),
                address,
            },
            self.now(),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(user = id, by = caller.user_id, "user removed");
        Ok(())
    }

    /// Ends every browser session of a user of the caller's company; returns how many.
    pub async fn sign_out_member(
        &self,
        caller: &Caller,
        id: i64,
        address: Option<&str>,
    ) -> Result<u64, OpError> {
        let company = company_of(caller)?;
        let user = {
            let mut conn = self.store().conn().await?;
            user_of(&mut conn, company, id).await?
        };
        self.sign_out_everywhere(caller, &user, address).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Scope, Via};

    fn row(role: Role, require: bool) -> UserRow {
        UserRow {
            id: 4,
            company_id: Some(1),
            username: "ana".into(),
            email: Some("ana@example.com".into()),
            name: "Ana".into(),
            role,
            password_hash: None,
            time_format: "24h".into(),
            time_zone: "UTC".into(),
            require_2fa: require,
            totp_secret: None,
            totp_last_step: None,
            totp_enabled_at: None,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn changes_are_described_only_when_they_change_something() {
        let before = row(Role::GroupAdmin, false);
        let same = MemberChange {
            role: Some(Role::GroupAdmin),
            require_2fa: Some(false),
            name: None,
        };
        assert!(describe_change(&before, &same, Some("Ana")).is_empty());
        let change = MemberChange {
            role: Some(Role::Supervisor),
            require_2fa: Some(true),
            name: None,
        };
        assert_eq!(
            describe_change(&before, &change, Some("Ana B")),
            vec![
                "role group-admin → supervisor".to_owned(),
                "two-factor sign-in required".to_owned(),
                "name \"Ana\" → \"Ana B\"".to_owned(),
            ]
        );
    }

    #[test]
    fn companies_cannot_make_support_engineers() {
        let e = check_company_role(Role::Support).unwrap_err();
        assert!(matches!(e, OpError::Invalid { field: "role", .. }));
        assert!(e.to_string().contains("users new --role support"), "{e}");
        for r in [Role::CompanyAdmin, Role::GroupAdmin, Role::Supervisor] {
            assert!(check_company_role(r).is_ok());
        }
    }

    #[test]
    fn support_engineers_have_no_company_to_manage() {
        let caller = Caller {
            user_id: 9,
            username: "sam".into(),
            name: "Sam".into(),
            email: None,
            company_id: None,
            role: Role::Support,
            via: Via::Session,
            scope: Scope::default(),
            grants: vec![],
        };
        assert!(matches!(company_of(&caller), Err(OpError::Forbidden(_))));
        let caller = Caller {
            company_id: Some(3),
            role: Role::CompanyAdmin,
            ..caller
        };
        assert_eq!(company_of(&caller).unwrap(), 3);
    }
}
