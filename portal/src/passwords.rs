//! Passwords people choose (site owners): PBKDF2-HMAC-SHA256 with a random 16-byte salt, stored as
//! `pbkdf2-sha256$<iterations>$<salt>$<hash>` (salt and hash base64 without padding), so the cost can rise
//! later without invalidating stored hashes. Comparison is constant-time. Hashing is deliberately slow: call
//! it off the async runtime (`spawn_blocking`).

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use rand::RngCore;

/// OWASP's 2023 recommendation for PBKDF2-HMAC-SHA256.
pub const DEFAULT_ITERATIONS: u32 = 600_000;
/// The lowest cost [`hash`] accepts (tests lower the cost to this).
pub const MIN_ITERATIONS: u32 = 1_000;

const SCHEME: &str = "pbkdf2-sha256";
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;

/// The stored form of `password` (at least [`MIN_ITERATIONS`] iterations).
pub fn hash(password: &str, iterations: u32) -> String {
    let iterations = iterations.max(MIN_ITERATIONS);
    let mut salt = [0u8; SALT_LEN];
    rand::thread_rng().fill_bytes(&mut salt);
    let derived = derive(password, &salt, iterations);
    format!(
        "{SCHEME}${iterations}${}${}",
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(derived)
    )
}

/// Whether `password` matches `stored`; a stored value this code cannot read matches nothing.
pub fn verify(password: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some(SCHEME), Some(iterations), Some(salt), Some(expected), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Ok(iterations), Ok(salt), Ok(expected)) = (
        iterations.parse::<u32>(),
        STANDARD_NO_PAD.decode(salt),
        STANDARD_NO_PAD.decode(expected),
    ) else {
        return false;
    };
    if iterations == 0 || expected.len() != HASH_LEN {
        return false;
    }
    let derived = derive(password, &salt, iterations);
    derived
        .iter()
        .zip(expected.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// Spends about the time of one [`verify`] against a hash of `iterations`, matching nothing: used when
/// the account does not exist, so timing does not tell which emails have one.
pub fn waste_time(password: &str, iterations: u32) {
    let _ = derive(password, &[0u8; SALT_LEN], iterations.max(MIN_ITERATIONS));
}

/// A sign-in's password check, off the async runtime: whether `password` matches the account's `stored`
/// hash; without an account, the same work is spent ([`waste_time`] at `iterations`) and the answer is
/// `false`, so an unknown account and a wrong password take as long. Errs only when the blocking task fails.
pub async fn check_sign_in(
    password: &str,
    stored: Option<String>,
    iterations: u32,
) -> Result<bool, tokio::task::JoinError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || match stored {
        Some(stored) => verify(&password, &stored),
        None => {
            waste_time(&password, iterations);
            false
        }
    })
    .await
}

fn derive(password: &str, salt: &[u8], iterations: u32) -> [u8; HASH_LEN] {
    let mut out = [0u8; HASH_LEN];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), salt, iterations, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let stored = hash("correct horse battery", MIN_ITERATIONS);
        assert!(stored.starts_with("pbkdf2-sha256$1000$"), "{stored}");
        assert!(verify("correct horse battery", &stored));
        assert!(!verify("correct horse batterY", &stored));
        assert!(!verify("", &stored));
    }

    #[test]
    fn the_same_password_hashes_differently_each_time() {
        assert_ne!(
            hash("same password", MIN_ITERATIONS),
            hash("same password", MIN_ITERATIONS)
        );
    }

    #[test]
    fn unreadable_stored_values_match_nothing() {
        for stored in [
            "",
            "plain",
            "pbkdf2-sha256$x$AAAA$AAAA",
            "pbkdf2-sha256$0$AAAA$AAAA",
            "pbkdf2-sha512$1000$AAAA$AAAA",
            "pbkdf2-sha256$1000$!!$AAAA",
            "pbkdf2-sha256$1000$AAAA$AAAA$extra",
        ] {
            assert!(!verify("anything", stored), "{stored}");
        }
    }

    #[test]
    fn the_cost_never_drops_below_the_minimum() {
        assert!(hash("pw-pw-pw-pw", 1).starts_with("pbkdf2-sha256$1000$"));
    }
}
