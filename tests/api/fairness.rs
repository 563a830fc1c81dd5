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

/// `n` lookups as `token` that each wait (up to `hold`) for `serial`, on
/// connections of their own; their answers.
fn flood(app: &TestApp, token: &str, serial: i64, n: usize, hold: Duration) -> tokio::task::JoinSet<tonic::Code> {
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..n {
        let mut client = app.lookups_on_new_connection(Some(token));
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
