//! Operator accounts: the technicians who sign in to the portal's web pages (the API keeps its bearer
//! tokens). Accounts are made on the portal host (`outpost-portal operator add`); a sign-in answers the
//! same for an unknown email and a wrong password, after the same work; sessions are random tokens stored
//! hashed, ending [`SESSION_LIFETIME`] after sign-in, each with a CSRF token derived from it.

use tracing::info;

use super::owner::normalize_email;
use super::owner_auth::{MAX_PASSWORD, MIN_PASSWORD};
use super::session_tokens::{self, new_token, well_formed};
use super::{Actor, App};
use crate::passwords;
use crate::secrets;
use crate::store::{operators, Store, StoreError};

/// How long a session lasts after sign-in.
pub const SESSION_LIFETIME: chrono::Duration = chrono::Duration::hours(12);
/// Longest display name, in characters.
pub const MAX_NAME: usize = 100;
const CSRF_PURPOSE: &str = "outpost-operator-csrf";

/// What the operator sign-in and account management refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("the email or password is wrong; check both and try again")]
    BadSignIn,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A signed-in technician; acts as `operator:<email>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub id: i64,
    pub email: String,
    pub name: String,
}

impl Operator {
    pub fn actor(&self) -> Actor {
        Actor::operator(&self.email)
    }
}

/// A fresh session: the token goes into the cookie and is stored only hashed.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token: String,
    pub operator: Operator,
}

/// The CSRF token every state-changing form of the session `session_token` carries.
pub fn csrf_token(session_token: &str) -> String {
    session_tokens::csrf_token(CSRF_PURPOSE, session_token)
}

/// Whether `given` is the CSRF token of `session_token`.
pub fn csrf_matches(session_token: &str, given: &str) -> bool {
    session_tokens::csrf_matches(CSRF_PURPOSE, session_token, given)
}

/// Checks an account's fields: a usable email, a name of 1..=[`MAX_NAME`] characters without control
/// characters, a password of [`MIN_PASSWORD`]..=[`MAX_PASSWORD`] characters.
pub fn check_account(
    email: &str,
    name: &str,
    password: &str,
) -> Result<(String, String), OperatorError> {
    let email = normalize_email(email).map_err(|e| OperatorError::Invalid(e.to_string()))?;
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(OperatorError::Invalid(format!(
            "the name must have 1 to {MAX_NAME} characters and no control characters"
        )));
    }
    let n = password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
        return Err(OperatorError::Invalid(format!(
            "the password has {n} characters; choose one with {MIN_PASSWORD} to {MAX_PASSWORD}"
        )));
    }
    Ok((email, name.to_owned()))
}

/// Creates an operator account, or sets the name and password of an existing one (ending its sessions).
/// Returns whether the account is new. Used by `outpost-portal operator add` and tests.
pub async fn add_operator(
    store: &Store,
    email: &str,
    name: &str,
    password: &str,
    iterations: u32,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, OperatorError> {
    let (email, name) = check_account(email, name, password)?;
    let password = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || passwords::hash(&password, iterations))
        .await
        .map_err(|e| OperatorError::Internal(format!("password hashing task failed: {e}")))?;
    let mut tx = store.begin().await?;
    let (id, created) = operators::upsert(&mut tx, &email, &name, &hash, now).await?;
    if !created {
        operators::delete_sessions_of(&mut tx, id).await?;
    }
    tx.commit().await.map_err(StoreError::from)?;
    info!(operator = id, created, "operator account saved");
    Ok(created)
}

impl App {
    /// Signs a technician in. Unknown email and wrong password give the same error after the same work.
    pub async fn operator_sign_in(
        &self,
        email: &str,
        password: &str,
    ) -> Result<NewSession, OperatorError> {
        let account = match normalize_email(email) {
            Ok(email) => {
                let mut conn = self.store().conn().await?;
                operators::by_email(&mut conn, &email).await?
            }
            Err(_) => None,
        };
        let stored = account.as_ref().map(|a| a.password_hash.clone());
        let matches = passwords::check_sign_in(password, stored, self.password_iterations())
            .await
            .map_err(|e| OperatorError::Internal(format!("password check task failed: {e}")))?;
        let Some(account) = account.filter(|_| matches) else {
            info!("operator sign-in refused: unknown email or wrong password");
            return Err(OperatorError::BadSignIn);
        };
        let now = self.now();
        let token = new_token();
        let mut conn = self.store().conn().await?;
        operators::delete_expired_sessions(&mut conn, now).await?;
        operators::insert_session(
            &mut conn,
            &secrets::hash(&token),
            account.id,
            now,
            now + SESSION_LIFETIME,
        )
        .await?;
        info!(operator = account.id, "operator signed in");
        Ok(NewSession {
            token,
            operator: Operator {
                id: account.id,
                email: account.email,
                name: account.name,
            },
        })
    }

    /// The technician of a live session, `None` for a missing, unknown or ended one.
    pub async fn operator_session(&self, token: &str) -> Result<Option<Operator>, OperatorError> {
        if !well_formed(token) {
            return Ok(None);
        }
        let mut conn = self.store().conn().await?;
        let account =
            operators::session_account(&mut conn, &secrets::hash(token), self.now()).await?;
        Ok(account.map(|a| Operator {
            id: a.id,
            email: a.email,
            name: a.name,
        }))
    }

    /// Ends the session.
    pub async fn operator_sign_out(&self, token: &str) -> Result<(), OperatorError> {
        let mut conn = self.store().conn().await?;
        operators::delete_session(&mut conn, &secrets::hash(token)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_checked() {
        let (email, name) = check_account(" Tech@Example.COM ", " Ana ", "0123456789").unwrap();
        assert_eq!((email.as_str(), name.as_str()), ("tech@example.com", "Ana"));
        for (email, name, password, needle) in [
            ("nope", "Ana", "0123456789", "no @"),
            ("a@example.com", "", "0123456789", "name"),
            ("a@example.com", "A\u{7}", "0123456789", "control"),
            ("a@example.com", "Ana", "short", "5 characters"),
        ] {
            let e = check_account(email, name, password)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{email} {name}: {e}");
        }
    }

    #[test]
    fn operator_csrf_tokens_differ_from_owner_ones() {
        let s = new_token();
        assert!(csrf_matches(&s, &csrf_token(&s)));
        assert!(!csrf_matches(&s, &super::super::owner_auth::csrf_token(&s)));
    }
}
