//! A fan-out replica's link to the replica it follows: it keeps the local
//! replica equal to the upstream's active set through WatchChanges (same
//! session, same serials, so `min_serial` means the same everywhere), and
//! forwards questions about the past, which only replicas reading
//! PostgreSQL can answer. This is how the lookup tier grows across machines
//! and regions without adding load on PostgreSQL.

use std::{path::PathBuf, time::Duration};

use tokio::sync::watch;
use tonic::{
    Request, Status,
    metadata::{AsciiMetadataValue, MetadataMap},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};
use uuid::Uuid;

use super::convert::{change_from_pb, entry_from_pb};
use crate::lookup::{Replica, ReplicaSlot, index::Index};
use crate::pb::{self, lookup_service_client::LookupServiceClient, watch_changes_response::Event};

/// First pause before reconnecting; doubled per failure up to MAX_BACKOFF.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Largest message accepted from the upstream (a snapshot chunk or a delta
/// batch of a busy feed).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// Metadata a forwarded call carries on: the caller's own credentials (so
/// the upstream scopes the answer as it would for the caller), its request
/// id and its deadline.
const FORWARDED: [&str; 3] = ["authorization", "x-request-id", "grpc-timeout"];

/// Why the upstream link could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("--upstream {0:?} is not a usable URL: {1}")]
    Url(String, tonic::transport::Error),
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
}

/// Where the upstream is and how to speak to it.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `http://host:port` or `https://host:port`.
    pub url: String,
    /// Holds the `lookup` token; read at every (re)connection, so a rotated
    /// token is picked up without a restart.
    pub token_file: PathBuf,
    /// CA to verify an `https` upstream with (else the server's own
    /// certificate must chain to it).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key, for an upstream that requires them.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// Recent changes kept for resuming this replica's own watchers.
    pub journal: usize,
}

/// A connection (lazy, re-established by tonic) to the upstream replica.
#[derive(Clone)]
pub struct Upstream {
    channel: Channel,
    config: UpstreamConfig,
}

fn read(path: &PathBuf) -> Result<Vec<u8>, UpstreamError> {
    std::fs::read(path).map_err(|e| UpstreamError::Read(path.clone(), e))
}

impl Upstream {
    pub fn new(config: UpstreamConfig) -> Result<Self, UpstreamError> {
        let url = |e| UpstreamError::Url(config.url.clone(), e);
        let mut endpoint = Endpoint::from_shared(config.url.clone())
            .map_err(url)?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        if config.url.starts_with("https") {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &config.ca_file {
                tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
            }
            if let Some((cert, key)) = &config.client_identity {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            endpoint = endpoint.tls_config(tls).map_err(url)?;
        }
        // The token file is read now too, so that a typo fails at start.
        read(&config.token_file)?;
        Ok(Self {
            channel: endpoint.connect_lazy(),
            config,
        })
    }

    fn client(&self) -> LookupServiceClient<Channel> {
        LookupServiceClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    /// `message` as the caller sent it, with the caller's credentials,
    /// request id and deadline.
    fn forwarded<T>(message: T, from: &MetadataMap) -> Request<T> {
        let mut request = Request::new(message);
        for key in FORWARDED {
            if let Some(value) = from.get(key) {
                request.metadata_mut().insert(key, value.clone());
            }
        }
        request
    }

    pub async fn check_address(
        &self,
        message: pb::CheckAddressRequest,
        from: &MetadataMap,
    ) -> Result<pb::CheckResult, Status> {
        Ok(self
            .client()
            .check_address(Self::forwarded(message, from))
            .await?
            .into_inner())
    }

    pub async fn check_flow(
        &self,
        message: pb::CheckFlowRequest,
        from: &MetadataMap,
    ) -> Result<pb::CheckResult, Status> {
        Ok(self
            .client()
            .check_flow(Self::forwarded(message, from))
            .await?
            .into_inner())
    }

    pub async fn check_addresses(
        &self,
        message: pb::CheckAddressesRequest,
        from: &MetadataMap,
    ) -> Result<pb::CheckAddressesResponse, Status> {
        Ok(self
            .client()
            .check_addresses(Self::forwarded(message, from))
            .await?
            .into_inner())
    }

    /// Keeps the replica in `slot` equal to the upstream's until `stopping`:
    /// publishes it once the first snapshot is applied (until then lookups
    /// answer UNAVAILABLE and health says NOT_SERVING), then applies deltas;
    /// reconnects with its session and serial after any failure, so the
    /// upstream resumes it with deltas when it can.
    pub async fn follow(self, slot: ReplicaSlot, backlog: usize, mut stopping: watch::Receiver<bool>) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let mut progressed = false;
            let outcome = tokio::select! {
                outcome = self.stream(&slot, backlog, &mut progressed) => outcome,
                _ = stopping.wait_for(|stopping| *stopping) => return,
            };
            if progressed {
                backoff = MIN_BACKOFF;
            }
            match outcome {
                Ok(()) => tracing::warn!(upstream = %self.config.url, "upstream ended the change stream; reconnecting"),
                Err(e) => {
                    tracing::warn!(upstream = %self.config.url, error = %e, ?backoff, "following the upstream failed; reconnecting")
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = stopping.wait_for(|stopping| *stopping) => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One WatchChanges stream, until it ends or fails.
    async fn stream(&self, slot: &ReplicaSlot, backlog: usize, progressed: &mut bool) -> Result<(), FollowError> {
        let held = slot.get().map(|r| (r.session_id(), r.serial()));
        let mut request = Request::new(pb::WatchChangesRequest {
            session_id: held.map(|(s, _)| s.to_string()).unwrap_or_default(),
            since_serial: held.map_or(0, |(_, serial)| serial),
            include_scoping: true,
        });
        request.metadata_mut().insert("authorization", self.bearer()?);
        let mut stream = self.client().watch_changes(request).await?.into_inner();
        // A snapshot being received: built aside, swapped in at its end.
        let mut building: Option<(Uuid, i64, Index)> = None;
        while let Some(message) = stream.message().await? {
            match message.event {
                Some(Event::Reset(reset)) => {
                    let session = Uuid::try_parse(&reset.session_id)
                        .map_err(|_| FollowError::Protocol("reset without a session id".into()))?;
                    building = Some((session, reset.serial, Index::default()));
                }
                Some(Event::Snapshot(chunk)) => {
                    let (_, _, index) = building
                        .as_mut()
                        .ok_or_else(|| FollowError::Protocol("snapshot chunk without a reset".into()))?;
                    for e in &chunk.entries {
                        let (prefix, entry) = entry_from_pb(e).map_err(|e| FollowError::Protocol(e.0))?;
                        index.insert(prefix, entry);
                    }
                }
                Some(Event::SnapshotEnd(end)) => {
                    let (session, serial, index) = building
                        .take()
                        .ok_or_else(|| FollowError::Protocol("snapshot end without a reset".into()))?;
                    if end.serial != serial {
                        return Err(FollowError::Protocol(
                            "snapshot ended at another serial than its reset".into(),
                        ));
                    }
                    install(slot, session, serial, index, backlog, self.config.journal);
                    *progressed = true;
                }
                Some(Event::Deltas(batch)) => {
                    let replica = match (&building, slot.get()) {
                        (None, Some(replica)) => replica,
                        _ => return Err(FollowError::Protocol("deltas before a complete snapshot".into())),
                    };
                    let applied = replica.serial();
                    let changes = batch
                        .deltas
                        .iter()
                        .filter(|d| d.serial > applied)
                        .map(|d| change_from_pb(d).map_err(|e| FollowError::Protocol(e.0)))
                        .collect::<Result<Vec<_>, _>>()?;
                    replica.apply(changes);
                    *progressed = true;
                }
                None => {}
            }
        }
        Ok(())
    }

    fn bearer(&self) -> Result<AsciiMetadataValue, FollowError> {
        let raw = read(&self.config.token_file)?;
        let token = String::from_utf8_lossy(&raw);
        format!("Bearer {}", token.trim())
            .parse()
            .map_err(|_| FollowError::Protocol(format!("{} does not hold a token", self.config.token_file.display())))
    }
}

/// Publishes the first snapshot as the replica, or replaces the index of
/// the one published (the upstream reset us: a new session, a restore, or
/// our serial no longer in its feed), which resets our own watchers too.
fn install(slot: &ReplicaSlot, session: Uuid, serial: i64, index: Index, backlog: usize, journal: usize) {
    let entries = index.len();
    match slot.get() {
        None => {
            let _ = slot.set(Replica::new(session, serial, index, backlog, Some(journal)));
            tracing::info!(%session, serial, entries, "first snapshot from the upstream applied; serving lookups");
        }
        Some(replica) => {
            let applied = replica.serial();
            if replica.session_id() == session && serial < applied {
                // The upstream is behind us (it reloaded from a restored
                // database): our serials above its may name other changes.
                replica.forget(session, serial, applied);
            }
            replica.install(session, serial, index);
            tracing::warn!(%session, serial, entries, "upstream sent a new snapshot; index replaced and watchers reset");
        }
    }
}

/// Why one stream from the upstream ended.
#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error(transparent)]
    Status(#[from] Status),
    #[error(transparent)]
    Token(#[from] UpstreamError),
    #[error("the upstream broke the change stream's protocol: {0}")]
    Protocol(String),
}
