//! The tests' own RFC 6238 codes (TOTP: HMAC-SHA1, 6 digits, 30-second steps), computed from the secret a
//! page shows as text (RFC 4648 base32, in groups or not, any case), written apart from the portal's
//! implementation so a browser test checks the portal against the RFC rather than against itself.

use anyhow::{bail, Result};
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Seconds in one time step.
pub const STEP_SECS: u64 = 30;
/// Digits in a code.
pub const DIGITS: u32 = 6;

/// The RFC 4648 base32 alphabet.
const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Decodes RFC 4648 base32, ignoring case, white space (the groups a page shows) and `=` padding.
pub fn base32_decode(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buffer, mut bits, mut chars) = (0u32, 0u32, 0usize);
    for c in text.chars().filter(|c| !c.is_whitespace() && *c != '=') {
        let upper = c.to_ascii_uppercase();
        let Some(value) = ALPHABET.iter().position(|&a| char::from(a) == upper) else {
            bail!("{c:?} is not a base32 letter (A-Z, 2-7) in the secret {text:?}");
        };
        buffer = (buffer << 5) | value as u32;
        bits += 5;
        chars += 1;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    // A last block of 1, 3 or 6 letters leaves bits that make no whole byte: a letter is missing or extra.
    if matches!(chars % 8, 1 | 3 | 6) {
        bail!("the secret {text:?} has {chars} base32 letters, a length no byte string encodes to");
    }
    Ok(out)
}

/// The RFC 4226 HOTP value of `counter` with `digits` digits: HMAC-SHA1, dynamic truncation, zero-padded.
pub fn hotp(key: &[u8], counter: u64, digits: u32) -> Result<String> {
    if !(1..=9).contains(&digits) {
        bail!("a HOTP code has 1 to 9 digits (31 bits of the digest), not {digits}");
    }
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key)
        .map_err(|e| anyhow::anyhow!("HMAC-SHA1 refused the secret as its key: {e}"))?;
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let value = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    let modulus = 10u64.pow(digits);
    Ok(format!(
        "{:0width$}",
        u64::from(value) % modulus,
        width = digits as usize
    ))
}

/// The time step of Unix time `unix_secs`.
pub fn step_of(unix_secs: u64) -> u64 {
    unix_secs / STEP_SECS
}

/// The 6-digit code of `secret` (base32, as the page shows it) at Unix time `unix_secs`.
pub fn code_at(secret: &str, unix_secs: u64) -> Result<String> {
    let key = base32_decode(secret)?;
    if key.is_empty() {
        bail!("the secret {secret:?} is empty");
    }
    hotp(&key, step_of(unix_secs), DIGITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238's SHA-1 key, "12345678901234567890", in base32.
    const RFC_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    #[test]
    fn rfc_6238_appendix_b_sha1_vectors() {
        let key = b"12345678901234567890";
        for (time, eight) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(hotp(key, step_of(time), 8).unwrap(), eight, "T = {time}");
            // Six digits are the last six of the eight (the value modulo 10^6).
            assert_eq!(code_at(RFC_SECRET, time).unwrap(), eight[2..], "T = {time}");
        }
    }

    #[test]
    fn rfc_4226_appendix_d_hotp_vectors() {
        let key = b"12345678901234567890";
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        for (counter, code) in expected.iter().enumerate() {
            assert_eq!(
                hotp(key, counter as u64, 6).unwrap(),
                *code,
                "counter {counter}"
            );
        }
    }

    #[test]
    fn the_secret_is_read_as_the_page_shows_it() {
        let grouped = "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ";
        assert_eq!(base32_decode(grouped).unwrap(), b"12345678901234567890");
        assert_eq!(
            code_at(&grouped.to_lowercase(), 59).unwrap(),
            code_at(RFC_SECRET, 59).unwrap()
        );
        // The code changes with the step and stays the same within one.
        assert_eq!(
            code_at(RFC_SECRET, 60).unwrap(),
            code_at(RFC_SECRET, 89).unwrap()
        );
        assert_ne!(
            code_at(RFC_SECRET, 89).unwrap(),
            code_at(RFC_SECRET, 90).unwrap()
        );
    }

    #[test]
    fn rfc_4648_base32_vectors_and_refusals() {
        for (encoded, plain) in [
            ("", ""),
            ("MY======", "f"),
            ("MZXQ====", "fo"),
            ("MZXW6===", "foo"),
            ("MZXW6YQ=", "foob"),
            ("MZXW6YTB", "fooba"),
            ("MZXW6YTBOI======", "foobar"),
            ("mzxw6ytboi", "foobar"),
        ] {
            assert_eq!(
                base32_decode(encoded).unwrap(),
                plain.as_bytes(),
                "{encoded}"
            );
        }
        for bad in ["MZXW1", "MZXW0YTB", "M", "MZX", "MZXW6Y"] {
            assert!(base32_decode(bad).is_err(), "{bad}");
        }
        assert!(code_at("", 59).is_err());
    }
}
