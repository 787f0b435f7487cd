//! The technicians' web pages over HTTP (no browser): sign-in and its refusals, the session cookie, the
//! redirect of a browser without a session, CSRF and same-origin checks, the agents list's search and
//! filters, the site form (saved, refused by field, kept as typed), the CSV export (the API's bytes), the
//! delete refusal for a connected agent, and the confirmation pages. The browser end of the same pages is
//! in tests/tests/e2e/web.rs.

use axum::http::{Method, StatusCode};
use outpost_portal::access::Role;
use serde_json::json;

use crate::harness::{form, id_of, request, Harness, Page, Req};

const EMAIL: &str = "tech@example.com";
const PASSWORD: &str = "a long enough password";

async fn with_operator() -> Harness {
    let h = Harness::new().await;
    let id = h.add_user(EMAIL, Role::CompanyAdmin, None, PASSWORD).await;
    let mut conn = h.app.store().conn().await.unwrap();
    outpost_portal::store::users::set_preferences(
        &mut conn,
        id,
        "Tess Tech",
        "24h",
        "UTC",
        h.app.now(),
    )
    .await
    .unwrap();
    drop(conn);
    h
}

async fn sign_in(h: &Harness) -> String {
    let page = request(
        h,
        Method::POST,
        "/sign-in",
        Req {
            form: Some(form(&[
                ("email", EMAIL),
                ("password", PASSWORD),
                ("next", "/agents?q=x"),
            ])),
            ..Req::default()
        },
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    assert_eq!(page.location(), "/agents?q=x");
    let cookie = page.set_cookie();
    for attr in ["outpost_session=", "HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    page.session()
}

/// The CSRF token the page's forms carry.
fn csrf(page: &Page) -> String {
    let at = page
        .text
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no CSRF field in {}", page.text));
    let rest = &page.text[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
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

async fn post(h: &Harness, path: &str, cookie: &str, fields: &[(&str, &str)]) -> Page {
    request(
        h,
        Method::POST,
        path,
        Req {
            cookie: Some(cookie),
            form: Some(form(fields)),
            headers: vec![("origin", "https://portal.example:8443".into())],
            ..Req::default()
        },
    )
    .await
}

#[tokio::test]
async fn pages_need_a_session_and_sign_in_refuses_wrong_passwords_alike() {
    let h = with_operator().await;
    let page = request(&h, Method::GET, "/agents?q=a%20b", Req::default()).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/sign-in?next=%2Fagents%3Fq%3Da%2520b");
    for (email, password) in [
        (EMAIL, "not the password"),
        ("nobody@example.com", PASSWORD),
    ] {
        let page = request(
            &h,
            Method::POST,
            "/sign-in",
            Req {
                form: Some(form(&[("email", email), ("password", password)])),
                ..Req::default()
            },
        )
        .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
        assert!(
            page.text.contains("the email or password is wrong"),
            "{}",
            page.text
        );
        assert!(page.set_cookie().is_empty());
    }
    // A next that leaves the site is not followed.
    let page = request(
        &h,
        Method::POST,
        "/sign-in",
        Req {
            form: Some(form(&[
                ("email", EMAIL),
                ("password", PASSWORD),
                ("next", "//evil.example/"),
            ])),
            ..Req::default()
        },
    )
    .await;
    assert_eq!(page.location(), "/agents");
    let cookie = sign_in(&h).await;
    let page = get(&h, "/agents", &cookie).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("Tess Tech"));
    assert_eq!(
        page.headers
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.contains("default-src 'none'")),
        Some(true)
    );
    // Sign-out needs the CSRF token, then ends the session.
    let refused = post(&h, "/sign-out", &cookie, &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let token = csrf(&page);
    let out = post(&h, "/sign-out", &cookie, &[("csrf", &token)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.set_cookie().contains("Max-Age=0"));
    let page = get(&h, "/agents", &cookie).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "the session ended");
}

#[tokio::test]
async fn the_list_searches_filters_and_exports_what_it_shows() {
    let h = with_operator().await;
    let a = id_of(&h.activate("alpha").await);
    let b = id_of(&h.activate("bravo").await);
    h.connect(&a, "alpha", 0).await;
    let put = h
        .op(
            Method::PUT,
            &format!("/api/v1/agents/{b}/site"),
            Some(json!({ "customer_id": "=CUST-7", "note": "gate code, \"4711\"" })),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{:?}", put.body);
    let cookie = sign_in(&h).await;

    let all = get(&h, "/agents", &cookie).await;
    assert!(
        all.text.contains(&format!("data-agent=\"{a}\""))
            && all.text.contains(&format!("data-agent=\"{b}\""))
    );
    let found = get(&h, "/agents?q=cust-7", &cookie).await;
    assert_eq!(found.status, StatusCode::OK);
    assert!(found.text.contains(&format!("data-agent=\"{b}\"")));
    assert!(
        !found.text.contains(&format!("data-agent=\"{a}\"")),
        "{}",
        found.text
    );
    let pending = get(&h, "/agents?status=activation_pending", &cookie).await;
    assert!(pending.text.contains(&format!("data-agent=\"{b}\"")));
    assert!(
        !pending.text.contains(&format!("data-agent=\"{a}\"")),
        "alpha has connected"
    );
    let bad = get(&h, "/agents?sort=colour", &cookie).await;
    assert_eq!(bad.status, StatusCode::OK);
    assert!(
        bad.text.contains("role=\"alert\">sort"),
        "a bad parameter is named: {}",
        bad.text
    );
    // The export link carries the filter; its CSV is the API's for the same filter.
    assert!(
        found.text.contains("href=\"/agents.csv?q=cust-7\""),
        "{}",
        found.text
    );
    let page_csv = get(&h, "/agents.csv?q=cust-7", &cookie).await;
    assert_eq!(page_csv.status, StatusCode::OK);
    assert_eq!(
        page_csv.headers.get("content-type").unwrap(),
        "text/csv; charset=utf-8"
    );
    let api_csv = request(
        &h,
        Method::GET,
        "/api/v1/agents.csv?q=cust-7",
        Req {
            headers: vec![("authorization", format!("Bearer {}", h.token))],
            ..Req::default()
        },
    )
    .await;
    assert_eq!(page_csv.text, api_csv.text);
    assert!(
        page_csv.text.contains("'=CUST-7"),
        "formula cells are defused: {}",
        page_csv.text
    );
    assert_eq!(page_csv.text.lines().count(), 2, "{}", page_csv.text);
    // No session, no CSV.
    let anonymous = request(&h, Method::GET, "/agents.csv", Req::default()).await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_site_form_saves_refuses_by_field_and_checks_its_origin() {
    let h = with_operator().await;
    let id = id_of(&h.activate("site").await);
    let cookie = sign_in(&h).await;
    let page = get(&h, &format!("/agents/{id}"), &cookie).await;
    assert_eq!(page.status, StatusCode::OK);
    let token = csrf(&page);
    let path = format!("/agents/{id}/site");
    let fields = [
        ("csrf", token.as_str()),
        ("first_name", "Ana"),
        ("email", "ana@example.pt"),
        ("phones", "+351 21 000 0000\r\n555-0100"),
        ("customer_id", "C-1"),
        ("psa_system", "freshdesk"),
        ("psa_org_id", "org 9"),
        ("pin_latitude", "38.72"),
        ("pin_longitude", "-9.14"),
        ("note", "<script>alert(1)</script>"),
    ];
    let saved = post(&h, &path, &cookie, &fields).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.text);
    assert!(saved
        .location()
        .starts_with(&format!("/agents/{id}?ok=site")));
    let site = h
        .op(Method::GET, &format!("/api/v1/agents/{id}/site"), None)
        .await;
    assert_eq!(
        site.body["contact"]["phones"],
        json!(["+351 21 000 0000", "555-0100"])
    );
    assert_eq!(
        site.body["psa"],
        json!({ "system": "freshdesk", "org_id": "org 9" })
    );
    assert_eq!(
        site.body["pin"],
        json!({ "latitude": 38.72, "longitude": -9.14 })
    );
    let page = get(&h, &format!("/agents/{id}?ok=site"), &cookie).await;
    assert!(page.text.contains("Site configuration saved."));
    assert!(page.text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!page.text.contains("<script>alert"));
    let history = h
        .op(Method::GET, &format!("/api/v1/agents/{id}/history"), None)
        .await;
    assert!(
        history.body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "user:tech"),
        "{:?}",
        history.body
    );

    // Refused: every bad field named, the typed values kept, nothing stored.
    let refused = post(
        &h,
        &path,
        &cookie,
        &[
            ("csrf", token.as_str()),
            ("email", "ana at example"),
            ("pin_latitude", "north"),
            ("phones", "12"),
        ],
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.text.contains("id=\"site-errors\""));
    for needle in [
        "value=\"ana at example\"",
        "id=\"email-error\"",
        "id=\"pin_latitude-error\"",
        "id=\"phones-error\"",
    ] {
        assert!(refused.text.contains(needle), "{needle}: {}", refused.text);
    }
    let site = h
        .op(Method::GET, &format!("/api/v1/agents/{id}/site"), None)
        .await;
    assert_eq!(site.body["contact"]["email"], "ana@example.pt");

    // Another site's form, or no token: refused before anything happens.
    let cross = request(
        &h,
        Method::POST,
        &path,
        Req {
            cookie: Some(&cookie),
            form: Some(form(&[
                ("csrf", token.as_str()),
                ("email", "x@example.com"),
            ])),
            headers: vec![("origin", "https://evil.example".into())],
            ..Req::default()
        },
    )
    .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    let no_token = post(&h, &path, &cookie, &[("email", "x@example.com")]).await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    let site = h
        .op(Method::GET, &format!("/api/v1/agents/{id}/site"), None)
        .await;
    assert_eq!(site.body["contact"]["email"], "ana@example.pt");
}

#[tokio::test]
async fn destructive_actions_ask_first_and_a_connected_agent_is_not_deleted() {
    let h = with_operator().await;
    let id = id_of(&h.activate("keep").await);
    h.connect(&id, "keep", 0).await;
    let cookie = sign_in(&h).await;
    let page = get(&h, &format!("/agents/{id}/delete"), &cookie).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text.contains("must be disconnected first"),
        "{}",
        page.text
    );
    assert!(page.text.contains("connected right now"));
    let token = csrf(&page);
    // Without the confirmation field nothing happens.
    let unconfirmed = post(
        &h,
        &format!("/agents/{id}/delete"),
        &cookie,
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(unconfirmed.status, StatusCode::SEE_OTHER);
    assert_eq!(
        h.op(Method::GET, &format!("/api/v1/agents/{id}"), None)
            .await
            .status,
        StatusCode::OK
    );
    let refused = post(
        &h,
        &format!("/agents/{id}/delete"),
        &cookie,
        &[("csrf", &token), ("confirm", "yes")],
    )
    .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
    assert!(
        refused.text.contains("the agent is connected"),
        "{}",
        refused.text
    );
    assert_eq!(
        h.op(Method::GET, &format!("/api/v1/agents/{id}"), None)
            .await
            .status,
        StatusCode::OK
    );

    let cleanup = get(&h, &format!("/agents/{id}/cleanup"), &cookie).await;
    assert!(cleanup.text.contains("cannot be undone"));
    let done = post(
        &h,
        &format!("/agents/{id}/cleanup"),
        &cookie,
        &[("csrf", &token), ("confirm", "yes")],
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    assert_eq!(done.location(), format!("/agents/{id}?ok=cleanup"));
    let renamed = post(
        &h,
        &format!("/agents/{id}/rename"),
        &cookie,
        &[("csrf", &token), ("name", "")],
    )
    .await;
    assert_eq!(
        renamed.status,
        StatusCode::BAD_REQUEST,
        "an empty name is refused with the page"
    );
    assert!(renamed.text.contains("role=\"alert\""));
}

#[tokio::test]
async fn the_map_places_sites_by_pin_or_geoip_and_colours_them_by_state() {
    use outpost_cloud_link::geoip::{Location, LocationReport, LocationSource, LOCATION_REPORT};
    use outpost_cloud_link::protocol::{AgentMessage, Report};

    let h = with_operator().await;
    let located = id_of(&h.activate("located").await);
    let pinned = id_of(&h.activate("pinned").await);
    let nowhere = id_of(&h.activate("nowhere").await);
    h.connect(&located, "located", 0).await;
    let renamed = h
        .op(
            Method::PATCH,
            &format!("/api/v1/agents/{located}"),
            Some(json!({ "name": "Lisbon <office>" })),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{:?}", renamed.body);
    let report = LocationReport::found(Location {
        ip: "203.0.113.7".into(),
        country_code: Some("PT".into()),
        country: Some("Portugal".into()),
        region: Some("Lisbon".into()),
        city: Some("Lisbon".into()),
        latitude: 38.72,
        longitude: -9.14,
        accuracy_radius_km: Some(20),
        database: "Test-City".into(),
        database_built: "2026-11-01".into(),
        source: LocationSource::Agent,
    });
    h.send(
        &located,
        0,
        AgentMessage::Report(Report {
            kind: LOCATION_REPORT.into(),
            body: serde_json::to_value(&report).unwrap(),
        }),
    )
    .await;
    let put = h
        .op(
            Method::PUT,
            &format!("/api/v1/agents/{pinned}/site"),
            Some(json!({ "pin": { "latitude": -33.87, "longitude": 151.21 } })),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{:?}", put.body);
    let cookie = sign_in(&h).await;

    let map = get(&h, "/map", &cookie).await;
    assert_eq!(map.status, StatusCode::OK);
    assert!(map.text.contains("2 of 3 sites placed"), "{}", map.text);
    for (id, class) in [(&located, "on"), (&pinned, "off")] {
        let link = format!("href=\"/agents/{id}\"");
        let at = map
            .text
            .find(&link)
            .unwrap_or_else(|| panic!("no marker for {id}: {}", map.text));
        let marker = &map.text[at..at + map.text[at..].find("</a>").unwrap()];
        assert!(marker.contains(&format!("class=\"{class}\"")), "{marker}");
    }
    assert!(
        map.text.contains("Lisbon &lt;office&gt;"),
        "names are escaped"
    );
    let unplaced = &map.text[map.text.find("Not on the map").expect("the unplaced list")..];
    assert!(unplaced.contains(&format!("/agents/{nowhere}")));
    // The filter applies to the map too.
    let only = get(&h, "/map?online=true", &cookie).await;
    assert!(only.text.contains("1 of 1 sites placed"), "{}", only.text);

    let page = get(&h, &format!("/agents/{located}"), &cookie).await;
    assert!(
        page.text.contains("Lisbon, Lisbon, Portugal"),
        "{}",
        page.text
    );
    assert!(page.text.contains("within 20 km"));
    assert!(page.text.contains("Test-City built 2026-11-01"));
}

#[tokio::test]
async fn the_agent_page_sets_the_owner_and_shows_the_invitation_once() {
    let h = with_operator().await;
    let id = id_of(&h.activate("home").await);
    let cookie = sign_in(&h).await;
    let page = get(&h, &format!("/agents/{id}"), &cookie).await;
    let token = csrf(&page);
    let path = format!("/agents/{id}/owner");

    let bad = post(
        &h,
        &path,
        &cookie,
        &[("csrf", &token), ("email", "nobody"), ("enabled", "yes")],
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    assert!(bad.text.contains("role=\"alert\""), "{}", bad.text);
    let owner = h
        .op(Method::GET, &format!("/api/v1/agents/{id}/owner"), None)
        .await;
    assert_eq!(
        owner.body["email"],
        serde_json::Value::Null,
        "nothing saved: {:?}",
        owner.body
    );

    let saved = post(
        &h,
        &path,
        &cookie,
        &[
            ("csrf", &token),
            ("email", "Owner@Example.com"),
            ("enabled", "yes"),
        ],
    )
    .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    assert!(
        saved
            .text
            .contains("https://portal.example:8443/owner/invite/"),
        "{}",
        saved.text
    );
    assert!(saved.text.contains("value=\"owner@example.com\""));
    let owner = h
        .op(Method::GET, &format!("/api/v1/agents/{id}/owner"), None)
        .await;
    assert_eq!(owner.body["email"], "owner@example.com");
    assert_eq!(owner.body["enabled"], true);
    // Saving again without asking for a link makes none (the account does not exist yet, so it would);
    // switching access off keeps the email.
    let off = post(
        &h,
        &path,
        &cookie,
        &[("csrf", &token), ("email", "owner@example.com")],
    )
    .await;
    assert_eq!(off.status, StatusCode::OK);
    let owner = h
        .op(Method::GET, &format!("/api/v1/agents/{id}/owner"), None)
        .await;
    assert_eq!(
        (
            owner.body["email"].as_str(),
            owner.body["enabled"].as_bool()
        ),
        (Some("owner@example.com"), Some(false))
    );
    let history = h
        .op(Method::GET, &format!("/api/v1/agents/{id}/history"), None)
        .await;
    assert!(
        history.body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "user:tech"
                && e["action"].as_str().unwrap_or("").contains("owner")),
        "{:?}",
        history.body
    );
}

#[tokio::test]
async fn failed_sign_ins_of_a_member_are_in_the_company_history_with_their_address() {
    let h = with_operator().await;
    for email in [EMAIL, "nobody@example.com"] {
        let page = request(
            &h,
            Method::POST,
            "/sign-in",
            Req {
                form: Some(form(&[("email", email), ("password", "not the password")])),
                from: Some("192.0.2.9".parse().unwrap()),
                ..Req::default()
            },
        )
        .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    }
    let history = h
        .op(Method::GET, "/api/v1/history?action=sign-in-failed", None)
        .await;
    let entries = history.body["entries"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        1,
        "only the member's failure is the company's: {entries:?}"
    );
    assert_eq!(entries[0]["actor"], "user:tech");
    assert_eq!(entries[0]["address"], "192.0.2.9");
}

#[tokio::test]
async fn pages_show_times_in_the_users_format_and_zone() {
    let h = with_operator().await;
    // The harness starts at 2026-01-15 12:00 UTC; the agent is activated then.
    let id = id_of(&h.activate("clock").await);
    let cookie = sign_in(&h).await;
    let page = get(&h, &format!("/agents/{id}"), &cookie).await;
    assert!(page.text.contains("2026-01-15 12:00 UTC<"), "{}", page.text);
    let user =
        outpost_portal::store::users::by_email(&mut h.app.store().conn().await.unwrap(), EMAIL)
            .await
            .unwrap()
            .unwrap();
    let mut conn = h.app.store().conn().await.unwrap();
    outpost_portal::store::users::set_preferences(
        &mut conn,
        user.id,
        &user.name,
        "12h",
        "+05:30",
        h.app.now(),
    )
    .await
    .unwrap();
    drop(conn);
    let page = get(&h, &format!("/agents/{id}"), &cookie).await;
    assert!(
        page.text.contains("2026-01-15 05:30 PM UTC+05:30"),
        "{}",
        page.text
    );
    assert!(!page.text.contains("2026-01-15 12:00 UTC<"));
}

#[tokio::test]
async fn repeated_failures_lock_the_account_out_for_a_growing_while() {
    let h = with_operator().await;
    let attempt = |password: &'static str, from: &'static str| {
        let h = &h;
        async move {
            request(
                h,
                Method::POST,
                "/sign-in",
                Req {
                    form: Some(form(&[("email", EMAIL), ("password", password)])),
                    from: Some(from.parse().unwrap()),
                    ..Req::default()
                },
            )
            .await
        }
    };
    for _ in 0..3 {
        assert_eq!(
            attempt("wrong password", "192.0.2.1").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // Even the right password, from another address, waits now: the account is locked for a while.
    let locked = attempt(PASSWORD, "198.51.100.7").await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        locked.text
    );
    assert!(locked.headers.contains_key("retry-after"));
    assert!(locked.text.contains("too many sign-in attempts"));
}
