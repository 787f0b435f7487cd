//! Activation codes, activation (code → agent identity and broker client), agent credentials for
//! `GET /agent/status`.

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
    pub prepaid_months: Option<u32>,
}

/// Makes and stores an activation code. Used by the API and by `outpost-portal codes new`.
pub async fn create_code(
    store: &Store,
    now: DateTime<Utc>,
    lifetime: Duration,
    uses: u32,
    prepaid_months: Option<u32>,
    place: (i64, Option<i64>),
) -> Result<NewCode, OpError> {
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
        prepaid_months,
        place,
        now,
    )
    .await?;
    info!(uses, prepaid_months, expires_at = %expires_at, "activation code created");
    Ok(NewCode {
        code,
        expires_at,
        uses,
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
        let (plan, expires_at) = match stored.prepaid_months {
            Some(months) => (
                Plan::Prepaid,
                Some(
                    now.checked_add_months(Months::new(months))
                        .unwrap_or(DateTime::<Utc>::MAX_UTC),
                ),
            ),
            None => (Plan::Monthly, None),
        };
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
        if !credentials::consume_code(&mut tx, code_hash).await? {
            return Err(OpError::CodeUsedUp);
        }
        agents::insert(&mut tx, new).await?;
        let details = match new.expires_at {
            Some(at) => format!("plan prepaid until {}", at.to_rfc3339()),
            None => "plan monthly".to_owned(),
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
