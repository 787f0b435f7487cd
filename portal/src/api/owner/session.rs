//! The owner's session over HTTP: the `outpost_owner` cookie (`HttpOnly; Secure; SameSite=Strict;
//! Path=/`), the per-session CSRF token every state-changing request carries (form field `csrf`, or the
//! `X-CSRF-Token` header for the JSON API), a same-origin check on those requests (`Origin`,
//! `Sec-Fetch-Site`), and the sign-in rate limit (per source address and per account).

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::http::header::{COOKIE, HOST, ORIGIN};
use axum::http::{HeaderMap, HeaderValue};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::app::owner::OwnerError;
use crate::app::owner_auth::{self, Owner, SESSION_LIFETIME};
use crate::app::App;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "outpost_owner";
/// The form field carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// The header carrying the CSRF token on the JSON API.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Sign-in attempts allowed per minute from one address, and for one account.
pub const SIGN_INS_PER_ADDRESS: u32 = 10;
pub const SIGN_INS_PER_ACCOUNT: u32 = 5;

/// A request with a live session.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub owner: Owner,
    token: String,
}

impl SignedIn {
    /// The CSRF token forms and API calls of this session must carry.
    pub fn csrf(&self) -> String {
        owner_auth::csrf_token(&self.token)
    }

    /// Refuses a state-changing request without this session's CSRF token.
    pub fn check_csrf(&self, given: Option<&str>) -> Result<(), OwnerError> {
        match given {
            Some(given) if owner_auth::csrf_matches(&self.token, given) => Ok(()),
            _ => Err(OwnerError::Csrf),
        }
    }

    /// The session token (to end the session).
    pub fn token(&self) -> &str {
        &self.token
    }
}

/// The value of our cookie in the request's `Cookie` headers.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, COOKIE_NAME)
}

/// The value of the cookie `wanted` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, wanted: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value.trim())
}

/// The live session of the request, if any.
pub async fn signed_in(app: &App, headers: &HeaderMap) -> Result<Option<SignedIn>, OwnerError> {
    let Some(token) = session_cookie(headers) else {
        return Ok(None);
    };
    Ok(app.owner_session(token).await?.map(|owner| SignedIn {
        owner,
        token: token.to_owned(),
    }))
}

/// `Set-Cookie` starting a session.
pub fn start_cookie(token: &str) -> HeaderValue {
    let value = format!(
        "{COOKIE_NAME}={token}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_LIFETIME.num_seconds()
    );
    HeaderValue::from_str(&value).unwrap_or_else(|_| end_cookie())
}

/// `Set-Cookie` ending a session.
pub fn end_cookie() -> HeaderValue {
    HeaderValue::from_static("outpost_owner=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0")
}

/// Whether a browser says the request comes from another site. Browsers that send fetch metadata are
/// believed: anything but `Sec-Fetch-Site: same-origin` (or `none`, typed by the user) is cross-site. The
/// pages ask for no referrer, so such browsers send `Origin: null` on their own form posts, which is why
/// fetch metadata comes first. Without it, an `Origin` whose host is not the `Host` asked for is
/// cross-site. Requests with neither (scripts) pass; they still need the CSRF token.
pub fn cross_site(headers: &HeaderMap) -> bool {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if let Some(site) = header("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    match header(ORIGIN.as_str()) {
        None => false,
        Some(origin) => {
            let origin_host = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            origin_host.is_none() || origin_host != header(HOST.as_str())
        }
    }
}

/// Checks a state-changing request of a session: same origin, and its CSRF token.
pub fn check_post(
    session: &SignedIn,
    headers: &HeaderMap,
    token: Option<&str>,
) -> Result<(), OwnerError> {
    if cross_site(headers) {
        return Err(OwnerError::Csrf);
    }
    session.check_csrf(token)
}

/// The sign-in rate limit: attempts per minute from one address and for one account (counted before the
/// password is checked, so guessing is slow either way).
pub struct SignInLimiter {
    by_address: DefaultKeyedRateLimiter<IpAddr>,
    by_account: DefaultKeyedRateLimiter<String>,
}

/// Buckets kept before idle ones are forgotten.
const MAX_BUCKETS: usize = 10_000;

impl SignInLimiter {
    pub fn new(per_address: u32, per_account: u32) -> Self {
        let quota =
            |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN));
        Self {
            by_address: RateLimiter::keyed(quota(per_address)),
            by_account: RateLimiter::keyed(quota(per_account)),
        }
    }

    /// `Ok` if this attempt may go ahead, else how long to wait.
    pub fn check(&self, addr: Option<IpAddr>, email: &str) -> Result<(), Duration> {
        forget_idle_if_full(&self.by_address);
        forget_idle_if_full(&self.by_account);
        let wait = |not_until: governor::NotUntil<_>| {
            not_until.wait_time_from(DefaultClock::default().now())
        };
        let addr = addr.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        self.by_address.check_key(&addr).map_err(wait)?;
        let account: String = email.trim().to_lowercase().chars().take(254).collect();
        self.by_account.check_key(&account).map_err(wait)
    }
}

impl Default for SignInLimiter {
    fn default() -> Self {
        Self::new(SIGN_INS_PER_ADDRESS, SIGN_INS_PER_ACCOUNT)
    }
}

/// Keeps a keyed limiter's memory bounded: past [`MAX_BUCKETS`] keys, forgets those whose bucket is full
/// again.
fn forget_idle_if_full<K: std::hash::Hash + Eq + Clone>(limiter: &DefaultKeyedRateLimiter<K>) {
    if limiter.len() > MAX_BUCKETS {
        limiter.retain_recent();
        limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; outpost_owner=tok; b=2")]);
        assert_eq!(session_cookie(&h), Some("tok"));
        let h = headers(&[("cookie", "a=1"), ("cookie", "outpost_owner=x")]);
        assert_eq!(session_cookie(&h), Some("x"));
        assert_eq!(
            session_cookie(&headers(&[("cookie", "outpost_owner_x=1")])),
            None
        );
    }

    #[test]
    fn cookies_carry_every_attribute() {
        let c = start_cookie("tok");
        let c = c.to_str().unwrap();
        for attr in [
            "outpost_owner=tok",
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=604800",
        ] {
            assert!(c.contains(attr), "{c}");
        }
        assert!(end_cookie().to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn cross_site_requests_are_recognized() {
        assert!(!cross_site(&headers(&[])));
        assert!(!cross_site(&headers(&[
            ("host", "portal.example:8443"),
            ("origin", "https://portal.example:8443")
        ])));
        assert!(cross_site(&headers(&[
            ("host", "portal.example:8443"),
            ("origin", "https://evil.example")
        ])));
        assert!(cross_site(&headers(&[
            ("host", "portal.example"),
            ("origin", "null")
        ])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(!cross_site(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(
            !cross_site(&headers(&[
                ("host", "portal.example"),
                ("origin", "null"),
                ("sec-fetch-site", "same-origin")
            ])),
            "a no-referrer page's own form post: Origin null, fetch metadata same-origin"
        );
    }

    #[test]
    fn sign_ins_are_limited_per_address_and_per_account() {
        let limiter = SignInLimiter::new(3, 2);
        let a = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        let b = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
        assert!(limiter.check(a, "x@example.com").is_ok());
        assert!(limiter.check(b, "X@Example.com ").is_ok());
        assert!(
            limiter.check(a, "x@example.com").is_err(),
            "the account's budget is spent"
        );
        assert!(limiter.check(a, "y@example.com").is_ok());
        assert!(
            limiter.check(a, "z@example.com").is_err(),
            "the address's budget is spent"
        );
        assert!(limiter.check(b, "z@example.com").is_ok());
    }
}
