//! Credentials held in memory, so that checking a bearer token costs a hash
//! and a map lookup, never a query: an unknown, malformed, revoked or expired
//! token is refused from memory. The map follows the `api_tokens` table: a
//! NOTIFY on every change reloads it, and it is reloaded every
//! [`RELOAD_INTERVAL`] regardless, so a revocation reaches every replica
//! within that even if a notification is lost. When reloads keep failing for
//! longer than the configured staleness, authenticated calls are refused
//! (better unavailable than honouring a revoked token).

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU32, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use crate::clock::Clock;
use crate::db::{StoreError, notify, tokens};
use crate::domain::principal::Principal;

/// The channel the api_tokens trigger notifies.
pub const TOKENS_CHANNEL: &str = "vpnregistry_tokens";
/// How often credentials are reloaded even without a notification: the
/// bound on how late a revocation takes effect when a NOTIFY is lost.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// How often last-use times are written back (never a write per call).
const LAST_USE_FLUSH_INTERVAL: Duration = Duration::from_secs(30);

type Hash = [u8; 32];

/// One active credential.
pub struct Credential {
    pub principal: Arc<Principal>,
    /// Microseconds since the epoch after which the token is refused.
    expire_us: i64,
    /// SHA-256 of the client certificate the token is bound to, if any.
    pub cert_sha256: Option<Hash>,
    /// Last use (microseconds since the epoch), 0 if none since loading.
    last_use_us: AtomicI64,
    /// Calls of this principal in flight; carried over when the credentials
    /// are reloaded, so a reload never resets the principal's cap.
    pub in_flight: Arc<AtomicU32>,
}

impl Credential {
    pub fn is_expired(&self, now_us: i64) -> bool {
        now_us >= self.expire_us
    }

    /// A credential of `principal` that never expires, unbound.
    #[cfg(test)]
    pub(crate) fn for_tests(principal: Principal) -> Self {
        Self {
            principal: Arc::new(principal),
            expire_us: i64::MAX,
            cert_sha256: None,
            last_use_us: AtomicI64::new(0),
            in_flight: Arc::default(),
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Unknown, revoked or expired (the caller learns no more than that).
    Unknown,
    /// The credential set could not be refreshed for too long.
    Stale,
}

/// The active credentials of this process.
pub struct Credentials {
    /// Where credentials are read (a standby will do).
    pool: PgPool,
    /// Where last-use times are written (the primary).
    writes: PgPool,
    /// Swapped whole on reload: every call reads it, and a read takes no
    /// lock another core's read would contend on.
    known: ArcSwap<HashMap<Hash, Arc<Credential>>>,
    /// When the set was last read successfully (real microseconds since
    /// the epoch): an atomic, as every call reads it.
    refreshed_us: AtomicI64,
    max_staleness: Duration,
    /// What expiry is judged by.
    clock: Clock,
}

impl Credentials {
    /// Loads every active credential from `pool`; fails when the database
    /// does not answer. Last-use times are written to `writes`.
    pub async fn load(
        pool: PgPool,
        writes: PgPool,
        max_staleness: Duration,
        clock: Clock,
    ) -> Result<Arc<Self>, StoreError> {
        let this = Arc::new(Self {
            pool,
            writes,
            known: ArcSwap::default(),
            refreshed_us: AtomicI64::new(clock.read().0),
            max_staleness,
            clock,
        });
        this.reload().await?;
        Ok(this)
    }

    async fn reload(&self) -> Result<(), StoreError> {
        let rows = tokens::all_active(&self.pool).await?;
        let mut fresh = HashMap::with_capacity(rows.len());
        {
            // Carry the last-use times over (they are flushed periodically)
            // and the calls in flight.
            let old = self.known.load();
            let carried: HashMap<Uuid, (i64, Arc<AtomicU32>)> = old
                .values()
                .map(|c| {
                    let last_use = c.last_use_us.load(Ordering::Relaxed);
                    (c.principal.id, (last_use, c.in_flight.clone()))
                })
                .collect();
            for row in rows {
                let (last_use, in_flight) = carried.get(&row.principal.id).cloned().unwrap_or_default();
                fresh.insert(
                    row.hash,
                    Arc::new(Credential {
                        principal: Arc::new(row.principal),
                        expire_us: (row.expire_time.unix_timestamp_nanos() / 1000) as i64,
                        cert_sha256: row.cert_sha256,
                        last_use_us: AtomicI64::new(last_use),
                        in_flight,
                    }),
                );
            }
        }
        self.known.store(Arc::new(fresh));
        self.refreshed_us.store(self.clock.read().0, Ordering::Relaxed);
        Ok(())
    }

    /// The credential behind a token hash, if it is active and not expired;
    /// marks it used.
    pub fn check(&self, hash: &Hash) -> Result<Arc<Credential>, Refused> {
        let (real, now) = self.clock.read();
        let staleness = real - self.refreshed_us.load(Ordering::Relaxed);
        if staleness > i64::try_from(self.max_staleness.as_micros()).unwrap_or(i64::MAX) {
            return Err(Refused::Stale);
        }
        let found = self
            .known
            .load()
            .get(hash)
            .filter(|c| !c.is_expired(now))
            .cloned()
            .ok_or(Refused::Unknown)?;
        // Written at most once a second: a store per call would move the
        // line between cores on every call of a busy principal.
        if now - found.last_use_us.load(Ordering::Relaxed) > 1_000_000 {
            found.last_use_us.store(now, Ordering::Relaxed);
        }
        Ok(found)
    }

    /// How many credentials are held.
    pub fn len(&self) -> usize {
        self.known.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reloads on every change notification and every `interval`, and writes
    /// last-use times back now and then, until `stopping`.
    pub async fn follow(
        self: Arc<Self>,
        following: notify::Following,
        interval: Duration,
        stopping: watch::Receiver<bool>,
    ) {
        let flusher = tokio::spawn(self.clone().flush_last_use(stopping.clone()));
        notify::follow(&self.pool, TOKENS_CHANNEL, following, interval, stopping, || async {
            if let Err(e) = self.reload().await {
                tracing::warn!(error = %e, "credential reload failed");
            }
        })
        .await;
        let _ = flusher.await;
    }

    async fn flush_last_use(self: Arc<Self>, mut stopping: watch::Receiver<bool>) {
        let mut flushed: HashMap<Uuid, i64> = HashMap::new();
        loop {
            let stop = tokio::select! {
                () = tokio::time::sleep(LAST_USE_FLUSH_INTERVAL) => false,
                _ = stopping.changed() => true,
            };
            let used: Vec<(Uuid, i64)> = self
                .known
                .load()
                .values()
                .map(|c| (c.principal.id, c.last_use_us.load(Ordering::Relaxed)))
                .filter(|(id, at)| *at > 0 && flushed.get(id) != Some(at))
                .collect();
            if !used.is_empty() {
                match tokens::record_last_use(&self.writes, &used).await {
                    Ok(()) => flushed.extend(used),
                    Err(e) => tracing::warn!(error = %e, "writing token last-use times failed"),
                }
            }
            if stop {
                return;
            }
        }
    }
}
