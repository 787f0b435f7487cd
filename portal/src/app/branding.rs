//! Company branding: a company admin sets the name, contact details and logo their site owners see; the
//! owner pages show the branding of each site's company. Every change is in the account history.

use tracing::info;

use super::session_tokens::new_token;
use super::{App, OpError};
use crate::access::Caller;
use crate::branding::{self, Details};
use crate::store::branding::{self as store, BrandingRow};
use crate::store::history::{self, AccountLine};
use crate::store::StoreError;

/// Where a logo is served.
pub fn logo_path(key: &str) -> String {
    format!("/branding/logo/{key}")
}

fn company_of(caller: &Caller) -> Result<i64, OpError> {
    caller.company_id.ok_or(OpError::NoCompany)
}

impl App {
    /// The branding of `company`.
    pub async fn branding(&self, company: i64) -> Result<BrandingRow, OpError> {
        let mut conn = self.store().conn().await?;
        store::get(&mut conn, company).await?.ok_or_else(|| {
            OpError::Store(StoreError::Corrupt(format!("company {company} vanished")))
        })
    }

    /// The caller's company's branding.
    pub async fn my_branding(&self, caller: &Caller) -> Result<BrandingRow, OpError> {
        self.branding(company_of(caller)?).await
    }

    /// Saves the details (checked); the name must stay unique among companies.
    pub async fn set_branding(
        &self,
        caller: &Caller,
        details: &Details,
        address: Option<&str>,
    ) -> Result<BrandingRow, OpError> {
        let company = company_of(caller)?;
        let details = details.check().map_err(|e| OpError::Invalid {
            field: e.field,
            message: e.message,
        })?;
        let mut tx = self.store().begin().await?;
        if store::name_taken(&mut tx, company, &details.name).await? {
            return Err(OpError::Conflict(format!(
                "another company is already called {:?}; choose another name",
                details.name
            )));
        }
        store::set_details(&mut tx, company, &details).await?;
        history::append_account(
            &mut tx,
            AccountLine {
                company: Some(company),
                action: "branding-changed",
                actor: &caller.actor_name(),
                details: &format!("name {:?}", details.name),
                address,
            },
            self.now(),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(company, user = caller.user_id, "branding saved");
        self.branding(company).await
    }

    /// Checks and re-encodes an uploaded logo, then stores it under a fresh key. A refused upload
    /// changes nothing.
    pub async fn set_logo(
        &self,
        caller: &Caller,
        bytes: Vec<u8>,
        address: Option<&str>,
    ) -> Result<BrandingRow, OpError> {
        let company = company_of(caller)?;
        let size = bytes.len();
        let png = tokio::task::spawn_blocking(move || branding::reencode_logo(&bytes))
            .await
            .map_err(|e| OpError::Internal(format!("logo task failed: {e}")))?
            .map_err(|e| OpError::Invalid {
                field: "logo",
                message: e.to_string(),
            })?;
        let key = new_token();
        let mut tx = self.store().begin().await?;
        store::set_logo(&mut tx, company, Some((&png, &key)), self.now()).await?;
        history::append_account(
            &mut tx,
            AccountLine {
                company: Some(company),
                action: "logo-changed",
                actor: &caller.actor_name(),
                details: &format!("{size} bytes uploaded, {} bytes stored as PNG", png.len()),
                address,
            },
            self.now(),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(company, uploaded = size, stored = png.len(), "logo saved");
        self.branding(company).await
    }

    pub async fn delete_logo(&self, caller: &Caller, address: Option<&str>) -> Result<(), OpError> {
        let company = company_of(caller)?;
        let mut tx = self.store().begin().await?;
        store::set_logo(&mut tx, company, None, self.now()).await?;
        history::append_account(
            &mut tx,
            AccountLine {
                company: Some(company),
                action: "logo-removed",
                actor: &caller.actor_name(),
                details: "",
                address,
            },
            self.now(),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// The logo served under `key` (PNG).
    pub async fn logo(&self, key: &str) -> Result<Option<Vec<u8>>, OpError> {
        if !super::session_tokens::well_formed(key) {
            return Ok(None);
        }
        let mut conn = self.store().conn().await?;
        Ok(store::logo_by_key(&mut conn, key).await?)
    }
}
