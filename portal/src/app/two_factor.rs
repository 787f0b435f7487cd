//! Two-factor sign-in: turning TOTP on (a secret that counts only once a code from it is confirmed, then
//! ten recovery codes shown once), renewing and turning it off, the second step of a sign-in (a TOTP code,
//! each accepted once, or a recovery code, each usable once; a few wrong ones end the session), and
//! remembered devices (a signed cookie whose device the store must still know). Every change is written
//! to the account history with the address it came from.

use chrono::{DateTime, Duration, Utc};
use tracing::{info, warn};

use super::sessions::Session;
use super::{App, OpError};
use crate::passwords;
use crate::recovery_codes;
use crate::secrets;
use crate::store::history::{self, AccountLine};
use crate::store::two_factor::{self as store, DeviceRow};
use crate::store::users::{self, UserRow};
use crate::store::{Conn, StoreError};
use crate::totp::{TotpError, TotpSecret};
use crate::trusted_device;

/// Wrong codes a session waiting for its second factor may type before it ends.
pub const MAX_CODE_FAILURES: u32 = 5;
/// How long a device stays remembered.
pub const DEVICE_LIFETIME: Duration = Duration::days(trusted_device::LIFETIME_DAYS);
/// The issuer authenticator apps show next to the account.
pub const ISSUER: &str = "Outpost";

/// Why a code was not accepted; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeRefused {
    #[error(transparent)]
    Totp(#[from] TotpError),
    #[error("this recovery code is not one of yours or was used already; type another one, or the code from your authenticator app")]
    RecoveryCode,
    #[error("no two-factor setup is waiting for a code (it was finished, or replaced by a newer one); start again")]
    NothingToConfirm,
    #[error("two-factor sign-in is not turned on for this account; sign in again")]
    NotOn,
}

/// How a sign-in passed its second step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactor {
    Totp,
    /// A recovery code, with how many are left.
    RecoveryCode {
        left: u64,
    },
}

/// How the history names a user acting on their own account.
fn actor(user: &UserRow) -> String {
    format!("user:{}", user.username)
}

/// Seconds since the Unix epoch (0 before it).
fn unix(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp()).unwrap_or(0)
}

fn stored_secret(user: &UserRow) -> Result<Option<TotpSecret>, OpError> {
    user.totp_secret
        .as_deref()
        .map(|s| {
            TotpSecret::from_base32(s).map_err(|e| {
                OpError::Store(StoreError::Corrupt(format!(
                    "the two-factor secret of user {}: {e}",
                    user.id
                )))
            })
        })
        .transpose()
}

/// The secret waiting for its first code (set up but not confirmed), if any.
pub fn pending_secret(user: &UserRow) -> Result<Option<TotpSecret>, OpError> {
    if user.totp_enabled_at.is_some() {
        return Ok(None);
    }
    stored_secret(user)
}

/// The account name authenticator apps show: the email, or the username.
pub fn account_label(user: &UserRow) -> String {
    match &user.email {
        Some(email) if !email.contains(':') => email.clone(),
        _ => user.username.clone(),
    }
}

async fn append(
    conn: &mut Conn,
    user: &UserRow,
    action: &str,
    details: &str,
    address: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    history::append_account(
        conn,
        AccountLine {
            company: user.company_id,
            action,
            actor: &actor(user),
            details,
            address,
        },
        now,
    )
    .await
}

impl App {
    /// The key that signs trusted-device cookies (made on first use).
    pub async fn device_key(&self) -> Result<[u8; 32], OpError> {
        let mut conn = self.store().conn().await?;
        Ok(store::key(&mut conn, store::DEVICE_KEY, self.now()).await?)
    }

    /// The user a trusted-device cookie value belongs to, if it is valid and the store still knows its
    /// device (whose last use becomes now). A damaged, forged or old value is `None`, never an error.
    pub async fn trusted_device_user(&self, value: &str) -> Result<Option<i64>, OpError> {
        let key = self.device_key().await?;
        let now = self.now();
        let max_age = u64::try_from(DEVICE_LIFETIME.num_seconds()).unwrap_or(0);
        let Ok(cookie) = trusted_device::verify(&key, value, unix(now), max_age) else {
            return Ok(None);
        };
        let mut conn = self.store().conn().await?;
        let known = store::use_device(
            &mut conn,
            &secrets::hash(&cookie.device_id),
            cookie.user_id,
            now,
        )
        .await?;
        Ok(known.then_some(cookie.user_id))
    }

    /// Remembers this browser for `user`: stores the device (its id hashed) and returns the cookie value.
    pub async fn remember_device(&self, user: &UserRow, browser: &str) -> Result<String, OpError> {
        let key = self.device_key().await?;
        let now = self.now();
        let (cookie, value) = trusted_device::issue(&key, user.id, unix(now));
        let mut conn = self.store().conn().await?;
        store::insert_device(
            &mut conn,
            &DeviceRow {
                id_hash: secrets::hash(&cookie.device_id),
                user_id: user.id,
                browser: browser.to_owned(),
                created_at: now,
                last_used: now,
                expires_at: now + DEVICE_LIFETIME,
            },
        )
        .await?;
        info!(user = user.id, "device remembered");
        Ok(value)
    }

    /// The user's remembered devices.
    pub async fn trusted_devices(&self, user: i64) -> Result<Vec<DeviceRow>, OpError> {
        let mut conn = self.store().conn().await?;
        Ok(store::devices_of(&mut conn, user, self.now()).await?)
    }

    /// Forgets one of the user's devices (its cookie stops working at once).
    pub async fn remove_trusted_device(
        &self,
        user: &UserRow,
        id_hash: &str,
        address: Option<&str>,
    ) -> Result<(), OpError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let devices = store::devices_of(&mut tx, user.id, now).await?;
        let Some(device) = devices.iter().find(|d| d.id_hash == id_hash) else {
            return Err(OpError::Invalid {
                field: "device",
                message:
                    "this device is not remembered for your account (any more); reload the page"
                        .into(),
            });
        };
        store::delete_device(&mut tx, user.id, id_hash).await?;
        let details = format!(
            "{} (remembered since {})",
            device.browser,
            device.created_at.format("%Y-%m-%d")
        );
        append(
            &mut tx,
            user,
            "trusted-device-removed",
            &details,
            address,
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(user = user.id, "remembered device removed");
        Ok(())
    }

    /// How many unused recovery codes the user has.
    pub async fn recovery_codes_left(&self, user: i64) -> Result<u64, OpError> {
        let mut conn = self.store().conn().await?;
        Ok(store::recovery_codes_left(&mut conn, user).await?)
    }

    /// Whether `password` is the user's password (the same slow work when they have none).
    pub async fn password_matches(&self, user: &UserRow, password: &str) -> Result<bool, OpError> {
        passwords::check_password(password, user.password_hash.clone(), self.password_cost())
            .await
            .map_err(|e| OpError::Internal(format!("password check failed: {e}")))
    }

    /// Starts turning two-factor sign-in on, or renewing it: a fresh secret replaces any stored one at
    /// once (so two-factor counts as off until [`App::confirm_two_factor`]). Returns the secret to show.
    pub async fn begin_two_factor(
        &self,
        user: &UserRow,
        address: Option<&str>,
    ) -> Result<TotpSecret, OpError> {
        let secret = TotpSecret::generate();
        let now = self.now();
        let mut tx = self.store().begin().await?;
        users::set_totp(&mut tx, user.id, Some(&secret.to_base32()), None, None, now).await?;
        if user.has_2fa() {
            append(
                &mut tx,
                user,
                "2fa-renewed",
                "the old authenticator secret no longer works; waiting for a code of the new one",
                address,
                now,
            )
            .await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        info!(
            user = user.id,
            renewal = user.has_2fa(),
            "two-factor setup started"
        );
        Ok(secret)
    }

    /// Confirms the pending secret with a current code from it: two-factor sign-in is on from now, and
    /// the user's new recovery codes are returned (shown once; only their hashes are kept).
    pub async fn confirm_two_factor(
        &self,
        user_id: i64,
        code: &str,
        address: Option<&str>,
    ) -> Result<Result<Vec<String>, CodeRefused>, OpError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let Some(user) = users::by_id(&mut tx, user_id).await? else {
            return Err(OpError::UnknownUser(user_id));
        };
        let (Some(secret), Some(stored)) = (pending_secret(&user)?, user.totp_secret.clone())
        else {
            return Ok(Err(CodeRefused::NothingToConfirm));
        };
        let last = user.totp_last_step.and_then(|s| u64::try_from(s).ok());
        let step = match secret.verify(code, unix(now), last) {
            Ok(step) => i64::try_from(step).unwrap_or(i64::MAX),
            Err(e) => return Ok(Err(e.into())),
        };
        if !store::enable_totp(&mut tx, user.id, &stored, step, now).await? {
            return Ok(Err(CodeRefused::NothingToConfirm));
        }
        let codes = recovery_codes::generate();
        let hashes: Vec<String> = codes.iter().map(|c| recovery_codes::hash(c)).collect();
        store::replace_recovery_codes(&mut tx, user.id, &hashes).await?;
        let details = format!("{} new recovery codes", codes.len());
        append(&mut tx, &user, "2fa-enabled", &details, address, now).await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(user = user.id, "two-factor sign-in turned on");
        Ok(Ok(codes))
    }

    /// Turns two-factor sign-in off: forgets the secret, the recovery codes and the remembered devices.
    pub async fn disable_two_factor(
        &self,
        user: &UserRow,
        address: Option<&str>,
    ) -> Result<(), OpError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        users::set_totp(&mut tx, user.id, None, None, None, now).await?;
        store::delete_recovery_codes(&mut tx, user.id).await?;
        let devices = store::delete_devices_of(&mut tx, user.id).await?;
        let details = format!("secret, recovery codes and {devices} remembered device(s) removed");
        append(&mut tx, user, "2fa-disabled", &details, address, now).await?;
        tx.commit().await.map_err(StoreError::from)?;
        if user.require_2fa {
            warn!(user = user.id, "two-factor sign-in turned off although the company requires it; the next sign-in sets it up again");
        }
        info!(user = user.id, "two-factor sign-in turned off");
        Ok(())
    }

    /// The second step of a sign-in: a TOTP code (each accepted once) or a recovery code (each usable
    /// once). Does not complete the session; a refusal does not count as a failure here (see
    /// [`App::second_factor_failed`]).
    pub async fn check_second_factor(
        &self,
        session: &Session,
        code: &str,
        address: Option<&str>,
    ) -> Result<Result<SecondFactor, CodeRefused>, OpError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let Some(user) = users::by_id(&mut tx, session.user.id).await? else {
            return Err(OpError::UnknownUser(session.user.id));
        };
        if !user.has_2fa() {
            return Ok(Err(CodeRefused::NotOn));
        }
        if recovery_codes::looks_like(code) {
            if !store::use_recovery_code(&mut tx, user.id, &recovery_codes::hash(code), now).await?
            {
                return Ok(Err(CodeRefused::RecoveryCode));
            }
            let left = store::recovery_codes_left(&mut tx, user.id).await?;
            let details = format!("signed in with a recovery code; {left} left");
            append(&mut tx, &user, "recovery-code-used", &details, address, now).await?;
            tx.commit().await.map_err(StoreError::from)?;
            info!(user = user.id, left, "recovery code used");
            return Ok(Ok(SecondFactor::RecoveryCode { left }));
        }
        let Some(secret) = stored_secret(&user)? else {
            return Ok(Err(CodeRefused::NotOn));
        };
        let last = user.totp_last_step.and_then(|s| u64::try_from(s).ok());
        let step = match secret.verify(code, unix(now), last) {
            Ok(step) => i64::try_from(step).unwrap_or(i64::MAX),
            Err(e) => return Ok(Err(e.into())),
        };
        // Two sign-ins racing with one code: only one records its step.
        if !users::take_totp_step(&mut tx, user.id, step).await? {
            return Ok(Err(CodeRefused::Totp(TotpError::Replayed)));
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(Ok(SecondFactor::Totp))
    }

    /// Counts a wrong code of the waiting session `token`; after [`MAX_CODE_FAILURES`] the session ends.
    /// Returns how many tries are left (0: the session has ended).
    pub async fn second_factor_failed(
        &self,
        token: &str,
        user: &UserRow,
        why: &CodeRefused,
        address: Option<&str>,
    ) -> Result<u32, OpError> {
        let now = self.now();
        let hash = secrets::hash(token);
        let mut tx = self.store().begin().await?;
        let failures = store::count_code_failure(&mut tx, &hash).await?;
        let left = MAX_CODE_FAILURES.saturating_sub(failures);
        if left == 0 {
            users::delete_session(&mut tx, &hash).await?;
        }
        let details = format!(
            "wrong second factor ({}){}",
            match why {
                CodeRefused::Totp(TotpError::Replayed) => "a code used before",
                CodeRefused::RecoveryCode => "unknown or used recovery code",
                _ => "wrong or malformed code",
            },
            if left == 0 {
                "; too many, session ended"
            } else {
                ""
            }
        );
        append(&mut tx, user, "sign-in-code-failed", &details, address, now).await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(user = user.id, failures, "wrong second factor");
        Ok(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Role;

    fn user(email: Option<&str>, secret: Option<&str>, enabled: bool) -> UserRow {
        UserRow {
            id: 7,
            company_id: Some(1),
            username: "ana".into(),
            email: email.map(str::to_owned),
            name: "Ana".into(),
            role: Role::Supervisor,
            password_hash: None,
            time_format: "24h".into(),
            time_zone: "UTC".into(),
            require_2fa: false,
            totp_secret: secret.map(str::to_owned),
            totp_last_step: None,
            totp_enabled_at: enabled.then(Utc::now),
            created_at: Utc::now(),
        }
    }

    #[test]
    fn only_an_unconfirmed_secret_is_pending() {
        let s = TotpSecret::generate().to_base32();
        assert!(pending_secret(&user(None, Some(&s), false))
            .unwrap()
            .is_some());
        assert!(pending_secret(&user(None, Some(&s), true))
            .unwrap()
            .is_none());
        assert!(pending_secret(&user(None, None, false)).unwrap().is_none());
        assert!(matches!(
            pending_secret(&user(None, Some("short"), false)),
            Err(OpError::Store(StoreError::Corrupt(_)))
        ));
    }

    #[test]
    fn the_authenticator_label_is_the_email_or_the_username() {
        assert_eq!(
            account_label(&user(Some("a@b.example"), None, false)),
            "a@b.example"
        );
        assert_eq!(account_label(&user(None, None, false)), "ana");
        assert_eq!(
            account_label(&user(Some("a:b@c.example"), None, false)),
            "ana"
        );
    }

    #[test]
    fn times_before_the_epoch_are_zero() {
        assert_eq!(unix(DateTime::from_timestamp(-5, 0).unwrap()), 0);
        assert_eq!(unix(DateTime::from_timestamp(90, 0).unwrap()), 90);
    }
}
