//! Random secrets the portal hands out (agent broker secrets, operator API tokens, agent ids) and how they
//! are stored: only their SHA-256, compared in constant time.

use rand::RngCore;
use sha2::{Digest, Sha256};

use outpost_cloud_link::AgentId;

/// Lowercase RFC 4648 base32 letters and digits, all valid in an agent id.
const ID_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A fresh agent id: `ag-` and 12 random base32 characters (60 bits).
pub fn new_agent_id() -> AgentId {
    let mut rng = rand::thread_rng();
    let mut s = String::from("ag-");
    for _ in 0..12 {
        s.push(ID_ALPHABET[(rng.next_u32() % 32) as usize] as char);
    }
    // Built only from `[a-z2-7]` after a fixed prefix, so it cannot fail to parse (the tests pin it).
    AgentId::parse(&s).expect("ag- plus base32 is always a valid agent id")
}

/// A fresh agent secret: 160 random bits as 40 hex characters.
pub fn new_agent_secret() -> String {
    random_hex(20)
}

/// A fresh operator API token: `opt_` and 256 random bits as hex.
pub fn new_api_token() -> String {
    format!("opt_{}", random_hex(32))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// What is stored for a secret or token: the hex SHA-256 (they are long random strings, so no slow hash
/// is needed).
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` hashes to `stored`, compared in constant time.
pub fn verify(secret: &str, stored: &str) -> bool {
    let computed = hash(secret);
    if computed.len() != stored.len() {
        return false;
    }
    computed
        .bytes()
        .zip(stored.bytes())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_ids_have_the_documented_shape() {
        for _ in 0..100 {
            let id = new_agent_id();
            let s = id.as_str();
            assert!(s.starts_with("ag-") && s.len() == 15, "{s}");
            assert!(s[3..].bytes().all(|b| ID_ALPHABET.contains(&b)));
        }
    }

    #[test]
    fn secrets_are_long_random_and_verify_only_themselves() {
        let a = new_agent_secret();
        let b = new_agent_secret();
        assert_ne!(a, b);
        assert!(a.len() * 4 >= 128);
        let stored = hash(&a);
        assert!(verify(&a, &stored));
        assert!(!verify(&b, &stored));
        assert!(!verify(&a, "short"));
        assert!(new_api_token().starts_with("opt_"));
    }
}
