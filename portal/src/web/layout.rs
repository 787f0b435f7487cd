//! The technician pages' frame: the page shell (navigation, sign-out, notices), the stylesheet, small
//! shared pieces (times, confirmation forms, problem pages), all through `maud`, which escapes every value.
//! Pages are server-rendered without JavaScript; the stylesheet fits them to a phone-sized screen and
//! shows the keyboard focus.

use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::access::{Action, Caller};
use crate::api::owner::html::respond;
pub use crate::api::owner::html::Notice;
use crate::api::owner::Problem;

const STYLE: &str = "\
:root{color-scheme:light dark;--accent:#1f5fa8;--ok:#2e7d32;--bad:#b3261e;--line:#8885}\
*{box-sizing:border-box}\
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0}\
header.top{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;padding:.6rem 1rem;border-bottom:1px solid var(--line)}\
header.top .brand{font-weight:700;margin-right:auto;text-decoration:none;color:inherit}\
header.top nav{display:flex;flex-wrap:wrap;gap:.3rem .8rem;min-width:0}\
main{max-width:72rem;margin:0 auto;padding:1rem}\
h1{font-size:1.4rem;margin:.2rem 0 .8rem;overflow-wrap:anywhere}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}\
a{color:var(--accent)}\
.scroll{overflow-x:auto;max-width:100%}\
table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}\
th a{text-decoration:none;color:inherit}th a:hover{text-decoration:underline}\
td.num{font-variant-numeric:tabular-nums}\
form.filters{display:flex;flex-wrap:wrap;gap:.5rem;align-items:end;margin:.5rem 0 1rem}\
form.filters label{display:flex;flex-direction:column;font-size:.85rem}\
form.inline{display:inline}\
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(15rem,1fr));gap:.2rem 1rem}\
.grid label{display:block;margin:.6rem 0 .2rem;font-size:.9rem}\
.grid .wide{grid-column:1/-1}\
input,select,textarea,button{font:inherit;border-radius:.4rem;min-height:2.5rem}\
input,select,textarea{width:100%;padding:.3rem .5rem;border:1px solid #888;background:transparent;color:inherit}\
form.filters input,form.filters select{width:auto;min-width:8rem}\
textarea{min-height:5rem}\
button,.button{display:inline-block;padding:.45rem 1rem;border:1px solid var(--accent);background:var(--accent);color:#fff;cursor:pointer;text-decoration:none}\
button.quiet,.button.quiet{background:transparent;color:inherit;border-color:#888}\
fieldset.plain{border:0;margin:0;padding:0;min-width:0}\
fieldset[disabled] button,fieldset[disabled] input,fieldset[disabled] select,fieldset[disabled] textarea{opacity:.55;cursor:not-allowed}\
input[type=checkbox],input[type=radio]{width:auto;min-height:0;margin-right:.4rem}\
button.danger{background:var(--bad);border-color:var(--bad)}\
.actions{display:flex;flex-wrap:wrap;gap:.5rem;margin:.6rem 0}\
:focus-visible{outline:3px solid #f0a500;outline-offset:2px}\
.notice{padding:.6rem .8rem;border-radius:.4rem;border:1px solid var(--ok);margin:.6rem 0}\
.notice.error{border-color:var(--bad)}\
.field-error{color:var(--bad);font-size:.85rem;margin:.2rem 0}\
.badge{font-size:.8rem;padding:0 .4rem;border-radius:.3rem;border:1px solid #888;white-space:nowrap}\
.badge.on{border-color:var(--ok);color:var(--ok)}.badge.off{border-color:#888}\
.badge.warn,.badge.blocked{border-color:var(--bad);color:var(--bad)}\
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0}\
dl.facts dt{opacity:.75}dl.facts dd{margin:0;overflow-wrap:anywhere}\
.muted{opacity:.75}.pager{display:flex;flex-wrap:wrap;gap:.8rem;align-items:center;margin:.8rem 0}\
svg.map{width:100%;height:auto;border:1px solid var(--line);border-radius:.4rem}\
svg.map .land{fill:#9aa7b5;stroke:#fff;stroke-width:.3}\
svg.map circle.on{fill:var(--ok);stroke:#fff}svg.map circle.off{fill:var(--bad);stroke:#fff}\
svg.map a:focus-visible circle{stroke:#f0a500;stroke-width:3}";

fn notice_markup(n: &Notice) -> Markup {
    html! {
        @if n.ok { p.notice role="status" { (n.text) } }
        @else { p.notice.error role="alert" { (n.text) } }
    }
}

/// Who is looking at a page: the header shows the name, the links they may use and the sign-out form
/// (with its CSRF token).
#[derive(Debug, Clone, Copy)]
pub struct Viewer<'a> {
    pub name: &'a str,
    pub csrf: &'a str,
    pub nav: Nav,
}

/// The header's links, each with the action that makes it useful.
pub const NAV_LINKS: [(&str, &str, Action); 9] = [
    ("/agents", "Agents", Action::AgentsRead),
    ("/map", "Map", Action::AgentsRead),
    ("/groups", "Groups", Action::GroupsRead),
    ("/rollouts", "Updates", Action::UpdatesRead),
    ("/team", "Team", Action::UsersRead),
    ("/support-grants", "Grants", Action::GrantsManage),
    ("/history", "History", Action::HistoryRead),
    ("/branding", "Branding", Action::BrandingManage),
    ("/account", "Account", Action::SelfRead),
];

/// Which of [`NAV_LINKS`] a viewer sees (those whose action the role table allows them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Nav(u16);

impl Nav {
    /// No links (a session still owing its second factor reaches nothing else).
    pub const NONE: Nav = Nav(0);

    /// The links `caller` may use.
    pub fn of(caller: &Caller) -> Nav {
        Nav(NAV_LINKS
            .iter()
            .enumerate()
            .filter(|(_, (_, _, action))| caller.may(*action))
            .fold(0, |mask, (i, _)| mask | (1 << i)))
    }

    /// The links shown: `(href, label)`.
    pub fn links(self) -> impl Iterator<Item = (&'static str, &'static str)> {
        NAV_LINKS
            .iter()
            .enumerate()
            .filter(move |(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, (href, label, _))| (*href, *label))
    }
}

/// A whole page.
pub fn page(
    title: &str,
    viewer: Option<Viewer<'_>>,
    notice: Option<&Notice>,
    body: Markup,
) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · Outpost" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header.top {
                    a.brand href="/agents" { "Outpost" }
                    @if let Some(v) = viewer {
                        nav aria-label="Main" {
                            @for (href, label) in v.nav.links() { a href=(href) { (label) } }
                        }
                        span.muted { (v.name) }
                        form.inline method="post" action="/sign-out" {
                            input type="hidden" name="csrf" value=(v.csrf);
                            button.quiet type="submit" { "Sign out" }
                        }
                    }
                }
                main {
                    @if let Some(n) = notice { (notice_markup(n)) }
                    (body)
                }
            }
        }
    }
    .into_string()
}

/// An HTML answer with the pages' security headers.
pub fn html_response(status: StatusCode, html: String) -> Response {
    let mut response = respond(status, html);
    // The owner pages' policy, plus the portal's own scripts (the password-strength hint) and their
    // requests back to the portal.
    response.headers_mut().insert(
        axum::http::header::CONTENT_SECURITY_POLICY,
        axum::http::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; script-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    response
}

/// A refusal or failure as a page: its status, its sentence, and a way on.
pub fn problem_page(problem: Problem, viewer: Option<Viewer<'_>>, back: (&str, &str)) -> Response {
    let body = html! {
        h1 { "Something went wrong" }
        p.notice.error role="alert" { (problem.message) }
        p { a href=(back.0) { (back.1) } }
    };
    html_response(
        problem.status,
        page("Something went wrong", viewer, None, body),
    )
}

/// A time as pages show it, in the signed-in user's format and zone: `2026-12-02 15:04 UTC`,
/// `2026-12-02 05:04 PM UTC+02:00`.
pub fn when(t: DateTime<Utc>) -> String {
    super::time_prefs::format_now_prefs(t)
}

/// An optional time, or a dash.
pub fn when_opt(t: Option<DateTime<Utc>>) -> String {
    t.map(when).unwrap_or_else(|| "—".into())
}

/// A milliseconds timestamp as pages show it.
pub fn when_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(when)
        .unwrap_or_else(|| "—".into())
}

/// A page asking to confirm a destructive action: what will happen, a button that posts `action` with
/// `confirm=yes` and the `hidden` fields, and a way back.
pub fn confirm_page(
    viewer: Viewer<'_>,
    title: &str,
    explanation: Markup,
    action: &str,
    hidden: &[(&str, &str)],
    button: &str,
    back: &str,
) -> String {
    let body = html! {
        h1 { (title) }
        (explanation)
        form method="post" action=(action) {
            input type="hidden" name="csrf" value=(viewer.csrf);
            input type="hidden" name="confirm" value="yes";
            @for (name, value) in hidden { input type="hidden" name=(name) value=(value); }
            div.actions {
                button.danger #confirm type="submit" { (button) }
                a.button.quiet href=(back) { "Cancel" }
            }
        }
    };
    page(title, Some(viewer), None, body)
}
/// Percent-encodes a query-string value.
pub fn query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_what_they_show() {
        let html = page(
            "<b>x</b>",
            Some(Viewer {
                name: "Ana <script>",
                csrf: "t\"ok",
                nav: Nav::NONE,
            }),
            Some(&Notice::error("bad <i>")),
            html! { p { "body" } },
        );
        assert!(html.contains("&lt;b&gt;x&lt;/b&gt; · Outpost"), "{html}");
        assert!(html.contains("Ana &lt;script&gt;"));
        assert!(html.contains("value=\"t&quot;ok\""));
        assert!(html.contains("role=\"alert\">bad &lt;i&gt;"));
        assert!(!html.contains("<script>"));
    }

    #[test]
    fn the_header_shows_only_the_links_the_role_may_use() {
        use crate::access::{Role, Scope, Via};
        let caller = |role| Caller {
            user_id: 1,
            username: "ana".into(),
            name: "Ana".into(),
            email: None,
            company_id: Some(1),
            role,
            via: Via::Session,
            scope: Scope::default(),
            grants: vec![],
        };
        let labels = |role| -> Vec<&str> { Nav::of(&caller(role)).links().map(|l| l.1).collect() };
        assert_eq!(
            labels(Role::CompanyAdmin),
            [
                "Agents", "Map", "Groups", "Updates", "Team", "Grants", "History", "Branding",
                "Account"
            ]
        );
        assert_eq!(
            labels(Role::GroupAdmin),
            ["Agents", "Map", "Groups", "Updates", "Account"]
        );
        assert_eq!(
            labels(Role::Supervisor),
            ["Agents", "Map", "Groups", "Updates", "Account"]
        );
        assert_eq!(
            labels(Role::Support),
            ["Agents", "Map", "Updates", "Account"]
        );
        assert_eq!(Nav::NONE.links().count(), 0);
        let viewer = |nav| Viewer {
            name: "Ana",
            csrf: "c",
            nav,
        };
        let html = page(
            "x",
            Some(viewer(Nav::of(&caller(Role::Supervisor)))),
            None,
            html! {},
        );
        assert!(html.contains("href=\"/groups\">Groups</a>"), "{html}");
        assert!(!html.contains("href=\"/team\""), "{html}");
        let html = page("x", Some(viewer(Nav::NONE)), None, html! {});
        assert!(!html.contains("href=\"/map\""), "{html}");
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(query_value("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(query_value("Ok-1_2.3~"), "Ok-1_2.3~");
    }

    #[test]
    fn times_are_shown_in_utc() {
        let t = DateTime::parse_from_rfc3339("2026-12-02T15:04:59Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(when(t), "2026-12-02 15:04 UTC");
        assert_eq!(when_opt(None), "—");
        assert_eq!(when_ms(t.timestamp_millis()), "2026-12-02 15:04 UTC");
    }
}
