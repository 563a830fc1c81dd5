//! Following the registry's change stream (`WatchChanges`) from the first
//! upstream that answers, in the order given (failover, as rtrtr's `any`
//! unit), resuming from the held position after a broken link: deltas when
//! the upstream still has them, a reset and a full snapshot otherwise. A
//! snapshot is collected aside and replaces the held set only once complete,
//! so nothing downstream ever sees a half-filled set.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::config::Config;
use crate::health::Health;
use crate::metrics::{Metrics, seconds_since};
use crate::pb::{self, lookup_service_client::LookupServiceClient, watch_changes_response::Event};
use crate::set::{ActiveSet, Entry, Position};

/// Longest wait between rounds of the upstreams.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What a message did to the held set.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Nothing the gateway sees yet (a reset or part of a snapshot).
    Pending,
    /// The held set changed (a snapshot completed, or deltas).
    Changed,
}

/// Why a stream was given up (the next upstream is tried).
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("connecting: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("{0}")]
    Status(#[from] tonic::Status),
    #[error("the upstream broke the protocol: {0}")]
    Protocol(String),
    #[error("the upstream ended the stream")]
    Ended,
}

/// Changes kept for `--serve`'s JSON deltas (older ones answer with the
/// whole set).
pub const JOURNAL_CAPACITY: usize = 100_000;

/// One applied change, for clients that ask what changed since a serial.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub serial: i64,
    pub announced: bool,
    pub entry: Entry,
    /// When the registry committed an announcement (Unix microseconds):
    /// what the lag to the gateway and to the kernel is measured from.
    #[serde(skip)]
    pub announced_at: Option<i64>,
}

/// The held set and the snapshot being collected.
#[derive(Debug, Default)]
pub struct Follower {
    pub held: ActiveSet,
    /// A snapshot being collected: its position and entries, made a set
    /// in bulk (full B-tree nodes) once complete.
    staging: Option<(Position, Vec<Entry>)>,
    /// Resets received (each followed by a full snapshot).
    pub resets: u64,
    /// The latest changes, oldest first; complete after `journal_since`.
    pub journal: std::collections::VecDeque<Change>,
    /// The serial the journal starts after (the last snapshot's, at first).
    pub journal_since: i64,
}

impl Follower {
    pub fn new(held: ActiveSet) -> Self {
        let journal_since = held.position.serial;
        Self {
            held,
            staging: None,
            resets: 0,
            journal: std::collections::VecDeque::new(),
            journal_since,
        }
    }

    /// Applies one message of the stream.
    pub fn apply(&mut self, event: Event) -> Result<Applied, StreamError> {
        match event {
            Event::Reset(r) => {
                let position = Position {
                    session: r.session_id,
                    serial: r.serial,
                };
                self.staging = Some((position, Vec::new()));
                self.resets += 1;
                Ok(Applied::Pending)
            }
            Event::Snapshot(chunk) => {
                let (_, staging) = self
                    .staging
                    .as_mut()
                    .ok_or_else(|| protocol("a snapshot chunk without a reset"))?;
                for e in &chunk.entries {
                    staging.push(Entry::from_pb(e).map_err(protocol)?);
                }
                Ok(Applied::Pending)
            }
            Event::SnapshotEnd(end) => {
                let (mut position, entries) = self
                    .staging
                    .take()
                    .ok_or_else(|| protocol("a snapshot end without a reset"))?;
                position.serial = end.serial;
                // The old set goes before the new one is built.
                self.held = ActiveSet::default();
                self.held = ActiveSet::new(position, entries);
                self.journal.clear();
                self.journal_since = end.serial;
                Ok(Applied::Changed)
            }
            Event::Deltas(batch) => {
                if self.staging.is_some() {
                    return Err(protocol("deltas inside a snapshot"));
                }
                for d in batch.deltas {
                    let entry = d.entry.as_ref().ok_or_else(|| protocol("a delta without its entry"))?;
                    let entry = Entry::from_pb(entry).map_err(protocol)?;
                    let announced = match pb::ChangeOperation::try_from(d.operation) {
                        Ok(pb::ChangeOperation::Announce) => {
                            self.held.announce(entry.clone());
                            true
                        }
                        Ok(pb::ChangeOperation::Withdraw) => {
                            self.held.withdraw(&entry.reference, entry.prefix);
                            false
                        }
                        _ => return Err(protocol("a delta that neither announces nor withdraws")),
                    };
                    self.held.position.serial = d.serial;
                    let announced_at = match (announced, &d.entry) {
                        (
                            true,
                            Some(pb::ActiveEntry {
                                last_changed: Some(t), ..
                            }),
                        ) => Some(t.seconds * 1_000_000 + i64::from(t.nanos / 1000)),
                        _ => None,
                    };
                    self.record(Change {
                        serial: d.serial,
                        announced,
                        entry,
                        announced_at,
                    });
                }
                Ok(Applied::Changed)
            }
        }
    }

    fn record(&mut self, change: Change) {
        if self.journal.len() == JOURNAL_CAPACITY
            && let Some(oldest) = self.journal.pop_front()
        {
            self.journal_since = oldest.serial;
        }
        self.journal.push_back(change);
    }

    /// The changes after `serial` of `session`, or `None` when the journal
    /// does not reach back that far (or the session is another): the client
    /// then needs the whole set.
    pub fn changes_since(&self, session: &str, serial: i64) -> Option<Vec<Change>> {
        if session != self.held.position.session || serial < self.journal_since || serial > self.held.position.serial {
            return None;
        }
        Some(self.journal.iter().filter(|c| c.serial > serial).cloned().collect())
    }
}

/// The follower as the stream and `--serve` share it: the stream writes
/// one message at a time, readers copy what they answer with.
pub type Shared = Arc<RwLock<Follower>>;

/// Follows one upstream until the stream breaks; `changed` runs after
/// every message that changed the held set.
async fn follow_one(
    shared: &Shared,
    url: &str,
    config: &Config,
    watch: &Watch<'_>,
    changed: &mut impl FnMut(&ActiveSet),
) -> Result<(), StreamError> {
    let channel = endpoint(url, config)?.connect().await?;
    let mut client = LookupServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let position = read(shared).held.position.clone();
    let mut request = tonic::Request::new(pb::WatchChangesRequest {
        session_id: position.session.clone(),
        since_serial: position.serial,
        include_scoping: false,
    });
    let bearer = format!("Bearer {}", config.token)
        .parse()
        .map_err(|_| protocol("the token is not a valid header value"))?;
    request.metadata_mut().insert("authorization", bearer);
    let mut stream = client.watch_changes(request).await?.into_inner();
    watch.health.connected();
    tracing::info!(upstream = url, session = %position.session, serial = position.serial, "following");
    while let Some(message) = stream.next().await {
        let Some(event) = message?.event else { continue };
        let is_reset = matches!(event, Event::Reset(_));
        let is_snapshot_end = matches!(event, Event::SnapshotEnd(_));
        let mut follower = write(shared);
        let before = follower.held.position.serial;
        let applied = follower.apply(event)?;
        drop(follower);
        if is_reset {
            watch.metrics.resets.inc();
        }
        if applied == Applied::Changed {
            let follower = read(shared);
            let fresh = follower.journal.iter().rev().take_while(|c| c.serial > before);
            for change in fresh {
                if let Some(at) = change.announced_at {
                    watch.metrics.upstream_lag.observe(seconds_since(at));
                }
            }
            watch.health.set_holds_set();
            changed(&follower.held);
            drop(follower);
            if is_snapshot_end {
                // The old set and the snapshot's messages are gone.
                crate::memory::release();
            }
        }
    }
    Err(StreamError::Ended)
}

/// What the stream reports to: contact for the stale clock, lag and
/// resets for the metrics.
pub struct Watch<'a> {
    pub health: &'a Health,
    pub metrics: &'a Metrics,
}

/// Follows the upstreams in order, over and over, until `stop` resolves.
pub async fn follow(
    shared: &Shared,
    config: &Config,
    watch: Watch<'_>,
    mut changed: impl FnMut(&ActiveSet),
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut backoff = Duration::from_secs(1);
    loop {
        for url in &config.upstreams {
            let started = tokio::time::Instant::now();
            let ended = tokio::select! {
                ended = follow_one(shared, url, config, &watch, &mut changed) => ended,
                () = &mut stop => {
                    watch.health.disconnected();
                    return;
                }
            };
            if watch.health.is_connected() {
                watch.metrics.stream_breaks.inc();
            }
            watch.health.disconnected();
            if let Err(e) = ended {
                tracing::warn!(upstream = %url, error = %e, "upstream lost; trying the next");
            }
            if started.elapsed() > MAX_BACKOFF {
                backoff = Duration::from_secs(1);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = &mut stop => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Reads the shared follower (a panic elsewhere leaves it usable: every
/// write is one whole message applied or refused).
pub fn read(shared: &Shared) -> std::sync::RwLockReadGuard<'_, Follower> {
    shared.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write(shared: &Shared) -> std::sync::RwLockWriteGuard<'_, Follower> {
    shared.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn protocol(why: impl Into<String>) -> StreamError {
    StreamError::Protocol(why.into())
}

/// The endpoint of `url`: TLS with the configured CA and client
/// certificate for https, keepalive, bounded connect time.
fn endpoint(url: &str, config: &Config) -> Result<Endpoint, StreamError> {
    let mut endpoint = Channel::from_shared(url.to_owned())
        .map_err(|_| protocol(format!("{url:?} is not a URL")))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .tcp_nodelay(true);
    if url.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_enabled_roots();
        if let Some(ca) = &config.upstream_ca {
            tls = tls.ca_certificate(Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &config.client_identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        endpoint = endpoint.tls_config(tls)?;
    }
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(prefix: &str) -> pb::ActiveEntry {
        pb::ActiveEntry {
            prefix: prefix.into(),
            reference: "VPN-1".into(),
            kind: pb::RegistrationKind::Vpn as i32,
            ..Default::default()
        }
    }

    fn delta(serial: i64, op: pb::ChangeOperation, prefix: &str) -> Event {
        Event::Deltas(pb::DeltaBatch {
            deltas: vec![pb::Delta {
                serial,
                operation: op as i32,
                entry: Some(entry(prefix)),
            }],
        })
    }

    #[test]
    fn a_snapshot_counts_only_when_complete_and_deltas_are_journalled() {
        let mut f = Follower::default();
        let reset = pb::Reset {
            session_id: "s".into(),
            serial: 10,
        };
        assert_eq!(f.apply(Event::Reset(reset)).unwrap(), Applied::Pending);
        let chunk = pb::SnapshotChunk {
            entries: vec![entry("203.0.113.0/24")],
        };
        assert_eq!(f.apply(Event::Snapshot(chunk)).unwrap(), Applied::Pending);
        assert!(f.held.is_empty(), "nothing held before the snapshot ends");
        let end = pb::SnapshotEnd { serial: 10 };
        assert_eq!(f.apply(Event::SnapshotEnd(end)).unwrap(), Applied::Changed);
        assert_eq!(f.held.len(), 1);
        f.apply(delta(11, pb::ChangeOperation::Announce, "198.51.100.0/24"))
            .unwrap();
        f.apply(delta(12, pb::ChangeOperation::Withdraw, "203.0.113.0/24"))
            .unwrap();
        assert_eq!(f.held.position.serial, 12);
        let since_10: Vec<(i64, bool)> = f
            .changes_since("s", 10)
            .unwrap()
            .iter()
            .map(|c| (c.serial, c.announced))
            .collect();
        assert_eq!(since_10, [(11, true), (12, false)]);
        assert_eq!(f.changes_since("s", 11).unwrap().len(), 1);
        assert!(f.changes_since("s", 9).is_none(), "before the journal: the whole set");
        assert!(f.changes_since("other", 11).is_none(), "another session: the whole set");
        assert!(f.changes_since("s", 13).is_none(), "ahead of us: the whole set");
        let stray = f.apply(Event::Snapshot(pb::SnapshotChunk::default())).unwrap_err();
        assert!(matches!(stray, StreamError::Protocol(_)), "a chunk without a reset");
    }
}
