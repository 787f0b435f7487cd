//! The account and two-factor pages over HTTP (no browser): setting a password from an invitation link
//! (weak refused with advice, single use, expiry), "forgot password" answering alike for every address,
//! and two-factor sign-in: turning it on, the code step (wrong, right, replayed, too many), remembered
//! devices (skip the code; a tampered or removed one does not), recovery codes (once), the forced setup,
//! the cookies' attributes, and secrets stored only hashed.

use axum::http::{Method, StatusCode};
use chrono::Duration;
use outpost_portal::access::Role;
use outpost_portal::app::users::{self, NewMember};
use outpost_portal::clock::Clock;
use outpost_portal::totp::TotpSecret;
use sqlx::Row;

use crate::harness::{form, request, start_time, Harness, Page, Req, PUBLIC_URL};

const EMAIL: &str = "ana@example.com";
const PASSWORD: &str = "a long enough password";
const ORIGIN: &str = "https://portal.example:8443";

async fn get(h: &Harness, path: &str, cookie: &str) -> Page {
    request(
        h,
        Method::GET,
        path,
        Req {
            cookie: Some(cookie),
            ..Req::default()
        },
    )
    .await
}

async fn post(h: &Harness, path: &str, cookie: Option<&str>, fields: &[(&str, &str)]) -> Page {
    request(
        h,
        Method::POST,
        path,
        Req {
            cookie,
            form: Some(form(fields)),
            headers: vec![("origin", ORIGIN.into())],
            ..Req::default()
        },
    )
    .await
}

/// The value of the first `name="<field>" value="..."` of the page.
fn field(page: &Page, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = page
        .text
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field in {}", page.text));
    let rest = &page.text[at + marker.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// The text of the element that starts with `open` (up to the next `<`).
fn text_after(page: &Page, open: &str) -> String {
    let at = page
        .text
        .find(open)
        .unwrap_or_else(|| panic!("no {open} in {}", page.text));
    let rest = &page.text[at + open.len()..];
    rest[..rest.find('<').unwrap()].to_owned()
}

/// Signs in through the page (with `device`, a `outpost_device=...` cookie, if given): the session
/// cookie and where the browser was sent.
async fn sign_in(h: &Harness, email: &str, device: Option<&str>) -> (String, String) {
    let page = post(
        h,
        "/sign-in",
        device,
        &[
            ("email", email),
            ("password", PASSWORD),
            ("next", "/agents"),
        ],
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    (page.session(), page.location().to_owned())
}

fn code_now(h: &Harness, secret: &str) -> String {
    TotpSecret::from_base32(secret)
        .unwrap()
        .code_at(h.clock.now().timestamp() as u64)
}

/// A user who turned two-factor sign-in on from the security page: the secret and the recovery codes.
async fn with_two_factor(h: &Harness) -> (String, Vec<String>) {
    h.add_user(EMAIL, Role::Supervisor, Some("North"), PASSWORD)
        .await;
    let (cookie, to) = sign_in(h, EMAIL, None).await;
    assert_eq!(to, "/agents");
    let security = get(h, "/account/security", &cookie).await;
    assert_eq!(security.status, StatusCode::OK, "{}", security.text);
    assert!(security.text.contains("Turn on two-factor sign-in"));
    let csrf = field(&security, "csrf");
    let wrong = post(
        h,
        "/account/two-factor/start",
        Some(&cookie),
        &[("csrf", &csrf), ("password", "not the password")],
    )
    .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert!(wrong.text.contains("the password is wrong"));
    let enrol = post(
        h,
        "/account/two-factor/start",
        Some(&cookie),
        &[("csrf", &csrf), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(enrol.status, StatusCode::OK, "{}", enrol.text);
    assert!(enrol.text.contains("<svg"), "the QR code is inline");
    let secret = text_after(&enrol, "id=\"secret\">");
    let done = post(
        h,
        "/account/two-factor/confirm",
        Some(&cookie),
        &[("csrf", &csrf), ("code", &code_now(h, &secret))],
    )
    .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    let codes: Vec<String> = done
        .text
        .split("<code class=\"recovery\">")
        .skip(1)
        .map(|s| s[..s.find('<').unwrap()].to_owned())
        .collect();
    assert_eq!(codes.len(), 10, "{}", done.text);
    // Shown once: the security page only counts them.
    let security = get(h, "/account/security", &cookie).await;
    assert!(security.text.contains("Recovery codes left: 10"));
    assert!(!security.text.contains(&codes[0]));
    (secret, codes)
}

/// Signs in with the password and lands on the code page: the session cookie and its CSRF token.
async fn at_code_step(h: &Harness, device: Option<&str>) -> (String, String) {
    let (cookie, to) = sign_in(h, EMAIL, device).await;
    assert_eq!(to, "/sign-in/code?next=%2Fagents");
    let page = get(h, &to, &cookie).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    // Nothing else is reachable meanwhile.
    assert_eq!(get(h, "/agents", &cookie).await.location(), "/sign-in/code");
    let csrf = field(&page, "csrf");
    (cookie, csrf)
}

async fn send_code(h: &Harness, cookie: &str, csrf: &str, code: &str, remember: bool) -> Page {
    let mut fields = vec![("csrf", csrf), ("code", code), ("next", "/agents")];
    if remember {
        fields.push(("remember", "yes"));
    }
    post(h, "/sign-in/code", Some(cookie), &fields).await
}

async fn history(h: &Harness, action: &str) -> Vec<(String, Option<String>)> {
    let mut conn = h.app.store().conn().await.unwrap();
    sqlx::query("SELECT details, address FROM history WHERE action = ? ORDER BY id")
        .bind(action)
        .fetch_all(&mut *conn)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("details"), r.get("address")))
        .collect()
}

#[tokio::test]
async fn an_invitation_link_sets_a_strong_password_once_and_expires() {
    let h = Harness::new().await;
    let invite = |email: &'static str| {
        let store = h.app.store().clone();
        async move {
            let member = NewMember {
                email,
                name: Some("Nia New"),
                role: Role::CompanyAdmin,
                require_2fa: false,
            };
            users::bootstrap_user(&store, &member, None, None, PUBLIC_URL, start_time())
                .await
                .unwrap()
        }
    };
    let link = invite("nia@example.com").await;
    let path = link.url.strip_prefix(PUBLIC_URL).unwrap().to_owned();
    let token = path.split("token=").nth(1).unwrap().to_owned();
    let form_page = request(&h, Method::GET, &path, Req::default()).await;
    assert_eq!(form_page.status, StatusCode::OK, "{}", form_page.text);
    assert!(form_page.text.contains("choose your password"));
    assert!(form_page.text.contains("nia@example.com"));

    // Weak: refused with the strength and advice, and the link still works.
    for (weak, says) in [
        ("short", "use at least 10"),
        ("aaaaaaaaaaaa", "too easy to guess (strength"),
        ("nia@example.com", "too easy to guess"),
    ] {
        let page = post(
            &h,
            "/account/password",
            None,
            &[("token", &token), ("password", weak)],
        )
        .await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{weak}: {}",
            page.text
        );
        assert!(page.text.contains(says), "{weak}: {}", page.text);
        assert!(
            page.text.contains("name=\"token\""),
            "the form is shown again"
        );
    }
    let good = "pelican marble tundra 47 lantern";
    let page = post(
        &h,
        "/account/password",
        None,
        &[("token", &token), ("password", good)],
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    assert_eq!(page.location(), "/sign-in");
    let signed_in = post(
        &h,
        "/sign-in",
        None,
        &[("email", "nia@example.com"), ("password", good)],
    )
    .await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.text
    );
    assert_eq!(history(&h, "password-set").await.len(), 1);

    // Single use.
    let again = post(
        &h,
        "/account/password",
        None,
        &[("token", &token), ("password", good)],
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.text);
    assert!(again.text.contains("not valid"), "{}", again.text);
    assert_eq!(
        request(&h, Method::GET, &path, Req::default()).await.status,
        StatusCode::NOT_FOUND
    );
    // Another site's form is refused.
    let other = invite("oli@example.com").await;
    let other_path = other.url.strip_prefix(PUBLIC_URL).unwrap().to_owned();
    let other_token = other_path.split("token=").nth(1).unwrap().to_owned();
    let cross = request(
        &h,
        Method::POST,
        "/account/password",
        Req {
            form: Some(form(&[("token", &other_token), ("password", good)])),
            headers: vec![("origin", "https://evil.example".into())],
            ..Req::default()
        },
    )
    .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    // Expired after 72 hours.
    h.clock.advance(Duration::hours(73));
    let expired = request(&h, Method::GET, &other_path, Req::default()).await;
    assert_eq!(expired.status, StatusCode::GONE, "{}", expired.text);
    assert!(expired.text.contains("expired"), "{}", expired.text);
    let expired = post(
        &h,
        "/account/password",
        None,
        &[("token", &other_token), ("password", good)],
    )
    .await;
    assert_eq!(expired.status, StatusCode::GONE);
}

#[tokio::test]
async fn forgot_password_answers_alike_for_known_and_unknown_addresses() {
    let h = Harness::new().await;
    h.add_user(EMAIL, Role::CompanyAdmin, None, PASSWORD).await;
    let form_page = request(&h, Method::GET, "/account/forgot", Req::default()).await;
    assert_eq!(form_page.status, StatusCode::OK);
    let known = post(&h, "/account/forgot", None, &[("email", EMAIL)]).await;
    let unknown = post(
        &h,
        "/account/forgot",
        None,
        &[("email", "nobody@example.com")],
    )
    .await;
    let not_an_address = post(&h, "/account/forgot", None, &[("email", "x")]).await;
    assert_eq!(known.status, StatusCode::OK);
    assert!(known.text.contains("30 minutes"), "{}", known.text);
    assert_eq!(known.text, unknown.text);
    assert_eq!(known.status, unknown.status);
    assert_eq!(known.text, not_an_address.text);
    // The link was made for the known address only, and never shown.
    let mut conn = h.app.store().conn().await.unwrap();
    let links: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM user_links WHERE purpose = 'reset'")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(links, 1);
    assert!(!known.text.contains("token="));
    // Rate-limited: still the same answer.
    for _ in 0..6 {
        let again = post(&h, "/account/forgot", None, &[("email", EMAIL)]).await;
        assert_eq!(again.text, known.text);
        assert_eq!(again.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn two_factor_codes_are_asked_checked_and_accepted_once() {
    let h = Harness::new().await;
    let (secret, recovery) = with_two_factor(&h).await;

    // Sign-in asks for the code; a wrong one is refused, the right one accepted.
    let (cookie, csrf) = at_code_step(&h, None).await;
    h.clock.advance(Duration::seconds(30));
    let right = code_now(&h, &secret);
    let wrong = if right == "123456" {
        "654321"
    } else {
        "123456"
    };
    let refused = send_code(&h, &cookie, &csrf, wrong, false).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(
        refused.text.contains("the code is wrong"),
        "{}",
        refused.text
    );
    assert!(refused.text.contains("4 tries left"), "{}", refused.text);
    let no_csrf = send_code(&h, &cookie, "forged", &right, false).await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    let accepted = send_code(&h, &cookie, &csrf, &right, false).await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{}", accepted.text);
    assert_eq!(accepted.location(), "/agents");
    assert!(accepted.set_cookie().is_empty(), "no device remembered");
    assert_eq!(get(&h, "/agents", &cookie).await.status, StatusCode::OK);

    // The same code in a new sign-in is refused.
    let (cookie, csrf) = at_code_step(&h, None).await;
    let replayed = send_code(&h, &cookie, &csrf, &right, false).await;
    assert_eq!(replayed.status, StatusCode::UNAUTHORIZED);
    assert!(replayed.text.contains("already used"), "{}", replayed.text);

    // A recovery code works once (typed in capitals, without its dash).
    let typed = recovery[3].replace('-', "").to_uppercase();
    let used = send_code(&h, &cookie, &csrf, &typed, false).await;
    assert_eq!(used.status, StatusCode::SEE_OTHER, "{}", used.text);
    let (cookie, csrf) = at_code_step(&h, None).await;
    let reused = send_code(&h, &cookie, &csrf, &recovery[3], false).await;
    assert_eq!(reused.status, StatusCode::UNAUTHORIZED);
    assert!(reused.text.contains("used already"), "{}", reused.text);
    let lines = history(&h, "recovery-code-used").await;
    assert_eq!(lines.len(), 1);
    assert!(lines[0].0.contains("9 left"), "{lines:?}");
    assert_eq!(lines[0].1.as_deref(), Some("127.0.0.1"));
    assert_eq!(history(&h, "2fa-enabled").await.len(), 1);

    // Recovery codes are stored hashed.
    let mut conn = h.app.store().conn().await.unwrap();
    let rows = sqlx::query("SELECT code_hash FROM recovery_codes")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    assert_eq!(rows.len(), 10);
    for row in &rows {
        let stored: String = row.get("code_hash");
        assert_eq!(stored.len(), 64);
        for code in &recovery {
            assert!(!stored.contains(&code.replace('-', "")));
        }
    }
    assert!(rows
        .iter()
        .any(|r| r.get::<String, _>("code_hash")
            == outpost_portal::recovery_codes::hash(&recovery[0])));
}

#[tokio::test]
async fn too_many_wrong_codes_end_the_sign_in() {
    let h = Harness::new().await;
    let (secret, _) = with_two_factor(&h).await;
    let (cookie, csrf) = at_code_step(&h, None).await;
    h.clock.advance(Duration::seconds(30));
    let right = code_now(&h, &secret);
    let wrong = if right == "111111" {
        "222222"
    } else {
        "111111"
    };
    for _ in 0..4 {
        let page = send_code(&h, &cookie, &csrf, wrong, false).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    }
    let last = send_code(&h, &cookie, &csrf, wrong, false).await;
    assert_eq!(last.status, StatusCode::UNAUTHORIZED);
    assert!(last.text.contains("too many wrong codes"), "{}", last.text);
    assert!(last.set_cookie().contains("Max-Age=0"));
    // Even the right code is too late now: the session is gone.
    let late = send_code(&h, &cookie, &csrf, &right, false).await;
    assert_eq!(late.status, StatusCode::SEE_OTHER);
    assert_eq!(late.location(), "/sign-in");
    assert_eq!(history(&h, "sign-in-code-failed").await.len(), 5);
}

#[tokio::test]
async fn a_remembered_device_skips_the_code_until_removed_or_tampered_with() {
    let h = Harness::new().await;
    let (secret, _) = with_two_factor(&h).await;
    let (cookie, csrf) = at_code_step(&h, None).await;
    h.clock.advance(Duration::seconds(30));
    let page = send_code(&h, &cookie, &csrf, &code_now(&h, &secret), true).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let set = page.set_cookie().to_owned();
    for attr in [
        "outpost_device=",
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=2592000",
    ] {
        assert!(set.contains(attr), "{set}");
    }
    let device = set.split(';').next().unwrap().to_owned();

    // The next sign-in skips the code.
    let (cookie, to) = sign_in(&h, EMAIL, Some(&device)).await;
    assert_eq!(to, "/agents");
    assert_eq!(get(&h, "/agents", &cookie).await.status, StatusCode::OK);

    // A tampered cookie is ignored: the code is asked, no error page.
    let mut tampered = device.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    at_code_step(&h, Some(&tampered)).await;

    // The device id is stored hashed.
    let device_id = device
        .strip_prefix("outpost_device=")
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .to_owned();
    {
        let mut conn = h.app.store().conn().await.unwrap();
        let stored: Vec<String> = sqlx::query_scalar("SELECT id_hash FROM trusted_devices")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        assert_eq!(stored, vec![outpost_portal::secrets::hash(&device_id)]);
        assert!(!stored[0].contains(&device_id));
    }

    // Removed on the security page: the code is asked again.
    let security = get(&h, "/account/security", &cookie).await;
    assert!(security.text.contains("Remembered devices"));
    let removed = post(
        &h,
        "/account/two-factor/devices/remove",
        Some(&cookie),
        &[
            ("csrf", &field(&security, "csrf")),
            ("device", &field(&security, "device")),
        ],
    )
    .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.text);
    assert_eq!(history(&h, "trusted-device-removed").await.len(), 1);
    at_code_step(&h, Some(&device)).await;
}

#[tokio::test]
async fn a_required_setup_is_all_a_session_can_reach_until_confirmed() {
    let h = Harness::new().await;
    let id = h.add_user(EMAIL, Role::CompanyAdmin, None, PASSWORD).await;
    {
        let mut conn = h.app.store().conn().await.unwrap();
        outpost_portal::store::users::set_require_2fa(&mut conn, id, true, start_time())
            .await
            .unwrap();
    }
    let (cookie, to) = sign_in(&h, EMAIL, None).await;
    assert_eq!(to, "/account/two-factor/setup");
    for path in ["/agents", "/account", "/account/security", "/sign-in/code"] {
        let page = get(&h, path, &cookie).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location(), "/account/two-factor/setup", "{path}");
    }
    let setup = get(&h, "/account/two-factor/setup", &cookie).await;
    assert_eq!(setup.status, StatusCode::OK, "{}", setup.text);
    let secret = text_after(&setup, "id=\"secret\">");
    // A reload shows the same secret.
    let again = get(&h, "/account/two-factor/setup", &cookie).await;
    assert_eq!(text_after(&again, "id=\"secret\">"), secret);
    let csrf = field(&setup, "csrf");
    let wrong = post(
        &h,
        "/account/two-factor/setup",
        Some(&cookie),
        &[("csrf", &csrf), ("code", "12345")],
    )
    .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        get(&h, "/agents", &cookie).await.location(),
        "/account/two-factor/setup"
    );
    let done = post(
        &h,
        "/account/two-factor/setup",
        Some(&cookie),
        &[("csrf", &csrf), ("code", &code_now(&h, &secret))],
    )
    .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert!(done.text.contains("Save these recovery codes"));
    assert_eq!(get(&h, "/agents", &cookie).await.status, StatusCode::OK);
    // Done: the setup page leads elsewhere now, and a browser without a session goes to sign in.
    assert_eq!(
        get(&h, "/account/two-factor/setup", &cookie)
            .await
            .location(),
        "/account/security"
    );
    let anonymous = request(&h, Method::GET, "/account/two-factor/setup", Req::default()).await;
    assert_eq!(anonymous.location(), "/sign-in");
    let lines = history(&h, "2fa-enabled").await;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].1.as_deref(), Some("127.0.0.1"));
}

#[tokio::test]
async fn the_account_page_changes_preferences_and_password_and_ends_other_sessions() {
    let h = Harness::new().await;
    h.add_user(EMAIL, Role::Supervisor, Some("North"), PASSWORD)
        .await;
    let (other, _) = sign_in(&h, EMAIL, None).await;
    let (cookie, _) = sign_in(&h, EMAIL, None).await;
    let page = get(&h, "/account", &cookie).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("this session"));
    assert!(page.text.contains("Supervisor") || page.text.contains("supervisor"));
    let csrf = field(&page, "csrf");
    let bad_zone = post(
        &h,
        "/account/preferences",
        Some(&cookie),
        &[
            ("csrf", &csrf),
            ("name", "Ana A"),
            ("time_format", "12h"),
            ("time_zone", "Mars/Olympus"),
        ],
    )
    .await;
    assert_eq!(bad_zone.status, StatusCode::BAD_REQUEST);
    assert!(bad_zone.text.contains("+02:00"), "{}", bad_zone.text);
    let saved = post(
        &h,
        "/account/preferences",
        Some(&cookie),
        &[
            ("csrf", &csrf),
            ("name", "Ana A"),
            ("time_format", "12h"),
            ("time_zone", " america/new_york "),
        ],
    )
    .await;
    assert_eq!(saved.location(), "/account?ok=preferences");
    let page = get(&h, "/account", &cookie).await;
    assert!(
        page.text.contains("value=\"America/New_York\""),
        "{}",
        page.text
    );
    assert!(page.text.contains("value=\"12h\" selected"));
    // The sessions' times (the harness clock: 2026-01-15 12:00 UTC) in the chosen zone and format.
    assert!(
        page.text.contains("2026-01-15 07:00 AM EST"),
        "{}",
        page.text
    );
    let no_csrf = post(&h, "/account/preferences", Some(&cookie), &[("name", "X")]).await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);

    let wrong = post(
        &h,
        "/account/password/change",
        Some(&cookie),
        &[
            ("csrf", &csrf),
            ("current_password", "nope"),
            ("new_password", "pelican marble tundra 47 lantern"),
        ],
    )
    .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert!(wrong.text.contains("current password is wrong"));
    let changed = post(
        &h,
        "/account/password/change",
        Some(&cookie),
        &[
            ("csrf", &csrf),
            ("current_password", PASSWORD),
            ("new_password", "pelican marble tundra 47 lantern"),
        ],
    )
    .await;
    assert_eq!(
        changed.location(),
        "/account?ok=password",
        "{}",
        changed.text
    );
    assert_eq!(get(&h, "/agents", &cookie).await.status, StatusCode::OK);
    assert_eq!(
        get(&h, "/agents", &other).await.status,
        StatusCode::SEE_OTHER,
        "the other session ended"
    );
    // Without a mail server an email change cannot be confirmed, and says so.
    let email = post(
        &h,
        "/account/email/change",
        Some(&cookie),
        &[("csrf", &csrf), ("email", "ana.new@example.com")],
    )
    .await;
    assert_eq!(email.status, StatusCode::BAD_GATEWAY);
    assert!(email.text.contains("no mail server"), "{}", email.text);
    // Signing out everywhere ends this session too.
    let out = post(
        &h,
        "/account/sign-out-everywhere",
        Some(&cookie),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(out.location(), "/sign-in");
    assert_eq!(
        get(&h, "/agents", &cookie).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn two_factor_is_renewed_and_turned_off_with_the_password() {
    let h = Harness::new().await;
    let (old_secret, _) = with_two_factor(&h).await;
    let (cookie, csrf) = at_code_step(&h, None).await;
    h.clock.advance(Duration::seconds(30));
    let signed = send_code(&h, &cookie, &csrf, &code_now(&h, &old_secret), true).await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER);
    let security = get(&h, "/account/security", &cookie).await;
    assert!(security.text.contains("Renew"));
    let csrf = field(&security, "csrf");
    let renewed = post(
        &h,
        "/account/two-factor/start",
        Some(&cookie),
        &[("csrf", &csrf), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(renewed.status, StatusCode::OK, "{}", renewed.text);
    let new_secret = text_after(&renewed, "id=\"secret\">");
    assert_ne!(new_secret, old_secret);
    assert_eq!(history(&h, "2fa-renewed").await.len(), 1);
    // The old secret stops working at once: until confirmed, two-factor counts as off.
    h.clock.advance(Duration::seconds(30));
    let old_code = post(
        &h,
        "/account/two-factor/confirm",
        Some(&cookie),
        &[("csrf", &csrf), ("code", &code_now(&h, &old_secret))],
    )
    .await;
    assert_eq!(old_code.status, StatusCode::BAD_REQUEST);
    let done = post(
        &h,
        "/account/two-factor/confirm",
        Some(&cookie),
        &[("csrf", &csrf), ("code", &code_now(&h, &new_secret))],
    )
    .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);

    // Turning off needs the password, then forgets the secret, the codes and the devices.
    let refused = post(
        &h,
        "/account/two-factor/disable",
        Some(&cookie),
        &[("csrf", &csrf), ("password", "wrong")],
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let off = post(
        &h,
        "/account/two-factor/disable",
        Some(&cookie),
        &[("csrf", &csrf), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(off.location(), "/account/security?ok=disabled");
    let mut conn = h.app.store().conn().await.unwrap();
    for table in ["recovery_codes", "trusted_devices"] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table}");
    }
    drop(conn);
    let lines = history(&h, "2fa-disabled").await;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].1.as_deref(), Some("127.0.0.1"));
    let (_, to) = sign_in(&h, EMAIL, None).await;
    assert_eq!(to, "/agents", "no code is asked any more");
}

#[tokio::test]
async fn with_a_mail_server_reset_and_email_change_links_arrive_and_work() {
    use outpost_portal::config::{SmtpSecurity, SmtpSettings};
    use outpost_portal::mail::Mailer;
    use outpost_tests::smtp::SmtpCapture;
    use std::sync::Arc;

    let smtp = SmtpCapture::start().unwrap();
    let mut settings = SmtpSettings::new(
        "127.0.0.1",
        SmtpSecurity::None,
        "Outpost <portal@example.com>".parse().unwrap(),
    );
    settings.port = smtp.port();
    settings.timeout = std::time::Duration::from_secs(5);
    let h = Harness::with(crate::harness::Options {
        mailer: Some(Arc::new(Mailer::new(&settings).unwrap())),
        ..Default::default()
    })
    .await;
    h.add_user(EMAIL, Role::CompanyAdmin, None, PASSWORD).await;
    let wait = std::time::Duration::from_secs(20);

    let asked = post(&h, "/account/forgot", None, &[("email", EMAIL)]).await;
    assert!(!asked.text.contains("token="));
    let mail = smtp.wait_for(EMAIL, "Reset", wait).await.unwrap();
    let link = mail.links().into_iter().next().unwrap();
    let path = link.strip_prefix(PUBLIC_URL).unwrap().to_owned();
    let token = path.split("token=").nth(1).unwrap().to_owned();
    assert!(
        !h.database_contains(&token).await,
        "a reset link is stored only hashed"
    );
    assert!(
        h.database_contains(&outpost_portal::secrets::hash(&token))
            .await,
        "and its hash is what the store holds"
    );
    let new_password = "pelican marble tundra 47 lantern";
    let set = post(
        &h,
        "/account/password",
        None,
        &[("token", &token), ("password", new_password)],
    )
    .await;
    assert_eq!(set.location(), "/sign-in", "{}", set.text);
    // The reset link lasts 30 minutes.
    post(&h, "/account/forgot", None, &[("email", EMAIL)]).await;
    let mut tries = 0;
    let second = loop {
        tries += 1;
        assert!(tries < 400, "the second reset mail did not arrive");
        let mails = smtp.messages().unwrap();
        let resets: Vec<_> = mails
            .iter()
            .filter(|m| m.subject.contains("Reset"))
            .collect();
        if resets.len() == 2 {
            break resets[1].links()[0].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    h.clock.advance(Duration::minutes(31));
    let late = request(
        &h,
        Method::GET,
        second.strip_prefix(PUBLIC_URL).unwrap(),
        Req::default(),
    )
    .await;
    assert_eq!(late.status, StatusCode::GONE);

    // Email change: the link goes to the new address, and the address changes once it is opened.
    let signed_in = post(
        &h,
        "/sign-in",
        None,
        &[("email", EMAIL), ("password", new_password)],
    )
    .await;
    let cookie = signed_in.session();
    let (_, session_token) = cookie.split_once('=').unwrap();
    assert!(
        !h.database_contains(session_token).await,
        "a session is stored only hashed"
    );
    assert!(
        h.database_contains(&outpost_portal::secrets::hash(session_token))
            .await
    );
    assert!(!h.database_contains(new_password).await);
    let page = get(&h, "/account", &cookie).await;
    let asked = post(
        &h,
        "/account/email/change",
        Some(&cookie),
        &[
            ("csrf", &field(&page, "csrf")),
            ("email", "ana.new@example.com"),
        ],
    )
    .await;
    assert_eq!(asked.location(), "/account?ok=email", "{}", asked.text);
    let mail = smtp
        .wait_for("ana.new@example.com", "Confirm", wait)
        .await
        .unwrap();
    let link = mail.links().into_iter().next().unwrap();
    let path = link.strip_prefix(PUBLIC_URL).unwrap().to_owned();
    let token = path.split("token=").nth(1).unwrap().to_owned();
    assert!(!h.database_contains(&token).await);
    let confirm = request(&h, Method::GET, &path, Req::default()).await;
    assert!(
        confirm.text.contains("ana.new@example.com"),
        "{}",
        confirm.text
    );
    assert!(
        get(&h, "/account", &cookie).await.text.contains(EMAIL),
        "nothing changes before the link is used"
    );
    let done = post(&h, "/account/email", None, &[("token", &token)]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert!(get(&h, "/account", &cookie)
        .await
        .text
        .contains("ana.new@example.com"));
    let again = post(&h, "/account/email", None, &[("token", &token)]).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_strength_hint_answers_for_a_link_or_a_session_only() {
    let h = Harness::new().await;
    let member = outpost_portal::app::users::NewMember {
        email: "kim@example.com",
        name: None,
        role: Role::CompanyAdmin,
        require_2fa: false,
    };
    let link = outpost_portal::app::users::bootstrap_user(
        h.app.store(),
        &member,
        None,
        None,
        crate::harness::PUBLIC_URL,
        h.app.now(),
    )
    .await
    .unwrap();
    let token = link.url.rsplit("token=").next().unwrap().to_owned();
    let ask = |json: serde_json::Value, cookie: Option<String>| {
        let h = &h;
        async move {
            let page = request(
                h,
                Method::POST,
                "/account/password/strength",
                Req {
                    json: Some(json),
                    cookie: cookie.as_deref(),
                    ..Req::default()
                },
            )
            .await;
            (page.status, page.json())
        }
    };
    let (status, weak) = ask(
        serde_json::json!({ "password": "kim@example.com1", "token": token }),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        weak["ok"], false,
        "the account's own email scores low: {weak}"
    );
    assert!(
        weak["message"]
            .as_str()
            .unwrap()
            .contains("too easy to guess"),
        "{weak}"
    );
    let (_, short) = ask(
        serde_json::json!({ "password": "abc", "token": token }),
        None,
    )
    .await;
    assert_eq!(
        (short["ok"].as_bool(), short["score"].is_null()),
        (Some(false), true)
    );
    let (_, strong) = ask(
        serde_json::json!({ "password": "lantern-quarry-mosaic-41", "token": token }),
        None,
    )
    .await;
    assert_eq!(strong["ok"], true, "{strong}");
    assert!(strong["score"].as_u64().unwrap() >= 3);
    for (body, cookie) in [
        (
            serde_json::json!({ "password": "x", "token": "bogus" }),
            None,
        ),
        (serde_json::json!({ "password": "x" }), None),
    ] {
        let (status, _) = ask(body, cookie).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "only a link or a session may ask"
        );
    }
    let script = request(
        &h,
        Method::GET,
        "/assets/password-strength.js",
        Req::default(),
    )
    .await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(script.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert!(script.text.contains("/account/password/strength"));
}
