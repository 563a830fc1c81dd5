//! The baseline servers: the same service shapes doing no work, so that a
//! ratio against them is what our work costs.

use super::*;

/// The baseline: the same service shapes, no work at all. With `canned`,
/// CheckAddresses answers every other address with a fixed, pre-built match
/// (the mix the bench asks for), so its responses carry the same bytes as
/// ours; without it every answer is an empty "not registered".
pub(crate) struct Empty {
    canned: Option<pb::CheckResult>,
}

#[tonic::async_trait]
impl LookupService for Empty {
    async fn check_address(&self, _: Request<pb::CheckAddressRequest>) -> Result<Response<pb::CheckResult>, Status> {
        Ok(Response::new(pb::CheckResult::default()))
    }
    async fn check_flow(&self, _: Request<pb::CheckFlowRequest>) -> Result<Response<pb::CheckResult>, Status> {
        Ok(Response::new(pb::CheckResult::default()))
    }
    async fn check_addresses(
        &self,
        req: Request<pb::CheckAddressesRequest>,
    ) -> Result<Response<pb::CheckAddressesResponse>, Status> {
        let n = req.into_inner().addresses.len();
        let results = match &self.canned {
            Some(hit) => (0..n)
                .map(|i| {
                    if i % 2 == 0 {
                        hit.clone()
                    } else {
                        pb::CheckResult::default()
                    }
                })
                .collect(),
            None => vec![pb::CheckResult::default(); n],
        };
        Ok(Response::new(pb::CheckAddressesResponse { results, serial: 0 }))
    }
    type WatchChangesStream = tokio_stream::Empty<Result<pb::WatchChangesResponse, Status>>;
    async fn watch_changes(
        &self,
        _: Request<pb::WatchChangesRequest>,
    ) -> Result<Response<Self::WatchChangesStream>, Status> {
        Err(Status::unimplemented("baseline"))
    }
}

/// A match as ours would answer it, for the canned baseline.
pub(crate) fn canned_hit() -> pb::CheckResult {
    pb::CheckResult {
        registered: true,
        reference: "VPN-2026-0123456".into(),
        kind: pb::RegistrationKind::Vpn as i32,
        institution_category: pb::InstitutionCategory::Company as i32,
        matched_prefix: "64.18.214.0/26".into(),
        valid_until: Some(prost_types::Timestamp {
            seconds: 1_830_000_000,
            nanos: 123_456_000,
        }),
        serial: 0,
    }
}

pub(crate) async fn start_empty(
    canned: Option<pb::CheckResult>,
) -> anyhow::Result<(SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let router = tonic::transport::Server::builder().add_service(LookupServiceServer::new(Empty { canned }));
    let stop = async {
        let _ = rx.await;
    };
    tokio::spawn(async move {
        match TLS.get() {
            Some((tls, _)) => {
                router
                    .serve_with_incoming_shutdown(tls.clone().incoming(listener, Default::default()), stop)
                    .await
            }
            None => {
                router
                    .serve_with_incoming_shutdown(
                        vpn_registry::admission::peers::incoming(listener, Default::default()),
                        stop,
                    )
                    .await
            }
        }
    });
    Ok((addr, tx))
}
