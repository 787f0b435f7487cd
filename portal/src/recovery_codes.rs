//! Recovery codes: the one-time codes a person keeps for when the authenticator app is lost. Ten random
//! codes of 10 characters (50 bits each), shown once as `xxxxx-xxxxx`, stored only as SHA-256 of their
//! normalized form. Pure: the store keeps the hashes and marks a code used.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Codes per batch.
pub const COUNT: usize = 10;
/// Characters per code (without the dash).
pub const CODE_CHARS: usize = 10;

/// Crockford's base32 alphabet, lower-case: 32 symbols (5 bits each) without `i`, `l`, `o` and `u`, so no
/// two look alike. On input, `o` is read as `0` and `i`/`l` as `1` (see [`normalize`]).
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// [`COUNT`] fresh codes, each [`CODE_CHARS`] characters from an unambiguous alphabet shown as
/// `xxxxx-xxxxx`; the person sees them once, the store keeps [`hash`] of each.
pub fn generate() -> Vec<String> {
    let mut rng = rand::rngs::OsRng;
    let mut codes: Vec<String> = Vec::with_capacity(COUNT);
    while codes.len() < COUNT {
        let mut code = String::with_capacity(CODE_CHARS + 1);
        for i in 0..CODE_CHARS {
            if i == CODE_CHARS / 2 {
                code.push('-');
            }
            // 32 divides 2^32, so the modulo is unbiased.
            let index = (rng.next_u32() % 32) as usize;
            code.push(char::from(ALPHABET[index]));
        }
        // 50 random bits make a repeat all but impossible; still, a batch never holds one twice.
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    codes
}

/// How a code is stored: the hex SHA-256 of its normalized form ([`normalize`]: lower-case, dashes and
/// spaces removed, look-alikes folded). Codes are random (50 bits), so a fast hash is fine.
pub fn hash(code: &str) -> String {
    hex::encode(Sha256::digest(normalize(code).as_bytes()))
}

/// Whether `given` looks like a recovery code (so the sign-in form can take either a TOTP code or a
/// recovery code in one field): [`CODE_CHARS`] characters of the alphabet once normalized.
pub fn looks_like(given: &str) -> bool {
    let n = normalize(given);
    n.len() == CODE_CHARS && n.bytes().all(|b| ALPHABET.contains(&b))
}

/// The form that is hashed: lower-case, without dashes or white space, with `o` read as `0` and `i`/`l`
/// as `1` (the alphabet has neither, so a misread code still works).
pub fn normalize(code: &str) -> String {
    code.chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| match c.to_ascii_lowercase() {
            'o' => '0',
            'i' | 'l' => '1',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_has_ten_distinct_codes_of_the_documented_shape() {
        let codes = generate();
        assert_eq!(codes.len(), COUNT);
        for code in &codes {
            assert_eq!(code.len(), 11, "{code}");
            let (a, b) = code.split_once('-').unwrap();
            assert_eq!((a.len(), b.len()), (5, 5), "{code}");
            assert!(
                a.bytes().chain(b.bytes()).all(|c| ALPHABET.contains(&c)),
                "{code}"
            );
            assert!(looks_like(code), "{code}");
        }
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), COUNT);
        assert_ne!(codes, generate());
    }

    #[test]
    fn the_alphabet_has_32_distinct_unambiguous_symbols() {
        let mut symbols = ALPHABET.to_vec();
        symbols.sort_unstable();
        symbols.dedup();
        assert_eq!(symbols.len(), 32); // 5 bits per character, 50 per code
        for ambiguous in [b'i', b'l', b'o', b'u'] {
            assert!(!ALPHABET.contains(&ambiguous));
        }
    }

    #[test]
    fn every_symbol_turns_up() {
        // A broken index (e.g. `% 16`) would leave half the alphabet unused.
        let seen: std::collections::HashSet<char> = (0..20)
            .flat_map(|_| generate())
            .flat_map(|c| c.chars().collect::<Vec<_>>())
            .filter(|c| *c != '-')
            .collect();
        assert_eq!(seen.len(), 32);
    }

    #[test]
    fn the_hash_is_sha256_hex_of_the_normalized_code() {
        // SHA-256("abcde12345").
        assert_eq!(
            hash("abcde-12345"),
            "a7411a3704a56d0f9319ab779f26e6b14ab739435ecfa99f4b7c8dafb649b7d8"
        );
        for typed in [
            "abcde-12345",
            "ABCDE-12345",
            "abcde12345",
            " abcde 12345 ",
            "abcde-I2345",
            "abcde-l2345",
        ] {
            assert_eq!(hash(typed), hash("abcde-12345"), "{typed:?}");
        }
        assert_eq!(hash("0000o-00000"), hash("00000-00000"));
        assert_ne!(hash("abcde-12345"), hash("abcde-12346"));
    }

    #[test]
    fn looks_like_tells_recovery_codes_from_totp_codes() {
        assert!(looks_like("7k2mx-9qwe4"));
        assert!(looks_like("7K2MX 9QWE4"));
        assert!(looks_like("7k2mx9qwe4"));
        for other in [
            "123456",
            "123 456",
            "",
            "7k2mx-9qwe",
            "7k2mx-9qwe45",
            "7k2mx-9qwu4",
            "7k2mx_9qwe4",
        ] {
            assert!(!looks_like(other), "{other:?}");
        }
    }
}
