//! Activation codes: generation, parsing and hashing (pure).
//!
//! A code is 11 random Crockford base32 characters (55 bits) and one check character, shown as
//! `ABCD-EFGH-JKMN`. Parsing is case-insensitive, reads `O` as `0` and `I`/`L` as `1`, and ignores dashes
//! and spaces. The check character is a Damm check over GF(32) (`x ∘ y = 2·x + y`, a totally
//! anti-symmetric quasigroup), so every single-character error and every adjacent transposition is caught.
//! Only the SHA-256 of the normalized code is stored.

use rand::Rng;
use sha2::{Digest, Sha256};

/// The Crockford base32 alphabet (no I, L, O, U).
pub const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Random characters in a code.
pub const DATA_LEN: usize = 11;
/// Characters in a normalized code (data and check).
pub const CODE_LEN: usize = DATA_LEN + 1;
// At least 50 bits of entropy, checked at compile time.
const _: () = assert!(DATA_LEN * 5 >= 50);

/// Why a typed code cannot be a code (before looking it up).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedCode {
    #[error("the activation code contains {0:?}, which is not a letter or digit of a code; check for typos")]
    BadCharacter(char),
    #[error("the activation code has {0} characters, a code has {CODE_LEN} (dashes and spaces aside); check that it is complete")]
    BadLength(usize),
    #[error("the activation code's check character does not match; a character is mistyped or two are swapped")]
    BadCheck,
}

/// A well-formed activation code: 12 upper-case Crockford characters including the check character.
#[derive(Clone, PartialEq, Eq)]
pub struct Code(String);

impl std::fmt::Debug for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Codes are secrets until used: never print them in debug output.
        f.write_str("Code(..)")
    }
}

impl Code {
    /// A new random code.
    pub fn generate() -> Self {
        let mut rng = rand::thread_rng();
        let mut values: Vec<u8> = (0..DATA_LEN).map(|_| rng.gen_range(0..32u8)).collect();
        values.push(check_value(&values));
        Self(
            values
                .iter()
                .map(|&v| ALPHABET[v as usize] as char)
                .collect(),
        )
    }

    /// Reads a typed code (see the module docs for what is tolerated).
    pub fn parse(typed: &str) -> Result<Self, MalformedCode> {
        let mut values = Vec::with_capacity(CODE_LEN);
        for c in typed.chars() {
            if c == '-' || c.is_whitespace() {
                continue;
            }
            values.push(char_value(c).ok_or(MalformedCode::BadCharacter(c))?);
        }
        if values.len() != CODE_LEN {
            return Err(MalformedCode::BadLength(values.len()));
        }
        if values.iter().fold(0, |acc, &v| damm_step(acc, v)) != 0 {
            return Err(MalformedCode::BadCheck);
        }
        Ok(Self(
            values
                .iter()
                .map(|&v| ALPHABET[v as usize] as char)
                .collect(),
        ))
    }

    /// The normalized form (12 characters, no dashes).
    pub fn normalized(&self) -> &str {
        &self.0
    }

    /// The form shown to people: `ABCD-EFGH-JKMN`.
    pub fn display(&self) -> String {
        let chunks: Vec<&str> = [0, 4, 8].iter().map(|&i| &self.0[i..i + 4]).collect();
        chunks.join("-")
    }

    /// What is stored: the hex SHA-256 of the normalized code.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

fn char_value(c: char) -> Option<u8> {
    let c = match c.to_ascii_uppercase() {
        'O' => '0',
        'I' | 'L' => '1',
        other => other,
    };
    ALPHABET
        .iter()
        .position(|&a| a as char == c)
        .and_then(|p| u8::try_from(p).ok())
}

/// Multiplication by the generator `x` in GF(32) with the polynomial x⁵ + x² + 1.
fn times_two(v: u8) -> u8 {
    let shifted = v << 1;
    if shifted & 0x20 != 0 {
        shifted ^ 0x25
    } else {
        shifted
    }
}

/// One step of the Damm check: `interim ∘ digit = 2·interim + digit` over GF(32).
fn damm_step(interim: u8, digit: u8) -> u8 {
    times_two(interim) ^ digit
}

/// The check value that brings the running interim back to zero.
fn check_value(values: &[u8]) -> u8 {
    times_two(values.iter().fold(0, |acc, &v| damm_step(acc, v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(values: &[u8]) -> String {
        values
            .iter()
            .map(|&v| ALPHABET[v as usize] as char)
            .collect()
    }

    #[test]
    fn generated_codes_parse_back_and_display_in_groups() {
        for _ in 0..200 {
            let code = Code::generate();
            let shown = code.display();
            assert_eq!(shown.len(), 14);
            assert_eq!(shown.matches('-').count(), 2);
            assert_eq!(Code::parse(&shown).unwrap(), code);
            assert_eq!(Code::parse(code.normalized()).unwrap(), code);
        }
    }

    #[test]
    fn codes_carry_at_least_fifty_bits() {
        let codes: std::collections::HashSet<String> = (0..1000)
            .map(|_| Code::generate().normalized().to_owned())
            .collect();
        assert_eq!(codes.len(), 1000);
    }

    #[test]
    fn typing_is_forgiving() {
        let code = Code::generate();
        let mut sloppy = code.display().to_lowercase().replace('-', " ");
        sloppy = sloppy.replace('0', "o").replace('1', "l");
        assert_eq!(Code::parse(&format!("  {sloppy} ")).unwrap(), code);
        let with_i = code.normalized().replace('1', "I");
        assert_eq!(Code::parse(&with_i).unwrap(), code);
    }

    #[test]
    fn bad_characters_and_lengths_are_named() {
        assert_eq!(
            Code::parse("ABCD-EFGH-JKMU"),
            Err(MalformedCode::BadCharacter('U'))
        );
        assert_eq!(
            Code::parse("ABCD-EF!H-JKMN"),
            Err(MalformedCode::BadCharacter('!'))
        );
        assert_eq!(Code::parse("ABCD-EFGH"), Err(MalformedCode::BadLength(8)));
        assert_eq!(Code::parse(""), Err(MalformedCode::BadLength(0)));
    }

    #[test]
    fn every_single_character_error_is_caught() {
        for _ in 0..50 {
            let code = Code::generate();
            let values: Vec<u8> = code
                .normalized()
                .chars()
                .map(|c| char_value(c).unwrap())
                .collect();
            for pos in 0..CODE_LEN {
                for wrong in 0..32u8 {
                    if wrong == values[pos] {
                        continue;
                    }
                    let mut typo = values.clone();
                    typo[pos] = wrong;
                    assert_eq!(
                        Code::parse(&render(&typo)),
                        Err(MalformedCode::BadCheck),
                        "substitution at {pos} not caught"
                    );
                }
            }
        }
    }

    #[test]
    fn every_adjacent_transposition_is_caught() {
        // Exhaustive over every pair of distinct characters at every position, around random codes.
        for _ in 0..20 {
            let code = Code::generate();
            let values: Vec<u8> = code
                .normalized()
                .chars()
                .map(|c| char_value(c).unwrap())
                .collect();
            for pos in 0..CODE_LEN - 1 {
                for a in 0..32u8 {
                    for b in 0..32u8 {
                        if a == b {
                            continue;
                        }
                        let mut right = values.clone();
                        right[pos] = a;
                        right[pos + 1] = b;
                        // Make `right` valid again by fixing the check character (unless it is in the pair).
                        if pos + 1 < DATA_LEN {
                            right[DATA_LEN] = check_value(&right[..DATA_LEN]);
                        } else {
                            continue;
                        }
                        let mut swapped = right.clone();
                        swapped.swap(pos, pos + 1);
                        assert!(Code::parse(&render(&right)).is_ok());
                        assert_eq!(Code::parse(&render(&swapped)), Err(MalformedCode::BadCheck));
                    }
                }
            }
            // Swapping the last data character with the check character.
            let mut swapped = values.clone();
            if swapped[DATA_LEN - 1] != swapped[DATA_LEN] {
                swapped.swap(DATA_LEN - 1, DATA_LEN);
                assert_eq!(Code::parse(&render(&swapped)), Err(MalformedCode::BadCheck));
            }
        }
    }

    #[test]
    fn the_hash_is_of_the_normalized_code_and_debug_hides_it() {
        let code = Code::generate();
        let again = Code::parse(&code.display().to_lowercase()).unwrap();
        assert_eq!(code.hash(), again.hash());
        assert_eq!(code.hash().len(), 64);
        assert!(!format!("{code:?}").contains(code.normalized()));
    }
}
