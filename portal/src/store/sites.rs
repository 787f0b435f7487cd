//! Site configurations (one row per agent, see `crate::site`): read, write, remove, and the columns the
//! agents list joins in.

use outpost_cloud_link::AgentId;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{parse_column, to_ms, Conn, StoreError};
use crate::site::{Contact, Pin, Psa, PsaSystem, SiteConfig};
use chrono::{DateTime, Utc};

/// The site columns of `sites s`, named `site_*`, for a query that joins them (a missing row reads as
/// the empty configuration).
pub const JOINED_COLUMNS: &str = "s.email AS site_email, s.first_name AS site_first_name, \
    s.last_name AS site_last_name, s.phones AS site_phones, s.customer_id AS site_customer_id, \
    s.contract_id AS site_contract_id, s.psa_system AS site_psa_system, s.psa_org_id AS site_psa_org_id, \
    s.address AS site_address, s.latitude AS site_latitude, s.longitude AS site_longitude, \
    s.note AS site_note";

/// Reads the `site_*` columns of [`JOINED_COLUMNS`].
pub fn from_joined_row(row: &SqliteRow) -> Result<SiteConfig, StoreError> {
    let phones: Option<String> = row.try_get("site_phones")?;
    let phones = match phones {
        None => Vec::new(),
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| StoreError::Corrupt(format!("column sites.phones: {e}")))?,
    };
    let psa_system: Option<String> = row.try_get("site_psa_system")?;
    let psa = psa_system
        .map(|s| parse_column::<PsaSystem>("sites.psa_system", &s))
        .transpose()?
        .map(|system| -> Result<Psa, StoreError> {
            Ok(Psa {
                system,
                org_id: row.try_get("site_psa_org_id")?,
            })
        })
        .transpose()?;
    let latitude: Option<f64> = row.try_get("site_latitude")?;
    let longitude: Option<f64> = row.try_get("site_longitude")?;
    let pin = match (latitude, longitude) {
        (Some(latitude), Some(longitude)) => Some(Pin {
            latitude,
            longitude,
        }),
        _ => None,
    };
    Ok(SiteConfig {
        contact: Contact {
            email: row.try_get("site_email")?,
            first_name: row.try_get("site_first_name")?,
            last_name: row.try_get("site_last_name")?,
            phones,
        },
        customer_id: row.try_get("site_customer_id")?,
        contract_id: row.try_get("site_contract_id")?,
        psa,
        address: row.try_get("site_address")?,
        pin,
        note: row.try_get("site_note")?,
    })
}

/// The agent's site configuration, `None` when none was ever set.
pub async fn get(conn: &mut Conn, agent: &AgentId) -> Result<Option<SiteConfig>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {JOINED_COLUMNS} FROM sites s WHERE s.agent_id = ?"
    ))
    .bind(agent.as_str())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_joined_row).transpose()
}

/// Stores the agent's whole site configuration (replacing the previous one).
pub async fn upsert(
    conn: &mut Conn,
    agent: &AgentId,
    site: &SiteConfig,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let phones = serde_json::to_string(&site.contact.phones)
        .map_err(|e| StoreError::Corrupt(format!("phone numbers cannot be encoded: {e}")))?;
    sqlx::query(
        "INSERT INTO sites (agent_id, email, first_name, last_name, phones, customer_id, contract_id, \
         psa_system, psa_org_id, address, latitude, longitude, note, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (agent_id) DO UPDATE SET email = excluded.email, first_name = excluded.first_name, \
         last_name = excluded.last_name, phones = excluded.phones, customer_id = excluded.customer_id, \
         contract_id = excluded.contract_id, psa_system = excluded.psa_system, \
         psa_org_id = excluded.psa_org_id, address = excluded.address, latitude = excluded.latitude, \
         longitude = excluded.longitude, note = excluded.note, updated_at = excluded.updated_at",
    )
    .bind(agent.as_str())
    .bind(&site.contact.email)
    .bind(&site.contact.first_name)
    .bind(&site.contact.last_name)
    .bind(phones)
    .bind(&site.customer_id)
    .bind(&site.contract_id)
    .bind(site.psa.as_ref().map(|p| p.system.as_str()))
    .bind(site.psa.as_ref().and_then(|p| p.org_id.as_deref()))
    .bind(&site.address)
    .bind(site.pin.map(|p| p.latitude))
    .bind(site.pin.map(|p| p.longitude))
    .bind(&site.note)
    .bind(to_ms(now))
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes the agent's site configuration; whether there was one.
pub async fn delete(conn: &mut Conn, agent: &AgentId) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM sites WHERE agent_id = ?")
        .bind(agent.as_str())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}
