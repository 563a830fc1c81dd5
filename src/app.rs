//! Assembles the service: health, reflection, authentication, limits and the
//! API services on one tonic server (plaintext or TLS), and runs it until
//! shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use sqlx::PgPool;
use tokio::{net::TcpListener, sync::watch, task::JoinSet};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Server, server::Router};
use tonic_health::{
    ServingStatus,
    pb::health_server::{Health, HealthServer},
    server::HealthReporter,
};
use tower::{
    ServiceBuilder,
    layer::util::{Identity, Stack},
    limit::GlobalConcurrencyLimitLayer,
    load_shed::LoadShedLayer,
};

use crate::auth::{AuthLayer, Credentials, credentials::RELOAD_INTERVAL, limits::RateLimits};
use crate::db::notify::Following;
use crate::domain::principal::RoleKind;
use crate::flags::{self, ServeArgs};
use crate::grpc::{
    institutions::InstitutionApi,
    isps::IspApi,
    lookup::LookupApi,
    registrations::RegistrationApi,
    review::ReviewApi,
    upstream::{Upstream, UpstreamConfig},
};
use crate::lookup::{Backfill, Lookups, ReplicaSlot, follower::load_and_follow};
use crate::observe::health;
use crate::observe::{self, Metrics, ObserveLayer, Vitals, summary::LookupSummary, vitals};
use crate::pb::{
    self, institution_service_server::InstitutionServiceServer, isp_service_server::IspServiceServer,
    lookup_service_server::LookupServiceServer, registration_service_server::RegistrationServiceServer,
    review_service_server::ReviewServiceServer,
};
use crate::registry::Registry;
use crate::tasks::{expiry, prune, prune::Retention};
use crate::tls::Tls;
use crate::web::{self, ConsoleRoutes, RdapRoutes};

/// Largest request the registry services decode: a registration with 64
/// prefixes and every text field full is a few kilobytes.
const MAX_REGISTRY_REQUEST: usize = 256 * 1024;
/// Largest lookup request: a full CheckAddresses batch of 100,000 IPv6
/// addresses in their longest text form is about 4.1 MB.
const MAX_LOOKUP_REQUEST: usize = 6 * 1024 * 1024;
/// Largest response: a 100,000-address answer with every address registered.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;
/// HTTP/2 header block limit (tokens and request ids are short).
const MAX_HEADER_LIST: u32 = 16 * 1024;
/// The layers every call passes, outermost last in the type (tower's order).
type Layers = Stack<
    Stack<AuthLayer, Stack<GlobalConcurrencyLimitLayer, Stack<LoadShedLayer, Stack<ObserveLayer, Identity>>>>,
    Identity,
>;
/// How often rate-limiter state of idle keys is dropped.
const LIMITER_CLEANUP_INTERVAL: Duration = Duration::from_secs(60);

/// Options of a running server that tests and `serve` choose.
#[derive(Clone)]
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
    /// Serve TLS (and require client certificates if it says so).
    pub tls: Option<Arc<Tls>>,
    /// Per-role rate overrides (calls per second per principal; 0 = none).
    pub rate_limits: Vec<(RoleKind, u32)>,
    pub failed_auth_rate: u32,
    pub credential_max_staleness: Duration,
    pub max_concurrent_requests: usize,
    pub max_concurrent_streams: u32,
    pub keepalive_interval: Duration,
    pub max_connection_age: Duration,
    pub max_connection_age_grace: Duration,
    /// WatchChanges streams at once; more answer RESOURCE_EXHAUSTED.
    pub max_watchers: usize,
    /// Where the replica, history lookups and credentials read (a hot
    /// standby will do); `None`: the primary. Writes always go to the primary.
    pub read_pool: Option<PgPool>,
    /// LISTEN for changes (else, and on a standby, follow by polling only).
    pub notifications: bool,
    /// Label calls with their token in the metrics (reveals who is connected).
    pub metrics_per_principal: bool,
    /// Readiness fails when the index is further behind the feed than this.
    pub max_feed_lag: Duration,
    /// How often lookups (logged one by one only at debug) are summarised.
    pub access_summary_interval: Duration,
    /// Pruning of the feed and the history; `None` disables it here.
    pub retention: Option<Retention>,
    /// Follow this replica instead of PostgreSQL and serve lookups only (a
    /// fan-out replica); PostgreSQL then only holds the credentials.
    pub upstream: Option<UpstreamConfig>,
}

/// Where a server listens: gRPC, and optionally the operator's HTTP
/// listener (metrics and health; without it nothing is recorded).
pub struct Listeners {
    pub grpc: TcpListener,
    pub http: Option<TcpListener>,
}

impl Options {
    /// The options `serve` runs with.
    pub fn from_args(args: &ServeArgs, tls: Option<Arc<Tls>>) -> Self {
        Self {
            shutdown_grace: args.shutdown_grace(),
            expiry_interval: args.expiry_interval(),
            feed_poll_interval: args.feed_poll_interval(),
            watch_backlog: crate::lookup::replica::DEFAULT_WATCH_BACKLOG,
            tls,
            rate_limits: args.rate_limits.clone(),
            failed_auth_rate: args.failed_auth_rate,
            credential_max_staleness: args.credential_max_staleness,
            max_concurrent_requests: args.max_concurrent_requests,
            max_concurrent_streams: args.max_concurrent_streams,
            keepalive_interval: args.keepalive_interval,
            max_connection_age: args.max_connection_age,
            max_connection_age_grace: args.max_connection_age_grace,
            max_watchers: args.max_watchers,
            read_pool: None,
            notifications: true,
            metrics_per_principal: args.metrics_per_principal,
            max_feed_lag: args.max_feed_lag,
            access_summary_interval: args.access_summary_interval,
            retention: args.retention(),
            upstream: args.upstream(),
        }
    }
}

impl Default for Options {
    /// The defaults `serve` has, plaintext.
    fn default() -> Self {
        let parse = |s: &str| flags::duration(s).unwrap_or(Duration::from_secs(60));
        Self {
            shutdown_grace: Duration::from_secs(flags::DEFAULT_SHUTDOWN_GRACE_SECS),
            expiry_interval: Some(Duration::from_secs(flags::DEFAULT_EXPIRY_INTERVAL_SECS)),
            feed_poll_interval: Duration::from_millis(flags::DEFAULT_FEED_POLL_INTERVAL_MS),
            watch_backlog: crate::lookup::replica::DEFAULT_WATCH_BACKLOG,
            tls: None,
            rate_limits: Vec::new(),
            failed_auth_rate: crate::auth::limits::DEFAULT_FAILED_AUTH_RATE,
            credential_max_staleness: parse(flags::DEFAULT_CREDENTIAL_MAX_STALENESS),
            max_concurrent_requests: flags::DEFAULT_MAX_CONCURRENT_REQUESTS,
            max_concurrent_streams: flags::DEFAULT_MAX_CONCURRENT_STREAMS,
            keepalive_interval: parse(flags::DEFAULT_KEEPALIVE_INTERVAL),
            max_connection_age: parse(flags::DEFAULT_MAX_CONNECTION_AGE),
            max_connection_age_grace: parse(flags::DEFAULT_MAX_CONNECTION_AGE_GRACE),
            max_watchers: flags::DEFAULT_MAX_WATCHERS,
            read_pool: None,
            notifications: true,
            metrics_per_principal: false,
            max_feed_lag: parse(flags::DEFAULT_MAX_FEED_LAG),
            access_summary_interval: parse(flags::DEFAULT_ACCESS_SUMMARY_INTERVAL),
            retention: Some(Retention {
                feed: parse(flags::DEFAULT_FEED_RETENTION),
                history: parse(flags::DEFAULT_HISTORY_RETENTION),
                every: parse(flags::DEFAULT_PRUNE_INTERVAL),
            }),
            upstream: None,
        }
    }
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
    let mut tasks = JoinSet::new();
    let parts = start_background(&pool, &options, listeners.http, &reporter, &stopping, &mut tasks).await?;
    let router = router(&options, parts, health_service)?;
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: health NOT_SERVING, draining in-flight calls");
        let _ = stopping.send(true);
        health::set(&reporter, ServingStatus::NotServing, serves_registry).await;
    };
    let result = run_until_shutdown(
        router,
        listeners.grpc,
        options.tls,
        signal,
        stopped,
        options.shutdown_grace,
    )
    .await;
    tasks.abort_all();
    result
}

/// What the router is built from, once the background work runs.
struct Parts {
    registry: Registry,
    lookups: Lookups,
    upstream: Option<Upstream>,
    auth: AuthLayer,
    metrics: Arc<Metrics>,
    summary: Arc<LookupSummary>,
}

/// Starts every background task into `tasks`: the credential follower, the
/// lookup replica's source (the feed, or an upstream), pruning and expiry
/// (not on a fan-out replica), and what the operator watches.
async fn start_background(
    pool: &PgPool,
    options: &Options,
    http: Option<TcpListener>,
    reporter: &HealthReporter,
    stopping: &watch::Sender<bool>,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<Parts> {
    let reads = options.read_pool.clone().unwrap_or_else(|| pool.clone());
    let following = Following::choose(&reads, options.notifications).await;
    let credentials = Credentials::load(reads.clone(), pool.clone(), options.credential_max_staleness).await?;
    tasks.spawn(
        credentials
            .clone()
            .follow(following, RELOAD_INTERVAL, stopping.subscribe()),
    );
    let limits = Arc::new(RateLimits::new(&options.rate_limits, options.failed_auth_rate));
    tasks.spawn(forget_idle_limits(limits.clone()));
    let registry = Registry::new(pool.clone());
    let expiry_stats = Arc::new(expiry::Stats::default());
    let replica: ReplicaSlot = Arc::default();
    let upstream = options.upstream.clone().map(Upstream::new).transpose()?;
    let backfill = match &upstream {
        // A fan-out replica: the active set from upstream, no writes.
        Some(upstream) => {
            let follow = upstream
                .clone()
                .follow(replica.clone(), options.watch_backlog, stopping.subscribe());
            tasks.spawn(follow);
            Backfill::Journal
        }
        None => {
            follow_database(
                pool,
                &registry,
                &reads,
                following,
                &replica,
                &expiry_stats,
                options,
                stopping,
                tasks,
            );
            Backfill::Feed(reads.clone())
        }
    };
    let lookups = Lookups::new(backfill, replica, options.max_watchers, stopping.subscribe());
    let metrics = Arc::new(match http {
        Some(_) => Metrics::enabled(options.metrics_per_principal),
        None => Metrics::disabled(),
    });
    let mut pools = vec![("primary", pool.clone())];
    if options.read_pool.is_some() {
        pools.push(("read", reads.clone()));
    }
    let vitals = Arc::new(Vitals::new(vitals::Sources {
        lookups: lookups.clone(),
        credentials: credentials.clone(),
        limits: limits.clone(),
        pools,
        expiry: expiry_stats,
        metrics: metrics.clone(),
        max_feed_lag: options.max_feed_lag,
        stopping: stopping.subscribe(),
    }));
    let summary = observe(
        pool,
        reads,
        vitals,
        metrics.clone(),
        http,
        reporter,
        options,
        stopping,
        tasks,
    );
    Ok(Parts {
        registry,
        lookups,
        upstream,
        auth: AuthLayer::new(credentials, limits),
        metrics,
        summary,
    })
}

/// A replica reading PostgreSQL: the feed follower, pruning and expiry.
#[allow(clippy::too_many_arguments, reason = "the pieces serve wires together, named")]
fn follow_database(
    pool: &PgPool,
    registry: &Registry,
    reads: &PgPool,
    following: Following,
    replica: &ReplicaSlot,
    expiry_stats: &Arc<expiry::Stats>,
    options: &Options,
    stopping: &watch::Sender<bool>,
    tasks: &mut JoinSet<()>,
) {
    tasks.spawn(load_and_follow(
        reads.clone(),
        replica.clone(),
        following,
        options.feed_poll_interval,
        options.watch_backlog,
        stopping.subscribe(),
    ));
    if let Some(retention) = options.retention {
        tasks.spawn(prune::run(pool.clone(), retention, stopping.subscribe()));
    }
    if let Some(every) = options.expiry_interval {
        tasks.spawn(expiry::run(
            registry.clone(),
            every,
            expiry_stats.clone(),
            stopping.subscribe(),
        ));
    }
}

/// What the operator watches: the health probe, the metrics and health
/// listener, and the periodic lookup summary (returned, for the router).
#[allow(clippy::too_many_arguments, reason = "the pieces serve wires together, named")]
fn observe(
    pool: &PgPool,
    reads: PgPool,
    vitals: Arc<Vitals>,
    metrics: Arc<Metrics>,
    http: Option<TcpListener>,
    reporter: &HealthReporter,
    options: &Options,
    stopping: &watch::Sender<bool>,
    tasks: &mut JoinSet<()>,
) -> Arc<LookupSummary> {
    tasks.spawn(health::probe(
        pool.clone(),
        reads,
        vitals.clone(),
        reporter.clone(),
        options.upstream.is_none(),
        stopping.subscribe(),
    ));
    if let Some(l) = http {
        tasks.spawn(fold_latencies(metrics));
        tasks.spawn(observe::http::serve(l, vitals));
    }
    let summary = Arc::new(LookupSummary::default());
    let (every, stopped) = (options.access_summary_interval, stopping.subscribe());
    tasks.spawn({
        let summary = summary.clone();
        async move { summary.log_every(every, stopped).await }
    });
    summary
}

/// The tonic server: transport settings, the layers (outermost first) and
/// every service (a fan-out replica serves lookups only: UNIMPLEMENTED for
/// the rest).
fn router<H: Health>(options: &Options, parts: Parts, health: HealthServer<H>) -> anyhow::Result<Router<Layers>> {
    let serves_registry = parts.upstream.is_none();
    let Parts {
        registry,
        lookups,
        upstream,
        auth,
        metrics,
        summary,
    } = parts;
    let rdap = RdapRoutes::new(web::rdap::router(lookups.clone(), auth.clone()));
    let console = ConsoleRoutes::new(web::console::router(
        registry.clone(),
        auth.clone(),
        options.tls.is_some(),
    ));
    let registry_service = |on: bool| on.then(|| registry.clone());
    Ok(Server::builder()
        // HTTP/1.1 too, for RDAP clients (gRPC stays on HTTP/2).
        .accept_http1(true)
        .max_concurrent_streams(options.max_concurrent_streams)
        .http2_keepalive_interval(Some(options.keepalive_interval))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .max_connection_age(options.max_connection_age)
        .max_connection_age_grace(options.max_connection_age_grace)
        .http2_max_header_list_size(MAX_HEADER_LIST)
        .tcp_nodelay(true)
        // Outermost first: every call is counted and logged, then beyond
        // the limit answered at once rather than queued.
        .layer(
            ServiceBuilder::new()
                .layer(ObserveLayer::new(metrics, summary))
                .layer(LoadShedLayer::new())
                .layer(GlobalConcurrencyLimitLayer::new(options.max_concurrent_requests))
                .layer(auth)
                .into_inner(),
        )
        .add_service(health)
        .add_service(rdap)
        .add_optional_service(serves_registry.then_some(console))
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_optional_service(registry_service(serves_registry).map(|r| {
            InstitutionServiceServer::new(InstitutionApi::new(r))
                .max_decoding_message_size(MAX_REGISTRY_REQUEST)
                .max_encoding_message_size(MAX_RESPONSE)
        }))
        .add_optional_service(registry_service(serves_registry).map(|r| {
            RegistrationServiceServer::new(RegistrationApi::new(r))
                .max_decoding_message_size(MAX_REGISTRY_REQUEST)
                .max_encoding_message_size(MAX_RESPONSE)
        }))
        .add_optional_service(registry_service(serves_registry).map(|r| {
            ReviewServiceServer::new(ReviewApi::new(r))
                .max_decoding_message_size(MAX_REGISTRY_REQUEST)
                .max_encoding_message_size(MAX_RESPONSE)
        }))
        .add_optional_service(registry_service(serves_registry).map(|r| {
            IspServiceServer::new(IspApi::new(r))
                .max_decoding_message_size(MAX_REGISTRY_REQUEST)
                .max_encoding_message_size(MAX_RESPONSE)
        }))
        .add_service(
            LookupServiceServer::new(LookupApi::new(lookups, upstream))
                .max_decoding_message_size(MAX_LOOKUP_REQUEST)
                .max_encoding_message_size(MAX_RESPONSE),
        ))
}

/// Server reflection over our descriptors and health's.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// Serves until `signal` completes, then for at most `grace` while calls
/// in flight finish.
async fn run_until_shutdown(
    router: Router<Layers>,
    grpc: TcpListener,
    tls: Option<Arc<Tls>>,
    signal: impl Future<Output = ()> + Send + 'static,
    mut stopped: watch::Receiver<bool>,
    grace: Duration,
) -> anyhow::Result<()> {
    let server = async move {
        match tls {
            Some(tls) => router.serve_with_incoming_shutdown(tls.incoming(grpc), signal).await,
            None => router.serve_with_incoming_shutdown(incoming(grpc), signal).await,
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

async fn forget_idle_limits(limits: Arc<RateLimits>) {
    loop {
        tokio::time::sleep(LIMITER_CLEANUP_INTERVAL).await;
        limits.forget_idle();
    }
}

/// Folds recorded latencies into histogram buckets now and then, so memory
/// stays bounded when nobody scrapes.
async fn fold_latencies(metrics: Arc<Metrics>) {
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        metrics.upkeep();
    }
}

/// Accepted plaintext connections with Nagle's algorithm off: responses that
/// span several segments must not wait for delayed ACKs (tonic sets this
/// only on listeners it binds itself).
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
