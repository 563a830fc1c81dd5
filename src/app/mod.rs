//! Assembles the service: health, reflection, authentication, limits and the
//! API services on one tonic server (plaintext or TLS), and runs it until
//! shutdown: `serve` starts the background work (`background`), builds the
//! router (`router`) and runs until shutdown.

mod background;
mod options;
mod router;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use sqlx::PgPool;
use tokio::{net::TcpListener, sync::watch, task::JoinSet};
use tonic::transport::server::Router;
use tonic_health::ServingStatus;

pub use options::Options;

use background::Background;
use router::{Layers, router};

use crate::admission::{self, peers::PeerLimits};
use crate::observe::health;
use crate::tls::Tls;

/// Where a server listens: gRPC, and optionally the operator's HTTP
/// listener (metrics and health; without it nothing is recorded).
pub struct Listeners {
    pub grpc: TcpListener,
    pub http: Option<TcpListener>,
}

/// Serves the API on `listener` until `shutdown` completes, then lets
/// in-flight calls finish for at most `shutdown_grace`. Health reports
/// NOT_SERVING from the moment shutdown begins.
pub async fn serve(
    listeners: Listeners,
    pool: PgPool,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let serves_registry = options.upstream.is_none();
    health::set(&reporter, ServingStatus::NotServing, serves_registry).await;
    let (stopping, stopped) = watch::channel(false);
    let mut background = Background {
        pool: &pool,
        reads: options.read_pool.clone().unwrap_or_else(|| pool.clone()),
        options: &options,
        stopping: &stopping,
        tasks: JoinSet::new(),
    };
    let parts = background.start(listeners.http, &reporter).await?;
    let mut tasks = background.tasks;
    let router = router(&options, parts, health_service)?;
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: health NOT_SERVING, draining in-flight calls");
        let _ = stopping.send(true);
        health::set(&reporter, ServingStatus::NotServing, serves_registry).await;
    };
    let listener = Listener {
        grpc: listeners.grpc,
        tls: options.tls,
        peers: options.peer_limits,
    };
    let result = run_until_shutdown(router, listener, signal, stopped, options.shutdown_grace).await;
    tasks.abort_all();
    result
}

/// The gRPC listener and how connections are admitted on it.
struct Listener {
    grpc: TcpListener,
    tls: Option<Arc<Tls>>,
    peers: PeerLimits,
}

/// Serves until `signal` completes, then for at most `grace` while calls
/// in flight finish.
async fn run_until_shutdown(
    router: Router<Layers>,
    listener: Listener,
    signal: impl Future<Output = ()> + Send + 'static,
    mut stopped: watch::Receiver<bool>,
    grace: Duration,
) -> anyhow::Result<()> {
    let Listener { grpc, tls, peers } = listener;
    let server = async move {
        match tls {
            Some(tls) => {
                let incoming = tls.incoming(grpc, peers);
                router.serve_with_incoming_shutdown(incoming, signal).await
            }
            None => {
                let incoming = admission::peers::incoming(grpc, peers);
                router.serve_with_incoming_shutdown(incoming, signal).await
            }
        }
    };
    let deadline = async move {
        let _ = stopped.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => result.map_err(anyhow::Error::from),
        () = deadline => {
            tracing::warn!(?grace, "grace period over; abandoning calls still in flight");
            Ok(())
        }
    }
}

/// Binds the listen address; separate so callers can log the bound port.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
