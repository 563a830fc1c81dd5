//! A replica of the active set inside one `serve` process: loaded from a
//! consistent snapshot, then kept current from the change feed (LISTEN/NOTIFY
//! wakes it, the feed table is the truth, a periodic catch-up covers missed
//! notifications).

use std::{
    net::IpAddr,
    sync::{
        Arc, RwLock,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use ipnet::IpNet;
use sqlx::PgPool;
use tokio::sync::{Mutex, broadcast, watch};
use uuid::Uuid;

use super::index::{Entry, Filter, Index, Query};
use super::journal::Journal;
use super::watch::View;
use crate::db::{
    StoreError,
    feed::{self, FeedRow, Op},
    notify,
};

/// Feed rows read per catch-up query.
const CATCH_UP_BATCH: i64 = 10_000;
/// Applied batches kept for live watchers by default; a watcher further
/// behind is dropped.
pub const DEFAULT_WATCH_BACKLOG: usize = 1024;

/// One applied change, as watchers receive it.
#[derive(Debug, Clone)]
pub struct Change {
    pub serial: i64,
    pub op: Op,
    pub prefix: IpNet,
    pub entry: Entry,
}

/// Changes applied together, in serial order, as every watcher receives
/// them.
pub struct Batch {
    pub changes: Vec<Change>,
    /// The batch as the transport encodes it, per view that asked: encoded
    /// by the first watcher of a view to send it, shared by the rest.
    encoded: std::sync::Mutex<Vec<(View, Bytes)>>,
}

impl Batch {
    pub fn new(changes: Vec<Change>) -> Self {
        Self {
            changes,
            encoded: std::sync::Mutex::default(),
        }
    }

    /// The encoding of this batch for `view`, made by `encode` the first
    /// time (watchers of the same view asking meanwhile wait for it rather
    /// than encode it again).
    pub fn encoded(&self, view: &View, encode: impl FnOnce() -> Bytes) -> Bytes {
        let mut cache = self.encoded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, bytes)) = cache.iter().find(|(v, _)| v == view) {
            return bytes.clone();
        }
        let bytes = encode();
        cache.push((view.clone(), bytes.clone()));
        bytes
    }
}

/// What watchers are told after each catch-up.
#[derive(Clone)]
pub enum Applied {
    /// These changes, in serial order.
    Changes(Arc<Batch>),
    /// The feed started a new session and the replica reloaded: serials of
    /// the old session mean nothing any more.
    NewSession(Uuid),
}

/// What a check found.
#[derive(Debug, Clone)]
pub struct Match {
    pub prefix: IpNet,
    pub entry: Entry,
}

/// Snapshots this many serials old are still handed out (the watcher then
/// catches up from the feed); an older one is rebuilt.
const SNAPSHOT_REUSE_WITHIN: i64 = 1024;
/// Slots copied per hold of the index lock (a few milliseconds' work).
const SNAPSHOT_COPY_CHUNK: usize = 8192;

/// The active set at one serial, shared read-only by every watcher taking a
/// snapshot while it is recent: built once (not per watcher), freed when the
/// last watcher reading it is done.
pub struct Snapshot {
    pub session: Uuid,
    pub serial: i64,
    pub entries: Vec<(IpNet, Entry)>,
}

/// The active set of this process.
pub struct Replica {
    /// Changed only while `index` is write-locked, so a reader holding the
    /// index lock sees the session its entries belong to.
    session_id: RwLock<Uuid>,
    index: RwLock<Index>,
    /// The snapshot watchers share, while any of them holds it.
    shared_snapshot: Mutex<std::sync::Weak<Snapshot>>,
    /// Serials applied here that the database lost (session, above, up to):
    /// a watcher that saw one must start over.
    forgotten: std::sync::Mutex<Vec<(Uuid, i64, i64)>>,
    applied: watch::Sender<i64>,
    /// Feed rows up to this serial were pruned (as of the last catch-up):
    /// a watcher resuming before it cannot be served from the feed.
    pruned_through: AtomicI64,
    changes: broadcast::Sender<Applied>,
    /// Serialises catch-ups (the follower and explicit calls).
    catching_up: Mutex<()>,
    /// A fan-out replica's recent changes, for resuming watchers (it has no
    /// feed table to read them from).
    journal: Option<std::sync::Mutex<Journal>>,
}

impl Replica {
    /// Loads the active set as of the feed's current serial. Watchers more
    /// than `backlog` applied batches behind are dropped.
    pub async fn load(pool: &PgPool, backlog: usize) -> Result<Arc<Self>, StoreError> {
        let (session_id, serial, index) = read_snapshot(pool).await?;
        Ok(Self::new(session_id, serial, index, backlog, None))
    }

    /// A replica holding `index`, the active set of `session` at `serial`.
    /// With `journal`, it keeps that many recent changes for resuming
    /// watchers (a fan-out replica); without, they read the feed table.
    pub fn new(session: Uuid, serial: i64, index: Index, backlog: usize, journal: Option<usize>) -> Arc<Self> {
        Arc::new(Self {
            session_id: RwLock::new(session),
            applied: watch::channel(serial).0,
            index: RwLock::new(index),
            shared_snapshot: Mutex::default(),
            forgotten: std::sync::Mutex::default(),
            pruned_through: AtomicI64::new(if journal.is_some() { serial } else { 0 }),
            changes: broadcast::channel(backlog.max(1)).0,
            catching_up: Mutex::new(()),
            journal: journal.map(|capacity| std::sync::Mutex::new(Journal::new(capacity, serial))),
        })
    }

    pub fn session_id(&self) -> Uuid {
        *self.session_id.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the whole index with a fresh snapshot: the feed started a new
    /// session, or the database is behind what was applied here.
    async fn reload(&self, pool: &PgPool) -> Result<(), StoreError> {
        let (session_id, serial, fresh) = read_snapshot(pool).await?;
        self.install(session_id, serial, fresh);
        tracing::warn!(%session_id, serial, "index reloaded from the database");
        Ok(())
    }

    /// Replaces the whole index with `fresh`, the active set of `session` at
    /// `serial` (a pointer swap under the lock), and tells watchers to start
    /// over.
    pub fn install(&self, session: Uuid, serial: i64, fresh: Index) {
        let old = {
            let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
            *self.session_id.write().unwrap_or_else(|e| e.into_inner()) = session;
            self.applied.send_replace(serial);
            if let Some(journal) = &self.journal {
                journal.lock().unwrap_or_else(|e| e.into_inner()).restart(serial);
                self.pruned_through.store(serial, Ordering::Relaxed);
            }
            std::mem::replace(&mut *index, fresh)
        };
        // Freed outside the lock: a million entries take a while.
        drop(old);
        let _ = self.changes.send(Applied::NewSession(session));
    }

    /// Applies `changes` (in serial order, after the applied serial) and
    /// hands them to watchers.
    pub fn apply(&self, changes: Vec<Change>) {
        let Some(last) = changes.last().map(|c| c.serial) else {
            return;
        };
        {
            let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
            for c in &changes {
                match c.op {
                    Op::Announce => index.insert(c.prefix, c.entry.clone()),
                    Op::Withdraw => {
                        index.remove(c.prefix, &c.entry.reference);
                    }
                }
            }
            self.applied.send_replace(last);
        }
        if let Some(journal) = &self.journal {
            let mut journal = journal.lock().unwrap_or_else(|e| e.into_inner());
            journal.extend(&changes);
            self.pruned_through
                .store(journal.forgotten_through(), Ordering::Relaxed);
        }
        // Nobody listening is fine.
        let _ = self.changes.send(Applied::Changes(Arc::new(Batch::new(changes))));
    }

    /// Records that serials in `above..=upto` of `session` were applied here
    /// and lost by the source (a restore, a failover): they may name other
    /// changes from now on.
    pub fn forget(&self, session: Uuid, above: i64, upto: i64) {
        self.forgotten
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((session, above, upto));
    }

    /// A fan-out replica's changes after `serial` (at most `limit`); `None`
    /// when it does not hold them all (or keeps no journal).
    pub fn journal_after(&self, serial: i64, limit: usize) -> Option<Vec<Change>> {
        self.journal
            .as_ref()?
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .after(serial, limit)
    }

    /// Whether `serial` of `session` was applied here and then lost by the
    /// database (it may since name another change).
    pub fn forgot(&self, session: Uuid, serial: i64) -> bool {
        self.forgotten
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|&(s, above, upto)| s == session && above < serial && serial <= upto)
    }

    /// Feed rows up to this serial are gone (as last seen).
    pub fn pruned_through(&self) -> i64 {
        self.pruned_through.load(Ordering::Relaxed)
    }

    /// The last feed serial applied here.
    pub fn serial(&self) -> i64 {
        *self.applied.borrow()
    }

    /// Waits until `serial` is applied; false if `timeout` passes first.
    pub async fn wait_for(&self, serial: i64, timeout: Duration) -> bool {
        let mut rx = self.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= serial))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Answers one query, with the serial it was answered at.
    pub fn check(&self, q: &Query) -> (Option<Match>, i64) {
        self.answer(|index| index.lookup(q))
    }

    /// What `find` finds in the index, with the serial it was found at.
    fn answer(&self, find: impl FnOnce(&Index) -> Option<(IpNet, &Entry)>) -> (Option<Match>, i64) {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let serial = self.serial();
        let found = find(&index).map(|(prefix, entry)| Match {
            prefix,
            entry: entry.clone(),
        });
        (found, serial)
    }

    /// The most specific entry covering all of `net` that `filter` accepts,
    /// with the serial it was answered at.
    pub fn check_covering(&self, net: IpNet, filter: &Filter) -> (Option<Match>, i64) {
        self.answer(|index| index.find_covering(net, filter))
    }

    /// Answers many addresses under one read lock and one filter, calling
    /// `out` with each address's position and answer. They are looked up in
    /// address order: neighbouring addresses share the upper trie levels, so
    /// a sorted batch takes fewer cache misses (about a fifth more lookups
    /// per second at a million random prefixes, sorting included).
    pub fn check_batch(
        &self,
        addrs: &[IpAddr],
        filter: &Filter,
        mut out: impl FnMut(usize, Option<(IpNet, &Entry)>),
    ) -> i64 {
        let mut order: Vec<(IpAddr, u32)> = addrs.iter().copied().zip(0..).collect();
        order.sort_unstable_by_key(|(addr, _)| locality_key(*addr));
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let serial = self.serial();
        for (addr, i) in order {
            out(i as usize, index.find(addr, filter));
        }
        serial
    }

    /// Subscribes to applied changes (subscribe before taking a snapshot, so
    /// that nothing after the snapshot is missed).
    pub fn subscribe(&self) -> broadcast::Receiver<Applied> {
        self.changes.subscribe()
    }

    /// A snapshot of the active set for a watcher: the one other watchers
    /// are reading, if it is at most [`SNAPSHOT_REUSE_WITHIN`] serials old,
    /// else a fresh copy (watchers asking meanwhile wait for it: a reconnect
    /// storm builds one, not one each). The copy takes the index lock a
    /// chunk at a time, so neither lookups nor the feed follower wait for
    /// more than one chunk; changes applied meanwhile are replayed onto it
    /// (`lookup::snapshot`). The copying and settling run on the blocking
    /// pool: a million entries are ~100 ms of CPU that would otherwise hold
    /// an async worker (and the lookups queued on it).
    pub async fn snapshot(self: &Arc<Self>) -> Arc<Snapshot> {
        let mut shared = self.shared_snapshot.lock().await;
        if let Some(snapshot) = shared.upgrade()
            && snapshot.session == self.session_id()
            && self.serial() - snapshot.serial <= SNAPSHOT_REUSE_WITHIN
        {
            return snapshot;
        }
        let snapshot = Arc::new(loop {
            if let Some(copied) = self.copy().await {
                break copied;
            }
        });
        *shared = Arc::downgrade(&snapshot);
        snapshot
    }

    /// One attempt at a consistent copy; `None` when the index was replaced
    /// (a reload) or the changes outran the backlog meanwhile.
    async fn copy(self: &Arc<Self>) -> Option<Snapshot> {
        let mut changes = self.subscribe();
        let (session, start) = (self.session_id(), self.serial());
        let this = self.clone();
        let copy = tokio::task::spawn_blocking(move || this.copy_chunks()).await.ok()?;
        let end = self.serial();
        let mut applied = Vec::new();
        let mut seen = start;
        while seen < end {
            match changes.recv().await {
                Ok(Applied::Changes(batch)) => {
                    applied.extend(batch.changes.iter().filter(|c| c.serial > start).cloned());
                    seen = batch.changes.last().map_or(seen, |c| c.serial);
                }
                Ok(Applied::NewSession(_)) | Err(_) => return None,
            }
        }
        if self.session_id() != session {
            return None;
        }
        let entries = tokio::task::spawn_blocking(move || super::snapshot::settle(copy, &applied))
            .await
            .ok()?;
        Some(Snapshot {
            session,
            serial: seen.max(start),
            entries,
        })
    }

    /// Every slot, copied a chunk at a time (the lock released in between).
    fn copy_chunks(&self) -> Vec<(IpNet, Entry)> {
        let (bound, len) = {
            let index = self.index.read().unwrap_or_else(|e| e.into_inner());
            (index.slot_bound(), index.len())
        };
        let mut copy = Vec::with_capacity(len);
        let mut next = 0;
        while next < bound {
            next =
                self.index
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .copy_slots(next, SNAPSHOT_COPY_CHUNK, &mut copy);
        }
        copy
    }

    /// Applies every feed row committed after the applied serial. Serials are
    /// handed out in commit order, so nothing below the last one read can
    /// still appear. When the feed has started a new session, is behind
    /// this replica, or was pruned past it, reloads instead. Returns how many
    /// rows were applied.
    pub async fn catch_up(&self, pool: &PgPool) -> Result<usize, StoreError> {
        let _one_at_a_time = self.catching_up.lock().await;
        let mut total = 0;
        loop {
            let feed::Since {
                session,
                last_serial,
                pruned_through,
                rows,
            } = feed::since(pool, self.serial(), CATCH_UP_BATCH).await?;
            self.pruned_through.store(pruned_through, Ordering::Relaxed);
            if session != self.session_id() {
                self.reload(pool).await?;
                return Ok(total);
            }
            let applied = self.serial();
            if last_serial < applied {
                // Restored from a backup, or a standby promoted without our
                // last commits: serials above the database's may be handed
                // out again for other changes. Not trusted, not resumed from.
                tracing::error!(
                    database = last_serial,
                    applied,
                    "the database is behind this replica (restored or failed over); reloading"
                );
                self.forget(session, last_serial, applied);
                self.reload(pool).await?;
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
                self.reload(pool).await?;
                return Ok(total);
            }
            if rows.is_empty() {
                return Ok(total);
            }
            let full_batch = rows.len() as i64 == CATCH_UP_BATCH;
            total += rows.len();
            self.apply(rows.into_iter().map(change).collect());
            if !full_batch {
                return Ok(total);
            }
        }
    }

    /// Keeps the replica current until `stopping`: wakes on NOTIFY, and every
    /// `interval` regardless, so a lost notification only delays a change.
    pub async fn follow(
        self: Arc<Self>,
        pool: PgPool,
        following: notify::Following,
        interval: Duration,
        stopping: watch::Receiver<bool>,
    ) {
        notify::follow(&pool, feed::CHANNEL, following, interval, stopping, || async {
            if let Err(e) = self.catch_up(&pool).await {
                tracing::warn!(error = %e, "feed catch-up failed; retrying");
            }
        })
        .await;
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.index.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries under IPv4 and under IPv6 prefixes.
    pub fn len_by_family(&self) -> (usize, usize) {
        self.index.read().unwrap_or_else(|e| e.into_inner()).len_by_family()
    }
}

/// A cheap sort key that keeps neighbouring addresses together (IPv4 below
/// every global IPv6 address; IPv6 by its first 64 bits).
fn locality_key(addr: IpAddr) -> u64 {
    match addr {
        IpAddr::V4(a) => u64::from(a.to_bits()),
        IpAddr::V6(a) => (a.to_bits() >> 64) as u64,
    }
}

/// The feed's session, its serial and the index of the active set at that
/// serial.
async fn read_snapshot(pool: &PgPool) -> Result<(Uuid, i64, Index), StoreError> {
    let started = Instant::now();
    let mut index = Index::default();
    let (session_id, serial) = feed::snapshot(pool, |row| {
        let (prefix, entry) = row.into();
        index.insert(prefix, entry);
    })
    .await?;
    tracing::info!(entries = index.len(), serial, elapsed = ?started.elapsed(), "lookup index loaded");
    Ok((session_id, serial, index))
}

pub(super) fn change(r: FeedRow) -> Change {
    let (prefix, entry) = r.entry.into();
    Change {
        serial: r.serial,
        op: r.op,
        prefix,
        entry,
    }
}

/// Loads the replica (retrying until PostgreSQL answers), publishes it in
/// `slot`, and keeps it following the change feed until `stopping`.
pub async fn load_and_follow(
    pool: PgPool,
    slot: super::ReplicaSlot,
    following: notify::Following,
    poll: Duration,
    backlog: usize,
    stopping: watch::Receiver<bool>,
) {
    let replica = loop {
        match Replica::load(&pool, backlog).await {
            Ok(replica) => break replica,
            Err(e) => {
                tracing::warn!(error = %e, "loading the lookup index failed; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let _ = slot.set(replica.clone());
    replica.follow(pool, following, poll, stopping).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_encoded_once_per_view() {
        use crate::lookup::Scope;
        let batch = Batch::new(Vec::new());
        let mut encodings = 0;
        let mut encode = |scope: Scope, scoping: bool, bytes: &'static [u8]| {
            batch.encoded(&View { scope, scoping }, || {
                encodings += 1;
                Bytes::from_static(bytes)
            })
        };
        assert_eq!(encode(Scope::All, false, b"all"), &b"all"[..]);
        assert_eq!(
            encode(Scope::All, false, b"again"),
            &b"all"[..],
            "shared, not encoded again"
        );
        assert_eq!(
            encode(Scope::All, true, b"scoping"),
            &b"scoping"[..],
            "another view has its own"
        );
        let ptcl = Scope::Isp("ptcl".into());
        assert_eq!(encode(ptcl.clone(), false, b"ptcl"), &b"ptcl"[..]);
        assert_eq!(encode(ptcl, false, b"again"), &b"ptcl"[..]);
        assert_eq!(encodings, 3);
    }
}
