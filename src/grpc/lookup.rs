//! LookupService: checks answered by this process's lookups
//! (`lookup::Lookups`), and the change stream for gateways that keep their
//! own copy.

use std::{pin::Pin, sync::Arc};

use tokio_stream::{Stream, StreamExt as _, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::convert::{self, check_result, watch_event_to_pb};
use super::one_at_a_time::OneAtATime;
use super::upstream::Upstream;
use crate::auth::principal;
use crate::domain::Violations;
use crate::lookup::{Lookups, Terms, history::is_past, scope, stream::WatchEvent};
use crate::pb::{self, lookup_service_server::LookupService};

pub struct LookupApi {
    lookups: Lookups,
    /// A fan-out replica's upstream, asked what this process cannot answer.
    upstream: Option<Upstream>,
    /// Taken while a snapshot chunk is encoded.
    snapshot_encoding: Arc<OneAtATime>,
}

impl LookupApi {
    pub fn new(lookups: Lookups, upstream: Option<Upstream>) -> Self {
        Self {
            lookups,
            upstream,
            snapshot_encoding: Arc::default(),
        }
    }

    /// The upstream to forward a check on `terms` to: a fan-out replica
    /// holds the present, not the past.
    fn forward(&self, terms: &Terms) -> Option<&Upstream> {
        self.upstream.as_ref().filter(|_| terms.at.is_some_and(is_past))
    }
}

/// The stream WatchChanges returns.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchChangesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl LookupService for LookupApi {
    async fn check_address(&self, req: Request<pb::CheckAddressRequest>) -> Result<Response<pb::CheckResult>, Status> {
        let scope = scope(principal(&req)?)?;
        let msg = req.get_ref();
        let mut v = Violations::default();
        let address = convert::addr("address", &msg.address, &mut v);
        let terms = convert::terms(msg.at.as_ref(), msg.min_serial, req.metadata(), scope, &mut v);
        let (Some(addr), true) = (address, v.is_empty()) else {
            return Err(v.into());
        };
        if let Some(upstream) = self.forward(&terms) {
            return Ok(Response::new(
                upstream.check_address(msg.clone(), req.metadata()).await?,
            ));
        }
        let (found, serial) = self.lookups.check(addr, None, &terms).await?;
        Ok(Response::new(check_result(
            found.as_ref().map(|m| (m.prefix, &m.entry)),
            serial,
        )))
    }

    async fn check_flow(&self, req: Request<pb::CheckFlowRequest>) -> Result<Response<pb::CheckResult>, Status> {
        let scope = scope(principal(&req)?)?;
        let msg = req.get_ref();
        let mut v = Violations::default();
        let source = convert::addr("source", &msg.source, &mut v);
        let peer = convert::addr("peer", &msg.peer, &mut v);
        let terms = convert::terms(msg.at.as_ref(), msg.min_serial, req.metadata(), scope, &mut v);
        let (Some(addr), Some(peer), true) = (source, peer, v.is_empty()) else {
            return Err(v.into());
        };
        if let Some(upstream) = self.forward(&terms) {
            return Ok(Response::new(upstream.check_flow(msg.clone(), req.metadata()).await?));
        }
        let (found, serial) = self.lookups.check(addr, Some(peer), &terms).await?;
        Ok(Response::new(check_result(
            found.as_ref().map(|m| (m.prefix, &m.entry)),
            serial,
        )))
    }

    async fn check_addresses(
        &self,
        req: Request<pb::CheckAddressesRequest>,
    ) -> Result<Response<pb::CheckAddressesResponse>, Status> {
        let scope = scope(principal(&req)?)?;
        let (addrs, terms) = convert::batch(req.get_ref(), req.metadata(), scope)?;
        if let Some(upstream) = self.forward(&terms) {
            let answers = upstream.check_addresses(req.get_ref().clone(), req.metadata()).await?;
            return Ok(Response::new(answers));
        }
        let mut results = vec![pb::CheckResult::default(); addrs.len()];
        let serial = self
            .lookups
            .check_batch(&addrs, &terms, |i, found| {
                if found.is_some() {
                    results[i] = check_result(found, 0);
                }
            })
            .await?;
        Ok(Response::new(pb::CheckAddressesResponse { results, serial }))
    }

    type WatchChangesStream = WatchStream;

    async fn watch_changes(
        &self,
        req: Request<pb::WatchChangesRequest>,
    ) -> Result<Response<Self::WatchChangesStream>, Status> {
        let msg = req.get_ref();
        let session = Uuid::try_parse(&msg.session_id).ok();
        let watch = self
            .lookups
            .watch(principal(&req)?, session, msg.since_serial, msg.include_scoping)?;
        // The terminal status has its own channel, so it reaches a watcher
        // whose data buffer is full; merged, it ends the stream.
        let end = ReceiverStream::new(watch.end).map(|e| Err(Status::from(e)));
        let view = Arc::new(watch.view);
        let encoding = self.snapshot_encoding.clone();
        let events = ReceiverStream::new(watch.events)
            .then(move |e| {
                let (view, encoding) = (view.clone(), encoding.clone());
                async move {
                    if !matches!(e, WatchEvent::SnapshotChunk { .. }) {
                        return watch_event_to_pb(e, &view);
                    }
                    // Encoding a chunk takes a fraction of a millisecond; one
                    // at a time across all streams, each after a turn of the
                    // scheduler, so that snapshots (a reconnect storm of them)
                    // never hold both workers while lookups wait.
                    encoding.take(|| watch_event_to_pb(e, &view)).await
                }
            })
            .filter_map(|m| m.map(Ok));
        Ok(Response::new(Box::pin(end.merge(events))))
    }
}
