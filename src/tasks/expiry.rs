//! The expiry worker: registrations past `valid_until` (or whose
//! institution's required PSEB registration lapsed) become EXPIRED. Several
//! servers may run it against one database: batches claim rows with SKIP
//! LOCKED.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::watch;

use crate::domain::{calendar, principal::Actor};
use crate::registry::Registry;

/// Registrations expired per transaction.
const BATCH: i64 = 500;

/// What the expiry task did, for metrics.
#[derive(Default)]
pub struct Stats {
    runs: AtomicU64,
    expired: AtomicU64,
}

impl Stats {
    /// Passes run and registrations expired so far.
    pub fn totals(&self) -> (u64, u64) {
        (self.runs.load(Relaxed), self.expired.load(Relaxed))
    }
}

/// Expires due registrations every `every` until `stopping`.
pub async fn run(
    registry: Registry,
    every: Duration,
    stats: std::sync::Arc<Stats>,
    mut stopping: watch::Receiver<bool>,
) {
    let actor = Actor::system("expiry-task");
    loop {
        stats.runs.fetch_add(1, Relaxed);
        loop {
            match registry.expire_due(calendar::today(), BATCH, &actor).await {
                Ok(n) if n > 0 => {
                    stats.expired.fetch_add(n as u64, Relaxed);
                    tracing::info!(expired = n, "registrations expired");
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "expiry pass failed; retrying next interval");
                    break;
                }
            }
            if *stopping.borrow() {
                return;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stopping.changed() => return,
        }
    }
}
