//! People's use cases: signing in and out, self-registration, invitations,
//! password resets and second factors. The console's pages call these;
//! `domain::account` holds the rules, `db::accounts` and `db::sessions` the
//! SQL. Links and their e-mails are written in one transaction, the e-mail
//! through the outbox (delivered, retried and dead-lettered like every
//! other notification).

mod links;
mod sign_in;

use sqlx::PgPool;

use crate::auth::password::{HashError, Passwords};
use crate::db::StoreError;

pub use links::{Invitee, LinkError, SELF_REGISTERED, SignUp};
pub use sign_in::{Attempt, CurrentUser, SignInError, SignedIn, actor_of};

/// People's accounts over the database; cheap to clone.
#[derive(Clone)]
pub struct Accounts {
    pool: PgPool,
    passwords: Passwords,
}

/// Why an account operation failed for want of a working store or hasher.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hash(#[from] HashError),
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

impl Accounts {
    pub fn new(pool: PgPool, passwords: Passwords) -> Self {
        Self { pool, passwords }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// A random 256-bit secret as hex (session ids, link secrets, CSRF tokens).
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The stored form of a session id or a link's secret.
pub fn secret_hash(secret: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(secret.as_bytes()).into()
}
