//! The subscription lifecycle as pure rules: a [`Subscription`], an [`Action`] and the time give a
//! [`Transition`] (or a [`LifecycleError`]); [`due`] says what time alone changes. No I/O here: the app
//! applies the transition to the store and the broker.
//!
//! - `active` → deactivate → `deactivation_pending` (keeps working) → at `deactivates_at` → `deactivated`;
//!   `deactivates_at` is the start of the next month (UTC) for monthly plans, `expires_at` for prepaid ones.
//! - prepaid `active` past `expires_at` → `expired`.
//! - reactivate: `deactivation_pending` → `active` (cancels); `deactivated` → `active` (a prepaid one only
//!   while its date is in the future).
//! - extend (prepaid only, until in the future and at most five years ahead): sets `expires_at`;
//!   `expired`/`deactivated` become `active`; a pending deactivation moves to the new date.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};

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
}

impl Plan {
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Monthly => "monthly",
            Plan::Prepaid => "prepaid",
        }
    }
}

/// Not a plan name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown plan {0:?}: expected monthly or prepaid")]
pub struct UnknownPlan(pub String);

impl FromStr for Plan {
    type Err = UnknownPlan;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "monthly" => Ok(Plan::Monthly),
            "prepaid" => Ok(Plan::Prepaid),
            other => Err(UnknownPlan(other.to_owned())),
        }
    }
}

/// An agent's subscription state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    pub status: Status,
    pub plan: Plan,
    /// Prepaid plans only: when the paid period ends.
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
    /// The history action name (`deactivation_requested`, `deactivated`, `reactivated`, `extended`, `expired`).
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
            let when = match (state.plan, state.expires_at) {
                (Plan::Prepaid, Some(expires)) => expires,
                _ => start_of_next_month(now),
            };
            Ok(Transition {
                next: Subscription {
                    status: Status::DeactivationPending,
                    deactivates_at: Some(when),
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
                Ok(Transition {
                    next: Subscription {
                        status: Status::Active,
                        deactivates_at: None,
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
            if state.plan != Plan::Prepaid {
                return Err(invalid(
                    "only prepaid subscriptions can be extended; this one is monthly",
                ));
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

/// What time alone does to `state` at `now`, if anything.
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
        for p in [Plan::Monthly, Plan::Prepaid] {
            assert_eq!(p.as_str().parse::<Plan>().unwrap(), p);
        }
        assert!("gone".parse::<Status>().is_err());
        assert!("yearly".parse::<Plan>().is_err());
    }
}
