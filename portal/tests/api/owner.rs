//! Owner access: the operator's owner settings and device flags, invitations (single use, expiry),
//! sign-in (the same answer for an unknown email and a wrong password, the rate limit), the session cookie
//! and CSRF, and what an owner may see and do: only visible devices, only the actions their flags allow,
//! nothing of another site, nothing of a switched-off site. A permitted action sends the command and is
//! in the history with the owner as actor.

use std::net::{IpAddr, Ipv4Addr};

use axum::http::{Method, StatusCode};
use outpost_cloud_link::control::{codes, DeviceRef, PowerAction};
use outpost_cloud_link::inventory::{delta_reports, Device, DeviceName, NameSource};
use outpost_cloud_link::protocol::{
    Ack, AgentMessage, Command, CommandEnvelope, Outcome, Platform, Presence, Segment,
};
use outpost_portal::ingest::Disposition;
use outpost_portal::store::devices::DeviceKey;
use outpost_portal::store::owners;
use serde_json::{json, Value};

use crate::harness::{
    form, hello_on, request, sample_device, start_time, Auth, Harness, Page, Req,
};

const OWNER: &str = "ann@example.com";
const PASSWORD: &str = "violet-garden-42";
/// Visible, blockable, powerable (with an outlet).
const LAMP: &str = "00:1a:11:00:00:01";
/// Hidden.
const CAMERA: &str = "00:1a:11:00:00:02";
/// Visible, no actions.
const TV: &str = "00:1a:11:00:00:03";
/// On the tagged VLAN 20.
const TAGGED: &str = "00:1a:11:00:00:14";

// ---------------------------------------------------------------------------------------------------------
// Set-up
// ---------------------------------------------------------------------------------------------------------

fn device(mac: &str, vlan: Option<u16>, interface: &str, ip: [u8; 4], name: &str) -> Device {
    Device {
        names: vec![DeviceName {
            name: name.into(),
            source: NameSource::Mdns,
        }],
        ..sample_device(mac, vlan, interface, Ipv4Addr::from(ip))
    }
}

fn devices() -> Vec<Device> {
    vec![
        device(LAMP, None, "lan0", [192, 0, 2, 51], "Hall lamp"),
        device(CAMERA, None, "lan0", [192, 0, 2, 52], "Back camera"),
        device(TV, None, "lan0", [192, 0, 2, 53], "Living room TV"),
        device(
            TAGGED,
            Some(20),
            "lan0.20",
            [198, 51, 100, 7],
            "Guest printer",
        ),
    ]
}

fn segments() -> Vec<Segment> {
    vec![
        Segment {
            interface: "lan0".into(),
            vlan: None,
            tagged: false,
        },
        Segment {
            interface: "lan0.20".into(),
            vlan: Some(20),
            tagged: true,
        },
    ]
}

/// A harness (its password cost is the test cost, so owner passwords hash fast).
async fn harness() -> Harness {
    Harness::new().await
}

/// An activated, connected agent on `platform` with the four devices.
async fn site(h: &Harness, name: &str, platform: Platform) -> String {
    let id = h.activate(name).await["agent_id"]
        .as_str()
        .unwrap()
        .to_owned();
    h.send(&id, 0, AgentMessage::Presence(Presence { online: true }))
        .await;
    h.send(&id, 0, hello_on(name, platform, segments())).await;
    for r in delta_reports(&devices(), &[]) {
        assert_eq!(
            h.send(&id, 0, AgentMessage::Report(r)).await,
            Disposition::Applied
        );
    }
    id
}

async fn set_owner(h: &Harness, id: &str, body: Value) -> Value {
    let resp = h
        .op(
            Method::PUT,
            &format!("/api/v1/agents/{id}/owner"),
            Some(body),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    resp.body
}

async fn set_flags(h: &Harness, id: &str, device: &str, visible: bool, power: bool, block: bool) {
    let resp = h
        .op(
            Method::PUT,
            &format!("/api/v1/agents/{id}/devices/{device}/owner-flags"),
            Some(json!({ "visible": visible, "power": power, "block": block })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
}

async fn bind_outlet(h: &Harness, id: &str, device: &str) {
    let resp = h
        .op(
            Method::PUT,
            &format!("/api/v1/agents/{id}/devices/{device}/power-outlet"),
            Some(json!({ "outlet": { "type": "shelly", "host": "10.0.0.2" }, "cycle_delay_secs": 3 })),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
}

/// The token at the end of an invitation link.
fn token_of(invitation: &Value) -> String {
    let url = invitation["url"].as_str().unwrap();
    url.rsplit('/').next().unwrap().to_owned()
}

/// A site owned by [`OWNER`] (who accepted the invitation), with LAMP visible + power + block and an
/// outlet, CAMERA hidden, TV visible only. Returns the agent id and the owner's session cookie.
async fn owned_site(h: &Harness) -> (String, String) {
    let id = site(h, "home", Platform::Router).await;
    let set = set_owner(h, &id, json!({ "email": OWNER, "enabled": true })).await;
    let cookie = accept(h, &token_of(&set["invitation"])).await;
    set_flags(h, &id, LAMP, true, true, true).await;
    set_flags(h, &id, CAMERA, false, true, true).await;
    set_flags(h, &id, TV, true, false, false).await;
    bind_outlet(h, &id, LAMP).await;
    bind_outlet(h, &id, TV).await;
    (id, cookie)
}

// ---------------------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------------------

/// Accepts an invitation with [`PASSWORD`]; returns the session cookie.
async fn accept(h: &Harness, token: &str) -> String {
    let page = request(
        h,
        Method::POST,
        &format!("/owner/invite/{token}"),
        Req {
            form: Some(form(&[("password", PASSWORD), ("confirm", PASSWORD)])),
            ..Req::default()
        },
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    assert_eq!(page.location(), "/owner");
    page.session()
}

async fn sign_in(h: &Harness, email: &str, password: &str, from: IpAddr) -> Page {
    request(
        h,
        Method::POST,
        "/owner/sign-in",
        Req {
            form: Some(form(&[("email", email), ("password", password)])),
            from: Some(from),
            ..Req::default()
        },
    )
    .await
}

/// The owner's device list (JSON).
async fn owner_devices(h: &Harness, cookie: &str) -> Value {
    let page = request(
        h,
        Method::GET,
        "/api/v1/owner/devices",
        Req {
            cookie: Some(cookie),
            ..Req::default()
        },
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    page.json()
}

async fn csrf_of(h: &Harness, cookie: &str) -> String {
    owner_devices(h, cookie).await["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// An owner API action (`block`, `unblock`, `power`) with the session's CSRF token and no wait.
async fn owner_action(
    h: &Harness,
    cookie: &str,
    agent: &str,
    device: &str,
    action: &str,
    body: Option<Value>,
) -> Page {
    let csrf = csrf_of(h, cookie).await;
    request(
        h,
        Method::POST,
        &format!("/api/v1/owner/agents/{agent}/devices/{device}/{action}?wait_ms=0"),
        Req {
            cookie: Some(cookie),
            json: body,
            headers: vec![("x-csrf-token", csrf)],
            ..Req::default()
        },
    )
    .await
}

/// The CSRF token of the owner's home page form.
async fn home(h: &Harness, cookie: &str) -> Page {
    request(
        h,
        Method::GET,
        "/owner",
        Req {
            cookie: Some(cookie),
            ..Req::default()
        },
    )
    .await
}

fn error_of(page: &Page) -> String {
    page.json()["error"].as_str().unwrap_or("").to_owned()
}

async fn history(h: &Harness, id: &str) -> Vec<Value> {
    let resp = h
        .op(Method::GET, &format!("/api/v1/agents/{id}/history"), None)
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    resp.body["entries"].as_array().unwrap().clone()
}

fn control_commands(h: &Harness, id: &str) -> Vec<CommandEnvelope> {
    h.sent_to(id)
        .into_iter()
        .filter(|c| {
            matches!(
                c.cmd,
                Command::Block { .. } | Command::Unblock { .. } | Command::Power { .. }
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------
// Operator side
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn setting_an_owner_makes_a_single_use_invitation_for_a_new_email() {
    let h = harness().await;
    let id = site(&h, "home", Platform::Router).await;
    let before = h
        .op(Method::GET, &format!("/api/v1/agents/{id}/owner"), None)
        .await;
    assert_eq!(before.status, StatusCode::OK);
    assert_eq!(before.body["email"], Value::Null);
    assert_eq!(before.body["enabled"], false);

    let set = set_owner(
        &h,
        &id,
        json!({ "email": " Ann@Example.com ", "enabled": true }),
    )
    .await;
    assert_eq!(set["email"], OWNER, "trimmed and lower-cased");
    assert_eq!(set["enabled"], true);
    assert_eq!(set["has_account"], false);
    let url = set["invitation"]["url"].as_str().unwrap();
    assert!(
        url.starts_with("https://portal.test/owner/invite/"),
        "without a Host header the broker's host name: {url}"
    );
    assert_eq!(token_of(&set["invitation"]).len(), 43, "32 random bytes");
    let expires = start_time() + chrono::Duration::hours(72);
    assert_eq!(
        set["invitation"]["expires_at"],
        expires.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );

    // Stored hashed: the token is nowhere in the database.
    let token = token_of(&set["invitation"]);
    let mut conn = h.app.store().conn().await.unwrap();
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM owner_invitations")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    assert_eq!(stored, vec![outpost_portal::secrets::hash(&token)]);
    drop(conn);

    let got = h
        .op(Method::GET, &format!("/api/v1/agents/{id}/owner"), None)
        .await
        .body;
    assert_eq!(got["email"], OWNER);
    assert!(got.get("invitation").is_none());

    let first_session = accept(&h, &token).await;
    // An account exists now: no invitation unless asked for.
    let again = set_owner(&h, &id, json!({ "email": OWNER, "enabled": true })).await;
    assert_eq!(again["has_account"], true);
    assert!(again.get("invitation").is_none(), "{again}");
    let forced = set_owner(
        &h,
        &id,
        json!({ "email": OWNER, "enabled": true, "invite": true }),
    )
    .await;
    assert!(forced["invitation"]["url"].is_string());
    // Using it (a forgotten password) ends the sessions the old password started.
    let second_session = accept(&h, &token_of(&forced["invitation"])).await;
    assert_eq!(home(&h, &second_session).await.status, StatusCode::OK);
    let ended = home(&h, &first_session).await;
    assert_eq!(ended.status, StatusCode::SEE_OTHER);
    assert_eq!(ended.location(), "/owner/sign-in");

    let lines = history(&h, &id).await;
    let set_lines: Vec<_> = lines
        .iter()
        .filter(|l| l["action"] == "owner_set")
        .collect();
    assert_eq!(set_lines.len(), 3);
    assert_eq!(set_lines[0]["actor"], "user:admin (token 1)");
    assert!(set_lines[0]["details"]
        .as_str()
        .unwrap()
        .starts_with("ann@example.com, access on; invitation link made"));
    assert!(!lines
        .iter()
        .any(|l| l["details"].as_str().unwrap().contains(&token)));
    let joined = lines
        .iter()
        .find(|l| l["action"] == "owner_joined")
        .unwrap();
    assert_eq!(joined["actor"], "owner:ann@example.com");
}

#[tokio::test]
async fn the_invitation_link_uses_the_host_the_operator_called() {
    let h = harness().await;
    let id = site(&h, "home", Platform::Router).await;
    let page = request(
        &h,
        Method::PUT,
        &format!("/api/v1/agents/{id}/owner"),
        Req {
            json: Some(json!({ "email": OWNER, "enabled": true })),
            headers: vec![("authorization", format!("Bearer {}", h.token))],
            ..Req::default()
        },
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let url = page.json()["invitation"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        url.starts_with("https://portal.example:8443/owner/invite/"),
        "{url}"
    );
}

#[tokio::test]
async fn bad_owner_settings_are_refused_naming_the_field() {
    let h = harness().await;
    let id = site(&h, "home", Platform::Router).await;
    let path = format!("/api/v1/agents/{id}/owner");
    let bad = h
        .op(
            Method::PUT,
            &path,
            Some(json!({ "email": "ann.example.com", "enabled": true })),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.error(), "invalid_request");
    let message = bad.body["message"].as_str().unwrap();
    assert!(message.starts_with("email: "), "{message}");
    assert!(message.contains("name@example.com"), "{message}");

    let missing = h
        .op(Method::PUT, &path, Some(json!({ "email": OWNER })))
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert!(missing.body["message"]
        .as_str()
        .unwrap()
        .contains("enabled"));

    let unknown = h
        .op(
            Method::PUT,
            "/api/v1/agents/ag-nobody/owner",
            Some(json!({ "email": OWNER, "enabled": true })),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let anonymous = h.call(Method::GET, &path, None, Auth::None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    let flags = h
        .op(
            Method::PUT,
            &format!("/api/v1/agents/{id}/devices/{LAMP}/owner-flags"),
            Some(json!({ "visible": true, "power": false })),
        )
        .await;
    assert_eq!(flags.status, StatusCode::BAD_REQUEST);
    assert!(flags.body["message"].as_str().unwrap().contains("block"));
    let no_device = h
        .op(
            Method::PUT,
            &format!("/api/v1/agents/{id}/devices/00:1a:11:00:00:99/owner-flags"),
            Some(json!({ "visible": true, "power": false, "block": false })),
        )
        .await;
    assert_eq!(no_device.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_tagged_vlan_device_cannot_be_made_blockable() {
    let h = harness().await;
    let id = site(&h, "home", Platform::Box).await;
    let tagged = format!("{TAGGED}@20");
    let path = format!("/api/v1/agents/{id}/devices/{tagged}/owner-flags");
    let refused = h
        .op(
            Method::PUT,
            &path,
            Some(json!({ "visible": true, "power": false, "block": true })),
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{:?}", refused.body);
    assert_eq!(refused.error(), codes::VLAN_TAGGED_UNBLOCKABLE);
    let message = refused.body["message"].as_str().unwrap();
    assert!(message.contains("tagged VLAN"), "{message}");
    assert!(message.contains(&tagged), "{message}");

    // Nothing was stored; visible without block is fine.
    let got = h.op(Method::GET, &path, None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["block"], false);
    assert_eq!(got.body["visible"], false);
    assert_eq!(got.body["blockable"], false);
    assert_eq!(
        got.body["unblockable_reason"],
        codes::VLAN_TAGGED_UNBLOCKABLE
    );
    set_flags(&h, &id, &tagged, true, false, false).await;
    // The untagged LAN of the same box is blockable.
    set_flags(&h, &id, LAMP, true, false, true).await;

    // A plain Linux host blocks nothing.
    let linux = site(&h, "flat", Platform::Linux).await;
    let refused = h
        .op(
            Method::PUT,
            &format!("/api/v1/agents/{linux}/devices/{LAMP}/owner-flags"),
            Some(json!({ "visible": true, "power": false, "block": true })),
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.error(), codes::BLOCKING_UNSUPPORTED_PLATFORM);
}

// ---------------------------------------------------------------------------------------------------------
// Invitations, sign-in, sessions
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_invitation_sets_the_password_once_and_signs_the_owner_in() {
    let h = harness().await;
    let id = site(&h, "home", Platform::Router).await;
    let set = set_owner(&h, &id, json!({ "email": OWNER, "enabled": true })).await;
    let token = token_of(&set["invitation"]);
    let path = format!("/owner/invite/{token}");

    let page = request(&h, Method::GET, &path, Req::default()).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("name=\"viewport\""));
    assert!(
        page.text.contains(OWNER) && page.text.contains("home"),
        "{}",
        page.text
    );
    assert_eq!(page.headers["referrer-policy"], "no-referrer");
    assert_eq!(page.headers["cache-control"], "no-store");

    for (password, confirm, says) in [
        ("short-pw1", "short-pw1", "at least 10"),
        ("long-enough-1", "long-enough-2", "differ"),
    ] {
        let page = request(
            &h,
            Method::POST,
            &path,
            Req {
                form: Some(form(&[("password", password), ("confirm", confirm)])),
                ..Req::default()
            },
        )
        .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST);
        assert!(page.text.contains(says), "{}", page.text);
    }

    let page = request(
        &h,
        Method::POST,
        &path,
        Req {
            form: Some(form(&[("password", PASSWORD), ("confirm", PASSWORD)])),
            ..Req::default()
        },
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/owner");
    let cookie = page.set_cookie();
    assert!(cookie.starts_with("outpost_owner="), "{cookie}");
    for attribute in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=604800",
    ] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    let session = page.session();
    let home_page = home(&h, &session).await;
    assert_eq!(home_page.status, StatusCode::OK);
    assert!(home_page.text.contains("Signed in as ann@example.com"));

    // Single use.
    for method in [Method::GET, Method::POST] {
        let again = request(
            &h,
            method.clone(),
            &path,
            Req {
                form: (method == Method::POST)
                    .then(|| form(&[("password", PASSWORD), ("confirm", PASSWORD)])),
                ..Req::default()
            },
        )
        .await;
        assert_eq!(again.status, StatusCode::GONE, "{method}");
        assert!(again.text.contains("already been used"), "{}", again.text);
    }

    // The password works for signing in.
    let signed = sign_in(&h, OWNER, PASSWORD, IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER);
    assert_ne!(
        signed.session(),
        session,
        "every sign-in gets its own session"
    );
}

#[tokio::test]
async fn an_expired_or_replaced_invitation_is_refused() {
    let h = harness().await;
    let id = site(&h, "home", Platform::Router).await;
    let first = token_of(
        &set_owner(&h, &id, json!({ "email": OWNER, "enabled": true })).await["invitation"],
    );
    h.clock
        .advance(chrono::Duration::hours(72) + chrono::Duration::seconds(1));
    for method in [Method::GET, Method::POST] {
        let page = request(
            &h,
            method.clone(),
            &format!("/owner/invite/{first}"),
            Req {
                form: (method == Method::POST)
                    .then(|| form(&[("password", PASSWORD), ("confirm", PASSWORD)])),
                ..Req::default()
            },
        )
        .await;
        assert_eq!(page.status, StatusCode::GONE, "{method}");
        assert!(page.text.contains("expired"), "{}", page.text);
        assert!(page.headers.get("set-cookie").is_none());
    }

    // A link for an email that is no longer the owner's does not work either.
    let second = token_of(
        &set_owner(&h, &id, json!({ "email": OWNER, "enabled": true })).await["invitation"],
    );
    set_owner(
        &h,
        &id,
        json!({ "email": "bob@example.com", "enabled": true }),
    )
    .await;
    let page = request(
        &h,
        Method::GET,
        &format!("/owner/invite/{second}"),
        Req::default(),
    )
    .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let made_up = request(&h, Method::GET, "/owner/invite/not-a-token", Req::default()).await;
    assert_eq!(made_up.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn sign_in_answers_the_same_for_an_unknown_email_and_a_wrong_password() {
    let h = harness().await;
    owned_site(&h).await;
    let here = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let wrong = sign_in(&h, OWNER, "not-the-password", here).await;
    let unknown = sign_in(&h, "nobody@example.com", PASSWORD, here).await;
    let malformed = sign_in(&h, "nobody", PASSWORD, here).await;
    for page in [&wrong, &unknown, &malformed] {
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
        assert!(
            page.text.contains("the email or password is wrong"),
            "{}",
            page.text
        );
        assert!(page.headers.get("set-cookie").is_none());
    }
    // Same page apart from the email echoed back into the form.
    assert_eq!(
        wrong.text.replace(OWNER, "X"),
        unknown.text.replace("nobody@example.com", "X")
    );
    assert!(
        !wrong.text.contains("not-the-password"),
        "a password is never echoed"
    );

    let ok = sign_in(&h, " ANN@example.com", PASSWORD, here).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.location(), "/owner");
    assert_eq!(home(&h, &ok.session()).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_legacy_pbkdf2_password_still_signs_in_and_is_rehashed_with_argon2id() {
    let h = harness().await;
    owned_site(&h).await;
    let legacy =
        outpost_portal::passwords::hash(PASSWORD, outpost_portal::passwords::MIN_ITERATIONS);
    let stored = |h: &Harness| {
        let store = h.app.store().clone();
        async move {
            let mut conn = store.conn().await.unwrap();
            owners::account_by_email(&mut conn, OWNER)
                .await
                .unwrap()
                .unwrap()
                .password_hash
        }
    };
    {
        let mut conn = h.app.store().conn().await.unwrap();
        owners::set_account_password(&mut conn, OWNER, &legacy, h.app.now())
            .await
            .unwrap();
    }
    let here = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let wrong = sign_in(&h, OWNER, "not-the-password", here).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(stored(&h).await, legacy, "a failed sign-in changes nothing");
    let ok = sign_in(&h, OWNER, PASSWORD, here).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.text);
    let now = stored(&h).await;
    assert!(now.starts_with("$argon2id$"), "{now}");
    assert!(outpost_portal::passwords::verify_any(PASSWORD, &now));
    let again = sign_in(&h, OWNER, PASSWORD, here).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(
        stored(&h).await,
        now,
        "an Argon2id value of the current cost stays"
    );
}

#[tokio::test]
async fn sign_in_attempts_are_rate_limited_per_account_and_per_address() {
    let h = harness().await;
    owned_site(&h).await;
    // Per account: five a minute, whatever the address.
    for n in 0..5u8 {
        let page = sign_in(
            &h,
            OWNER,
            "wrong-password",
            IpAddr::V4(Ipv4Addr::new(127, 0, 1, n)),
        )
        .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    let limited = sign_in(&h, OWNER, PASSWORD, IpAddr::V4(Ipv4Addr::new(127, 0, 1, 9))).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.text.contains("too many sign-in attempts"));
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");

    // Per address: ten a minute, whatever the account.
    let addr = IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1));
    for n in 0..10 {
        let page = sign_in(&h, &format!("user{n}@example.com"), "wrong-password", addr).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    let limited = sign_in(&h, "other@example.com", "wrong-password", addr).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn without_a_session_owner_routes_refuse() {
    let h = harness().await;
    let (id, _) = owned_site(&h).await;
    let page = request(&h, Method::GET, "/owner", Req::default()).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/owner/sign-in");
    let form_page = request(&h, Method::GET, "/owner/sign-in", Req::default()).await;
    assert_eq!(form_page.status, StatusCode::OK);
    assert!(form_page.text.contains("name=\"viewport\""));

    for cookie in [
        None,
        Some("outpost_owner=made-up"),
        Some("outpost_owner=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    ] {
        let list = request(
            &h,
            Method::GET,
            "/api/v1/owner/devices",
            Req {
                cookie,
                ..Req::default()
            },
        )
        .await;
        assert_eq!(list.status, StatusCode::UNAUTHORIZED, "{cookie:?}");
        assert_eq!(error_of(&list), "no_session");
        let act = request(
            &h,
            Method::POST,
            &format!("/api/v1/owner/agents/{id}/devices/{LAMP}/block"),
            Req {
                cookie,
                ..Req::default()
            },
        )
        .await;
        assert_eq!(act.status, StatusCode::UNAUTHORIZED);
    }
    assert!(control_commands(&h, &id).is_empty());
}

#[tokio::test]
async fn state_changes_need_the_sessions_csrf_token() {
    let h = harness().await;
    let (id, cookie) = owned_site(&h).await;
    let csrf = csrf_of(&h, &cookie).await;
    let other = {
        let page = sign_in(&h, OWNER, PASSWORD, IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
        page.session()
    };
    let other_csrf = csrf_of(&h, &other).await;
    assert_ne!(csrf, other_csrf, "each session has its own token");
    let api = format!("/api/v1/owner/agents/{id}/devices/{LAMP}/block?wait_ms=0");
    let page_path = format!("/owner/devices/{id}/{LAMP}/block");

    for token in [None, Some(""), Some(other_csrf.as_str())] {
        let headers = token
            .map(|t| vec![("x-csrf-token", t.to_owned())])
            .unwrap_or_default();
        let api_resp = request(
            &h,
            Method::POST,
            &api,
            Req {
                cookie: Some(&cookie),
                headers,
                ..Req::default()
            },
        )
        .await;
        assert_eq!(api_resp.status, StatusCode::FORBIDDEN, "{token:?}");
        assert_eq!(error_of(&api_resp), "csrf_failed");
        let fields: Vec<(&str, &str)> = token.map(|t| vec![("csrf", t)]).unwrap_or_default();
        let page = request(
            &h,
            Method::POST,
            &page_path,
            Req {
                cookie: Some(&cookie),
                form: Some(form(&fields)),
                ..Req::default()
            },
        )
        .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{token:?}");
        assert!(page.text.contains("security token"), "{}", page.text);
    }
    // The right token from another site's page is refused too.
    let cross = request(
        &h,
        Method::POST,
        &page_path,
        Req {
            cookie: Some(&cookie),
            form: Some(form(&[("csrf", &csrf)])),
            headers: vec![("origin", "https://evil.example".into())],
            ..Req::default()
        },
    )
    .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    assert!(control_commands(&h, &id).is_empty(), "nothing was sent");

    // Sign-out too; with the token it ends the session.
    let out = request(
        &h,
        Method::POST,
        "/owner/sign-out",
        Req {
            cookie: Some(&cookie),
            form: Some(String::new()),
            ..Req::default()
        },
    )
    .await;
    assert_eq!(out.status, StatusCode::FORBIDDEN);
    let out = request(
        &h,
        Method::POST,
        "/owner/sign-out",
        Req {
            cookie: Some(&cookie),
            form: Some(form(&[("csrf", &csrf)])),
            ..Req::default()
        },
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), "/owner/sign-in");
    assert!(out.set_cookie().contains("Max-Age=0"));
    let after = request(
        &h,
        Method::GET,
        "/api/v1/owner/devices",
        Req {
            cookie: Some(&cookie),
            ..Req::default()
        },
    )
    .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        home(&h, &other).await.status,
        StatusCode::OK,
        "other sessions go on"
    );
}

#[tokio::test]
async fn sessions_end_after_seven_days() {
    let h = harness().await;
    let (_, cookie) = owned_site(&h).await;
    h.clock
        .advance(chrono::Duration::days(7) - chrono::Duration::seconds(1));
    assert_eq!(home(&h, &cookie).await.status, StatusCode::OK);
    h.clock.advance(chrono::Duration::seconds(1));
    let page = home(&h, &cookie).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/owner/sign-in");
}

// ---------------------------------------------------------------------------------------------------------
// What an owner sees and may do
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_owner_sees_only_the_visible_devices() {
    let h = harness().await;
    let (id, cookie) = owned_site(&h).await;
    let list = owner_devices(&h, &cookie).await;
    assert_eq!(list["email"], OWNER);
    let sites = list["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 1);
    assert_eq!(sites[0]["agent_id"], id.as_str());
    assert_eq!(sites[0]["name"], "home");
    assert_eq!(sites[0]["enabled"], true);
    assert_eq!(sites[0]["online"], true);
    let devices = sites[0]["devices"].as_array().unwrap();
    assert_eq!(
        devices,
        &vec![
            json!({ "id": LAMP, "name": "Hall lamp", "ipv4": "192.0.2.51", "online": true, "blocked": false,
                    "can_block": true, "power": ["on", "off", "cycle"] }),
            json!({ "id": TV, "name": "Living room TV", "ipv4": "192.0.2.53", "online": true, "blocked": false,
                    "can_block": false, "power": [] }),
        ],
        "the camera is hidden; the TV has an outlet but no power flag"
    );

    let page = home(&h, &cookie).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("Hall lamp") && page.text.contains("192.0.2.53"));
    assert!(
        !page.text.contains("Back camera")
            && !page.text.contains("192.0.2.52")
            && !page.text.contains(CAMERA)
    );
    assert!(!page.text.contains("Guest printer"), "never made visible");
    assert_eq!(
        page.text.matches("Block internet").count(),
        1,
        "only the lamp"
    );
    assert_eq!(page.text.matches("Power off").count(), 1, "only the lamp");
    assert!(page
        .text
        .contains(&format!("action=\"/owner/devices/{id}/{LAMP}/block\"")));
    assert!(
        !page.text.contains(&format!("/owner/devices/{id}/{TV}/")),
        "no buttons for the TV"
    );
    assert!(page.text.contains("name=\"viewport\""));
    assert!(page.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
}

#[tokio::test]
async fn an_owner_cannot_act_beyond_the_flags() {
    let h = harness().await;
    let (id, cookie) = owned_site(&h).await;
    // The TV: visible, no flags.
    let block = owner_action(&h, &cookie, &id, TV, "block", None).await;
    assert_eq!(block.status, StatusCode::FORBIDDEN, "{}", block.text);
    assert_eq!(error_of(&block), "not_permitted");
    assert!(block.json()["message"]
        .as_str()
        .unwrap()
        .contains("you may not block"));
    let power = owner_action(
        &h,
        &cookie,
        &id,
        TV,
        "power",
        Some(json!({ "action": "on" })),
    )
    .await;
    assert_eq!(power.status, StatusCode::FORBIDDEN);
    assert!(power.json()["message"].as_str().unwrap().contains("power"));
    // The camera: hidden, so it does not exist for the owner (its flags would allow both).
    for action in ["block", "unblock"] {
        let hidden = owner_action(&h, &cookie, &id, CAMERA, action, None).await;
        assert_eq!(hidden.status, StatusCode::NOT_FOUND, "{action}");
        assert_eq!(error_of(&hidden), "not_found");
    }
    // Power flag without an outlet: no button, and refused.
    let bare = site(&h, "cabin", Platform::Router).await;
    set_owner(&h, &bare, json!({ "email": OWNER, "enabled": true })).await;
    set_flags(&h, &bare, LAMP, true, true, false).await;
    let listed = owner_devices(&h, &cookie).await;
    let cabin = listed["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["agent_id"] == bare.as_str())
        .unwrap()
        .clone();
    assert_eq!(cabin["devices"][0]["power"], json!([]));
    let no_outlet = owner_action(
        &h,
        &cookie,
        &bare,
        LAMP,
        "power",
        Some(json!({ "action": "on" })),
    )
    .await;
    assert_eq!(no_outlet.status, StatusCode::CONFLICT);
    assert_eq!(error_of(&no_outlet), "no_outlet");
    let no_block = owner_action(&h, &cookie, &bare, LAMP, "block", None).await;
    assert_eq!(no_block.status, StatusCode::FORBIDDEN);

    // The pages refuse the same way, with the sentence on the page.
    let csrf = csrf_of(&h, &cookie).await;
    let page = request(
        &h,
        Method::POST,
        &format!("/owner/devices/{id}/{TV}/block"),
        Req {
            cookie: Some(&cookie),
            form: Some(form(&[("csrf", &csrf)])),
            ..Req::default()
        },
    )
    .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(
        page.text
            .contains("you may not block or unblock this device"),
        "{}",
        page.text
    );
    let page = request(
        &h,
        Method::POST,
        &format!("/owner/devices/{id}/{CAMERA}/block"),
        Req {
            cookie: Some(&cookie),
            form: Some(form(&[("csrf", &csrf)])),
            ..Req::default()
        },
    )
    .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);

    assert!(control_commands(&h, &id).is_empty(), "nothing was sent");
    assert!(control_commands(&h, &bare).is_empty(), "nothing was sent");
    assert!(
        !history(&h, &id)
            .await
            .iter()
            .any(|l| l["actor"].as_str().unwrap().starts_with("owner:")
                && l["action"] != "owner_joined"),
        "refusals write no history"
    );
}

#[tokio::test]
async fn an_owner_cannot_reach_another_sites_devices() {
    let h = harness().await;
    let (mine, cookie) = owned_site(&h).await;
    let theirs = site(&h, "neighbour", Platform::Router).await;
    set_owner(
        &h,
        &theirs,
        json!({ "email": "bob@example.com", "enabled": true }),
    )
    .await;
    set_flags(&h, &theirs, LAMP, true, true, true).await;

    let list = owner_devices(&h, &cookie).await;
    let ids: Vec<&str> = list["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["agent_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![mine.as_str()]);

    for agent in [theirs.as_str(), "ag-nobody", "NOT AN ID"] {
        let page = owner_action(&h, &cookie, &agent.replace(' ', "%20"), LAMP, "block", None).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{agent}");
        assert_eq!(error_of(&page), "not_found");
        assert!(!page.text.contains("neighbour"));
    }
    let page = request(
        &h,
        Method::POST,
        &format!("/owner/devices/{theirs}/{LAMP}/block"),
        Req {
            cookie: Some(&cookie),
            form: Some(form(&[("csrf", &csrf_of(&h, &cookie).await)])),
            ..Req::default()
        },
    )
    .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(control_commands(&h, &theirs).is_empty());

    // Moving the site to another owner takes it away at once.
    set_owner(
        &h,
        &mine,
        json!({ "email": "carol@example.com", "enabled": true }),
    )
    .await;
    assert_eq!(owner_devices(&h, &cookie).await["sites"], json!([]));
    let page = owner_action(&h, &cookie, &mine, LAMP, "block", None).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn switching_owner_access_off_refuses_everything_of_the_site() {
    let h = harness().await;
    let (id, cookie) = owned_site(&h).await;
    set_owner(&h, &id, json!({ "email": OWNER, "enabled": false })).await;
    let list = owner_devices(&h, &cookie).await;
    assert_eq!(list["sites"][0]["enabled"], false);
    assert_eq!(list["sites"][0]["devices"], json!([]));
    for (device, action, body) in [
        (LAMP, "block", None),
        (LAMP, "unblock", None),
        (LAMP, "power", Some(json!({ "action": "on" }))),
        (CAMERA, "block", None),
        ("00:1a:11:00:00:99", "block", None),
    ] {
        let page = owner_action(&h, &cookie, &id, device, action, body).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{device} {action}");
        assert_eq!(error_of(&page), "owner_access_disabled");
        assert!(page.json()["message"]
            .as_str()
            .unwrap()
            .contains("switched off"));
    }
    let page = home(&h, &cookie).await;
    assert!(page.text.contains("Access to this site is switched off"));
    assert!(!page.text.contains("Hall lamp"));
    assert!(control_commands(&h, &id).is_empty());

    set_owner(&h, &id, json!({ "email": OWNER, "enabled": true })).await;
    // Switched on again: the action goes out (answered at once with `wait_ms=0`, still pending).
    let sent = owner_action(&h, &cookie, &id, LAMP, "block", None).await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.text);
    assert_eq!(sent.json()["status"], "pending");
    assert_eq!(control_commands(&h, &id).len(), 1);
    assert_eq!(
        owner_devices(&h, &cookie).await["sites"][0]["devices"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// Runs `request` while the simulated agent acknowledges the next command sent; returns the answer and
/// the command.
async fn acked<F: std::future::Future<Output = Page>>(
    h: &Harness,
    request: F,
) -> (Page, CommandEnvelope) {
    let agent = async {
        let (to, cmd) = h.sent_rx.lock().await.recv().await.unwrap();
        let ack = Ack {
            command_id: cmd.id,
            outcome: Outcome::Done,
            result: None,
        };
        assert_eq!(
            h.send(to.as_str(), 0, AgentMessage::Ack(ack)).await,
            Disposition::Applied
        );
        cmd
    };
    tokio::join!(request, agent)
}

#[tokio::test]
async fn a_permitted_action_sends_the_command_and_is_in_the_history_with_the_owner() {
    let h = harness().await;
    let (id, cookie) = owned_site(&h).await;
    let csrf = csrf_of(&h, &cookie).await;

    // JSON API: block, acknowledged.
    let (resp, cmd) = acked(
        &h,
        request(
            &h,
            Method::POST,
            &format!("/api/v1/owner/agents/{id}/devices/{LAMP}/block"),
            Req {
                cookie: Some(&cookie),
                headers: vec![("x-csrf-token", csrf.clone())],
                ..Req::default()
            },
        ),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text);
    assert_eq!(resp.json()["status"], "done");
    assert_eq!(resp.json()["kind"], "block");
    let lamp: DeviceRef = LAMP.parse().unwrap();
    assert_eq!(
        cmd.cmd,
        Command::Block {
            device: lamp.clone(),
            ipv4: Some(Ipv4Addr::new(192, 0, 2, 51))
        }
    );

    // Pages: a restart asks first and sends nothing...
    let power_path = format!("/owner/devices/{id}/{LAMP}/power");
    let ask = request(
        &h,
        Method::POST,
        &power_path,
        Req {
            cookie: Some(&cookie),
            form: Some(form(&[("csrf", &csrf), ("action", "cycle")])),
            ..Req::default()
        },
    )
    .await;
    assert_eq!(ask.status, StatusCode::OK);
    assert!(
        ask.text.contains("Restart Hall lamp?") && ask.text.contains("Yes, restart it"),
        "{}",
        ask.text
    );
    assert!(ask.text.contains("name=\"confirm\" value=\"yes\""));
    assert_eq!(control_commands(&h, &id).len(), 1, "only the block so far");
    // ...and runs once confirmed.
    let (done, cmd) = acked(
        &h,
        request(
            &h,
            Method::POST,
            &power_path,
            Req {
                cookie: Some(&cookie),
                form: Some(form(&[
                    ("csrf", &csrf),
                    ("action", "cycle"),
                    ("confirm", "yes"),
                ])),
                ..Req::default()
            },
        ),
    )
    .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert!(
        done.text.contains("Hall lamp: power cycle done."),
        "{}",
        done.text
    );
    let Command::Power {
        device,
        action,
        binding,
    } = &cmd.cmd
    else {
        panic!("not a power command: {:?}", cmd.cmd)
    };
    assert_eq!((device, *action), (&lamp, PowerAction::Cycle));
    assert_eq!(binding.cycle_delay_secs, 3);

    // Power on needs no confirmation.
    let page = request(
        &h,
        Method::POST,
        &power_path,
        Req {
            cookie: Some(&cookie),
            form: Some(form(&[("csrf", &csrf), ("action", "on")])),
            ..Req::default()
        },
    );
    let (page, cmd) = acked(&h, page).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(matches!(
        cmd.cmd,
        Command::Power {
            action: PowerAction::On,
            ..
        }
    ));

    let lines = history(&h, &id).await;
    let by_owner: Vec<(String, String)> = lines
        .iter()
        .filter(|l| l["actor"] == "owner:ann@example.com" && l["action"] != "owner_joined")
        .map(|l| {
            (
                l["action"].as_str().unwrap().to_owned(),
                l["details"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(by_owner.len(), 3, "{by_owner:?}");
    assert_eq!(by_owner[0].0, "device_block");
    assert!(
        by_owner[0].1.starts_with(&format!("{LAMP}: block")),
        "{}",
        by_owner[0].1
    );
    assert_eq!(by_owner[1].0, "device_power");
    assert!(
        by_owner[1].1.starts_with(&format!("{LAMP}: power cycle")),
        "{}",
        by_owner[1].1
    );
    assert!(
        by_owner[2].1.starts_with(&format!("{LAMP}: power on")),
        "{}",
        by_owner[2].1
    );
}

#[tokio::test]
async fn a_failed_action_shows_the_agents_message() {
    let h = harness().await;
    let (id, cookie) = owned_site(&h).await;
    let csrf = csrf_of(&h, &cookie).await;
    let path = format!("/owner/devices/{id}/{LAMP}/block");
    let page = request(
        &h,
        Method::POST,
        &path,
        Req {
            cookie: Some(&cookie),
            form: Some(form(&[("csrf", &csrf)])),
            ..Req::default()
        },
    );
    let agent = async {
        let (to, cmd) = h.sent_rx.lock().await.recv().await.unwrap();
        let ack = Ack {
            command_id: cmd.id,
            outcome: Outcome::failed_with(
                codes::GATEWAY_UNKNOWN,
                "the gateway's MAC is not known yet; retry in a minute",
            ),
            result: None,
        };
        h.send(to.as_str(), 0, AgentMessage::Ack(ack)).await;
    };
    let (page, ()) = tokio::join!(page, agent);
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text.contains(
            "Hall lamp: block failed: the gateway&#39;s MAC is not known yet; retry in a minute"
        ),
        "{}",
        page.text
    );
}

// ---------------------------------------------------------------------------------------------------------
// Cleanup and deletion
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn cleanup_removes_the_flags_and_deletion_everything_of_the_agent() {
    let h = harness().await;
    let (id, cookie) = owned_site(&h).await;
    let agent = outpost_cloud_link::AgentId::parse(&id).unwrap();
    let lamp = DeviceKey {
        vlan: 0,
        mac: LAMP.into(),
    };

    let resp = h
        .op(Method::POST, &format!("/api/v1/agents/{id}/cleanup"), None)
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    {
        let mut conn = h.app.store().conn().await.unwrap();
        assert_eq!(
            owners::flags(&mut conn, &agent, &lamp).await.unwrap(),
            owners::Flags::default()
        );
    }
    let owner = h
        .op(Method::GET, &format!("/api/v1/agents/{id}/owner"), None)
        .await
        .body;
    assert_eq!(
        (owner["email"].as_str(), owner["enabled"].as_bool()),
        (Some(OWNER), Some(true)),
        "configuration stays"
    );
    // The devices come back with the next report, hidden until the operator shares them again.
    let epoch = h.agent(&id).await["data_epoch"].as_u64().unwrap();
    for r in delta_reports(&devices(), &[]) {
        h.send(&id, epoch, AgentMessage::Report(r)).await;
    }
    assert_eq!(
        owner_devices(&h, &cookie).await["sites"][0]["devices"],
        json!([])
    );

    // Deletion (the agent disconnected): settings, flags and invitations go; the account stays.
    set_flags(&h, &id, LAMP, true, false, false).await;
    let pending = token_of(
        &set_owner(
            &h,
            &id,
            json!({ "email": OWNER, "enabled": true, "invite": true }),
        )
        .await["invitation"],
    );
    h.send(
        &id,
        epoch,
        AgentMessage::Presence(Presence { online: false }),
    )
    .await;
    let deleted = h
        .op(Method::DELETE, &format!("/api/v1/agents/{id}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);
    let mut conn = h.app.store().conn().await.unwrap();
    assert_eq!(owners::get_owner(&mut conn, &agent).await.unwrap(), None);
    for table in ["owner_device_flags", "owner_invitations", "agent_owners"] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table}");
    }
    drop(conn);
    let link = request(
        &h,
        Method::GET,
        &format!("/owner/invite/{pending}"),
        Req::default(),
    )
    .await;
    assert_eq!(link.status, StatusCode::NOT_FOUND);
    assert_eq!(
        owner_devices(&h, &cookie).await["sites"],
        json!([]),
        "signed in, with no site left"
    );
}

#[tokio::test]
async fn the_owner_page_shows_who_looks_after_the_site() {
    let h = harness().await;
    let (_, cookie) = owned_site(&h).await;
    let set = h
        .op(
            Method::PUT,
            "/api/v1/branding",
            Some(json!({
                "name": "Acme <Networks>",
                "contact_phone": "+351 21 000 0000",
                "contact_email": "help@acme.example"
            })),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
    let (status, logo) = crate::branding::upload(&h, crate::branding::png(30, 30)).await;
    assert_eq!(status, StatusCode::OK);
    let logo = logo["logo"].as_str().unwrap().to_owned();
    let page = home(&h, &cookie).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text
            .contains("Looked after by <strong>Acme &lt;Networks&gt;</strong>"),
        "{}",
        page.text
    );
    assert!(
        page.text.contains("+351 21 000 0000") && page.text.contains("mailto:help@acme.example")
    );
    assert!(page.text.contains(&format!("src=\"{logo}\"")));
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("img-src 'self'"), "{csp}");
}
