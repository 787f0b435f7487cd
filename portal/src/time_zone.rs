//! A person's time zone and time format, and times written in them: `UTC`, a fixed offset (`+05:30`) or an
//! IANA zone (`Europe/Rome`, with its daylight-saving rules from `chrono-tz`'s built-in database). Pure: the
//! account validates with [`Zone::parse`] and keeps [`Zone::stored`]; the pages write times with
//! [`format`].

use std::fmt;

use chrono::{DateTime, FixedOffset, Utc};
use chrono_tz::{Tz, TZ_VARIANTS};

/// The widest fixed offset accepted (UTC+14:00 is the furthest real zone).
const MAX_OFFSET_SECS: i32 = 14 * 3600;

/// A time zone as an account keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Zone {
    #[default]
    Utc,
    /// A fixed offset from UTC, never zero (that is [`Zone::Utc`]).
    Fixed(FixedOffset),
    /// An IANA zone.
    Named(Tz),
}

/// Why a time zone was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{given:?} is not a time zone this portal knows; give UTC, an IANA name like Europe/Rome or \
     America/New_York, or an offset like +02:00 or -05:30"
)]
pub struct UnknownZone {
    pub given: String,
}

impl Zone {
    /// `UTC` (any case, or `+00:00`), `±HH:MM` up to 14 hours, or an IANA name in any case.
    pub fn parse(raw: &str) -> Result<Self, UnknownZone> {
        let zone = raw.trim();
        let unknown = || UnknownZone {
            given: zone.to_owned(),
        };
        if zone.eq_ignore_ascii_case("utc") {
            return Ok(Zone::Utc);
        }
        if zone.starts_with(['+', '-']) {
            let offset = parse_offset(zone).ok_or_else(unknown)?;
            return Ok(if offset.local_minus_utc() == 0 {
                Zone::Utc
            } else {
                Zone::Fixed(offset)
            });
        }
        let tz = TZ_VARIANTS
            .iter()
            .find(|tz| tz.name().eq_ignore_ascii_case(zone))
            .ok_or_else(unknown)?;
        Ok(match *tz {
            Tz::UTC | Tz::Etc__UTC => Zone::Utc,
            tz => Zone::Named(tz),
        })
    }

    /// What the account stores: `UTC`, `+05:30` or the zone's canonical IANA spelling.
    pub fn stored(&self) -> String {
        self.to_string()
    }

    /// A stored value read back; one this code cannot read counts as UTC (pages must still show times).
    pub fn from_stored(stored: &str) -> Self {
        Self::parse(stored).unwrap_or_default()
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Utc => f.write_str("UTC"),
            Zone::Fixed(offset) => write!(f, "{offset}"),
            Zone::Named(tz) => f.write_str(tz.name()),
        }
    }
}

/// `±HH:MM`, digits only, at most 14 hours.
fn parse_offset(zone: &str) -> Option<FixedOffset> {
    let b = zone.as_bytes();
    if b.len() != 6 || b[3] != b':' {
        return None;
    }
    let sign = match b[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits = |range: std::ops::Range<usize>| -> Option<i32> {
        let part = zone.get(range)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (hours, minutes) = (digits(1..3)?, digits(4..6)?);
    let secs = hours * 3600 + minutes * 60;
    if minutes >= 60 || secs > MAX_OFFSET_SECS {
        return None;
    }
    FixedOffset::east_opt(sign * secs)
}

/// Every IANA zone name the portal knows, for the account page's suggestions.
pub fn names() -> impl Iterator<Item = &'static str> {
    TZ_VARIANTS.iter().map(|tz| tz.name())
}

/// `t` in `zone`, 24-hour or 12-hour, with the zone named: `2026-01-15 14:05 UTC`,
/// `2026-01-15 04:05 PM UTC+02:00`, `2026-07-15 16:05 CEST`.
pub fn format(t: DateTime<Utc>, zone: Zone, twelve_hour: bool) -> String {
    let clock = if twelve_hour {
        "%Y-%m-%d %I:%M %p"
    } else {
        "%Y-%m-%d %H:%M"
    };
    match zone {
        Zone::Utc => format!("{} UTC", t.format(clock)),
        Zone::Fixed(offset) => format!("{} UTC{offset}", t.with_timezone(&offset).format(clock)),
        Zone::Named(tz) => {
            let local = t.with_timezone(&tz);
            // The zone's abbreviation where it has one (CET, EDT); else tzdata writes the offset (+04).
            let abbreviation = local.format("%Z").to_string();
            let name = if abbreviation.starts_with(['+', '-']) {
                format!("UTC{}", local.format("%:z"))
            } else {
                abbreviation
            };
            format!("{} {name}", local.format(clock))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(month: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, month, 15, 14, 5, 0).unwrap()
    }

    #[test]
    fn utc_offsets_and_iana_names_are_kept_in_one_spelling() {
        for (given, kept) in [
            ("UTC", "UTC"),
            (" utc ", "UTC"),
            ("+00:00", "UTC"),
            ("-00:00", "UTC"),
            ("Etc/UTC", "UTC"),
            ("+02:00", "+02:00"),
            ("-05:30", "-05:30"),
            ("+14:00", "+14:00"),
            ("Europe/Rome", "Europe/Rome"),
            ("europe/rome", "Europe/Rome"),
            ("AMERICA/NEW_YORK", "America/New_York"),
            ("Asia/Kolkata", "Asia/Kolkata"),
        ] {
            assert_eq!(Zone::parse(given).unwrap().stored(), kept, "{given}");
        }
    }

    #[test]
    fn anything_else_is_refused_with_what_would_do() {
        for bad in [
            "",
            "Europe",
            "Mars/Olympus",
            "+2:00",
            "+02:60",
            "+15:00",
            "+14:30",
            "02:00",
            "+0a:00",
            "+02-00",
            "+٠٢:00",
        ] {
            let err = Zone::parse(bad).unwrap_err();
            assert!(err.to_string().contains("Europe/Rome"), "{bad}: {err}");
        }
    }

    #[test]
    fn times_follow_the_format_and_the_zone_and_name_it() {
        assert_eq!(format(at(1), Zone::Utc, false), "2026-01-15 14:05 UTC");
        assert_eq!(format(at(1), Zone::Utc, true), "2026-01-15 02:05 PM UTC");
        let plus2 = Zone::parse("+02:00").unwrap();
        assert_eq!(format(at(1), plus2, true), "2026-01-15 04:05 PM UTC+02:00");
        let minus = Zone::parse("-05:30").unwrap();
        assert_eq!(format(at(1), minus, false), "2026-01-15 08:35 UTC-05:30");
        let far = Zone::parse("+14:00").unwrap();
        assert_eq!(format(at(1), far, false), "2026-01-16 04:05 UTC+14:00");
    }

    #[test]
    fn a_named_zone_follows_daylight_saving_time() {
        let rome = Zone::parse("Europe/Rome").unwrap();
        assert_eq!(format(at(1), rome, false), "2026-01-15 15:05 CET");
        assert_eq!(format(at(7), rome, false), "2026-07-15 16:05 CEST");
        let new_york = Zone::parse("America/New_York").unwrap();
        assert_eq!(format(at(1), new_york, true), "2026-01-15 09:05 AM EST");
        assert_eq!(format(at(7), new_york, true), "2026-07-15 10:05 AM EDT");
        // Zones without an abbreviation in tzdata show their offset.
        let dubai = Zone::parse("Asia/Dubai").unwrap();
        assert_eq!(format(at(1), dubai, false), "2026-01-15 18:05 UTC+04:00");
    }

    #[test]
    fn an_unreadable_stored_zone_reads_as_utc() {
        assert_eq!(Zone::from_stored("Mars/Olympus"), Zone::Utc);
        assert_eq!(
            Zone::from_stored("Europe/Rome"),
            Zone::Named(Tz::Europe__Rome)
        );
        assert!(names().any(|n| n == "Europe/Rome"));
    }
}
