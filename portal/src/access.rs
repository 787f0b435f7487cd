//! Who may do what: the roles, the actions of the pages and the API, the one table that joins them
//! ([`allowed`]), and a caller's scope (which agents they see). Pure: the store fills a [`Scope`], the API
//! and the pages ask [`Caller::may`] and [`Scope::sees`].

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// A user's role. Company admins, group admins and supervisors belong to a company; support engineers
/// belong to the operator and see only what a company grants them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    CompanyAdmin,
    GroupAdmin,
    Supervisor,
    Support,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::CompanyAdmin,
        Role::GroupAdmin,
        Role::Supervisor,
        Role::Support,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::CompanyAdmin => "company-admin",
            Role::GroupAdmin => "group-admin",
            Role::Supervisor => "supervisor",
            Role::Support => "support",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::CompanyAdmin => "Company admin",
            Role::GroupAdmin => "Group admin",
            Role::Supervisor => "Supervisor",
            Role::Support => "Support engineer",
        }
    }

    /// Whether the role works inside groups (and so is assigned to some).
    pub fn uses_groups(self) -> bool {
        matches!(self, Role::GroupAdmin | Role::Supervisor)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}; use company-admin, group-admin, supervisor or support")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// Everything the pages and the API let someone do. Each route names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// See agents, their devices, site, history, commands, owner settings; the list, map and export.
    AgentsRead,
    /// Rename, site configuration, owner access and device flags, outlet bindings.
    AgentsEdit,
    /// Block, unblock, power, commands.
    AgentsControl,
    /// Extend, deactivate, reactivate, clean up, delete.
    AgentsLifecycle,
    /// Move an agent to another group.
    AgentsMove,
    /// Make activation codes.
    CodesCreate,
    /// See groups.
    GroupsRead,
    /// Create, change and delete groups; set their users.
    GroupsManage,
    /// See the company's users.
    UsersRead,
    /// Invite users, change roles, require 2FA, sign users out, remove them.
    UsersManage,
    /// See one's own account and sessions.
    SelfRead,
    /// Change one's own account: password, email, time settings, 2FA, sessions, tokens.
    SelfEdit,
    /// See and change support access grants.
    GrantsManage,
    /// Read the account-wide history.
    HistoryRead,
    /// Confirm a renewal or ask for a deactivation at the end of the period.
    RenewalsDecide,
    /// Change the company's name, contact details and logo.
    BrandingManage,
    /// See the signed agent releases the portal stores (install-wide: the operator's, not a company's).
    ReleasesRead,
    /// Remove a stored agent release (adding one is `outpost-portal releases add`, on the portal's host).
    ReleasesManage,
    /// See agents' update attempts and the update rollouts of what one sees.
    UpdatesRead,
    /// Start, pause, resume and cancel update rollouts (to one agent, a group or the whole fleet).
    UpdatesManage,
}

impl Action {
    pub const ALL: [Action; 20] = [
        Action::AgentsRead,
        Action::AgentsEdit,
        Action::AgentsControl,
        Action::AgentsLifecycle,
        Action::AgentsMove,
        Action::CodesCreate,
        Action::GroupsRead,
        Action::GroupsManage,
        Action::UsersRead,
        Action::UsersManage,
        Action::SelfRead,
        Action::SelfEdit,
        Action::GrantsManage,
        Action::HistoryRead,
        Action::RenewalsDecide,
        Action::BrandingManage,
        Action::ReleasesRead,
        Action::ReleasesManage,
        Action::UpdatesRead,
        Action::UpdatesManage,
    ];

    /// Whether the action only reads (a read-only token may do it).
    pub fn reads_only(self) -> bool {
        matches!(
            self,
            Action::AgentsRead
                | Action::GroupsRead
                | Action::UsersRead
                | Action::SelfRead
                | Action::HistoryRead
                | Action::ReleasesRead
                | Action::UpdatesRead
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::AgentsRead => "agents.read",
            Action::AgentsEdit => "agents.edit",
            Action::AgentsControl => "agents.control",
            Action::AgentsLifecycle => "agents.lifecycle",
            Action::AgentsMove => "agents.move",
            Action::CodesCreate => "codes.create",
            Action::GroupsRead => "groups.read",
            Action::GroupsManage => "groups.manage",
            Action::UsersRead => "users.read",
            Action::UsersManage => "users.manage",
            Action::SelfRead => "self.read",
            Action::SelfEdit => "self.edit",
            Action::GrantsManage => "grants.manage",
            Action::HistoryRead => "history.read",
            Action::RenewalsDecide => "renewals.decide",
            Action::BrandingManage => "branding.manage",
            Action::ReleasesRead => "releases.read",
            Action::ReleasesManage => "releases.manage",
            Action::UpdatesRead => "updates.read",
            Action::UpdatesManage => "updates.manage",
        }
    }
}

/// THE table: whether `role` may do `action` (within its scope). Pages and API routes both consult it
/// through [`Caller::may`]; `tests/api/roles.rs` walks every route against it.
pub fn allowed(role: Role, action: Action) -> bool {
    use Action as A;
    match role {
        Role::CompanyAdmin => true,
        Role::GroupAdmin => matches!(
            action,
            A::AgentsRead
                | A::AgentsEdit
                | A::AgentsControl
                | A::AgentsLifecycle
                | A::AgentsMove
                | A::CodesCreate
                | A::GroupsRead
                | A::SelfRead
                | A::SelfEdit
                | A::RenewalsDecide
                | A::UpdatesRead
        ),
        Role::Supervisor => matches!(
            action,
            A::AgentsRead | A::GroupsRead | A::SelfRead | A::SelfEdit | A::UpdatesRead
        ),
        // What a grant covers, a support engineer may work on; the account itself stays the company's.
        Role::Support => matches!(
            action,
            A::AgentsRead
                | A::AgentsEdit
                | A::AgentsControl
                | A::AgentsLifecycle
                | A::SelfRead
                | A::SelfEdit
                | A::UpdatesRead
        ),
    }
}

/// Which agents a caller sees: all of some companies, some groups (sub-groups already included), some
/// single agents. Empty sees nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub companies: Vec<i64>,
    pub groups: Vec<i64>,
    pub agents: Vec<String>,
}

impl Scope {
    /// Whether an agent of `company` in `group` (none: ungrouped) with this id is in the scope.
    pub fn sees(&self, id: &str, company: Option<i64>, group: Option<i64>) -> bool {
        company.is_some_and(|c| self.companies.contains(&c))
            || group.is_some_and(|g| self.groups.contains(&g))
            || self.agents.iter().any(|a| a == id)
    }

    /// Whether the scope covers a whole group (directly, through a parent, or its whole company).
    pub fn sees_group(&self, company: i64, group: i64) -> bool {
        self.companies.contains(&company) || self.groups.contains(&group)
    }

    pub fn is_empty(&self) -> bool {
        self.companies.is_empty() && self.groups.is_empty() && self.agents.is_empty()
    }
}

/// How a caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A browser session.
    Session,
    /// An API token (its id).
    Token { id: i64, read_only: bool },
}

/// A signed-in user (or a token acting as one), with what they may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: i64,
    pub username: String,
    pub name: String,
    pub email: Option<String>,
    /// None for support engineers.
    pub company_id: Option<i64>,
    pub role: Role,
    pub via: Via,
    pub scope: Scope,
    /// The support grants in force (for the history: "under grant N").
    pub grants: Vec<i64>,
}

impl Caller {
    /// Whether the caller may do `action` at all (the scope decides on which agents).
    pub fn may(&self, action: Action) -> bool {
        let read_only = matches!(
            self.via,
            Via::Token {
                read_only: true,
                ..
            }
        );
        allowed(self.role, action) && (!read_only || action.reads_only())
    }

    /// The history's "who": `user:<username>`, `token:<id> (user:<username>)`, and for support engineers
    /// the grants they act under.
    pub fn actor_name(&self) -> String {
        let who = match &self.via {
            Via::Session => format!("user:{}", self.username),
            Via::Token { id, .. } => format!("user:{} (token {id})", self.username),
        };
        if self.role == Role::Support && !self.grants.is_empty() {
            let grants: Vec<String> = self.grants.iter().map(i64::to_string).collect();
            format!("{who} under support grant {}", grants.join(", "))
        } else {
            who
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role, via: Via) -> Caller {
        Caller {
            user_id: 1,
            username: "ana".into(),
            name: "Ana".into(),
            email: Some("ana@example.com".into()),
            company_id: Some(1),
            role,
            via,
            scope: Scope::default(),
            grants: vec![],
        }
    }

    #[test]
    fn roles_round_trip_and_unknown_ones_say_what_exists() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        let e = "admin".parse::<Role>().unwrap_err().to_string();
        assert!(
            e.contains("company-admin, group-admin, supervisor or support"),
            "{e}"
        );
    }

    #[test]
    fn company_admins_may_everything_and_supervisors_only_read() {
        for a in Action::ALL {
            assert!(allowed(Role::CompanyAdmin, a), "{a:?}");
            assert_eq!(
                allowed(Role::Supervisor, a),
                a.reads_only()
                    && !matches!(
                        a,
                        Action::UsersRead | Action::HistoryRead | Action::ReleasesRead
                    )
                    || a == Action::SelfEdit,
                "{a:?}"
            );
        }
    }

    #[test]
    fn only_company_admins_manage_people_and_grants() {
        for a in [
            Action::UsersManage,
            Action::UsersRead,
            Action::GroupsManage,
            Action::GrantsManage,
            Action::HistoryRead,
            Action::BrandingManage,
            Action::ReleasesRead,
            Action::ReleasesManage,
            Action::UpdatesManage,
        ] {
            for r in [Role::GroupAdmin, Role::Supervisor, Role::Support] {
                assert!(!allowed(r, a), "{r} {a:?}");
            }
        }
    }

    #[test]
    fn whoever_reads_agents_reads_their_updates_and_only_company_admins_roll_out() {
        for r in Role::ALL {
            assert_eq!(
                allowed(r, Action::UpdatesRead),
                allowed(r, Action::AgentsRead),
                "{r}"
            );
            assert_eq!(
                allowed(r, Action::UpdatesManage),
                r == Role::CompanyAdmin,
                "{r}"
            );
        }
        assert!(Action::UpdatesRead.reads_only());
        assert!(!Action::UpdatesManage.reads_only());
    }

    #[test]
    fn read_only_tokens_only_read() {
        let c = caller(
            Role::CompanyAdmin,
            Via::Token {
                id: 3,
                read_only: true,
            },
        );
        assert!(c.may(Action::AgentsRead));
        assert!(c.may(Action::HistoryRead));
        assert!(!c.may(Action::AgentsControl));
        assert!(!c.may(Action::SelfEdit));
        let c = caller(
            Role::Supervisor,
            Via::Token {
                id: 3,
                read_only: true,
            },
        );
        assert!(
            !c.may(Action::UsersRead),
            "read-only narrows a role, never widens it"
        );
    }

    #[test]
    fn scopes_see_companies_groups_and_single_agents() {
        let s = Scope {
            companies: vec![1],
            groups: vec![7],
            agents: vec!["x".into()],
        };
        assert!(s.sees("a", Some(1), None));
        assert!(s.sees("a", Some(2), Some(7)));
        assert!(s.sees("x", Some(3), None));
        assert!(!s.sees("a", Some(2), Some(8)));
        assert!(!s.sees("a", None, None));
        assert!(!Scope::default().sees("x", Some(1), Some(7)));
    }

    #[test]
    fn support_actors_name_their_grants() {
        let mut c = caller(Role::Support, Via::Session);
        c.grants = vec![4, 9];
        assert_eq!(c.actor_name(), "user:ana under support grant 4, 9");
        let c = caller(
            Role::GroupAdmin,
            Via::Token {
                id: 2,
                read_only: false,
            },
        );
        assert_eq!(c.actor_name(), "user:ana (token 2)");
    }
}
