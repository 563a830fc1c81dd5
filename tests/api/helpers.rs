//! Test harness: a real server on a random port over a fresh database, real
//! gRPC clients, and credentials issued the way the CLI issues them.

use prost::Message as _;
use sqlx::PgPool;
use tokio::sync::{OnceCell, oneshot};
use tonic::{
    Request, Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, ClientTlsConfig},
};
use uuid::Uuid;
use vpn_registry::{
    app,
    auth::token,
    db::tokens,
    domain::{
        decision::Decision,
        principal::{Actor, Role, RoleKind},
    },
    grpc::review::{self, DecisionFields},
    pb::{
        self, institution_service_client::InstitutionServiceClient, isp_service_client::IspServiceClient,
        lookup_service_client::LookupServiceClient, registration_service_client::RegistrationServiceClient,
        review_service_client::ReviewServiceClient,
    },
    registry::Registry,
};

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    /// The operator's listener: /metrics, /livez, /readyz, /status.
    pub http_addr: std::net::SocketAddr,
    pub pool: PgPool,
    pub channel: Channel,
    /// How the test's clients speak TLS to a TLS server.
    pub client_tls: Option<ClientTlsConfig>,
    shutdown: Option<oneshot::Sender<()>>,
    /// The app's reviewer and ISP desk (`ptcl`), issued on first use.
    reviewer_token: OnceCell<String>,
    isp_token: OnceCell<String>,
}

/// Options for test servers: no limit a test reaches by accident (the
/// tests of the limits set their own).
pub fn test_options() -> app::Options {
    app::Options {
        shutdown_grace: std::time::Duration::from_secs(5),
        expiry_interval: None,
        feed_poll_interval: std::time::Duration::from_millis(200),
        watch_backlog: 8,
        rate_limits: RoleKind::ALL.iter().map(|r| (*r, 0)).collect(),
        failed_auth_rate: 1_000_000,
        // The pruning tests prune when they choose.
        retention: None,
        ..app::Options::default()
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
    assert!(vpn_registry::db::grant_runtime(pool, RUNTIME_ROLE).await.unwrap());
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::Executor::execute(&mut *conn, "SET ROLE vpn_registry_runtime").await?;
                Ok(())
            })
        })
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect_with((*pool.connect_options()).clone().host("127.0.0.1").port(port))
        .await
        .unwrap()
}

/// Starts the service on 127.0.0.1:0 over `pool` (a fresh, migrated database).
pub async fn spawn_app(pool: PgPool) -> TestApp {
    spawn_app_with(pool, test_options(), None).await
}

/// Starts the service with `options` (the test's client speaks TLS with
/// `client_tls` when the server does); the server runs as the runtime role.
pub async fn spawn_app_with(pool: PgPool, options: app::Options, client_tls: Option<ClientTlsConfig>) -> TestApp {
    let server_pool = runtime_pool(&pool).await;
    spawn_app_on(pool, server_pool, options, client_tls).await
}

/// Starts the service over `server_pool` (on `pool`'s database).
pub async fn spawn_app_on(
    pool: PgPool,
    server_pool: PgPool,
    options: app::Options,
    client_tls: Option<ClientTlsConfig>,
) -> TestApp {
    let app = start_app_on(pool, server_pool, options, client_tls).await;
    wait_until_serving(app.channel.clone()).await;
    app
}

/// [`spawn_app_on`] without waiting for the server to report SERVING.
pub async fn start_app_on(
    pool: PgPool,
    server_pool: PgPool,
    options: app::Options,
    client_tls: Option<ClientTlsConfig>,
) -> TestApp {
    let listener = app::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let http = app::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let http_addr = http.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    let scheme = if options.tls.is_some() { "https" } else { "http" };
    let listeners = app::Listeners {
        grpc: listener,
        http: Some(http),
    };
    tokio::spawn(app::serve(listeners, server_pool, options, async {
        let _ = rx.await;
    }));
    let mut endpoint = Channel::from_shared(format!("{scheme}://localhost:{}", addr.port())).unwrap();
    if let Some(tls) = client_tls.clone() {
        endpoint = endpoint.tls_config(tls).unwrap();
    }
    let mut app = TestApp::new(addr, http_addr, pool, endpoint.connect_lazy()).await;
    app.client_tls = client_tls;
    app.shutdown = Some(tx);
    app
}

impl TestApp {
    /// Clients of a server running elsewhere (a `vpn-registry serve`
    /// process) on `pool`'s database.
    pub async fn attach(addr: std::net::SocketAddr, http_addr: std::net::SocketAddr, pool: PgPool) -> Self {
        let channel = Channel::from_shared(format!("http://localhost:{}", addr.port()))
            .unwrap()
            .connect_lazy();
        Self::ready(addr, http_addr, pool, channel).await
    }

    /// Clients on `channel` once the server is SERVING.
    async fn ready(
        addr: std::net::SocketAddr,
        http_addr: std::net::SocketAddr,
        pool: PgPool,
        channel: Channel,
    ) -> Self {
        wait_until_serving(channel.clone()).await;
        Self::new(addr, http_addr, pool, channel).await
    }

    /// Clients on `channel`, with the ISP the tests attest as (a second
    /// server on the database finds it there).
    async fn new(addr: std::net::SocketAddr, http_addr: std::net::SocketAddr, pool: PgPool, channel: Channel) -> Self {
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
            shutdown: None,
            reviewer_token: OnceCell::new(),
            isp_token: OnceCell::new(),
        }
    }

    /// GETs `path` from the server's metrics and health listener.
    pub async fn http(&self, path: &str) -> (u16, String) {
        vpn_registry::observe::http::fetch(self.http_addr, path).await.unwrap()
    }
}

/// Health turns SERVING once the database is reachable and the lookup index
/// is loaded; tests start from there, as a load balancer would.
async fn wait_until_serving(channel: Channel) {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let mut health = HealthClient::new(channel);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status = health.check(HealthCheckRequest::default()).await;
        if status.is_ok_and(|s| s.into_inner().status == ServingStatus::Serving as i32) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server never reported SERVING"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// An update mask of `paths`.
pub fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

pub type Institutions = InstitutionServiceClient<InterceptedService<Channel, Bearer>>;
pub type Registrations = RegistrationServiceClient<InterceptedService<Channel, Bearer>>;
pub type Reviews = ReviewServiceClient<InterceptedService<Channel, Bearer>>;
pub type Isps = IspServiceClient<InterceptedService<Channel, Bearer>>;
pub type Lookups = LookupServiceClient<InterceptedService<Channel, Bearer>>;

fn bearer(token: Option<&str>) -> Bearer {
    Bearer(token.map(|t| format!("Bearer {t}").parse().unwrap()))
}

impl TestApp {
    pub fn institutions(&self, token: Option<&str>) -> Institutions {
        InstitutionServiceClient::with_interceptor(self.channel.clone(), bearer(token))
    }

    pub fn registrations(&self, token: Option<&str>) -> Registrations {
        RegistrationServiceClient::with_interceptor(self.channel.clone(), bearer(token))
    }

    pub fn review(&self, token: Option<&str>) -> Reviews {
        ReviewServiceClient::with_interceptor(self.channel.clone(), bearer(token))
    }

    pub fn isps(&self, token: Option<&str>) -> Isps {
        IspServiceClient::with_interceptor(self.channel.clone(), bearer(token))
    }

    pub fn lookups(&self, token: Option<&str>) -> Lookups {
        LookupServiceClient::with_interceptor(self.channel.clone(), bearer(token))
    }

    /// A lookup client on its own connection (HTTP/2 flow control is per
    /// connection: an unread stream must not stall other calls).
    pub fn lookups_on_new_connection(&self, token: Option<&str>) -> Lookups {
        LookupServiceClient::with_interceptor(self.new_connection(), bearer(token))
    }

    /// A `WatchChanges` stream from scratch (reset, snapshot, deltas) on a
    /// connection of its own.
    pub async fn watch(&self, token: &str) -> tonic::Streaming<pb::WatchChangesResponse> {
        self.lookups_on_new_connection(Some(token))
            .watch_changes(pb::WatchChangesRequest::default())
            .await
            .unwrap()
            .into_inner()
    }

    /// A channel on a connection of its own (with the app's client TLS).
    pub fn new_connection(&self) -> Channel {
        let scheme = if self.client_tls.is_some() { "https" } else { "http" };
        let mut endpoint = Channel::from_shared(format!("{scheme}://localhost:{}", self.addr.port())).unwrap();
        if let Some(tls) = self.client_tls.clone() {
            endpoint = endpoint.tls_config(tls).unwrap();
        }
        endpoint.connect_lazy()
    }

    /// Submits `prefixes` for the institution behind `token`.
    pub async fn submit(&self, token: &str, prefixes: &[&str]) -> pb::Registration {
        self.registrations(Some(token))
            .submit_registration(submit_request(prefixes))
            .await
            .unwrap()
            .into_inner()
    }

    /// Submits `prefixes` for the institution behind `token` and approves them.
    pub async fn active(&self, token: &str, prefixes: &[&str]) -> pb::Registration {
        let r = self.submit(token, prefixes).await;
        self.approve(&r).await.unwrap()
    }

    /// Issues a credential straight into the store, as `vpn-registry token
    /// issue` does, and waits until this server knows it.
    /// CheckAddress of `address` for `token`, once this server has applied
    /// `min_serial` (0: now).
    pub async fn check_address(&self, token: &str, address: &str, min_serial: i64) -> pb::CheckResult {
        self.lookups(Some(token))
            .check_address(pb::CheckAddressRequest {
                address: address.into(),
                min_serial,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn token(&self, role: Role) -> String {
        self.token_with(role, std::time::Duration::from_secs(3600), None)
            .await
            .1
    }

    /// Issues a credential valid for `lifetime` (bound to the certificate
    /// with that SHA-256, if given); returns its id and secret once the
    /// server knows it (a bound or already expired one: once it is stored).
    pub async fn token_with(
        &self,
        role: Role,
        lifetime: std::time::Duration,
        cert_sha256: Option<[u8; 32]>,
    ) -> (Uuid, String) {
        let (secret, hash) = token::generate().unwrap();
        let name = format!("test-{}", role.as_str());
        let new = tokens::NewToken {
            id: Uuid::now_v7(),
            role: &role,
            name: &name,
            hash,
            expire_time: time::OffsetDateTime::now_utc() + lifetime,
            cert_sha256,
        };
        tokens::insert(&self.pool, &new, &Actor::operator("test"))
            .await
            .unwrap();
        if cert_sha256.is_none() && lifetime > std::time::Duration::from_secs(5) {
            self.wait_until_known(&secret).await;
        }
        (new.id, secret)
    }

    /// Waits until this server accepts `token` (credentials follow the
    /// database by notification, a moment after the write).
    pub async fn wait_until_known(&self, token: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let answer = self.isps(Some(token)).list_isps(pb::ListIspsRequest::default()).await;
            if !matches!(&answer, Err(s) if s.code() == tonic::Code::Unauthenticated) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server never learnt the token"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Adds a licensed ISP (as `vpn-registry isp add` does).
    pub async fn add_isp(&self, code: &str) {
        vpn_registry::db::isps::create(&self.pool, &code.parse().unwrap(), code, &Actor::operator("test"))
            .await
            .unwrap();
    }

    pub async fn admin(&self) -> String {
        self.token(Role::Admin).await
    }

    /// Enrols an institution of `category` and returns it with a token for it.
    pub async fn enrol(&self, category: pb::InstitutionCategory) -> (pb::Institution, String) {
        let admin = self.admin().await;
        let created = self
            .institutions(Some(&admin))
            .create_institution(pb::CreateInstitutionRequest {
                institution: Some(valid_institution(category)),
                request_id: Uuid::new_v4().to_string(),
            })
            .await
            .unwrap()
            .into_inner();
        let token = self.token(Role::Institution(created.id.parse().unwrap())).await;
        (created, token)
    }

    /// The app's reviewer token (one principal per app).
    pub async fn reviewer_token(&self) -> &str {
        self.reviewer_token.get_or_init(|| self.token(Role::Reviewer)).await
    }

    /// The app's `ptcl` attestation desk token.
    pub async fn isp_token(&self) -> &str {
        self.isp_token
            .get_or_init(|| self.token(Role::Isp("ptcl".parse().unwrap())))
            .await
    }

    /// The review service as the app's reviewer.
    pub async fn reviewer(&self) -> Reviews {
        self.review(Some(self.reviewer_token().await))
    }

    /// The ISP service as the app's `ptcl` desk.
    pub async fn isp_desk(&self) -> Isps {
        self.isps(Some(self.isp_token().await))
    }

    /// The ISP confirms (or, saying "Subscriber unknown", denies) what it was
    /// asked to attest about `on`.
    pub async fn attest(&self, on: &impl Versioned, confirmed: bool) -> Result<pb::Attestation, Status> {
        let reason = if confirmed { "" } else { "Subscriber unknown" };
        self.isp_desk()
            .await
            .attest_registration(pb::AttestRegistrationRequest {
                reason: reason.into(),
                ..attest_request(on, confirmed)
            })
            .await
            .map(|a| a.into_inner())
    }

    /// The app's reviewer takes decision `d` on the version `on` names.
    pub async fn decide(
        &self,
        d: Decision,
        on: &impl Versioned,
        code: pb::ReasonCode,
        reason: &str,
    ) -> Result<pb::Registration, Status> {
        let reviewer = self.reviewer_token().await.to_owned();
        self.decide_as(&reviewer, d, on, code, reason).await
    }

    /// Decision `d` on the version `on` names, sent as `token` (any
    /// principal) to the decision's own RPC.
    pub async fn decide_as(
        &self,
        token: &str,
        d: Decision,
        on: &impl Versioned,
        code: pb::ReasonCode,
        reason: &str,
    ) -> Result<pb::Registration, Status> {
        let fields = DecisionFields {
            id: on.id().into(),
            etag: on.etag().into(),
            reason_code: code as i32,
            reason: reason.into(),
            ..DecisionFields::default()
        };
        let answer = crate::raw::call(&self.channel, d.about().rpc, Some(token), review::encode(d, fields)).await?;
        Ok(pb::Registration::decode(&answer[..]).expect("a Registration"))
    }

    /// Takes a submitted registration through ISP attestation (as `ptcl`) and
    /// approval by a reviewer, returning the approval's answer.
    pub async fn approve(&self, registration: &pb::Registration) -> Result<pb::Registration, Status> {
        let attested = self.attest(registration, true).await?;
        self.decide(
            Decision::Approve,
            &attested,
            pb::ReasonCode::Compliant,
            "Documents in order",
        )
        .await
    }

    /// A registration as the app's reviewer reads it.
    pub async fn get(&self, id: &str) -> pb::Registration {
        self.registrations(Some(self.reviewer_token().await))
            .get_registration(pb::GetRegistrationRequest { id: id.into() })
            .await
            .unwrap()
            .into_inner()
    }

    /// A registration's whole history, as the app's reviewer reads it.
    pub async fn events(&self, id: &str) -> Vec<pb::RegistrationEvent> {
        self.registrations(Some(self.reviewer_token().await))
            .list_registration_events(pb::ListRegistrationEventsRequest {
                id: id.into(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .events
    }

    /// One pass of the expiry task (as the `test` system actor).
    pub async fn expire_due(&self) -> usize {
        Registry::new(self.pool.clone())
            .expire_due(time::OffsetDateTime::now_utc().date(), 100, &Actor::system("test"))
            .await
            .unwrap()
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A PSEB expiry a year from now.
pub fn future_date() -> pb::google::r#type::Date {
    let d = time::OffsetDateTime::now_utc().date() + time::Duration::days(365);
    pb::google::r#type::Date {
        year: d.year(),
        month: u8::from(d.month()).into(),
        day: d.day().into(),
    }
}

/// A complete, valid institution of `category`.
pub fn valid_institution(category: pb::InstitutionCategory) -> pb::Institution {
    use pb::InstitutionCategory as C;
    let mut i = pb::Institution {
        category: category as i32,
        legal_name: "Example Institution (Pvt) Ltd".into(),
        cnic: "35202-1234567-1".into(),
        contact_email: "ops@example.pk".into(),
        contact_phone: "0300 1234567".into(),
        ..Default::default()
    };
    match category {
        C::Bank => {
            i.ntn = "1234567-8".into();
            i.sbp_licence = "SBP/BPRD/123".into();
        }
        C::ItCompany | C::CallCenterBpo => {
            i.ntn = "7654321".into();
            i.pseb_number = "PSEB-2024-0042".into();
            i.pseb_expiry = Some(future_date());
        }
        C::Company => i.ntn = "1111111".into(),
        C::ForeignMission => {
            i.cnic.clear();
            i.accreditation_ref = "MOFA-DPL-77".into();
            i.country = "GB".into();
        }
        _ => {}
    }
    i
}

pub fn ts(t: time::OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        nanos: t.nanosecond() as i32,
    }
}

/// A valid VPN registration from `prefixes`, valid for a year.
pub fn valid_registration(prefixes: &[&str]) -> pb::Registration {
    pb::Registration {
        kind: pb::RegistrationKind::Vpn as i32,
        protocol: pb::VpnProtocol::Wireguard as i32,
        source_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
        peer_prefixes: vec!["185.60.216.0/24".into()],
        isp: "ptcl".into(),
        isp_subscriber_id: "SUB-0001".into(),
        purpose: "Remote access to head office".into(),
        valid_until: Some(ts(time::OffsetDateTime::now_utc() + time::Duration::days(365))),
        ..Default::default()
    }
}

pub fn submit_request(prefixes: &[&str]) -> pb::SubmitRegistrationRequest {
    pb::SubmitRegistrationRequest {
        registration: Some(valid_registration(prefixes)),
        request_id: Uuid::new_v4().to_string(),
    }
}

/// The field names of a status's BadRequest details.
pub fn violated_fields(status: &Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// What a decision names: a registration and the version decided on.
pub trait Versioned {
    fn id(&self) -> &str;
    fn etag(&self) -> &str;
}

impl Versioned for pb::Registration {
    fn id(&self) -> &str {
        &self.id
    }
    fn etag(&self) -> &str {
        &self.etag
    }
}

impl Versioned for pb::Attestation {
    fn id(&self) -> &str {
        &self.registration_id
    }
    fn etag(&self) -> &str {
        &self.etag
    }
}

/// An amendment of the fields `paths` names to their values in `changed`.
pub fn amend_request(changed: pb::Registration, paths: &[&str]) -> pb::AmendRegistrationRequest {
    pb::AmendRegistrationRequest {
        registration: Some(changed),
        update_mask: mask(paths),
        request_id: String::new(),
    }
}

/// An attestation of the version `on` names, without a reason.
pub fn attest_request(on: &impl Versioned, confirmed: bool) -> pb::AttestRegistrationRequest {
    pb::AttestRegistrationRequest {
        id: on.id().into(),
        etag: on.etag().into(),
        confirmed,
        ..Default::default()
    }
}

/// An approval of the version `on` names, without options.
pub fn approve_request(on: &impl Versioned) -> pb::ApproveRegistrationRequest {
    pb::ApproveRegistrationRequest {
        id: on.id().into(),
        etag: on.etag().into(),
        reason_code: pb::ReasonCode::Compliant as i32,
        reason: "In order".into(),
        ..Default::default()
    }
}
