//! Keeps a replica equal to PostgreSQL's active set: loads it from a
//! consistent read of the active set, then follows the change feed
//! (LISTEN/NOTIFY wakes it, the feed table is the truth, a periodic
//! catch-up covers missed notifications). Also reads the feed for watchers
//! resuming from a serial. The only part of the in-memory tier that talks
//! to PostgreSQL, apart from history (`history`).

use std::{sync::Arc, time::Duration, time::Instant};

use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use super::change::Change;
use super::index::Index;
use super::replica::{Replica, ReplicaSlot};
use super::stored;
use crate::db::{StoreError, feed, notify};

/// Feed rows read per catch-up query.
const CATCH_UP_BATCH: i64 = 10_000;

/// Loads the active set as of the feed's current serial. Watchers more than
/// `backlog` applied batches behind are dropped.
pub async fn load(pool: &PgPool, backlog: usize) -> Result<Arc<Replica>, StoreError> {
    let (session, serial, index) = read_active_set(pool).await?;
    Ok(Replica::new(session, serial, index, backlog, None))
}

/// Loads the replica (retrying until PostgreSQL answers), publishes it in
/// `slot`, and keeps it following the change feed until `stopping`: wakes
/// on NOTIFY, and every `poll` regardless, so a lost notification only
/// delays a change.
pub async fn load_and_follow(
    pool: PgPool,
    slot: ReplicaSlot,
    following: notify::Following,
    poll: Duration,
    backlog: usize,
    stopping: watch::Receiver<bool>,
) {
    let replica = loop {
        match load(&pool, backlog).await {
            Ok(replica) => break replica,
            Err(e) => {
                tracing::warn!(error = %e, "loading the lookup index failed; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let _ = slot.set(replica.clone());
    notify::follow(&pool, feed::CHANNEL, following, poll, stopping, || async {
        if let Err(e) = catch_up(&replica, &pool).await {
            tracing::warn!(error = %e, "feed catch-up failed; retrying");
        }
    })
    .await;
}

/// The feed's session, its serial and the index of the active set at that
/// serial.
async fn read_active_set(pool: &PgPool) -> Result<(Uuid, i64, Index), StoreError> {
    let started = Instant::now();
    let mut index = Index::default();
    let (session, serial) = feed::read_active_set(pool, |row| {
        let (prefix, entry) = stored::entry(row);
        index.insert(prefix, entry);
    })
    .await?;
    tracing::info!(entries = index.len(), serial, elapsed = ?started.elapsed(), "lookup index loaded");
    Ok((session, serial, index))
}

/// Replaces the replica's whole index with a fresh read: the feed started a
/// new session, or the database is behind what was applied here.
async fn reload(replica: &Replica, pool: &PgPool) -> Result<(), StoreError> {
    let (session, serial, fresh) = read_active_set(pool).await?;
    replica.install(session, serial, fresh);
    tracing::warn!(%session, serial, "index reloaded from the database");
    Ok(())
}

/// Applies every feed row committed after the applied serial. Serials are
/// handed out in commit order, so nothing below the last one read can
/// still appear. When the feed has started a new session, is behind the
/// replica, or was pruned past it, reloads instead. Returns how many rows
/// were applied.
async fn catch_up(replica: &Replica, pool: &PgPool) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let feed::Since {
            session,
            last_serial,
            pruned_through,
            rows,
        } = feed::since(pool, replica.serial(), CATCH_UP_BATCH).await?;
        replica.set_pruned_through(pruned_through);
        let applied = replica.serial();
        if session != replica.session_id() {
            reload(replica, pool).await?;
            return Ok(total);
        }
        if last_serial < applied {
            // Restored from a backup, or a standby promoted without our
            // last commits: serials above the database's may be handed
            // out again for other changes. Not trusted, not resumed from.
            tracing::error!(
                database = last_serial,
                applied,
                "the database is behind this replica (restored or failed over); reloading"
            );
            replica.forget(session, last_serial, applied);
            reload(replica, pool).await?;
            return Ok(total);
        }
        if applied < pruned_through {
            // Behind what the feed still holds (stopped longer than
            // --feed-retention): the rows in between are gone.
            tracing::warn!(
                applied,
                pruned_through,
                "this replica is behind the pruned feed; reloading"
            );
            reload(replica, pool).await?;
            return Ok(total);
        }
        if rows.is_empty() {
            return Ok(total);
        }
        let full_batch = rows.len() as i64 == CATCH_UP_BATCH;
        total += rows.len();
        replica.apply(rows.into_iter().map(stored::change).collect());
        if !full_batch {
            return Ok(total);
        }
    }
}

/// What the feed table can replay to a watcher resuming after a serial.
pub enum Replay {
    /// Up to the limit asked for, in serial order (empty: nothing after).
    Changes(Vec<Change>),
    /// The feed started another session: the watcher must start over.
    NewSession,
    /// Changes after the serial were pruned: the watcher must start over.
    Pruned,
}

/// At most `limit` changes of `session` after `serial`, from the feed table.
pub async fn replay(pool: &PgPool, session: Uuid, serial: i64, limit: i64) -> Result<Replay, StoreError> {
    let feed = feed::since(pool, serial, limit).await?;
    Ok(if feed.session != session {
        Replay::NewSession
    } else if serial < feed.pruned_through {
        Replay::Pruned
    } else {
        Replay::Changes(feed.rows.into_iter().map(stored::change).collect())
    })
}
