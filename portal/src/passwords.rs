//! Passwords people choose: hashing, checking and the policy for new ones.
//!
//! Accounts use Argon2id ([`hash_argon2`], [`verify_any`], [`needs_rehash`], [`check_password`]) stored as a
//! PHC string `$argon2id$v=19$m=..,t=..,p=..$<salt>$<hash>`; [`check_new_password`] is the policy for a new
//! password (length and a zxcvbn score).
//!
//! Legacy (site owners' accounts from before they moved to Argon2id): PBKDF2-HMAC-SHA256 with a random
//! 16-byte salt, stored as `pbkdf2-sha256$<iterations>$<salt>$<hash>` (salt and hash base64 without
//! padding); [`verify_any`] still reads these and [`needs_rehash`] flags them, so an owner's next sign-in
//! replaces the value with an Argon2id one. Comparison is constant-time. Hashing is deliberately slow: call
//! it off the async runtime (`spawn_blocking`, as [`check_password`] does).

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use rand::RngCore;

/// The lowest cost [`hash`] accepts.
pub const MIN_ITERATIONS: u32 = 1_000;

const SCHEME: &str = "pbkdf2-sha256";
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;

/// The legacy stored form of `password` (at least [`MIN_ITERATIONS`] iterations). Nothing stores new
/// hashes this way any more; tests use it to make the values older owner accounts still hold.
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

fn derive(password: &str, salt: &[u8], iterations: u32) -> [u8; HASH_LEN] {
    let mut out = [0u8; HASH_LEN];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), salt, iterations, &mut out);
    out
}

// ---------------------------------------------------------------------------------------------------------
// Argon2id (accounts)
// ---------------------------------------------------------------------------------------------------------

/// The fewest characters a new password may have.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// The most characters a new password may have (long enough for any passphrase or password manager).
pub const MAX_PASSWORD_CHARS: usize = 256;
/// The lowest zxcvbn score (0..=4) a new password must reach.
const MIN_SCORE: u8 = 3;

/// Argon2id hash length in bytes (argon2's default).
const ARGON2_OUTPUT_LEN: usize = 32;
/// Stored values asking for more memory than this (1 GiB) are treated as unreadable rather than run: a
/// corrupted row must not make one sign-in allocate the machine's memory.
const MAX_STORED_MEMORY_KIB: u32 = 1024 * 1024;
/// The salt of the dummy hash [`check_password`] verifies against when the account does not exist.
const DUMMY_SALT: [u8; SALT_LEN] = *b"outpost-no-user!";

/// Argon2id cost. Default = OWASP's (m = 19456 KiB, t = 2, p = 1). [`PasswordCost::for_tests`] = the cheapest
/// argon2 accepts (m = 8 KiB, t = 1, p = 1) so tests stay fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordCost {
    /// Memory in KiB (argon2's `m`).
    pub memory_kib: u32,
    /// Passes over the memory (argon2's `t`).
    pub iterations: u32,
    /// Lanes (argon2's `p`).
    pub parallelism: u32,
}

impl Default for PasswordCost {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl PasswordCost {
    /// The cheapest cost argon2 accepts; for tests only.
    pub fn for_tests() -> Self {
        Self {
            memory_kib: argon2::Params::MIN_M_COST,
            iterations: argon2::Params::MIN_T_COST,
            parallelism: argon2::Params::MIN_P_COST,
        }
    }

    fn argon2(self) -> Result<argon2::Argon2<'static>, PasswordError> {
        let params = argon2::Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(ARGON2_OUTPUT_LEN),
        )
        .map_err(|e| PasswordError::InvalidCost(e.to_string()))?;
        Ok(argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
    }
}

/// Why a password could not be hashed or checked (never because it was wrong: that is `false`).
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The configured Argon2 cost is outside what argon2 accepts.
    #[error("the password hashing cost is invalid ({0}); fix the portal's Argon2 settings")]
    InvalidCost(String),
    /// Argon2 itself failed (e.g. it could not get its memory).
    #[error("the password could not be hashed ({0}); try again, and if it keeps failing check the portal's free memory")]
    Hashing(String),
    /// The blocking task that hashes was cancelled or panicked.
    #[error("the password check did not finish ({0}); try again")]
    TaskFailed(String),
}

/// A PHC string `$argon2id$v=19$m=..,t=..,p=..$salt$hash` with a random 16-byte salt. Slow on purpose: call
/// it off the async runtime.
pub fn hash_argon2(password: &str, cost: PasswordCost) -> Result<String, PasswordError> {
    use argon2::PasswordHasher;
    let argon2 = cost.argon2()?;
    let mut salt = [0u8; SALT_LEN];
    rand::thread_rng().fill_bytes(&mut salt);
    let hashed = argon2
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|e| {
            tracing::warn!(error = %e, "argon2 hashing failed");
            PasswordError::Hashing(e.to_string())
        })?;
    Ok(hashed.to_string())
}

/// Whether `password` matches `stored`, which is an argon2id PHC string or a legacy `pbkdf2-sha256$...`
/// string ([`verify`]). Unreadable stored values match nothing.
pub fn verify_any(password: &str, stored: &str) -> bool {
    if stored.starts_with(SCHEME) {
        return verify(password, stored);
    }
    let Some((hash, _)) = parse_argon2id(stored) else {
        if !stored.is_empty() {
            tracing::warn!(
                len = stored.len(),
                "stored password hash is in no known format; it matches nothing"
            );
        }
        return false;
    };
    use argon2::PasswordVerifier;
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), &hash)
        .is_ok()
}

/// True for a legacy PBKDF2 value or an argon2 value with other parameters than `cost` (rehash after a
/// successful sign-in). Also true for a value this code cannot read (it never verifies, so it is moot).
pub fn needs_rehash(stored: &str, cost: PasswordCost) -> bool {
    match parse_argon2id(stored) {
        Some((hash, params)) => {
            hash.version != Some(argon2::Version::V0x13.into())
                || params.m_cost() != cost.memory_kib
                || params.t_cost() != cost.iterations
                || params.p_cost() != cost.parallelism
                || hash.hash.as_ref().map(|h| h.len()) != Some(ARGON2_OUTPUT_LEN)
        }
        None => true,
    }
}

/// A sign-in's password check, off the async runtime ([`tokio::task::spawn_blocking`]): whether `password`
/// matches `stored` ([`verify_any`]). With `stored = None` it verifies against a dummy argon2 hash of the
/// same `cost`, so an unknown user costs the same time as a wrong password, and returns `false`.
pub async fn check_password(
    password: &str,
    stored: Option<String>,
    cost: PasswordCost,
) -> Result<bool, PasswordError> {
    // Fail on a bad cost before spending anything, so a misconfiguration is loud rather than "wrong password".
    cost.argon2()?;
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || match stored {
        Some(stored) => verify_any(&password, &stored),
        None => {
            // The dummy's output (all zeros) is not the hash of any password we know of: false.
            let _ = verify_any(&password, &dummy_hash(cost));
            false
        }
    })
    .await
    .map_err(|e| PasswordError::TaskFailed(e.to_string()))
}

/// A readable argon2id PHC string of `cost` that no password matches: verifying against it costs one full
/// argon2 run.
fn dummy_hash(cost: PasswordCost) -> String {
    format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        cost.memory_kib,
        cost.iterations,
        cost.parallelism,
        STANDARD_NO_PAD.encode(DUMMY_SALT),
        STANDARD_NO_PAD.encode([0u8; ARGON2_OUTPUT_LEN]),
    )
}

/// `stored` as an argon2id PHC string with a salt, a hash and a sane memory cost, or `None`.
fn parse_argon2id(stored: &str) -> Option<(argon2::PasswordHash, argon2::Params)> {
    if !stored.starts_with("$argon2id$") {
        return None;
    }
    let hash = argon2::PasswordHash::new(stored).ok()?;
    if hash.algorithm != argon2::ARGON2ID_IDENT || hash.salt.is_none() || hash.hash.is_none() {
        return None;
    }
    let params = argon2::Params::try_from(&hash).ok()?;
    if params.m_cost() > MAX_STORED_MEMORY_KIB {
        return None;
    }
    Some((hash, params))
}

// ---------------------------------------------------------------------------------------------------------
// Policy for new passwords
// ---------------------------------------------------------------------------------------------------------

/// How strong an accepted password is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Strength {
    /// zxcvbn's score, 0..=4 (accepted passwords have at least 3).
    pub score: u8,
    /// zxcvbn's hints, if it had any (usually none for an accepted password).
    pub feedback: Vec<String>,
}

/// Why a new password is refused; the message says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    /// Fewer than [`MIN_PASSWORD_CHARS`] characters.
    #[error("the password has {got} characters; use at least {min} (a few unrelated words are long and easy to remember)")]
    TooShort { min: usize, got: usize },
    /// More than [`MAX_PASSWORD_CHARS`] characters.
    #[error("the password is longer than {max} characters; use a shorter one")]
    TooLong { max: usize },
    /// zxcvbn scores it below 3 of 4.
    #[error(
        "the password is too easy to guess (strength {score} of 4, at least 3 needed). {advice}"
    )]
    TooGuessable { score: u8, advice: String },
}

/// The policy for a new password: at least [`MIN_PASSWORD_CHARS`] characters, at most
/// [`MAX_PASSWORD_CHARS`]; a zxcvbn score of at least 3 (of 4), computed with `user_inputs` (email, username,
/// company name, and the words they are made of) so a password made of them scores low. The error says
/// what is wrong and what to do, using zxcvbn's warning and suggestions when it has some.
pub fn check_new_password(password: &str, user_inputs: &[&str]) -> Result<Strength, WeakPassword> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(WeakPassword::TooShort {
            min: MIN_PASSWORD_CHARS,
            got: chars,
        });
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(WeakPassword::TooLong {
            max: MAX_PASSWORD_CHARS,
        });
    }
    let words = user_words(user_inputs);
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let entropy = zxcvbn::zxcvbn(password, &words);
    let score = u8::from(entropy.score());
    let mut feedback = Vec::new();
    if let Some(fb) = entropy.feedback() {
        feedback.extend(fb.warning().map(|w| w.to_string()));
        feedback.extend(fb.suggestions().iter().map(ToString::to_string));
    }
    if score < MIN_SCORE {
        let advice = if feedback.is_empty() {
            "Add another word or two; uncommon words are better.".to_owned()
        } else {
            feedback.join(" ")
        };
        return Err(WeakPassword::TooGuessable { score, advice });
    }
    Ok(Strength { score, feedback })
}

/// Each user input, lower-cased, plus the words it is made of (an email's local part and domain labels, a
/// company name's words), so "acme" counts as a guessable word when the company is "Acme Widgets Ltd".
fn user_words(user_inputs: &[&str]) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    let mut push = |w: &str| {
        let w = w.trim().to_lowercase();
        if w.chars().count() >= 3 && !words.contains(&w) {
            words.push(w);
        }
    };
    for input in user_inputs {
        push(input);
        for part in input.split(|c: char| !c.is_alphanumeric()) {
            push(part);
        }
    }
    words
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

    // --- Argon2id ---

    #[test]
    fn the_default_cost_is_owasps_and_the_test_cost_the_cheapest() {
        let d = PasswordCost::default();
        assert_eq!((d.memory_kib, d.iterations, d.parallelism), (19456, 2, 1));
        let t = PasswordCost::for_tests();
        assert_eq!((t.memory_kib, t.iterations, t.parallelism), (8, 1, 1));
    }

    #[test]
    fn an_argon2_hash_is_a_phc_string_that_verifies_its_password_only() {
        let cost = PasswordCost::for_tests();
        let stored = hash_argon2("correct horse battery staple", cost).unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=8,t=1,p=1$"),
            "{stored}"
        );
        assert_eq!(stored.split('$').count(), 6, "{stored}");
        assert!(verify_any("correct horse battery staple", &stored));
        assert!(!verify_any("correct horse battery staplE", &stored));
        assert!(!verify_any("", &stored));
        assert_ne!(
            stored,
            hash_argon2("correct horse battery staple", cost).unwrap()
        );
    }

    #[test]
    fn an_argon2_hash_matches_a_reference_value() {
        // A known answer: the same password, salt and cost through the argon2 crate's low-level API; our PHC
        // string must carry exactly that output.
        use argon2::PasswordHasher;
        let cost = PasswordCost::for_tests();
        let salt = *b"0123456789abcdef";
        let phc = cost
            .argon2()
            .unwrap()
            .hash_password_with_salt(b"pw", &salt)
            .unwrap()
            .to_string();
        let mut raw = [0u8; 32];
        argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(8, 1, 1, Some(32)).unwrap(),
        )
        .hash_password_into(b"pw", &salt, &mut raw)
        .unwrap();
        assert!(phc.ends_with(&STANDARD_NO_PAD.encode(raw)), "{phc}");
        assert!(verify_any("pw", &phc));
    }

    #[test]
    fn verify_any_still_reads_legacy_pbkdf2_values() {
        let legacy = hash("old site owner password", MIN_ITERATIONS);
        assert!(verify_any("old site owner password", &legacy));
        assert!(!verify_any("old site owner passwore", &legacy));
    }

    #[test]
    fn unreadable_or_foreign_values_match_nothing_in_verify_any() {
        let good = hash_argon2("pw-pw-pw-pw", PasswordCost::for_tests()).unwrap();
        let argon2i = good.replacen("$argon2id$", "$argon2i$", 1);
        let no_hash = good.rsplit_once('$').unwrap().0.to_owned();
        let huge = good.replacen("m=8,", "m=4000000000,", 1);
        for stored in [
            "",
            "plain",
            "$argon2id$",
            "$argon2id$v=19$m=8,t=1,p=1$$",
            "$argon2id$v=19$m=8,t=1,p=1$!!!!$!!!!",
            "$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            argon2i.as_str(),
            no_hash.as_str(),
            huge.as_str(),
            "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E",
        ] {
            assert!(!verify_any("pw-pw-pw-pw", stored), "{stored}");
        }
    }

    #[test]
    fn needs_rehash_flags_legacy_values_and_other_costs_only() {
        let cost = PasswordCost::for_tests();
        let current = hash_argon2("pw-pw-pw-pw", cost).unwrap();
        assert!(!needs_rehash(&current, cost));
        assert!(needs_rehash(&hash("pw-pw-pw-pw", MIN_ITERATIONS), cost));
        let stronger = PasswordCost {
            iterations: 2,
            ..cost
        };
        assert!(needs_rehash(&current, stronger));
        assert!(needs_rehash(
            &current,
            PasswordCost {
                memory_kib: 16,
                ..cost
            }
        ));
        assert!(needs_rehash(
            &current,
            PasswordCost {
                parallelism: 2,
                memory_kib: 16,
                ..cost
            }
        ));
        assert!(needs_rehash(&current.replacen("v=19", "v=16", 1), cost));
        assert!(needs_rehash("garbage", cost));
    }

    #[test]
    fn the_dummy_hash_is_a_readable_hash_of_the_same_cost() {
        // If the dummy were unreadable, an unknown user would skip argon2 and answer faster than a wrong
        // password: the timing would tell which accounts exist.
        for cost in [PasswordCost::for_tests(), PasswordCost::default()] {
            let dummy = dummy_hash(cost);
            assert!(parse_argon2id(&dummy).is_some(), "{dummy}");
            assert!(!needs_rehash(&dummy, cost), "{dummy}");
        }
    }

    #[tokio::test]
    async fn check_password_answers_off_the_runtime() {
        let cost = PasswordCost::for_tests();
        let stored = hash_argon2("a long passphrase", cost).unwrap();
        assert!(
            check_password("a long passphrase", Some(stored.clone()), cost)
                .await
                .unwrap()
        );
        assert!(!check_password("a wrong passphrase", Some(stored), cost)
            .await
            .unwrap());
        assert!(!check_password("a long passphrase", None, cost)
            .await
            .unwrap());
        let legacy = hash("a long passphrase", MIN_ITERATIONS);
        assert!(check_password("a long passphrase", Some(legacy), cost)
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn an_impossible_cost_is_an_error_not_a_wrong_password() {
        let bad = PasswordCost {
            memory_kib: 1,
            iterations: 1,
            parallelism: 1,
        };
        assert!(matches!(
            check_password("pw", None, bad).await,
            Err(PasswordError::InvalidCost(_))
        ));
        assert!(matches!(
            hash_argon2("pw", bad),
            Err(PasswordError::InvalidCost(_))
        ));
    }

    // --- Policy ---

    #[test]
    fn short_and_overlong_passwords_are_refused_with_the_limits() {
        assert_eq!(
            check_new_password("Tr0ub4dor", &[]),
            Err(WeakPassword::TooShort { min: 10, got: 9 })
        );
        // Characters, not bytes: ten 'é' are ten characters.
        assert!(!matches!(
            check_new_password("éééééééééé", &[]),
            Err(WeakPassword::TooShort { .. })
        ));
        let long = "x".repeat(MAX_PASSWORD_CHARS + 1);
        assert_eq!(
            check_new_password(&long, &[]),
            Err(WeakPassword::TooLong { max: 256 })
        );
        let msg = WeakPassword::TooShort { min: 10, got: 9 }.to_string();
        assert!(msg.contains("at least 10"), "{msg}");
    }

    #[test]
    fn common_passwords_are_refused_with_zxcvbns_advice() {
        for weak in ["password123", "qwertyuiop", "1234567890", "aaaaaaaaaaaa"] {
            match check_new_password(weak, &[]) {
                Err(WeakPassword::TooGuessable { score, advice }) => {
                    assert!(score < 3, "{weak}: {score}");
                    assert!(!advice.is_empty(), "{weak}");
                }
                other => panic!("{weak}: {other:?}"),
            }
        }
        let err = check_new_password("password123", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("too easy to guess"), "{err}");
        assert!(err.contains("common password"), "{err}");
    }

    #[test]
    fn a_password_made_of_the_users_own_details_is_refused() {
        let inputs = ["jdoe@northwind-traders.com", "jdoe", "Northwind Traders"];
        let pw = "northwindtraders";
        // Strong enough on its own, too weak once zxcvbn knows who is choosing it.
        assert!(check_new_password("northwindjdoe2", &[]).is_ok());
        assert!(matches!(
            check_new_password("northwindjdoe2", &inputs),
            Err(WeakPassword::TooGuessable { .. })
        ));
        assert!(matches!(
            check_new_password(pw, &inputs),
            Err(WeakPassword::TooGuessable { .. })
        ));
    }

    #[test]
    fn a_long_unusual_passphrase_is_accepted() {
        let s = check_new_password("velvet cactus orbit lantern", &["jdoe@example.com"]).unwrap();
        assert!(s.score >= 3, "{s:?}");
        let s = check_new_password("K8#vq!2mZr@w", &[]).unwrap();
        assert!(s.score >= 3, "{s:?}");
    }
}
