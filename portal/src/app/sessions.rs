//! Users' browser sessions: password sign-in (same answer and the same work for an unknown user and a
//! wrong password; legacy hashes rehashed to Argon2id on success), the step a session is at (waiting for
//! a two-factor code, or for the two-factor setup the company requires), sessions as [`Caller`]s, and
//! signing out of one or every session. Every sign-in and failed sign-in is written to the history with
//! the address it came from.

use chrono::{DateTime, Duration, Utc};
use tracing::{info, warn};

use super::owner::normalize_email;
use super::session_tokens::{self, new_token, well_formed};
use super::{App, OpError};
use crate::access::{Caller, Via};
use crate::passwords;
use crate::secrets;
use crate::store::history::{self, AccountLine};
use crate::store::users::{self, SessionRow, UserRow};
use crate::store::StoreError;

/// How long a session lasts after sign-in.
pub const SESSION_LIFETIME: Duration = Duration::hours(12);
/// How long a session may wait for its second factor.
pub const SECOND_FACTOR_WINDOW: Duration = Duration::minutes(10);
const CSRF_PURPOSE: &str = "outpost-user-csrf";

/// The CSRF token every state-changing form of the session `session_token` carries.
pub fn csrf_token(session_token: &str) -> String {
    session_tokens::csrf_token(CSRF_PURPOSE, session_token)
}

/// Whether `given` is the CSRF token of `session_token`.
pub fn csrf_matches(session_token: &str, given: &str) -> bool {
    session_tokens::csrf_matches(CSRF_PURPOSE, session_token, given)
}

/// What a session still has to do before it may do anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// Nothing: signed in.
    Nothing,
    /// Type a two-factor code (or a recovery code).
    Code,
    /// The company requires two-factor sign-in and the user has not set it up: set it up now.
    Setup,
}

/// A session as the pages see it.
#[derive(Debug, Clone)]
pub struct Session {
    pub row: SessionRow,
    pub user: UserRow,
    pub pending: Pending,
}

/// Where the browser of a session stands.
pub fn pending_of(user: &UserRow, second_factor_done: bool) -> Pending {
    if second_factor_done {
        Pending::Nothing
    } else if user.has_2fa() {
        Pending::Code
    } else if user.require_2fa {
        Pending::Setup
    } else {
        Pending::Nothing
    }
}

/// Who is signing in, for the history and the sessions list.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub address: Option<String>,
    pub browser: String,
}

impl App {
    /// Signs a user in with their email (or username) and password. `trusted` says the browser showed a
    /// trusted-device cookie of this user that the store still knows: such a sign-in skips the code.
    /// Returns the session token (for the cookie) and what the session must do next.
    pub async fn sign_in(
        &self,
        login: &str,
        password: &str,
        client: &Client,
        trusted_device_of: Option<i64>,
    ) -> Result<(String, Session), OpError> {
        let user = {
            let mut conn = self.store().conn().await?;
            match normalize_email(login) {
                Ok(email) => users::by_email(&mut conn, &email).await?,
                Err(_) => None,
            }
        };
        let stored = user.as_ref().and_then(|u| u.password_hash.clone());
        let cost = self.password_cost();
        let matches = passwords::check_password(password, stored.clone(), cost)
            .await
            .map_err(|e| OpError::Internal(format!("password check failed: {e}")))?;
        let now = self.now();
        let Some(user) = user.clone().filter(|_| matches) else {
            // The person sees the same answer either way; the history of a known user's company records
            // the attempt on their account.
            let (company, actor) = match &user {
                Some(u) => (u.company_id, format!("user:{}", u.username)),
                None => (None, "unknown".to_owned()),
            };
            let mut conn = self.store().conn().await?;
            history::append_account(
                &mut conn,
                AccountLine {
                    company,
                    action: "sign-in-failed",
                    actor: &actor,
                    details: "wrong password",
                    address: client.address.as_deref(),
                },
                now,
            )
            .await?;
            info!("sign-in refused: unknown email or wrong password");
            return Err(OpError::BadSignIn);
        };
        if let Some(stored) = stored.filter(|s| passwords::needs_rehash(s, cost)) {
            let password = password.to_owned();
            match tokio::task::spawn_blocking(move || passwords::hash_argon2(&password, cost)).await
            {
                Ok(Ok(hash)) => {
                    let mut conn = self.store().conn().await?;
                    users::set_password(&mut conn, user.id, &hash, now).await?;
                    info!(
                        user = user.id,
                        "password rehashed with the current Argon2id cost"
                    );
                }
                other => {
                    warn!(user = user.id, stored_scheme = %stored.split('$').next().unwrap_or(""), "could not rehash a password: {other:?}")
                }
            }
        }
        let trusted = trusted_device_of == Some(user.id);
        let pending = pending_of(&user, trusted);
        let token = new_token();
        let row = SessionRow {
            token_hash: secrets::hash(&token),
            user_id: user.id,
            second_factor: pending == Pending::Nothing,
            browser: client.browser.clone(),
            address: client.address.clone(),
            created_at: now,
            last_seen: now,
            expires_at: now
                + if pending == Pending::Nothing {
                    SESSION_LIFETIME
                } else {
                    SECOND_FACTOR_WINDOW
                },
        };
        let mut tx = self.store().begin().await?;
        users::delete_expired(&mut tx, now).await?;
        users::insert_session(&mut tx, &row).await?;
        let details = match pending {
            Pending::Nothing if trusted => "password, trusted device",
            Pending::Nothing => "password",
            Pending::Code => "password; waiting for the two-factor code",
            Pending::Setup => "password; two-factor setup required",
        };
        history::append_account(
            &mut tx,
            AccountLine {
                company: user.company_id,
                action: "sign-in",
                actor: &format!("user:{}", user.username),
                details,
                address: client.address.as_deref(),
            },
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(user = user.id, ?pending, "user signed in");
        Ok((token, Session { row, user, pending }))
    }

    /// The live session of `token`, whatever step it is at.
    pub async fn session(&self, token: &str) -> Result<Option<Session>, OpError> {
        if !well_formed(token) {
            return Ok(None);
        }
        let mut conn = self.store().conn().await?;
        let Some(row) = users::use_session(&mut conn, &secrets::hash(token), self.now()).await?
        else {
            return Ok(None);
        };
        let Some(user) = users::by_id(&mut conn, row.user_id).await? else {
            return Ok(None);
        };
        let pending = pending_of(&user, row.second_factor);
        Ok(Some(Session { row, user, pending }))
    }

    /// The caller of a session that has passed every step.
    pub async fn session_caller(&self, session: &Session) -> Result<Caller, OpError> {
        let mut conn = self.store().conn().await?;
        self.caller_for(&mut conn, session.user.clone(), Via::Session)
            .await
    }

    /// Marks the session as through its second factor (or its forced setup), with a full lifetime.
    pub async fn complete_session(&self, token: &str) -> Result<(), OpError> {
        let mut conn = self.store().conn().await?;
        users::complete_session(&mut conn, &secrets::hash(token)).await?;
        sqlx::query("UPDATE user_sessions SET expires_at = ? WHERE token_hash = ?")
            .bind(crate::store::to_ms(self.now() + SESSION_LIFETIME))
            .bind(secrets::hash(token))
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from)?;
        Ok(())
    }

    /// Ends the session.
    pub async fn sign_out(&self, token: &str) -> Result<(), OpError> {
        let mut conn = self.store().conn().await?;
        users::delete_session(&mut conn, &secrets::hash(token)).await?;
        Ok(())
    }

    /// Ends every session of `user` (the user themself, or an admin forcing them out); returns how many.
    pub async fn sign_out_everywhere(
        &self,
        actor: &Caller,
        user: &UserRow,
        address: Option<&str>,
    ) -> Result<u64, OpError> {
        let mut tx = self.store().begin().await?;
        let n = users::delete_sessions_of(&mut tx, user.id).await?;
        history::append_account(
            &mut tx,
            AccountLine {
                company: user.company_id,
                action: "signed-out-everywhere",
                actor: &actor.actor_name(),
                details: &format!("{}: {n} session(s) ended", user.username),
                address,
            },
            self.now(),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(
            user = user.id,
            by = actor.user_id,
            sessions = n,
            "sessions ended"
        );
        Ok(n)
    }

    /// The user's open sessions.
    pub async fn sessions_of(&self, user: i64) -> Result<Vec<SessionRow>, OpError> {
        let mut conn = self.store().conn().await?;
        Ok(users::sessions_of(&mut conn, user, self.now()).await?)
    }

    /// When the session started (for "signed in since").
    pub fn session_age(&self, session: &Session) -> DateTime<Utc> {
        session.row.created_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Role;

    fn user(totp: bool, require: bool) -> UserRow {
        UserRow {
            id: 1,
            company_id: Some(1),
            username: "ana".into(),
            email: Some("ana@example.com".into()),
            name: "Ana".into(),
            role: Role::GroupAdmin,
            password_hash: None,
            time_format: "24h".into(),
            time_zone: "UTC".into(),
            require_2fa: require,
            totp_secret: totp.then(|| "JBSWY3DPEHPK3PXP".into()),
            totp_last_step: None,
            totp_enabled_at: totp.then(Utc::now),
            created_at: Utc::now(),
        }
    }

    #[test]
    fn a_session_waits_for_the_code_or_the_forced_setup() {
        assert_eq!(pending_of(&user(false, false), false), Pending::Nothing);
        assert_eq!(pending_of(&user(true, false), false), Pending::Code);
        assert_eq!(pending_of(&user(true, true), false), Pending::Code);
        assert_eq!(pending_of(&user(false, true), false), Pending::Setup);
        assert_eq!(pending_of(&user(true, true), true), Pending::Nothing);
        assert_eq!(pending_of(&user(false, true), true), Pending::Nothing);
    }

    #[test]
    fn user_csrf_tokens_differ_from_owner_ones() {
        let s = new_token();
        assert!(csrf_matches(&s, &csrf_token(&s)));
        assert!(!csrf_matches(&s, &super::super::owner_auth::csrf_token(&s)));
    }
}
