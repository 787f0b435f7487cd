//! The team-management pages over HTTP with session cookies (no browser): inviting from `/team` (the
//! link mailed through a real SMTP server and kept off the page, or shown once without a mailer),
//! changing a role, requiring two-factor sign-in, forcing a sign-out and removing a user; groups and
//! sub-groups made from `/groups`, their users set, an agent moved from its page, and what the group
//! admin then sees; a supervisor's read-only groups pages; support grants made and deleted from the
//! page, applying at once; the history page's filters and its CSV (the API's bytes); API tokens shown
//! once and revoked; the header's links by role; and every form refusing a missing, foreign or
//! cross-site CSRF token.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use outpost_portal::access::Role;
use outpost_portal::config::{SmtpSecurity, SmtpSettings};
use outpost_portal::mail::Mailer;
use outpost_tests::smtp::SmtpCapture;
use serde_json::json;

use crate::harness::{form, id_of, request, Auth, Harness, Options, Page, Req, PUBLIC_URL};
use crate::people::group;

const PASSWORD: &str = "correct horse battery staple";
const ADMIN: &str = "boss@example.com";
const ORIGIN: &str = "https://portal.example:8443";

static NEXT_ADDRESS: AtomicU8 = AtomicU8::new(1);

/// Signs in through the page (each time from another address, so the per-address limit never bites);
/// the session cookie.
async fn sign_in(h: &Harness, email: &str) -> String {
    let from = IpAddr::V4(Ipv4Addr::new(
        10,
        9,
        0,
        NEXT_ADDRESS.fetch_add(1, Ordering::Relaxed),
    ));
    let page = request(
        h,
        Method::POST,
        "/sign-in",
        Req {
            form: Some(form(&[
                ("email", email),
                ("password", PASSWORD),
                ("next", "/agents"),
            ])),
            from: Some(from),
            ..Req::default()
        },
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    assert_eq!(page.location(), "/agents", "{email} owes nothing more");
    page.session()
}

/// A harness with a company admin who signs in with a password; their session cookie.
async fn with_admin(options: Options) -> (Harness, String) {
    let h = Harness::with(options).await;
    h.add_user(ADMIN, Role::CompanyAdmin, None, PASSWORD).await;
    let cookie = sign_in(&h, ADMIN).await;
    (h, cookie)
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
            headers: vec![("origin", ORIGIN.into())],
            ..Req::default()
        },
    )
    .await
}

/// The CSRF token of the page's forms.
fn csrf(page: &Page) -> String {
    let marker = "name=\"csrf\" value=\"";
    let at = page
        .text
        .find(marker)
        .unwrap_or_else(|| panic!("no CSRF field in {}", page.text));
    let rest = &page.text[at + marker.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// The session's CSRF token (read from its account page).
async fn csrf_of(h: &Harness, cookie: &str) -> String {
    csrf(&get(h, "/account", cookie).await)
}

/// The table row (`<tr ...</tr>`) holding `marker`.
fn row_with<'a>(page: &'a Page, marker: &str) -> &'a str {
    let at = page
        .text
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {}", page.text));
    let start = page.text[..at].rfind("<tr").unwrap();
    let end = at + page.text[at..].find("</tr>").unwrap();
    &page.text[start..end]
}

/// The text of the element with `id` (up to the next tag).
fn text_of(page: &Page, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let at = page
        .text
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in {}", page.text));
    let rest = &page.text[at..];
    let rest = &rest[rest.find('>').unwrap() + 1..];
    rest[..rest.find('<').unwrap()].to_owned()
}

/// The number after `prefix` in a redirect's location (`/groups/7?ok=created` -> 7).
fn id_in(location: &str, prefix: &str) -> i64 {
    let rest = location
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{location} does not start with {prefix}"));
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().unwrap()
}

/// The API's users, as (username, role, require_2fa).
async fn users(h: &Harness) -> Vec<serde_json::Value> {
    let resp = h.op(Method::GET, "/api/v1/users", None).await;
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    resp.body["users"].as_array().unwrap().clone()
}

/// The agent's group, as stored.
async fn group_of(h: &Harness, agent: &str) -> Option<i64> {
    let id = outpost_cloud_link::AgentId::parse(agent).unwrap();
    h.app.agent(&id).await.unwrap().group_id
}

fn smtp_mailer(smtp: &SmtpCapture) -> Arc<Mailer> {
    let mut s = SmtpSettings::new(
        "127.0.0.1",
        SmtpSecurity::None,
        "Outpost <portal@example.com>".parse().unwrap(),
    );
    s.port = smtp.port();
    s.timeout = Duration::from_secs(5);
    Arc::new(Mailer::new(&s).unwrap())
}

#[tokio::test]
async fn an_invitation_from_the_team_page_is_mailed_and_its_link_stays_off_the_page() {
    let smtp = SmtpCapture::start().unwrap();
    let (h, admin) = with_admin(Options {
        mailer: Some(smtp_mailer(&smtp)),
        ..Options::default()
    })
    .await;
    let north = group(&h, "North", None).await;
    let team = get(&h, "/team", &admin).await;
    assert_eq!(team.status, StatusCode::OK, "{}", team.text);
    assert!(team.text.contains("id=\"invite\""), "{}", team.text);
    assert!(team.text.contains(">North</option>"), "{}", team.text);
    let token = csrf(&team);

    // A group admin without a group is refused with the server's reason, and nobody is made.
    let refused = post(
        &h,
        "/team/invite",
        &admin,
        &[
            ("csrf", &token),
            ("email", "nia@example.com"),
            ("role", "group-admin"),
        ],
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    assert!(
        refused.text.contains("at least one group"),
        "{}",
        refused.text
    );
    assert_eq!(
        users(&h).await.len(),
        2,
        "the admin and the harness token's"
    );

    let invited = post(
        &h,
        "/team/invite",
        &admin,
        &[
            ("csrf", &token),
            ("email", "Nia@Example.com"),
            ("name", "Nia Field"),
            ("role", "group-admin"),
            ("groups", &north.to_string()),
            ("require_2fa", "yes"),
        ],
    )
    .await;
    assert_eq!(invited.status, StatusCode::SEE_OTHER, "{}", invited.text);
    assert!(
        invited.location().starts_with("/team?ok=invited&user="),
        "{}",
        invited.location()
    );
    let shown = get(&h, invited.location(), &admin).await;
    assert!(
        shown
            .text
            .contains("Invitation sent to nia@example.com; the link works for 72 hours."),
        "{}",
        shown.text
    );
    assert!(!shown.text.contains("token="), "{}", shown.text);
    let row = row_with(&shown, "<td>nia@example.com</td>");
    assert!(
        row.contains("Group admin") && row.contains("North") && row.contains("required"),
        "{row}"
    );

    let mail = smtp
        .wait_for("nia@example.com", "invited you", Duration::from_secs(20))
        .await
        .unwrap();
    let link = mail.links().into_iter().next().unwrap();
    assert!(
        link.starts_with(&format!("{PUBLIC_URL}/account/password?token=")),
        "{link}"
    );
    let token_part = link.split("token=").nth(1).unwrap();
    assert!(!shown.text.contains(token_part));
    assert!(!invited.text.contains(token_part));
    // The mailed link works: the invited person chooses a password there.
    let set = request(
        &h,
        Method::POST,
        link.strip_prefix(PUBLIC_URL)
            .unwrap()
            .split('?')
            .next()
            .unwrap(),
        Req {
            form: Some(form(&[("token", token_part), ("password", PASSWORD)])),
            headers: vec![("origin", ORIGIN.into())],
            ..Req::default()
        },
    )
    .await;
    assert_eq!(set.location(), "/sign-in", "{}", set.text);
}

#[tokio::test]
async fn without_a_mailer_the_invitation_link_is_shown_once() {
    let (h, admin) = with_admin(Options::default()).await;
    let token = csrf_of(&h, &admin).await;
    let invited = post(
        &h,
        "/team/invite",
        &admin,
        &[
            ("csrf", &token),
            ("email", "cara@example.com"),
            ("role", "company-admin"),
        ],
    )
    .await;
    assert_eq!(invited.status, StatusCode::CREATED, "{}", invited.text);
    assert!(
        invited
            .text
            .contains("Invitation made for <strong>cara@example.com</strong>"),
        "{}",
        invited.text
    );
    let at = invited
        .text
        .find(&format!("{PUBLIC_URL}/account/password?token="))
        .unwrap_or_else(|| panic!("no link in {}", invited.text));
    let shown = &invited.text[at..];
    let shown = &shown[..shown.find('<').unwrap()];
    // The link is real ...
    let page = request(
        &h,
        Method::GET,
        shown.strip_prefix(PUBLIC_URL).unwrap(),
        Req::default(),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("cara@example.com"));
    // ... and the team page never shows it again.
    let again = get(&h, "/team", &admin).await;
    assert!(!again.text.contains("token="), "{}", again.text);
    assert!(again.text.contains("cara@example.com"));
}

#[tokio::test]
async fn an_admin_changes_a_role_requires_two_factor_signs_out_and_removes_a_user() {
    let (h, admin) = with_admin(Options::default()).await;
    let gia = h
        .add_user("gia@example.com", Role::GroupAdmin, Some("North"), PASSWORD)
        .await;
    let gia_cookie = sign_in(&h, "gia@example.com").await;
    // A group admin cannot reach the team page.
    let refused = get(&h, "/team", &gia_cookie).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert!(refused.text.contains("users.read"), "{}", refused.text);

    let team = get(&h, "/team", &admin).await;
    let row = row_with(&team, &format!("/team/{gia}/role"));
    assert!(
        row.contains("Group admin") && row.contains("North"),
        "{row}"
    );
    assert!(
        row.contains("<td class=\"num sessions\">1</td>"),
        "gia's session is counted: {row}"
    );
    let token = csrf(&team);

    let changed = post(
        &h,
        &format!("/team/{gia}/role"),
        &admin,
        &[("csrf", &token), ("role", "supervisor")],
    )
    .await;
    assert_eq!(changed.location(), "/team?ok=role", "{}", changed.text);
    let team = get(&h, changed.location(), &admin).await;
    assert!(team.text.contains("Role changed."));
    assert!(row_with(&team, &format!("/team/{gia}/role"))
        .contains("<td class=\"role\">Supervisor</td>"));
    let required = post(
        &h,
        &format!("/team/{gia}/two-factor"),
        &admin,
        &[("csrf", &token), ("require", "yes")],
    )
    .await;
    assert_eq!(required.location(), "/team?ok=two-factor-on");
    let team = get(&h, "/team", &admin).await;
    let row = row_with(&team, &format!("/team/{gia}/role"));
    assert!(
        row.contains("<td class=\"required\">required</td>"),
        "{row}"
    );
    assert!(row.contains("Stop requiring 2FA"), "{row}");
    let api = users(&h).await;
    let gia_api = api.iter().find(|u| u["id"] == gia).unwrap();
    assert_eq!(gia_api["role"], "supervisor");
    assert_eq!(gia_api["require_2fa"], true);

    // Before the forced sign-out gia's cookie is a live session; after it, the sign-in page.
    let before = get(&h, "/account", &gia_cookie).await;
    assert!(
        !before.location().starts_with("/sign-in"),
        "{}",
        before.location()
    );
    let out = post(
        &h,
        &format!("/team/{gia}/sign-out"),
        &admin,
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(out.location(), "/team?ok=signed-out", "{}", out.text);
    let after = get(&h, "/agents", &gia_cookie).await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert!(
        after.location().starts_with("/sign-in"),
        "{}",
        after.location()
    );
    let team = get(&h, "/team", &admin).await;
    assert!(
        row_with(&team, &format!("/team/{gia}/role")).contains("<td class=\"num sessions\">0</td>")
    );

    // Removing asks first; the admin cannot remove themself.
    let confirm = get(&h, &format!("/team/{gia}/remove"), &admin).await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.text);
    assert!(
        confirm.text.contains("loses access at once"),
        "{}",
        confirm.text
    );
    let unconfirmed = post(
        &h,
        &format!("/team/{gia}/remove"),
        &admin,
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(unconfirmed.location(), format!("/team/{gia}/remove"));
    assert!(users(&h).await.iter().any(|u| u["id"] == gia));
    let removed = post(
        &h,
        &format!("/team/{gia}/remove"),
        &admin,
        &[("csrf", &token), ("confirm", "yes")],
    )
    .await;
    assert_eq!(removed.location(), "/team?ok=removed");
    assert!(!users(&h).await.iter().any(|u| u["id"] == gia));
    let me = users(&h)
        .await
        .into_iter()
        .find(|u| u["email"] == ADMIN)
        .unwrap();
    let me = me["id"].as_i64().unwrap();
    let team = get(&h, "/team", &admin).await;
    assert!(
        !team.text.contains(&format!("/team/{me}/remove")),
        "no remove link for oneself"
    );
    let self_removal = post(
        &h,
        &format!("/team/{me}/remove"),
        &admin,
        &[("csrf", &token), ("confirm", "yes")],
    )
    .await;
    assert_eq!(
        self_removal.status,
        StatusCode::CONFLICT,
        "{}",
        self_removal.text
    );
    assert!(self_removal.text.contains("cannot remove your own account"));
    // Another company's user, or a made-up id, is not there.
    let other =
        crate::people::other_company_user(&h, "olga@other.example", Role::CompanyAdmin, None).await;
    let foreign = post(
        &h,
        &format!("/team/{other}/role"),
        &admin,
        &[("csrf", &token), ("role", "company-admin")],
    )
    .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{}", foreign.text);
}

#[tokio::test]
async fn groups_made_on_the_pages_and_an_agent_moved_from_its_page_scope_a_group_admin() {
    let (h, admin) = with_admin(Options::default()).await;
    let gia = h
        .add_user(
            "gia@example.com",
            Role::GroupAdmin,
            Some("Elsewhere"),
            PASSWORD,
        )
        .await;
    let shop = id_of(&h.activate("shop-host").await);
    let depot = id_of(&h.activate("depot-host").await);
    let token = csrf_of(&h, &admin).await;

    let made = post(
        &h,
        "/groups/new",
        &admin,
        &[
            ("csrf", &token),
            ("name", "North"),
            ("note", "Northern shops"),
            ("parent", ""),
        ],
    )
    .await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.text);
    let north = id_in(made.location(), "/groups/");
    let made = post(
        &h,
        "/groups/new",
        &admin,
        &[
            ("csrf", &token),
            ("name", "Harbour"),
            ("note", ""),
            ("parent", &north.to_string()),
        ],
    )
    .await;
    let harbour = id_in(made.location(), "/groups/");
    let shown = get(&h, made.location(), &admin).await;
    assert!(shown.text.contains("Group created."), "{}", shown.text);
    // A second group of the same name is refused with the server's message.
    let twice = post(
        &h,
        "/groups/new",
        &admin,
        &[("csrf", &token), ("name", "North"), ("parent", "")],
    )
    .await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    assert!(
        twice.text.contains("already a group named"),
        "{}",
        twice.text
    );

    // The list: the sub-group right under its parent, indented.
    let list = get(&h, "/groups", &admin).await;
    let n = list
        .text
        .find("data-group=\"North\" data-depth=\"0\"")
        .unwrap();
    let hb = list
        .text
        .find("data-group=\"Harbour\" data-depth=\"1\"")
        .unwrap();
    let e = list
        .text
        .find("data-group=\"Elsewhere\" data-depth=\"0\"")
        .unwrap();
    assert!(e < n && n < hb, "{}", list.text);
    assert!(row_with(&list, "data-group=\"North\"").contains("Northern shops"));
    assert!(row_with(&list, "data-group=\"Elsewhere\"").contains("gia"));

    // Gia leaves Elsewhere and joins North (and so its sub-group Harbour).
    let elsewhere = id_in(
        &list.text[list.text.find("href=\"/groups/").unwrap() + "href=\"".len()..],
        "/groups/",
    );
    let set = post(
        &h,
        &format!("/groups/{elsewhere}/users"),
        &admin,
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(
        set.location(),
        format!("/groups/{elsewhere}?ok=users"),
        "{}",
        set.text
    );
    let set = post(
        &h,
        &format!("/groups/{north}/users"),
        &admin,
        &[("csrf", &token), ("users", &gia.to_string())],
    )
    .await;
    assert_eq!(set.location(), format!("/groups/{north}?ok=users"));
    let north_page = get(&h, set.location(), &admin).await;
    assert_eq!(text_of(&north_page, "group-users"), "gia");
    assert!(
        north_page
            .text
            .contains(&format!("value=\"{gia}\" checked")),
        "{}",
        north_page.text
    );
    // Only group admins and supervisors are offered.
    assert!(!north_page.text.contains("name=\"users\" value=\"1\""));

    // The admin moves the shop into Harbour from the agent page.
    let agent_page = get(&h, &format!("/agents/{shop}"), &admin).await;
    assert!(
        agent_page.text.contains("id=\"move-agent\""),
        "{}",
        agent_page.text
    );
    assert!(agent_page.text.contains("— no group —"));
    assert_eq!(text_of(&agent_page, "agent-group"), "No group");
    let moved = post(
        &h,
        &format!("/agents/{shop}/group"),
        &admin,
        &[("csrf", &token), ("group", &harbour.to_string())],
    )
    .await;
    assert_eq!(
        moved.location(),
        format!("/agents/{shop}?ok=moved"),
        "{}",
        moved.text
    );
    let agent_page = get(&h, moved.location(), &admin).await;
    assert!(agent_page.text.contains("Moved to the chosen group."));
    assert_eq!(text_of(&agent_page, "agent-group"), "Harbour");
    assert_eq!(group_of(&h, &shop).await, Some(harbour));

    // Gia sees that agent, and nothing else.
    let gia_cookie = sign_in(&h, "gia@example.com").await;
    let agents = get(&h, "/agents", &gia_cookie).await;
    assert!(
        agents.text.contains(&format!("data-agent=\"{shop}\"")),
        "{}",
        agents.text
    );
    assert!(!agents.text.contains(&depot), "{}", agents.text);
    assert_eq!(agents.text.matches("data-agent=").count(), 1);
    let hidden = get(&h, &format!("/agents/{depot}"), &gia_cookie).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    // Gia's groups are North and Harbour; her move select has no "no group" and no Elsewhere.
    let groups = get(&h, "/groups", &gia_cookie).await;
    assert!(
        groups.text.contains("data-group=\"North\"")
            && groups.text.contains("data-group=\"Harbour\"")
    );
    assert!(
        !groups.text.contains("data-group=\"Elsewhere\""),
        "{}",
        groups.text
    );
    assert!(!groups.text.contains("action=\"/groups/new\""));
    let agent_page = get(&h, &format!("/agents/{shop}"), &gia_cookie).await;
    assert!(agent_page.text.contains("id=\"move-agent\""));
    assert!(!agent_page.text.contains("— no group —"));
    assert!(!agent_page.text.contains(">Elsewhere</option>"));
    let gia_token = csrf_of(&h, &gia_cookie).await;
    let moved = post(
        &h,
        &format!("/agents/{shop}/group"),
        &gia_cookie,
        &[("csrf", &gia_token), ("group", &elsewhere.to_string())],
    )
    .await;
    assert_eq!(moved.status, StatusCode::NOT_FOUND, "{}", moved.text);
    assert_eq!(group_of(&h, &shop).await, Some(harbour));

    // Edit and delete: a group that is not empty is refused with the server's message.
    let edited = post(
        &h,
        &format!("/groups/{harbour}/edit"),
        &admin,
        &[
            ("csrf", &token),
            ("name", "Harbour Side"),
            ("note", "Docks"),
            ("parent", &north.to_string()),
        ],
    )
    .await;
    assert_eq!(
        edited.location(),
        format!("/groups/{harbour}?ok=saved"),
        "{}",
        edited.text
    );
    let under_itself = post(
        &h,
        &format!("/groups/{north}/edit"),
        &admin,
        &[
            ("csrf", &token),
            ("name", "North"),
            ("note", ""),
            ("parent", &harbour.to_string()),
        ],
    )
    .await;
    assert_eq!(
        under_itself.status,
        StatusCode::CONFLICT,
        "{}",
        under_itself.text
    );
    let not_empty = post(
        &h,
        &format!("/groups/{north}/delete"),
        &admin,
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(not_empty.status, StatusCode::CONFLICT, "{}", not_empty.text);
    assert!(
        not_empty.text.contains("is not empty"),
        "{}",
        not_empty.text
    );
    let deleted = post(
        &h,
        &format!("/groups/{elsewhere}/delete"),
        &admin,
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(deleted.location(), "/groups?ok=deleted");
    let list = get(&h, deleted.location(), &admin).await;
    assert!(list.text.contains("Group deleted."));
    assert!(!list.text.contains("data-group=\"Elsewhere\""));
    assert!(list.text.contains("data-group=\"Harbour Side\""));
}

#[tokio::test]
async fn a_supervisors_groups_pages_have_no_forms_and_their_posts_are_refused() {
    let (h, admin) = with_admin(Options::default()).await;
    h.add_user("sue@example.com", Role::Supervisor, Some("North"), PASSWORD)
        .await;
    let shop = id_of(&h.activate("shop-host").await);
    let sue = sign_in(&h, "sue@example.com").await;
    let list = get(&h, "/groups", &sue).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    assert!(list.text.contains("data-group=\"North\""));
    assert!(list.text.contains("id=\"read-only\""));
    let north = id_in(
        &list.text[list.text.find("href=\"/groups/").unwrap() + "href=\"".len()..],
        "/groups/",
    );
    let page = get(&h, &format!("/groups/{north}"), &sue).await;
    assert_eq!(page.status, StatusCode::OK);
    for text in [&list.text, &page.text] {
        // The only form is the header's sign-out.
        assert_eq!(text.matches("<form").count(), 1, "{text}");
        assert!(text.contains("action=\"/sign-out\""));
    }
    let token = csrf_of(&h, &sue).await;
    for (path, fields) in [
        ("/groups/new".to_owned(), vec![("name", "Mine")]),
        (format!("/groups/{north}/edit"), vec![("name", "Renamed")]),
        (format!("/groups/{north}/users"), vec![]),
        (format!("/groups/{north}/delete"), vec![]),
        (format!("/agents/{shop}/group"), vec![("group", "")]),
    ] {
        let mut all = vec![("csrf", token.as_str())];
        all.extend(fields);
        let refused = post(&h, &path, &sue, &all).await;
        let expected = if path.starts_with("/agents/") {
            // Sue's scope is North; the ungrouped shop is not hers to see.
            StatusCode::NOT_FOUND
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(refused.status, expected, "{path}: {}", refused.text);
    }
    let resp = h.op(Method::GET, "/api/v1/groups", None).await;
    let groups = resp.body["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0]["name"], "North");
    assert_eq!(groups[0]["users"], json!(["sue"]));
    // In her group, the agent page shows no move form and the move is refused.
    let admin_token = csrf_of(&h, &admin).await;
    post(
        &h,
        &format!("/agents/{shop}/group"),
        &admin,
        &[("csrf", &admin_token), ("group", &north.to_string())],
    )
    .await;
    let agent_page = get(&h, &format!("/agents/{shop}"), &sue).await;
    assert_eq!(agent_page.status, StatusCode::OK);
    assert!(
        !agent_page.text.contains("id=\"move-agent\""),
        "{}",
        agent_page.text
    );
    assert_eq!(text_of(&agent_page, "agent-group"), "North");
    let refused = post(
        &h,
        &format!("/agents/{shop}/group"),
        &sue,
        &[("csrf", &token), ("group", "")],
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn support_grants_made_and_deleted_on_the_page_apply_at_once() {
    let (h, admin) = with_admin(Options::default()).await;
    let sam = h
        .add_user("sam@operator.example", Role::Support, None, PASSWORD)
        .await;
    let shop = id_of(&h.activate("shop-host").await);
    let depot = id_of(&h.activate("depot-host").await);
    let sam_cookie = sign_in(&h, "sam@operator.example").await;
    let sees = |page: &Page, id: &str| page.text.contains(&format!("data-agent=\"{id}\""));
    let before = get(&h, "/agents", &sam_cookie).await;
    assert!(!sees(&before, &shop) && !sees(&before, &depot));

    let grants = get(&h, "/support-grants", &admin).await;
    assert_eq!(grants.status, StatusCode::OK, "{}", grants.text);
    assert!(
        grants.text.contains(&format!("<option value=\"{sam}\">")),
        "{}",
        grants.text
    );
    let token = csrf(&grants);
    let sam_id = sam.to_string();
    // Refusals name the field.
    for (fields, says) in [
        (
            vec![("scope", "group"), ("group", ""), ("permanent", "yes")],
            "choose the group",
        ),
        (
            vec![("scope", "agent"), ("agent", &shop), ("until", "")],
            "until removed",
        ),
        (
            vec![
                ("scope", "agent"),
                ("agent", &shop),
                ("until", "2020-01-01"),
            ],
            "not in the future",
        ),
    ] {
        let mut all = vec![("csrf", token.as_str()), ("user", sam_id.as_str())];
        all.extend(fields);
        let refused = post(&h, "/support-grants/new", &admin, &all).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
        assert!(refused.text.contains(says), "{says}: {}", refused.text);
    }
    let made = post(
        &h,
        "/support-grants/new",
        &admin,
        &[
            ("csrf", &token),
            ("user", &sam_id),
            ("scope", "agent"),
            ("group", ""),
            ("agent", &shop),
            ("until", "2026-03-01"),
        ],
    )
    .await;
    assert_eq!(
        made.location(),
        "/support-grants?ok=created",
        "{}",
        made.text
    );
    let list = get(&h, made.location(), &admin).await;
    let row = row_with(&list, "data-grant=");
    assert!(
        row.contains("shop-host") && row.contains("in force"),
        "{row}"
    );
    assert!(row.contains("2026-03-01 00:00 UTC"), "{row}");

    // At once: Sam's open session sees the shop, only it.
    let after = get(&h, "/agents", &sam_cookie).await;
    assert!(
        sees(&after, &shop) && !sees(&after, &depot),
        "{}",
        after.text
    );
    assert_eq!(
        get(&h, &format!("/agents/{shop}"), &sam_cookie)
            .await
            .status,
        StatusCode::OK
    );

    let at = list.text.find("action=\"/support-grants/").unwrap();
    let grant = id_in(&list.text[at + "action=\"".len()..], "/support-grants/");
    let deleted = post(
        &h,
        &format!("/support-grants/{grant}/delete"),
        &admin,
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(deleted.location(), "/support-grants?ok=deleted");
    assert!(get(&h, deleted.location(), &admin)
        .await
        .text
        .contains("id=\"no-grants\""));
    let gone = get(&h, &format!("/agents/{shop}"), &sam_cookie).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "{}", gone.text);
    assert!(!sees(&get(&h, "/agents", &sam_cookie).await, &shop));
    // Deleting it again: there is no such grant.
    let again = post(
        &h,
        &format!("/support-grants/{grant}/delete"),
        &admin,
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    // A company-wide grant until removed lets Sam see both.
    post(
        &h,
        "/support-grants/new",
        &admin,
        &[
            ("csrf", &token),
            ("user", &sam_id),
            ("scope", "company"),
            ("group", ""),
            ("agent", ""),
            ("permanent", "yes"),
        ],
    )
    .await;
    let all = get(&h, "/agents", &sam_cookie).await;
    assert!(sees(&all, &shop) && sees(&all, &depot));
    assert!(get(&h, "/support-grants", &admin)
        .await
        .text
        .contains("until removed"));
    // Support engineers themselves cannot open the page.
    assert_eq!(
        get(&h, "/support-grants", &sam_cookie).await.status,
        StatusCode::FORBIDDEN
    );
}

async fn api_csv(h: &Harness, query: &str) -> Page {
    request(
        h,
        Method::GET,
        &format!("/api/v1/history?format=csv{query}"),
        Req {
            headers: vec![("authorization", format!("Bearer {}", h.token))],
            ..Req::default()
        },
    )
    .await
}

#[tokio::test]
async fn the_history_page_filters_and_its_csv_is_the_apis() {
    let (h, admin) = with_admin(Options::default()).await;
    // A second sign-in from another address, and a group made.
    let again = request(
        &h,
        Method::POST,
        "/sign-in",
        Req {
            form: Some(form(&[("email", ADMIN), ("password", PASSWORD)])),
            from: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 77))),
            ..Req::default()
        },
    )
    .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    group(&h, "North", None).await;

    let all = get(&h, "/history", &admin).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    assert!(
        all.text.contains("<td class=\"action\">group-created</td>"),
        "{}",
        all.text
    );
    assert!(all.text.contains("<td class=\"action\">token-created</td>"));
    let signs = get(&h, "/history?action=sign-in", &admin).await;
    let actions: Vec<&str> = signs
        .text
        .match_indices("<td class=\"action\">")
        .map(|(at, m)| {
            let rest = &signs.text[at + m.len()..];
            &rest[..rest.find('<').unwrap()]
        })
        .collect();
    assert_eq!(actions, ["sign-in", "sign-in"]);
    assert!(
        signs.text.contains("192.0.2.77"),
        "the second sign-in's address"
    );
    assert!(
        signs.text.contains("value=\"sign-in\""),
        "the filter stays in the form"
    );
    assert!(
        signs.text.contains("href=\"/history.csv?action=sign-in\""),
        "{}",
        signs.text
    );

    // The CSV is the API's, byte for byte, with and without filters.
    for query in [
        "action=sign-in",
        "",
        "actor=user%3Aadmin&since=2026-01-01",
        "agent=none",
    ] {
        let page = get(&h, &format!("/history.csv?{query}"), &admin).await;
        assert_eq!(page.status, StatusCode::OK, "{query}: {}", page.text);
        assert_eq!(
            page.headers["content-type"], "text/csv; charset=utf-8",
            "{query}"
        );
        let api = api_csv(
            &h,
            &if query.is_empty() {
                String::new()
            } else {
                format!("&{query}")
            },
        )
        .await;
        assert_eq!(api.status, StatusCode::OK, "{}", api.text);
        assert_eq!(page.text, api.text, "{query}");
        assert_eq!(
            page.headers["content-disposition"],
            api.headers["content-disposition"]
        );
    }
    let csv = get(&h, "/history.csv?action=sign-in", &admin).await.text;
    assert!(csv.starts_with("at,action,actor,"), "{csv}");
    assert!(
        csv.lines().count() == 3 && csv.contains(",sign-in,") && !csv.contains("group-created"),
        "{csv}"
    );

    // Pages, and a filter that is not a time.
    let first = get(&h, "/history?limit=1", &admin).await;
    assert_eq!(first.text.matches("<td class=\"action\">").count(), 1);
    assert!(
        first
            .text
            .contains("href=\"/history?limit=1&amp;offset=1\""),
        "{}",
        first.text
    );
    let second = get(&h, "/history?limit=1&offset=1", &admin).await;
    assert!(second.text.contains("rel=\"prev\""));
    let bad = get(&h, "/history?since=yesterday", &admin).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text.contains("YYYY-MM-DD"), "{}", bad.text);
    let bad_csv = get(&h, "/history.csv?since=yesterday", &admin).await;
    assert_eq!(bad_csv.status, StatusCode::BAD_REQUEST);

    // Only company admins read the history.
    h.add_user("gia@example.com", Role::GroupAdmin, Some("North"), PASSWORD)
        .await;
    let gia = sign_in(&h, "gia@example.com").await;
    assert_eq!(
        get(&h, "/history", &gia).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(&h, "/history.csv", &gia).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn a_token_is_shown_once_and_stops_working_when_revoked_on_the_page() {
    let (h, admin) = with_admin(Options::default()).await;
    let page = get(&h, "/account/tokens", &admin).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(
        page.text.contains("<td>tester</td>"),
        "a company admin sees the company's: {}",
        page.text
    );
    let token = csrf(&page);
    let bad = post(
        &h,
        "/account/tokens/new",
        &admin,
        &[
            ("csrf", &token),
            ("name", "script"),
            ("expires_in_days", "a month"),
        ],
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text.contains("no expiry"), "{}", bad.text);
    let made = post(
        &h,
        "/account/tokens/new",
        &admin,
        &[
            ("csrf", &token),
            ("name", "script"),
            ("read_only", "yes"),
            ("expires_in_days", "30"),
        ],
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let secret = text_of(&made, "token-value");
    assert!(secret.len() > 20, "{secret}");
    let row = row_with(&made, "<td>script</td>");
    assert!(
        row.contains("read-only") && row.contains("2026-02-14"),
        "{row}"
    );
    // It works, read-only.
    let agents = h
        .call(Method::GET, "/api/v1/agents", None, Auth::Bearer(&secret))
        .await;
    assert_eq!(agents.status, StatusCode::OK);
    let write = h
        .call(
            Method::POST,
            "/api/v1/groups",
            Some(json!({"name": "X"})),
            Auth::Bearer(&secret),
        )
        .await;
    assert_eq!(write.status, StatusCode::FORBIDDEN);
    // Shown once: the list never shows it again.
    let list = get(&h, "/account/tokens", &admin).await;
    assert!(!list.text.contains(&secret));
    let row = row_with(&list, "<td>script</td>");
    let at = row.find("action=\"/account/tokens/").unwrap();
    let id = id_in(&row[at + "action=\"".len()..], "/account/tokens/");
    let revoked = post(
        &h,
        &format!("/account/tokens/{id}/revoke"),
        &admin,
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(
        revoked.location(),
        "/account/tokens?ok=revoked",
        "{}",
        revoked.text
    );
    assert!(!get(&h, revoked.location(), &admin)
        .await
        .text
        .contains("<td>script</td>"));
    let after = h
        .call(Method::GET, "/api/v1/agents", None, Auth::Bearer(&secret))
        .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);

    // A supervisor sees only their own tokens, and theirs are read-only whatever they ask.
    h.add_user("sue@example.com", Role::Supervisor, Some("North"), PASSWORD)
        .await;
    let sue = sign_in(&h, "sue@example.com").await;
    let page = get(&h, "/account/tokens", &sue).await;
    assert!(page.text.contains("id=\"no-tokens\""), "{}", page.text);
    let made = post(
        &h,
        "/account/tokens/new",
        &sue,
        &[("csrf", &csrf(&page)), ("name", "mine")],
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    assert!(row_with(&made, "<td>mine</td>").contains("read-only"));
    assert!(!made.text.contains("<td>tester</td>"));
}

#[tokio::test]
async fn the_header_links_follow_the_role() {
    let (h, admin) = with_admin(Options::default()).await;
    h.add_user("gia@example.com", Role::GroupAdmin, Some("North"), PASSWORD)
        .await;
    let gia = sign_in(&h, "gia@example.com").await;
    let links = |page: &Page| {
        let nav = &page.text[page.text.find("<nav").unwrap()..];
        let nav = &nav[..nav.find("</nav>").unwrap()];
        nav.match_indices("href=\"")
            .map(|(at, m)| {
                let rest = &nav[at + m.len()..];
                rest[..rest.find('"').unwrap()].to_owned()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        links(&get(&h, "/agents", &admin).await),
        [
            "/agents",
            "/map",
            "/groups",
            "/rollouts",
            "/team",
            "/support-grants",
            "/history",
            "/branding",
            "/account"
        ]
    );
    assert_eq!(
        links(&get(&h, "/agents", &gia).await),
        ["/agents", "/map", "/groups", "/rollouts", "/account"]
    );
    assert!(get(&h, "/account", &admin)
        .await
        .text
        .contains("href=\"/account/tokens\""));
}

#[tokio::test]
async fn every_form_refuses_a_missing_foreign_or_cross_site_csrf_token() {
    let (h, admin) = with_admin(Options::default()).await;
    let gia = h
        .add_user("gia@example.com", Role::GroupAdmin, Some("North"), PASSWORD)
        .await;
    h.add_user("sam@operator.example", Role::Support, None, PASSWORD)
        .await;
    let shop = id_of(&h.activate("shop-host").await);
    let north = h.op(Method::GET, "/api/v1/groups", None).await.body["groups"][0]["id"]
        .as_i64()
        .unwrap();
    let grant = h
        .op(
            Method::POST,
            "/api/v1/support-grants",
            Some(json!({"user": h.add_user("sid@operator.example", Role::Support, None, PASSWORD).await, "scope": "company"})),
        )
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    let token_id = h.op(Method::GET, "/api/v1/tokens", None).await.body["tokens"][0]["id"]
        .as_i64()
        .unwrap();
    // Another session's token: valid for that session, not for this one.
    let second = sign_in(&h, ADMIN).await;
    let foreign = csrf_of(&h, &second).await;
    let own = csrf_of(&h, &admin).await;
    let forms: Vec<(String, Vec<(&str, String)>)> = vec![
        (
            "/team/invite".into(),
            vec![
                ("email", "x@example.com".into()),
                ("role", "company-admin".into()),
            ],
        ),
        (
            format!("/team/{gia}/role"),
            vec![("role", "company-admin".into())],
        ),
        (
            format!("/team/{gia}/two-factor"),
            vec![("require", "yes".into())],
        ),
        (format!("/team/{gia}/sign-out"), vec![]),
        (
            format!("/team/{gia}/remove"),
            vec![("confirm", "yes".into())],
        ),
        ("/groups/new".into(), vec![("name", "Sneaky".into())]),
        (
            format!("/groups/{north}/edit"),
            vec![("name", "Sneaky".into())],
        ),
        (format!("/groups/{north}/users"), vec![]),
        (format!("/groups/{north}/delete"), vec![]),
        (
            format!("/agents/{shop}/group"),
            vec![("group", north.to_string())],
        ),
        (
            "/support-grants/new".into(),
            vec![
                ("user", gia.to_string()),
                ("scope", "company".into()),
                ("permanent", "yes".into()),
            ],
        ),
        (format!("/support-grants/{grant}/delete"), vec![]),
        (
            "/account/tokens/new".into(),
            vec![("name", "sneaky".into())],
        ),
        (format!("/account/tokens/{token_id}/revoke"), vec![]),
    ];
    for (path, fields) in &forms {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut with_foreign = fields.clone();
        with_foreign.push(("csrf", &foreign));
        let mut with_own = fields.clone();
        with_own.push(("csrf", &own));
        for (what, page) in [
            ("missing", post(&h, path, &admin, &fields).await),
            ("foreign", post(&h, path, &admin, &with_foreign).await),
            (
                "cross-site",
                request(
                    &h,
                    Method::POST,
                    path,
                    Req {
                        cookie: Some(&admin),
                        form: Some(form(&with_own)),
                        headers: vec![("origin", "https://evil.example".into())],
                        ..Req::default()
                    },
                )
                .await,
            ),
        ] {
            assert_eq!(
                page.status,
                StatusCode::FORBIDDEN,
                "{what} {path}: {}",
                page.text
            );
            assert!(
                page.text.contains("out of date or came from another site"),
                "{what} {path}"
            );
        }
    }
    // Nothing changed.
    let users = users(&h).await;
    let gia_api = users.iter().find(|u| u["id"] == gia).unwrap();
    assert_eq!(gia_api["role"], "group-admin");
    assert_eq!(gia_api["require_2fa"], false);
    assert!(!users.iter().any(|u| u["email"] == "x@example.com"));
    let groups = h.op(Method::GET, "/api/v1/groups", None).await.body;
    assert_eq!(groups["groups"].as_array().unwrap().len(), 1);
    assert_eq!(groups["groups"][0]["name"], "North");
    assert_eq!(groups["groups"][0]["users"], json!(["gia"]));
    assert_eq!(group_of(&h, &shop).await, None);
    assert_eq!(
        h.op(Method::GET, "/api/v1/support-grants", None).await.body["grants"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        h.op(Method::GET, "/api/v1/tokens", None).await.body["tokens"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let gia_cookie = sign_in(&h, "gia@example.com").await;
    assert_eq!(get(&h, "/agents", &gia_cookie).await.status, StatusCode::OK);
}
