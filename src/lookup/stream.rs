//! The change stream for gateways that keep their own copy of the active
//! set (like RPKI-to-Router): resume a known session from a serial with the
//! deltas after it, or reset with a snapshot; then live deltas, until the
//! client goes away, falls behind, the feed starts a new session, or the
//! server stops.
//!
//! Watchers share what they send: a snapshot is the replica's shared copy
//! of the active set (built once for all watchers starting about the same
//! time), sent in chunks described by their range and materialised only as
//! the client reads them; live deltas are the replica's applied batches,
//! shared. A watcher holds its position and at most [`BUFFER`] such
//! descriptions, however large the set.

use std::{ops::Range, sync::Arc};

use sqlx::PgPool;
use tokio::sync::{broadcast::error::RecvError, mpsc, watch};
use uuid::Uuid;

use super::change::{Applied, Batch, Change, View};
use super::copy::ActiveSetCopy;
use super::follower::{self, Replay};
use super::replica::Replica;
use super::watchers::{Dropped, Slot};
use crate::db::StoreError;

/// Entries per snapshot message: small enough that a stalled subscriber's
/// one encoded message waiting for flow-control room stays ~40 KB (at 2,000
/// a 1,000-subscriber storm held 374-387 MB, at 500 244-247 MB), large
/// enough that snapshots still stream at 2.5M+ entries/s.
const SNAPSHOT_CHUNK: usize = 500;
/// Feed rows read per query while a resumed watcher catches up.
const RESUME_BATCH: usize = 5_000;
/// Messages buffered per watcher before it counts as slow.
pub const BUFFER: usize = 32;

/// One message of the stream, in order.
#[derive(Clone)]
pub enum WatchEvent {
    /// Drop your copy: a snapshot of `session` at `serial` follows.
    Reset {
        session: Uuid,
        serial: i64,
    },
    /// Part of the snapshot: `copy.entries[range]`.
    SnapshotChunk {
        copy: Arc<ActiveSetCopy>,
        range: Range<usize>,
    },
    SnapshotEnd {
        serial: i64,
    },
    /// The changes of `batch` with a serial above `after`, in order.
    Deltas {
        batch: Arc<Batch>,
        after: i64,
    },
}

/// Why a stream ended, other than the client leaving.
#[derive(Debug, thiserror::Error)]
pub enum WatchEnd {
    #[error("server shutting down; resume elsewhere with the same session_id and the last serial you applied")]
    ShuttingDown,
    /// The feed's serials were restarted (the registry was restored): the
    /// watcher's copy must be rebuilt from a snapshot.
    #[error(
        "the change feed started a new session (or the database was restored behind this replica); reconnect (with your old session_id) to receive a reset and a fresh snapshot"
    )]
    NewSession,
    /// Resumed from a serial the feed no longer holds (older than
    /// --feed-retention): the watcher's copy must be rebuilt.
    #[error(
        "the change feed no longer holds the changes after your serial (pruned); reconnect (with your old session_id) to receive a reset and a fresh snapshot"
    )]
    Pruned,
    /// Fell too far behind. (Buffered deltas may not have reached it, so it
    /// resumes from what it applied.)
    #[error("consumer too slow; reconnect with the same session_id and since_serial = the last serial you applied")]
    TooSlow,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<&WatchEnd> for Dropped {
    fn from(end: &WatchEnd) -> Self {
        match end {
            WatchEnd::TooSlow => Self::TooSlow,
            WatchEnd::ShuttingDown => Self::ShuttingDown,
            WatchEnd::NewSession => Self::NewSession,
            WatchEnd::Pruned => Self::Pruned,
            WatchEnd::Store(_) => Self::Error,
        }
    }
}

/// The receiving ends of one watcher's stream: data in order, and the
/// terminal reason on its own channel so that it reaches a watcher whose
/// data buffer is full. Events carry the whole active set's entries, shared
/// between watchers; only those its view admits are the watcher's to see.
pub struct Watch {
    pub events: mpsc::Receiver<WatchEvent>,
    pub end: mpsc::Receiver<WatchEnd>,
    pub view: View,
}

/// Where a resuming watcher's missed changes are read from.
#[derive(Clone)]
pub enum Backfill {
    /// The feed table: a replica following PostgreSQL.
    Feed(PgPool),
    /// The replica's journal: a fan-out replica, which reads no feed.
    Journal,
}

/// Starts feeding one watcher: from `since` in the replica's session when
/// `resume` holds one it can serve, else from a snapshot.
pub fn start(
    backfill: Backfill,
    replica: Arc<Replica>,
    resume: Option<(Uuid, i64)>,
    view: View,
    slot: Slot,
    stopping: watch::Receiver<bool>,
) -> Watch {
    let (data, events) = mpsc::channel(BUFFER);
    let (end_tx, end) = mpsc::channel(1);
    // A serial this replica applied and the database then lost (a restore)
    // may name another change by now: such a watcher starts over.
    // So may one whose serial the feed no longer holds (pruned).
    let resume = resume.filter(|&(session, since)| {
        session == replica.session_id()
            && (replica.pruned_through()..=replica.serial()).contains(&since)
            && !replica.forgot(session, since)
    });
    let mut out = Output {
        data,
        end: end_tx,
        stopping,
    };
    tokio::spawn(async move {
        if let Err(reason) = stream(&backfill, &replica, resume, &mut out).await {
            slot.ended(Dropped::from(&reason));
            let _ = out.end.try_send(reason);
        }
    });
    Watch { events, end, view }
}

/// Where a watcher's messages go, and when to stop sending.
struct Output {
    data: mpsc::Sender<WatchEvent>,
    end: mpsc::Sender<WatchEnd>,
    stopping: watch::Receiver<bool>,
}

/// Why sending stopped.
enum Stop {
    /// The client went away (disconnected, or its deadline passed): nobody to tell.
    Gone,
    End(WatchEnd),
}

impl From<WatchEnd> for Stop {
    fn from(e: WatchEnd) -> Self {
        Self::End(e)
    }
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Self::End(e.into())
    }
}

impl Output {
    /// Sends one message, waiting for room; gives up when the client goes
    /// away or the server stops.
    async fn send(&mut self, e: WatchEvent) -> Result<(), Stop> {
        tokio::select! {
            sent = self.data.send(e) => sent.map_err(|_| Stop::Gone),
            _ = self.stopping.wait_for(|stopping| *stopping) => Err(WatchEnd::ShuttingDown.into()),
        }
    }
}

/// Ends with `Ok` when the client went away, `Err` with the reason otherwise.
/// The shared backlog of applied changes is bounded, and a watcher that
/// falls out of it is dropped.
async fn stream(
    backfill: &Backfill,
    replica: &Arc<Replica>,
    resume: Option<(Uuid, i64)>,
    out: &mut Output,
) -> Result<(), WatchEnd> {
    let result = async {
        // Subscribe first: whatever is applied after this point reaches us live.
        let mut live = replica.subscribe();
        let mut last = match resume {
            Some((session, since)) => send_missed(backfill, replica, session, since, out).await?,
            None => send_snapshot(backfill, replica, out).await?,
        };
        loop {
            let batch = tokio::select! {
                batch = live.recv() => batch,
                _ = out.stopping.wait_for(|stopping| *stopping) => return Err(WatchEnd::ShuttingDown.into()),
                () = out.data.closed() => return Err(Stop::Gone),
            };
            match batch {
                Ok(Applied::NewSession(_)) => return Err(WatchEnd::NewSession.into()),
                Ok(Applied::Changes(batch)) => {
                    let Some(end) = batch.last_serial().filter(|end| *end > last) else {
                        continue;
                    };
                    out.send(WatchEvent::Deltas { batch, after: last }).await?;
                    last = end;
                }
                Err(RecvError::Lagged(_)) => return Err(WatchEnd::TooSlow.into()),
                Err(RecvError::Closed) => return Err(Stop::Gone),
            }
        }
    }
    .await;
    match result {
        Ok(()) | Err(Stop::Gone) => Ok(()),
        Err(Stop::End(reason)) => Err(reason),
    }
}

/// Sends the changes after `since` up to what the replica has applied.
/// Returns the last serial sent.
async fn send_missed(
    backfill: &Backfill,
    replica: &Replica,
    session: Uuid,
    since: i64,
    out: &mut Output,
) -> Result<i64, Stop> {
    // A reload before the subscription would not reach us as news.
    if replica.session_id() != session {
        return Err(WatchEnd::NewSession.into());
    }
    let upto = replica.serial();
    let mut last = since;
    while last < upto {
        let changes: Vec<Change> = match backfill {
            Backfill::Feed(pool) => match follower::replay(pool, session, last, RESUME_BATCH as i64).await? {
                Replay::Changes(changes) => changes,
                Replay::NewSession => return Err(WatchEnd::NewSession.into()),
                // Pruned while we read: what follows `last` is gone.
                Replay::Pruned => return Err(WatchEnd::Pruned.into()),
            },
            Backfill::Journal => match replica.journal_after(last, RESUME_BATCH) {
                _ if replica.session_id() != session => return Err(WatchEnd::NewSession.into()),
                Some(changes) => changes,
                None => return Err(WatchEnd::Pruned.into()),
            },
        };
        let batch = Arc::new(Batch::new(changes));
        let Some(end) = batch.last_serial() else {
            break;
        };
        out.send(WatchEvent::Deltas { batch, after: last }).await?;
        last = end;
    }
    Ok(last)
}

/// Sends a reset and a snapshot from the copy shared with other watchers,
/// chunk by chunk (each a range of the shared copy, not a copy of it), then
/// the changes from the copy's serial up to what the replica has applied.
/// Returns the last serial sent.
async fn send_snapshot(backfill: &Backfill, replica: &Arc<Replica>, out: &mut Output) -> Result<i64, Stop> {
    let copy = replica.shared_copy().await;
    let (session, serial) = (copy.session, copy.serial);
    out.send(WatchEvent::Reset { session, serial }).await?;
    for start in (0..copy.entries.len()).step_by(SNAPSHOT_CHUNK) {
        let range = start..(start + SNAPSHOT_CHUNK).min(copy.entries.len());
        let chunk = WatchEvent::SnapshotChunk {
            copy: copy.clone(),
            range,
        };
        out.send(chunk).await?;
    }
    out.send(WatchEvent::SnapshotEnd { serial }).await?;
    drop(copy);
    send_missed(backfill, replica, session, serial, out).await
}
