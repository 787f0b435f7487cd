//! "Remember this device": the long-lived, signed cookie that lets a person skip the second factor on a
//! browser they trust, and the short browser description the security page lists it under. Pure: the
//! store keeps the devices (a device removed there makes its cookie worthless, signature or not).
//!
//! The cookie value is `<device id>.<user id>.<issued unix secs>.<mac>`: the device id is 16 random bytes
//! base64url, the mac is HMAC-SHA256 with the portal's 32-byte key over `outpost-device-v1` and the first
//! three fields, base64url (no padding).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// The cookie's name.
pub const COOKIE_NAME: &str = "outpost_device";
/// How long a device stays remembered.
pub const LIFETIME_DAYS: i64 = 30;

/// Domain separation: the portal's key signs other things too.
const CONTEXT: &[u8] = b"outpost-device-v1\n";
const DEVICE_ID_BYTES: usize = 16;
const MAC_BYTES: usize = 32;
/// Longer values are refused before any work (ours are about 90 characters).
const MAX_VALUE_LEN: usize = 256;
/// How far in the future an issue time may be (clocks step back a little now and then).
const ALLOWED_FUTURE_SECS: u64 = 300;

type HmacSha256 = Hmac<Sha256>;

/// What a valid cookie says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCookie {
    /// Random, 16 bytes base64url; the store keeps its hash.
    pub device_id: String,
    /// The account the device was remembered for.
    pub user_id: i64,
    /// When the cookie was issued (Unix seconds).
    pub issued_at: u64,
}

/// Why a cookie value is not accepted. Whatever the reason, the person signs in with the second factor again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceCookieError {
    /// Not the shape of a device cookie.
    #[error("the remembered-device cookie is damaged; sign in with your second factor again")]
    Malformed,
    /// Changed, or signed with another key.
    #[error(
        "the remembered-device cookie is not valid here; sign in with your second factor again"
    )]
    BadSignature,
    /// Older than allowed.
    #[error("this device is no longer remembered (it was more than the allowed time ago); sign in with your second factor again")]
    Expired,
    /// Issued later than now (the clock went back).
    #[error("the remembered-device cookie is dated in the future; check the portal's clock and sign in with your second factor again")]
    FromTheFuture,
}

/// A fresh device for `user_id`: the cookie's contents and its value.
pub fn issue(key: &[u8; 32], user_id: i64, now_unix: u64) -> (DeviceCookie, String) {
    let mut id = [0u8; DEVICE_ID_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut id);
    let cookie = DeviceCookie {
        device_id: URL_SAFE_NO_PAD.encode(id),
        user_id,
        issued_at: now_unix,
    };
    let payload = format!("{}.{}.{}", cookie.device_id, user_id, now_unix);
    let mac = URL_SAFE_NO_PAD.encode(sign(key, &payload).finalize().into_bytes());
    (cookie, format!("{payload}.{mac}"))
}

/// Verifies the signature (constant time), the shape and the age (at most `max_age_secs`). A tampered,
/// truncated or foreign value is an error, never a panic.
pub fn verify(
    key: &[u8; 32],
    value: &str,
    now_unix: u64,
    max_age_secs: u64,
) -> Result<DeviceCookie, DeviceCookieError> {
    let result = check(key, value, now_unix, max_age_secs);
    if let Err(e) = &result {
        // Never the value: it is a bearer credential.
        tracing::debug!(reason = ?e, len = value.len(), "device cookie refused");
    }
    result
}

fn check(
    key: &[u8; 32],
    value: &str,
    now_unix: u64,
    max_age_secs: u64,
) -> Result<DeviceCookie, DeviceCookieError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(DeviceCookieError::Malformed);
    }
    let (payload, mac) = value.rsplit_once('.').ok_or(DeviceCookieError::Malformed)?;
    let mac = URL_SAFE_NO_PAD
        .decode(mac)
        .map_err(|_| DeviceCookieError::Malformed)?;
    if mac.len() != MAC_BYTES {
        return Err(DeviceCookieError::Malformed);
    }
    sign(key, payload)
        .verify_slice(&mac)
        .map_err(|_| DeviceCookieError::BadSignature)?;

    // Signed by us, so well-formed unless the format changed; still checked strictly.
    let mut fields = payload.split('.');
    let (Some(device_id), Some(user_id), Some(issued_at), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(DeviceCookieError::Malformed);
    };
    let id_ok = URL_SAFE_NO_PAD
        .decode(device_id)
        .is_ok_and(|id| id.len() == DEVICE_ID_BYTES);
    let user_id = canonical::<i64>(user_id);
    let issued_at = canonical::<u64>(issued_at);
    let (true, Some(user_id), Some(issued_at)) = (id_ok, user_id, issued_at) else {
        return Err(DeviceCookieError::Malformed);
    };
    if issued_at > now_unix.saturating_add(ALLOWED_FUTURE_SECS) {
        return Err(DeviceCookieError::FromTheFuture);
    }
    if now_unix.saturating_sub(issued_at) > max_age_secs {
        return Err(DeviceCookieError::Expired);
    }
    Ok(DeviceCookie {
        device_id: device_id.to_owned(),
        user_id,
        issued_at,
    })
}

/// The HMAC over `payload`, ready to finalize or verify.
fn sign(key: &[u8; 32], payload: &str) -> HmacSha256 {
    // HMAC zero-pads a key shorter than the hash's 64-byte block, so this is HMAC with `key` itself; going
    // through the fixed-size constructor keeps it infallible.
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let mut mac = <HmacSha256 as KeyInit>::new((&block).into());
    mac.update(CONTEXT);
    mac.update(payload.as_bytes());
    mac
}

/// `s` as a number only if it is written the one way we write it (no `+`, no leading zeros).
fn canonical<T: std::str::FromStr + ToString>(s: &str) -> Option<T> {
    let n = s.parse::<T>().ok()?;
    (n.to_string() == s).then_some(n)
}

/// A short browser description from a User-Agent header for the security page ("Chrome 131 on Linux",
/// "Firefox 133 on Windows", "Safari 17 on iOS", "unknown browser"). A heuristic, and honest about it: only
/// fixed names and a major version number reach the output, never text from the header.
pub fn describe_browser(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent.map(str::trim).filter(|ua| !ua.is_empty()) else {
        return "unknown browser".to_owned();
    };
    // Enough for any real User-Agent; bounds the work on a hostile one.
    let ua = match ua.char_indices().nth(512) {
        Some((cut, _)) => &ua[..cut],
        None => ua,
    };
    let browser = browser(ua);
    match (browser, os(ua)) {
        (Some(b), Some(os)) => format!("{b} on {os}"),
        (Some(b), None) => b,
        (None, Some(os)) => format!("unknown browser on {os}"),
        (None, None) => "unknown browser".to_owned(),
    }
}

/// The browser and its major version. Order matters: Edge, Opera and Samsung Internet also say "Chrome",
/// Chrome also says "Safari".
fn browser(ua: &str) -> Option<String> {
    const BROWSERS: &[(&str, &str)] = &[
        ("Edg/", "Edge"),
        ("EdgA/", "Edge"),
        ("EdgiOS/", "Edge"),
        ("OPR/", "Opera"),
        ("SamsungBrowser/", "Samsung Internet"),
        ("Vivaldi/", "Vivaldi"),
        ("YaBrowser/", "Yandex Browser"),
        ("FxiOS/", "Firefox"),
        ("Firefox/", "Firefox"),
        ("CriOS/", "Chrome"),
        ("Chromium/", "Chromium"),
        ("Chrome/", "Chrome"),
    ];
    for (token, name) in BROWSERS {
        if let Some(rest) = find_after(ua, token) {
            return Some(with_version(name, rest));
        }
    }
    if ua.contains("Safari/") && ua.contains("AppleWebKit/") {
        return Some(match find_after(ua, "Version/") {
            Some(rest) => with_version("Safari", rest),
            None => "Safari".to_owned(),
        });
    }
    None
}

fn os(ua: &str) -> Option<&'static str> {
    if ua.contains("Windows") {
        Some("Windows")
    } else if ua.contains("Android") {
        Some("Android")
    } else if ua.contains("iPhone") || ua.contains("iPad") || ua.contains("iPod") {
        Some("iOS")
    } else if ua.contains("CrOS") {
        Some("ChromeOS")
    } else if ua.contains("Macintosh") || ua.contains("Mac OS X") {
        Some("macOS")
    } else if ua.contains("Linux") || ua.contains("X11") {
        Some("Linux")
    } else {
        None
    }
}

fn find_after<'a>(ua: &'a str, token: &str) -> Option<&'a str> {
    ua.find(token).map(|i| &ua[i + token.len()..])
}

/// `name` and the major version at the start of `rest`, if it has one (1 to 4 digits).
fn with_version(name: &str, rest: &str) -> String {
    let major: String = rest.chars().take_while(char::is_ascii_digit).collect();
    if (1..=4).contains(&major.len()) {
        format!("{name} {major}")
    } else {
        name.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7u8; 32];
    const NOW: u64 = 1_700_000_000;
    const MAX_AGE: u64 = LIFETIME_DAYS as u64 * 86_400;

    #[test]
    fn a_fresh_cookie_verifies_and_says_what_it_was_issued_for() {
        let (cookie, value) = issue(&KEY, 42, NOW);
        assert_eq!(cookie.user_id, 42);
        assert_eq!(cookie.issued_at, NOW);
        assert_eq!(URL_SAFE_NO_PAD.decode(&cookie.device_id).unwrap().len(), 16);
        assert!(
            value.starts_with(&format!("{}.42.{NOW}.", cookie.device_id)),
            "{value}"
        );
        assert_eq!(verify(&KEY, &value, NOW, MAX_AGE), Ok(cookie.clone()));
        assert_eq!(
            verify(&KEY, &value, NOW + MAX_AGE, MAX_AGE),
            Ok(cookie.clone())
        );
        // Negative and extreme ids survive the round trip.
        for user in [-1, 0, i64::MIN, i64::MAX] {
            let (c, v) = issue(&KEY, user, NOW);
            assert_eq!(verify(&KEY, &v, NOW, MAX_AGE), Ok(c));
        }
        // Each device gets its own id.
        assert_ne!(cookie.device_id, issue(&KEY, 42, NOW).0.device_id);
    }

    #[test]
    fn the_mac_is_hmac_sha256_with_the_key_itself() {
        // The padded fixed-size key must give exactly the HMAC of the 32-byte key.
        let mut reference = <HmacSha256 as KeyInit>::new_from_slice(&KEY).unwrap();
        reference.update(CONTEXT);
        reference.update(b"abc.1.2");
        assert_eq!(
            sign(&KEY, "abc.1.2").finalize().into_bytes(),
            reference.finalize().into_bytes()
        );
    }

    #[test]
    fn tampering_with_any_field_is_refused() {
        let (cookie, value) = issue(&KEY, 42, NOW);
        let mac = value.rsplit_once('.').unwrap().1;
        let other_id = URL_SAFE_NO_PAD.encode([9u8; 16]);
        let forged = [
            format!("{other_id}.42.{NOW}.{mac}"),
            format!("{}.43.{NOW}.{mac}", cookie.device_id),
            format!("{}.-42.{NOW}.{mac}", cookie.device_id),
            format!("{}.042.{NOW}.{mac}", cookie.device_id),
            format!("{}.42.{}.{mac}", cookie.device_id, NOW + 1),
            format!("{}.42.{}.{mac}", cookie.device_id, NOW + MAX_AGE),
        ];
        for v in &forged {
            assert_eq!(
                verify(&KEY, v, NOW, MAX_AGE),
                Err(DeviceCookieError::BadSignature),
                "{v}"
            );
        }
        // Flip each character of the mac in turn.
        let (payload, mac) = value.rsplit_once('.').unwrap();
        for i in 0..mac.len() {
            let mut chars: Vec<char> = mac.chars().collect();
            chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
            let v = format!("{payload}.{}", chars.into_iter().collect::<String>());
            assert!(verify(&KEY, &v, NOW, MAX_AGE).is_err(), "{v}");
        }
    }

    #[test]
    fn another_key_is_refused() {
        let (_, value) = issue(&KEY, 42, NOW);
        let mut other = KEY;
        other[31] ^= 1;
        assert_eq!(
            verify(&other, &value, NOW, MAX_AGE),
            Err(DeviceCookieError::BadSignature)
        );
    }

    #[test]
    fn an_old_cookie_is_refused() {
        let (_, value) = issue(&KEY, 42, NOW);
        assert_eq!(
            verify(&KEY, &value, NOW + MAX_AGE + 1, MAX_AGE),
            Err(DeviceCookieError::Expired)
        );
        assert_eq!(
            verify(&KEY, &value, NOW + 3601, 3600),
            Err(DeviceCookieError::Expired)
        );
        assert!(verify(&KEY, &value, NOW + 3600, 3600).is_ok());
    }

    #[test]
    fn a_cookie_from_the_future_is_refused_beyond_a_little_skew() {
        let (_, value) = issue(&KEY, 42, NOW);
        assert!(verify(&KEY, &value, NOW - 300, MAX_AGE).is_ok());
        assert_eq!(
            verify(&KEY, &value, NOW - 301, MAX_AGE),
            Err(DeviceCookieError::FromTheFuture)
        );
    }

    #[test]
    fn truncated_or_foreign_values_are_errors_not_panics() {
        let (_, value) = issue(&KEY, 42, NOW);
        let mut inputs: Vec<String> = (0..value.len())
            .filter(|i| value.is_char_boundary(*i))
            .map(|i| value[..i].to_owned())
            .collect();
        inputs.extend(
            [
                "",
                ".",
                "...",
                "a.b.c.d",
                "a.b.c.d.e",
                "éé.ü.ß.💥",
                "session=abc",
                &"A".repeat(10_000),
                &format!("{value}."),
                &format!(".{value}"),
                &format!("{value}{value}"),
            ]
            .map(str::to_owned),
        );
        for v in &inputs {
            assert!(verify(&KEY, v, NOW, MAX_AGE).is_err(), "{v:?}");
        }
        // A correctly signed payload of the wrong shape is still refused.
        for payload in [
            "abc.42",
            "abc.42.1.2",
            "short.42.1",
            "AAAAAAAAAAAAAAAAAAAAAA.x.1",
        ] {
            let mac = URL_SAFE_NO_PAD.encode(sign(&KEY, payload).finalize().into_bytes());
            assert_eq!(
                verify(&KEY, &format!("{payload}.{mac}"), NOW, MAX_AGE),
                Err(DeviceCookieError::Malformed),
                "{payload}"
            );
        }
    }

    #[test]
    fn browsers_are_described_from_real_user_agents() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
                "Chrome 131 on Linux",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
                "Firefox 133 on Windows",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
                "Edge 131 on Windows",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Safari/605.1.15",
                "Safari 17 on macOS",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
                "Safari 17 on iOS",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
                "Chrome 131 on iOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
                "Chrome 131 on Android",
            ),
            (
                "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0",
                "Firefox 133 on Android",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
                "Samsung Internet 26 on Android",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 OPR/115.0.0.0",
                "Opera 115 on Windows",
            ),
            (
                "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
                "Chrome 131 on ChromeOS",
            ),
            (
                "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
                "Firefox 133 on Linux",
            ),
            ("curl/8.5.0", "unknown browser"),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "unknown browser on Windows"),
            ("Mozilla/5.0 (Windows NT 10.0) Firefox/", "Firefox on Windows"),
        ];
        for (ua, expected) in cases {
            assert_eq!(describe_browser(Some(ua)), expected, "{ua}");
        }
        assert_eq!(describe_browser(None), "unknown browser");
        assert_eq!(describe_browser(Some("   ")), "unknown browser");
    }

    #[test]
    fn nothing_from_the_header_reaches_the_description() {
        let hostile = "<script>alert(1)</script> Chrome/<b>1</b> Firefox/99999999 Windows";
        let shown = describe_browser(Some(hostile));
        assert_eq!(shown, "Firefox on Windows");
        let long = format!("{} Chrome/131.0", "x".repeat(100_000));
        assert_eq!(describe_browser(Some(&long)), "unknown browser");
    }
}
