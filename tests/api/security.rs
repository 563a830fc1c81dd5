//! Secure by default: TLS and mTLS, credentials that expire, rotate, bind to
//! certificates and are revoked everywhere, limits on every client, least
//! privilege. Against the real server over real sockets.

use std::time::Duration;

use sqlx::PgPool;
use tonic::{
    Code,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_types::StatusExt;
use uuid::Uuid;
use vpn_registry::{
    domain::principal::{Role, RoleKind},
    pb::{self, InstitutionCategory as C},
    tls::{DevCertificates, Tls, TlsFiles},
};

use crate::helpers::*;

/// A directory of its own under the system's temporary directory.
fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vpn-registry-test-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A development CA with its certificates written to disk, and the server's
/// TLS settings loaded from them (requiring client certificates if `mtls`).
fn tls_files(mtls: bool) -> (DevCertificates, TlsFiles) {
    let certs = DevCertificates::generate(&["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let dir = temp_dir();
    certs.write_to(&dir).unwrap();
    let files = TlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server-key.pem"),
        client_ca: mtls.then(|| dir.join("ca.pem")),
    };
    (certs, files)
}

fn client_tls(certs: &DevCertificates, identity: Option<(&str, &str)>) -> ClientTlsConfig {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&certs.ca_pem))
        .domain_name("localhost");
    match identity {
        Some((cert, key)) => tls.identity(Identity::from_pem(cert, key)),
        None => tls,
    }
}

pub(crate) async fn spawn_tls_app(pool: PgPool, mtls: bool) -> (TestApp, DevCertificates) {
    let (certs, files) = tls_files(mtls);
    let identity = (certs.client_pem.as_str(), certs.client_key_pem.as_str());
    let client = client_tls(&certs, mtls.then_some(identity));
    let app = TestApp::builder(pool)
        .tls(Tls::load(files).unwrap(), client)
        .start()
        .await;
    (app, certs)
}

async fn channel(app: &TestApp, tls: Option<ClientTlsConfig>) -> Result<Channel, tonic::transport::Error> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Channel::from_shared(format!("{scheme}://localhost:{}", app.addr.port())).unwrap();
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls)?;
    }
    endpoint.connect().await
}

#[sqlx::test]
async fn a_tls_server_answers_over_tls_and_refuses_plaintext(pool: PgPool) {
    let (app, _certs) = spawn_tls_app(pool, false).await;
    // Health and reflection work over TLS without credentials; calls with a token.
    let health = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .unwrap();
    assert_eq!(health.into_inner().status, 1);
    let admin = app.admin().await;
    app.institutions(Some(&admin))
        .list_institutions(pb::ListInstitutionsRequest::default())
        .await
        .unwrap();
    {
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest,
        };
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = ServerReflectionClient::new(app.channel.clone())
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let listed = answers.message().await.unwrap().unwrap();
        assert!(
            format!("{listed:?}").contains("vpnregistry.v1.LookupService"),
            "reflection over TLS"
        );
    }

    let plain = match channel(&app, None).await {
        Ok(channel) => HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .map(drop)
            .map_err(|s| s.code()),
        Err(_) => Err(Code::Unavailable),
    };
    assert!(plain.is_err(), "a plaintext client gets nothing from a TLS server");
}

#[sqlx::test]
async fn an_mtls_server_refuses_clients_without_a_certificate(pool: PgPool) {
    let (app, certs) = spawn_tls_app(pool, true).await;
    HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .expect("a client with a certificate from the CA is served");

    let anonymous = match channel(&app, Some(client_tls(&certs, None))).await {
        Ok(channel) => HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .map(drop),
        Err(e) => Err(tonic::Status::unavailable(e.to_string())),
    };
    assert!(anonymous.is_err(), "the handshake fails without a client certificate");

    let stranger = DevCertificates::generate(&["localhost".to_owned()]).unwrap();
    let foreign = client_tls(&certs, Some((&stranger.client_pem, &stranger.client_key_pem)));
    let refused = match channel(&app, Some(foreign)).await {
        Ok(channel) => HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .map(drop),
        Err(e) => Err(tonic::Status::unavailable(e.to_string())),
    };
    assert!(refused.is_err(), "a certificate from another CA is refused");
}

#[sqlx::test]
async fn a_token_bound_to_a_certificate_is_refused_on_a_connection_without_it(pool: PgPool) {
    let (app, certs) = spawn_tls_app(pool, true).await;
    let der = pem_to_der(certs.client_pem.as_bytes());
    let (_, token) = app
        .token_with(
            Role::Lookup,
            Duration::from_secs(3600),
            Some(vpn_registry::tls::certificate_sha256(&der)),
        )
        .await;
    // The app's connection presents that certificate: accepted.
    app.wait_until_known(&token).await;
    app.lookups(Some(&token))
        .check_address(pb::CheckAddressRequest {
            address: "8.8.8.8".into(),
            ..Default::default()
        })
        .await
        .expect("the bound certificate is presented");

    // Another client certificate from the same CA: the token is refused.
    let (other_cert, other_key) = certs.client("another gateway").unwrap();
    let other = channel(&app, Some(client_tls(&certs, Some((&other_cert, &other_key)))))
        .await
        .unwrap();
    let err = pb::lookup_service_client::LookupServiceClient::with_interceptor(other, bearer_for(&token))
        .check_address(pb::CheckAddressRequest {
            address: "8.8.8.8".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
}

/// The DER bytes of the first PEM certificate.
fn pem_to_der(pem: &[u8]) -> Vec<u8> {
    use tokio_rustls::rustls::pki_types::{CertificateDer, pem::PemObject};
    CertificateDer::from_pem_slice(pem).unwrap().to_vec()
}

fn bearer_for(token: &str) -> impl tonic::service::Interceptor + Clone {
    let value: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    move |mut req: tonic::Request<()>| {
        req.metadata_mut().insert("authorization", value.clone());
        Ok(req)
    }
}

#[sqlx::test]
async fn expired_tokens_are_refused_and_rotation_keeps_the_old_secret_for_its_grace_only(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, short) = app.token_with(Role::Lookup, Duration::from_secs(60), None).await;
    app.advance_clock(Duration::from_secs(61));
    let err = app
        .isps(Some(&short))
        .list_isps(pb::ListIspsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "expired: {err:?}");

    let (id, old) = app.token_with(Role::Lookup, Duration::from_secs(3600), None).await;
    let new = vpn_registry::operator::rotate(&app.pool, id, Duration::from_secs(600), "test")
        .await
        .unwrap();
    assert_ne!(new, old);
    app.wait_until_known(&new).await;
    for token in [&old, &new] {
        app.isps(Some(token))
            .list_isps(pb::ListIspsRequest::default())
            .await
            .expect("both work during the grace period");
    }
    app.advance_clock(Duration::from_secs(601));
    let err = app
        .isps(Some(&old))
        .list_isps(pb::ListIspsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "the grace period is over");
    app.isps(Some(&new))
        .list_isps(pb::ListIspsRequest::default())
        .await
        .expect("the new secret works on");
    let audited: Vec<String> =
        sqlx::query_scalar("SELECT actor_name FROM audit_events WHERE subject_id = $1 AND action = 'ROTATED'")
            .bind(id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(audited, ["cli:test"]);
}

#[sqlx::test]
async fn a_revocation_reaches_a_second_replica_within_two_seconds(pool: PgPool) {
    let first = spawn_app(pool.clone()).await;
    let second = spawn_app(pool).await;
    let (id, token) = first.token_with(Role::Lookup, Duration::from_secs(3600), None).await;
    second.wait_until_known(&token).await;
    vpn_registry::operator::revoke(&first.pool, id, "test").await.unwrap();
    eventually("the revoked token is refused", Duration::from_secs(2), || async {
        let answer = second
            .isps(Some(&token))
            .list_isps(pb::ListIspsRequest::default())
            .await;
        matches!(&answer, Err(s) if s.code() == Code::Unauthenticated).then_some(())
    })
    .await;
}

#[sqlx::test]
async fn a_principal_over_its_rate_limit_waits_while_another_is_unaffected(pool: PgPool) {
    let app = TestApp::builder(pool)
        .options(|o| o.rate_limits = vec![(RoleKind::Lookup, 5)])
        .start()
        .await;
    let busy = app.token(Role::Lookup).await;
    let calm = app.token(Role::Lookup).await;
    let check = pb::CheckAddressRequest {
        address: "8.8.8.8".into(),
        ..Default::default()
    };
    let mut limited = None;
    for _ in 0..20 {
        if let Err(e) = app.lookups(Some(&busy)).check_address(check.clone()).await {
            limited = Some(e);
            break;
        }
    }
    let err = limited.expect("the busy principal hits its limit");
    assert_eq!(err.code(), Code::ResourceExhausted);
    let retry = err.get_details_retry_info().expect("RetryInfo says when to retry");
    assert!(retry.retry_delay.is_some_and(|d| d <= Duration::from_secs(1)));
    app.lookups(Some(&calm))
        .check_address(check)
        .await
        .expect("another principal is unaffected");
}

#[sqlx::test]
async fn failed_authentication_is_rate_limited_per_peer_address(pool: PgPool) {
    let app = TestApp::builder(pool).options(|o| o.failed_auth_rate = 5).start().await;
    // Known without presenting it: no failed attempt before the burst.
    let (_, good) = app.issue(Role::Lookup, Duration::from_secs(3600), None).await;
    app.wait_until_holding(1).await;
    let mut codes = Vec::new();
    for i in 0..10 {
        let err = app
            .isps(Some(&format!("vpr_{i:064x}")))
            .list_isps(pb::ListIspsRequest::default())
            .await
            .unwrap_err();
        codes.push(err.code());
    }
    // A burst of five, then refused until the address's budget refills.
    assert_eq!(codes[0], Code::Unauthenticated);
    let limited = codes
        .iter()
        .position(|c| *c == Code::ResourceExhausted)
        .expect("limited");
    assert!(limited >= 5, "{codes:?}");
    app.isps(Some(&good))
        .list_isps(pb::ListIspsRequest::default())
        .await
        .expect("a valid token from the same address still works");
}

/// Transactions PostgreSQL has counted for this test's database, complete:
/// a backend reports its counts at most once a second, but always as it
/// exits, so the server's connections are ended first (its pool reconnects).
async fn transactions(pool: &PgPool) -> i64 {
    sqlx::query(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query_scalar(
        "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test]
async fn a_flood_of_unknown_tokens_is_refused_from_memory(pool: PgPool) {
    let app = spawn_app(pool).await;
    let before = transactions(&app.pool).await;
    let started = std::time::Instant::now();
    let mut client = app.isps(Some("vpr_not-a-token"));
    for _ in 0..2_000 {
        let err = client.list_isps(pb::ListIspsRequest::default()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
    }
    let elapsed = started.elapsed();
    let after = transactions(&app.pool).await;
    // Background work (feed catch-up every 200 ms, credential reloads every
    // second, the outbox and webhook workers, the first pruning pass at
    // start, this measurement) accounts for a few dozen to a hundred and
    // more on a busy machine; a query per attempt would be 2,000.
    let background = (elapsed.as_secs_f64() + 3.0) * 40.0;
    assert!(
        ((after - before) as f64) < background,
        "{} transactions for 2,000 refusals in {elapsed:?}",
        after - before
    );
}

#[sqlx::test]
async fn credentials_that_cannot_be_refreshed_are_not_trusted_for_long(pool: PgPool) {
    let app = TestApp::builder(pool)
        .options(|o| o.credential_max_staleness = Duration::from_secs(2))
        .start()
        .await;
    let token = app.token(Role::Lookup).await;
    // The runtime role loses access to the credentials: reloads fail.
    sqlx::query("REVOKE SELECT ON api_tokens FROM vpn_registry_runtime")
        .execute(&app.pool)
        .await
        .unwrap();
    let lost = std::time::Instant::now();
    let err = eventually("stale credentials are refused", Duration::from_secs(6), || async {
        app.isps(Some(&token))
            .list_isps(pb::ListIspsRequest::default())
            .await
            .err()
    })
    .await;
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        lost.elapsed() >= Duration::from_secs(1),
        "not before the staleness bound"
    );
    sqlx::query("GRANT SELECT ON api_tokens TO vpn_registry_runtime")
        .execute(&app.pool)
        .await
        .unwrap();
    app.wait_until_known(&token).await;
}

#[sqlx::test]
async fn statements_past_the_timeout_are_cancelled(pool: PgPool) {
    let url = pool.connect_options();
    let url = format!(
        "postgres://{}@{}:{}/{}",
        url.get_username(),
        url.get_host(),
        url.get_port(),
        url.get_database().unwrap()
    );
    let limited = vpn_registry::db::connect(&url, 1, Some(Duration::from_millis(100)))
        .await
        .unwrap();
    let err = sqlx::query("SELECT pg_sleep(1)").execute(&limited).await.unwrap_err();
    assert_eq!(err.as_database_error().and_then(|d| d.code()).as_deref(), Some("57014"));
}

#[sqlx::test]
async fn the_runtime_role_cannot_change_the_schema_or_rewrite_history(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, bank) = app.enrol(C::Bank).await;
    app.active(&bank, &["8.8.8.0/24"]).await;
    let runtime = runtime_pool(&app.pool).await;
    for statement in [
        "DELETE FROM audit_events",
        "UPDATE change_feed SET prefix = '1.1.1.0/24'",
        "DELETE FROM change_feed",
        "CREATE TABLE intruder (x int)",
        "ALTER TABLE registrations DROP COLUMN purpose",
        "DROP TABLE idempotency_keys",
    ] {
        let err = sqlx::query(statement).execute(&runtime).await.unwrap_err();
        assert_eq!(
            err.as_database_error().and_then(|d| d.code()).as_deref(),
            Some("42501"),
            "{statement}: {err}"
        );
    }
}

#[sqlx::test]
async fn an_isp_looks_up_and_watches_only_what_names_it(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.add_isp("nayatel").await;
    let (_, bank) = app.enrol(C::Bank).await;
    let active = app.active(&bank, &["8.8.8.0/24"]).await;
    let other = app.token(Role::Isp("nayatel".parse().unwrap())).await;
    let check = pb::CheckAddressRequest {
        address: "8.8.8.8".into(),
        min_serial: active.feed_serial,
        ..Default::default()
    };
    let own = app.lookup_as(app.isp_token().await, check.clone()).await;
    assert!(own.registered, "ptcl's subscriber");
    let foreign = app.lookup_as(&other, check).await;
    assert!(!foreign.registered, "not nayatel's");

    let mut stream = app.watch(&other).await;
    use pb::watch_changes_response::Event;
    loop {
        match stream.message().await.unwrap().unwrap().event.unwrap() {
            Event::Reset(_) => {}
            Event::Snapshot(chunk) => panic!("nayatel was sent {:?}", chunk.entries),
            Event::SnapshotEnd(_) => break,
            Event::Deltas(d) => panic!("unexpected deltas {d:?}"),
        }
    }
}

#[sqlx::test]
async fn an_isp_learns_nothing_about_a_registration_that_does_not_name_it(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.add_isp("nayatel").await;
    let (_, bank) = app.enrol(C::Bank).await;
    let r = app.submit(&bank, &["8.8.8.0/24"]).await;
    let other = app.token(Role::Isp("nayatel".parse().unwrap())).await;
    // A stale etag, a reused key, a wrong state: all look like a missing record.
    let mut stale = attest_request(&r, true);
    stale.etag = "v99".into();
    app.attest(&r, true).await.unwrap();
    for request in [stale, attest_request(&r, true)] {
        let err = app.isps(Some(&other)).attest_registration(request).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
    }
}

#[sqlx::test]
async fn errors_list_at_most_a_hundred_violations_and_echo_little_input(pool: PgPool) {
    let app = spawn_app(pool).await;
    let lookup = app.token(Role::Lookup).await;
    let long = "x".repeat(5_000);
    let err = app
        .lookups(Some(&lookup))
        .check_addresses(pb::CheckAddressesRequest {
            addresses: vec![long.clone(); 1_000],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let listed = err.get_details_bad_request().unwrap().field_violations;
    assert_eq!(listed.len(), 100);
    assert!(
        err.message().ends_with("and 997 more"),
        "{}",
        &err.message()[err.message().len() - 40..]
    );
    assert!(
        listed.iter().all(|v| !v.description.contains(&long[..65])),
        "{}",
        listed[0].description
    );
    // A single field echoes at most 64 characters of what was sent.
    let err = app
        .lookups(Some(&lookup))
        .check_address(pb::CheckAddressRequest {
            address: long.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let description = &err.get_details_bad_request().unwrap().field_violations[0].description;
    assert!(
        description.contains(&long[..64]) && !description.contains(&long[..65]),
        "{description}"
    );
}

#[sqlx::test]
async fn a_full_batch_of_ipv6_addresses_fits_and_one_more_is_refused(pool: PgPool) {
    let app = spawn_app(pool).await;
    let lookup = app.token(Role::Lookup).await;
    let addresses: Vec<String> = (0..100_000u32)
        .map(|i| format!("2a00:1450:4001:0829:{:04x}:{:04x}:ffff:ffff", i >> 16, i & 0xffff))
        .collect();
    let answer = app
        .lookups(Some(&lookup))
        .check_addresses(pb::CheckAddressesRequest {
            addresses: addresses.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.results.len(), 100_000);
    let mut too_many = addresses;
    too_many.push("2a00:1450::1".into());
    let err = app
        .lookups(Some(&lookup))
        .check_addresses(pb::CheckAddressesRequest {
            addresses: too_many,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::InvalidArgument,
        "the documented batch limit answers, not the size limit"
    );
}

#[sqlx::test]
async fn beyond_the_concurrency_limit_calls_are_shed_at_once(pool: PgPool) {
    let app = TestApp::builder(pool)
        .options(|o| o.max_concurrent_requests = 1)
        .start()
        .await;
    let lookup = app.token(Role::Lookup).await;
    // A call waiting for a serial that never comes holds the only slot.
    let mut waiting = app.lookups(Some(&lookup));
    let mut slow = tonic::Request::new(pb::CheckAddressRequest {
        address: "8.8.8.8".into(),
        min_serial: app.unapplied_serial().await,
        ..Default::default()
    });
    slow.set_timeout(Duration::from_secs(2));
    let held = tokio::spawn(async move { waiting.check_address(slow).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let err = app
        .lookups_on_new_connection(Some(&lookup))
        .check_address(pb::CheckAddressRequest {
            address: "8.8.8.8".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(1), "shed, not queued");
    assert_eq!(held.await.unwrap().unwrap_err().code(), Code::Unavailable);
}

#[sqlx::test]
async fn connections_to_postgres_use_tls_when_the_url_asks(pool: PgPool) {
    let ssl_on: String = sqlx::query_scalar("SHOW ssl").fetch_one(&pool).await.unwrap();
    let o = pool.connect_options();
    let url = format!(
        "postgres://{}@{}:{}/{}?sslmode=require",
        o.get_username(),
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap()
    );
    let connected = vpn_registry::db::connect(&url, 1, None).await;
    if ssl_on != "on" {
        assert!(connected.is_err(), "sslmode=require cannot be met without TLS");
        return;
    }
    let encrypted: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&connected.unwrap())
        .await
        .unwrap();
    assert!(encrypted, "the connection is encrypted (rustls)");
}

#[sqlx::test]
async fn last_use_is_written_back_without_a_write_per_call(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let (id, token) = app.token_with(Role::Lookup, Duration::from_secs(3600), None).await;
    for _ in 0..20 {
        app.isps(Some(&token))
            .list_isps(pb::ListIspsRequest::default())
            .await
            .unwrap();
    }
    let last_use = || async {
        sqlx::query_scalar::<_, Option<time::OffsetDateTime>>("SELECT last_use_time FROM api_tokens WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert!(last_use().await.is_none(), "nothing is written per call");
    // Stopping the server flushes what it holds (it also does so every 30 s).
    drop(app);
    eventually("the last use is written", Duration::from_secs(5), || async {
        last_use().await.map(|_| ())
    })
    .await;
}

#[sqlx::test]
async fn a_fan_out_replica_follows_its_upstream_over_tls(pool: PgPool) {
    let (root, certs) = spawn_tls_app(pool, false).await;
    let (_, bank) = root.enrol(pb::InstitutionCategory::Bank).await;
    let active = root.active(&bank, &["8.8.8.0/24"]).await;
    let dir = temp_dir();
    std::fs::write(dir.join("ca.pem"), &certs.ca_pem).unwrap();
    let mut upstream = crate::fanout::upstream_config(&root, root.addr).await;
    upstream.url = format!("https://localhost:{}", root.addr.port());
    upstream.ca_file = Some(dir.join("ca.pem"));
    let edge = TestApp::builder(root.pool.clone()).upstream(upstream).start().await;
    let lookup = root.token(Role::Lookup).await;
    edge.wait_until_known(&lookup).await;
    let answer = edge.check_address(&lookup, "8.8.8.8", active.feed_serial).await;
    assert!(answer.registered, "followed over TLS: {answer:?}");
}

#[sqlx::test]
async fn text_that_reorders_itself_is_refused_where_a_reviewer_would_read_it(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, bank) = app.enrol(C::Bank).await;
    let mut request = submit_request(&["8.8.8.0/24"]);
    request.registration.as_mut().unwrap().purpose = "Branch VPN \u{202E}devorppa yldaerla".into();
    let err = app
        .registrations(Some(&bank))
        .submit_registration(request)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&err), ["registration.purpose"]);
    assert_eq!(app.count("registrations").await, 0);
}
