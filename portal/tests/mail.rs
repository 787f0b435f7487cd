//! The portal's mails through a real SMTP server (aiosmtpd on loopback): each kind is sent by the
//! [`Mailer`], read back from the server's Maildir and checked (subject, recipient, non-ASCII text, the one
//! link); a mailer pointed at a closed port fails naming host and port.

use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use outpost_portal::config::{SmtpSecurity, SmtpSettings};
use outpost_portal::mail::{messages, MailError, Mailer, Outgoing};
use outpost_tests::smtp::SmtpCapture;

const WAIT: Duration = Duration::from_secs(20);

fn settings(port: u16) -> SmtpSettings {
    let mut s = SmtpSettings::new(
        "127.0.0.1",
        SmtpSecurity::None,
        "Outpost Pörtal <portal@example.com>".parse().unwrap(),
    );
    s.port = port;
    s.timeout = Duration::from_secs(5);
    s
}

/// Sends `mail`, waits for it at the capture and checks what every kind must have.
async fn round_trip(
    mailer: &Mailer,
    smtp: &SmtpCapture,
    mail: &Outgoing,
    link: &str,
) -> outpost_tests::smtp::Mail {
    mailer.send(mail).await.unwrap();
    let got = smtp.wait_for(&mail.to, &mail.subject, WAIT).await.unwrap();
    assert_eq!(got.subject, mail.subject);
    assert_eq!(got.to, vec![mail.to.clone()]);
    assert_eq!(got.envelope_to, vec![mail.to.clone()]);
    assert_eq!(got.from.as_deref(), Some("portal@example.com"));
    assert_eq!(got.links(), vec![link.to_owned()], "{}", got.text);
    assert_eq!(
        got.text.replace("\r\n", "\n").trim_end(),
        mail.text.trim_end(),
        "the body arrives as written"
    );
    let content_type = got
        .header("Content-Type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        content_type.starts_with("text/plain") && content_type.contains("utf-8"),
        "{content_type}"
    );
    got
}

#[tokio::test]
async fn every_kind_of_mail_arrives_intact() {
    let smtp = SmtpCapture::start().unwrap();
    let mailer = Mailer::new(&settings(smtp.port())).unwrap();
    let expires = Utc.with_ymd_and_hms(2031, 5, 6, 7, 8, 0).unwrap();
    // Long enough that the transfer encoding wraps it: the link must still come back whole.
    let link = format!(
        "https://portal.example.com:8443/invitations/accept?token={}",
        "Ab9_-".repeat(20)
    );

    let invitation = messages::invitation(
        "new.member@example.com",
        "Café Ünïcode",
        "Zoë Ørsted",
        &link,
        expires,
    );
    let got = round_trip(&mailer, &smtp, &invitation, &link).await;
    assert!(got.subject.contains("Café Ünïcode") && got.subject.contains("Zoë Ørsted"));
    assert!(
        got.text.contains("join the team of Café Ünïcode"),
        "{}",
        got.text
    );
    assert!(got.text.contains("2031-05-06 07:08 UTC"), "{}", got.text);
    assert_eq!(got.header("Auto-Submitted"), Some("auto-generated"));
    // Non-ASCII text travels encoded: the capture decoded it, and the link came back whole.
    let encoding = got.header("Content-Transfer-Encoding").unwrap_or_default();
    assert!(
        encoding.eq_ignore_ascii_case("quoted-printable")
            || encoding.eq_ignore_ascii_case("base64"),
        "{encoding:?}"
    );
    let raw = std::fs::read_to_string(&got.path).unwrap();
    assert!(
        !raw.contains("Café Ünïcode"),
        "headers and body are encoded on the wire"
    );

    let reset_link = "https://portal.example.com:8443/password/reset/Zz12";
    let reset = messages::password_reset("zoe@example.com", reset_link, expires);
    let got = round_trip(&mailer, &smtp, &reset, reset_link).await;
    assert!(got.text.contains("ignore this mail"));

    let change_link = "https://portal.example.com:8443/email/confirm/Qq34";
    let change = messages::email_change("zoe.new@example.org", "zoë", change_link, expires);
    let got = round_trip(&mailer, &smtp, &change, change_link).await;
    assert!(got.text.contains("account zoë"), "{}", got.text);

    let renew_link = "https://portal.example.com:8443/renewals/Rr56";
    let renewal = NaiveDate::from_ymd_opt(2031, 6, 1).unwrap();
    let reminder = messages::renewal_reminder(
        "owner@example.net",
        "Réception",
        renewal,
        "monthly",
        renew_link,
        2,
    );
    let got = round_trip(&mailer, &smtp, &reminder, renew_link).await;
    assert!(got.subject.contains("Réception"));
    assert!(got.text.contains("reminder 2 of 4"), "{}", got.text);

    assert_eq!(smtp.messages().unwrap().len(), 4, "one mail per send");
}

#[tokio::test]
async fn a_bad_recipient_fails_before_sending() {
    let smtp = SmtpCapture::start().unwrap();
    let mailer = Mailer::new(&settings(smtp.port())).unwrap();
    let err = mailer
        .send(&messages::password_reset(
            "not an address",
            "https://x.example/r",
            Utc::now(),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, MailError::BadAddress { .. }), "{err:?}");
    assert!(smtp.messages().unwrap().is_empty());
}

#[tokio::test]
async fn a_closed_port_names_host_and_port() {
    let port = outpost_tests::free_port().unwrap();
    let mailer = Mailer::new(&settings(port)).unwrap();
    let err = mailer
        .send(&messages::password_reset(
            "zoe@example.com",
            "https://x.example/r",
            Utc::now(),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, MailError::Unreachable { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("unreachable"), "{text}");
}

#[tokio::test]
async fn starttls_against_a_server_without_it_is_refused() {
    // aiosmtpd without a certificate offers no STARTTLS: the mailer must not fall back to plain text.
    let smtp = SmtpCapture::start().unwrap();
    let mut s = settings(smtp.port());
    s.security = SmtpSecurity::Starttls;
    let mailer = Mailer::new(&s).unwrap();
    let err = mailer
        .send(&messages::password_reset(
            "zoe@example.com",
            "https://x.example/r",
            Utc::now(),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, MailError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("security"), "{err}");
    assert!(smtp.messages().unwrap().is_empty(), "nothing sent in clear");
}
