//! Time-based one-time passwords (RFC 6238: HMAC-SHA-1, 6 digits, 30-second steps, what authenticator
//! apps use): the per-person secret, its otpauth URI and QR code for enrolment, and code checking with one
//! step of clock skew and replay protection. Pure: the caller stores the secret and the last used step.

use std::fmt;

use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};
use rand::RngCore;
use totp_rs::{Algorithm, Secret, TOTP};

/// Digits in a code.
pub const DIGITS: usize = 6;
/// Seconds per time step.
pub const STEP_SECS: u64 = 30;
/// Steps of clock skew accepted either side of the current one.
const SKEW_STEPS: u64 = 1;
/// Bytes of a generated secret (RFC 4226 recommends 160 bits).
const SECRET_LEN: usize = 20;
/// Fewest bytes a stored secret may have (RFC 4226's minimum, 128 bits).
const MIN_SECRET_LEN: usize = 16;
/// Most bytes a stored secret may have (nothing we make is longer; bounds the work on a corrupt value).
const MAX_SECRET_LEN: usize = 64;

/// Why a code or a secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    /// The code matches none of the accepted steps.
    #[error("the code is wrong or has expired; type the current code from your authenticator app")]
    WrongCode,
    /// The code matches, but its step was already used (a code is accepted once).
    #[error("this code was already used; wait for the next code")]
    Replayed,
    /// The input is not a code, or a stored secret is not readable.
    #[error("{0}")]
    Malformed(String),
    /// Building the TOTP or its QR code failed.
    #[error("two-factor setup failed ({0}); try again, and report it if it keeps failing")]
    Internal(String),
}

/// A person's TOTP secret (20 random bytes when generated). `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

impl TotpSecret {
    /// A fresh random secret from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; SECRET_LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The secret from its base32 form (RFC 4648, as [`TotpSecret::to_base32`] writes it, which is how the
    /// store keeps it). Case, spaces and `=` padding are tolerated, so the grouped display form reads too.
    pub fn from_base32(s: &str) -> Result<Self, TotpError> {
        let cleaned: String = s
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '=')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let bytes = Secret::Encoded(cleaned).to_bytes().map_err(|_| {
            TotpError::Malformed("the two-factor secret is not valid base32".into())
        })?;
        if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&bytes.len()) {
            return Err(TotpError::Malformed(format!(
                "the two-factor secret has {} bytes; it needs {MIN_SECRET_LEN} to {MAX_SECRET_LEN}",
                bytes.len()
            )));
        }
        Ok(Self(bytes))
    }

    /// The secret as unpadded upper-case RFC 4648 base32 (how the store keeps it, and what a person types
    /// into an authenticator app that cannot scan the QR code).
    pub fn to_base32(&self) -> String {
        match Secret::Raw(self.0.clone()).to_encoded() {
            Secret::Encoded(s) => s,
            // `to_encoded` of a raw secret is always `Encoded`; encode nothing rather than leak raw bytes.
            Secret::Raw(_) => String::new(),
        }
    }

    /// [`TotpSecret::to_base32`] in groups of 4 separated by spaces, for reading and typing.
    pub fn display_groups(&self) -> String {
        let b32 = self.to_base32();
        let chars: Vec<char> = b32.chars().collect();
        chars
            .chunks(4)
            .map(|g| g.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `otpauth://totp/<issuer>:<account>?secret=..&issuer=..&algorithm=SHA1&digits=6&period=30`, issuer and
    /// account percent-encoded. Neither may be empty or contain `:` (the label's separator).
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> Result<String, TotpError> {
        for (what, value) in [("issuer", issuer), ("account name", account)] {
            if value.trim().is_empty() {
                return Err(TotpError::Malformed(format!(
                    "the {what} for the authenticator app is empty; give one"
                )));
            }
            if value.contains(':') {
                return Err(TotpError::Malformed(format!(
                    "the {what} for the authenticator app contains ':'; remove it"
                )));
            }
        }
        let issuer = percent_encode(issuer);
        Ok(format!(
            "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
            account = percent_encode(account),
            secret = self.to_base32(),
        ))
    }

    /// [`TotpSecret::otpauth_uri`] as a QR code: a standalone `<svg>` element (no XML declaration) for
    /// inlining in HTML, labelled for screen readers.
    pub fn qr_svg(&self, issuer: &str, account: &str) -> Result<String, TotpError> {
        let uri = self.otpauth_uri(issuer, account)?;
        let code = QrCode::with_error_correction_level(uri.as_bytes(), EcLevel::M)
            .map_err(|e| TotpError::Internal(format!("QR code: {e}")))?;
        let image = code
            .render::<svg::Color>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build();
        let start = image
            .find("<svg")
            .ok_or_else(|| TotpError::Internal("the QR renderer produced no <svg>".into()))?;
        Ok(image[start..].replacen(
            "<svg ",
            "<svg role=\"img\" aria-label=\"QR code to add this account to an authenticator app\" ",
            1,
        ))
    }

    /// The code for a Unix time.
    pub fn code_at(&self, unix_secs: u64) -> String {
        self.totp().generate(unix_secs)
    }

    /// Checks `code` at `unix_secs`, allowing one step of clock skew either side, and returns the time step
    /// it matched. A step `<= last_used_step` is refused ([`TotpError::Replayed`]): each code is accepted
    /// once, so the caller stores the returned step. Spaces in the code are ignored ("123 456").
    pub fn verify(
        &self,
        code: &str,
        unix_secs: u64,
        last_used_step: Option<u64>,
    ) -> Result<u64, TotpError> {
        let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TotpError::Malformed(format!(
                "a code has {DIGITS} digits; type the {DIGITS} digits your authenticator app shows"
            )));
        }
        let totp = self.totp();
        let now = unix_secs / STEP_SECS;
        let mut accepted: Option<u64> = None;
        let mut replayed = false;
        // Every candidate is computed and compared (no early exit), in constant time.
        for step in now.saturating_sub(SKEW_STEPS)..=now.saturating_add(SKEW_STEPS) {
            let expected = totp.generate(step.saturating_mul(STEP_SECS));
            if !constant_time_eq(expected.as_bytes(), code.as_bytes()) {
                continue;
            }
            if last_used_step.is_some_and(|last| step <= last) {
                replayed = true;
            } else {
                accepted = Some(accepted.map_or(step, |a| a.max(step)));
            }
        }
        match accepted {
            Some(step) => Ok(step),
            None if replayed => {
                tracing::info!("a two-factor code was used a second time; refused");
                Err(TotpError::Replayed)
            }
            None => Err(TotpError::WrongCode),
        }
    }

    fn totp(&self) -> TOTP {
        // `new_unchecked`: the only checks `new` adds are the digit count (a constant here) and the secret
        // length, which every constructor of `TotpSecret` guarantees. Skew is handled in `verify`.
        TOTP::new_unchecked(
            Algorithm::SHA1,
            DIGITS,
            0,
            STEP_SECS,
            self.0.clone(),
            None,
            String::new(),
        )
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B's SHA-1 seed: the 20 ASCII bytes "12345678901234567890".
    fn rfc_secret() -> TotpSecret {
        TotpSecret(b"12345678901234567890".to_vec())
    }

    /// RFC 6238 Appendix B, SHA-1 column: (T, 8-digit TOTP). Our 6-digit code is the last 6 digits.
    const RFC_6238_SHA1: [(u64, &str); 6] = [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ];

    #[test]
    fn codes_match_rfc_6238_appendix_b() {
        let secret = rfc_secret();
        for (t, eight) in RFC_6238_SHA1 {
            assert_eq!(secret.code_at(t), eight[2..], "T = {t}");
        }
    }

    #[test]
    fn rfc_codes_verify_and_return_their_step() {
        let secret = rfc_secret();
        for (t, eight) in RFC_6238_SHA1 {
            assert_eq!(secret.verify(&eight[2..], t, None), Ok(t / 30), "T = {t}");
        }
        // "081804" at T = 1111111109, typed with a space.
        assert_eq!(
            secret.verify("081 804", 1111111109, None),
            Ok(1111111109 / 30)
        );
        assert_eq!(
            secret.verify(" 081804 ", 1111111109, None),
            Ok(1111111109 / 30)
        );
    }

    #[test]
    fn one_step_of_skew_is_accepted_either_side_and_no_more() {
        let secret = rfc_secret();
        let t = 1234567890; // step 41152263, code 005924
        let step = t / 30;
        assert_eq!(secret.verify("005924", t + 30, None), Ok(step)); // phone one step behind
        assert_eq!(secret.verify("005924", t - 30, None), Ok(step)); // phone one step ahead
        assert_eq!(
            secret.verify("005924", t + 60, None),
            Err(TotpError::WrongCode)
        );
        assert_eq!(
            secret.verify("005924", t - 60, None),
            Err(TotpError::WrongCode)
        );
    }

    #[test]
    fn a_wrong_code_is_refused() {
        let secret = rfc_secret();
        assert_eq!(
            secret.verify("005925", 1234567890, None),
            Err(TotpError::WrongCode)
        );
        // Another secret's code.
        let other = TotpSecret::generate();
        let code = other.code_at(1234567890);
        if code != "005924" {
            assert_eq!(
                secret.verify(&code, 1234567890, None),
                Err(TotpError::WrongCode)
            );
        }
    }

    #[test]
    fn a_code_is_accepted_once() {
        let secret = rfc_secret();
        let t = 1234567890;
        let step = secret.verify("005924", t, None).unwrap();
        assert_eq!(
            secret.verify("005924", t, Some(step)),
            Err(TotpError::Replayed)
        );
        // Still refused a step later, while it is inside the skew window.
        assert_eq!(
            secret.verify("005924", t + 30, Some(step)),
            Err(TotpError::Replayed)
        );
        // An older step than the last used one is refused too.
        assert_eq!(
            secret.verify("005924", t, Some(step + 1)),
            Err(TotpError::Replayed)
        );
        // The next code is fine.
        let next = secret.code_at(t + 30);
        assert_eq!(secret.verify(&next, t + 30, Some(step)), Ok(step + 1));
        let msg = TotpError::Replayed.to_string();
        assert!(msg.contains("already used"), "{msg}");
    }

    #[test]
    fn malformed_codes_are_refused_not_panicked_on() {
        let secret = rfc_secret();
        for code in [
            "",
            "12345",
            "1234567",
            "12a456",
            "１２３４５６",
            "12-456",
            "💥💥💥",
        ] {
            assert!(
                matches!(
                    secret.verify(code, 1234567890, None),
                    Err(TotpError::Malformed(_))
                ),
                "{code:?}"
            );
        }
        // Times near zero and the end of time do not overflow.
        let code = secret.code_at(0);
        assert_eq!(secret.verify(&code, 0, None), Ok(0));
        assert!(secret.verify("000000", u64::MAX, None).is_err());
    }

    #[test]
    fn base32_round_trips_and_groups_for_display() {
        let secret = rfc_secret();
        // RFC 4648 base32 of "12345678901234567890".
        assert_eq!(secret.to_base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            secret.display_groups(),
            "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ"
        );
        assert_eq!(
            TotpSecret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap(),
            secret
        );
        assert_eq!(
            TotpSecret::from_base32(&secret.display_groups().to_lowercase()).unwrap(),
            secret
        );
        let fresh = TotpSecret::generate();
        assert_eq!(TotpSecret::from_base32(&fresh.to_base32()).unwrap(), fresh);
        assert_eq!(fresh.to_base32().len(), 32); // 160 bits
        assert_ne!(fresh, TotpSecret::generate());
    }

    #[test]
    fn unreadable_or_short_secrets_are_refused() {
        for s in ["", "not base32!", "GEZDGNBV", "18"] {
            assert!(
                matches!(TotpSecret::from_base32(s), Err(TotpError::Malformed(_))),
                "{s:?}"
            );
        }
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        let secret = rfc_secret();
        let shown = format!("{secret:?}");
        assert!(!shown.contains("GEZD"), "{shown}");
        assert!(!shown.contains("12345"), "{shown}");
        assert!(!shown.contains("49"), "{shown}"); // byte values
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn the_otpauth_uri_has_every_parameter_and_encodes_the_label() {
        let secret = rfc_secret();
        assert_eq!(
            secret.otpauth_uri("Outpost", "ann@example.com").unwrap(),
            "otpauth://totp/Outpost:ann%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Outpost&algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(
            secret.otpauth_uri("Acme & Co", "b c").unwrap(),
            "otpauth://totp/Acme%20%26%20Co:b%20c?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Acme%20%26%20Co&algorithm=SHA1&digits=6&period=30"
        );
        // totp-rs reads it back as the same TOTP.
        let parsed =
            TOTP::from_url(secret.otpauth_uri("Outpost", "ann@example.com").unwrap()).unwrap();
        assert_eq!(parsed.secret, b"12345678901234567890");
        assert_eq!(parsed.issuer.as_deref(), Some("Outpost"));
        assert_eq!(parsed.account_name, "ann@example.com");
        assert_eq!((parsed.digits, parsed.step), (6, 30));
        for (issuer, account) in [("Out:post", "a"), ("Outpost", "a:b"), ("", "a"), ("x", " ")] {
            assert!(
                matches!(
                    secret.otpauth_uri(issuer, account),
                    Err(TotpError::Malformed(_))
                ),
                "{issuer:?} {account:?}"
            );
        }
    }

    #[test]
    fn the_qr_code_is_an_inline_svg_element() {
        let svg = TotpSecret::generate()
            .qr_svg("Outpost", "ann@example.com")
            .unwrap();
        assert!(svg.starts_with("<svg "), "{}", &svg[..60]);
        assert!(!svg.contains("<?xml"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("aria-label="));
        assert!(svg.contains("<path"));
        assert!(TotpSecret::generate().qr_svg("Out:post", "a").is_err());
    }
}
