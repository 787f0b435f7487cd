//! Renewals of yearly and quarterly plans on the harness clock: the orange flag 28 days ahead, the weekly
//! reminders through a real SMTP server (to the company admins and the admins of the agent's group and its
//! parent groups; not to supervisors, other groups' admins or another company), at most four, the
//! automatic renewal and its red flag, the decisions (confirm, deactivate at the end of the period) over
//! the API and the page, who may decide, and what happens without a working mailer.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::http::{Method, StatusCode};
use chrono::{DateTime, Duration, TimeZone, Utc};
use outpost_portal::access::Role;
use outpost_portal::config::{SmtpSecurity, SmtpSettings};
use outpost_portal::mail::Mailer;
use outpost_portal::store::renewals;
use outpost_tests::smtp::SmtpCapture;
use serde_json::{json, Value};

use crate::harness::{
    activation_body, agent_lines, form, id_of, request, start_time, Auth, Harness, Options, Page,
    Req, PUBLIC_URL,
};
use crate::people::{group, other_company_user, token_for};

const PASSWORD: &str = "correct horse battery staple";

fn smtp_settings(port: u16) -> SmtpSettings {
    let mut s = SmtpSettings::new(
        "127.0.0.1",
        SmtpSecurity::None,
        "Outpost <portal@example.com>".parse().unwrap(),
    );
    s.port = port;
    s.timeout = StdDuration::from_secs(5);
    s
}

async fn with_mailer(port: u16) -> Harness {
    let mailer = Mailer::new(&smtp_settings(port)).unwrap();
    Harness::with(Options {
        mailer: Some(Arc::new(mailer)),
        ..Options::default()
    })
    .await
}

/// Activates `name` with a new code of `plan` (into `group`, if given); its id.
async fn activate_on(h: &Harness, name: &str, plan: &str, group: Option<i64>) -> String {
    let made = h
        .op(
            Method::POST,
            "/api/v1/activation-codes",
            Some(json!({ "plan": plan, "group": group })),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    assert_eq!(made.body["plan"], plan);
    let code = made.body["code"].as_str().unwrap();
    let resp = h
        .call(
            Method::POST,
            "/api/v1/activate",
            Some(activation_body(code, name)),
            Auth::None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{:?}", resp.body);
    id_of(&resp.body)
}

/// Sets the clock and runs both sweeps, as the sweeper does; the renewal sweep's outcome.
async fn at(h: &Harness, now: DateTime<Utc>) -> (usize, usize) {
    h.clock.set(now);
    h.app.sweep().await.unwrap();
    let done = h.app.sweep_renewals().await.unwrap();
    (done.renewed, done.reminders)
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn decide(h: &Harness, token: &str, agent: &str, decision: &str) -> crate::harness::Response {
    h.call(
        Method::POST,
        &format!("/api/v1/agents/{agent}/renewal"),
        Some(json!({ "decision": decision })),
        Auth::Bearer(token),
    )
    .await
}

/// The ids of the agents `GET /agents?{query}` lists.
async fn listed(h: &Harness, query: &str) -> Vec<String> {
    let resp = h
        .op(Method::GET, &format!("/api/v1/agents?{query}"), None)
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    resp.body["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The group's `due_for_renewal` in the groups list.
async fn group_due(h: &Harness, id: i64) -> Value {
    let resp = h.op(Method::GET, "/api/v1/groups", None).await;
    resp.body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == id)
        .unwrap()["due_for_renewal"]
        .clone()
}

/// Every mail the server holds, as (recipient, subject), sorted.
fn mails(smtp: &SmtpCapture) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = smtp
        .messages()
        .unwrap()
        .into_iter()
        .map(|m| (m.to.join(","), m.subject))
        .collect();
    out.sort();
    out
}

/// Waits until the server holds `n` mails (each send is awaited, so they are there or on their way).
async fn wait_count(smtp: &SmtpCapture, n: usize) -> Vec<(String, String)> {
    let deadline = std::time::Instant::now() + StdDuration::from_secs(20);
    loop {
        let got = mails(smtp);
        if got.len() >= n || std::time::Instant::now() > deadline {
            assert_eq!(got.len(), n, "{got:#?}");
            return got;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
}

const TO: [&str; 3] = [
    "boss@example.com",
    "ga-east@example.com",
    "ga-north@example.com",
];

#[tokio::test]
async fn a_yearly_renewal_is_flagged_reminded_four_times_renewed_and_decided() {
    let smtp = SmtpCapture::start().unwrap();
    let h = with_mailer(smtp.port()).await;
    let north = group(&h, "North", None).await;
    let east = group(&h, "East", Some(north)).await;
    group(&h, "West", None).await;
    h.add_user("boss@example.com", Role::CompanyAdmin, None, PASSWORD)
        .await;
    h.add_user(
        "ga-north@example.com",
        Role::GroupAdmin,
        Some("North"),
        PASSWORD,
    )
    .await;
    h.add_user(
        "ga-east@example.com",
        Role::GroupAdmin,
        Some("East"),
        PASSWORD,
    )
    .await;
    h.add_user(
        "ga-west@example.com",
        Role::GroupAdmin,
        Some("West"),
        PASSWORD,
    )
    .await;
    h.add_user("sup@example.com", Role::Supervisor, Some("East"), PASSWORD)
        .await;
    // An admin of another company, with a password, gets nothing about this company's agents.
    let foreign = other_company_user(&h, "boss@other.example", Role::CompanyAdmin, None).await;
    let hash = outpost_portal::passwords::hash_argon2(
        PASSWORD,
        outpost_portal::passwords::PasswordCost::for_tests(),
    )
    .unwrap();
    outpost_portal::store::users::set_password(
        &mut h.app.store().conn().await.unwrap(),
        foreign,
        &hash,
        start_time(),
    )
    .await
    .unwrap();

    let agent = activate_on(&h, "shop", "yearly", Some(east)).await;
    let renews = start_time() + chrono::Months::new(12);
    assert_eq!(renews, Utc.with_ymd_and_hms(2027, 1, 15, 12, 0, 0).unwrap());
    let view = h.agent(&agent).await;
    assert_eq!(view["plan"], "yearly");
    assert_eq!(view["subscription"]["plan"], "yearly");
    assert_eq!(view["renews_at"], time(renews));
    assert_eq!(view["subscription"]["expires_at"], time(renews));
    assert_eq!(view["renewal"], Value::Null);
    let activated = agent_lines(
        &h.op(
            Method::GET,
            &format!("/api/v1/agents/{agent}/history"),
            None,
        )
        .await
        .body,
    );
    assert!(
        activated[0]["details"]
            .as_str()
            .unwrap()
            .starts_with("plan yearly, renews on 2027-01-15"),
        "{activated:?}"
    );

    // 29 days before: nothing.
    assert_eq!(at(&h, renews - Duration::days(29)).await, (0, 0));
    assert_eq!(h.agent(&agent).await["renewal"], Value::Null);
    assert_eq!(group_due(&h, east).await, 0);

    // 28 days before: orange, and the first reminder to each admin concerned.
    let first = renews - Duration::days(28);
    assert_eq!(at(&h, first).await, (0, 1));
    assert_eq!(h.agent(&agent).await["renewal"], "due");
    assert_eq!(listed(&h, "renewal=due").await, vec![agent.clone()]);
    assert!(listed(&h, "renewal=overdue").await.is_empty());
    assert_eq!(group_due(&h, east).await, 1);
    let got = wait_count(&smtp, 3).await;
    let expected: Vec<(String, String)> = TO
        .iter()
        .map(|to| {
            (
                (*to).to_owned(),
                "Reminder: shop renews on Friday 15 January 2027".to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got, expected,
        "not the supervisor, West's admin or the other company"
    );
    let mail = smtp
        .wait_for("ga-north@example.com", "renews", StdDuration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        mail.links(),
        [format!("{PUBLIC_URL}/agents/{agent}/renewal")]
    );
    assert!(mail.text.contains("reminder 1 of 4"), "{}", mail.text);

    // Six days later: nothing new; seven: the second.
    assert_eq!(at(&h, first + Duration::days(6)).await, (0, 0));
    assert_eq!(mails(&smtp).len(), 3);
    assert_eq!(at(&h, first + Duration::days(7)).await, (0, 1));
    wait_count(&smtp, 6).await;
    assert_eq!(at(&h, first + Duration::days(14)).await, (0, 1));
    assert_eq!(at(&h, first + Duration::days(21)).await, (0, 1));
    let got = wait_count(&smtp, 12).await;
    let last: Vec<_> = got
        .iter()
        .filter(|(_, s)| s.starts_with("Last reminder: shop renews"))
        .collect();
    assert_eq!(last.len(), 3, "{got:#?}");
    // The fourth was the last: nothing more before the date, even a week on.
    assert_eq!(at(&h, renews - Duration::minutes(1)).await, (0, 0));
    let mut conn = h.app.store().conn().await.unwrap();
    let sent = renewals::get(
        &mut conn,
        &outpost_cloud_link::AgentId::parse(&agent).unwrap(),
        renews,
    )
    .await
    .unwrap();
    drop(conn);
    assert_eq!(sent.sent, 4);

    // The date passes without a decision: renewed automatically (red), a year on, still working.
    assert_eq!(at(&h, renews).await, (1, 0));
    let next = renews + chrono::Months::new(12);
    let view = h.agent(&agent).await;
    assert_eq!(view["status"], "active");
    assert_eq!(view["renewal"], "overdue");
    assert_eq!(view["renews_at"], time(next));
    assert_eq!(listed(&h, "renewal=overdue").await, vec![agent.clone()]);
    assert!(listed(&h, "renewal=due").await.is_empty());
    assert!(!h.broker.calls().iter().any(|c| c.starts_with("disable")));
    let history = agent_lines(
        &h.op(
            Method::GET,
            &format!("/api/v1/agents/{agent}/history"),
            None,
        )
        .await
        .body,
    );
    let renewed = history.iter().find(|e| e["action"] == "renewed").unwrap();
    assert_eq!(renewed["actor"], "system");
    assert_eq!(
        renewed["details"],
        "renewed automatically until 2028-01-15T12:00:00+00:00"
    );
    assert_eq!(at(&h, renews + Duration::days(7)).await, (0, 0), "once");
    assert_eq!(mails(&smtp).len(), 12);

    // A supervisor may not decide; a company admin confirms: the red flag goes.
    let sup = token_for(&h, "sup@example.com", false).await;
    let refused = decide(&h, &sup, &agent, "confirm").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.error(), "forbidden");
    let boss = token_for(&h, "boss@example.com", false).await;
    let confirmed = decide(&h, &boss, &agent, "confirm").await;
    assert_eq!(confirmed.status, StatusCode::OK, "{:?}", confirmed.body);
    assert_eq!(confirmed.body["renewal"], Value::Null);
    assert_eq!(confirmed.body["renews_at"], time(next));
    let history = agent_lines(
        &h.op(
            Method::GET,
            &format!("/api/v1/agents/{agent}/history"),
            None,
        )
        .await
        .body,
    );
    let line = history
        .iter()
        .find(|e| e["action"] == "renewal_confirmed")
        .unwrap();
    assert!(
        line["actor"].as_str().unwrap().starts_with("user:boss"),
        "{line}"
    );
    assert!(line["details"]
        .as_str()
        .unwrap()
        .contains("automatic renewal accepted"));

    // Accepting that renewal did not decide the next one: orange and a reminder again 28 days before.
    assert_eq!(at(&h, next - Duration::days(28)).await, (0, 1));
    assert_eq!(h.agent(&agent).await["renewal"], "due");
    let got = wait_count(&smtp, 15).await;
    assert!(got.iter().any(|(to, s)| to == "boss@example.com"
        && s == "Reminder: shop renews on Saturday 15 January 2028"));

    // The group's admin requests the deactivation: at the end of the period, when it takes effect.
    let ga = token_for(&h, "ga-east@example.com", false).await;
    let declined = decide(&h, &ga, &agent, "deactivate").await;
    assert_eq!(declined.status, StatusCode::OK, "{:?}", declined.body);
    assert_eq!(declined.body["status"], "deactivation_pending");
    assert_eq!(declined.body["subscription"]["deactivates_at"], time(next));
    assert_eq!(declined.body["renewal"], Value::Null);
    assert_eq!(group_due(&h, east).await, 0);
    let history = agent_lines(
        &h.op(
            Method::GET,
            &format!("/api/v1/agents/{agent}/history"),
            None,
        )
        .await
        .body,
    );
    let line = history.last().unwrap();
    assert_eq!(line["action"], "deactivation_requested");
    assert!(
        line["actor"].as_str().unwrap().starts_with("user:ga-east"),
        "{line}"
    );
    assert_eq!(
        line["details"],
        "renewal declined; takes effect at 2028-01-15T12:00:00+00:00"
    );
    assert_eq!(
        at(&h, next - Duration::days(21)).await,
        (0, 0),
        "no more reminders"
    );
    assert_eq!(at(&h, next - Duration::seconds(1)).await, (0, 0));
    assert_eq!(h.agent(&agent).await["status"], "deactivation_pending");
    assert_eq!(at(&h, next).await, (0, 0));
    let view = h.agent(&agent).await;
    assert_eq!(view["status"], "deactivated");
    assert_eq!(view["renews_at"], Value::Null);
    assert!(h.broker.calls().contains(&format!("disable {agent}")));
    assert_eq!(mails(&smtp).len(), 15);
}

#[tokio::test]
async fn a_quarterly_renewal_confirmed_in_time_renews_without_a_red_flag() {
    let h = Harness::new().await;
    group(&h, "North", None).await;
    h.add_user("ga@example.com", Role::GroupAdmin, Some("North"), PASSWORD)
        .await;
    let north = h.op(Method::GET, "/api/v1/groups", None).await.body["groups"][0]["id"]
        .as_i64()
        .unwrap();
    let agent = activate_on(&h, "kiosk", "quarterly", Some(north)).await;
    let renews = Utc.with_ymd_and_hms(2026, 4, 15, 12, 0, 0).unwrap();
    assert_eq!(h.agent(&agent).await["renews_at"], time(renews));

    // No mailer: flagged, nothing recorded (the reminders go out once a mailer is configured).
    assert_eq!(at(&h, renews - Duration::days(28)).await, (0, 0));
    assert_eq!(h.agent(&agent).await["renewal"], "due");
    let id = outpost_cloud_link::AgentId::parse(&agent).unwrap();
    let mut conn = h.app.store().conn().await.unwrap();
    assert_eq!(renewals::get(&mut conn, &id, renews).await.unwrap().sent, 0);
    drop(conn);

    let ga = token_for(&h, "ga@example.com", false).await;
    let bad = decide(&h, &ga, &agent, "renew").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body["message"]
        .as_str()
        .unwrap()
        .contains("confirm or deactivate"));
    let ok = decide(&h, &ga, &agent, "confirm").await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    assert_eq!(ok.body["renewal"], Value::Null);
    assert_eq!(at(&h, renews).await, (1, 0));
    let view = h.agent(&agent).await;
    let next = Utc.with_ymd_and_hms(2026, 7, 15, 12, 0, 0).unwrap();
    assert_eq!(view["renews_at"], time(next));
    assert_eq!(view["renewal"], Value::Null, "confirmed: not red");
    let history = agent_lines(
        &h.op(
            Method::GET,
            &format!("/api/v1/agents/{agent}/history"),
            None,
        )
        .await
        .body,
    );
    assert!(history.iter().any(|e| e["action"] == "renewed"
        && e["details"] == "renewed until 2026-07-15T12:00:00+00:00, as confirmed"));

    // Declined for the next period: deactivated at its end.
    let declined = decide(&h, &ga, &agent, "deactivate").await;
    assert_eq!(declined.body["subscription"]["deactivates_at"], time(next));
    let again = decide(&h, &ga, &agent, "confirm").await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.body["message"]
        .as_str()
        .unwrap()
        .contains("deactivation_pending"));
    assert_eq!(at(&h, next).await, (0, 0));
    assert_eq!(h.agent(&agent).await["status"], "deactivated");

    // Monthly and prepaid agents have no renewal to decide.
    let monthly = id_of(&h.activate("plain").await);
    let prepaid = id_of(&h.activate_with("paid", Some(6)).await);
    for (id, plan) in [(&monthly, "monthly"), (&prepaid, "prepaid")] {
        let refused = decide(&h, &h.token, id, "confirm").await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{plan}");
        assert_eq!(refused.error(), "conflict");
        assert!(
            refused.body["message"]
                .as_str()
                .unwrap()
                .contains(&format!("{plan} plan, which has no renewal date")),
            "{:?}",
            refused.body
        );
        assert_eq!(h.agent(id).await["renews_at"], Value::Null);
    }
}

#[tokio::test]
async fn codes_refuse_plans_that_do_not_fit() {
    let h = Harness::new().await;
    for (body, field) in [
        (json!({ "plan": "weekly" }), "plan"),
        (json!({ "plan": "prepaid" }), "prepaid_months"),
        (
            json!({ "plan": "yearly", "prepaid_months": 12 }),
            "prepaid_months",
        ),
    ] {
        let resp = h
            .op(Method::POST, "/api/v1/activation-codes", Some(body))
            .await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{:?}", resp.body);
        assert!(
            resp.body["message"].as_str().unwrap().starts_with(field),
            "{:?}",
            resp.body
        );
    }
    let old_style = h
        .op(
            Method::POST,
            "/api/v1/activation-codes",
            Some(json!({ "prepaid_months": 3 })),
        )
        .await;
    assert_eq!(old_style.body["plan"], "prepaid");
    let plain = h
        .op(Method::POST, "/api/v1/activation-codes", Some(json!({})))
        .await;
    assert_eq!(plain.body["plan"], "monthly");
}

#[tokio::test]
async fn a_reminder_nobody_received_is_not_counted() {
    // Nothing listens on this port: every send fails.
    let port = outpost_tests::free_port().unwrap();
    let h = with_mailer(port).await;
    h.add_user("boss@example.com", Role::CompanyAdmin, None, PASSWORD)
        .await;
    let agent = activate_on(&h, "shop", "yearly", None).await;
    let renews = start_time() + chrono::Months::new(12);
    assert_eq!(at(&h, renews - Duration::days(28)).await, (0, 0));
    let id = outpost_cloud_link::AgentId::parse(&agent).unwrap();
    let mut conn = h.app.store().conn().await.unwrap();
    assert_eq!(
        renewals::get(&mut conn, &id, renews).await.unwrap(),
        renewals::Reminders::default(),
        "retried at the next sweep"
    );
}

/// The CSRF token a page's forms carry.
fn csrf(page: &Page) -> String {
    let at = page.text.find("name=\"csrf\" value=\"").unwrap();
    let rest = &page.text[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

async fn sign_in(h: &Harness, email: &str) -> String {
    let page = request(
        h,
        Method::POST,
        "/sign-in",
        Req {
            form: Some(form(&[("email", email), ("password", PASSWORD)])),
            ..Req::default()
        },
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    page.session()
}

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

#[tokio::test]
async fn the_renewal_page_shows_the_facts_and_decides() {
    let h = Harness::new().await;
    h.add_user("boss@example.com", Role::CompanyAdmin, None, PASSWORD)
        .await;
    h.add_user("sup@example.com", Role::Supervisor, Some("North"), PASSWORD)
        .await;
    let north = h.op(Method::GET, "/api/v1/groups", None).await.body["groups"][0]["id"]
        .as_i64()
        .unwrap();
    let agent = activate_on(&h, "shop", "yearly", Some(north)).await;
    let renews = start_time() + chrono::Months::new(12);
    at(&h, renews - Duration::days(10)).await;
    let cookie = sign_in(&h, "boss@example.com").await;

    let list = get(&h, "/agents?renewal=due", &cookie).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.text.contains("data-renewal=\"due\""), "{}", list.text);
    assert!(list.text.contains(&agent));
    let none = get(&h, "/agents?renewal=overdue", &cookie).await;
    assert!(!none.text.contains(&format!("data-agent=\"{agent}\"")));
    let agent_page = get(&h, &format!("/agents/{agent}"), &cookie).await;
    assert!(agent_page
        .text
        .contains(&format!("href=\"/agents/{agent}/renewal\"")));
    assert!(agent_page.text.contains("renewal due"));

    let page = get(&h, &format!("/agents/{agent}/renewal"), &cookie).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    for fact in [
        "Yearly",
        "2027-01-15 12:00 UTC",
        "renewal due",
        "0 of 4",
        "Confirm the renewal",
        "Request deactivation",
    ] {
        assert!(page.text.contains(fact), "{fact}: {}", page.text);
    }
    let token = csrf(&page);
    let posted = request(
        &h,
        Method::POST,
        &format!("/agents/{agent}/renewal"),
        Req {
            cookie: Some(&cookie),
            form: Some(form(&[("csrf", &token), ("decision", "confirm")])),
            headers: vec![("origin", "https://portal.example:8443".into())],
            ..Req::default()
        },
    )
    .await;
    assert_eq!(posted.status, StatusCode::SEE_OTHER, "{}", posted.text);
    assert_eq!(
        posted.location(),
        format!("/agents/{agent}/renewal?ok=confirmed")
    );
    let page = get(&h, posted.location(), &cookie).await;
    assert!(page.text.contains("Renewal confirmed."));
    assert!(page.text.contains("renewal confirmed for this date"));
    assert_eq!(h.agent(&agent).await["renewal"], Value::Null);

    // Without the CSRF token: refused, nothing changes.
    let forged = request(
        &h,
        Method::POST,
        &format!("/agents/{agent}/renewal"),
        Req {
            cookie: Some(&cookie),
            form: Some(form(&[("decision", "deactivate")])),
            headers: vec![("origin", "https://portal.example:8443".into())],
            ..Req::default()
        },
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(h.agent(&agent).await["status"], "active");

    // A monthly agent's page says there is nothing to decide, and its post is refused with the reason.
    let monthly = id_of(&h.activate("plain").await);
    let page = get(&h, &format!("/agents/{monthly}/renewal"), &cookie).await;
    assert!(page
        .text
        .contains("monthly plan, which has no renewal date"));
    assert!(!page.text.contains("Confirm the renewal"));
    let refused = request(
        &h,
        Method::POST,
        &format!("/agents/{monthly}/renewal"),
        Req {
            cookie: Some(&cookie),
            form: Some(form(&[("csrf", &token), ("decision", "confirm")])),
            headers: vec![("origin", "https://portal.example:8443".into())],
            ..Req::default()
        },
    )
    .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);

    // A supervisor sees the agent but neither the link nor the page.
    let sup = sign_in(&h, "sup@example.com").await;
    let agent_page = get(&h, &format!("/agents/{agent}"), &sup).await;
    assert_eq!(agent_page.status, StatusCode::OK);
    assert!(!agent_page
        .text
        .contains(&format!("href=\"/agents/{agent}/renewal\"")));
    let page = get(&h, &format!("/agents/{agent}/renewal"), &sup).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
}
