//! Starting a server for a test, one way: [`TestApp::builder`] (or
//! [`spawn_app`] for the defaults) starts the real server on 127.0.0.1:0
//! over the test's fresh database, as the runtime role `serve` runs as, and
//! waits until it reports SERVING; [`TestApp::attach`] gives clients of a
//! `vpn-registry serve` process a test started itself. [`eventually`] waits
//! for a condition; nothing here sleeps for a fixed time.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use sqlx::PgPool;
use tokio::sync::{OnceCell, oneshot};
use tonic::transport::{Channel, ClientTlsConfig};
use vpn_registry::{app, clock::Clock, domain::principal::RoleKind, grpc::upstream::UpstreamConfig, tls::Tls};

/// A server under test and what its clients need.
pub struct TestApp {
    pub addr: SocketAddr,
    /// The operator's listener: /metrics, /livez, /readyz, /status.
    pub http_addr: SocketAddr,
    pub pool: PgPool,
    pub channel: Channel,
    /// How the test's clients speak TLS to a TLS server.
    pub client_tls: Option<ClientTlsConfig>,
    /// The server's clock (moved forward by [`TestApp::advance_clock`]).
    clock: Clock,
    shutdown: Option<oneshot::Sender<()>>,
    /// The app's reviewer and ISP desk (`ptcl`), issued on first use.
    pub(crate) reviewer_token: OnceCell<String>,
    pub(crate) isp_token: OnceCell<String>,
}

/// Options for test servers: no limit a test reaches by accident (the
/// tests of the limits set their own).
pub fn test_options() -> app::Options {
    app::Options {
        shutdown_grace: Duration::from_secs(5),
        expiry_interval: None,
        feed_poll_interval: Duration::from_millis(200),
        watch_backlog: 8,
        rate_limits: RoleKind::ALL.iter().map(|r| (*r, 0)).collect(),
        max_in_flight: RoleKind::ALL.iter().map(|r| (*r, 0)).collect(),
        max_watchers_per_principal: RoleKind::ALL.iter().map(|r| (*r, 0)).collect(),
        failed_auth_rate: 1_000_000,
        // The pruning tests prune when they choose.
        retention: None,
        document_keys: Some(std::sync::Arc::new(
            vpn_registry::vault::Keyring::load(&[test_key_file().to_owned()]).unwrap(),
        )),
        ..app::Options::default()
    }
}

/// The document key file of this test run (made once, in the target's
/// temporary directory).
pub fn test_key_file() -> &'static std::path::Path {
    static FILE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("documents.key");
        let _ = std::fs::remove_file(&file);
        vpn_registry::vault::generate_key_file(&file).unwrap();
        file
    })
}

/// A server with [`test_options`] over `pool` (a fresh, migrated database).
pub async fn spawn_app(pool: PgPool) -> TestApp {
    TestApp::builder(pool).start().await
}

/// How a test's server is to run; [`Builder::start`] starts it.
pub struct Builder {
    pool: PgPool,
    options: app::Options,
    client_tls: Option<ClientTlsConfig>,
    server_pool: Option<PgPool>,
    wait_until_serving: bool,
}

impl TestApp {
    /// A server over `pool`'s database with [`test_options`], to adjust.
    pub fn builder(pool: PgPool) -> Builder {
        Builder {
            pool,
            options: test_options(),
            client_tls: None,
            server_pool: None,
            wait_until_serving: true,
        }
    }
}

impl Builder {
    /// Adjusts the options (limits, intervals, retention, ...).
    pub fn options(mut self, adjust: impl FnOnce(&mut app::Options)) -> Self {
        adjust(&mut self.options);
        self
    }

    /// Serves TLS with `server`; the test's clients speak it with `client`.
    pub fn tls(mut self, server: Arc<Tls>, client: ClientTlsConfig) -> Self {
        self.options.tls = Some(server);
        self.client_tls = Some(client);
        self
    }

    /// Follows `upstream` instead of PostgreSQL (a fan-out replica).
    pub fn upstream(mut self, upstream: UpstreamConfig) -> Self {
        self.options.upstream = Some(upstream);
        self
    }

    /// Reads (replica, history, credentials) through `reads`.
    pub fn read_pool(mut self, reads: PgPool) -> Self {
        self.options.read_pool = Some(reads);
        self
    }

    /// Runs over `server_pool` instead of a fresh pool of the runtime role
    /// (a runtime pool through a proxy the test can cut, say).
    pub fn server_pool(mut self, server_pool: PgPool) -> Self {
        self.server_pool = Some(server_pool);
        self
    }

    /// Returns as soon as the server listens, before it reports SERVING.
    pub fn without_waiting(mut self) -> Self {
        self.wait_until_serving = false;
        self
    }

    pub async fn start(self) -> TestApp {
        let server_pool = match self.server_pool {
            Some(pool) => pool,
            None => runtime_pool(&self.pool).await,
        };
        let grpc = app::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let http = app::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let (addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
        let (tx, rx) = oneshot::channel();
        let clock = self.options.clock.clone();
        let listeners = app::Listeners { grpc, http: Some(http) };
        tokio::spawn(app::serve(listeners, server_pool, self.options, async {
            let _ = rx.await;
        }));
        let channel = connect(addr, self.client_tls.as_ref());
        if self.wait_until_serving {
            wait_until_serving(channel.clone()).await;
        }
        let mut app = TestApp::new(addr, http_addr, self.pool, channel).await;
        app.client_tls = self.client_tls;
        app.clock = clock;
        app.shutdown = Some(tx);
        app
    }
}

/// A lazy channel to the server at `addr` (TLS with `tls`, for `localhost`).
fn connect(addr: SocketAddr, tls: Option<&ClientTlsConfig>) -> Channel {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Channel::from_shared(format!("{scheme}://localhost:{}", addr.port())).unwrap();
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls.clone()).unwrap();
    }
    endpoint.connect_lazy()
}

impl TestApp {
    /// Clients of a server running elsewhere (a `vpn-registry serve`
    /// process) on `pool`'s database, once it reports SERVING.
    pub async fn attach(addr: SocketAddr, http_addr: SocketAddr, pool: PgPool) -> Self {
        let channel = connect(addr, None);
        wait_until_serving(channel.clone()).await;
        Self::new(addr, http_addr, pool, channel).await
    }

    /// Clients on `channel`, with the ISP the tests attest as (a second
    /// server on the database finds it there).
    async fn new(addr: SocketAddr, http_addr: SocketAddr, pool: PgPool, channel: Channel) -> Self {
        sqlx::query("INSERT INTO isps (code, name) VALUES ('ptcl', 'Pakistan Telecommunication Company Ltd') ON CONFLICT DO NOTHING")
            .execute(&pool)
            .await
            .unwrap();
        TestApp {
            addr,
            http_addr,
            pool,
            channel,
            client_tls: None,
            clock: Clock::default(),
            shutdown: None,
            reviewer_token: OnceCell::new(),
            isp_token: OnceCell::new(),
        }
    }

    /// A channel on a connection of its own (with the app's client TLS).
    pub fn new_connection(&self) -> Channel {
        connect(self.addr, self.client_tls.as_ref())
    }

    /// Moves the server's clock `by` into the future (token expiry).
    pub fn advance_clock(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// GETs `path` from the server's metrics and health listener.
    pub async fn http(&self, path: &str) -> (u16, String) {
        vpn_registry::observe::http::fetch(self.http_addr, path).await.unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Health turns SERVING once the database is reachable and the lookup index
/// is loaded; tests start from there, as a load balancer would.
async fn wait_until_serving(channel: Channel) {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let health = HealthClient::new(channel);
    eventually("the server reports SERVING", Duration::from_secs(30), || {
        let mut health = health.clone();
        async move {
            let status = health.check(HealthCheckRequest::default()).await;
            status
                .is_ok_and(|s| s.into_inner().status == ServingStatus::Serving as i32)
                .then_some(())
        }
    })
    .await
}

/// Waits until `check` answers `Some`, asking every 10 ms; panics saying
/// `what` never happened if `within` passes first.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The PostgreSQL role the servers under test run as: what `serve` runs as
/// in production (no schema changes, no rewriting of audit or feed rows).
pub const RUNTIME_ROLE: &str = "vpn_registry_runtime";

/// A pool on `pool`'s database acting as [`RUNTIME_ROLE`], granted what
/// `vpn-registry migrate` grants it.
pub async fn runtime_pool(pool: &PgPool) -> PgPool {
    runtime_pool_via(pool, pool.connect_options().get_port()).await
}

/// [`runtime_pool`] connecting through `port` on 127.0.0.1 (a [`Proxy`]
/// the test can cut).
///
/// [`Proxy`]: crate::proxy::Proxy
pub async fn runtime_pool_via(pool: &PgPool, port: u16) -> PgPool {
    static ROLE: OnceCell<()> = OnceCell::const_new();
    ROLE.get_or_init(|| async {
        sqlx::query(
            "DO $$ BEGIN CREATE ROLE vpn_registry_runtime NOLOGIN;
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
        )
        .execute(pool)
        .await
        .unwrap();
    })
    .await;
    vpn_registry::db::grant_runtime(pool, RUNTIME_ROLE).await.unwrap();
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::Executor::execute(&mut *conn, "SET ROLE vpn_registry_runtime").await?;
                Ok(())
            })
        })
        .acquire_timeout(Duration::from_secs(5))
        .connect_with((*pool.connect_options()).clone().host("127.0.0.1").port(port))
        .await
        .unwrap()
}
