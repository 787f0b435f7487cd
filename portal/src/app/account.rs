//! A person's own account: setting a password from an invitation or reset link, "forgot password" (the
//! same answer whether or not the address is known), changing the password (the current one first),
//! preferences (name, 12/24-hour times, time zone), and changing the email address (confirmed from a link
//! mailed to the new one). Every change is written to the account history with the address it came from.

use chrono::{DateTime, Utc};
use tracing::{debug, info, warn};

use super::owner::normalize_email;
use super::session_tokens::new_token;
use super::users::{link_url, EMAIL_LIFETIME, MAX_NAME, RESET_LIFETIME};
use super::{App, OpError};
use crate::mail::messages;
use crate::passwords::{self, Strength};
use crate::secrets;
use crate::store::history::{self, AccountLine};
use crate::store::two_factor as store;
use crate::store::users::{self, LinkPurpose, UserRow};
use crate::store::StoreError;

/// The time formats a person may choose.
pub const TIME_FORMATS: [&str; 2] = ["24h", "12h"];

/// A time zone as the account keeps it: `UTC`, a fixed offset `+HH:MM`/`-HH:MM` (at most 14 hours) or an
/// IANA name in its canonical spelling ([`crate::time_zone::Zone`]).
pub fn validate_time_zone(raw: &str) -> Result<String, OpError> {
    crate::time_zone::Zone::parse(raw)
        .map(|zone| zone.stored())
        .map_err(|e| OpError::Invalid {
            field: "time_zone",
            message: e.to_string(),
        })
}

/// A time format the account may keep.
pub fn validate_time_format(raw: &str) -> Result<&'static str, OpError> {
    TIME_FORMATS
        .iter()
        .copied()
        .find(|f| *f == raw.trim())
        .ok_or_else(|| OpError::Invalid {
            field: "time_format",
            message: "choose 24h or 12h".into(),
        })
}

fn validate_display_name(raw: &str) -> Result<String, OpError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(OpError::Invalid {
            field: "name",
            message: format!(
                "the name must have 1 to {MAX_NAME} characters and no control characters"
            ),
        });
    }
    Ok(name.to_owned())
}

fn actor(user: &UserRow) -> String {
    format!("user:{}", user.username)
}

impl App {
    /// The user a password link (invitation or reset) belongs to, and which kind it is.
    pub async fn password_link(&self, token: &str) -> Result<(UserRow, LinkPurpose), OpError> {
        match self.check_link(token, LinkPurpose::Invite).await {
            Ok((user, _)) => Ok((user, LinkPurpose::Invite)),
            Err(OpError::LinkUnknown) => {
                let (user, _) = self.check_link(token, LinkPurpose::Reset).await?;
                Ok((user, LinkPurpose::Reset))
            }
            Err(e) => Err(e),
        }
    }

    /// What a password of `user` must not be made of: their email, username and company name.
    async fn password_inputs(&self, user: &UserRow) -> Result<Vec<String>, OpError> {
        let mut inputs = vec![user.username.clone(), user.name.clone()];
        inputs.extend(user.email.clone());
        if let Some(company) = user.company_id {
            let mut conn = self.store().conn().await?;
            inputs.extend(users::company(&mut conn, company).await?.map(|c| c.name));
        }
        Ok(inputs)
    }

    /// Checks `password` against the policy for a new password of `user`.
    pub async fn check_password_for(
        &self,
        user: &UserRow,
        password: &str,
    ) -> Result<Strength, OpError> {
        let inputs = self.password_inputs(user).await?;
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        Ok(passwords::check_new_password(password, &inputs)?)
    }

    async fn hash_user_password(&self, password: &str) -> Result<String, OpError> {
        let password = password.to_owned();
        let cost = self.password_cost();
        tokio::task::spawn_blocking(move || passwords::hash_argon2(&password, cost))
            .await
            .map_err(|e| OpError::Internal(format!("password hashing task failed: {e}")))?
            .map_err(|e| OpError::Internal(format!("password hashing failed: {e}")))
    }

    /// Sets the password of the link's user and uses the link up (a second use, also a racing one, is
    /// refused); every session of the user ends. A weak password leaves the link as it was.
    pub async fn set_password_from_link(
        &self,
        token: &str,
        password: &str,
        address: Option<&str>,
    ) -> Result<UserRow, OpError> {
        let (user, purpose) = self.password_link(token).await?;
        self.check_password_for(&user, password).await?;
        let hash = self.hash_user_password(password).await?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        if !users::take_link(&mut tx, &secrets::hash(token)).await? {
            return Err(OpError::LinkUnknown);
        }
        users::set_password(&mut tx, user.id, &hash, now).await?;
        let ended = users::delete_sessions_of(&mut tx, user.id).await?;
        history::append_account(
            &mut tx,
            AccountLine {
                company: user.company_id,
                action: "password-set",
                actor: &actor(&user),
                details: &format!(
                    "from {} link; {ended} session(s) ended",
                    match purpose {
                        LinkPurpose::Invite => "an invitation",
                        _ => "a password reset",
                    }
                ),
                address,
            },
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(
            user = user.id,
            purpose = purpose.as_str(),
            "password set from a link"
        );
        Ok(user)
    }

    /// "Forgot password": mails a reset link to the account with `email`, if there is one. Answers the
    /// same whether or not there is (the mail goes out in the background, so the time does not tell
    /// either); without a mailer nothing can be sent, which is logged.
    pub async fn request_password_reset(
        &self,
        email: &str,
        address: Option<&str>,
    ) -> Result<(), OpError> {
        let Ok(email) = normalize_email(email) else {
            debug!("password reset asked for something that is not an email address");
            return Ok(());
        };
        let user = {
            let mut conn = self.store().conn().await?;
            users::by_email(&mut conn, &email).await?
        };
        let Some(user) = user else {
            debug!("password reset asked for an unknown address");
            return Ok(());
        };
        let now = self.now();
        let token = new_token();
        let expires_at = now + RESET_LIFETIME;
        let mut tx = self.store().begin().await?;
        users::insert_link(
            &mut tx,
            &secrets::hash(&token),
            user.id,
            LinkPurpose::Reset,
            None,
            now,
            expires_at,
        )
        .await?;
        history::append_account(
            &mut tx,
            AccountLine {
                company: user.company_id,
                action: "password-reset-asked",
                actor: "unknown (forgot password page)",
                details: &format!("reset link for {}", user.username),
                address,
            },
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        if self.mailer().is_none() {
            warn!(
                user = user.id,
                "password reset asked, but no mail server is configured ([smtp]), so the link could not be sent; an admin can send a new invitation instead"
            );
            return Ok(());
        }
        let mail = messages::password_reset(
            &email,
            &link_url(&self.settings().public_url, LinkPurpose::Reset, &token),
            expires_at,
        );
        let app = self.clone();
        let user_id = user.id;
        tokio::spawn(async move {
            if let Some(mailer) = app.mailer() {
                if let Err(e) = mailer.send(&mail).await {
                    warn!(user = user_id, error = %e, "the password reset mail could not be sent");
                }
            }
        });
        Ok(())
    }

    /// Changes the user's password after checking the current one; ends every other session of the user
    /// (all but `keep_session`, the token of the session asking). Returns how many ended.
    pub async fn change_password(
        &self,
        user: &UserRow,
        current: &str,
        new: &str,
        keep_session: &str,
        address: Option<&str>,
    ) -> Result<u64, OpError> {
        if !self.password_matches(user, current).await? {
            return Err(OpError::Invalid {
                field: "current_password",
                message: "the current password is wrong; type it again".into(),
            });
        }
        self.check_password_for(user, new).await?;
        let hash = self.hash_user_password(new).await?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        users::set_password(&mut tx, user.id, &hash, now).await?;
        let ended =
            store::delete_other_sessions(&mut tx, user.id, &secrets::hash(keep_session)).await?;
        history::append_account(
            &mut tx,
            AccountLine {
                company: user.company_id,
                action: "password-changed",
                actor: &actor(user),
                details: &format!("{ended} other session(s) ended"),
                address,
            },
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(user = user.id, ended, "password changed");
        Ok(ended)
    }

    /// Saves the user's name, time format and time zone.
    pub async fn set_preferences(
        &self,
        user: &UserRow,
        name: &str,
        time_format: &str,
        time_zone: &str,
        address: Option<&str>,
    ) -> Result<(), OpError> {
        let name = validate_display_name(name)?;
        let time_format = validate_time_format(time_format)?;
        let time_zone = validate_time_zone(time_zone)?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        users::set_preferences(&mut tx, user.id, &name, time_format, &time_zone, now).await?;
        history::append_account(
            &mut tx,
            AccountLine {
                company: user.company_id,
                action: "preferences-changed",
                actor: &actor(user),
                details: &format!("time format {time_format}, time zone {time_zone}"),
                address,
            },
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// Mails a link to `new_email` that makes it the user's address once opened; until then the address
    /// stays as it is. Needs a mail server: showing the link instead would not prove the address.
    /// Returns when the link expires.
    pub async fn request_email_change(
        &self,
        user: &UserRow,
        new_email: &str,
        address: Option<&str>,
    ) -> Result<DateTime<Utc>, OpError> {
        let email = normalize_email(new_email).map_err(|e| OpError::Invalid {
            field: "email",
            message: e.to_string(),
        })?;
        if user.email.as_deref() == Some(email.as_str()) {
            return Err(OpError::Invalid {
                field: "email",
                message: "this is already your address; type the new one".into(),
            });
        }
        let Some(mailer) = self.mailer() else {
            return Err(OpError::Mail(
                "this portal has no mail server configured, so a new address cannot be confirmed; \
                 ask the portal's operator to set up [smtp]"
                    .into(),
            ));
        };
        let now = self.now();
        let token = new_token();
        let expires_at = now + EMAIL_LIFETIME;
        let mut tx = self.store().begin().await?;
        if users::by_email(&mut tx, &email).await?.is_some() {
            return Err(OpError::Conflict(
                "another account uses this address; choose another one".into(),
            ));
        }
        users::insert_link(
            &mut tx,
            &secrets::hash(&token),
            user.id,
            LinkPurpose::Email,
            Some(&email),
            now,
            expires_at,
        )
        .await?;
        history::append_account(
            &mut tx,
            AccountLine {
                company: user.company_id,
                action: "email-change-asked",
                actor: &actor(user),
                details: "confirmation link mailed to the new address",
                address,
            },
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        let mail = messages::email_change(
            &email,
            &user.username,
            &link_url(&self.settings().public_url, LinkPurpose::Email, &token),
            expires_at,
        );
        mailer
            .send(&mail)
            .await
            .map_err(|e| OpError::Mail(e.to_string()))?;
        info!(user = user.id, "email change link sent");
        Ok(expires_at)
    }

    /// The address an email-change link would set, and for whom.
    pub async fn email_link(&self, token: &str) -> Result<(UserRow, String), OpError> {
        let (user, link) = self.check_link(token, LinkPurpose::Email).await?;
        let email = link.new_email.ok_or(OpError::LinkUnknown)?;
        Ok((user, email))
    }

    /// Makes the link's new address the user's (the link works once).
    pub async fn confirm_email_change(
        &self,
        token: &str,
        address: Option<&str>,
    ) -> Result<(UserRow, String), OpError> {
        let (user, email) = self.email_link(token).await?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        if !users::take_link(&mut tx, &secrets::hash(token)).await? {
            return Err(OpError::LinkUnknown);
        }
        if users::by_email(&mut tx, &email).await?.is_some() {
            return Err(OpError::Conflict(
                "another account took this address in the meantime; choose another one".into(),
            ));
        }
        users::set_email(&mut tx, user.id, &email, now).await?;
        history::append_account(
            &mut tx,
            AccountLine {
                company: user.company_id,
                action: "email-changed",
                actor: &actor(&user),
                details: "confirmed from the link mailed to the new address",
                address,
            },
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        info!(user = user.id, "email address changed");
        Ok((user, email))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_time_zone_is_refused_naming_the_field() {
        assert_eq!(validate_time_zone(" europe/rome ").unwrap(), "Europe/Rome");
        assert_eq!(validate_time_zone("+02:00").unwrap(), "+02:00");
        match validate_time_zone("Mars/Olympus") {
            Err(OpError::Invalid {
                field: "time_zone",
                message,
            }) => assert!(message.contains("Mars/Olympus"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn time_formats_and_names_are_checked() {
        assert_eq!(validate_time_format("12h").unwrap(), "12h");
        assert_eq!(validate_time_format("24h").unwrap(), "24h");
        assert!(validate_time_format("13h").is_err());
        assert_eq!(validate_display_name("  Ana B ").unwrap(), "Ana B");
        assert!(validate_display_name("").is_err());
        assert!(validate_display_name("a\nb").is_err());
        assert!(validate_display_name(&"x".repeat(MAX_NAME + 1)).is_err());
    }
}
