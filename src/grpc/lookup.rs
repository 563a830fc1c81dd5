//! LookupService: checks answered from this process's replica of the active
//! set, and the change stream for gateways that keep their own copy.

use std::{
    fmt::Write as _,
    net::IpAddr,
    sync::{Arc, OnceLock},
    time::Duration,
};

use ipnet::IpNet;
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::{broadcast::error::RecvError, mpsc, watch};
use tokio_stream::{StreamExt as _, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::convert::{category_to_pb, from_timestamp, kind_to_pb, timestamp};
use super::error::ApiError;
use crate::auth::principal;
use crate::db::feed::{self, Op};
use crate::domain::{
    Violations,
    principal::{Principal, Role},
};
use crate::lookup::{
    Replica,
    index::{Entry, Filter, Query},
    replica::{Applied, check_history, check_history_batch, is_past, parse_addr},
};
use crate::pb::{self, lookup_service_server::LookupService};

/// Most addresses one CheckAddresses call may carry.
pub const MAX_BATCH: usize = 100_000;
/// How long a call waits for its `min_serial` before answering UNAVAILABLE.
const MIN_SERIAL_WAIT: Duration = Duration::from_secs(5);
/// Entries per snapshot message.
const SNAPSHOT_CHUNK: usize = 2_000;
/// Messages buffered per watcher before it counts as slow.
const WATCH_BUFFER: usize = 32;

/// The replica, once loaded: until then lookups answer UNAVAILABLE.
pub type ReplicaSlot = Arc<OnceLock<Arc<Replica>>>;

pub struct LookupApi {
    pool: PgPool,
    replica: ReplicaSlot,
    stopping: watch::Receiver<bool>,
}

impl LookupApi {
    pub fn new(pool: PgPool, replica: ReplicaSlot, stopping: watch::Receiver<bool>) -> Self {
        Self {
            pool,
            replica,
            stopping,
        }
    }

    fn replica(&self) -> Result<Arc<Replica>, Status> {
        self.replica
            .get()
            .cloned()
            .ok_or_else(|| Status::unavailable("lookup index still loading; retry shortly"))
    }

    /// Waits for `min_serial` when asked to, at most MIN_SERIAL_WAIT or the
    /// caller's deadline.
    async fn ready(&self, min_serial: i64, deadline: Option<Duration>) -> Result<Arc<Replica>, Status> {
        let replica = self.replica()?;
        let wait = deadline.map_or(MIN_SERIAL_WAIT, |d| d.min(MIN_SERIAL_WAIT));
        if min_serial > 0 && !replica.wait_for(min_serial, wait).await {
            return Err(Status::unavailable(format!(
                "this replica has applied serial {}, not yet {min_serial}; retry",
                replica.serial()
            )));
        }
        Ok(replica)
    }

    /// One check, from the index (now or later) or from history (the past).
    async fn check(
        &self,
        q: Query,
        past: bool,
        min_serial: i64,
        deadline: Option<Duration>,
    ) -> Result<pb::CheckResult, Status> {
        let replica = self.ready(min_serial, deadline).await?;
        if past {
            let serial = replica.serial();
            let found = check_history(&self.pool, &q).await.map_err(ApiError::from)?;
            return Ok(result(found.as_ref().map(|m| (m.prefix, &m.entry)), serial));
        }
        let (found, serial) = replica.check(&q);
        Ok(result(found.as_ref().map(|m| (m.prefix, &m.entry)), serial))
    }
}

/// Who may look up what: lookup clients, ISPs and reviewers everything, an
/// institution only its own addresses.
fn scope(p: &Principal) -> Result<Option<Uuid>, ApiError> {
    match p.role {
        Role::Lookup | Role::Isp(_) | Role::Reviewer => Ok(None),
        Role::Institution(id) => Ok(Some(id)),
        Role::Admin => Err(ApiError::PermissionDenied("role admin may not use lookups".into())),
    }
}

/// The caller's deadline (`grpc-timeout`), so a min_serial wait answers
/// before the client gives up.
fn deadline<T>(req: &Request<T>) -> Option<Duration> {
    let raw = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (value, unit) = raw.split_at(raw.len().checked_sub(1)?);
    let value: u64 = value.parse().ok()?;
    let full = match unit {
        "H" => Duration::from_secs(value * 3600),
        "M" => Duration::from_secs(value * 60),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    };
    // Leave the answer time to travel.
    Some(full.mul_f64(0.8))
}

/// The instant asked about, and whether it lies in the past (answered from
/// history). Without `at` the answer is for now, from the index.
fn at(ts: Option<&prost_types::Timestamp>, v: &mut Violations) -> (OffsetDateTime, bool) {
    match ts.and_then(|t| v.check("at", from_timestamp(t))) {
        Some(at) => (at, is_past(at)),
        None => (OffsetDateTime::now_utc(), false),
    }
}

fn addr(field: &str, raw: &str, v: &mut Violations) -> Option<IpAddr> {
    let parsed = parse_addr(raw);
    if parsed.is_none() {
        v.add(field, format!("{raw:?} is not an IPv4 or IPv6 address"));
    }
    parsed
}

fn result(found: Option<(IpNet, &Entry)>, serial: i64) -> pb::CheckResult {
    match found {
        Some((prefix, e)) => {
            let (seconds, nanos) = e.valid_until_parts();
            // The longest prefix text ("ffff:...:ffff/128") fits, so no regrowth.
            let mut matched_prefix = String::with_capacity(43);
            let _ = write!(matched_prefix, "{prefix}");
            pb::CheckResult {
                registered: true,
                // Not to_string(): that goes through the formatting machinery.
                reference: String::from(e.reference.as_str()),
                kind: kind_to_pb(e.kind) as i32,
                institution_category: category_to_pb(e.category) as i32,
                matched_prefix,
                valid_until: Some(prost_types::Timestamp { seconds, nanos }),
                serial,
            }
        }
        None => pb::CheckResult {
            serial,
            ..Default::default()
        },
    }
}

fn active_entry(prefix: IpNet, e: &Entry) -> pb::ActiveEntry {
    pb::ActiveEntry {
        prefix: prefix.to_string(),
        peer_prefixes: e.peers().iter().map(ToString::to_string).collect(),
        reference: String::from(e.reference.as_str()),
        kind: kind_to_pb(e.kind) as i32,
        institution_category: category_to_pb(e.category) as i32,
        valid_from: Some(timestamp(e.valid_from())),
        valid_until: Some(timestamp(e.valid_until())),
    }
}

fn delta(serial: i64, op: Op, prefix: IpNet, e: &Entry) -> pb::Delta {
    pb::Delta {
        serial,
        operation: match op {
            Op::Announce => pb::ChangeOperation::Announce,
            Op::Withdraw => pb::ChangeOperation::Withdraw,
        } as i32,
        entry: Some(active_entry(prefix, e)),
    }
}

#[tonic::async_trait]
impl LookupService for LookupApi {
    async fn check_address(&self, req: Request<pb::CheckAddressRequest>) -> Result<Response<pb::CheckResult>, Status> {
        let only_institution = scope(principal(&req)?)?;
        let deadline = deadline(&req);
        let msg = req.into_inner();
        let mut v = Violations::default();
        let address = addr("address", &msg.address, &mut v);
        let (at, past) = at(msg.at.as_ref(), &mut v);
        let (Some(addr), true) = (address, v.is_empty()) else {
            return Err(ApiError::Invalid(v).into());
        };
        let q = Query {
            addr,
            peer: None,
            at,
            only_institution,
        };
        Ok(Response::new(self.check(q, past, msg.min_serial, deadline).await?))
    }

    async fn check_flow(&self, req: Request<pb::CheckFlowRequest>) -> Result<Response<pb::CheckResult>, Status> {
        let only_institution = scope(principal(&req)?)?;
        let deadline = deadline(&req);
        let msg = req.into_inner();
        let mut v = Violations::default();
        let source = addr("source", &msg.source, &mut v);
        let peer = addr("peer", &msg.peer, &mut v);
        let (at, past) = at(msg.at.as_ref(), &mut v);
        let (Some(addr), Some(peer), true) = (source, peer, v.is_empty()) else {
            return Err(ApiError::Invalid(v).into());
        };
        let q = Query {
            addr,
            peer: Some(peer),
            at,
            only_institution,
        };
        Ok(Response::new(self.check(q, past, msg.min_serial, deadline).await?))
    }

    async fn check_addresses(
        &self,
        req: Request<pb::CheckAddressesRequest>,
    ) -> Result<Response<pb::CheckAddressesResponse>, Status> {
        let only_institution = scope(principal(&req)?)?;
        let deadline = deadline(&req);
        let msg = req.into_inner();
        let mut v = Violations::default();
        if msg.addresses.len() > MAX_BATCH {
            v.add(
                "addresses",
                format!(
                    "at most {MAX_BATCH} addresses per call (got {}); split the batch",
                    msg.addresses.len()
                ),
            );
            return Err(ApiError::Invalid(v).into());
        }
        let (at, past) = at(msg.at.as_ref(), &mut v);
        let mut addrs = Vec::with_capacity(msg.addresses.len());
        for (i, raw) in msg.addresses.iter().enumerate() {
            match parse_addr(raw) {
                Some(a) => addrs.push(a),
                None => v.add(
                    format!("addresses[{i}]"),
                    format!("{raw:?} is not an IPv4 or IPv6 address"),
                ),
            }
        }
        if !v.is_empty() {
            return Err(ApiError::Invalid(v).into());
        }
        let replica = self.ready(msg.min_serial, deadline).await?;
        let filter = Filter::new(at, None, only_institution);
        let mut results = Vec::with_capacity(addrs.len());
        let serial = if past {
            let serial = replica.serial();
            let found = check_history_batch(&self.pool, &addrs, &filter, at)
                .await
                .map_err(ApiError::from)?;
            results.extend(
                found
                    .iter()
                    .map(|m| result(m.as_ref().map(|m| (m.prefix, &m.entry)), 0)),
            );
            serial
        } else {
            results.resize(addrs.len(), pb::CheckResult::default());
            replica.check_batch(&addrs, &filter, |i, found| {
                if found.is_some() {
                    results[i] = result(found, 0);
                }
            })
        };
        Ok(Response::new(pb::CheckAddressesResponse { results, serial }))
    }

    type WatchChangesStream = WatchStream;

    async fn watch_changes(
        &self,
        req: Request<pb::WatchChangesRequest>,
    ) -> Result<Response<Self::WatchChangesStream>, Status> {
        if scope(principal(&req)?)?.is_some() {
            return Err(ApiError::PermissionDenied("institutions may not watch the whole active set".into()).into());
        }
        let msg = req.into_inner();
        let replica = self.replica()?;
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let (end_tx, end_rx) = mpsc::channel(1);
        let session = replica.session_id();
        let resume = Uuid::try_parse(&msg.session_id).ok() == Some(session)
            && (0..=replica.serial()).contains(&msg.since_serial);
        let out = Output { data: tx, end: end_tx };
        tokio::spawn(stream_changes(
            self.pool.clone(),
            replica,
            resume.then_some((session, msg.since_serial)),
            out,
            self.stopping.clone(),
        ));
        // The terminal status has its own channel, so it reaches a watcher
        // whose data buffer is full; merged, it ends the stream.
        Ok(Response::new(
            ReceiverStream::new(end_rx).merge(ReceiverStream::new(rx)),
        ))
    }
}

/// The stream WatchChanges returns: data, with the terminal status merged in.
pub type WatchStream = tokio_stream::adapters::Merge<
    ReceiverStream<Result<pb::WatchChangesResponse, Status>>,
    ReceiverStream<Result<pb::WatchChangesResponse, Status>>,
>;

/// Where a watcher's messages go: data in order, and one terminal status.
struct Output {
    data: mpsc::Sender<Result<pb::WatchChangesResponse, Status>>,
    end: mpsc::Sender<Result<pb::WatchChangesResponse, Status>>,
}

impl Output {
    /// Sends one message; false when the client went away.
    async fn send(&self, e: pb::watch_changes_response::Event) -> bool {
        self.data
            .send(Ok(pb::WatchChangesResponse { event: Some(e) }))
            .await
            .is_ok()
    }

    /// Ends the stream with `status`.
    fn fail(&self, status: Status) {
        let _ = self.end.try_send(Err(status));
    }
}

/// Feeds one watcher: history or a snapshot, then live changes, until the
/// client goes away, falls behind, the feed starts a new session, or the
/// server stops. Memory per watcher is bounded by its buffer; the shared
/// backlog of applied changes is bounded too, and a watcher that falls out
/// of it is dropped.
async fn stream_changes(
    pool: PgPool,
    replica: Arc<Replica>,
    resume: Option<(Uuid, i64)>,
    out: Output,
    mut stopping: watch::Receiver<bool>,
) {
    use pb::watch_changes_response::Event;
    // Subscribe first: whatever is applied after this point reaches us live.
    let mut live = replica.subscribe();
    let mut last = match resume {
        Some((session, since)) => {
            // A reload before the subscription would not reach us as news.
            if replica.session_id() != session {
                return out.fail(new_session());
            }
            let upto = replica.serial();
            let mut last = since;
            while last < upto {
                let rows = match feed::since(&pool, last, 5_000).await {
                    Ok((now, _)) if now != session => return out.fail(new_session()),
                    Ok((_, rows)) => rows,
                    Err(e) => return out.fail(ApiError::from(e).into()),
                };
                let Some(end) = rows.last().map(|r| r.serial) else {
                    break;
                };
                let deltas = rows
                    .into_iter()
                    .map(|r| {
                        let (prefix, entry) = r.entry.into();
                        delta(r.serial, r.op, prefix, &entry)
                    })
                    .collect();
                if !out.send(Event::Deltas(pb::DeltaBatch { deltas })).await {
                    return;
                }
                last = end;
            }
            last
        }
        None => {
            let (session, serial, entries) = replica.snapshot();
            let reset = pb::Reset {
                session_id: session.to_string(),
                serial,
            };
            if !out.send(Event::Reset(reset)).await {
                return;
            }
            for chunk in entries.chunks(SNAPSHOT_CHUNK) {
                let entries = chunk.iter().map(|(p, e)| active_entry(*p, e)).collect();
                if !out.send(Event::Snapshot(pb::SnapshotChunk { entries })).await {
                    return;
                }
            }
            if !out.send(Event::SnapshotEnd(pb::SnapshotEnd { serial })).await {
                return;
            }
            serial
        }
    };
    loop {
        let batch = tokio::select! {
            batch = live.recv() => batch,
            _ = stopping.changed() => {
                return out.fail(Status::unavailable(
                    "server shutting down; resume elsewhere with the same session_id and the last serial you applied",
                ));
            }
            () = out.data.closed() => return,
        };
        match batch {
            Ok(Applied::NewSession(_)) => return out.fail(new_session()),
            Ok(Applied::Changes(changes)) => {
                let deltas: Vec<_> = changes
                    .iter()
                    .filter(|c| c.serial > last)
                    .map(|c| delta(c.serial, c.op, c.prefix, &c.entry))
                    .collect();
                let Some(end) = deltas.last().map(|d| d.serial) else {
                    continue;
                };
                if !out.send(Event::Deltas(pb::DeltaBatch { deltas })).await {
                    return;
                }
                last = end;
            }
            Err(RecvError::Lagged(_)) => return out.fail(slow()),
            Err(RecvError::Closed) => return,
        }
    }
}

/// The status a watcher gets when the feed's serials were restarted (the
/// registry was restored): its copy must be rebuilt from a snapshot.
fn new_session() -> Status {
    Status::aborted(
        "the change feed started a new session; reconnect (with your old session_id) to receive a reset and a fresh snapshot",
    )
}

/// The status a watcher gets when it fell too far behind. (Buffered deltas
/// may not have reached it, so it resumes from what it applied.)
fn slow() -> Status {
    Status::resource_exhausted(
        "consumer too slow; reconnect with the same session_id and since_serial = the last serial you applied",
    )
}
