//! People and access end to end, in headless Chromium against the real `outpost-portal up` with a real
//! SMTP server (aiosmtpd): a company admin from `users new`'s link invites a member over the API, the
//! member follows the mailed link and sets a password (a weak one refused with advice), turns two-factor
//! sign-in on by typing codes the test computes from the secret the page shows (its own RFC 6238 code,
//! `outpost_tests::totp`), signs in with a code (a wrong and a replayed one refused), remembers the
//! device and signs in again without one, removes the device and is asked again, uses a recovery code
//! once and sees it refused the second time. A supervisor whose company requires two-factor sign-in
//! lands on the forced setup and can reach nothing else until a code confirms it; then their agent page
//! shows every form disabled and no cleanup or delete button, and posts they forge anyway are refused.
//!
//! Codes are typed at known times: the portal runs with `--dev-clock`, and the test moves its clock to
//! the start of a fresh 30-second step before each code (a code is accepted once, so the next sign-in
//! needs the next step) instead of waiting for it. Loopback only: no root, no lab. Screenshots land in
//! `target/screenshots/people_*/`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use outpost_tests::browser::Browser;
use outpost_tests::smtp::SmtpCapture;
use outpost_tests::{portal_bin, totp, Agent, Portal, PortalOptions};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

const ADMIN: &str = "ada.admin@example.com";
const ADMIN_PASSWORD: &str = "quartz harbour 5813 meadow";
const MEMBER: &str = "gina.group@example.com";
const MEMBER_PASSWORD: &str = "pelican marble tundra 47 lantern";
const SUPERVISOR: &str = "sam.super@example.com";
const SUPERVISOR_PASSWORD: &str = "violet canyon 92 ledger oboe";
const AGENT_NAME: &str = "Harbour office";
const WAIT: Duration = Duration::from_secs(20);

/// A loopback port of the test's own that forwards every connection to the portal's HTTPS port, as a
/// port forward in front of a real portal would. The config's `[web] public_url` (the base of the links
/// in mails) must be written before the portal starts, but the portal's port is chosen when it starts:
/// the public address is this port, and its target is set once the portal listens.
struct PortForward {
    port: u16,
    target: Arc<AtomicU16>,
    task: tokio::task::JoinHandle<()>,
}

impl PortForward {
    async fn start() -> Result<PortForward> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("binding the public port")?;
        let port = listener.local_addr()?.port();
        let target = Arc::new(AtomicU16::new(0));
        let to = target.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let port = to.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(PortForward { port, target, task })
    }

    fn forward_to(&self, port: u16) {
        self.target.store(port, Ordering::SeqCst);
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The portal's config: links in mails start with `public_url`, and mail goes to the capture.
fn write_config(dir: &Path, public_url: &str, smtp_port: u16) -> Result<PathBuf> {
    let path = dir.join("portal.toml");
    std::fs::write(
        &path,
        format!(
            r#"[web]
public_url = "{public_url}"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
from = "Outpost <portal@example.com>"
timeout_secs = 10
"#
        ),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// `outpost-portal users new`: the company's first admin; returns the link where they set a password.
fn bootstrap_admin(portal: &Portal, url: &str) -> Result<String> {
    let out = Command::new(portal_bin()?)
        .args(["users", "new", "--email", ADMIN, "--name", "Ada Admin"])
        .args(["--role", "company-admin", "--url", url, "--data"])
        .arg(portal.data().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()?;
    if !out.status.success() {
        bail!("users new failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let link = String::from_utf8(out.stdout)?.trim().to_owned();
    ensure!(
        link.lines().count() == 1 && link.starts_with(url),
        "users new printed {link:?}, not one link to {url}"
    );
    Ok(link)
}

/// The portal's clock moved step by step: each call jumps to one second into the next 30-second step
/// (never back) and returns that time, which the code typed next is computed for.
struct StepClock {
    next_step: u64,
}

impl StepClock {
    fn new() -> Result<StepClock> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        Ok(StepClock {
            next_step: totp::step_of(now) + 2,
        })
    }

    async fn fresh_step(&mut self, portal: &Portal) -> Result<u64> {
        let at = self.next_step * totp::STEP_SECS + 1;
        self.next_step += 1;
        let when = chrono::DateTime::from_timestamp(at as i64, 0)
            .context("a step time chrono cannot show")?;
        portal
            .set_clock(&when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .await?;
        Ok(at)
    }
}

/// The path of the page shown (no query).
async fn path(browser: &Browser) -> Result<String> {
    let url = browser.current_url().await?;
    Ok(reqwest::Url::parse(&url)
        .with_context(|| format!("the browser shows {url:?}"))?
        .path()
        .to_owned())
}

/// Follows a mailed or printed link to the password form and sets `password`.
async fn set_password(browser: &Browser, link: &str, password: &str) -> Result<()> {
    browser.goto(link).await?;
    browser.wait_for("#set-password", WAIT).await?;
    browser.fill("#password", password).await?;
    browser.click("#set-password").await?;
    browser
        .wait_for("#sign-in", WAIT)
        .await
        .context("a good password leads to the sign-in page")
}

/// Signs in on the sign-in page; returns the path the portal sent the browser to.
async fn sign_in(browser: &Browser, base: &str, email: &str, password: &str) -> Result<String> {
    browser.goto(&format!("{base}/sign-in")).await?;
    browser.wait_for("#sign-in", WAIT).await?;
    browser.fill("#email", email).await?;
    browser.fill("#password", password).await?;
    browser.click("#sign-in").await?;
    // The click can return before the redirect after the post has loaded: wait for the next page, or for
    // the sign-in page's refusal.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let to = path(browser).await?;
        if to != "/sign-in" {
            return Ok(to);
        }
        if browser
            .wait_for(".notice.error", std::time::Duration::from_millis(200))
            .await
            .is_ok()
        {
            bail!(
                "signing in as {email} was refused: {}",
                browser.text(".notice.error").await?
            );
        }
        if std::time::Instant::now() > deadline {
            bail!("signing in as {email}: still on /sign-in after {WAIT:?}");
        }
    }
}

/// The sign-out button of the page's header.
async fn sign_out(browser: &Browser) -> Result<()> {
    browser
        .click("header form[action='/sign-out'] button")
        .await?;
    browser.wait_for("#sign-in", WAIT).await
}

/// Types `code` at the code step of a sign-in and expects it refused with `says`.
async fn code_refused(browser: &Browser, code: &str, says: &str) -> Result<()> {
    browser.fill("#code", code).await?;
    browser.click("#verify-code").await?;
    browser
        .wait_for_text(".notice.error", says, WAIT)
        .await
        .with_context(|| format!("the code {code:?} is refused with {says:?}"))?;
    ensure!(
        path(browser).await? == "/sign-in/code",
        "a refused code stays at the code step"
    );
    Ok(())
}

/// An `application/x-www-form-urlencoded` body.
fn form_body(fields: &[(&str, &str)]) -> String {
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The user `email` as `GET /users` shows them.
async fn user(portal: &Portal, email: &str) -> Result<Value> {
    let users = portal
        .api_ok(Method::GET, "/users", None, StatusCode::OK)
        .await?;
    users["users"]
        .as_array()
        .and_then(|all| all.iter().find(|u| u["email"] == email))
        .cloned()
        .with_context(|| format!("no user {email} in {users}"))
}

/// Turns two-factor sign-in on at the enrolment page shown: reads the secret, types its code at a fresh
/// step, and returns the secret, the time of that code and the recovery codes shown.
async fn confirm_enrolment(
    browser: &Browser,
    portal: &Portal,
    clock: &mut StepClock,
    shot: &str,
) -> Result<(String, u64, Vec<String>)> {
    browser.wait_for("#confirm-2fa", WAIT).await?;
    assert!(
        browser.attr("figure.qr svg", "aria-label").await?.is_some(),
        "the QR code is an inline SVG"
    );
    let secret = browser.text("#secret").await?;
    ensure!(
        totp::base32_decode(&secret)?.len() >= 16,
        "the secret {secret:?} has fewer than 128 bits"
    );
    browser.screenshot(shot).await?;
    // A code from another secret is refused; the form stays.
    let at = clock.fresh_step(portal).await?;
    let right = totp::code_at(&secret, at)?;
    let wrong = totp::code_at("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", at)?;
    if wrong != right {
        browser.fill("#code", &wrong).await?;
        browser.click("#confirm-2fa").await?;
        browser
            .wait_for_text(".notice.error", "wrong", WAIT)
            .await?;
        ensure!(
            browser.text("#secret").await? == secret,
            "the same secret is shown again"
        );
    }
    browser.fill("#code", &right).await?;
    browser.click("#confirm-2fa").await?;
    browser.wait_for("#recovery-codes", WAIT).await?;
    let codes = browser.texts("#recovery-codes code.recovery").await?;
    assert_eq!(codes.len(), 10, "ten recovery codes: {codes:?}");
    Ok((secret, at, codes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_invite_two_factor_and_a_supervisors_read_only_pages() -> Result<()> {
    let smtp = SmtpCapture::start()?;
    let public = PortForward::start().await?;
    let config_dir = tempfile::Builder::new()
        .prefix("outpost-people-")
        .tempdir()?;
    let config = write_config(config_dir.path(), &public.url(), smtp.port())?;
    let mut portal = Portal::start_with(PortalOptions {
        env: vec![("OUTPOST_PORTAL_CONFIG".into(), config.display().to_string())],
        ..PortalOptions::default()
    })
    .await?;
    public.forward_to(portal.https);
    let base = portal.base_url();
    let public_url = public.url();

    // Bootstrap: the first company admin from the command line, and a token acting as them.
    let admin_link = bootstrap_admin(&portal, &public_url)?;
    portal.token = portal.cli(&["token", "new", "--user", ADMIN, "--name", "people-e2e"])?;
    let me = portal
        .api_ok(Method::GET, "/users/me", None, StatusCode::OK)
        .await?;
    assert_eq!(me["email"], ADMIN, "{me}");
    assert_eq!(me["role"], "company-admin", "{me}");
    let browser = Browser::start("people_invite_two_factor_and_read_only").await?;
    set_password(&browser, &admin_link, ADMIN_PASSWORD).await?;

    // A group with an agent, a group admin and a supervisor invited into it over the API: the links go
    // by mail, never into the answer.
    let group = portal
        .api_ok(
            Method::POST,
            "/groups",
            Some(json!({ "name": "North", "note": "harbour sites" })),
            StatusCode::CREATED,
        )
        .await?;
    let group_id = group["id"].as_i64().context("the group's id")?;
    let mut invited = Vec::new();
    for (email, name, role) in [
        (MEMBER, "Gina Group", "group-admin"),
        (SUPERVISOR, "Sam Super", "supervisor"),
    ] {
        let answer = portal
            .api_ok(
                Method::POST,
                "/users",
                Some(json!({ "email": email, "name": name, "role": role, "groups": [group_id] })),
                StatusCode::CREATED,
            )
            .await?;
        assert_eq!(answer["mailed"], true, "{answer}");
        assert!(answer.get("link").is_none(), "{answer}");
        assert_eq!(answer["user"]["two_factor"], false, "{answer}");
        invited.push(answer["user"]["id"].as_i64().context("the user's id")?);
    }
    let supervisor_id = invited[1];
    let agent = Agent::new()?;
    let agent_id = agent.activate_new(&portal)?;
    portal.rename(&agent_id, AGENT_NAME).await?;
    portal
        .api_ok(
            Method::PUT,
            &format!("/agents/{agent_id}/group"),
            Some(json!({ "group": group_id })),
            StatusCode::OK,
        )
        .await?;

    // The member's invitation: the mailed link opens the password form; a guessable password is
    // refused with advice, a good one is set.
    let mail = smtp.wait_for(MEMBER, "invited you", WAIT).await?;
    let links = mail.links();
    let link = links.first().context("the invitation has no link")?;
    assert!(
        link.starts_with(&format!("{public_url}/")),
        "the link {link} is on the configured public address"
    );
    browser.goto(link).await?;
    browser.wait_for("#set-password", WAIT).await?;
    assert!(browser.text("main").await?.contains(MEMBER));
    // Too short: the browser itself holds the form back (the field's minlength).
    browser.fill("#password", "gina2024").await?;
    browser.click("#set-password").await?;
    let held = browser
        .execute(
            "return [document.querySelector('#password').matches(':invalid'),
                     document.querySelector('.notice') === null];",
            vec![],
        )
        .await?;
    assert_eq!(held, json!([true, true]), "a short password is not sent");
    browser.fill("#password", "password1234").await?;
    browser.click("#set-password").await?;
    browser
        .wait_for_text(".notice.error", "too easy to guess", WAIT)
        .await
        .context("a weak password is refused with advice")?;
    browser.screenshot("member-weak-password").await?;
    browser.fill("#password", MEMBER_PASSWORD).await?;
    browser.click("#set-password").await?;
    browser.wait_for("#sign-in", WAIT).await?;

    // First sign-in: no code yet; the group's agent is listed.
    assert_eq!(
        sign_in(&browser, &base, MEMBER, MEMBER_PASSWORD).await?,
        "/agents"
    );
    browser.wait_for("#agents", WAIT).await?;
    let rows = browser.texts("#agents tbody tr").await?;
    assert!(
        rows.len() == 1 && rows[0].contains(AGENT_NAME),
        "the group admin sees the group's agent: {rows:?}"
    );

    // Turning two-factor sign-in on: the password first (a wrong one refused), then a code of the secret
    // shown; the recovery codes are shown once.
    let mut clock = StepClock::new()?;
    browser.goto(&format!("{base}/account/security")).await?;
    browser
        .wait_for_text("#two-factor-status", "off", WAIT)
        .await?;
    browser.fill("#password", "not my password").await?;
    browser.click("#start-2fa").await?;
    browser
        .wait_for_text(".notice.error", "password is wrong", WAIT)
        .await?;
    browser.fill("#password", MEMBER_PASSWORD).await?;
    browser.click("#start-2fa").await?;
    let (secret, enrolled_at, recovery) =
        confirm_enrolment(&browser, &portal, &mut clock, "member-enrol").await?;
    browser.screenshot("member-recovery-codes").await?;
    browser.click("main a.button").await?;
    browser
        .wait_for_text("#two-factor-status", "on", WAIT)
        .await?;
    browser
        .wait_for_text("#recovery-left", "Recovery codes left: 10", WAIT)
        .await?;
    let security = browser.text("main").await?;
    assert!(
        !security.contains(&recovery[0]),
        "recovery codes are shown once"
    );
    assert_eq!(user(&portal, MEMBER).await?["two_factor"], true);

    // Signing in now asks for a code, and nothing else is reachable meanwhile. A wrong code and the code
    // already used to turn it on are refused; the next step's code with "remember this device" is
    // accepted.
    sign_out(&browser).await?;
    assert_eq!(
        sign_in(&browser, &base, MEMBER, MEMBER_PASSWORD).await?,
        "/sign-in/code"
    );
    browser.wait_for("#verify-code", WAIT).await?;
    browser.screenshot("member-code-step").await?;
    browser.goto(&format!("{base}/agents")).await?;
    browser.wait_for("#verify-code", WAIT).await?;
    assert_eq!(path(&browser).await?, "/sign-in/code");
    let at = clock.fresh_step(&portal).await?;
    let right = totp::code_at(&secret, at)?;
    let used = totp::code_at(&secret, enrolled_at)?;
    let wrong = if right == "000000" {
        "999999"
    } else {
        "000000"
    };
    code_refused(&browser, wrong, "the code is wrong").await?;
    browser
        .wait_for_text(".notice.error", "4 tries left", WAIT)
        .await?;
    if used != right {
        code_refused(&browser, &used, "already used").await?;
    }
    browser.screenshot("member-code-refused").await?;
    browser.fill("#code", &right).await?;
    browser.click("#remember").await?;
    browser.click("#verify-code").await?;
    browser.wait_for("#agents", WAIT).await?;
    assert_eq!(path(&browser).await?, "/agents");
    assert!(
        browser.cookie("outpost_device").await?.is_some(),
        "the device is remembered"
    );

    // A remembered device: the next sign-in asks for no code.
    sign_out(&browser).await?;
    assert_eq!(
        sign_in(&browser, &base, MEMBER, MEMBER_PASSWORD).await?,
        "/agents",
        "a remembered device skips the code"
    );
    browser.wait_for("#agents", WAIT).await?;

    // The security page lists the device; removing it makes the next sign-in ask again.
    browser.goto(&format!("{base}/account/security")).await?;
    browser.wait_for("#devices", WAIT).await?;
    let devices = browser.texts("#devices tbody tr").await?;
    assert!(
        devices.len() == 1 && devices[0].contains("Chrome") && devices[0].contains("Linux"),
        "{devices:?}"
    );
    browser.screenshot("member-remembered-device").await?;
    browser
        .click("#devices form[action='/account/two-factor/devices/remove'] button")
        .await?;
    browser
        .wait_for_text(".notice", "no longer remembered", WAIT)
        .await?;
    assert!(browser.texts("#devices tbody tr").await?.is_empty());
    sign_out(&browser).await?;
    assert_eq!(
        sign_in(&browser, &base, MEMBER, MEMBER_PASSWORD).await?,
        "/sign-in/code",
        "a removed device no longer skips the code"
    );

    // A recovery code signs in once (typed as shown); the second time it is refused.
    browser.fill("#code", &recovery[0]).await?;
    browser.click("#verify-code").await?;
    browser.wait_for("#agents", WAIT).await?;
    browser.goto(&format!("{base}/account/security")).await?;
    browser
        .wait_for_text("#recovery-left", "Recovery codes left: 9", WAIT)
        .await?;
    sign_out(&browser).await?;
    assert_eq!(
        sign_in(&browser, &base, MEMBER, MEMBER_PASSWORD).await?,
        "/sign-in/code"
    );
    code_refused(&browser, &recovery[0], "used already").await?;
    browser.screenshot("member-recovery-code-reused").await?;
    sign_out(&browser).await?;

    // The supervisor: the company requires two-factor sign-in of them, so their first sign-in lands on
    // the setup, and every other page leads back there until a code confirms it.
    portal
        .api_ok(
            Method::PATCH,
            &format!("/users/{supervisor_id}"),
            Some(json!({ "require_2fa": true })),
            StatusCode::OK,
        )
        .await?;
    let mail = smtp.wait_for(SUPERVISOR, "invited you", WAIT).await?;
    let link = mail
        .links()
        .into_iter()
        .next()
        .context("the invitation has no link")?;
    set_password(&browser, &link, SUPERVISOR_PASSWORD).await?;
    assert_eq!(
        sign_in(&browser, &base, SUPERVISOR, SUPERVISOR_PASSWORD).await?,
        "/account/two-factor/setup"
    );
    browser
        .wait_for_text(".notice", "requires two-factor sign-in", WAIT)
        .await?;
    browser.screenshot("supervisor-forced-setup").await?;
    for elsewhere in ["/agents", "/account", "/account/security"] {
        browser.goto(&format!("{base}{elsewhere}")).await?;
        browser.wait_for("#confirm-2fa", WAIT).await?;
        assert_eq!(
            path(&browser).await?,
            "/account/two-factor/setup",
            "{elsewhere} leads back to the setup"
        );
    }
    let (_, _, codes) =
        confirm_enrolment(&browser, &portal, &mut clock, "supervisor-setup-secret").await?;
    assert!(codes.iter().all(|c| !recovery.contains(c)));
    browser.click("main a.button").await?;
    browser.wait_for("#agents", WAIT).await?;
    assert_eq!(path(&browser).await?, "/agents");
    assert_eq!(user(&portal, SUPERVISOR).await?["two_factor"], true);

    // The supervisor's agent page: every form inside a disabled fieldset, a note saying why, and no
    // cleanup or delete buttons.
    browser.goto(&format!("{base}/agents/{agent_id}")).await?;
    browser.wait_for("#read-only", WAIT).await?;
    let state = browser
        .execute(
            "return {
                 fieldsets: document.querySelectorAll('fieldset.plain').length,
                 enabled: document.querySelectorAll('fieldset.plain:not([disabled])').length,
                 renameDisabled: document.querySelector('#rename').matches(':disabled'),
                 nameDisabled: document.querySelector('#name').matches(':disabled'),
                 siteDisabled: document.querySelector('#save-site').matches(':disabled'),
                 cleanup: document.querySelector('#cleanup') !== null,
                 remove: document.querySelector('#delete') !== null,
             };",
            vec![],
        )
        .await?;
    assert!(
        state["fieldsets"].as_u64().unwrap_or(0) >= 4,
        "rename, site, owner and subscription forms: {state}"
    );
    assert_eq!(state["enabled"], 0, "no form is enabled: {state}");
    for control in ["renameDisabled", "nameDisabled", "siteDisabled"] {
        assert_eq!(state[control], true, "{control}: {state}");
    }
    assert_eq!(state["cleanup"], false, "{state}");
    assert_eq!(state["remove"], false, "{state}");
    assert!(browser.text("#read-only").await?.contains("Supervisor"));
    browser.screenshot("supervisor-agent-read-only").await?;

    // Forged anyway: a form enabled by script and submitted is refused by the server, and so are a
    // rename and a delete posted with the supervisor's session cookie and CSRF token.
    let csrf = browser
        .attr("input[name=csrf]", "value")
        .await?
        .context("the page's CSRF token")?;
    browser
        .execute(
            "const form = document.querySelector('form[action$=\"/rename\"]');
             form.closest('fieldset').disabled = false;
             form.querySelector('#name').value = 'Forged by script';
             form.submit();",
            vec![],
        )
        .await?;
    browser
        .wait_for_text(".notice.error", "may not do this", WAIT)
        .await?;
    browser.screenshot("supervisor-forged-post-refused").await?;
    let session = browser
        .cookie("outpost_session")
        .await?
        .context("the supervisor's session cookie")?;
    for (action, fields) in [
        ("rename", vec![("csrf", csrf.as_str()), ("name", "Forged")]),
        ("delete", vec![("csrf", csrf.as_str()), ("confirm", "yes")]),
        (
            "site",
            vec![("csrf", csrf.as_str()), ("first_name", "Forged")],
        ),
    ] {
        let resp = portal
            .http()
            .post(format!("{base}/agents/{agent_id}/{action}"))
            .header("cookie", format!("outpost_session={}", session.value()))
            .header("origin", &base)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&fields))
            .send()
            .await?;
        let status = resp.status();
        let text = resp.text().await?;
        assert_eq!(status, StatusCode::FORBIDDEN, "{action}: {text}");
        assert!(text.contains("may not do this"), "{action}: {text}");
    }
    // The same session may still read: the refusals were about the role, not a broken session.
    let page = portal
        .http()
        .get(format!("{base}/agents/{agent_id}"))
        .header("cookie", format!("outpost_session={}", session.value()))
        .send()
        .await?;
    assert_eq!(page.status(), StatusCode::OK);
    let agent_now = portal.agent(&agent_id).await?;
    assert_eq!(
        agent_now["name"], AGENT_NAME,
        "nothing changed: {agent_now}"
    );

    // The two-factor steps are in the account history, as done by the member, from the browser's address.
    let history = portal
        .api_ok(Method::GET, "/history?actor=user:", None, StatusCode::OK)
        .await?;
    let entries = history["entries"]
        .as_array()
        .context("the history has no entries")?;
    for action in [
        "2fa-enabled",
        "sign-in-code-failed",
        "trusted-device-removed",
        "recovery-code-used",
    ] {
        let line = entries
            .iter()
            .find(|e| e["action"] == action)
            .with_context(|| format!("no {action} in the history: {history}"))?;
        assert_eq!(line["address"], "127.0.0.1", "{line}");
    }
    browser.close().await?;
    drop(agent);
    Ok(())
}
