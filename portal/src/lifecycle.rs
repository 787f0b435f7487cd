//! The subscription lifecycle as pure rules: a [`Subscription`], an [`Action`] and the time give a
//! [`Transition`] (or a [`LifecycleError`]); [`due`] says what time alone changes. No I/O here: the app
//! applies the transition to the store and the broker.
//!
//! - `active` → deactivate → `deactivation_pending` (keeps working) → at `deactivates_at` → `deactivated`;
//!   `deactivates_at` is the start of the next month (UTC) for monthly plans, `expires_at` for prepaid,
//!   yearly and quarterly ones (the end of the paid or contracted period).
//! - prepaid `active` past `expires_at` → `expired`.
//! - yearly and quarterly `active` at or past `expires_at` (their renewal date) → renewed ([`renewal_due`],
//!   [`renew`]): `expires_at` moves 12 or 3 months ahead and the agent keeps working.
//! - reactivate: `deactivation_pending` → `active` (cancels); `deactivated` → `active` (a prepaid one only
//!   while its date is in the future; a yearly or quarterly one starts a new period from now).
//! - extend (prepaid only, until in the future and at most five years ahead): sets `expires_at`;
//!   `expired`/`deactivated` become `active`; a pending deactivation moves to the new date.
//! - a renewal decision ([`decide`], yearly and quarterly only): confirm the renewal, or request the
//!   deactivation at the end of the contracted period; either clears the "renewed automatically" mark.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, Utc};

use crate::listing::DUE_WINDOW_DAYS;

/// How far ahead a prepaid subscription may be extended.
pub const MAX_EXTEND_MONTHS: u32 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    DeactivationPending,
    Deactivated,
    Expired,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Active,
        Status::DeactivationPending,
        Status::Deactivated,
        Status::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::DeactivationPending => "deactivation_pending",
            Status::Deactivated => "deactivated",
            Status::Expired => "expired",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Not a status name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}: expected active, deactivation_pending, deactivated or expired")]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Monthly,
    Prepaid,
    /// Contracted for a year at a time; renews by itself at `expires_at` unless deactivated.
    Yearly,
    /// Contracted for three months at a time; renews like [`Plan::Yearly`].
    Quarterly,
}

impl Plan {
    pub const ALL: [Plan; 4] = [Plan::Monthly, Plan::Prepaid, Plan::Yearly, Plan::Quarterly];

    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Monthly => "monthly",
            Plan::Prepaid => "prepaid",
            Plan::Yearly => "yearly",
            Plan::Quarterly => "quarterly",
        }
    }

    /// What a page shows.
    pub fn label(self) -> &'static str {
        match self {
            Plan::Monthly => "Monthly",
            Plan::Prepaid => "Prepaid",
            Plan::Yearly => "Yearly",
            Plan::Quarterly => "Quarterly",
        }
    }

    /// The contracted period of a plan that renews (12 or 3 months); `None` for monthly and prepaid.
    pub fn renewal_months(self) -> Option<u32> {
        match self {
            Plan::Yearly => Some(12),
            Plan::Quarterly => Some(3),
            Plan::Monthly | Plan::Prepaid => None,
        }
    }

    /// Whether the plan has a renewal date (yearly, quarterly).
    pub fn renews(self) -> bool {
        self.renewal_months().is_some()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Not a plan name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown plan {0:?}: expected monthly, prepaid, yearly or quarterly")]
pub struct UnknownPlan(pub String);

impl FromStr for Plan {
    type Err = UnknownPlan;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Plan::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPlan(s.to_owned()))
    }
}

/// An agent's subscription state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    pub status: Status,
    pub plan: Plan,
    /// Prepaid plans: when the paid period ends; yearly and quarterly plans: the renewal date (when the
    /// contracted period ends); none for monthly plans.
    pub expires_at: Option<DateTime<Utc>>,
    /// Set while a deactivation is pending.
    pub deactivates_at: Option<DateTime<Utc>>,
}

/// What an operator asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Deactivate,
    Reactivate,
    Extend { until: DateTime<Utc> },
}

/// What the broker must do for a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerEffect {
    None,
    /// Refuse the agent's connections (and kick it if connected).
    Disable,
    /// Let the agent connect again.
    Enable,
}

/// The result of an action or of time passing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub next: Subscription,
    pub broker: BrokerEffect,
    /// The history action name (`deactivation_requested`, `deactivated`, `reactivated`, `extended`, `expired`,
    /// `renewed`).
    pub history: &'static str,
}

/// An action that does not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error("the agent is {status}; {hint}")]
    InvalidState { status: Status, hint: &'static str },
    #[error("{0} is not in the future; give a later date")]
    NotInFuture(DateTime<Utc>),
    #[error("{0} is more than five years ahead; give an earlier date")]
    TooFarAhead(DateTime<Utc>),
}

/// The first instant of the month after the one `now` is in (UTC).
pub fn start_of_next_month(now: DateTime<Utc>) -> DateTime<Utc> {
    let (year, month) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    NaiveDate::from_ymd_opt(year, month, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|naive| naive.and_utc())
        // Only unreachable for years beyond chrono's range (about 262,000).
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// What `action` does to `state` at `now`.
pub fn apply(
    state: Subscription,
    action: Action,
    now: DateTime<Utc>,
) -> Result<Transition, LifecycleError> {
    let invalid = |hint| LifecycleError::InvalidState {
        status: state.status,
        hint,
    };
    match action {
        Action::Deactivate => {
            if state.status != Status::Active {
                return Err(invalid("only an active agent can be deactivated"));
            }
            let (when, expires_at) = match (state.plan, state.expires_at) {
                (Plan::Prepaid, Some(expires)) => (expires, state.expires_at),
                // The end of the contracted period; if its date passed and the sweep has not renewed it
                // yet, the period it already renewed into.
                (Plan::Yearly | Plan::Quarterly, Some(expires)) => {
                    let end = period_end_after(expires, state.plan, now);
                    (end, Some(end))
                }
                _ => (start_of_next_month(now), state.expires_at),
            };
            Ok(Transition {
                next: Subscription {
                    status: Status::DeactivationPending,
                    deactivates_at: Some(when),
                    expires_at,
                    ..state
                },
                broker: BrokerEffect::None,
                history: "deactivation_requested",
            })
        }
        Action::Reactivate => match state.status {
            Status::DeactivationPending => Ok(Transition {
                next: Subscription {
                    status: Status::Active,
                    deactivates_at: None,
                    ..state
                },
                broker: BrokerEffect::None,
                history: "reactivated",
            }),
            Status::Deactivated => {
                if state.plan == Plan::Prepaid && state.expires_at.is_none_or(|e| e <= now) {
                    return Err(invalid(
                        "its prepaid period is over; extend it to reactivate it",
                    ));
                }
                // A yearly or quarterly agent comes back for a new contracted period from now.
                let expires_at = match state.plan.renewal_months() {
                    Some(months) => Some(add_months(now, months)),
                    None => state.expires_at,
                };
                Ok(Transition {
                    next: Subscription {
                        status: Status::Active,
                        deactivates_at: None,
                        expires_at,
                        ..state
                    },
                    broker: BrokerEffect::Enable,
                    history: "reactivated",
                })
            }
            Status::Active => Err(invalid("there is nothing to reactivate")),
            Status::Expired => Err(invalid(
                "an expired prepaid subscription is reactivated by extending it",
            )),
        },
        Action::Extend { until } => {
            match state.plan {
                Plan::Prepaid => {}
                Plan::Monthly => {
                    return Err(invalid(
                        "only prepaid subscriptions can be extended; this one is monthly",
                    ))
                }
                Plan::Yearly | Plan::Quarterly => {
                    return Err(invalid(
                        "only prepaid subscriptions can be extended; this one renews by itself at its renewal date (confirm the renewal or request the deactivation instead)",
                    ))
                }
            }
            if until <= now {
                return Err(LifecycleError::NotInFuture(until));
            }
            let limit = now
                .checked_add_months(Months::new(MAX_EXTEND_MONTHS))
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            if until > limit {
                return Err(LifecycleError::TooFarAhead(until));
            }
            let (status, deactivates_at, broker) = match state.status {
                Status::Active => (Status::Active, None, BrokerEffect::None),
                Status::DeactivationPending => {
                    (Status::DeactivationPending, Some(until), BrokerEffect::None)
                }
                Status::Deactivated | Status::Expired => {
                    (Status::Active, None, BrokerEffect::Enable)
                }
            };
            Ok(Transition {
                next: Subscription {
                    status,
                    plan: state.plan,
                    expires_at: Some(until),
                    deactivates_at,
                },
                broker,
                history: "extended",
            })
        }
    }
}

/// `at` plus `months` calendar months (the day clamped to the month's length: Feb 29 + 12 months is
/// Feb 28); the end of chrono's range if that is beyond it.
fn add_months(at: DateTime<Utc>, months: u32) -> DateTime<Utc> {
    at.checked_add_months(Months::new(months))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The first end of a contracted period of `plan` that began or renews at `expires`, strictly after `now`:
/// `expires` itself when it is still ahead, else `expires` plus as many whole periods as have passed
/// (each counted from `expires`, so a Jan 31 date stays on month ends instead of drifting). A plan without
/// periods gives `expires`.
fn period_end_after(expires: DateTime<Utc>, plan: Plan, now: DateTime<Utc>) -> DateTime<Utc> {
    let Some(months) = plan.renewal_months() else {
        return expires;
    };
    let mut k: u32 = 0;
    let mut end = expires;
    while end <= now {
        k = k.saturating_add(1);
        match k
            .checked_mul(months)
            .and_then(|m| expires.checked_add_months(Months::new(m)))
        {
            Some(next) => end = next,
            None => return DateTime::<Utc>::MAX_UTC,
        }
    }
    end
}

/// What time alone does to `state` at `now`, if anything: pending deactivations and prepaid expiry. The
/// renewal of yearly and quarterly plans is [`renewal_due`] (the sweep applies it with its decision state).
pub fn due(state: Subscription, now: DateTime<Utc>) -> Option<Transition> {
    match state.status {
        Status::DeactivationPending if state.deactivates_at.is_some_and(|at| at <= now) => {
            Some(Transition {
                next: Subscription {
                    status: Status::Deactivated,
                    deactivates_at: None,
                    ..state
                },
                broker: BrokerEffect::Disable,
                history: "deactivated",
            })
        }
        Status::Active | Status::DeactivationPending
            if state.plan == Plan::Prepaid && state.expires_at.is_some_and(|at| at <= now) =>
        {
            Some(Transition {
                next: Subscription {
                    status: Status::Expired,
                    deactivates_at: None,
                    ..state
                },
                broker: BrokerEffect::Disable,
                history: "expired",
            })
        }
        _ => None,
    }
}

/// The automatic renewal that time makes due: an `active` yearly or quarterly agent at or past its
/// renewal date (`expires_at`) renews; `expires_at` moves ahead by whole periods until it is in the future
/// (one period, unless the sweep missed more). A pending deactivation is not renewed: [`due`] ends it.
pub fn renewal_due(state: Subscription, now: DateTime<Utc>) -> Option<Transition> {
    let expires = state.expires_at?;
    if state.status != Status::Active || !state.plan.renews() || expires > now {
        return None;
    }
    Some(Transition {
        next: Subscription {
            expires_at: Some(period_end_after(expires, state.plan, now)),
            ..state
        },
        broker: BrokerEffect::None,
        history: "renewed",
    })
}

/// What people decided about the renewal of a yearly or quarterly agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RenewalDecision {
    /// The renewal date a person confirmed; none (or an older date): no decision for the current one.
    pub confirmed_until: Option<DateTime<Utc>>,
    /// When the sweep renewed the agent without a decision (the red flag); cleared by a decision.
    pub renewed_automatically_at: Option<DateTime<Utc>>,
}

impl RenewalDecision {
    /// Whether a person confirmed the renewal at `renews_at`.
    pub fn confirmed(&self, renews_at: DateTime<Utc>) -> bool {
        self.confirmed_until == Some(renews_at)
    }
}

/// A renewal the sweep applies: the transition, the decision state after it, and whether it happened
/// without a person's confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewal {
    pub transition: Transition,
    pub decision: RenewalDecision,
    pub automatic: bool,
}

/// [`renewal_due`] with the decision state: a renewal nobody confirmed is automatic and marks the agent
/// (`renewed_automatically_at = now`) until someone decides; a confirmed one clears the mark.
pub fn renew(
    state: Subscription,
    decision: RenewalDecision,
    now: DateTime<Utc>,
) -> Option<Renewal> {
    let transition = renewal_due(state, now)?;
    let automatic = !state.expires_at.is_some_and(|at| decision.confirmed(at));
    Some(Renewal {
        transition,
        decision: RenewalDecision {
            confirmed_until: decision.confirmed_until,
            renewed_automatically_at: automatic.then_some(now),
        },
        automatic,
    })
}

/// What a person decides about a renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The agent renews (or, after an automatic renewal, that renewal is accepted).
    Confirm,
    /// The agent is deactivated at the end of the contracted period.
    Deactivate,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Confirm => "confirm",
            Decision::Deactivate => "deactivate",
        }
    }
}

/// Not a decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown decision {0:?}: give confirm or deactivate")]
pub struct UnknownDecision(pub String);

impl FromStr for Decision {
    type Err = UnknownDecision;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "confirm" => Ok(Decision::Confirm),
            "deactivate" => Ok(Decision::Deactivate),
            other => Err(UnknownDecision(other.to_owned())),
        }
    }
}

/// A renewal decision that does not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenewalError {
    #[error("the agent is on the {0} plan, which has no renewal date; only yearly and quarterly plans are renewed (use deactivate or extend instead)")]
    NoRenewal(Plan),
    #[error("the agent is {0}, so there is no renewal to decide; reactivate it first (which also cancels a pending deactivation)")]
    NotActive(Status),
    #[error("the agent has no renewal date; set its plan again with a new activation code")]
    NoDate,
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
}

/// The outcome of a decision: the subscription and decision state after it, and the history line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decided {
    pub next: Subscription,
    pub decision: RenewalDecision,
    /// `renewal_confirmed` or `deactivation_requested`.
    pub history: &'static str,
    /// Confirm only: whether the current renewal date was confirmed (false when the decision only
    /// accepted an automatic renewal whose next date is not due yet).
    pub confirmed_date: bool,
}

/// What `choice` does to an `active` yearly or quarterly agent at `now`.
///
/// - Confirm clears the "renewed automatically" mark and confirms the current renewal date — except
///   right after an automatic renewal, when the next date is still more than [`DUE_WINDOW_DAYS`] days
///   away: then it only accepts the renewal that happened, and the next one is decided when it comes due
///   (otherwise that next renewal would pass without any reminder).
/// - Deactivate requests the deactivation at the end of the contracted period ([`apply`]) and clears the
///   mark.
pub fn decide(
    state: Subscription,
    decision: RenewalDecision,
    choice: Decision,
    now: DateTime<Utc>,
) -> Result<Decided, RenewalError> {
    if !state.plan.renews() {
        return Err(RenewalError::NoRenewal(state.plan));
    }
    if state.status != Status::Active {
        return Err(RenewalError::NotActive(state.status));
    }
    let renews_at = state.expires_at.ok_or(RenewalError::NoDate)?;
    match choice {
        Decision::Confirm => {
            let horizon = now
                .checked_add_signed(Duration::days(DUE_WINDOW_DAYS))
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            let only_accept = decision.renewed_automatically_at.is_some() && renews_at > horizon;
            Ok(Decided {
                next: state,
                decision: RenewalDecision {
                    confirmed_until: if only_accept {
                        decision.confirmed_until
                    } else {
                        Some(renews_at)
                    },
                    renewed_automatically_at: None,
                },
                history: "renewal_confirmed",
                confirmed_date: !only_accept,
            })
        }
        Decision::Deactivate => {
            let t = apply(state, Action::Deactivate, now)?;
            Ok(Decided {
                next: t.next,
                decision: RenewalDecision {
                    confirmed_until: decision.confirmed_until,
                    renewed_automatically_at: None,
                },
                history: t.history,
                confirmed_date: false,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    fn monthly(status: Status) -> Subscription {
        Subscription {
            status,
            plan: Plan::Monthly,
            expires_at: None,
            deactivates_at: None,
        }
    }

    fn prepaid(status: Status, expires: DateTime<Utc>) -> Subscription {
        Subscription {
            status,
            plan: Plan::Prepaid,
            expires_at: Some(expires),
            deactivates_at: None,
        }
    }

    #[test]
    fn monthly_deactivation_takes_effect_at_the_next_month_start() {
        let t = apply(
            monthly(Status::Active),
            Action::Deactivate,
            at(2026, 1, 31, 23),
        )
        .unwrap();
        assert_eq!(t.next.status, Status::DeactivationPending);
        assert_eq!(t.next.deactivates_at, Some(at(2026, 2, 1, 0)));
        assert_eq!(t.broker, BrokerEffect::None);
        assert_eq!(t.history, "deactivation_requested");
    }

    #[test]
    fn month_ends_roll_over_correctly() {
        assert_eq!(start_of_next_month(at(2026, 12, 15, 8)), at(2027, 1, 1, 0));
        assert_eq!(start_of_next_month(at(2028, 2, 29, 23)), at(2028, 3, 1, 0));
        assert_eq!(start_of_next_month(at(2026, 4, 30, 0)), at(2026, 5, 1, 0));
        assert_eq!(start_of_next_month(at(2026, 5, 1, 0)), at(2026, 6, 1, 0));
    }

    #[test]
    fn prepaid_deactivation_takes_effect_at_expiry() {
        let exp = at(2026, 6, 15, 12);
        let t = apply(
            prepaid(Status::Active, exp),
            Action::Deactivate,
            at(2026, 1, 1, 0),
        )
        .unwrap();
        assert_eq!(t.next.deactivates_at, Some(exp));
    }

    #[test]
    fn deactivate_only_from_active() {
        for status in [
            Status::DeactivationPending,
            Status::Deactivated,
            Status::Expired,
        ] {
            let err = apply(monthly(status), Action::Deactivate, at(2026, 1, 1, 0)).unwrap_err();
            assert!(matches!(err, LifecycleError::InvalidState { status: s, .. } if s == status));
            assert!(err.to_string().contains(status.as_str()));
        }
    }

    #[test]
    fn the_pending_deactivation_happens_when_due_and_not_before() {
        let now = at(2026, 1, 31, 23);
        let pending = apply(monthly(Status::Active), Action::Deactivate, now)
            .unwrap()
            .next;
        assert_eq!(due(pending, now), None);
        assert_eq!(
            due(pending, at(2026, 2, 1, 0) - chrono::Duration::seconds(1)),
            None
        );
        let t = due(pending, at(2026, 2, 1, 0)).unwrap();
        assert_eq!(t.next.status, Status::Deactivated);
        assert_eq!(t.next.deactivates_at, None);
        assert_eq!(t.broker, BrokerEffect::Disable);
        assert_eq!(t.history, "deactivated");
        assert_eq!(due(t.next, at(2030, 1, 1, 0)), None);
    }

    #[test]
    fn december_deactivation_lands_in_the_next_year() {
        let t = apply(
            monthly(Status::Active),
            Action::Deactivate,
            at(2026, 12, 31, 22),
        )
        .unwrap();
        assert_eq!(t.next.deactivates_at, Some(at(2027, 1, 1, 0)));
    }

    #[test]
    fn prepaid_expires_at_its_date() {
        let exp = at(2026, 3, 1, 0);
        let s = prepaid(Status::Active, exp);
        assert_eq!(due(s, at(2026, 2, 28, 23)), None);
        let t = due(s, exp).unwrap();
        assert_eq!(t.next.status, Status::Expired);
        assert_eq!(t.broker, BrokerEffect::Disable);
        assert_eq!(t.history, "expired");
        assert_eq!(due(monthly(Status::Active), at(2100, 1, 1, 0)), None);
    }

    #[test]
    fn reactivate_cancels_a_pending_deactivation_without_broker_change() {
        let pending = apply(
            monthly(Status::Active),
            Action::Deactivate,
            at(2026, 1, 5, 0),
        )
        .unwrap()
        .next;
        let t = apply(pending, Action::Reactivate, at(2026, 1, 6, 0)).unwrap();
        assert_eq!(t.next, monthly(Status::Active));
        assert_eq!(t.broker, BrokerEffect::None);
        assert_eq!(t.history, "reactivated");
    }

    #[test]
    fn reactivate_a_deactivated_agent_enables_it() {
        let t = apply(
            monthly(Status::Deactivated),
            Action::Reactivate,
            at(2026, 1, 6, 0),
        )
        .unwrap();
        assert_eq!(t.next.status, Status::Active);
        assert_eq!(t.broker, BrokerEffect::Enable);
        let still_paid = prepaid(Status::Deactivated, at(2026, 9, 1, 0));
        assert_eq!(
            apply(still_paid, Action::Reactivate, at(2026, 1, 6, 0))
                .unwrap()
                .broker,
            BrokerEffect::Enable
        );
    }

    #[test]
    fn reactivate_refuses_what_makes_no_sense() {
        let now = at(2026, 1, 6, 0);
        let over = prepaid(Status::Deactivated, at(2026, 1, 1, 0));
        assert!(matches!(
            apply(over, Action::Reactivate, now),
            Err(LifecycleError::InvalidState {
                status: Status::Deactivated,
                ..
            })
        ));
        for s in [
            monthly(Status::Active),
            prepaid(Status::Expired, at(2026, 1, 1, 0)),
        ] {
            assert!(matches!(
                apply(s, Action::Reactivate, now),
                Err(LifecycleError::InvalidState { .. })
            ));
        }
    }

    #[test]
    fn extend_moves_the_date_and_revives_expired_or_deactivated() {
        let now = at(2026, 1, 6, 0);
        let until = at(2027, 1, 6, 0);
        let t = apply(
            prepaid(Status::Active, at(2026, 2, 1, 0)),
            Action::Extend { until },
            now,
        )
        .unwrap();
        assert_eq!(t.next.expires_at, Some(until));
        assert_eq!(t.next.status, Status::Active);
        assert_eq!(t.broker, BrokerEffect::None);
        assert_eq!(t.history, "extended");
        for status in [Status::Expired, Status::Deactivated] {
            let t = apply(
                prepaid(status, at(2026, 1, 1, 0)),
                Action::Extend { until },
                now,
            )
            .unwrap();
            assert_eq!(t.next.status, Status::Active);
            assert_eq!(t.broker, BrokerEffect::Enable);
        }
        let mut pending = prepaid(Status::DeactivationPending, at(2026, 2, 1, 0));
        pending.deactivates_at = pending.expires_at;
        let t = apply(pending, Action::Extend { until }, now).unwrap();
        assert_eq!(t.next.status, Status::DeactivationPending);
        assert_eq!(t.next.deactivates_at, Some(until));
    }

    #[test]
    fn extend_limits() {
        let now = at(2026, 1, 6, 0);
        let s = prepaid(Status::Active, at(2026, 2, 1, 0));
        assert!(matches!(
            apply(
                monthly(Status::Active),
                Action::Extend {
                    until: at(2027, 1, 1, 0)
                },
                now
            ),
            Err(LifecycleError::InvalidState {
                status: Status::Active,
                ..
            })
        ));
        assert_eq!(
            apply(s, Action::Extend { until: now }, now),
            Err(LifecycleError::NotInFuture(now))
        );
        assert!(apply(
            s,
            Action::Extend {
                until: at(2031, 1, 6, 0)
            },
            now
        )
        .is_ok());
        let too_far = at(2031, 1, 6, 1);
        assert_eq!(
            apply(s, Action::Extend { until: too_far }, now),
            Err(LifecycleError::TooFarAhead(too_far))
        );
    }

    #[test]
    fn names_parse_back() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>().unwrap(), s);
        }
        for p in Plan::ALL {
            assert_eq!(p.as_str().parse::<Plan>().unwrap(), p);
            assert!(!p.label().is_empty());
        }
        assert!("gone".parse::<Status>().is_err());
        assert!("weekly".parse::<Plan>().is_err());
        assert!("Yearly".parse::<Plan>().is_err());
        for d in [Decision::Confirm, Decision::Deactivate] {
            assert_eq!(d.as_str().parse::<Decision>().unwrap(), d);
        }
        assert!("renew".parse::<Decision>().is_err());
    }

    fn renewing(plan: Plan, status: Status, renews: DateTime<Utc>) -> Subscription {
        Subscription {
            status,
            plan,
            expires_at: Some(renews),
            deactivates_at: None,
        }
    }

    #[test]
    fn only_yearly_and_quarterly_plans_renew() {
        assert_eq!(Plan::Yearly.renewal_months(), Some(12));
        assert_eq!(Plan::Quarterly.renewal_months(), Some(3));
        assert!(!Plan::Monthly.renews() && !Plan::Prepaid.renews());
        let past = at(2026, 1, 1, 0);
        let now = at(2026, 6, 1, 0);
        assert_eq!(renewal_due(prepaid(Status::Active, past), now), None);
        let mut m = monthly(Status::Active);
        m.expires_at = Some(past);
        assert_eq!(renewal_due(m, now), None);
    }

    #[test]
    fn a_yearly_agent_renews_exactly_at_its_renewal_date_and_not_before() {
        let date = at(2027, 1, 15, 12);
        let s = renewing(Plan::Yearly, Status::Active, date);
        assert_eq!(renewal_due(s, date - Duration::seconds(1)), None);
        let t = renewal_due(s, date).unwrap();
        assert_eq!(t.next.expires_at, Some(at(2028, 1, 15, 12)));
        assert_eq!(t.next.status, Status::Active, "it keeps working");
        assert_eq!(t.broker, BrokerEffect::None);
        assert_eq!(t.history, "renewed");
        assert_eq!(renewal_due(t.next, date), None, "renewed once");
        assert_eq!(
            due(s, date + Duration::days(400)),
            None,
            "never expires like prepaid"
        );
    }

    #[test]
    fn a_quarterly_agent_renews_by_three_months() {
        let date = at(2026, 11, 30, 0);
        let t = renewal_due(renewing(Plan::Quarterly, Status::Active, date), date).unwrap();
        assert_eq!(
            t.next.expires_at,
            Some(at(2027, 2, 28, 0)),
            "Nov 30 + 3 months"
        );
    }

    #[test]
    fn leap_days_clamp_to_the_end_of_february() {
        let leap = at(2028, 2, 29, 9);
        let t = renewal_due(renewing(Plan::Yearly, Status::Active, leap), leap).unwrap();
        assert_eq!(t.next.expires_at, Some(at(2029, 2, 28, 9)));
        let q = renewal_due(
            renewing(Plan::Quarterly, Status::Active, at(2027, 11, 29, 0)),
            at(2027, 11, 29, 0),
        )
        .unwrap();
        assert_eq!(
            q.next.expires_at,
            Some(at(2028, 2, 29, 0)),
            "a leap day is reached"
        );
    }

    #[test]
    fn missed_periods_are_caught_up_from_the_original_date() {
        // The portal was down for two years and a bit: the date lands on the next anniversary, and a
        // Feb 29 date comes back to Feb 29 in the next leap year instead of drifting to the 28th.
        let leap = at(2028, 2, 29, 0);
        let t = renewal_due(
            renewing(Plan::Yearly, Status::Active, leap),
            at(2031, 6, 1, 0),
        )
        .unwrap();
        assert_eq!(t.next.expires_at, Some(at(2032, 2, 29, 0)));
        let jan31 = at(2026, 1, 31, 0);
        let t = renewal_due(
            renewing(Plan::Quarterly, Status::Active, jan31),
            at(2026, 8, 1, 0),
        )
        .unwrap();
        assert_eq!(t.next.expires_at, Some(at(2026, 10, 31, 0)));
    }

    #[test]
    fn pending_deactivated_and_expired_agents_do_not_renew() {
        let date = at(2027, 1, 15, 0);
        for status in [
            Status::DeactivationPending,
            Status::Deactivated,
            Status::Expired,
        ] {
            assert_eq!(
                renewal_due(renewing(Plan::Yearly, status, date), date),
                None
            );
        }
    }

    #[test]
    fn deactivating_a_renewing_plan_ends_at_the_renewal_date() {
        let date = at(2027, 1, 15, 12);
        let s = renewing(Plan::Quarterly, Status::Active, date);
        let t = apply(s, Action::Deactivate, at(2026, 12, 1, 0)).unwrap();
        assert_eq!(t.next.status, Status::DeactivationPending);
        assert_eq!(t.next.deactivates_at, Some(date));
        assert_eq!(t.next.expires_at, Some(date));
        let end = due(t.next, date).unwrap();
        assert_eq!(end.next.status, Status::Deactivated);
        assert_eq!(end.broker, BrokerEffect::Disable);
        // Asked just after the date, before the sweep renewed it: the period it renewed into.
        let late = apply(s, Action::Deactivate, date + Duration::minutes(1)).unwrap();
        assert_eq!(late.next.deactivates_at, Some(at(2027, 4, 15, 12)));
        assert_eq!(late.next.expires_at, late.next.deactivates_at);
    }

    #[test]
    fn reactivating_a_deactivated_renewing_plan_starts_a_new_period() {
        let mut s = renewing(Plan::Yearly, Status::Deactivated, at(2026, 1, 1, 0));
        let now = at(2026, 3, 10, 8);
        let t = apply(s, Action::Reactivate, now).unwrap();
        assert_eq!(t.next.status, Status::Active);
        assert_eq!(t.next.expires_at, Some(at(2027, 3, 10, 8)));
        assert_eq!(t.broker, BrokerEffect::Enable);
        // Cancelling a pending deactivation keeps the date.
        s.status = Status::DeactivationPending;
        s.deactivates_at = s.expires_at;
        let t = apply(s, Action::Reactivate, at(2025, 12, 1, 0)).unwrap();
        assert_eq!(t.next.expires_at, Some(at(2026, 1, 1, 0)));
        assert_eq!(t.next.deactivates_at, None);
    }

    #[test]
    fn renewing_plans_are_not_extended() {
        let s = renewing(Plan::Yearly, Status::Active, at(2027, 1, 1, 0));
        let err = apply(
            s,
            Action::Extend {
                until: at(2028, 1, 1, 0),
            },
            at(2026, 6, 1, 0),
        )
        .unwrap_err();
        assert!(err.to_string().contains("renews by itself"), "{err}");
    }

    #[test]
    fn an_unconfirmed_renewal_is_automatic_and_marks_the_agent() {
        let date = at(2027, 1, 15, 0);
        let s = renewing(Plan::Yearly, Status::Active, date);
        let now = date + Duration::hours(1);
        let r = renew(s, RenewalDecision::default(), now).unwrap();
        assert!(r.automatic);
        assert_eq!(r.decision.renewed_automatically_at, Some(now));
        // Confirmed for an older date only: still automatic.
        let old = RenewalDecision {
            confirmed_until: Some(at(2026, 1, 15, 0)),
            renewed_automatically_at: None,
        };
        assert!(renew(s, old, now).unwrap().automatic);
        let confirmed = RenewalDecision {
            confirmed_until: Some(date),
            renewed_automatically_at: None,
        };
        let r = renew(s, confirmed, now).unwrap();
        assert!(!r.automatic);
        assert_eq!(r.decision.renewed_automatically_at, None);
        assert_eq!(r.transition.next.expires_at, Some(at(2028, 1, 15, 0)));
        assert_eq!(renew(s, confirmed, date - Duration::seconds(1)), None);
    }

    #[test]
    fn confirming_sets_the_date_and_clears_the_mark() {
        let date = at(2027, 1, 15, 0);
        let s = renewing(Plan::Yearly, Status::Active, date);
        let d = decide(
            s,
            RenewalDecision::default(),
            Decision::Confirm,
            date - Duration::days(20),
        )
        .unwrap();
        assert_eq!(d.next, s, "the subscription is unchanged");
        assert_eq!(d.decision.confirmed_until, Some(date));
        assert!(d.confirmed_date);
        assert_eq!(d.history, "renewal_confirmed");
        assert!(d.decision.confirmed(date));
    }

    #[test]
    fn confirming_after_an_automatic_renewal_accepts_it_and_leaves_the_next_date_open() {
        let next = at(2028, 1, 15, 0);
        let s = renewing(Plan::Yearly, Status::Active, next);
        let marked = RenewalDecision {
            confirmed_until: None,
            renewed_automatically_at: Some(at(2027, 1, 15, 0)),
        };
        let d = decide(s, marked, Decision::Confirm, at(2027, 1, 20, 0)).unwrap();
        assert_eq!(d.decision, RenewalDecision::default());
        assert!(!d.confirmed_date);
        // A quarterly agent left undecided until its next date is due: that date is confirmed too.
        let q = renewing(Plan::Quarterly, Status::Active, at(2027, 4, 15, 0));
        let d = decide(q, marked, Decision::Confirm, at(2027, 4, 1, 0)).unwrap();
        assert_eq!(d.decision.confirmed_until, Some(at(2027, 4, 15, 0)));
        assert_eq!(d.decision.renewed_automatically_at, None);
        assert!(d.confirmed_date);
    }

    #[test]
    fn declining_requests_the_deactivation_at_the_end_of_the_period() {
        let date = at(2027, 1, 15, 0);
        let s = renewing(Plan::Yearly, Status::Active, date);
        let marked = RenewalDecision {
            confirmed_until: None,
            renewed_automatically_at: Some(at(2026, 1, 15, 0)),
        };
        let d = decide(s, marked, Decision::Deactivate, at(2026, 12, 24, 0)).unwrap();
        assert_eq!(d.next.status, Status::DeactivationPending);
        assert_eq!(d.next.deactivates_at, Some(date));
        assert_eq!(d.decision.renewed_automatically_at, None);
        assert_eq!(d.history, "deactivation_requested");
    }

    #[test]
    fn decisions_need_an_active_renewing_plan() {
        let now = at(2026, 6, 1, 0);
        for s in [
            monthly(Status::Active),
            prepaid(Status::Active, at(2026, 7, 1, 0)),
        ] {
            for choice in [Decision::Confirm, Decision::Deactivate] {
                let err = decide(s, RenewalDecision::default(), choice, now).unwrap_err();
                assert_eq!(err, RenewalError::NoRenewal(s.plan));
                assert!(err.to_string().contains(s.plan.as_str()), "{err}");
            }
        }
        for status in [
            Status::DeactivationPending,
            Status::Deactivated,
            Status::Expired,
        ] {
            let s = renewing(Plan::Quarterly, status, at(2026, 7, 1, 0));
            assert_eq!(
                decide(s, RenewalDecision::default(), Decision::Confirm, now),
                Err(RenewalError::NotActive(status))
            );
        }
        let mut no_date = renewing(Plan::Yearly, Status::Active, now);
        no_date.expires_at = None;
        assert_eq!(
            decide(no_date, RenewalDecision::default(), Decision::Confirm, now),
            Err(RenewalError::NoDate)
        );
    }
}
