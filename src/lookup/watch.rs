//! The change stream for gateways that keep their own copy of the active
//! set (like RPKI-to-Router): resume a known session from a serial with the
//! deltas after it, or reset with a snapshot; then live deltas, until the
//! client goes away, falls behind, the feed starts a new session, or the
//! server stops.

use std::{ops::Range, sync::Arc};

use ipnet::IpNet;
use sqlx::PgPool;
use tokio::sync::{broadcast::error::RecvError, mpsc, watch};
use uuid::Uuid;

use super::index::{Entry, Scope};
use super::replica::{Applied, Change, Replica, change};
use crate::db::{StoreError, feed};

/// Entries per snapshot message.
const SNAPSHOT_CHUNK: usize = 2_000;
/// Feed rows read per query while a resumed watcher catches up.
const RESUME_BATCH: i64 = 5_000;
/// Messages buffered per watcher before it counts as slow.
pub const BUFFER: usize = 32;

/// One message of the stream, in order.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    /// Drop your copy: a snapshot of `session` at `serial` follows.
    Reset {
        session: Uuid,
        serial: i64,
    },
    /// Part of the snapshot: `entries[range]`.
    Snapshot {
        entries: Arc<Vec<(IpNet, Entry)>>,
        range: Range<usize>,
    },
    SnapshotEnd {
        serial: i64,
    },
    /// The changes of `changes` with a serial above `after`, in order.
    Deltas {
        changes: Arc<Vec<Change>>,
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
        "the change feed started a new session; reconnect (with your old session_id) to receive a reset and a fresh snapshot"
    )]
    NewSession,
    /// Fell too far behind. (Buffered deltas may not have reached it, so it
    /// resumes from what it applied.)
    #[error("consumer too slow; reconnect with the same session_id and since_serial = the last serial you applied")]
    TooSlow,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The receiving ends of one watcher's stream: data in order, and the
/// terminal reason on its own channel so that it reaches a watcher whose
/// data buffer is full. Events carry the whole active set's entries, shared
/// between watchers; only those `scope` admits are the watcher's to see.
pub struct Watch {
    pub events: mpsc::Receiver<WatchEvent>,
    pub end: mpsc::Receiver<WatchEnd>,
    pub scope: Scope,
}

/// Starts feeding one watcher: from `since` in the replica's session when
/// `resume` holds one it can serve, else from a snapshot.
pub fn start(
    pool: PgPool,
    replica: Arc<Replica>,
    resume: Option<(Uuid, i64)>,
    scope: Scope,
    stopping: watch::Receiver<bool>,
) -> Watch {
    let (data, events) = mpsc::channel(BUFFER);
    let (end_tx, end) = mpsc::channel(1);
    let resume =
        resume.filter(|(session, since)| *session == replica.session_id() && (0..=replica.serial()).contains(since));
    let out = Output { data, end: end_tx };
    tokio::spawn(async move {
        if let Err(reason) = stream(&pool, &replica, resume, &out, stopping).await {
            let _ = out.end.try_send(reason);
        }
    });
    Watch { events, end, scope }
}

/// Where a watcher's messages go.
struct Output {
    data: mpsc::Sender<WatchEvent>,
    end: mpsc::Sender<WatchEnd>,
}

/// The client went away: nothing more to send, nobody to tell.
struct Gone;

impl Output {
    async fn send(&self, e: WatchEvent) -> Result<(), Gone> {
        self.data.send(e).await.map_err(|_| Gone)
    }
}

/// Ends with `Ok` when the client went away, `Err` with the reason otherwise.
/// Memory per watcher is bounded by its buffer; the shared backlog of
/// applied changes is bounded too, and a watcher that falls out of it is
/// dropped.
async fn stream(
    pool: &PgPool,
    replica: &Replica,
    resume: Option<(Uuid, i64)>,
    out: &Output,
    mut stopping: watch::Receiver<bool>,
) -> Result<(), WatchEnd> {
    // Subscribe first: whatever is applied after this point reaches us live.
    let mut live = replica.subscribe();
    let sent = match resume {
        Some((session, since)) => catch_up(pool, replica, session, since, out).await?,
        None => snapshot(replica, out).await?,
    };
    let Some(mut last) = sent else { return Ok(()) };
    loop {
        let batch = tokio::select! {
            batch = live.recv() => batch,
            _ = stopping.changed() => return Err(WatchEnd::ShuttingDown),
            () = out.data.closed() => return Ok(()),
        };
        match batch {
            Ok(Applied::NewSession(_)) => return Err(WatchEnd::NewSession),
            Ok(Applied::Changes(changes)) => {
                let Some(end) = changes.last().map(|c| c.serial).filter(|end| *end > last) else {
                    continue;
                };
                if out.send(WatchEvent::Deltas { changes, after: last }).await.is_err() {
                    return Ok(());
                }
                last = end;
            }
            Err(RecvError::Lagged(_)) => return Err(WatchEnd::TooSlow),
            Err(RecvError::Closed) => return Ok(()),
        }
    }
}

/// Sends the feed's rows after `since` up to what the replica has applied.
/// Returns the last serial sent, or `None` when the client went away.
async fn catch_up(
    pool: &PgPool,
    replica: &Replica,
    session: Uuid,
    since: i64,
    out: &Output,
) -> Result<Option<i64>, WatchEnd> {
    // A reload before the subscription would not reach us as news.
    if replica.session_id() != session {
        return Err(WatchEnd::NewSession);
    }
    let upto = replica.serial();
    let mut last = since;
    while last < upto {
        let (now, rows) = feed::since(pool, last, RESUME_BATCH).await?;
        if now != session {
            return Err(WatchEnd::NewSession);
        }
        let Some(end) = rows.last().map(|r| r.serial) else {
            break;
        };
        let changes = Arc::new(rows.into_iter().map(change).collect());
        if out.send(WatchEvent::Deltas { changes, after: last }).await.is_err() {
            return Ok(None);
        }
        last = end;
    }
    Ok(Some(last))
}

/// Sends a reset and the replica's whole active set. Returns the serial it
/// is current at, or `None` when the client went away.
async fn snapshot(replica: &Replica, out: &Output) -> Result<Option<i64>, WatchEnd> {
    let (session, serial, entries) = replica.snapshot();
    let entries = Arc::new(entries);
    let mut events = vec![WatchEvent::Reset { session, serial }];
    events.extend(
        (0..entries.len())
            .step_by(SNAPSHOT_CHUNK)
            .map(|start| WatchEvent::Snapshot {
                entries: entries.clone(),
                range: start..(start + SNAPSHOT_CHUNK).min(entries.len()),
            }),
    );
    events.push(WatchEvent::SnapshotEnd { serial });
    for e in events {
        if out.send(e).await.is_err() {
            return Ok(None);
        }
    }
    Ok(Some(serial))
}
