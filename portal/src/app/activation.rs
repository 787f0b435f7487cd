//! Activation codes (with the plan they give: monthly, prepaid for some months, yearly, quarterly),
//! activation (code → agent identity and broker client), agent credentials for `GET /agent/status`.

use chrono::{DateTime, Duration, Months, Utc};
use outpost_cloud_link::protocol::Platform;
use outpost_cloud_link::AgentId;
use tracing::{info, warn};

use super::{Actor, App, OpError};
use crate::codes::Code;
use crate::lifecycle::Plan;
use crate::secrets;
use crate::store::agents::{self, AgentRow, NewAgent};
use crate::store::{credentials, history, Store, StoreError};

/// Default lifetime of a new activation code.
pub const DEFAULT_CODE_LIFETIME: Duration = Duration::days(7);
/// Most uses one code may allow.
pub const MAX_CODE_USES: u32 = 10_000;
/// Longest prepaid period a code may grant.
pub const MAX_PREPAID_MONTHS: u32 = 60;

/// What an agent sends to activate.
#[derive(Debug, Clone)]
pub struct ActivationRequest {
    pub code: String,
    pub mac: Option<String>,
    pub hostname: String,
    pub version: String,
    pub local_ip: Option<String>,
    pub platform: Platform,
}

/// What an activated agent needs to run.
#[derive(Debug, Clone)]
pub struct Activated {
    pub agent_id: AgentId,
    pub name: String,
    pub broker: String,
    pub secret: String,
    pub ca_pem: String,
    pub epoch: u64,
    /// The address the activation came from (the HTTPS peer): the agent's public address.
    pub public_ip: Option<String>,
}

/// A freshly made activation code (shown once).
#[derive(Debug, Clone)]
pub struct NewCode {
    pub code: Code,
    pub expires_at: DateTime<Utc>,
    pub uses: u32,
    pub plan: Plan,
    pub prepaid_months: Option<u32>,
}

/// The plan an activation code gives the agents it activates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodePlan {
    Monthly,
    /// Paid for `months` from the activation.
    Prepaid {
        months: u32,
    },
    /// Renews every 12 months from the activation.
    Yearly,
    /// Renews every 3 months from the activation.
    Quarterly,
}

impl CodePlan {
    /// The plan from the API's or the CLI's `plan` name (`monthly` when absent, or `prepaid` when only
    /// `prepaid_months` is given) and `prepaid_months` (prepaid codes only, and needed by them).
    pub fn parse(plan: Option<&str>, prepaid_months: Option<u32>) -> Result<CodePlan, OpError> {
        let plan = match plan.map(str::trim).filter(|p| !p.is_empty()) {
            None if prepaid_months.is_some() => Plan::Prepaid,
            None => Plan::Monthly,
            Some(name) => name.parse::<Plan>().map_err(|e| OpError::Invalid {
                field: "plan",
                message: e.to_string(),
            })?,
        };
        match (plan, prepaid_months) {
            (Plan::Prepaid, Some(months)) => Ok(CodePlan::Prepaid { months }),
            (Plan::Prepaid, None) => Err(OpError::Invalid {
                field: "prepaid_months",
                message: format!(
                    "a prepaid code needs prepaid_months (1 to {MAX_PREPAID_MONTHS}): how long its agents are paid for"
                ),
            }),
            (other, Some(_)) => Err(OpError::Invalid {
                field: "prepaid_months",
                message: format!(
                    "only prepaid codes take prepaid_months; leave it out for a {other} code, or give plan prepaid"
                ),
            }),
            (Plan::Monthly, None) => Ok(CodePlan::Monthly),
            (Plan::Yearly, None) => Ok(CodePlan::Yearly),
            (Plan::Quarterly, None) => Ok(CodePlan::Quarterly),
        }
    }

    pub fn plan(self) -> Plan {
        match self {
            CodePlan::Monthly => Plan::Monthly,
            CodePlan::Prepaid { .. } => Plan::Prepaid,
            CodePlan::Yearly => Plan::Yearly,
            CodePlan::Quarterly => Plan::Quarterly,
        }
    }

    pub fn prepaid_months(self) -> Option<u32> {
        match self {
            CodePlan::Prepaid { months } => Some(months),
            _ => None,
        }
    }

    /// The `expires_at` of an agent activated at `now`: the end of the paid period (prepaid) or the first
    /// renewal date (yearly, quarterly); none for monthly.
    pub fn expires_at(self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let months = match self {
            CodePlan::Monthly => return None,
            CodePlan::Prepaid { months } => months,
            CodePlan::Yearly | CodePlan::Quarterly => self.plan().renewal_months()?,
        };
        Some(
            now.checked_add_months(Months::new(months))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        )
    }
}

/// Makes and stores an activation code (monthly, or prepaid for `prepaid_months`); see
/// [`create_code_with`] for every plan.
pub async fn create_code(
    store: &Store,
    now: DateTime<Utc>,
    lifetime: Duration,
    uses: u32,
    prepaid_months: Option<u32>,
    place: (i64, Option<i64>),
) -> Result<NewCode, OpError> {
    let plan = match prepaid_months {
        Some(months) => CodePlan::Prepaid { months },
        None => CodePlan::Monthly,
    };
    create_code_with(store, now, lifetime, uses, plan, place).await
}

/// Makes and stores an activation code whose agents get `plan`. Used by the API and by
/// `outpost-portal codes new`.
pub async fn create_code_with(
    store: &Store,
    now: DateTime<Utc>,
    lifetime: Duration,
    uses: u32,
    plan: CodePlan,
    place: (i64, Option<i64>),
) -> Result<NewCode, OpError> {
    let prepaid_months = plan.prepaid_months();
    if lifetime <= Duration::zero() {
        return Err(OpError::Invalid {
            field: "expires_in_s",
            message: "the code's lifetime must be positive".into(),
        });
    }
    if uses == 0 || uses > MAX_CODE_USES {
        return Err(OpError::Invalid {
            field: "uses",
            message: format!("uses must be between 1 and {MAX_CODE_USES}"),
        });
    }
    if prepaid_months.is_some_and(|m| m == 0 || m > MAX_PREPAID_MONTHS) {
        return Err(OpError::Invalid {
            field: "prepaid_months",
            message: format!("prepaid_months must be between 1 and {MAX_PREPAID_MONTHS}"),
        });
    }
    let expires_at = now
        .checked_add_signed(lifetime)
        .ok_or_else(|| OpError::Invalid {
            field: "expires_in_s",
            message: "the code's lifetime is too long".into(),
        })?;
    let code = Code::generate();
    let mut conn = store.conn().await?;
    credentials::insert_code(
        &mut conn,
        &code.hash(),
        uses,
        expires_at,
        (plan.plan(), prepaid_months),
        place,
        now,
    )
    .await?;
    info!(uses, plan = plan.plan().as_str(), prepaid_months, expires_at = %expires_at, "activation code created");
    Ok(NewCode {
        code,
        expires_at,
        uses,
        plan: plan.plan(),
        prepaid_months,
    })
}

impl App {
    /// Makes an activation code whose agents join `place` (company, group).
    pub async fn create_code(
        &self,
        lifetime: Duration,
        uses: u32,
        prepaid_months: Option<u32>,
        place: (i64, Option<i64>),
    ) -> Result<NewCode, OpError> {
        create_code(
            self.store(),
            self.now(),
            lifetime,
            uses,
            prepaid_months,
            place,
        )
        .await
    }

    /// Makes an activation code whose agents get `plan` and join `place` (company, group).
    pub async fn create_code_with(
        &self,
        lifetime: Duration,
        uses: u32,
        plan: CodePlan,
        place: (i64, Option<i64>),
    ) -> Result<NewCode, OpError> {
        create_code_with(self.store(), self.now(), lifetime, uses, plan, place).await
    }

    /// Activates an agent: checks the code, creates the broker client, then stores the agent and takes one
    /// use of the code in one transaction. If any step fails nothing is left behind.
    pub async fn activate(
        &self,
        req: ActivationRequest,
        public_ip: Option<String>,
    ) -> Result<Activated, OpError> {
        let code = Code::parse(&req.code)?;
        let hostname = req.hostname.trim().to_owned();
        if hostname.is_empty() {
            return Err(OpError::Invalid {
                field: "hostname",
                message: "hostname is empty; send the agent's host name".into(),
            });
        }
        let name = super::validate_name(&hostname).map_err(|_| OpError::Invalid {
            field: "hostname",
            message: "hostname must be 1 to 64 printable characters".into(),
        })?;
        if req.version.trim().is_empty() {
            return Err(OpError::Invalid {
                field: "version",
                message: "version is empty; send the agent's software version".into(),
            });
        }
        let now = self.now();
        let hash = code.hash();
        let stored = {
            let mut conn = self.store().conn().await?;
            credentials::find_code(&mut conn, &hash).await?
        }
        .ok_or(OpError::UnknownCode)?;
        if stored.expires_at <= now {
            return Err(OpError::CodeExpired);
        }
        if stored.used >= stored.uses {
            return Err(OpError::CodeUsedUp);
        }
        let code_plan = match (stored.plan, stored.prepaid_months) {
            (Plan::Prepaid, Some(months)) => CodePlan::Prepaid { months },
            (Plan::Yearly, _) => CodePlan::Yearly,
            (Plan::Quarterly, _) => CodePlan::Quarterly,
            // A prepaid code without months cannot be made; treat one as monthly rather than fail.
            (Plan::Monthly | Plan::Prepaid, _) => CodePlan::Monthly,
        };
        let (plan, expires_at) = (code_plan.plan(), code_plan.expires_at(now));
        let id = secrets::new_agent_id();
        let secret = secrets::new_agent_secret();
        self.broker().create_agent(&id, &secret).await?;

        let new = NewAgent {
            id: id.clone(),
            name: name.clone(),
            secret_hash: secrets::hash(&secret),
            plan,
            expires_at,
            activated_at: now,
            version: req.version.trim().to_owned(),
            local_ip: req.local_ip.clone(),
            mac: req.mac.clone(),
            public_ip: public_ip.clone(),
            platform: req.platform.as_str().to_owned(),
            hostname,
            company_id: stored.company_id,
            group_id: stored.group_id,
        };
        match self.store_activation(&hash, &new).await {
            Ok(()) => {}
            Err(e) => {
                if let Err(undo) = self.broker().delete_agent(&id).await {
                    warn!(agent = %id, error = %undo, "could not remove the broker client of a failed activation");
                }
                return Err(e);
            }
        }
        info!(agent = %id, name = %name, plan = plan.as_str(), "agent activated");
        Ok(Activated {
            agent_id: id,
            name,
            broker: self.settings().broker_address.clone(),
            secret,
            ca_pem: self.settings().ca_pem.clone(),
            epoch: 0,
            public_ip,
        })
    }

    async fn store_activation(&self, code_hash: &str, new: &NewAgent) -> Result<(), OpError> {
        let mut tx = self.store().begin().await?;
        // The code was checked before the broker client was made; the write checks again (uses and
        // expiry at this moment), and a refusal names which one ran out meanwhile.
        if !credentials::consume_code(&mut tx, code_hash, self.now()).await? {
            let expired = credentials::find_code(&mut tx, code_hash)
                .await?
                .is_some_and(|c| c.expires_at <= self.now());
            return Err(if expired {
                OpError::CodeExpired
            } else {
                OpError::CodeUsedUp
            });
        }
        agents::insert(&mut tx, new).await?;
        let details = match (new.plan, new.expires_at) {
            (Plan::Prepaid, Some(at)) => format!("plan prepaid until {}", at.to_rfc3339()),
            (plan, Some(at)) if plan.renews() => {
                format!("plan {plan}, renews on {}", at.to_rfc3339())
            }
            (plan, _) => format!("plan {plan}"),
        };
        history::append(
            &mut tx,
            history::Line {
                agent: &new.id,
                agent_name: &new.name,
                action: "activated",
                actor: Actor::agent().as_str(),
                details: &details,
            },
            new.activated_at,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// Checks an agent's own credentials (HTTP Basic on `/agent/status`).
    pub async fn authenticate_agent(&self, id: &str, secret: &str) -> Result<AgentRow, OpError> {
        let mut conn = self.store().conn().await?;
        if let Ok(agent_id) = AgentId::parse(id) {
            if let Some(agent) = agents::get(&mut conn, &agent_id).await? {
                return if secrets::verify(secret, &agent.secret_hash) {
                    Ok(agent)
                } else {
                    Err(OpError::BadCredentials)
                };
            }
        }
        match agents::tombstone_secret(&mut conn, id).await? {
            Some(hash) if secrets::verify(secret, &hash) => Err(OpError::AgentDeleted),
            _ => Err(OpError::BadCredentials),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn code_plans_parse_from_the_name_and_the_months() {
        assert_eq!(CodePlan::parse(None, None).unwrap(), CodePlan::Monthly);
        assert_eq!(
            CodePlan::parse(None, Some(6)).unwrap(),
            CodePlan::Prepaid { months: 6 }
        );
        assert_eq!(
            CodePlan::parse(Some("prepaid"), Some(12)).unwrap(),
            CodePlan::Prepaid { months: 12 }
        );
        assert_eq!(
            CodePlan::parse(Some("yearly"), None).unwrap(),
            CodePlan::Yearly
        );
        assert_eq!(
            CodePlan::parse(Some(" quarterly "), None).unwrap(),
            CodePlan::Quarterly
        );
        assert_eq!(CodePlan::parse(Some(""), None).unwrap(), CodePlan::Monthly);
        for (plan, months, field) in [
            (Some("prepaid"), None, "prepaid_months"),
            (Some("yearly"), Some(12), "prepaid_months"),
            (Some("monthly"), Some(1), "prepaid_months"),
            (Some("weekly"), None, "plan"),
        ] {
            match CodePlan::parse(plan, months) {
                Err(OpError::Invalid { field: f, message }) => {
                    assert_eq!(f, field, "{message}");
                    assert!(!message.is_empty());
                }
                other => panic!("{plan:?} {months:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn activation_dates_follow_the_plan() {
        let now = Utc.with_ymd_and_hms(2028, 2, 29, 10, 0, 0).unwrap();
        let at = |y, m, d| Utc.with_ymd_and_hms(y, m, d, 10, 0, 0).unwrap();
        assert_eq!(CodePlan::Monthly.expires_at(now), None);
        assert_eq!(CodePlan::Yearly.expires_at(now), Some(at(2029, 2, 28)));
        assert_eq!(CodePlan::Quarterly.expires_at(now), Some(at(2028, 5, 29)));
        assert_eq!(
            CodePlan::Prepaid { months: 2 }.expires_at(now),
            Some(at(2028, 4, 29))
        );
        for p in [
            CodePlan::Monthly,
            CodePlan::Prepaid { months: 1 },
            CodePlan::Yearly,
            CodePlan::Quarterly,
        ] {
            assert_eq!(p.prepaid_months().is_some(), p.plan() == Plan::Prepaid);
        }
    }
}
