//! Groups of agents (with sub-groups) and their users, moving agents between groups, and support access
//! grants. Every operation checks that what it touches is in the caller's company and scope; anything
//! outside is answered as if it did not exist. Every change is a history line with who made it and
//! (for account lines) from where.

use chrono::{DateTime, Duration, Utc};
use outpost_cloud_link::AgentId;
use tracing::info;

use super::members::company_of;
use super::{App, OpError};
use crate::access::{Caller, Role};
use crate::listing::DUE_WINDOW_DAYS;
use crate::store::groups::{self, GrantRow, GroupRow};
use crate::store::history::{self, AccountLine, Line};
use crate::store::{users, Conn, StoreError};

/// Longest group note, in characters.
pub const MAX_NOTE: usize = 1000;

/// A group as listed: its figures and the usernames of the users assigned to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub row: GroupRow,
    pub users: Vec<String>,
}

/// A new group.
#[derive(Debug, Clone, Default)]
pub struct NewGroup<'a> {
    pub name: &'a str,
    pub note: Option<&'a str>,
    pub parent: Option<i64>,
}

/// What `PATCH /groups/{id}` changes; `None` keeps the field, `parent: Some(None)` makes it top-level.
#[derive(Debug, Clone, Default)]
pub struct GroupChange<'a> {
    pub name: Option<&'a str>,
    pub note: Option<&'a str>,
    pub parent: Option<Option<i64>>,
}

/// What a support grant covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantTarget {
    Company,
    Group(i64),
    Agent(String),
}

/// A support grant to make.
#[derive(Debug, Clone)]
pub struct NewGrant {
    /// The support engineer.
    pub user: i64,
    pub target: GrantTarget,
    /// None: until removed.
    pub until: Option<DateTime<Utc>>,
}

/// A grant as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantInfo {
    pub row: GrantRow,
    pub username: String,
    pub user_name: String,
    /// In words: "the whole company", "group \"North\" and its sub-groups", "agent \"Shop\" (ag-…)".
    pub covers: String,
    /// Not expired (a removed grant is gone from the list).
    pub in_force: bool,
}

/// Checks a group's note: at most [`MAX_NOTE`] characters, no control characters but line breaks.
pub fn check_note(note: &str) -> Result<String, OpError> {
    let note = note.trim();
    if note.chars().count() > MAX_NOTE {
        return Err(OpError::Invalid {
            field: "note",
            message: format!("the note is longer than {MAX_NOTE} characters; shorten it"),
        });
    }
    if note
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        return Err(OpError::Invalid {
            field: "note",
            message: "the note contains control characters; use printable text and line breaks"
                .into(),
        });
    }
    Ok(note.to_owned())
}

/// The group `id` if it belongs to `company`.
async fn group_of(
    conn: &mut Conn,
    company: i64,
    id: i64,
    due_before: DateTime<Utc>,
) -> Result<GroupRow, OpError> {
    match groups::get(conn, id, due_before).await? {
        Some(g) if g.company_id == company => Ok(g),
        _ => Err(OpError::UnknownGroup(id)),
    }
}

/// The usernames of the group's users.
async fn usernames(conn: &mut Conn, group: i64) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for id in groups::users_of(conn, group).await? {
        if let Some(u) = users::by_id(conn, id).await? {
            out.push(u.username);
        }
    }
    out.sort();
    Ok(out)
}

/// "the whole company", "group \"North\" and its sub-groups", "agent \"Shop\" (ag-…)".
async fn describe_target(
    conn: &mut Conn,
    row: &GrantRow,
    now: DateTime<Utc>,
) -> Result<String, OpError> {
    Ok(
        match (row.scope.as_str(), row.group_id, row.agent_id.as_deref()) {
            ("group", Some(g), _) => match groups::get(conn, g, now).await? {
                Some(group) => format!("group {:?} and its sub-groups", group.name),
                None => format!("group {g} (removed)"),
            },
            ("agent", _, Some(a)) => {
                let name = match AgentId::parse(a) {
                    Ok(id) => crate::store::agents::get(conn, &id).await?.map(|r| r.name),
                    Err(_) => None,
                };
                match name {
                    Some(name) => format!("agent {name:?} ({a})"),
                    None => format!("agent {a} (removed)"),
                }
            }
            _ => "the whole company".to_owned(),
        },
    )
}

fn group_label(name: Option<&str>) -> String {
    name.map_or_else(|| "no group".to_owned(), |n| format!("{n:?}"))
}

impl App {
    /// Whether the caller sees the whole group `id` (their company's, or one of their groups or its
    /// sub-groups).
    pub async fn group_in_scope(&self, caller: &Caller, id: i64) -> Result<bool, OpError> {
        let mut conn = self.store().conn().await?;
        Ok(match groups::get(&mut conn, id, self.now()).await? {
            Some(g) => caller.scope.sees_group(g.company_id, g.id),
            None => false,
        })
    }

    /// The renewal cut-off of the groups list: agents due within [`DUE_WINDOW_DAYS`].
    fn groups_due_before(&self) -> DateTime<Utc> {
        self.now() + Duration::days(DUE_WINDOW_DAYS)
    }

    async fn group_with_users(&self, conn: &mut Conn, row: GroupRow) -> Result<GroupInfo, OpError> {
        let users = usernames(conn, row.id).await?;
        Ok(GroupInfo { row, users })
    }

    /// The groups the caller sees (a company admin: all of the company's; a group admin or supervisor:
    /// theirs and their sub-groups), by name.
    pub async fn groups_in_scope(&self, caller: &Caller) -> Result<Vec<GroupInfo>, OpError> {
        let mut conn = self.store().conn().await?;
        let mut companies: Vec<i64> = caller.company_id.into_iter().collect();
        companies.extend(caller.scope.companies.iter().copied());
        companies.sort_unstable();
        companies.dedup();
        let mut out = Vec::new();
        for company in companies {
            for row in groups::of_company(&mut conn, company, self.groups_due_before()).await? {
                if caller.scope.sees_group(row.company_id, row.id) {
                    out.push(self.group_with_users(&mut conn, row).await?);
                }
            }
        }
        Ok(out)
    }

    /// Makes a group of the caller's company (under `parent`, one of the company's groups, if given).
    pub async fn create_group(
        &self,
        caller: &Caller,
        new: &NewGroup<'_>,
        address: Option<&str>,
    ) -> Result<GroupInfo, OpError> {
        let company = company_of(caller)?;
        let name = super::validate_name(new.name)?;
        let note = check_note(new.note.unwrap_or(""))?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let parent = match new.parent {
            Some(p) => Some(group_of(&mut tx, company, p, now).await?),
            None => None,
        };
        if groups::by_name(&mut tx, company, &name).await?.is_some() {
            return Err(OpError::Conflict(format!(
                "there is already a group named {name:?}; choose another name"
            )));
        }
        let id = groups::insert(&mut tx, company, new.parent, &name, &note, now).await?;
        let details = match &parent {
            Some(p) => format!("{name:?} (group {id}) under {:?}", p.name),
            None => format!("{name:?} (group {id})"),
        };
        history::append_account(
            &mut tx,
            AccountLine {
                company: Some(company),
                action: "group-created",
                actor: &caller.actor_name(),
                details: &details,
                address,
            },
            now,
        )
        .await?;
        let row = group_of(&mut tx, company, id, self.groups_due_before()).await?;
        let info = self.group_with_users(&mut tx, row).await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(group = id, by = caller.user_id, "group created");
        Ok(info)
    }

    /// Renames a group, changes its note or moves it under another parent (never under itself or one
    /// of its sub-groups).
    pub async fn change_group(
        &self,
        caller: &Caller,
        id: i64,
        change: &GroupChange<'_>,
        address: Option<&str>,
    ) -> Result<GroupInfo, OpError> {
        let company = company_of(caller)?;
        let name = change.name.map(super::validate_name).transpose()?;
        let note = change.note.map(check_note).transpose()?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let before = group_of(&mut tx, company, id, now).await?;
        let mut parts = Vec::new();
        if let Some(name) = name.as_deref().filter(|n| *n != before.name) {
            if groups::by_name(&mut tx, company, name)
                .await?
                .is_some_and(|other| other != id)
            {
                return Err(OpError::Conflict(format!(
                    "there is already a group named {name:?}; choose another name"
                )));
            }
            parts.push(format!("renamed {:?} → {name:?}", before.name));
        }
        if note.as_deref().is_some_and(|n| n != before.note) {
            parts.push("note changed".to_owned());
        }
        let parent = change.parent.unwrap_or(before.parent_id);
        if parent != before.parent_id {
            let parent_name = match parent {
                Some(p) => {
                    let row = group_of(&mut tx, company, p, now).await?;
                    if groups::with_descendants(&mut tx, id).await?.contains(&p) {
                        return Err(OpError::Conflict(format!(
                            "group {:?} cannot go under {:?}: that is the group itself or one of its \
                             sub-groups; choose a parent outside it",
                            before.name, row.name
                        )));
                    }
                    Some(row.name)
                }
                None => None,
            };
            let old_parent = match before.parent_id {
                Some(p) => groups::get(&mut tx, p, now).await?.map(|g| g.name),
                None => None,
            };
            parts.push(format!(
                "moved from under {} to under {}",
                group_label(old_parent.as_deref()),
                group_label(parent_name.as_deref())
            ));
        }
        if !parts.is_empty() {
            groups::update(
                &mut tx,
                id,
                parent,
                name.as_deref().unwrap_or(&before.name),
                note.as_deref().unwrap_or(&before.note),
            )
            .await?;
            history::append_account(
                &mut tx,
                AccountLine {
                    company: Some(company),
                    action: "group-changed",
                    actor: &caller.actor_name(),
                    details: &format!("{:?} (group {id}): {}", before.name, parts.join(", ")),
                    address,
                },
                now,
            )
            .await?;
        }
        let row = group_of(&mut tx, company, id, self.groups_due_before()).await?;
        let info = self.group_with_users(&mut tx, row).await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(group = id, by = caller.user_id, "group changed");
        Ok(info)
    }

    /// Deletes an empty group (no agents, no sub-groups).
    pub async fn delete_group(
        &self,
        caller: &Caller,
        id: i64,
        address: Option<&str>,
    ) -> Result<(), OpError> {
        let company = company_of(caller)?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let group = group_of(&mut tx, company, id, now).await?;
        let (agents, subs) = groups::contents(&mut tx, id).await?;
        if agents > 0 || subs > 0 {
            let mut what = Vec::new();
            if agents > 0 {
                what.push(format!(
                    "its {agents} agent(s) to another group (PUT /api/v1/agents/{{id}}/group)"
                ));
            }
            if subs > 0 {
                what.push(format!(
                    "its {subs} sub-group(s) under another parent (PATCH /api/v1/groups/{{id}})"
                ));
            }
            return Err(OpError::Conflict(format!(
                "group {:?} is not empty; move {} first, then delete it",
                group.name,
                what.join(" and ")
            )));
        }
        groups::delete(&mut tx, id).await?;
        history::append_account(
            &mut tx,
            AccountLine {
                company: Some(company),
                action: "group-removed",
                actor: &caller.actor_name(),
                details: &format!("{:?} (group {id})", group.name),
                address,
            },
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(group = id, by = caller.user_id, "group removed");
        Ok(())
    }

    /// Makes the group's users exactly `users` (group admins and supervisors of the company).
    pub async fn set_group_users(
        &self,
        caller: &Caller,
        id: i64,
        users: &[i64],
        address: Option<&str>,
    ) -> Result<GroupInfo, OpError> {
        let company = company_of(caller)?;
        let now = self.now();
        let mut wanted = users.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let mut tx = self.store().begin().await?;
        let group = group_of(&mut tx, company, id, now).await?;
        let mut names = Vec::new();
        for &u in &wanted {
            let user = match users::by_id(&mut tx, u).await? {
                Some(user) if user.company_id == Some(company) => user,
                _ => return Err(OpError::UnknownUser(u)),
            };
            if !user.role.uses_groups() {
                return Err(OpError::Invalid {
                    field: "users",
                    message: format!(
                        "{} is a {}, who is not assigned to groups; give only group admins and \
                         supervisors",
                        user.username, user.role
                    ),
                });
            }
            names.push(user.username);
        }
        groups::set_users(&mut tx, id, &wanted).await?;
        names.sort();
        history::append_account(
            &mut tx,
            AccountLine {
                company: Some(company),
                action: "group-users-set",
                actor: &caller.actor_name(),
                details: &format!(
                    "{:?} (group {id}): {}",
                    group.name,
                    if names.is_empty() {
                        "nobody".to_owned()
                    } else {
                        names.join(", ")
                    }
                ),
                address,
            },
            now,
        )
        .await?;
        let row = group_of(&mut tx, company, id, self.groups_due_before()).await?;
        let info = self.group_with_users(&mut tx, row).await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(
            group = id,
            by = caller.user_id,
            users = wanted.len(),
            "group users set"
        );
        Ok(info)
    }

    /// Moves an agent the caller sees into `group` (one the caller sees), or with `None` out of every
    /// group (company admins only). Writes the agent's `moved` history line. Returns the group's name.
    pub async fn move_agent_to_group(
        &self,
        caller: &Caller,
        agent: &AgentId,
        group: Option<i64>,
    ) -> Result<Option<String>, OpError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let (company, from) = match groups::agent_place(&mut tx, agent.as_str()).await? {
            Some((company, from)) if caller.scope.sees(agent.as_str(), company, from) => {
                (company, from)
            }
            _ => return Err(OpError::UnknownAgent(agent.to_string())),
        };
        let to =
            match group {
                Some(g) => match groups::get(&mut tx, g, now).await? {
                    Some(row)
                        if Some(row.company_id) == company
                            && caller.scope.sees_group(row.company_id, row.id) =>
                    {
                        Some(row)
                    }
                    _ => return Err(OpError::UnknownGroup(g)),
                },
                None if caller.role != Role::CompanyAdmin => return Err(OpError::Forbidden(
                    "only a company admin can take an agent out of every group; move it to one of \
                     your groups instead"
                        .into(),
                )),
                None => None,
            };
        let to_name = to.map(|g| g.name);
        if from == group {
            return Ok(to_name);
        }
        let from_name = match from {
            Some(g) => groups::get(&mut tx, g, now).await?.map(|g| g.name),
            None => None,
        };
        let row = crate::store::agents::get(&mut tx, agent)
            .await?
            .ok_or_else(|| OpError::UnknownAgent(agent.to_string()))?;
        groups::move_agent(&mut tx, agent, group).await?;
        history::append(
            &mut tx,
            Line {
                agent,
                agent_name: &row.name,
                action: "moved",
                actor: &caller.actor_name(),
                details: &format!(
                    "from {} to {}",
                    group_label(from_name.as_deref()),
                    group_label(to_name.as_deref())
                ),
            },
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(agent = %agent, ?group, by = caller.user_id, "agent moved");
        Ok(to_name)
    }

    async fn support_grant_info(
        &self,
        conn: &mut Conn,
        row: GrantRow,
    ) -> Result<GrantInfo, OpError> {
        let now = self.now();
        let user = users::by_id(conn, row.user_id).await?;
        let covers = describe_target(conn, &row, now).await?;
        Ok(GrantInfo {
            username: user
                .as_ref()
                .map(|u| u.username.clone())
                .unwrap_or_default(),
            user_name: user.map(|u| u.name).unwrap_or_default(),
            covers,
            in_force: row.until.is_none_or(|u| u > now),
            row,
        })
    }

    /// The support grants of the caller's company, newest first, ended ones too.
    pub async fn support_grants(&self, caller: &Caller) -> Result<Vec<GrantInfo>, OpError> {
        let company = company_of(caller)?;
        let mut conn = self.store().conn().await?;
        let mut out = Vec::new();
        for row in groups::grants_of_company(&mut conn, company).await? {
            out.push(self.support_grant_info(&mut conn, row).await?);
        }
        Ok(out)
    }

    /// Lets a support engineer into the caller's company, one of its groups or one of its agents.
    pub async fn create_grant(
        &self,
        caller: &Caller,
        new: &NewGrant,
        address: Option<&str>,
    ) -> Result<GrantInfo, OpError> {
        let company = company_of(caller)?;
        let now = self.now();
        if new.until.is_some_and(|u| u <= now) {
            return Err(OpError::Invalid {
                field: "until",
                message:
                    "the end of the grant is not in the future; give a later time, or null for a \
                          grant that lasts until removed"
                        .into(),
            });
        }
        let mut tx = self.store().begin().await?;
        let user = match users::by_id(&mut tx, new.user).await? {
            Some(u) if u.role == Role::Support => u,
            Some(u) if u.company_id == Some(company) => {
                return Err(OpError::Invalid {
                    field: "user",
                    message: format!(
                        "{} is a {} of your company, not a support engineer; give the id of one of \
                         the operator's support engineers",
                        u.username, u.role
                    ),
                })
            }
            _ => return Err(OpError::UnknownUser(new.user)),
        };
        let (scope, group_id, agent_id) = match &new.target {
            GrantTarget::Company => ("company", None, None),
            GrantTarget::Group(g) => {
                group_of(&mut tx, company, *g, now).await?;
                ("group", Some(*g), None)
            }
            GrantTarget::Agent(a) => match groups::agent_place(&mut tx, a).await? {
                Some((Some(c), _)) if c == company => ("agent", None, Some(a.clone())),
                _ => return Err(OpError::UnknownAgent(a.clone())),
            },
        };
        let mut row = GrantRow {
            id: 0,
            company_id: company,
            user_id: user.id,
            scope: scope.to_owned(),
            group_id,
            agent_id,
            until: new.until,
            created_by: caller.actor_name(),
            created_at: now,
        };
        row.id = groups::insert_grant(&mut tx, &row).await?;
        let covers = describe_target(&mut tx, &row, now).await?;
        history::append_account(
            &mut tx,
            AccountLine {
                company: Some(company),
                action: "grant-created",
                actor: &caller.actor_name(),
                details: &format!(
                    "support grant {} for {}: {covers}, {}",
                    row.id,
                    user.username,
                    new.until.map_or_else(
                        || "until removed".to_owned(),
                        |u| format!("until {}", u.to_rfc3339())
                    )
                ),
                address,
            },
            now,
        )
        .await?;
        let info = self.support_grant_info(&mut tx, row).await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(
            grant = info.row.id,
            support_user = user.id,
            by = caller.user_id,
            "support grant created"
        );
        Ok(info)
    }

    /// Ends a support grant of the caller's company at once.
    pub async fn delete_grant(
        &self,
        caller: &Caller,
        id: i64,
        address: Option<&str>,
    ) -> Result<(), OpError> {
        let company = company_of(caller)?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let row = match groups::grant(&mut tx, id).await? {
            Some(g) if g.company_id == company => g,
            _ => return Err(OpError::UnknownGrant(id)),
        };
        let username = users::by_id(&mut tx, row.user_id)
            .await?
            .map(|u| u.username)
            .unwrap_or_default();
        let covers = describe_target(&mut tx, &row, now).await?;
        groups::delete_grant(&mut tx, id).await?;
        history::append_account(
            &mut tx,
            AccountLine {
                company: Some(company),
                action: "grant-removed",
                actor: &caller.actor_name(),
                details: &format!("support grant {id} for {username}: {covers}"),
                address,
            },
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(grant = id, by = caller.user_id, "support grant removed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_keep_line_breaks_and_refuse_other_control_characters() {
        assert_eq!(check_note("  two\nlines \n").unwrap(), "two\nlines");
        assert!(matches!(
            check_note("bell\u{7}"),
            Err(OpError::Invalid { field: "note", .. })
        ));
        assert!(check_note(&"x".repeat(MAX_NOTE)).is_ok());
        let e = check_note(&"x".repeat(MAX_NOTE + 1)).unwrap_err();
        assert!(e.to_string().contains("shorten"), "{e}");
    }

    #[test]
    fn groups_are_labelled_or_called_no_group() {
        assert_eq!(group_label(Some("North")), "\"North\"");
        assert_eq!(group_label(None), "no group");
    }
}
