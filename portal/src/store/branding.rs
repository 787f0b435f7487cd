//! Each company's branding: details and the re-encoded logo with the key it is served under.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{opt_from_ms, to_ms, Conn, StoreError};
use crate::branding::Details;

/// A company's branding as stored (the logo's bytes are read separately).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrandingRow {
    pub company_id: i64,
    pub details: Details,
    pub logo_key: Option<String>,
    pub logo_updated_at: Option<DateTime<Utc>>,
}

pub async fn get(conn: &mut Conn, company: i64) -> Result<Option<BrandingRow>, StoreError> {
    let row = sqlx::query(
        "SELECT id, name, contact_email, contact_phone, website, address, logo_key, logo_updated_at \
         FROM companies WHERE id = ?",
    )
    .bind(company)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(BrandingRow {
            company_id: r.try_get("id")?,
            details: Details {
                name: r.try_get("name")?,
                contact_email: r.try_get("contact_email")?,
                contact_phone: r.try_get("contact_phone")?,
                website: r.try_get("website")?,
                address: r.try_get("address")?,
            },
            logo_key: r.try_get("logo_key")?,
            logo_updated_at: opt_from_ms(r.try_get("logo_updated_at")?)?,
        })
    })
    .transpose()
}

/// Whether another company already has this name.
pub async fn name_taken(conn: &mut Conn, company: i64, name: &str) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM companies WHERE lower(name) = lower(?) AND id <> ?",
    )
    .bind(name)
    .bind(company)
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}

pub async fn set_details(conn: &mut Conn, company: i64, d: &Details) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE companies SET name = ?, contact_email = ?, contact_phone = ?, website = ?, address = ? \
         WHERE id = ?",
    )
    .bind(&d.name)
    .bind(&d.contact_email)
    .bind(&d.contact_phone)
    .bind(&d.website)
    .bind(&d.address)
    .bind(company)
    .execute(conn)
    .await?;
    Ok(())
}

/// Stores a re-encoded logo (PNG) under a new key; `None` removes it.
pub async fn set_logo(
    conn: &mut Conn,
    company: i64,
    logo: Option<(&[u8], &str)>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE companies SET logo = ?, logo_key = ?, logo_updated_at = ? WHERE id = ?")
        .bind(logo.map(|(png, _)| png))
        .bind(logo.map(|(_, key)| key))
        .bind(logo.map(|_| to_ms(now)))
        .bind(company)
        .execute(conn)
        .await?;
    Ok(())
}

/// The PNG served under `key`.
pub async fn logo_by_key(conn: &mut Conn, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT logo FROM companies WHERE logo_key = ? AND logo IS NOT NULL")
            .bind(key)
            .fetch_optional(conn)
            .await?,
    )
}
