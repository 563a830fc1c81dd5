//! What the operator sees: metrics after known calls, readiness and health
//! through a stalled feed and a database outage, the status document.

use std::time::{Duration, Instant};

use sqlx::PgPool;
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
use vpn_registry::{domain::principal::Role, pb};

use crate::helpers::{TestApp, eventually, runtime_pool, runtime_pool_via, spawn_app, valid_institution};
use crate::proxy::Proxy;

/// The value of the series `name` whose labels include `labels` (summed
/// over the rest), 0 when there is none.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            (metric == name).then_some(())?;
            labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

async fn scrape(app: &TestApp) -> String {
    let (status, text) = app.http("/metrics").await;
    assert_eq!(status, 200);
    text
}

fn check(addr: &str) -> pb::CheckAddressRequest {
    pb::CheckAddressRequest {
        address: addr.into(),
        ..Default::default()
    }
}

const CHECK: &[(&str, &str)] = &[
    ("grpc_type", "unary"),
    ("grpc_service", "vpnregistry.v1.LookupService"),
    ("grpc_method", "CheckAddress"),
];

fn with<'a>(base: &[(&'a str, &'a str)], extra: (&'a str, &'a str)) -> Vec<(&'a str, &'a str)> {
    let mut all = base.to_vec();
    all.push(extra);
    all
}

#[sqlx::test]
async fn metrics_count_each_call_by_method_and_code(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(pb::InstitutionCategory::Bank).await;
    let registration = app.active(&token, &["8.8.10.0/24"]).await;
    let lookup = app.token(Role::Lookup).await;
    let before = scrape(&app).await;

    let mut lookups = app.lookups(Some(&lookup));
    for addr in ["8.8.10.7", "198.51.100.1", "2001:db8::1"] {
        lookups.check_address(check(addr)).await.unwrap();
    }
    for _ in 0..2 {
        let refused = app.lookups(None).check_address(check("8.8.10.7")).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated);
    }
    let invalid = lookups.check_address(check("not-an-address")).await.unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    let after = scrape(&app).await;

    let delta = |name: &str, labels: &[(&str, &str)]| sample(&after, name, labels) - sample(&before, name, labels);
    assert_eq!(delta("grpc_server_started_total", CHECK), 6.0);
    assert_eq!(
        delta("grpc_server_handled_total", &with(CHECK, ("grpc_code", "OK"))),
        3.0
    );
    assert_eq!(
        delta(
            "grpc_server_handled_total",
            &with(CHECK, ("grpc_code", "Unauthenticated"))
        ),
        2.0
    );
    assert_eq!(
        delta(
            "grpc_server_handled_total",
            &with(CHECK, ("grpc_code", "InvalidArgument"))
        ),
        1.0
    );
    assert_eq!(delta("grpc_server_handling_seconds_count", CHECK), 6.0);
    assert!(after.contains("grpc_server_handling_seconds_bucket{grpc_type=\"unary\",grpc_service=\"vpnregistry.v1.LookupService\",grpc_method=\"CheckAddress\",le=\"0.0001\"}"), "{after}");
    assert_eq!(delta("vpn_registry_auth_failures_total", &[]), 2.0);
    assert!(!after.contains("token_id"), "no per-principal series unless asked for");

    // The gauges read the live state.
    let last_serial = app.last_serial().await;
    assert_eq!(
        sample(&after, "vpn_registry_feed_applied_serial", &[]),
        last_serial as f64
    );
    assert_eq!(sample(&after, "vpn_registry_index_entries", &[("family", "ipv4")]), 1.0);
    assert_eq!(sample(&after, "vpn_registry_index_entries", &[("family", "ipv6")]), 0.0);
    assert_eq!(sample(&after, "vpn_registry_feed_lag_seconds", &[]), 0.0);
    assert_eq!(sample(&after, "vpn_registry_watchers", &[]), 0.0);
    let tokens: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(sample(&after, "vpn_registry_credentials", &[]), tokens as f64);
    assert_eq!(
        sample(
            &after,
            "vpn_registry_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert_eq!(sample(&after, "vpn_registry_database_up", &[]), 1.0);
    assert!(sample(&after, "vpn_registry_db_pool_connections", &[("pool", "primary")]) >= 1.0);
    assert!(
        sample(&after, "process_resident_memory_bytes", &[]) > 1e6,
        "process metrics"
    );
    assert!(sample(&after, "process_open_fds", &[]) > 0.0);
    // Counted when the server started (every 30 s after).
    assert!(
        after.contains("vpn_registry_registrations{state=\"ACTIVE\"}"),
        "{after}"
    );
    assert_eq!(registration.state, pb::RegistrationState::Active as i32);
}

#[sqlx::test]
async fn per_principal_series_only_when_asked_for(pool: PgPool) {
    let app = TestApp::builder(pool)
        .options(|o| {
            o.metrics_per_principal = true;
            o.rate_limits = vec![(vpn_registry::domain::principal::RoleKind::Lookup, 1)];
        })
        .start()
        .await;
    let (id, token) = app.token_with(Role::Lookup, Duration::from_secs(3600), None).await;
    let mut lookups = app.lookups(Some(&token));
    // A burst of one per second: the first passes, the second is limited
    // (the server already spent some of it learning the token).
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(
            lookups
                .check_address(check("192.0.2.1"))
                .await
                .map_or_else(|s| s.code(), |_| Code::Ok),
        );
    }
    assert!(codes.contains(&Code::ResourceExhausted), "{codes:?}");
    let text = scrape(&app).await;
    let id = id.to_string();
    let limited = codes.iter().filter(|c| **c == Code::ResourceExhausted).count() as f64;
    assert_eq!(
        sample(
            &text,
            "vpn_registry_principal_handled_total",
            &with(&with(CHECK, ("token_id", &id)), ("grpc_code", "ResourceExhausted"))
        ),
        limited
    );
    assert_eq!(
        sample(&text, "vpn_registry_rate_limited_total", &[("role", "lookup")]),
        limited
    );
}

#[sqlx::test]
async fn livez_readyz_and_status_describe_the_server(pool: PgPool) {
    let app = spawn_app(pool).await;
    assert_eq!(app.http("/livez").await, (200, "ok\n".to_owned()));
    assert_eq!(app.http("/readyz").await.0, 200);
    let (code, body) = app.http("/status").await;
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["ready"], true);
    let session: String = sqlx::query_scalar("SELECT session_id::text FROM feed_state")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(status["feed"]["session"], session);
    assert_eq!(status["feed"]["lag_seconds"], 0.0);
    assert!(status["feed"]["applied_serial"].is_i64());
    assert_eq!(status["index"]["ipv4"], 0);
    assert_eq!(status["watchers"], 0);
    assert!(status["uptime_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(app.http("/nothing-here").await.0, 404);
}

/// gRPC health of one service name.
async fn health(app: &TestApp, service: &str) -> i32 {
    HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

const SERVING: i32 = ServingStatus::Serving as i32;
const NOT_SERVING: i32 = ServingStatus::NotServing as i32;

/// Waits until `done`; returns how long it took.
async fn until<F: Future<Output = bool>>(within: Duration, what: &str, mut done: impl FnMut() -> F) -> Duration {
    let started = Instant::now();
    eventually(what, within, || {
        let done = done();
        async move { done.await.then_some(()) }
    })
    .await;
    started.elapsed()
}

#[sqlx::test]
async fn a_database_outage_stops_the_registry_not_the_lookups_and_heals_itself(pool: PgPool) {
    let proxy = Proxy::to_postgres(&pool).await;
    let server_pool = runtime_pool_via(&pool, proxy.addr.port()).await;
    let app = TestApp::builder(pool).server_pool(server_pool).start().await;
    let (_, token) = app.enrol(pb::InstitutionCategory::Bank).await;
    app.active(&token, &["8.8.10.0/24"]).await;
    let lookup = app.token(Role::Lookup).await;
    let registry = "vpnregistry.v1.RegistrationService";
    let lookups_service = "vpnregistry.v1.LookupService";
    assert_eq!(health(&app, registry).await, SERVING);

    proxy.cut();
    until(Duration::from_secs(5), "registry NOT_SERVING", || async {
        health(&app, registry).await == NOT_SERVING
    })
    .await;
    assert_eq!(health(&app, "").await, NOT_SERVING);
    assert_eq!(
        health(&app, lookups_service).await,
        SERVING,
        "lookups answer from memory"
    );
    let (code, body) = app.http("/readyz").await;
    assert_eq!(code, 503);
    assert!(body.contains("PostgreSQL"), "{body}");
    let hit = app.lookup_as(&lookup, check("8.8.10.9")).await;
    assert!(hit.registered);
    let refused = app
        .registrations(Some(&token))
        .list_registrations(pb::ListRegistrationsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    let metrics = scrape(&app).await;
    assert_eq!(sample(&metrics, "vpn_registry_database_up", &[]), 0.0);

    proxy.restore();
    let took = until(Duration::from_secs(5), "recovery within 5 s", || async {
        health(&app, "").await == SERVING
    })
    .await;
    println!("serving again {took:?} after the database came back");
    assert_eq!(app.http("/readyz").await.0, 200);
    app.registrations(Some(&token))
        .list_registrations(pb::ListRegistrationsRequest::default())
        .await
        .expect("the registry answers again");
}

#[sqlx::test]
async fn a_stalled_feed_fails_readiness_and_lookup_health(pool: PgPool) {
    // The replica reads through a proxy (as from a standby); writes and the
    // probe reach the primary directly.
    let proxy = Proxy::to_postgres(&pool).await;
    let app = TestApp::builder(pool.clone())
        .read_pool(runtime_pool_via(&pool, proxy.addr.port()).await)
        .options(|o| o.max_feed_lag = Duration::from_secs(1))
        .start()
        .await;
    let (_, token) = app.enrol(pb::InstitutionCategory::Bank).await;
    let lookups_service = "vpnregistry.v1.LookupService";
    assert_eq!(app.http("/readyz").await.0, 200);
    // Credentials come through the proxy too: learnt before the cut.
    app.reviewer_token().await;
    app.isp_token().await;

    proxy.cut();
    app.active(&token, &["8.8.11.0/24"]).await;
    until(Duration::from_secs(10), "readiness fails on lag", || async {
        app.http("/readyz").await.0 == 503
    })
    .await;
    let (_, body) = app.http("/readyz").await;
    assert!(body.contains("lag"), "{body}");
    assert_eq!(health(&app, lookups_service).await, NOT_SERVING);
    assert_eq!(health(&app, "vpnregistry.v1.RegistrationService").await, SERVING);
    let metrics = scrape(&app).await;
    assert!(
        sample(&metrics, "vpn_registry_feed_lag_seconds", &[]) > 1.0,
        "{metrics}"
    );

    proxy.restore();
    until(Duration::from_secs(10), "the feed catches up", || async {
        app.http("/readyz").await.0 == 200
    })
    .await;
    assert_eq!(health(&app, lookups_service).await, SERVING);
}

/// A second registry database on `pool`'s server, migrated and granted as
/// `migrate` would: another primary. Dropped with [`drop_database`].
async fn another_database(pool: &PgPool, name: &str) -> PgPool {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(pool)
        .await
        .unwrap();
    let other = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect_with((*pool.connect_options()).clone().database(name))
        .await
        .unwrap();
    vpn_registry::db::MIGRATOR.run(&other).await.unwrap();
    other
}

async fn drop_database(pool: &PgPool, other: PgPool, name: &str) {
    other.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(pool)
    .await
    .unwrap();
}

#[sqlx::test]
async fn an_old_primary_behind_the_feed_gets_no_writes_and_no_reads_of_own_writes(pool: PgPool) {
    // The promoted standby: the same feed session, further ahead.
    let name = format!("split_{}", uuid::Uuid::new_v4().simple());
    let promoted = another_database(&pool, &name).await;
    let session: uuid::Uuid = sqlx::query_scalar("SELECT session_id FROM feed_state")
        .fetch_one(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE feed_state SET session_id = $1")
        .bind(session)
        .execute(&promoted)
        .await
        .unwrap();
    let new_primary = TestApp::builder(promoted.clone()).start().await;
    let (_, bank) = new_primary.enrol(pb::InstitutionCategory::Bank).await;
    let active = new_primary.active(&bank, &["8.8.10.0/24"]).await;
    let admin = new_primary.admin().await;
    let lookup = new_primary.token(Role::Lookup).await;

    // A replica still writing to the old primary (serial 0), reading the
    // promoted one.
    let replica = TestApp::builder(pool.clone())
        .read_pool(runtime_pool(&promoted).await)
        .without_waiting()
        .start()
        .await;
    let status = eventually("the split is seen", Duration::from_secs(10), || async {
        let (_, body) = replica.http("/status").await;
        let status: serde_json::Value = serde_json::from_str(&body).ok()?;
        status["feed"]["split"].is_string().then_some(status)
    })
    .await;
    assert_eq!(status["ready"], false);
    assert!(status["feed"]["split"].as_str().unwrap().contains("behind"), "{status}");
    let (code, why) = replica.http("/readyz").await;
    assert_eq!(code, 503);
    assert!(why.contains("write database is behind"), "{why}");
    replica.wait_until_known(&admin).await;

    // Writes are refused, not given serials that name other changes there.
    let refused = replica
        .institutions(Some(&admin))
        .create_institution(pb::CreateInstitutionRequest {
            institution: Some(valid_institution(pb::InstitutionCategory::Company)),
            request_id: uuid::Uuid::new_v4().to_string(),
            validate_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("writes refused"), "{refused:?}");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM institutions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 0, "nothing written to the old primary");
    // Reads of one's own writes are refused; plain lookups answer from memory.
    let err = replica
        .lookups(Some(&lookup))
        .check_address(pb::CheckAddressRequest {
            address: "8.8.10.1".into(),
            min_serial: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(replica.check_address(&lookup, "8.8.10.1", 0).await.registered);
    assert!(active.feed_serial > 0);

    drop((replica, new_primary));
    drop_database(&pool, promoted, &name).await;
}
