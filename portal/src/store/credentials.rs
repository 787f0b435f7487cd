//! Activation codes, stored only as hashes, with the plan their agents get and the company (and group)
//! they join.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{from_ms, parse_column, to_ms, to_u64, Conn, StoreError};
use crate::lifecycle::Plan;

/// A stored activation code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRow {
    pub uses: u64,
    pub used: u64,
    pub expires_at: DateTime<Utc>,
    /// The plan of the agents it activates.
    pub plan: Plan,
    /// Prepaid plans: for how many months.
    pub prepaid_months: Option<u32>,
    pub company_id: Option<i64>,
    pub group_id: Option<i64>,
}

pub async fn insert_code(
    conn: &mut Conn,
    hash: &str,
    uses: u32,
    expires_at: DateTime<Utc>,
    (plan, prepaid_months): (Plan, Option<u32>),
    place: (i64, Option<i64>),
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO activation_codes (hash, uses, used, expires_at, plan, prepaid_months, created_at, company_id, group_id) \
         VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?)",
    )
    .bind(hash)
    .bind(i64::from(uses))
    .bind(to_ms(expires_at))
    .bind(plan.as_str())
    .bind(prepaid_months.map(i64::from))
    .bind(to_ms(now))
    .bind(place.0)
    .bind(place.1)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn find_code(conn: &mut Conn, hash: &str) -> Result<Option<CodeRow>, StoreError> {
    let row = sqlx::query(
        "SELECT uses, used, expires_at, plan, prepaid_months, company_id, group_id FROM activation_codes WHERE hash = ?",
    )
    .bind(hash)
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        let months: Option<i64> = row.try_get("prepaid_months")?;
        let plan: Option<String> = row.try_get("plan")?;
        // Codes made before plans were stored: prepaid when they give months, else monthly.
        let plan = match plan {
            Some(p) => parse_column::<Plan>("plan", &p)?,
            None if months.is_some() => Plan::Prepaid,
            None => Plan::Monthly,
        };
        Ok(CodeRow {
            uses: to_u64("uses", row.try_get("uses")?)?,
            used: to_u64("used", row.try_get("used")?)?,
            expires_at: from_ms(row.try_get("expires_at")?)?,
            plan,
            prepaid_months: months
                .map(|m| {
                    u32::try_from(m).map_err(|_| StoreError::Corrupt(format!("prepaid_months {m}")))
                })
                .transpose()?,
            company_id: row.try_get("company_id")?,
            group_id: row.try_get("group_id")?,
        })
    })
    .transpose()
}

/// Takes one use of the code if one is left and it has not expired at `now` (both checked by the write
/// itself, so a code read as valid cannot be consumed after its expiry or past its uses in a race);
/// false otherwise ([`find_code`] tells which).
pub async fn consume_code(
    conn: &mut Conn,
    hash: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE activation_codes SET used = used + 1 WHERE hash = ? AND used < uses AND expires_at > ?",
    )
    .bind(hash)
    .bind(to_ms(now))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
