//! Times on the pages in the signed-in user's time format (24 h or 12 h) and time zone (UTC, a fixed
//! offset or an IANA zone: [`crate::time_zone`]): [`scope`] reads them from the session once per request
//! and keeps them for the request's task, so every `layout::when` on the page follows them without passing
//! them around. Without a session: UTC, 24 h.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};

use super::auth::{session_of, SessionLookup};
use super::WebState;
use crate::time_zone::{self, Zone};

/// How a user wants times shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimePrefs {
    pub zone: Zone,
    pub twelve_hour: bool,
}

impl TimePrefs {
    /// From the stored settings (`24h`/`12h`; a zone [`Zone::parse`] reads); an unreadable zone means UTC.
    pub fn from_settings(time_format: &str, time_zone: &str) -> Self {
        Self {
            zone: Zone::from_stored(time_zone),
            twelve_hour: time_format == "12h",
        }
    }
}

/// `t` as `prefs` wants it, with the zone named: `2026-01-15 14:00 UTC+02:00`, `2026-07-15 04:05 PM CEST`.
pub fn format(t: DateTime<Utc>, prefs: &TimePrefs) -> String {
    time_zone::format(t, prefs.zone, prefs.twelve_hour)
}

tokio::task_local! {
    static PREFS: TimePrefs;
}

/// `t` in the current request's preferences (UTC, 24 h outside a request).
pub fn format_now_prefs(t: DateTime<Utc>) -> String {
    PREFS
        .try_with(|p| format(t, p))
        .unwrap_or_else(|_| format(t, &TimePrefs::default()))
}

/// The middleware: the signed-in user's preferences for the rest of the request. The session it looked up
/// is left in the request's extensions ([`SessionLookup`]) so that [`super::auth::Tech`] does not look it
/// up (and touch its `last_seen`) a second time.
pub async fn scope(State(state): State<WebState>, mut request: Request, next: Next) -> Response {
    let found = session_of(&state, request.headers()).await;
    let prefs = match &found {
        Ok(Some((_, session))) => {
            TimePrefs::from_settings(&session.user.time_format, &session.user.time_zone)
        }
        _ => TimePrefs::default(),
    };
    // A failed lookup is not kept: the extractor looks again and answers with the error page.
    if let Ok(found) = found {
        request.extensions_mut().insert(SessionLookup(found));
    }
    PREFS.scope(prefs, next.run(request)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 15, 14, 5, 0).unwrap()
    }

    #[test]
    fn stored_settings_are_read_and_an_unknown_zone_is_utc() {
        let p = TimePrefs::from_settings("12h", "Europe/Rome");
        assert_eq!(format(at(), &p), "2026-01-15 03:05 PM CET");
        assert_eq!(
            TimePrefs::from_settings("24h", "Mars/Olympus"),
            TimePrefs::default()
        );
    }

    #[tokio::test]
    async fn a_request_scope_carries_its_preferences() {
        assert_eq!(format_now_prefs(at()), "2026-01-15 14:05 UTC");
        let p = TimePrefs::from_settings("12h", "UTC");
        let shown = PREFS.scope(p, async { format_now_prefs(at()) }).await;
        assert_eq!(shown, "2026-01-15 02:05 PM UTC");
    }
}
