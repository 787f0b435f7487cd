//! Owner accounts: invitation links, passwords, sessions and their CSRF tokens.
//!
//! - An operator setting an owner email makes a single-use invitation link (a random token, stored only
//!   hashed, valid [`INVITATION_LIFETIME`]). Accepting it sets the account's password (creating the account)
//!   and signs the owner in, ending the account's other sessions. A link stops working once used, once
//!   expired, or once the agent's owner email changes.
//! - Passwords: at least [`MIN_PASSWORD`] characters, hashed by [`crate::passwords`] off the runtime.
//!   A sign-in answers the same for an unknown email and a wrong password, and spends the same time.
//! - Sessions: a random token (the cookie), stored hashed, ending [`SESSION_LIFETIME`] after sign-in. Each
//!   session's CSRF token is derived from the session token ([`csrf_token`]), so it needs no storage and
//!   cannot be computed without the cookie.

use chrono::{DateTime, Utc};
use outpost_cloud_link::AgentId;
use tracing::info;

use super::owner::{normalize_email, OwnerError};
use super::session_tokens::{self, new_token, well_formed};
use super::{Actor, App};
use crate::passwords;
use crate::secrets;
use crate::store::history::{self, Line};
use crate::store::{owners, Conn, StoreError};

/// How long an invitation link works.
pub const INVITATION_LIFETIME: chrono::Duration = chrono::Duration::hours(72);
/// How long a session lasts after sign-in.
pub const SESSION_LIFETIME: chrono::Duration = chrono::Duration::days(7);
/// Shortest password accepted, in characters.
pub const MIN_PASSWORD: usize = 10;
/// Longest password accepted, in characters (bounds the hashing work).
pub const MAX_PASSWORD: usize = 256;

/// A signed-in owner; acts as `owner:<email>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub id: i64,
    pub email: String,
}

impl Owner {
    pub fn actor(&self) -> Actor {
        Actor::owner(&self.email)
    }
}

/// A fresh invitation: the token is shown once (in the link) and stored only hashed.
#[derive(Debug, Clone)]
pub struct NewInvitation {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

impl NewInvitation {
    /// The link's path on the portal: `/owner/invite/<token>`.
    pub fn path(&self) -> String {
        format!("/owner/invite/{}", self.token)
    }
}

/// A usable invitation, for the page that accepts it.
#[derive(Debug, Clone)]
pub struct InvitationInfo {
    pub agent: AgentId,
    pub email: String,
    pub site: String,
    pub expires_at: DateTime<Utc>,
}

/// A fresh session: the token goes into the cookie, and is stored only hashed.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub owner: Owner,
}

/// The purpose of the owners' CSRF tokens.
const CSRF_PURPOSE: &str = "outpost-owner-csrf";

/// The CSRF token of the session whose cookie is `session_token`: every state-changing form and owner API
/// call must carry it.
pub fn csrf_token(session_token: &str) -> String {
    session_tokens::csrf_token(CSRF_PURPOSE, session_token)
}

/// Whether `given` is the CSRF token of `session_token`, compared in constant time.
pub fn csrf_matches(session_token: &str, given: &str) -> bool {
    session_tokens::csrf_matches(CSRF_PURPOSE, session_token, given)
}

/// Checks a new password and its confirmation.
pub fn check_password(password: &str, confirm: &str) -> Result<(), OwnerError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        return Err(OwnerError::Password(format!(
            "the password has {n} characters; choose one with at least {MIN_PASSWORD}"
        )));
    }
    if n > MAX_PASSWORD {
        return Err(OwnerError::Password(format!(
            "the password has more than {MAX_PASSWORD} characters; choose a shorter one"
        )));
    }
    if password != confirm {
        return Err(OwnerError::Password(
            "the two passwords differ; type the same password in both fields".into(),
        ));
    }
    Ok(())
}

impl App {
    /// An owner's password hashed like users' (Argon2id at [`App::password_cost`]).
    async fn hash_password(&self, password: String) -> Result<String, OwnerError> {
        let cost = self.password_cost();
        tokio::task::spawn_blocking(move || passwords::hash_argon2(&password, cost))
            .await
            .map_err(|e| OwnerError::Internal(format!("password hashing task failed: {e}")))?
            .map_err(|e| OwnerError::Internal(format!("password hashing failed: {e}")))
    }

    /// Makes an invitation link for `email` to `agent` (inside the caller's transaction).
    pub(crate) async fn invite(
        &self,
        conn: &mut Conn,
        agent: &AgentId,
        email: &str,
        now: DateTime<Utc>,
    ) -> Result<NewInvitation, StoreError> {
        let token = new_token();
        let expires_at = now + INVITATION_LIFETIME;
        owners::insert_invitation(conn, &secrets::hash(&token), email, agent, now, expires_at)
            .await?;
        Ok(NewInvitation { token, expires_at })
    }

    /// The invitation behind `token`, if it can still be used.
    pub async fn invitation(&self, token: &str) -> Result<InvitationInfo, OwnerError> {
        if !well_formed(token) {
            return Err(OwnerError::UnknownInvitation);
        }
        let mut conn = self.store().conn().await?;
        let inv = owners::invitation(&mut conn, &secrets::hash(token))
            .await?
            .ok_or(OwnerError::UnknownInvitation)?;
        if inv.used_at.is_some() {
            return Err(OwnerError::InvitationUsed);
        }
        if inv.expires_at <= self.now() {
            return Err(OwnerError::InvitationExpired);
        }
        let agent: AgentId = inv
            .agent_id
            .parse()
            .map_err(|_| OwnerError::UnknownInvitation)?;
        let owner = owners::get_owner(&mut conn, &agent).await?;
        if owner.is_none_or(|o| o.email != inv.email) {
            return Err(OwnerError::UnknownInvitation);
        }
        let site = crate::store::agents::get(&mut conn, &agent)
            .await?
            .ok_or(OwnerError::UnknownInvitation)?;
        Ok(InvitationInfo {
            agent,
            email: inv.email,
            site: site.name,
            expires_at: inv.expires_at,
        })
    }

    /// Uses the invitation: sets the account's password (creating it) and starts a session.
    pub async fn accept_invitation(
        &self,
        token: &str,
        password: &str,
        confirm: &str,
    ) -> Result<NewSession, OwnerError> {
        let info = self.invitation(token).await?;
        check_password(password, confirm)?;
        let hash = self.hash_password(password.to_owned()).await?;
        let now = self.now();
        let token_hash = secrets::hash(token);
        let agent = &info.agent;
        let mut tx = self.store().begin().await?;
        if !owners::use_invitation(&mut tx, &token_hash, now).await? {
            return Err(OwnerError::InvitationUsed);
        }
        let owner_id = owners::set_account_password(&mut tx, &info.email, &hash, now).await?;
        // A new password (a second invitation is how a forgotten one is replaced) ends the old sessions.
        let ended = owners::delete_sessions_of(&mut tx, owner_id).await?;
        let session = self
            .start_session(&mut tx, owner_id, &info.email, now)
            .await?;
        history::append(
            &mut tx,
            Line {
                agent,
                agent_name: &info.site,
                action: "owner_joined",
                actor: session.owner.actor().as_str(),
                details: "password set with an invitation link",
            },
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(agent = %agent, owner = owner_id, sessions_ended = ended, "owner accepted an invitation");
        Ok(session)
    }

    async fn start_session(
        &self,
        conn: &mut Conn,
        owner_id: i64,
        email: &str,
        now: DateTime<Utc>,
    ) -> Result<NewSession, StoreError> {
        let token = new_token();
        let expires_at = now + SESSION_LIFETIME;
        owners::delete_expired_sessions(conn, now).await?;
        owners::insert_session(conn, &secrets::hash(&token), owner_id, now, expires_at).await?;
        Ok(NewSession {
            token,
            expires_at,
            owner: Owner {
                id: owner_id,
                email: email.to_owned(),
            },
        })
    }

    /// Signs an owner in. Unknown email and wrong password give the same error after the same work.
    pub async fn owner_sign_in(
        &self,
        email: &str,
        password: &str,
    ) -> Result<NewSession, OwnerError> {
        let account = match normalize_email(email) {
            Ok(email) => {
                let mut conn = self.store().conn().await?;
                owners::account_by_email(&mut conn, &email).await?
            }
            Err(_) => None,
        };
        let stored = account.as_ref().map(|a| a.password_hash.clone());
        let cost = self.password_cost();
        let matches = passwords::check_password(password, stored, cost)
            .await
            .map_err(|e| OwnerError::Internal(format!("password check failed: {e}")))?;
        let Some(account) = account.filter(|_| matches) else {
            info!("owner sign-in refused: unknown email or wrong password");
            return Err(OwnerError::BadSignIn);
        };
        let now = self.now();
        let mut conn = self.store().conn().await?;
        if passwords::needs_rehash(&account.password_hash, cost) {
            // A PBKDF2 hash from before owners used Argon2id: replace it now that the password is known.
            let hash = self.hash_password(password.to_owned()).await?;
            owners::set_account_password(&mut conn, &account.email, &hash, now).await?;
            info!(owner = account.id, "owner password rehashed with Argon2id");
        }
        let session = self
            .start_session(&mut conn, account.id, &account.email, now)
            .await?;
        info!(owner = account.id, "owner signed in");
        Ok(session)
    }

    /// The owner of a live session, `None` for a missing, unknown or ended one.
    pub async fn owner_session(&self, token: &str) -> Result<Option<Owner>, OwnerError> {
        if !well_formed(token) {
            return Ok(None);
        }
        let mut conn = self.store().conn().await?;
        let account = owners::session_account(&mut conn, &secrets::hash(token), self.now()).await?;
        Ok(account.map(|a| Owner {
            id: a.id,
            email: a.email,
        }))
    }

    /// Ends the session.
    pub async fn owner_sign_out(&self, token: &str) -> Result<(), OwnerError> {
        let mut conn = self.store().conn().await?;
        owners::delete_session(&mut conn, &secrets::hash(token)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let s1 = new_token();
        let s2 = new_token();
        let t1 = csrf_token(&s1);
        assert!(csrf_matches(&s1, &t1));
        assert!(!csrf_matches(&s2, &t1));
        assert!(!csrf_matches(&s1, ""));
        assert_ne!(
            t1,
            secrets::hash(&s1),
            "the CSRF token is not the stored session hash"
        );
    }

    #[test]
    fn passwords_need_ten_characters_and_a_matching_confirmation() {
        assert!(check_password("0123456789", "0123456789").is_ok());
        let short = check_password("012345678", "012345678").unwrap_err();
        assert!(short.to_string().contains("at least 10"), "{short}");
        let differ = check_password("0123456789", "0123456780").unwrap_err();
        assert!(differ.to_string().contains("differ"), "{differ}");
        let long = "x".repeat(MAX_PASSWORD + 1);
        assert!(check_password(&long, &long).is_err());
    }
}
