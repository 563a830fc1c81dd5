//! Password hashing: argon2id with OWASP's recommended parameters (19 MiB,
//! two passes, one lane), each hash on a blocking thread, a few at a time
//! (each takes 19 MiB and tens of milliseconds of a core: a flood of
//! sign-ins must queue, not exhaust memory).
//!
//! Checking a sign-in for an unknown address verifies the password against
//! a hash of a random secret made at start-up: the same work as a wrong
//! password, so the answer's timing does not tell whether an account exists.

use std::sync::Arc;

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng},
};
use tokio::sync::Semaphore;

/// OWASP Password Storage Cheat Sheet: argon2id, m=19456 KiB, t=2, p=1.
const MEMORY_KIB: u32 = 19_456;
const PASSES: u32 = 2;
const LANES: u32 = 1;

/// Hashes computed at once, at most.
const AT_ONCE: usize = 4;

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("password hashing was interrupted")]
    Interrupted,
}

/// The server's password hasher; cheap to clone.
#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    /// Verified against when there is no account (see the module's doc).
    decoy: Arc<String>,
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None).expect("OWASP's parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_now(password: &[u8]) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Hash(e.to_string()))
}

/// Whether `password` matches `stored` (a PHC string; its own parameters
/// are used, so hashes made under older parameters still verify).
fn verify_now(password: &[u8], stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|parsed| argon2().verify_password(password, &parsed).is_ok())
}

impl Passwords {
    pub fn new() -> Result<Self, HashError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| HashError::Hash(e.to_string()))?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(AT_ONCE)),
            decoy: Arc::new(hash_now(&secret)?),
        })
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, HashError> {
        let _permit = self.permits.acquire().await.map_err(|_| HashError::Interrupted)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| HashError::Interrupted)
    }

    /// The PHC string to store for `password`.
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let password = password.as_bytes().to_vec();
        self.run(move || hash_now(&password)).await?
    }

    /// Whether `password` matches `stored`; with no stored hash (no such
    /// account), false after the same work.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> Result<bool, HashError> {
        let password = password.as_bytes().to_vec();
        let (against, real) = match stored {
            Some(s) => (s.to_owned(), true),
            None => (self.decoy.as_str().to_owned(), false),
        };
        let matched = self.run(move || verify_now(&password, &against)).await?;
        Ok(matched && real)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only_and_carries_owasp_parameters() {
        let p = Passwords::new().unwrap();
        let stored = p.hash("lantern orbit mango seventy").await.unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
        assert!(p.verify("lantern orbit mango seventy", Some(&stored)).await.unwrap());
        assert!(!p.verify("lantern orbit mango sixty", Some(&stored)).await.unwrap());
        assert!(!p.verify("anything", None).await.unwrap(), "no account: never a match");
        assert!(!p.verify("x", Some("not a hash")).await.unwrap());
    }
}
