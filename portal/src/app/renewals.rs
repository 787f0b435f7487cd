//! Renewals of yearly and quarterly plans: the sweep that renews agents at their renewal date (marking
//! the ones nobody confirmed as renewed automatically) and mails the weekly reminders before it (at most
//! [`RENEWAL_REMINDERS`] per renewal date, to the company admins and the admins of the agent's group and
//! its parent groups), and a person's decision: confirm the renewal, or request the deactivation at the end
//! of the contracted period. Every change writes an agent history line.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

use chrono::{DateTime, Duration, Utc};
use outpost_cloud_link::AgentId;
use tracing::{info, warn};

use super::{Actor, App, OpError};
use crate::lifecycle::{self, Decision, Renewal};
use crate::listing;
use crate::mail::messages::{renewal_reminder, RENEWAL_REMINDERS};
use crate::mail::recipient_domain;
use crate::store::agents::{self, AgentRow};
use crate::store::history::{self, Line};
use crate::store::{renewals, StoreError};

/// Days between two reminders of the same renewal date.
pub const REMINDER_INTERVAL_DAYS: i64 = 7;

/// What one renewal sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenewalSweep {
    /// Agents renewed (automatically or as confirmed).
    pub renewed: usize,
    /// Reminders mailed (one per agent, to all of its recipients).
    pub reminders: usize,
}

/// Why a reminder was not mailed, logged once per agent and renewal date (per process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Unsent {
    NoMailer,
    NoRecipient,
}

/// The (reason, agent, renewal date) already logged, so a sweep every minute does not repeat them.
static LOGGED: LazyLock<Mutex<HashSet<(Unsent, String, i64)>>> =
    LazyLock::new(|| Mutex::new(HashSet::new()));

/// True the first time it is asked about this reason, agent and renewal date.
fn first_time(reason: Unsent, agent: &AgentId, renews_at: DateTime<Utc>) -> bool {
    LOGGED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert((reason, agent.to_string(), renews_at.timestamp_millis()))
}

/// The page where a person decides the renewal of `agent`, under the portal's public address.
pub fn renewal_link(public_url: &str, agent: &AgentId) -> String {
    format!(
        "{}/agents/{agent}/renewal",
        public_url.trim_end_matches('/')
    )
}

/// The history details of an applied renewal.
fn renewed_details(r: &Renewal) -> String {
    let until = r
        .transition
        .next
        .expires_at
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    if r.automatic {
        format!("renewed automatically until {until}")
    } else {
        format!("renewed until {until}, as confirmed")
    }
}

impl App {
    /// Renews the yearly and quarterly agents whose renewal date has come, then mails the reminders that
    /// are due. A failure on one agent is logged and retried at the next sweep.
    pub async fn sweep_renewals(&self) -> Result<RenewalSweep, OpError> {
        let mut done = RenewalSweep::default();
        let now = self.now();
        let candidates = {
            let mut conn = self.store().conn().await?;
            agents::renewing(&mut conn).await?
        };
        for agent in &candidates {
            let Some(renewal) = lifecycle::renew(agent.subscription, agent.renewal, now) else {
                continue;
            };
            match self.apply_renewal(agent, &renewal, now).await {
                Ok(true) => done.renewed += 1,
                Ok(false) => {}
                Err(e) => {
                    warn!(agent = %agent.id, error = %e, "renewal failed; retrying at the next sweep")
                }
            }
        }
        let candidates = {
            let mut conn = self.store().conn().await?;
            agents::renewing(&mut conn).await?
        };
        for agent in &candidates {
            let Some(renews_at) = listing::renews_at(agent) else {
                continue;
            };
            if !listing::renewal_undecided(agent, now) {
                continue;
            }
            match self.remind(agent, renews_at, now).await {
                Ok(true) => done.reminders += 1,
                Ok(false) => {}
                Err(e) => warn!(agent = %agent.id, error = %e,
                    "renewal reminder failed; retrying at the next sweep"),
            }
        }
        Ok(done)
    }

    /// Writes a renewal if the subscription is still the one it was computed from; false if something
    /// changed it meanwhile (the next sweep looks again).
    async fn apply_renewal(
        &self,
        agent: &AgentRow,
        renewal: &Renewal,
        now: DateTime<Utc>,
    ) -> Result<bool, OpError> {
        let mut tx = self.store().begin().await?;
        let next = &renewal.transition.next;
        if !agents::replace_subscription(&mut tx, &agent.id, &agent.subscription, next).await? {
            return Ok(false);
        }
        agents::set_renewal_decision(&mut tx, &agent.id, &renewal.decision).await?;
        let details = renewed_details(renewal);
        history::append(
            &mut tx,
            Line {
                agent: &agent.id,
                agent_name: &agent.name,
                action: renewal.transition.history,
                actor: Actor::system().as_str(),
                details: &details,
            },
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(agent = %agent.id, plan = agent.subscription.plan.as_str(), automatic = renewal.automatic,
            until = ?next.expires_at, "subscription renewed");
        Ok(true)
    }

    /// Mails the next reminder of `agent`'s renewal at `renews_at` if one is due; true if it went out to
    /// at least one recipient (then it counts). Without a mailer or a recipient nothing is recorded, so
    /// the reminders go out once there is one.
    async fn remind(
        &self,
        agent: &AgentRow,
        renews_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, OpError> {
        let Some(mailer) = self.mailer() else {
            if first_time(Unsent::NoMailer, &agent.id, renews_at) {
                info!(agent = %agent.id, renews_at = %renews_at,
                    "renewal reminder not sent: no SMTP server is configured ([smtp] in the config file)");
            }
            return Ok(false);
        };
        let mut conn = self.store().conn().await?;
        let recipients = renewals::recipients(&mut conn, &agent.id).await?;
        if recipients.is_empty() {
            if first_time(Unsent::NoRecipient, &agent.id, renews_at) {
                warn!(agent = %agent.id, renews_at = %renews_at,
                    "renewal reminder not sent: the agent's company and groups have no admin with an email");
            }
            return Ok(false);
        }
        let before = renewals::get(&mut conn, &agent.id, renews_at).await?;
        let last_before = now - Duration::days(REMINDER_INTERVAL_DAYS);
        let Some(number) = renewals::claim(
            &mut conn,
            &agent.id,
            renews_at,
            now,
            last_before,
            RENEWAL_REMINDERS,
        )
        .await?
        else {
            return Ok(false);
        };
        drop(conn);
        let link = renewal_link(&self.settings().public_url, &agent.id);
        let plan = agent.subscription.plan.as_str();
        let mut delivered = 0usize;
        for to in &recipients {
            let mail =
                renewal_reminder(to, &agent.name, renews_at.date_naive(), plan, &link, number);
            match mailer.send(&mail).await {
                Ok(()) => delivered += 1,
                Err(e) => warn!(agent = %agent.id, reminder = number,
                    recipient_domain = recipient_domain(to), error = %e,
                    "renewal reminder not delivered to one recipient"),
            }
        }
        if delivered == 0 {
            let mut conn = self.store().conn().await?;
            renewals::unclaim(&mut conn, &agent.id, renews_at, number, &before).await?;
            return Err(OpError::Mail(format!(
                "reminder {number} about agent {} reached none of its {} recipient(s)",
                agent.id,
                recipients.len()
            )));
        }
        info!(agent = %agent.id, reminder = number, recipients = delivered,
            failed = recipients.len() - delivered, renews_at = %renews_at, "renewal reminder mailed");
        Ok(true)
    }

    /// The reminders mailed so far for `agent`'s renewal at `renews_at`.
    pub async fn renewal_reminders(
        &self,
        agent: &AgentId,
        renews_at: DateTime<Utc>,
    ) -> Result<renewals::Reminders, OpError> {
        let mut conn = self.store().conn().await?;
        Ok(renewals::get(&mut conn, agent, renews_at).await?)
    }

    /// A person's decision on the renewal of a yearly or quarterly agent (see [`lifecycle::decide`]):
    /// confirm, or request the deactivation at the end of the contracted period. Another plan, or an agent
    /// that is not active, is refused with [`OpError::Conflict`].
    pub async fn decide_renewal(
        &self,
        id: &AgentId,
        choice: Decision,
        actor: &Actor,
    ) -> Result<AgentRow, OpError> {
        let agent = self.agent(id).await?;
        let now = self.now();
        let decided = lifecycle::decide(agent.subscription, agent.renewal, choice, now)
            .map_err(|e| OpError::Conflict(e.to_string()))?;
        let date = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
        let details = match choice {
            Decision::Confirm if decided.confirmed_date => format!(
                "{} renewal on {} confirmed",
                agent.subscription.plan,
                date(agent.subscription.expires_at)
            ),
            Decision::Confirm => format!(
                "automatic renewal accepted; the next renewal on {} is decided when it comes due",
                date(agent.subscription.expires_at)
            ),
            Decision::Deactivate => format!(
                "renewal declined; takes effect at {}",
                date(decided.next.deactivates_at)
            ),
        };
        let mut tx = self.store().begin().await?;
        if decided.next != agent.subscription
            && !agents::replace_subscription(&mut tx, id, &agent.subscription, &decided.next)
                .await?
        {
            return Err(OpError::Conflict(
                "the agent's subscription changed while you decided; reload the page and decide again"
                    .into(),
            ));
        }
        agents::set_renewal_decision(&mut tx, id, &decided.decision).await?;
        history::append(
            &mut tx,
            Line {
                agent: id,
                agent_name: &agent.name,
                action: decided.history,
                actor: actor.as_str(),
                details: &details,
            },
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(agent = %id, decision = choice.as_str(), actor = actor.as_str(), "renewal decided");
        self.agent(id).await
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::lifecycle::{Plan, RenewalDecision, Status, Subscription};

    #[test]
    fn the_link_is_under_the_public_address() {
        let id: AgentId = "ag-aaaaaaaaaaaa".parse().unwrap();
        for base in [
            "https://portal.example:8443",
            "https://portal.example:8443/",
        ] {
            assert_eq!(
                renewal_link(base, &id),
                "https://portal.example:8443/agents/ag-aaaaaaaaaaaa/renewal"
            );
        }
    }

    #[test]
    fn renewal_details_say_whether_anyone_confirmed() {
        let date = Utc.with_ymd_and_hms(2027, 1, 15, 12, 0, 0).unwrap();
        let s = Subscription {
            status: Status::Active,
            plan: Plan::Yearly,
            expires_at: Some(date),
            deactivates_at: None,
        };
        let auto = lifecycle::renew(s, RenewalDecision::default(), date).unwrap();
        assert_eq!(
            renewed_details(&auto),
            "renewed automatically until 2028-01-15T12:00:00+00:00"
        );
        let confirmed = RenewalDecision {
            confirmed_until: Some(date),
            renewed_automatically_at: None,
        };
        let r = lifecycle::renew(s, confirmed, date).unwrap();
        assert_eq!(
            renewed_details(&r),
            "renewed until 2028-01-15T12:00:00+00:00, as confirmed"
        );
    }

    #[test]
    fn each_unsent_reason_is_logged_once_per_agent_and_date() {
        let id: AgentId = "ag-bbbbbbbbbbbb".parse().unwrap();
        let date = Utc.with_ymd_and_hms(2027, 1, 15, 12, 0, 0).unwrap();
        assert!(first_time(Unsent::NoMailer, &id, date));
        assert!(!first_time(Unsent::NoMailer, &id, date));
        assert!(first_time(Unsent::NoRecipient, &id, date));
        assert!(first_time(
            Unsent::NoMailer,
            &id,
            date + Duration::days(365)
        ));
    }
}
