//! The owner pages' markup: small, phone-friendly, keyboard-usable HTML with a little inline CSS and no
//! JavaScript. Every value from outside is escaped; every state-changing form carries the CSRF token.

use std::fmt::Write as _;

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use outpost_cloud_link::control::PowerAction;

use super::session::CSRF_FIELD;
use crate::app::owner::{OwnerDevice, OwnerSite};
use crate::app::owner_auth::{InvitationInfo, MIN_PASSWORD};

const STYLE: &str = "\
:root{color-scheme:light dark;--accent:#5b3fa6}\
body{font:16px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;padding:1rem}\
main{max-width:36rem;margin:0 auto}\
h1{font-size:1.4rem;margin:.2rem 0 1rem}h2{font-size:1.1rem;margin:1.4rem 0 .4rem}\
header{display:flex;justify-content:space-between;align-items:center;gap:1rem}\
ul{list-style:none;padding:0;margin:0}\
li{border:1px solid #8884;border-radius:.6rem;padding:.7rem;margin:.5rem 0}\
.meta{display:block;font-size:.9rem;opacity:.8}\
.brand img.logo{max-width:12rem;max-height:4rem;display:block;margin:.3rem 0}\
.actions{display:flex;flex-wrap:wrap;gap:.4rem;margin-top:.5rem}\
form.inline{display:inline}\
button,input{font:inherit;min-height:2.75rem;border-radius:.5rem}\
button{padding:0 1rem;border:1px solid var(--accent);background:var(--accent);color:#fff;cursor:pointer}\
button.quiet{background:transparent;color:inherit;border-color:#8888}\
button.danger{background:#a12b2b;border-color:#a12b2b}\
:focus-visible{outline:3px solid #f0a500;outline-offset:2px}\
label{display:block;margin:.8rem 0 .2rem}\
input{width:100%;box-sizing:border-box;padding:0 .6rem;border:1px solid #888}\
.notice{padding:.7rem;border-radius:.5rem;border:1px solid #3a7d44;margin:.8rem 0}\
.notice.error{border-color:#a12b2b}\
.badge{font-size:.8rem;padding:0 .4rem;border-radius:.3rem;border:1px solid #8888;margin-left:.3rem}\
.badge.blocked{border-color:#a12b2b}";

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{} · Outpost</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        escape(title)
    )
}

/// An HTML response that is never cached, framed or sent a referrer (invitation links hold a token).
pub fn respond(status: StatusCode, html: String) -> Response {
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (CONTENT_TYPE, "text/html; charset=utf-8"),
        (CACHE_CONTROL, "no-store"),
        (
            CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
        (X_FRAME_OPTIONS, "DENY"),
        (REFERRER_POLICY, "no-referrer"),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// A message shown at the top of a page.
#[derive(Debug, Clone)]
pub struct Notice {
    pub ok: bool,
    pub text: String,
}

impl Notice {
    pub fn ok(text: impl Into<String>) -> Self {
        Self {
            ok: true,
            text: text.into(),
        }
    }
    pub fn error(text: impl Into<String>) -> Self {
        Self {
            ok: false,
            text: text.into(),
        }
    }
    fn html(&self) -> String {
        let (class, role) = if self.ok {
            ("notice", "status")
        } else {
            ("notice error", "alert")
        };
        format!(
            "<p class=\"{class}\" role=\"{role}\">{}</p>",
            escape(&self.text)
        )
    }
}

fn notice_html(notice: Option<&Notice>) -> String {
    notice.map(Notice::html).unwrap_or_default()
}

fn csrf_input(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{CSRF_FIELD}\" value=\"{}\">",
        escape(csrf)
    )
}

/// A page with only a title, a message and a link onwards.
pub fn message_page(title: &str, message: &str, link: (&str, &str)) -> String {
    page(
        title,
        &format!(
            "<h1>{}</h1><p class=\"notice error\" role=\"alert\">{}</p><p><a href=\"{}\">{}</a></p>",
            escape(title),
            escape(message),
            escape(link.0),
            escape(link.1)
        ),
    )
}

pub fn sign_in_page(email: &str, notice: Option<&Notice>) -> String {
    page(
        "Sign in",
        &format!(
            "<h1>Sign in</h1>{}\
             <form method=\"post\" action=\"/owner/sign-in\">\
             <label for=\"email\">Email</label>\
             <input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required value=\"{}\">\
             <label for=\"password\">Password</label>\
             <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
             <p><button type=\"submit\">Sign in</button></p></form>\
             <p class=\"meta\">No password yet? Use the invitation link your installer sent you.</p>",
            notice_html(notice),
            escape(email)
        ),
    )
}

pub fn invite_page(token: &str, info: &InvitationInfo, notice: Option<&Notice>) -> String {
    page(
        "Set your password",
        &format!(
            "<h1>Set your password</h1>{}\
             <p>You are invited to see the devices of <strong>{}</strong> as <strong>{}</strong>.</p>\
             <form method=\"post\" action=\"/owner/invite/{}\">\
             <input type=\"hidden\" name=\"email\" value=\"{}\" autocomplete=\"username\">\
             <label for=\"password\">New password (at least {MIN_PASSWORD} characters)</label>\
             <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"new-password\" \
             minlength=\"{MIN_PASSWORD}\" required>\
             <label for=\"confirm\">The same password again</label>\
             <input id=\"confirm\" name=\"confirm\" type=\"password\" autocomplete=\"new-password\" \
             minlength=\"{MIN_PASSWORD}\" required>\
             <p><button type=\"submit\">Set password and sign in</button></p></form>",
            notice_html(notice),
            escape(&info.site),
            escape(&info.email),
            escape(token),
            escape(&info.email),
        ),
    )
}

fn action_url(site: &str, device: &str, action: &str) -> String {
    escape(&format!("/owner/devices/{site}/{device}/{action}"))
}

fn button_form(csrf: &str, url: &str, fields: &str, label: &str, class: &str) -> String {
    format!(
        "<form class=\"inline\" method=\"post\" action=\"{url}\">{}{fields}\
         <button type=\"submit\" class=\"{class}\">{}</button></form>",
        csrf_input(csrf),
        escape(label)
    )
}

fn device_html(out: &mut String, csrf: &str, site: &str, d: &OwnerDevice) {
    let id = d.device.id();
    let mut meta = Vec::new();
    if let Some(ip) = d.ipv4 {
        meta.push(ip.to_string());
    }
    meta.push(if d.online { "online" } else { "offline" }.to_owned());
    let badge = if d.blocked {
        "<span class=\"badge blocked\">blocked</span>"
    } else {
        ""
    };
    let _ = write!(
        out,
        "<li><strong>{}</strong>{badge}<span class=\"meta\">{}</span>",
        escape(&d.name),
        escape(&meta.join(" · "))
    );
    let mut buttons = String::new();
    if d.can_block {
        let (action, label) = if d.blocked {
            ("unblock", "Unblock internet")
        } else {
            ("block", "Block internet")
        };
        buttons.push_str(&button_form(
            csrf,
            &action_url(site, &id, action),
            "",
            label,
            "",
        ));
    }
    for power in &d.power {
        let (label, class) = match power {
            PowerAction::On => ("Power on", "quiet"),
            PowerAction::Off => ("Power off", "danger"),
            PowerAction::Cycle => ("Restart (power cycle)", "quiet"),
        };
        let field = format!(
            "<input type=\"hidden\" name=\"action\" value=\"{}\">",
            power.as_str()
        );
        buttons.push_str(&button_form(
            csrf,
            &action_url(site, &id, "power"),
            &field,
            label,
            class,
        ));
    }
    if !buttons.is_empty() {
        let _ = write!(
            out,
            "<div class=\"actions\" aria-label=\"Actions for {}\">{buttons}</div>",
            escape(&d.name)
        );
    }
    out.push_str("</li>");
}

/// The owner's home: every site, its visible devices and the buttons the flags allow.
/// Who looks after a site: the company's logo, name and contact details.
fn branding_html(out: &mut String, b: &crate::store::branding::BrandingRow) {
    out.push_str("<div class=\"brand\">");
    if let Some(key) = &b.logo_key {
        let _ = write!(
            out,
            "<img class=\"logo\" src=\"{}\" alt=\"{} logo\">",
            escape(&crate::app::branding::logo_path(key)),
            escape(&b.details.name)
        );
    }
    let d = &b.details;
    let _ = write!(
        out,
        "<p class=\"meta\">Looked after by <strong>{}</strong>",
        escape(&d.name)
    );
    if !d.contact_phone.is_empty() {
        let _ = write!(out, " · {}", escape(&d.contact_phone));
    }
    if !d.contact_email.is_empty() {
        let _ = write!(
            out,
            " · <a href=\"mailto:{0}\">{0}</a>",
            escape(&d.contact_email)
        );
    }
    if !d.website.is_empty() {
        let _ = write!(
            out,
            " · <a href=\"{0}\" rel=\"noopener noreferrer\">{0}</a>",
            escape(&d.website)
        );
    }
    if !d.address.is_empty() {
        let _ = write!(out, "<br>{}", escape(&d.address).replace('\n', "<br>"));
    }
    out.push_str("</p></div>");
}

pub fn home_page(email: &str, csrf: &str, sites: &[OwnerSite], notice: Option<&Notice>) -> String {
    let mut body = format!(
        "<header><h1>Your devices</h1>\
         <form method=\"post\" action=\"/owner/sign-out\">{}<button type=\"submit\" class=\"quiet\">Sign out</button></form>\
         </header><p class=\"meta\">Signed in as {}</p>{}",
        csrf_input(csrf),
        escape(email),
        notice_html(notice)
    );
    if sites.is_empty() {
        body.push_str("<p>No site is shared with you yet; ask your installer.</p>");
    }
    for site in sites {
        let state = if site.online { "online" } else { "offline" };
        let _ = write!(
            body,
            "<section><h2>{} <span class=\"badge\">{state}</span></h2>",
            escape(&site.name)
        );
        if let Some(b) = &site.branding {
            branding_html(&mut body, b);
        }
        if !site.enabled {
            body.push_str(
                "<p>Access to this site is switched off; ask your installer to switch it on.</p>",
            );
        } else if site.devices.is_empty() {
            body.push_str("<p>No devices are shared with you on this site yet.</p>");
        } else {
            body.push_str("<ul>");
            for d in &site.devices {
                device_html(&mut body, csrf, site.agent_id.as_str(), d);
            }
            body.push_str("</ul>");
        }
        body.push_str("</section>");
    }
    page("Your devices", &body)
}

/// Asks before cutting a device's power.
pub fn confirm_power_page(csrf: &str, site: &str, d: &OwnerDevice, action: PowerAction) -> String {
    let (question, consequence, label) = match action {
        PowerAction::Off => (
            "Turn off",
            "It stays off until someone turns it on again.",
            "Yes, turn it off",
        ),
        _ => (
            "Restart",
            "Its power is cut for a few seconds, then comes back.",
            "Yes, restart it",
        ),
    };
    let fields = format!(
        "<input type=\"hidden\" name=\"action\" value=\"{}\">\
         <input type=\"hidden\" name=\"confirm\" value=\"yes\">",
        action.as_str()
    );
    page(
        "Confirm",
        &format!(
            "<h1>{question} {}?</h1><p>{consequence}</p><div class=\"actions\">{}\
             <a href=\"/owner\">Cancel</a></div>",
            escape(&d.name),
            button_form(
                csrf,
                &action_url(site, &d.device.id(), "power"),
                &fields,
                label,
                "danger"
            ),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<b a=\"x\">'&'</b>"),
            "&lt;b a=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/b&gt;"
        );
    }

    #[test]
    fn pages_are_phone_friendly() {
        let html = sign_in_page("a@example.com\"><script>", None);
        assert!(html.contains("name=\"viewport\""));
        assert!(!html.contains("<script>"));
        assert!(html.contains("a@example.com&quot;&gt;&lt;script&gt;"));
    }
}
