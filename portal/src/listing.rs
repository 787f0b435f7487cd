//! The agents list, pure: the [`AgentQuery`] a list request or page asks for (search, filters, sort, page),
//! parsed from query-string pairs; the status an agent is shown with ([`display_status`]); the 28-day
//! flag ([`due_soon`]); the renewal flags of yearly and quarterly plans ([`renewal_flag`]: orange `due`,
//! red `overdue`); the online rule as a cut-off time the store can compare in SQL ([`online_cutoff`]);
//! and [`AgentListItem`], one row of the list, the web page and the CSV export.
//!
//! `activation_pending` is not a stored state: it is an `active` agent that has never connected
//! (`last_seen` is empty: no message from it has reached the portal since its activation). The `active`
//! filter and display then mean active *and* connected at least once, so the five display states part
//! the agents without overlap.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};

use crate::lifecycle::{Plan, Status};
use crate::site::SiteConfig;
use crate::store::agents::AgentRow;

/// Default page size.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page size.
pub const MAX_LIMIT: u32 = 500;
/// Longest search text.
pub const MAX_Q: usize = 200;
/// How far ahead an expiration, end or renewal date flags an agent.
pub const DUE_WINDOW_DAYS: i64 = 28;

/// The renewal flag of a yearly or quarterly agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RenewalFlag {
    /// Orange: the renewal date is at most [`DUE_WINDOW_DAYS`] days ahead (or passed and not yet renewed
    /// by the sweep) and nobody confirmed it.
    Due,
    /// Red: the sweep renewed the agent automatically without a decision, and nobody has decided since.
    Overdue,
}

impl RenewalFlag {
    pub const ALL: [RenewalFlag; 2] = [RenewalFlag::Due, RenewalFlag::Overdue];

    pub fn as_str(self) -> &'static str {
        match self {
            RenewalFlag::Due => "due",
            RenewalFlag::Overdue => "overdue",
        }
    }

    /// What a badge says.
    pub fn label(self) -> &'static str {
        match self {
            RenewalFlag::Due => "renewal due",
            RenewalFlag::Overdue => "renewed automatically",
        }
    }
}

impl FromStr for RenewalFlag {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|f| f.as_str() == s).ok_or(())
    }
}

/// The state an agent is shown (and filtered) with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DisplayStatus {
    ActivationPending,
    Active,
    DeactivationPending,
    Deactivated,
    Expired,
}

impl DisplayStatus {
    /// In lifecycle order, which is also the order `sort=status` uses.
    pub const ALL: [DisplayStatus; 5] = [
        DisplayStatus::ActivationPending,
        DisplayStatus::Active,
        DisplayStatus::DeactivationPending,
        DisplayStatus::Deactivated,
        DisplayStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DisplayStatus::ActivationPending => "activation_pending",
            DisplayStatus::Active => "active",
            DisplayStatus::DeactivationPending => "deactivation_pending",
            DisplayStatus::Deactivated => "deactivated",
            DisplayStatus::Expired => "expired",
        }
    }

    /// What a page shows.
    pub fn label(self) -> &'static str {
        match self {
            DisplayStatus::ActivationPending => "Activation pending",
            DisplayStatus::Active => "Active",
            DisplayStatus::DeactivationPending => "Deactivation pending",
            DisplayStatus::Deactivated => "Deactivated",
            DisplayStatus::Expired => "Expired",
        }
    }

    /// Position in [`DisplayStatus::ALL`] (the `sort=status` key).
    pub fn rank(self) -> u8 {
        self as u8
    }

    fn names() -> String {
        Self::ALL.map(DisplayStatus::as_str).join(", ")
    }
}

impl fmt::Display for DisplayStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DisplayStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|d| d.as_str() == s).ok_or(())
    }
}

/// What a list can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    /// Case-insensitive (ASCII) name.
    Name,
    /// [`DisplayStatus::rank`].
    Status,
    LastSeen,
    /// The default: oldest activation first.
    #[default]
    ActivatedAt,
    /// The prepaid expiration date.
    ExpiresAt,
    /// Case-insensitive (ASCII) Customer ID of the site.
    CustomerId,
}

impl SortKey {
    pub const ALL: [SortKey; 6] = [
        SortKey::Name,
        SortKey::Status,
        SortKey::LastSeen,
        SortKey::ActivatedAt,
        SortKey::ExpiresAt,
        SortKey::CustomerId,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::Status => "status",
            SortKey::LastSeen => "last_seen",
            SortKey::ActivatedAt => "activated_at",
            SortKey::ExpiresAt => "expires_at",
            SortKey::CustomerId => "customer_id",
        }
    }
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

impl Order {
    pub fn as_str(self) -> &'static str {
        match self {
            Order::Asc => "asc",
            Order::Desc => "desc",
        }
    }
}

/// A query parameter with a bad value: which, and what it accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {message}")]
pub struct QueryError {
    pub param: &'static str,
    pub message: String,
}

fn bad(param: &'static str, message: String) -> QueryError {
    QueryError { param, message }
}

/// What the agents list shows: search text, filters, sort and page. Ties in the sort are broken by agent
/// id (ascending), and empty values (no last seen, no expiration, no Customer ID) sort last in both
/// orders, so pages are stable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentQuery {
    /// Case-insensitive text contained in the name, Customer ID, Contract ID, the contact's email, first
    /// name, last name ("first last" too) or phone numbers, or the note.
    pub q: Option<String>,
    /// Any of these states; empty means all.
    pub statuses: Vec<DisplayStatus>,
    /// Online (`App::is_online`) or not; `None` means both.
    pub online: Option<bool>,
    /// Any of these renewal flags ([`renewal_flag`]); empty means no renewal filter.
    pub renewals: Vec<RenewalFlag>,
    pub sort: SortKey,
    pub order: Order,
    /// Page size, 1..=[`MAX_LIMIT`].
    pub limit: u32,
    pub offset: u32,
}

impl Default for AgentQuery {
    fn default() -> Self {
        Self {
            q: None,
            statuses: Vec::new(),
            online: None,
            renewals: Vec::new(),
            sort: SortKey::default(),
            order: Order::default(),
            limit: DEFAULT_LIMIT,
            offset: 0,
        }
    }
}

impl AgentQuery {
    /// Reads `q`, `status` (repeatable, or comma-separated), `online`, `renewal` (`due`, `overdue`;
    /// repeatable or comma-separated like `status`), `sort`, `order`, `limit` and `offset` from decoded
    /// query-string pairs. Blank values count as absent; other parameters are ignored (a form may send
    /// more); `status` and `renewal` may repeat, the others may not.
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, QueryError> {
        Self::read(pairs, true)
    }

    /// As [`AgentQuery::parse`] for a list without pages (the CSV export): `limit` and `offset` are
    /// ignored and stay at their defaults.
    pub fn parse_filter<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, QueryError> {
        Self::read(pairs, false)
    }

    fn read<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        paging: bool,
    ) -> Result<Self, QueryError> {
        let mut query = AgentQuery::default();
        let mut seen: Vec<&'static str> = Vec::new();
        let mut once = |param: &'static str| {
            if seen.contains(&param) {
                return Err(bad(param, "given more than once; give it once".to_owned()));
            }
            seen.push(param);
            Ok(())
        };
        for (key, raw) in pairs {
            let value = raw.trim();
            match key {
                "status" => {
                    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                        let status = part.parse::<DisplayStatus>().map_err(|()| {
                            bad(
                                "status",
                                format!(
                                    "{part:?} is not a status; give one or more of {} (comma-separated or repeated)",
                                    DisplayStatus::names()
                                ),
                            )
                        })?;
                        if !query.statuses.contains(&status) {
                            query.statuses.push(status);
                        }
                    }
                }
                "renewal" => {
                    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                        let flag = part.parse::<RenewalFlag>().map_err(|()| {
                            bad(
                                "renewal",
                                format!("{part:?} is not a renewal flag; give due (renewal within {DUE_WINDOW_DAYS} days, not confirmed) or overdue (renewed automatically without a decision)"),
                            )
                        })?;
                        if !query.renewals.contains(&flag) {
                            query.renewals.push(flag);
                        }
                    }
                }
                "q" => {
                    once("q")?;
                    let count = value.chars().count();
                    if count > MAX_Q {
                        return Err(bad(
                            "q",
                            format!(
                                "the search text is {count} characters long; give at most {MAX_Q}"
                            ),
                        ));
                    }
                    query.q = (!value.is_empty()).then(|| value.to_owned());
                }
                "online" => {
                    once("online")?;
                    query.online = match value {
                        "" => None,
                        "true" => Some(true),
                        "false" => Some(false),
                        other => {
                            return Err(bad(
                                "online",
                                format!("{other:?} is not true or false; give online=true or online=false, or leave it out for both"),
                            ))
                        }
                    };
                }
                "sort" => {
                    once("sort")?;
                    if !value.is_empty() {
                        query.sort = SortKey::ALL
                            .into_iter()
                            .find(|k| k.as_str() == value)
                            .ok_or_else(|| {
                                bad(
                                    "sort",
                                    format!(
                                        "{value:?} is not a sort key; give one of {}",
                                        SortKey::ALL.map(SortKey::as_str).join(", ")
                                    ),
                                )
                            })?;
                    }
                }
                "order" => {
                    once("order")?;
                    query.order = match value {
                        "" | "asc" => Order::Asc,
                        "desc" => Order::Desc,
                        other => {
                            return Err(bad(
                                "order",
                                format!("{other:?} is not an order; give asc or desc"),
                            ))
                        }
                    };
                }
                "limit" if paging => {
                    once("limit")?;
                    if !value.is_empty() {
                        query.limit = value
                            .parse::<u32>()
                            .ok()
                            .filter(|n| (1..=MAX_LIMIT).contains(n))
                            .ok_or_else(|| {
                                bad(
                                    "limit",
                                    format!("{value:?} is not a page size; give a whole number from 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})"),
                                )
                            })?;
                    }
                }
                "offset" if paging => {
                    once("offset")?;
                    if !value.is_empty() {
                        query.offset = value.parse::<u32>().map_err(|_| {
                            bad(
                                "offset",
                                format!(
                                    "{value:?} is not a position; give a whole number from 0 to {}",
                                    u32::MAX
                                ),
                            )
                        })?;
                    }
                }
                _ => {}
            }
        }
        Ok(query)
    }

    /// The query as (parameter, value) pairs that [`AgentQuery::parse`] reads back to the same query;
    /// defaults are left out, and so are `limit` and `offset` unless `paging` (for an export link).
    pub fn pairs(&self, paging: bool) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(q) = &self.q {
            out.push(("q", q.clone()));
        }
        if !self.statuses.is_empty() {
            let names: Vec<&str> = self.statuses.iter().map(|s| s.as_str()).collect();
            out.push(("status", names.join(",")));
        }
        if let Some(online) = self.online {
            out.push(("online", online.to_string()));
        }
        if !self.renewals.is_empty() {
            let names: Vec<&str> = self.renewals.iter().map(|f| f.as_str()).collect();
            out.push(("renewal", names.join(",")));
        }
        if self.sort != SortKey::default() {
            out.push(("sort", self.sort.as_str().to_owned()));
        }
        if self.order != Order::default() {
            out.push(("order", self.order.as_str().to_owned()));
        }
        if paging {
            if self.limit != DEFAULT_LIMIT {
                out.push(("limit", self.limit.to_string()));
            }
            if self.offset != 0 {
                out.push(("offset", self.offset.to_string()));
            }
        }
        out
    }
}

/// The state `row` is shown with: its stored status, except that an active agent that never connected
/// is `activation_pending`.
pub fn display_status(row: &AgentRow) -> DisplayStatus {
    match row.subscription.status {
        Status::Active if row.last_seen.is_none() => DisplayStatus::ActivationPending,
        Status::Active => DisplayStatus::Active,
        Status::DeactivationPending => DisplayStatus::DeactivationPending,
        Status::Deactivated => DisplayStatus::Deactivated,
        Status::Expired => DisplayStatus::Expired,
    }
}

/// The date that flags `row` at `now`: the earlier of its end date (`deactivates_at`, while a
/// deactivation is pending) and its prepaid expiration (`expires_at`, while active or pending), when it is
/// at most [`DUE_WINDOW_DAYS`] days ahead (or already passed and not yet applied by the sweeper).
/// Deactivated and expired agents are not flagged: nothing is due any more.
pub fn due_soon(row: &AgentRow, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let s = &row.subscription;
    let horizon = now
        .checked_add_signed(Duration::days(DUE_WINDOW_DAYS))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let end = s
        .deactivates_at
        .filter(|_| s.status == Status::DeactivationPending);
    let expiry = s.expires_at.filter(|_| {
        s.plan == Plan::Prepaid && matches!(s.status, Status::Active | Status::DeactivationPending)
    });
    [end, expiry]
        .into_iter()
        .flatten()
        .filter(|at| *at <= horizon)
        .min()
}

/// The latest renewal date that counts as due at `now` (`now` + [`DUE_WINDOW_DAYS`] days).
pub fn renewal_horizon(now: DateTime<Utc>) -> DateTime<Utc> {
    now.checked_add_signed(Duration::days(DUE_WINDOW_DAYS))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The renewal date of `row`: its `expires_at` while it is an `active` yearly or quarterly agent.
pub fn renews_at(row: &AgentRow) -> Option<DateTime<Utc>> {
    let s = &row.subscription;
    s.expires_at
        .filter(|_| s.plan.renews() && s.status == Status::Active)
}

/// Whether a person still has to decide the renewal of `row` at `now`: it renews within
/// [`DUE_WINDOW_DAYS`] days (or its date passed and the sweep has not renewed it yet) and nobody
/// confirmed that date. A pending deactivation has no renewal (it is not active). The weekly reminders
/// go out while this holds.
pub fn renewal_undecided(row: &AgentRow, now: DateTime<Utc>) -> bool {
    renews_at(row).is_some_and(|at| at <= renewal_horizon(now) && !row.renewal.confirmed(at))
}

/// The renewal flag `row` is shown with at `now`: [`RenewalFlag::Overdue`] (red) while an automatic
/// renewal awaits a decision, else [`RenewalFlag::Due`] (orange) when [`renewal_undecided`]. Monthly,
/// prepaid, pending, deactivated and expired agents have none.
pub fn renewal_flag(row: &AgentRow, now: DateTime<Utc>) -> Option<RenewalFlag> {
    renews_at(row)?;
    if row.renewal.renewed_automatically_at.is_some() {
        Some(RenewalFlag::Overdue)
    } else if renewal_undecided(row, now) {
        Some(RenewalFlag::Due)
    } else {
        None
    }
}

/// The earliest `last_seen` that still counts as online at `now` (`App::is_online`: the agent was heard
/// from at most `offline_after` ago); `None` when the window reaches beyond the clock's range (every
/// time counts).
pub fn online_cutoff(
    now: DateTime<Utc>,
    offline_after: std::time::Duration,
) -> Option<DateTime<Utc>> {
    let window = Duration::from_std(offline_after).ok()?;
    now.checked_sub_signed(window)
}

/// The same cut-off in whole milliseconds as stored: `last_seen_ms >= online_cutoff_ms` exactly when
/// `last_seen >= cutoff` (the cut-off rounded up to the next millisecond).
pub fn online_cutoff_ms(cutoff: DateTime<Utc>) -> i64 {
    let ms = cutoff.timestamp_millis();
    if cutoff.timestamp_subsec_nanos() % 1_000_000 == 0 {
        ms
    } else {
        ms.saturating_add(1)
    }
}

/// `App::is_online` for a cut-off from [`online_cutoff`]: the last presence said online and the agent was
/// heard from at or after the cut-off.
pub fn is_online(row: &AgentRow, cutoff: Option<DateTime<Utc>>) -> bool {
    row.online
        && row
            .last_seen
            .is_some_and(|seen| cutoff.is_none_or(|c| seen >= c))
}

/// One agent of the list: its row, its site configuration and what the list shows about it, all judged
/// at the same instant.
#[derive(Debug, Clone)]
pub struct AgentListItem {
    pub agent: AgentRow,
    pub site: SiteConfig,
    pub online: bool,
    pub display_status: DisplayStatus,
    /// See [`due_soon`].
    pub due_at: Option<DateTime<Utc>>,
    /// See [`renewal_flag`].
    pub renewal: Option<RenewalFlag>,
}

impl AgentListItem {
    pub fn new(
        agent: AgentRow,
        site: SiteConfig,
        now: DateTime<Utc>,
        offline_after: std::time::Duration,
    ) -> Self {
        Self {
            online: is_online(&agent, online_cutoff(now, offline_after)),
            display_status: display_status(&agent),
            due_at: due_soon(&agent, now),
            renewal: renewal_flag(&agent, now),
            agent,
            site,
        }
    }

    pub fn due_soon(&self) -> bool {
        self.due_at.is_some()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::lifecycle::{RenewalDecision, Subscription};
    use crate::store::agents::LinkStats;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    fn row(status: Status, plan: Plan) -> AgentRow {
        AgentRow {
            id: "ag-aaaaaaaaaaaa".parse().unwrap(),
            name: "gw".into(),
            secret_hash: String::new(),
            subscription: Subscription {
                status,
                plan,
                expires_at: None,
                deactivates_at: None,
            },
            activated_at: now() - Duration::days(30),
            version: None,
            local_ip: None,
            mac: None,
            public_ip: None,
            platform: None,
            hostname: None,
            online: false,
            last_seen: None,
            data_epoch: 0,
            link: LinkStats::default(),
            company_id: Some(1),
            group_id: None,
            renewal: RenewalDecision::default(),
        }
    }

    fn parse(qs: &[(&str, &str)]) -> Result<AgentQuery, QueryError> {
        AgentQuery::parse(qs.iter().copied())
    }

    #[test]
    fn an_empty_query_is_the_default() {
        let q = parse(&[]).unwrap();
        assert_eq!(q, AgentQuery::default());
        assert_eq!(
            (q.sort, q.order, q.limit, q.offset),
            (SortKey::ActivatedAt, Order::Asc, 50, 0)
        );
        let blanks = parse(&[
            ("q", "  "),
            ("status", ""),
            ("online", ""),
            ("sort", ""),
            ("order", ""),
            ("limit", ""),
            ("offset", ""),
        ])
        .unwrap();
        assert_eq!(blanks, AgentQuery::default());
    }

    #[test]
    fn every_parameter_is_read() {
        let q = parse(&[
            ("q", "  Shop 1 "),
            ("status", "active,activation_pending"),
            ("status", "expired"),
            ("status", "active"),
            ("online", "false"),
            ("renewal", "overdue"),
            ("renewal", "due,overdue"),
            ("sort", "customer_id"),
            ("order", "desc"),
            ("limit", "500"),
            ("offset", "1000"),
            ("csrf", "ignored"),
        ])
        .unwrap();
        assert_eq!(q.q.as_deref(), Some("Shop 1"));
        assert_eq!(
            q.statuses,
            [
                DisplayStatus::Active,
                DisplayStatus::ActivationPending,
                DisplayStatus::Expired
            ]
        );
        assert_eq!(q.online, Some(false));
        assert_eq!(q.renewals, [RenewalFlag::Overdue, RenewalFlag::Due]);
        assert_eq!(
            (q.sort, q.order, q.limit, q.offset),
            (SortKey::CustomerId, Order::Desc, 500, 1000)
        );
        assert_eq!(parse(&[("online", "true")]).unwrap().online, Some(true));
        for key in SortKey::ALL {
            assert_eq!(parse(&[("sort", key.as_str())]).unwrap().sort, key);
        }
        for status in DisplayStatus::ALL {
            assert_eq!(
                parse(&[("status", status.as_str())]).unwrap().statuses,
                [status]
            );
        }
    }

    #[test]
    fn bad_values_name_the_parameter_and_what_it_accepts() {
        for (pairs, param, accepts) in [
            (
                vec![("status", "sleeping")],
                "status",
                "activation_pending, active, deactivation_pending, deactivated, expired",
            ),
            (
                vec![("online", "yes")],
                "online",
                "online=true or online=false",
            ),
            (
                vec![("sort", "id")],
                "sort",
                "name, status, last_seen, activated_at, expires_at, customer_id",
            ),
            (vec![("order", "up")], "order", "asc or desc"),
            (vec![("renewal", "soon")], "renewal", "give due"),
            (vec![("limit", "0")], "limit", "from 1 to 500"),
            (vec![("limit", "501")], "limit", "from 1 to 500"),
            (vec![("limit", "many")], "limit", "from 1 to 500"),
            (vec![("offset", "-1")], "offset", "from 0 to"),
            (vec![("q", "a"), ("q", "b")], "q", "more than once"),
            (
                vec![("sort", "name"), ("sort", "name")],
                "sort",
                "more than once",
            ),
        ] {
            let e = AgentQuery::parse(pairs.iter().copied()).unwrap_err();
            assert_eq!(e.param, param);
            assert!(e.message.contains(accepts), "{e}");
            assert!(e.to_string().starts_with(&format!("{param}: ")));
        }
        let long = "x".repeat(MAX_Q + 1);
        assert_eq!(parse(&[("q", &long)]).unwrap_err().param, "q");
        assert!(parse(&[("q", &"x".repeat(MAX_Q))]).is_ok());
    }

    #[test]
    fn the_filter_parse_ignores_paging() {
        let q = AgentQuery::parse_filter([
            ("limit", "nonsense"),
            ("offset", "x"),
            ("status", "expired"),
        ])
        .unwrap();
        assert_eq!((q.limit, q.offset), (DEFAULT_LIMIT, 0));
        assert_eq!(q.statuses, [DisplayStatus::Expired]);
    }

    #[test]
    fn pairs_read_back_to_the_same_query() {
        let q = parse(&[
            ("q", "a,b"),
            ("status", "expired,active"),
            ("online", "true"),
            ("renewal", "due"),
            ("sort", "name"),
            ("order", "desc"),
            ("limit", "7"),
            ("offset", "14"),
        ])
        .unwrap();
        let pairs = q.pairs(true);
        let again = AgentQuery::parse(pairs.iter().map(|(k, v)| (*k, v.as_str()))).unwrap();
        assert_eq!(again, q);
        let filter = q.pairs(false);
        assert!(filter.iter().all(|(k, _)| *k != "limit" && *k != "offset"));
        assert!(AgentQuery::default().pairs(true).is_empty());
    }

    #[test]
    fn activation_pending_is_an_active_agent_that_never_connected() {
        let mut r = row(Status::Active, Plan::Monthly);
        assert_eq!(display_status(&r), DisplayStatus::ActivationPending);
        r.last_seen = Some(now());
        assert_eq!(display_status(&r), DisplayStatus::Active);
        for (status, shown) in [
            (
                Status::DeactivationPending,
                DisplayStatus::DeactivationPending,
            ),
            (Status::Deactivated, DisplayStatus::Deactivated),
            (Status::Expired, DisplayStatus::Expired),
        ] {
            let mut r = row(status, Plan::Monthly);
            assert_eq!(display_status(&r), shown, "never connected");
            r.last_seen = Some(now());
            assert_eq!(display_status(&r), shown);
        }
    }

    #[test]
    fn display_statuses_round_trip_and_rank_in_lifecycle_order() {
        for (i, s) in DisplayStatus::ALL.into_iter().enumerate() {
            assert_eq!(s.as_str().parse::<DisplayStatus>(), Ok(s));
            assert_eq!(usize::from(s.rank()), i);
            assert!(!s.label().is_empty());
        }
    }

    #[test]
    fn prepaid_expiry_within_28_days_is_flagged() {
        let mut r = row(Status::Active, Plan::Prepaid);
        let edge = now() + Duration::days(DUE_WINDOW_DAYS);
        r.subscription.expires_at = Some(edge);
        assert_eq!(due_soon(&r, now()), Some(edge), "28 days ahead is inside");
        r.subscription.expires_at = Some(edge + Duration::seconds(1));
        assert_eq!(due_soon(&r, now()), None, "just past 28 days is outside");
        r.subscription.expires_at = Some(now() - Duration::minutes(1));
        assert!(
            due_soon(&r, now()).is_some(),
            "passed but not yet swept is still due"
        );
        r.subscription.status = Status::Expired;
        assert_eq!(due_soon(&r, now()), None, "an expired agent is not flagged");
        r.subscription.status = Status::Deactivated;
        r.subscription.expires_at = Some(now() + Duration::days(3));
        assert_eq!(
            due_soon(&r, now()),
            None,
            "a deactivated agent is not flagged"
        );
    }

    #[test]
    fn a_pending_deactivation_within_28_days_is_flagged_with_the_earlier_date() {
        let mut r = row(Status::DeactivationPending, Plan::Monthly);
        let end = now() + Duration::days(10);
        r.subscription.deactivates_at = Some(end);
        assert_eq!(due_soon(&r, now()), Some(end));
        r.subscription.deactivates_at = Some(now() + Duration::days(40));
        assert_eq!(due_soon(&r, now()), None);
        let mut prepaid = row(Status::DeactivationPending, Plan::Prepaid);
        prepaid.subscription.deactivates_at = Some(now() + Duration::days(20));
        prepaid.subscription.expires_at = Some(now() + Duration::days(5));
        assert_eq!(due_soon(&prepaid, now()), Some(now() + Duration::days(5)));
    }

    #[test]
    fn monthly_active_agents_are_never_flagged() {
        let mut r = row(Status::Active, Plan::Monthly);
        r.subscription.expires_at = Some(now() + Duration::days(1));
        assert_eq!(due_soon(&r, now()), None);
    }

    /// `App::is_online`'s rule, as written there.
    fn app_rule(r: &AgentRow, now: DateTime<Utc>, offline_after: std::time::Duration) -> bool {
        let window = Duration::from_std(offline_after).unwrap_or(Duration::MAX);
        r.online && r.last_seen.is_some_and(|seen| now - seen <= window)
    }

    #[test]
    fn the_cutoff_gives_the_same_answer_as_the_app_rule_around_the_boundary() {
        let offline_after = std::time::Duration::from_secs(120);
        // A clock reading with sub-millisecond digits, as the system clock gives.
        let now = now() + Duration::nanoseconds(123_456_789);
        let cutoff = online_cutoff(now, offline_after).unwrap();
        let cutoff_ms = online_cutoff_ms(cutoff);
        let mut r = row(Status::Active, Plan::Monthly);
        r.online = true;
        for delta in -3..=3 {
            let seen_ms = now.timestamp_millis() - 120_000 + delta;
            r.last_seen = Some(DateTime::from_timestamp_millis(seen_ms).unwrap());
            let expected = app_rule(&r, now, offline_after);
            assert_eq!(is_online(&r, Some(cutoff)), expected, "delta {delta} ms");
            assert_eq!(seen_ms >= cutoff_ms, expected, "delta {delta} ms, in SQL");
        }
        r.online = false;
        assert!(
            !is_online(&r, Some(cutoff)),
            "the last presence said offline"
        );
        r.online = true;
        r.last_seen = None;
        assert!(!is_online(&r, None), "never heard from");
    }

    fn yearly(renews: DateTime<Utc>) -> AgentRow {
        let mut r = row(Status::Active, Plan::Yearly);
        r.subscription.expires_at = Some(renews);
        r
    }

    #[test]
    fn a_renewal_within_28_days_is_due_unless_confirmed() {
        let edge = now() + Duration::days(DUE_WINDOW_DAYS);
        let mut r = yearly(edge + Duration::seconds(1));
        assert_eq!(renewal_flag(&r, now()), None, "29 days ahead is not due");
        r.subscription.expires_at = Some(edge);
        assert_eq!(renewal_flag(&r, now()), Some(RenewalFlag::Due));
        assert!(renewal_undecided(&r, now()));
        assert_eq!(renews_at(&r), Some(edge));
        r.renewal.confirmed_until = Some(edge - Duration::days(365));
        assert_eq!(
            renewal_flag(&r, now()),
            Some(RenewalFlag::Due),
            "an older confirmation does not count"
        );
        r.renewal.confirmed_until = Some(edge);
        assert_eq!(renewal_flag(&r, now()), None, "confirmed");
        assert!(!renewal_undecided(&r, now()));
        let mut late = yearly(now() - Duration::minutes(1));
        late.subscription.plan = Plan::Quarterly;
        assert_eq!(
            renewal_flag(&late, now()),
            Some(RenewalFlag::Due),
            "passed but not yet renewed by the sweep"
        );
    }

    #[test]
    fn an_automatic_renewal_is_overdue_until_someone_decides() {
        let mut r = yearly(now() + Duration::days(300));
        r.renewal.renewed_automatically_at = Some(now() - Duration::days(65));
        assert_eq!(renewal_flag(&r, now()), Some(RenewalFlag::Overdue));
        r.subscription.expires_at = Some(now() + Duration::days(3));
        assert_eq!(
            renewal_flag(&r, now()),
            Some(RenewalFlag::Overdue),
            "red wins over orange"
        );
        assert!(renewal_undecided(&r, now()), "reminders still go out");
        r.renewal.renewed_automatically_at = None;
        assert_eq!(renewal_flag(&r, now()), Some(RenewalFlag::Due));
    }

    #[test]
    fn only_active_yearly_and_quarterly_agents_have_renewal_flags() {
        let soon = now() + Duration::days(3);
        for plan in [Plan::Monthly, Plan::Prepaid] {
            let mut r = row(Status::Active, plan);
            r.subscription.expires_at = Some(soon);
            r.renewal.renewed_automatically_at = Some(now());
            assert_eq!(renewal_flag(&r, now()), None, "{plan}");
            assert_eq!(renews_at(&r), None);
        }
        for status in [
            Status::DeactivationPending,
            Status::Deactivated,
            Status::Expired,
        ] {
            let mut r = yearly(soon);
            r.subscription.status = status;
            r.renewal.renewed_automatically_at = Some(now());
            assert_eq!(renewal_flag(&r, now()), None, "{status}");
            assert!(!renewal_undecided(&r, now()));
        }
        let item = AgentListItem::new(
            yearly(soon),
            SiteConfig::default(),
            now(),
            std::time::Duration::from_secs(60),
        );
        assert_eq!(item.renewal, Some(RenewalFlag::Due));
        assert!(!item.due_soon(), "the prepaid flag stays the prepaid flag");
    }

    #[test]
    fn a_window_beyond_the_clock_counts_everything_seen() {
        let cutoff = online_cutoff(now(), std::time::Duration::from_secs(u64::MAX));
        assert_eq!(cutoff, None);
        let mut r = row(Status::Active, Plan::Monthly);
        r.online = true;
        r.last_seen = Some(now() - Duration::days(10_000));
        assert!(is_online(&r, cutoff));
        assert_eq!(
            online_cutoff_ms(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()) % 1000,
            0
        );
    }
}
