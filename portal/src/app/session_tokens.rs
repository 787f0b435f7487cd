//! Browser session tokens, shared by the operators' and the owners' sign-ins: random tokens (stored only
//! hashed), their shape check, and the CSRF token derived from a session token for one purpose, so it needs
//! no storage and cannot be computed without the cookie.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Random bytes in invitation and session tokens.
const TOKEN_BYTES: usize = 32;

/// A fresh random token (43 base64url characters).
pub fn new_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `token` has the shape of one of ours (43 base64url characters); anything else is unknown
/// without a look-up.
pub fn well_formed(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The CSRF token of the session whose cookie is `session_token`, for `purpose` (each kind of session has
/// its own, so one kind's token is worthless to the other).
pub fn csrf_token(purpose: &str, session_token: &str) -> String {
    let mut h = Sha256::new();
    h.update(purpose.as_bytes());
    h.update(b"\0");
    h.update(session_token.as_bytes());
    URL_SAFE_NO_PAD.encode(h.finalize())
}

/// Whether `given` is the CSRF token of `session_token` for `purpose`, compared in constant time.
pub fn csrf_matches(purpose: &str, session_token: &str, given: &str) -> bool {
    let expected = csrf_token(purpose, session_token);
    expected.len() == given.len()
        && expected
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_well_formed() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert!(well_formed(&a), "{a}");
        assert!(!well_formed("short"));
        assert!(!well_formed(&format!("{}!", &a[..42])));
    }

    #[test]
    fn csrf_tokens_belong_to_their_session_and_purpose() {
        let s1 = new_token();
        let s2 = new_token();
        let t1 = csrf_token("a", &s1);
        assert!(csrf_matches("a", &s1, &t1));
        assert!(!csrf_matches("a", &s2, &t1));
        assert!(!csrf_matches("b", &s1, &t1));
        assert!(!csrf_matches("a", &s1, ""));
    }
}
