//! Assembles the service: health, reflection, authentication and the API
//! services on one tonic server, and runs it until shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{codegen::http, transport::Server};
use tonic_health::ServingStatus;

use crate::auth::{AuthLayer, Credentials};
use crate::grpc::{
    institutions::InstitutionApi, isps::IspApi, lookup::LookupApi, registrations::RegistrationApi, review::ReviewApi,
};
use crate::lookup::{Lookups, ReplicaSlot, replica::load_and_follow};
use crate::pb::{
    self, institution_service_server::InstitutionServiceServer, isp_service_server::IspServiceServer,
    lookup_service_server::LookupServiceServer, registration_service_server::RegistrationServiceServer,
    review_service_server::ReviewServiceServer,
};
use crate::registry::Registry;
use crate::tasks::{expiry, health};

/// How often credentials are reloaded even without a change notification.
const CREDENTIAL_RELOAD_INTERVAL: Duration = Duration::from_secs(30);

/// Options of a running server that tests and `serve` choose.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long in-flight calls may run on after shutdown begins.
    pub shutdown_grace: Duration,
    /// How often the expiry task looks for registrations past their validity
    /// (or whose institution's PSEB registration lapsed); `None` disables it.
    pub expiry_interval: Option<Duration>,
    /// How often the lookup replica reads the change feed even without a
    /// notification (a lost NOTIFY delays a change by at most this).
    pub feed_poll_interval: Duration,
    /// Applied change batches kept for WatchChanges streams; a consumer
    /// further behind is dropped (RESOURCE_EXHAUSTED) and resumes.
    pub watch_backlog: usize,
}

/// Serves the API on `listener` until `shutdown` completes, then lets
/// in-flight calls finish for at most `shutdown_grace`. Health reports
/// NOT_SERVING from the moment shutdown begins.
pub async fn serve(
    listener: TcpListener,
    pool: PgPool,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    health::set(&reporter, ServingStatus::NotServing).await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
    let credentials = Credentials::load(pool.clone()).await?;
    let credential_follower = tokio::spawn(
        credentials
            .clone()
            .follow(CREDENTIAL_RELOAD_INTERVAL, stopping_tx.subscribe()),
    );
    let replica: ReplicaSlot = Arc::default();
    let follower = tokio::spawn(load_and_follow(
        pool.clone(),
        replica.clone(),
        options.feed_poll_interval,
        options.watch_backlog,
        stopping_tx.subscribe(),
    ));
    let probe = tokio::spawn(health::probe(
        pool.clone(),
        replica.clone(),
        reporter.clone(),
        stopping_tx.subscribe(),
    ));
    let registry = Registry::new(pool.clone());
    let expiry = options
        .expiry_interval
        .map(|every| tokio::spawn(expiry::run(registry.clone(), every, stopping_tx.subscribe())));

    let lookups = Lookups::new(pool.clone(), replica, stopping_tx.subscribe());
    let shutdown_reporter = reporter.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: health NOT_SERVING, draining in-flight calls");
        let _ = stopping_tx.send(true);
        health::set(&shutdown_reporter, ServingStatus::NotServing).await;
    };

    let server = Server::builder()
        .trace_fn(request_span)
        .layer(AuthLayer::new(credentials))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(InstitutionServiceServer::new(InstitutionApi::new(registry.clone())))
        .add_service(RegistrationServiceServer::new(RegistrationApi::new(registry.clone())))
        .add_service(ReviewServiceServer::new(ReviewApi::new(registry.clone())))
        .add_service(IspServiceServer::new(IspApi::new(registry)))
        .add_service(LookupServiceServer::new(LookupApi::new(lookups)))
        .serve_with_incoming_shutdown(incoming(listener), signal);

    let grace = options.shutdown_grace;
    let deadline = async move {
        let _ = stopping_rx.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(grace).await;
    };
    let result = tokio::select! {
        result = server => result.map_err(anyhow::Error::from),
        () = deadline => {
            tracing::warn!(?grace, "grace period over; abandoning calls still in flight");
            Ok(())
        }
    };
    probe.abort();
    follower.abort();
    credential_follower.abort();
    if let Some(expiry) = expiry {
        expiry.abort();
    }
    result
}

/// One span per call, carrying the caller's `x-request-id` or a fresh one.
/// Lookups, the hot path, get theirs at debug level only.
fn request_span(req: &http::Request<()>) -> tracing::Span {
    let path = req.uri().path();
    let caller_id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok());
    if path.starts_with("/vpnregistry.v1.LookupService/") {
        return tracing::debug_span!("rpc", method = %path, request_id = caller_id.unwrap_or_default());
    }
    let request_id = caller_id.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    tracing::info_span!("rpc", method = %path, %request_id)
}

/// Accepted connections with Nagle's algorithm off: responses that span
/// several segments must not wait for delayed ACKs (tonic sets this only on
/// listeners it binds itself).
pub fn incoming(listener: TcpListener) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt as _;
    TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}

/// Binds the listen address; separate so callers can log the bound port.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
