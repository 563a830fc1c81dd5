//! Fan-out replicas (`serve --upstream`): a chain PostgreSQL -> replica ->
//! fan-out replica -> fan-out replica -> gateway stays equal to the
//! database under concurrent changes, with the same session and serials;
//! a fan-out replica serves nothing before its first snapshot, resumes
//! after a broken link, forwards questions about the past, and follows its
//! upstream's resets.

use std::time::Duration;

use sqlx::PgPool;
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use vpn_registry::{
    domain::principal::Role,
    grpc::upstream::UpstreamConfig,
    pb::{self, InstitutionCategory as C},
};

use crate::gateway::{Copy, db_active_set};
use crate::helpers::*;
use crate::proxy::Proxy;
use vpn_registry::domain::decision::Decision;

/// How to follow `upstream` (its gRPC address) as a fan-out replica, with
/// a lookup token issued by `issuer`.
pub async fn upstream_config(issuer: &TestApp, upstream: std::net::SocketAddr) -> UpstreamConfig {
    let token = issuer.token(Role::Lookup).await;
    let token_file = std::env::temp_dir().join(format!("vpn-registry-upstream-{}", uuid::Uuid::new_v4()));
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    UpstreamConfig {
        url: format!("http://{upstream}"),
        token_file,
        ca_file: None,
        client_identity: None,
        journal: 1_000,
    }
}

/// A fan-out replica of `upstream`, SERVING (its first snapshot applied).
async fn fan_out(upstream: &TestApp) -> TestApp {
    let config = upstream_config(upstream, upstream.addr).await;
    TestApp::builder(upstream.pool.clone()).upstream(config).start().await
}

async fn lookup_health(app: &TestApp) -> i32 {
    HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest {
            service: "vpnregistry.v1.LookupService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

#[sqlx::test]
async fn a_chain_of_fan_out_replicas_stays_equal_to_the_database_under_concurrent_changes(pool: PgPool) {
    let root = spawn_app(pool).await;
    let (_, a) = root.enrol(C::Bank).await;
    let (_, b) = root.enrol(C::Company).await;
    let first = root.active(&a, &["8.8.8.0/24", "2a00:1450::/48"]).await;
    let while_first_active = ts(time::OffsetDateTime::now_utc());
    root.active(&b, &["9.9.9.0/24"]).await;
    let middle = fan_out(&root).await;
    let leaf = fan_out(&middle).await;
    let lookup = root.token(Role::Lookup).await;

    // A gateway on the leaf, from zero.
    let mut gateway = Copy::default();
    let mut stream = leaf.watch(&lookup).await;
    gateway.follow(&mut stream, first.feed_serial).await;
    assert_eq!(gateway.entries, db_active_set(&root.pool).await);
    let session: String = sqlx::query_scalar("SELECT session_id::text FROM feed_state")
        .fetch_one(&root.pool)
        .await
        .unwrap();
    assert_eq!(gateway.session, session, "the leaf streams the database's session");

    // Approvals, a revocation, an amendment, an expiry while it reads.
    let writes = async {
        root.active(&b, &["31.1.0.0/24"]).await;
        let doomed = root.active(&b, &["31.2.0.0/24", "31.3.0.0/24"]).await;
        root.decide(Decision::Revoke, &doomed, pb::ReasonCode::PolicyViolation, "Misuse")
            .await
            .unwrap();
        let mut moved = first.clone();
        moved.source_prefixes = vec!["8.8.8.0/25".into()];
        let revision = root
            .registrations(Some(&a))
            .amend_registration(amend_request(moved, &["source_prefixes"]))
            .await
            .unwrap()
            .into_inner();
        root.approve(&revision).await.unwrap();
        let expiring = root.active(&b, &["31.4.0.0/24"]).await;
        assert_eq!(root.expire_now(&expiring.reference).await, 1);
        last_serial(&root.pool).await
    };
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<i64>();
    let reads = async {
        let mut target = None;
        loop {
            if let Some(t) = target.filter(|t| gateway.serial >= *t && !gateway.in_snapshot) {
                return t;
            }
            tokio::select! {
                msg = tokio::time::timeout(Duration::from_secs(10), stream.message()) => {
                    gateway.apply(msg.expect("the chain keeps up").unwrap().expect("stream open"));
                }
                t = &mut done_rx, if target.is_none() => target = Some(t.unwrap()),
            }
        }
    };
    let write_then_tell = async {
        let last = writes.await;
        done_tx.send(last).unwrap();
    };
    let ((), final_serial) = tokio::join!(write_then_tell, reads);
    assert_eq!(final_serial, last_serial(&root.pool).await);
    assert_eq!(
        gateway.entries,
        db_active_set(&root.pool).await,
        "the gateway behind two fan-out levels"
    );
    assert_eq!(gateway.serial, final_serial, "serials mean the same at every level");

    // Lookups on the leaf: the present from its index (at the same serial
    // as the root), scoped as the root scopes them.
    let on_leaf = leaf.check_address(&lookup, "8.8.8.200", final_serial).await;
    let on_root = root.check_address(&lookup, "8.8.8.200", final_serial).await;
    assert!(!on_leaf.registered, "moved to 8.8.8.0/25");
    assert_eq!(on_leaf, on_root);
    assert_eq!(
        leaf.check_address(&lookup, "8.8.8.1", final_serial)
            .await
            .matched_prefix,
        "8.8.8.0/25"
    );
    let isp = root.isp_token().await.to_owned();
    assert!(
        leaf.check_address(&isp, "9.9.9.9", final_serial).await.registered,
        "ISP ptcl's own"
    );
    assert!(
        leaf.check_address(&a, "8.8.8.1", final_serial).await.registered,
        "the bank's own"
    );
    assert!(
        !leaf.check_address(&a, "9.9.9.9", final_serial).await.registered,
        "another institution's registration is not the bank's to see"
    );

    // The past is forwarded (with the caller's own credentials) to a replica
    // that reads PostgreSQL.
    let past = |token: String| {
        let leaf = &leaf;
        async move {
            leaf.lookups(Some(&token))
                .check_address(pb::CheckAddressRequest {
                    address: "8.8.8.200".into(),
                    at: Some(while_first_active),
                    min_serial: 0,
                })
                .await
        }
    };
    let then = past(lookup.clone()).await.unwrap().into_inner();
    assert!(then.registered && then.reference == first.reference, "{then:?}");
    let other = root.enrol(C::Company).await.1;
    for replica in [&leaf, &middle] {
        replica.wait_until_known(&other).await;
    }
    assert!(
        !past(other).await.unwrap().into_inner().registered,
        "scoped upstream as the caller"
    );
    let refused = past("not-a-token".into()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    // Lookup-only: the registry services are not served here.
    let err = leaf
        .registrations(Some(&a))
        .get_registration(pb::GetRegistrationRequest { id: first.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
}

#[sqlx::test]
async fn a_fan_out_replica_waits_for_its_first_snapshot_and_resumes_after_a_broken_link(pool: PgPool) {
    let root = spawn_app(pool).await;
    let (_, a) = root.enrol(C::Bank).await;
    root.active(&a, &["8.8.8.0/24"]).await;
    let link = Proxy::start(root.addr).await;
    link.cut();
    let config = upstream_config(&root, link.addr).await;
    let edge = TestApp::builder(root.pool.clone())
        .upstream(config)
        .without_waiting()
        .start()
        .await;
    let lookup = root.token(Role::Lookup).await;
    edge.wait_until_known(&lookup).await;

    // Until the first snapshot: NOT_SERVING, and lookups answer UNAVAILABLE.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(lookup_health(&edge).await, 2, "NOT_SERVING");
    let err = edge
        .lookups(Some(&lookup))
        .check_address(pb::CheckAddressRequest {
            address: "8.8.8.8".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    link.restore();
    eventually("the edge reports SERVING", Duration::from_secs(10), || async {
        (lookup_health(&edge).await == 1).then_some(())
    })
    .await;
    let serial = last_serial(&root.pool).await;
    assert!(edge.check_address(&lookup, "8.8.8.8", serial).await.registered);

    // A gateway on the edge, then the link breaks while changes commit.
    let mut gateway = Copy::default();
    let mut stream = edge.watch(&lookup).await;
    gateway.follow(&mut stream, serial).await;
    link.cut();
    let added = root.active(&a, &["8.8.9.0/24"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = edge
        .lookups(Some(&lookup))
        .check_address(pb::CheckAddressRequest {
            address: "8.8.9.9".into(),
            min_serial: added.feed_serial,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "not applied while cut: {err:?}");
    link.restore();
    // Resumed from its serial (deltas, no reset): the gateway's stream
    // stays open and receives just the change.
    gateway.follow(&mut stream, added.feed_serial).await;
    assert_eq!(gateway.entries, db_active_set(&root.pool).await);
    assert!(
        edge.check_address(&lookup, "8.8.9.9", added.feed_serial)
            .await
            .registered
    );

    // A second gateway resumes from the first one's old serial: the edge
    // replays it from its journal (deltas, no reset).
    let mut resumed = edge
        .lookups(Some(&lookup))
        .watch_changes(pb::WatchChangesRequest {
            session_id: gateway.session.clone(),
            since_serial: serial,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = resumed.message().await.unwrap().unwrap();
    let Some(pb::watch_changes_response::Event::Deltas(batch)) = first.event else {
        panic!("expected deltas from the journal, got {first:?}");
    };
    assert_eq!(batch.deltas.last().unwrap().serial, added.feed_serial);

    // A new feed session at the database: the root reloads, the edge is
    // reset by it and resets its own gateways.
    vpn_registry::db::feed::new_session(&root.pool, &vpn_registry::domain::principal::Actor::operator("test"))
        .await
        .unwrap();
    let ended = gateway.until_ended(&mut stream).await;
    assert_eq!(ended.code(), Code::Aborted, "{ended:?}");
    let mut again = Copy {
        session: gateway.session.clone(),
        ..Default::default()
    };
    let mut stream = edge
        .lookups(Some(&lookup))
        .watch_changes(pb::WatchChangesRequest {
            session_id: gateway.session.clone(),
            since_serial: gateway.serial,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let serial = last_serial(&root.pool).await;
    again.follow(&mut stream, serial).await;
    assert_ne!(again.session, gateway.session, "reset into the new session");
    assert_eq!(again.entries, db_active_set(&root.pool).await);
}

#[sqlx::test]
async fn scoping_fields_go_only_to_the_regulators_roles_that_ask_for_them(pool: PgPool) {
    use pb::watch_changes_response::Event;
    let app = spawn_app(pool).await;
    let (bank, token) = app.enrol(C::Bank).await;
    app.active(&token, &["8.8.8.0/24"]).await;
    let lookup = app.token(Role::Lookup).await;
    let first_entry = |scoping: bool, token: String| {
        let app = &app;
        async move {
            let mut stream = app
                .lookups(Some(&token))
                .watch_changes(pb::WatchChangesRequest {
                    include_scoping: scoping,
                    ..Default::default()
                })
                .await?
                .into_inner();
            loop {
                if let Some(Event::Snapshot(chunk)) = stream.message().await?.unwrap().event {
                    return Ok::<_, tonic::Status>(chunk.entries[0].clone());
                }
            }
        }
    };
    let plain = first_entry(false, lookup.clone()).await.unwrap();
    assert_eq!((plain.isp_code.as_str(), plain.institution_id.as_str()), ("", ""));
    let scoped = first_entry(true, lookup).await.unwrap();
    assert_eq!(
        (scoped.isp_code.as_str(), scoped.institution_id.as_str()),
        ("ptcl", bank.id.as_str())
    );
    let isp = app.isp_token().await.to_owned();
    assert_eq!(first_entry(false, isp.clone()).await.unwrap().isp_code, "");
    let refused = first_entry(true, isp).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
}
