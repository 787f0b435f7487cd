//! The agents list: search over every searchable field, the status filters (activation pending included),
//! the online filter against the time-dependent online rule, each sort in both orders, pages and totals,
//! the 28-day flag on the manual clock, and the CSV export: exactly what the list shows under the same
//! filter, RFC 4180 quoting, formula-injection safety, headers, the row cap and auth.

use std::cmp::Ordering;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use chrono::{Duration, TimeZone, Utc};
use http_body_util::BodyExt;
use outpost_cloud_link::protocol::{AgentMessage, Presence};
use serde_json::{json, Value};

use crate::harness::{id_of, start_time, Harness};

fn ids(list: &Value) -> Vec<String> {
    list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn list(h: &Harness, qs: &str) -> Value {
    let resp = h
        .op(Method::GET, &format!("/api/v1/agents?{qs}"), None)
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{qs}: {:?}", resp.body);
    resp.body
}

/// A raw request (the harness's `call` expects JSON answers).
async fn raw(h: &Harness, path: &str, token: Option<&str>) -> (StatusCode, HeaderMap, Vec<u8>) {
    use tower::ServiceExt;
    let mut req = Request::builder().method(Method::GET).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let mut req = req.body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            40_000,
        ))));
    let resp = h.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, bytes.to_vec())
}

async fn csv_of(h: &Harness, qs: &str) -> Vec<Vec<String>> {
    let (status, _, body) = raw(h, &format!("/api/v1/agents.csv?{qs}"), Some(&h.token)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{qs}: {}",
        String::from_utf8_lossy(&body)
    );
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(body.as_slice())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

async fn put_site(h: &Harness, id: &str, site: Value) {
    let resp = h
        .op(
            Method::PUT,
            &format!("/api/v1/agents/{id}/site"),
            Some(site),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
}

async fn deactivate(h: &Harness, id: &str) {
    let resp = h
        .op(
            Method::POST,
            &format!("/api/v1/agents/{id}/deactivate"),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
}

/// Agents in every display state, online and not, with ties in name and activation time, and sites with
/// and without a Customer ID.
struct Fleet {
    pending: String,
    active: String,
    pending_deactivation: String,
    deactivated: String,
    expired: String,
    /// Connected, then silent past `offline_after` (its last presence still says online).
    stale: String,
    /// Connected, then said offline.
    offline: String,
}

impl Fleet {
    fn all(&self) -> Vec<&str> {
        vec![
            &self.pending,
            &self.active,
            &self.pending_deactivation,
            &self.deactivated,
            &self.expired,
            &self.stale,
            &self.offline,
        ]
    }
}

async fn fleet(h: &Harness) -> Fleet {
    let expired = id_of(&h.activate_with("Warehouse", Some(1)).await);
    h.connect(&expired, "Warehouse", 0).await;
    let deactivated = id_of(&h.activate("Depot").await);
    h.connect(&deactivated, "Depot", 0).await;
    deactivate(h, &deactivated).await;
    h.clock
        .set(Utc.with_ymd_and_hms(2026, 2, 16, 12, 0, 0).unwrap());
    assert_eq!(h.app.sweep().await.unwrap(), 2);

    let pending_deactivation = id_of(&h.activate("Office").await);
    h.connect(&pending_deactivation, "Office", 0).await;
    deactivate(h, &pending_deactivation).await;
    let pending = id_of(&h.activate_with("shop_beta", Some(3)).await);
    let offline = id_of(&h.activate("ANNEX").await);
    h.connect(&offline, "ANNEX", 0).await;
    h.send(
        &offline,
        0,
        AgentMessage::Presence(Presence { online: false }),
    )
    .await;
    let stale = id_of(&h.activate("Annex").await);
    h.connect(&stale, "Annex", 0).await;
    h.clock.advance(Duration::seconds(121));
    let active = id_of(&h.activate("Shop-Alpha").await);
    h.connect(&active, "Shop-Alpha", 0).await;
    h.connect(&pending_deactivation, "Office", 0).await;

    put_site(h, &active, json!({ "customer_id": "C-300" })).await;
    put_site(h, &pending, json!({ "customer_id": "c-100" })).await;
    put_site(h, &offline, json!({ "customer_id": "C-200" })).await;
    put_site(h, &expired, json!({ "customer_id": "c-200" })).await;
    Fleet {
        pending,
        active,
        pending_deactivation,
        deactivated,
        expired,
        stale,
        offline,
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn each_status_filter_selects_exactly_its_agents() {
    let h = Harness::new().await;
    let f = fleet(&h).await;
    let all = list(&h, "limit=500").await;
    assert_eq!(all["total"], 7);
    for (status, expected) in [
        ("activation_pending", vec![f.pending.as_str()]),
        ("active", vec![&f.active, &f.stale, &f.offline]),
        ("deactivation_pending", vec![&f.pending_deactivation]),
        ("deactivated", vec![&f.deactivated]),
        ("expired", vec![&f.expired]),
    ] {
        let body = list(&h, &format!("status={status}")).await;
        assert_eq!(
            sorted(ids(&body)),
            sorted(strings(&expected)),
            "status={status}"
        );
        assert_eq!(body["total"], expected.len(), "status={status}");
        for agent in body["agents"].as_array().unwrap() {
            assert_eq!(agent["display_status"], status);
        }
    }
    let pending = h.agent(&f.pending).await;
    assert_eq!(
        (
            pending["status"].as_str(),
            pending["display_status"].as_str()
        ),
        (Some("active"), Some("activation_pending")),
        "stored active, shown as activation pending until it connects"
    );
    let two = list(&h, "status=activation_pending,expired").await;
    assert_eq!(
        sorted(ids(&two)),
        sorted(strings(&[&f.pending, &f.expired]))
    );
    let repeated = list(&h, "status=activation_pending&status=expired").await;
    assert_eq!(ids(&repeated), ids(&two));

    // Once it connects, the pending agent is active.
    h.connect(&f.pending, "shop_beta", 0).await;
    let active = list(&h, "status=active").await;
    assert!(ids(&active).contains(&f.pending));
    assert_eq!(list(&h, "status=activation_pending").await["total"], 0);
}

#[tokio::test]
async fn the_online_filter_follows_the_online_rule_over_time() {
    let h = Harness::new().await;
    let f = fleet(&h).await;
    let online = list(&h, "online=true").await;
    assert_eq!(
        sorted(ids(&online)),
        sorted(strings(&[&f.active, &f.pending_deactivation]))
    );
    let offline = list(&h, "online=false&limit=500").await;
    let mut rest: Vec<&str> = f.all();
    rest.retain(|id| *id != f.active && *id != f.pending_deactivation);
    assert_eq!(sorted(ids(&offline)), sorted(strings(&rest)));
    assert!(
        ids(&offline).contains(&f.stale),
        "last presence online but silent past offline_after: offline"
    );
    // Whatever the filter, each agent's `online` is what the filter judged.
    for (body, want) in [(&online, true), (&offline, false)] {
        for agent in body["agents"].as_array().unwrap() {
            assert_eq!(agent["online"], want, "{}", agent["id"]);
        }
    }

    // At exactly offline_after since the last message the agent is still online; a millisecond later not.
    let seen = chrono::DateTime::parse_from_rfc3339(
        h.agent(&f.active).await["last_seen"].as_str().unwrap(),
    )
    .unwrap()
    .with_timezone(&Utc);
    h.clock.set(seen + Duration::seconds(120));
    assert!(ids(&list(&h, "online=true").await).contains(&f.active));
    assert_eq!(h.agent(&f.active).await["online"], true);
    h.clock.set(seen + Duration::milliseconds(120_001));
    assert!(!ids(&list(&h, "online=true").await).contains(&f.active));
    assert!(ids(&list(&h, "online=false").await).contains(&f.active));
    assert_eq!(h.agent(&f.active).await["online"], false);
}

fn status_rank(s: &str) -> usize {
    [
        "activation_pending",
        "active",
        "deactivation_pending",
        "deactivated",
        "expired",
    ]
    .iter()
    .position(|x| *x == s)
    .unwrap()
}

/// The sort key of an agent as the list documents it (text compared as ASCII lower case, times as
/// their RFC 3339 text, which orders like the times).
fn sort_key(agent: &Value, sort: &str) -> Option<String> {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    match sort {
        "name" => text(&agent["name"]).map(|n| n.to_ascii_lowercase()),
        "status" => Some(status_rank(agent["display_status"].as_str().unwrap()).to_string()),
        "last_seen" => text(&agent["last_seen"]),
        "activated_at" => text(&agent["activated_at"]),
        "expires_at" => text(&agent["expires_at"]),
        "customer_id" => text(&agent["site"]["customer_id"]).map(|c| c.to_ascii_lowercase()),
        other => panic!("no sort {other}"),
    }
}

fn expected_order(agents: &[Value], sort: &str, desc: bool) -> Vec<String> {
    let mut v: Vec<&Value> = agents.iter().collect();
    v.sort_by(|a, b| {
        let (ka, kb) = (sort_key(a, sort), sort_key(b, sort));
        let by_key = match (&ka, &kb) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) if desc => y.cmp(x),
            (Some(x), Some(y)) => x.cmp(y),
        };
        by_key.then_with(|| a["id"].as_str().cmp(&b["id"].as_str()))
    });
    v.into_iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn each_sort_in_both_orders_with_empty_values_last_and_ties_by_id() {
    let h = Harness::new().await;
    let f = fleet(&h).await;
    let all = list(&h, "limit=500").await;
    let agents = all["agents"].as_array().unwrap().clone();
    for sort in [
        "name",
        "status",
        "last_seen",
        "activated_at",
        "expires_at",
        "customer_id",
    ] {
        for order in ["asc", "desc"] {
            let body = list(&h, &format!("sort={sort}&order={order}")).await;
            assert_eq!(
                ids(&body),
                expected_order(&agents, sort, order == "desc"),
                "sort={sort}&order={order}"
            );
        }
    }
    // The fleet makes these orders meaningful: spot-check what the documented rules imply.
    let by_customer = ids(&list(&h, "sort=customer_id").await);
    assert_eq!(
        by_customer[0], f.pending,
        "c-100 sorts before C-200: case-insensitive"
    );
    assert_eq!(by_customer[3], f.active, "C-300 after both C-200 and c-200");
    let desc = ids(&list(&h, "sort=customer_id&order=desc").await);
    assert_eq!(desc[0], f.active);
    let nulls: Vec<&str> = desc[4..].iter().map(String::as_str).collect();
    let mut without = vec![
        f.deactivated.as_str(),
        f.pending_deactivation.as_str(),
        f.stale.as_str(),
    ];
    without.sort();
    assert_eq!(
        nulls, without,
        "no Customer ID: last in descending order too, by id"
    );
    let by_name = ids(&list(&h, "sort=name").await);
    let (annex_a, annex_b) = if f.offline < f.stale {
        (&f.offline, &f.stale)
    } else {
        (&f.stale, &f.offline)
    };
    assert_eq!(
        (&by_name[0], &by_name[1]),
        (annex_a, annex_b),
        "ANNEX and Annex tie: by id"
    );
    let last_seen_desc = ids(&list(&h, "sort=last_seen&order=desc").await);
    assert_eq!(last_seen_desc.last(), Some(&f.pending), "never seen: last");
    let status = ids(&list(&h, "sort=status").await);
    assert_eq!(status[0], f.pending);
    assert_eq!(status.last(), Some(&f.expired));
}

#[tokio::test]
async fn pages_cover_every_match_once_with_the_filtered_total() {
    let h = Harness::new().await;
    fleet(&h).await;
    for qs in [
        "sort=name&order=desc",
        "status=active",
        "online=false&sort=last_seen",
    ] {
        let whole = list(&h, &format!("{qs}&limit=500")).await;
        let total = whole["total"].as_u64().unwrap();
        let mut paged = Vec::new();
        let mut offset = 0;
        loop {
            let page = list(&h, &format!("{qs}&limit=2&offset={offset}")).await;
            assert_eq!(page["total"].as_u64(), Some(total), "{qs} offset {offset}");
            let got = ids(&page);
            assert!(got.len() <= 2);
            if got.is_empty() {
                break;
            }
            paged.extend(got);
            offset += 2;
        }
        assert_eq!(paged, ids(&whole), "{qs}");
        assert_eq!(paged.len() as u64, total);
    }
    let past = list(&h, "offset=100").await;
    assert_eq!((past["total"].as_u64(), ids(&past).len()), (Some(7), 0));
}

#[tokio::test]
async fn search_finds_each_searchable_field_case_insensitively() {
    let h = Harness::new().await;
    let mut agents = Vec::new();
    for name in [
        "Alpha-Shop",
        "gw-2",
        "gw-3",
        "gw-4",
        "gw-5",
        "gw-6",
        "gw-7",
        "gw-8",
    ] {
        agents.push(id_of(&h.activate(name).await));
    }
    let sites = [
        json!({}),
        json!({ "customer_id": "CUST-7781" }),
        json!({ "contract_id": "CTR-5521" }),
        json!({ "contact": { "email": "jane@zeta-corp.example" } }),
        json!({ "contact": { "first_name": "Quentin", "last_name": "Oswaldo" } }),
        json!({ "contact": { "phones": ["555 0100", "+44 20 7946 0958"] } }),
        json!({ "note": "Gate code 8841, ask for Bob" }),
        json!({ "address": "99 Hidden Lane", "psa": { "system": "zendesk", "org_id": "ZD-55" } }),
    ];
    for (id, site) in agents.iter().zip(sites) {
        put_site(&h, id, site).await;
    }
    for (q, expected) in [
        ("alpha-SHOP", vec![0]),
        ("cust-77", vec![1]),
        ("ctr-5521", vec![2]),
        ("ZETA-CORP", vec![3]),
        ("quentin", vec![4]),
        ("OSWALDO", vec![4]),
        ("Quentin Oswaldo", vec![4]),
        ("7946", vec![5]),
        ("+44 20", vec![5]),
        ("gate CODE 8841", vec![6]),
        ("8841, ask", vec![6]),
        ("gw-", vec![1, 2, 3, 4, 5, 6, 7]),
        // Not searched: the address and the PSA organization id.
        ("Hidden Lane", vec![]),
        ("ZD-55", vec![]),
        // The phones are stored as a JSON array: its quotes and commas match nothing.
        ("\",\"", vec![]),
        // LIKE wildcards are literal.
        ("%", vec![]),
        ("gw_2", vec![]),
    ] {
        let qs = format!("q={}", urlencode(q));
        let body = list(&h, &qs).await;
        let want: Vec<String> = expected.iter().map(|i| agents[*i].clone()).collect();
        assert_eq!(sorted(ids(&body)), sorted(want), "q={q}");
        assert_eq!(body["total"], expected.len(), "q={q}");
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn bad_parameters_answer_400_naming_the_parameter() {
    let h = Harness::new().await;
    for (qs, param, accepts) in [
        ("status=sleeping", "status", "activation_pending"),
        ("online=maybe", "online", "true or false"),
        ("sort=id", "sort", "customer_id"),
        ("order=up", "order", "asc or desc"),
        ("limit=0", "limit", "from 1 to 500"),
        ("limit=501", "limit", "from 1 to 500"),
        ("offset=-3", "offset", "whole number"),
        ("q=a&q=b", "q", "once"),
    ] {
        for path in ["/api/v1/agents", "/api/v1/agents.csv"] {
            if path.ends_with(".csv") && (param == "limit" || param == "offset") {
                continue;
            }
            let resp = h.op(Method::GET, &format!("{path}?{qs}"), None).await;
            assert_eq!(
                (resp.status, resp.error()),
                (StatusCode::BAD_REQUEST, "invalid_request"),
                "{path}?{qs}"
            );
            let message = resp.body["message"].as_str().unwrap();
            assert!(message.starts_with(&format!("{param}: ")), "{message}");
            assert!(message.contains(accepts), "{message}");
        }
    }
}

#[tokio::test]
async fn expiration_and_end_dates_within_28_days_are_flagged() {
    let h = Harness::new().await;
    let prepaid = id_of(&h.activate_with("pp", Some(1)).await);
    let monthly = id_of(&h.activate("mm").await);
    let agent = h.agent(&prepaid).await;
    let expires_at = agent["expires_at"].as_str().unwrap().to_owned();
    assert_eq!(expires_at, "2026-02-15T12:00:00.000Z");
    assert_eq!(
        (&agent["due_soon"], &agent["due_at"]),
        (&json!(false), &Value::Null)
    );
    assert_eq!(
        h.agent(&monthly).await["due_soon"],
        false,
        "a monthly plan renews by itself"
    );

    // 28 days before the expiration, to the second.
    h.clock
        .set(Utc.with_ymd_and_hms(2026, 1, 18, 11, 59, 59).unwrap());
    assert_eq!(h.agent(&prepaid).await["due_soon"], false);
    h.clock
        .set(Utc.with_ymd_and_hms(2026, 1, 18, 12, 0, 0).unwrap());
    let agent = h.agent(&prepaid).await;
    assert_eq!(
        (&agent["due_soon"], agent["due_at"].as_str()),
        (&json!(true), Some(expires_at.as_str()))
    );

    deactivate(&h, &monthly).await;
    let agent = h.agent(&monthly).await;
    assert_eq!(
        agent["subscription"]["deactivates_at"],
        "2026-02-01T00:00:00.000Z"
    );
    assert_eq!(agent["due_soon"], true);
    assert_eq!(agent["due_at"], agent["subscription"]["deactivates_at"]);

    let listed = list(&h, "").await;
    for a in listed["agents"].as_array().unwrap() {
        assert_eq!(a["due_soon"], true, "{}", a["name"]);
    }
    let rows = csv_of(&h, "q=pp").await;
    assert_eq!(rows.len(), 2);
    let due = rows[0].iter().position(|c| c == "due_soon").unwrap();
    let due_at = rows[0].iter().position(|c| c == "due_at").unwrap();
    assert_eq!(rows[1][due], "true");
    assert_eq!(rows[1][due_at], expires_at);

    // Once expired it is no longer flagged: nothing is due any more.
    h.clock
        .set(Utc.with_ymd_and_hms(2026, 2, 15, 12, 0, 0).unwrap());
    h.app.sweep().await.unwrap();
    let agent = h.agent(&prepaid).await;
    assert_eq!(
        (agent["status"].as_str(), &agent["due_soon"]),
        (Some("expired"), &json!(false))
    );
}

/// The CSV cells of an agent as the JSON list shows it, with the documented formula escaping.
fn expected_cells(a: &Value) -> Vec<String> {
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let site = &a["site"];
    let phones: Vec<String> = site["contact"]["phones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    let cells = vec![
        text(&a["id"]),
        text(&a["name"]),
        text(&a["display_status"]),
        a["online"].to_string(),
        text(&a["subscription"]["plan"]),
        text(&a["expires_at"]),
        a["due_soon"].to_string(),
        text(&a["due_at"]),
        text(&site["customer_id"]),
        text(&site["contract_id"]),
        text(&site["contact"]["first_name"]),
        text(&site["contact"]["last_name"]),
        text(&site["contact"]["email"]),
        phones.join("; "),
        text(&site["psa"]["system"]),
        text(&site["psa"]["org_id"]),
        text(&site["address"]),
        text(&site["note"]),
        text(&a["public_ip"]),
        text(&a["local_ip"]),
        text(&a["platform"]),
        text(&a["version"]),
        text(&a["last_seen"]),
        text(&a["activated_at"]),
    ];
    cells
        .into_iter()
        .map(|c| match c.chars().next() {
            Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{c}"),
            _ => c,
        })
        .collect()
}

#[tokio::test]
async fn the_csv_is_exactly_what_the_list_shows_under_the_same_filter() {
    let h = Harness::new().await;
    let f = fleet(&h).await;
    put_site(
        &h,
        &f.stale,
        json!({
            "contact": { "first_name": "Jane", "last_name": "Doe", "email": "jane@example.com",
                         "phones": ["+1 555 0100", "555 0101 x7"] },
            "customer_id": "@SUM(A1)",
            "contract_id": "-2+3",
            "psa": { "system": "connectwise_manage", "org_id": "=1+1" },
            "address": "1 Main St, Suite \"B\"\nSpringfield",
            "note": "=HYPERLINK(\"http://evil.example\",\"click\")",
        }),
    )
    .await;
    let header = [
        "id",
        "name",
        "status",
        "online",
        "plan",
        "expires_at",
        "due_soon",
        "due_at",
        "customer_id",
        "contract_id",
        "contact_first_name",
        "contact_last_name",
        "contact_email",
        "contact_phones",
        "psa_system",
        "psa_org_id",
        "address",
        "note",
        "public_ip",
        "local_ip",
        "platform",
        "version",
        "last_seen",
        "activated_at",
    ];
    for qs in [
        "",
        "status=active",
        "status=activation_pending,expired",
        "online=false&sort=name&order=desc",
        "online=true",
        "q=annex&sort=last_seen",
        "sort=customer_id&order=desc",
        // Paging is ignored by the export: every match is in it.
        "sort=status&limit=2&offset=2",
    ] {
        let rows = csv_of(&h, qs).await;
        assert_eq!(rows[0], header, "{qs}");
        let filter: String = qs
            .split('&')
            .filter(|p| !p.starts_with("limit=") && !p.starts_with("offset="))
            .collect::<Vec<_>>()
            .join("&");
        let shown = list(&h, &format!("{filter}&limit=500")).await;
        let expected: Vec<Vec<String>> = shown["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(expected_cells)
            .collect();
        assert_eq!(rows[1..], expected[..], "{qs}");
        assert_eq!(rows.len() - 1, shown["total"].as_u64().unwrap() as usize);
    }
}

#[tokio::test]
async fn the_csv_escapes_formulas_quotes_fields_and_has_download_headers() {
    let h = Harness::new().await;
    let a = id_of(&h.activate("gw-a").await);
    let b = id_of(&h.activate("gw-b").await);
    let c = id_of(&h.activate("gw-c").await);
    let rename = h
        .op(
            Method::PATCH,
            &format!("/api/v1/agents/{a}"),
            Some(json!({ "name": "=cmd|' /C calc'!A0" })),
        )
        .await;
    assert_eq!(rename.status, StatusCode::OK);
    put_site(
        &h,
        &a,
        json!({
            "contact": { "phones": ["+1 555 0100"] },
            "note": "line one, with \"quotes\"\nline two",
            "customer_id": "@risky",
        }),
    )
    .await;
    put_site(
        &h,
        &b,
        json!({ "contact": { "phones": ["+1 555 0100"] }, "contract_id": "-5" }),
    )
    .await;
    put_site(
        &h,
        &c,
        json!({ "contact": { "phones": ["555 0100", "+1 555 0199"] } }),
    )
    .await;

    let (status, headers, body) = raw(&h, "/api/v1/agents.csv?sort=name", Some(&h.token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert_eq!(
        headers[header::CONTENT_DISPOSITION],
        format!(
            "attachment; filename=\"outpost-agents-{}.csv\"",
            start_time().format("%Y%m%d")
        )
        .as_str()
    );
    let text = String::from_utf8(body.clone()).unwrap();
    assert!(text.ends_with("\r\n"));
    assert_eq!(
        text.matches("\r\n").count(),
        4,
        "CRLF ends each of the 4 records; the note's own line break stays LF"
    );
    assert!(
        text.contains("\"line one, with \"\"quotes\"\"\nline two\""),
        "quoted, quotes doubled: {text}"
    );

    let rows: Vec<Vec<String>> = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(body.as_slice())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    let col = |name: &str| {
        [
            "id",
            "name",
            "status",
            "online",
            "plan",
            "expires_at",
            "due_soon",
            "due_at",
            "customer_id",
            "contract_id",
            "contact_first_name",
            "contact_last_name",
            "contact_email",
            "contact_phones",
        ]
        .iter()
        .position(|c| *c == name)
        .unwrap()
    };
    let row_of = |id: &str| rows.iter().find(|r| r[0] == id).unwrap().clone();
    let (ra, rb, rc) = (row_of(&a), row_of(&b), row_of(&c));
    assert_eq!(ra[col("name")], "'=cmd|' /C calc'!A0");
    assert_eq!(ra[col("customer_id")], "'@risky");
    assert_eq!(
        ra[17], "line one, with \"quotes\"\nline two",
        "read back unchanged"
    );
    assert_eq!(rb[col("contract_id")], "'-5");
    assert_eq!(
        (
            ra[col("contact_phones")].as_str(),
            rb[col("contact_phones")].as_str()
        ),
        ("'+1 555 0100", "'+1 555 0100"),
        "the same phone number is escaped the same way in every row"
    );
    assert_eq!(
        rc[col("contact_phones")],
        "555 0100; +1 555 0199",
        "a + inside a cell is not a formula"
    );
    assert_eq!(rc[col("name")], "gw-c");
}

#[tokio::test]
async fn the_csv_needs_a_token_and_refuses_more_than_the_cap() {
    let h = Harness::new().await;
    let id = id_of(&h.activate("Shop-Alpha").await);
    let (status, _, body) = raw(&h, "/api/v1/agents.csv", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "unauthorized");

    let mut conn = h.app.store().conn().await.unwrap();
    sqlx::query(
        "INSERT INTO agents (id, name, secret_hash, status, plan, activated_at, company_id) \
         WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 100000) \
         SELECT 'ag-bulk' || x, 'bulk ' || x, '', 'active', 'monthly', 0, 1 FROM n",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    drop(conn);
    let resp = h.op(Method::GET, "/api/v1/agents.csv", None).await;
    assert_eq!(
        (resp.status, resp.error()),
        (StatusCode::BAD_REQUEST, "export_too_large"),
        "{:?}",
        resp.body
    );
    let message = resp.body["message"].as_str().unwrap();
    assert!(
        message.contains("100001 agents") && message.contains("100000"),
        "{message}"
    );
    let rows = csv_of(&h, "q=shop-alpha").await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1][0], id);
}
