//! Following the registry's change stream (`WatchChanges`) from the first
//! upstream that answers, in the order given (failover, as rtrtr's `any`
//! unit), resuming from the held position after a broken link: deltas when
//! the upstream still has them, a reset and a full snapshot otherwise. A
//! snapshot is collected aside and replaces the held set only once complete,
//! so nothing downstream ever sees a half-filled set.

use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::config::Config;
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

/// The held set and the snapshot being collected.
#[derive(Debug, Default)]
pub struct Follower {
    pub held: ActiveSet,
    staging: Option<ActiveSet>,
    /// Resets received (each followed by a full snapshot).
    pub resets: u64,
}

impl Follower {
    pub fn new(held: ActiveSet) -> Self {
        Self {
            held,
            staging: None,
            resets: 0,
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
                self.staging = Some(ActiveSet::new(position, []));
                self.resets += 1;
                Ok(Applied::Pending)
            }
            Event::Snapshot(chunk) => {
                let staging = self
                    .staging
                    .as_mut()
                    .ok_or_else(|| protocol("a snapshot chunk without a reset"))?;
                for e in &chunk.entries {
                    staging.announce(Entry::from_pb(e).map_err(protocol)?);
                }
                Ok(Applied::Pending)
            }
            Event::SnapshotEnd(end) => {
                let mut complete = self
                    .staging
                    .take()
                    .ok_or_else(|| protocol("a snapshot end without a reset"))?;
                complete.position.serial = end.serial;
                self.held = complete;
                Ok(Applied::Changed)
            }
            Event::Deltas(batch) => {
                if self.staging.is_some() {
                    return Err(protocol("deltas inside a snapshot"));
                }
                for d in batch.deltas {
                    let entry = d.entry.as_ref().ok_or_else(|| protocol("a delta without its entry"))?;
                    let entry = Entry::from_pb(entry).map_err(protocol)?;
                    match pb::ChangeOperation::try_from(d.operation) {
                        Ok(pb::ChangeOperation::Announce) => self.held.announce(entry),
                        Ok(pb::ChangeOperation::Withdraw) => {
                            self.held.withdraw(&entry.reference, entry.prefix);
                        }
                        _ => return Err(protocol("a delta that neither announces nor withdraws")),
                    }
                    self.held.position.serial = d.serial;
                }
                Ok(Applied::Changed)
            }
        }
    }

    /// Follows one upstream until the stream breaks; `changed` runs after
    /// every message that changed the held set.
    pub async fn follow_one(
        &mut self,
        url: &str,
        config: &Config,
        changed: &mut impl FnMut(&ActiveSet),
    ) -> Result<(), StreamError> {
        let channel = endpoint(url, config)?.connect().await?;
        let mut client = LookupServiceClient::new(channel).max_decoding_message_size(64 << 20);
        let mut request = tonic::Request::new(pb::WatchChangesRequest {
            session_id: self.held.position.session.clone(),
            since_serial: self.held.position.serial,
            include_scoping: false,
        });
        let bearer = format!("Bearer {}", config.token)
            .parse()
            .map_err(|_| protocol("the token is not a valid header value"))?;
        request.metadata_mut().insert("authorization", bearer);
        let mut stream = client.watch_changes(request).await?.into_inner();
        tracing::info!(upstream = url, session = %self.held.position.session, serial = self.held.position.serial, "following");
        while let Some(message) = stream.next().await {
            let Some(event) = message?.event else { continue };
            if self.apply(event)? == Applied::Changed {
                changed(&self.held);
            }
        }
        Err(StreamError::Ended)
    }

    /// Follows the upstreams in order, over and over, until `stop` resolves.
    pub async fn follow(
        &mut self,
        config: &Config,
        mut changed: impl FnMut(&ActiveSet),
        stop: impl Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let mut backoff = Duration::from_secs(1);
        loop {
            for url in &config.upstreams {
                let started = tokio::time::Instant::now();
                let ended = tokio::select! {
                    ended = self.follow_one(url, config, &mut changed) => ended,
                    () = &mut stop => return,
                };
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
