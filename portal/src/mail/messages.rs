//! The texts of the portal's emails: each builder takes the recipient and what the mail is about and
//! returns an [`Outgoing`] (subject and plain-text body). Every link stands on a line of its own, so mail
//! clients make it clickable whole and tests can pick it out.
//!
//! Names people chose (company, inviter, username, agent, plan) are put on one line first and their URLs
//! defanged (`https[:]//...`): a name must not add a link, or a line of its own, to the mail.

use chrono::{DateTime, NaiveDate, Utc};

use super::{one_line, Outgoing};

/// How many renewal reminders are sent for one renewal.
pub const RENEWAL_REMINDERS: u32 = 4;

const SIGNATURE: &str =
    "-- \nOutpost portal\nThis mail was sent automatically; replies are not read.\n";

/// A name someone chose, safe to show: one line, and no clickable URL (`://` becomes `[:]//`).
fn name(text: &str) -> String {
    one_line(text).replace("://", "[:]//")
}

/// "2025-03-01 14:00 UTC".
fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// "Saturday 1 March 2025".
fn day(d: NaiveDate) -> String {
    d.format("%A %-d %B %Y").to_string()
}

/// An invitation to join `company`'s team, from `inviter`.
pub fn invitation(
    to: &str,
    company: &str,
    inviter: &str,
    link: &str,
    expires_at: DateTime<Utc>,
) -> Outgoing {
    let company = name(company);
    let inviter = name(inviter);
    let link = one_line(link);
    Outgoing {
        to: to.to_owned(),
        subject: format!("{inviter} invited you to {company} on Outpost"),
        text: format!(
            "Hello,\n\
             \n\
             {inviter} invited you to join the team of {company} on the Outpost portal.\n\
             \n\
             To accept, open this link and choose your password:\n\
             \n\
             {link}\n\
             \n\
             The link works once and expires on {expires}.\n\
             \n\
             If you did not expect this invitation, ignore this mail: no account is made without you.\n\
             \n\
             {SIGNATURE}",
            expires = when(expires_at),
        ),
    }
}

/// A link to choose a new password.
pub fn password_reset(to: &str, link: &str, expires_at: DateTime<Utc>) -> Outgoing {
    let link = one_line(link);
    Outgoing {
        to: to.to_owned(),
        subject: "Reset your Outpost password".to_owned(),
        text: format!(
            "Hello,\n\
             \n\
             Someone asked to reset the password of the Outpost portal account with this email address.\n\
             \n\
             To choose a new password, open this link:\n\
             \n\
             {link}\n\
             \n\
             The link works once and expires on {expires}.\n\
             \n\
             If you did not ask for this, ignore this mail: your password stays as it is.\n\
             \n\
             {SIGNATURE}",
            expires = when(expires_at),
        ),
    }
}

/// A confirmation, sent to the new address, that account `username` is to use it from now on.
pub fn email_change(
    to_new_address: &str,
    username: &str,
    link: &str,
    expires_at: DateTime<Utc>,
) -> Outgoing {
    let username = name(username);
    let link = one_line(link);
    Outgoing {
        to: to_new_address.to_owned(),
        subject: "Confirm your new email address for Outpost".to_owned(),
        text: format!(
            "Hello,\n\
             \n\
             The Outpost portal account {username} asked to use this email address from now on.\n\
             \n\
             To confirm the change, open this link:\n\
             \n\
             {link}\n\
             \n\
             The link works once and expires on {expires}. Until then the account keeps its current address.\n\
             \n\
             If you did not ask for this, ignore this mail: nothing changes.\n\
             \n\
             {SIGNATURE}",
            expires = when(expires_at),
        ),
    }
}

/// Reminder `reminder_number` (1 to [`RENEWAL_REMINDERS`]; other values are clamped) that `agent_name`'s
/// subscription on `plan` renews on `renewal_date`, with the link to confirm it or ask for deactivation.
pub fn renewal_reminder(
    to: &str,
    agent_name: &str,
    renewal_date: NaiveDate,
    plan: &str,
    link: &str,
    reminder_number: u32,
) -> Outgoing {
    let agent_name = name(agent_name);
    let plan = name(plan);
    let link = one_line(link);
    let number = reminder_number.clamp(1, RENEWAL_REMINDERS);
    let date = day(renewal_date);
    let subject = if number == RENEWAL_REMINDERS {
        format!("Last reminder: {agent_name} renews on {date}")
    } else {
        format!("Reminder: {agent_name} renews on {date}")
    };
    let which = if number == RENEWAL_REMINDERS {
        format!("This is the last of {RENEWAL_REMINDERS} reminders.")
    } else {
        format!(
            "This is reminder {number} of {RENEWAL_REMINDERS}, one a week until the renewal date."
        )
    };
    Outgoing {
        to: to.to_owned(),
        subject,
        text: format!(
            "Hello,\n\
             \n\
             The {plan} subscription of the agent {agent_name} renews on {date}.\n\
             \n\
             Open this link to confirm the renewal, or to request the agent's deactivation instead:\n\
             \n\
             {link}\n\
             \n\
             {which}\n\
             \n\
             {SIGNATURE}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const LINK: &str = "https://portal.example.com:8443/invite/AbC123_-xyz";

    fn expires() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 14, 5, 0).unwrap()
    }

    /// The lines of `text` that hold a URL.
    fn link_lines(text: &str) -> Vec<&str> {
        text.lines().filter(|l| l.contains("://")).collect()
    }

    fn all() -> Vec<Outgoing> {
        let date = NaiveDate::from_ymd_opt(2025, 3, 1).unwrap();
        vec![
            invitation("a@example.com", "Café Ünïcode", "Zoë", LINK, expires()),
            password_reset("a@example.com", LINK, expires()),
            email_change("new@example.com", "zoe", LINK, expires()),
            renewal_reminder("a@example.com", "Front desk", date, "monthly", LINK, 1),
        ]
    }

    #[test]
    fn every_link_is_on_a_line_of_its_own() {
        for mail in all() {
            assert_eq!(link_lines(&mail.text), vec![LINK], "{}", mail.subject);
            assert!(!mail.subject.contains("://"));
        }
    }

    #[test]
    fn expiry_is_written_in_utc() {
        for mail in all().into_iter().take(3) {
            assert!(
                mail.text.contains("expires on 2025-03-01 14:05 UTC"),
                "{}",
                mail.text
            );
            assert!(mail.text.contains("works once"), "{}", mail.text);
        }
    }

    #[test]
    fn invitation_names_company_and_inviter() {
        let mail = invitation("a@example.com", "Café Ünïcode", "Zoë Ñ", LINK, expires());
        assert_eq!(mail.to, "a@example.com");
        assert_eq!(mail.subject, "Zoë Ñ invited you to Café Ünïcode on Outpost");
        assert!(mail
            .text
            .contains("Zoë Ñ invited you to join the team of Café Ünïcode"));
    }

    #[test]
    fn names_cannot_add_lines() {
        let mail = invitation(
            "a@example.com",
            "Evil\nhttps://phish.example/x\n",
            "Mallory\r\n",
            LINK,
            expires(),
        );
        assert_eq!(link_lines(&mail.text), vec![LINK], "{}", mail.text);
        assert!(
            mail.text.contains("Evil https[:]//phish.example/x"),
            "{}",
            mail.text
        );
        assert!(!mail.subject.contains('\n') && !mail.subject.contains("://"));
    }

    #[test]
    fn password_reset_says_to_ignore_if_not_asked() {
        let mail = password_reset("a@example.com", LINK, expires());
        assert!(mail.subject.contains("password"));
        assert!(mail
            .text
            .contains("If you did not ask for this, ignore this mail"));
    }

    #[test]
    fn email_change_goes_to_the_new_address() {
        let mail = email_change("new@example.com", "zoe", LINK, expires());
        assert_eq!(mail.to, "new@example.com");
        assert!(mail.text.contains("account zoe"));
        assert!(mail
            .text
            .contains("If you did not ask for this, ignore this mail"));
    }

    #[test]
    fn renewal_reminder_counts_and_says_what_to_do() {
        let date = NaiveDate::from_ymd_opt(2025, 3, 1).unwrap();
        let first = renewal_reminder("a@example.com", "Front desk", date, "monthly", LINK, 1);
        assert_eq!(
            first.subject,
            "Reminder: Front desk renews on Saturday 1 March 2025"
        );
        assert!(first
            .text
            .contains("monthly subscription of the agent Front desk"));
        assert!(first.text.contains("confirm the renewal"));
        assert!(first.text.contains("request the agent's deactivation"));
        assert!(first.text.contains("reminder 1 of 4"));

        let last = renewal_reminder("a@example.com", "Front desk", date, "monthly", LINK, 4);
        assert!(
            last.subject.starts_with("Last reminder:"),
            "{}",
            last.subject
        );
        assert!(last.text.contains("last of 4"));

        let clamped = renewal_reminder("a@example.com", "Front desk", date, "monthly", LINK, 9);
        assert_eq!(clamped, last);
        let zero = renewal_reminder("a@example.com", "Front desk", date, "monthly", LINK, 0);
        assert_eq!(zero, first);
    }
}
