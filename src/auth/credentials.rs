//! Credentials held in memory, so that checking a bearer token costs a hash
//! and a map lookup, not a query. The map follows the `api_tokens` table: a
//! NOTIFY on every change reloads it, a periodic reload covers a lost
//! notification, and an unknown token is looked up once (it may have just
//! been issued) before it is refused.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use sqlx::PgPool;
use tokio::sync::watch;

use crate::db::{StoreError, notify, tokens};
use crate::domain::principal::Principal;

/// The channel the api_tokens trigger notifies.
pub const TOKENS_CHANNEL: &str = "vpnregistry_tokens";
/// How long an unknown token is refused without asking the database again.
const NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// Remembered unknown tokens at most (then the memory is cleared).
const NEGATIVE_MAX: usize = 10_000;

type Hash = [u8; 32];

/// The active credentials of this process.
pub struct Credentials {
    pool: PgPool,
    known: RwLock<HashMap<Hash, Arc<Principal>>>,
    unknown: RwLock<HashMap<Hash, Instant>>,
}

impl Credentials {
    /// Loads every unrevoked credential.
    pub async fn load(pool: PgPool) -> Result<Arc<Self>, StoreError> {
        let this = Arc::new(Self {
            pool,
            known: RwLock::default(),
            unknown: RwLock::default(),
        });
        this.reload().await?;
        Ok(this)
    }

    async fn reload(&self) -> Result<(), StoreError> {
        let all: HashMap<Hash, Arc<Principal>> = tokens::all_active(&self.pool)
            .await?
            .into_iter()
            .map(|(h, p)| (h, Arc::new(p)))
            .collect();
        *self.known.write().unwrap_or_else(|e| e.into_inner()) = all;
        self.unknown.write().unwrap_or_else(|e| e.into_inner()).clear();
        Ok(())
    }

    /// The principal behind a token hash, if it is active.
    pub async fn principal(&self, hash: &Hash) -> Result<Option<Arc<Principal>>, StoreError> {
        if let Some(p) = self.known.read().unwrap_or_else(|e| e.into_inner()).get(hash) {
            return Ok(Some(p.clone()));
        }
        let recently_unknown = self
            .unknown
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(hash)
            .is_some_and(|at| at.elapsed() < NEGATIVE_TTL);
        if recently_unknown {
            return Ok(None);
        }
        match tokens::find_active(&self.pool, hash).await? {
            Some(p) => {
                let p = Arc::new(p);
                self.known
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(*hash, p.clone());
                Ok(Some(p))
            }
            None => {
                let mut unknown = self.unknown.write().unwrap_or_else(|e| e.into_inner());
                if unknown.len() >= NEGATIVE_MAX {
                    unknown.clear();
                }
                unknown.insert(*hash, Instant::now());
                Ok(None)
            }
        }
    }

    /// Reloads on every change notification and every `interval`, until `stopping`.
    pub async fn follow(self: Arc<Self>, interval: Duration, stopping: watch::Receiver<bool>) {
        notify::follow(&self.pool, TOKENS_CHANNEL, interval, stopping, || async {
            if let Err(e) = self.reload().await {
                tracing::warn!(error = %e, "credential reload failed");
            }
        })
        .await;
    }
}
