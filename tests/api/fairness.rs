//! No client can starve the others: one principal's flood of calls that
//! wait takes its own share, never the server; health checks are never
//! refused for load; one principal cannot take every change stream.

use std::time::Duration;

use sqlx::PgPool;
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
use vpn_registry::domain::principal::{Role, RoleKind};
use vpn_registry::pb;

use crate::helpers::*;

/// `n` lookups as `token` that each wait (up to `hold`) for `serial`, on a
/// connection of their own; their answers.
fn flood(app: &TestApp, token: &str, serial: i64, n: usize, hold: Duration) -> tokio::task::JoinSet<tonic::Code> {
    let mut calls = tokio::task::JoinSet::new();
    let client = app.lookups_on_new_connection(Some(token));
    for _ in 0..n {
        let mut client = client.clone();
        let mut waiting = tonic::Request::new(pb::CheckAddressRequest {
            address: "8.8.8.8".into(),
            min_serial: serial,
            ..Default::default()
        });
        waiting.set_timeout(hold);
        calls.spawn(async move {
            match client.check_address(waiting).await {
                Ok(_) => Code::Ok,
                Err(e) => e.code(),
            }
        });
    }
    calls
}

async fn health(app: &TestApp) -> i32 {
    HealthClient::new(app.new_connection())
        .check(HealthCheckRequest::default())
        .await
        .expect("health answers")
        .into_inner()
        .status
}

#[sqlx::test]
async fn one_principals_flood_takes_its_own_share_not_the_server(pool: PgPool) {
    let app = TestApp::builder(pool)
        .options(|o| {
            o.max_concurrent_requests = 64;
            o.max_in_flight = vec![(RoleKind::Isp, 8)];
        })
        .start()
        .await;
    let isp = app.isp_token().await.to_owned();
    let unapplied = app.unapplied_serial().await;
    let mut flood = flood(&app, &isp, unapplied, 30, Duration::from_secs(4));
    // The calls beyond its cap are refused at once, while the others wait.
    let mut refused = 0;
    while refused < 22 {
        let code = tokio::time::timeout(Duration::from_secs(2), flood.join_next())
            .await
            .expect("refused at once, not after the wait")
            .unwrap()
            .unwrap();
        assert_eq!(code, Code::ResourceExhausted);
        refused += 1;
    }
    // Meanwhile another principal, its own ISP desk included, and health.
    let reviewer = app.reviewer_token().await.to_owned();
    app.registrations(Some(&reviewer))
        .list_registrations(pb::ListRegistrationsRequest::default())
        .await
        .expect("another principal is served");
    let lookup = app.token(Role::Lookup).await;
    assert!(!app.check_address(&lookup, "8.8.8.8", 0).await.registered);
    assert_eq!(health(&app).await, ServingStatus::Serving as i32);
    let more = app
        .lookups(Some(&isp))
        .check_address(pb::CheckAddressRequest {
            address: "8.8.8.8".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(more.code(), Code::ResourceExhausted, "still at its cap");
    assert!(more.message().contains("calls in flight"), "{more:?}");
    flood.shutdown().await;
}

#[sqlx::test]
async fn health_checks_are_answered_when_the_server_is_full(pool: PgPool) {
    let app = TestApp::builder(pool)
        .options(|o| o.max_concurrent_requests = 10)
        .start()
        .await;
    let lookup = app.token(Role::Lookup).await;
    let reviewer = app.reviewer_token().await.to_owned();
    let unapplied = app.unapplied_serial().await;
    let mut flood = flood(&app, &lookup, unapplied, 20, Duration::from_secs(4));
    // Full: ten wait, the other ten are shed at once ...
    for _ in 0..10 {
        let code = tokio::time::timeout(Duration::from_secs(2), flood.join_next())
            .await
            .expect("shed at once")
            .unwrap()
            .unwrap();
        assert_eq!(code, Code::ResourceExhausted);
    }
    // ... and so is another principal's call ...
    let shed = app
        .registrations(Some(&reviewer))
        .list_registrations(pb::ListRegistrationsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(shed.code(), Code::ResourceExhausted);
    assert!(shed.message().contains("limit of calls in flight"), "{shed:?}");
    // ... and health still answers SERVING.
    for _ in 0..5 {
        assert_eq!(health(&app).await, ServingStatus::Serving as i32);
    }
    flood.shutdown().await;
}

#[sqlx::test]
async fn one_principal_cannot_take_every_change_stream(pool: PgPool) {
    let app = TestApp::builder(pool)
        .options(|o| {
            o.max_watchers = 10;
            o.max_watchers_per_principal = vec![(RoleKind::Isp, 3)];
        })
        .start()
        .await;
    let isp = app.isp_token().await.to_owned();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(app.watch(&isp).await);
    }
    let err = app
        .lookups_on_new_connection(Some(&isp))
        .watch_changes(pb::WatchChangesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("this principal"), "{err:?}");
    // Another principal still gets one, and the first gets its place back.
    let lookup = app.token(Role::Lookup).await;
    let _other = app.watch(&lookup).await;
    drop(held.pop());
    eventually("the place is given back", Duration::from_secs(5), || async {
        app.lookups_on_new_connection(Some(&isp))
            .watch_changes(pb::WatchChangesRequest::default())
            .await
            .ok()
    })
    .await;
}

/// `n` TCP connections to `app` from `source` (a loopback address of its
/// own) that send nothing.
async fn idle_sockets(app: &TestApp, source: &str, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut sockets = Vec::new();
    for _ in 0..n {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        sockets.push(socket.connect(app.addr).await.unwrap());
    }
    sockets
}

/// Whether the server closes `socket` within `within` (it sends nothing
/// first, so a read ends with EOF or an error).
async fn closed_within(socket: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt as _;
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(within, socket.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[sqlx::test]
async fn idle_sockets_from_one_address_cost_another_clients_handshake_nothing(pool: PgPool) {
    let (app, _certs) = crate::security::spawn_tls_app(pool, true).await;
    // 300 connections that never start a handshake, from another address.
    let mut idle = idle_sockets(&app, "127.0.0.2", 300).await;
    // A client from its own address completes its mTLS handshake and call at
    // once, not after the idle ones time out.
    let started = std::time::Instant::now();
    assert_eq!(health(&app).await, ServingStatus::Serving as i32);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the handshake waited {:?}",
        started.elapsed()
    );
    // Beyond its few pending handshakes, the idle address's connections are
    // closed at once; the rest when the handshake timeout passes.
    let mut closed = 0;
    for socket in &mut idle {
        closed += usize::from(closed_within(socket, Duration::from_millis(500)).await);
    }
    assert!(closed >= 260, "{closed} of 300 closed at once");
    for socket in &mut idle {
        assert!(
            closed_within(socket, Duration::from_secs(6)).await,
            "closed after the timeout"
        );
    }
}

#[sqlx::test]
async fn an_address_holds_a_bounded_number_of_connections_and_silent_ones_are_closed(pool: PgPool) {
    let app = TestApp::builder(pool)
        .options(|o| {
            o.peer_limits.connections_per_address = 3;
            o.peer_limits.handshake_timeout = Duration::from_millis(500);
            o.peer_limits.idle_timeout = Duration::from_secs(1);
        })
        .without_waiting()
        .start()
        .await;
    // Three connections from this address are served (each a channel of its own) ...
    let held: Vec<_> = (0..3).map(|_| app.new_connection()).collect();
    for channel in &held {
        HealthClient::new(channel.clone())
            .check(HealthCheckRequest::default())
            .await
            .expect("within the cap");
    }
    // ... a fourth is closed (its call fails), while another address is served.
    let fourth = HealthClient::new(app.new_connection())
        .check(HealthCheckRequest::default())
        .await;
    assert!(fourth.is_err(), "{fourth:?}");
    // A connection that sends nothing, from yet another address, is closed
    // after the handshake timeout.
    let mut silent = idle_sockets(&app, "127.0.0.3", 1).await;
    assert!(closed_within(&mut silent[0], Duration::from_secs(3)).await);
    // One that sent a few bytes and then nothing is closed after the idle timeout.
    let mut quiet = idle_sockets(&app, "127.0.0.4", 1).await.remove(0);
    use tokio::io::AsyncWriteExt as _;
    quiet.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    assert!(closed_within_after_reads(&mut quiet, Duration::from_secs(5)).await);
}

/// Whether the server closes `socket` within `within`, reading (and
/// dropping) whatever it sends meanwhile.
async fn closed_within_after_reads(socket: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt as _;
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}
