//! Bearer tokens: 256 random bits, shown once, stored only as SHA-256.

use sha2::{Digest, Sha256};

/// Every token starts with this, so leaked tokens are easy to grep for.
const PREFIX: &str = "vpr_";

/// A fresh token and the hash to store for it.
pub fn generate() -> Result<(String, [u8; 32]), getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let mut token = String::with_capacity(PREFIX.len() + 64);
    token.push_str(PREFIX);
    for b in bytes {
        token.push_str(&format!("{b:02x}"));
    }
    let hash = hash(&token);
    Ok((token, hash))
}

/// Whether two secrets are equal, in time that does not depend on where
/// they differ (codes, form tokens).
pub fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The stored form of a token.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_distinct_and_hash_to_what_is_returned() {
        let (a, ha) = generate().unwrap();
        let (b, _) = generate().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX) && a.len() == 68);
        assert_eq!(hash(&a), ha);
    }
}
