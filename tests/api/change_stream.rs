//! The change stream as a gateway follows it: from zero, from a serial, from
//! a stale session, and what happens to a watcher that falls behind.

use std::collections::BTreeSet;

use sqlx::PgPool;
use tonic::Code;
use vpn_registry::domain::principal::Role;
use vpn_registry::pb::{self, InstitutionCategory as C};

use crate::gateway::{Copy, db_active_set};
use crate::helpers::*;
use vpn_registry::domain::decision::Decision;

#[sqlx::test]
async fn watchers_from_zero_from_a_serial_and_from_a_stale_session_all_converge(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, a) = app.enrol(C::Bank).await;
    let (_, b) = app.enrol(C::Company).await;
    let first = app.active(&a, &["8.8.8.0/24", "2a00:1450::/48"]).await;
    let mut lookups = app.lookups(Some(app.isp_token().await));

    // From zero: reset, snapshot, then live deltas.
    let mut fresh = Copy::default();
    let mut from_zero = lookups
        .watch_changes(pb::WatchChangesRequest::default())
        .await
        .unwrap()
        .into_inner();
    fresh.follow(&mut from_zero, first.feed_serial).await;
    assert_eq!(fresh.entries, db_active_set(&app.pool).await);
    let mid = (fresh.session.clone(), fresh.serial);

    // Changes land while the watcher reads: approvals, a revocation, an
    // amendment swapped in, an expiry.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<i64>();
    let writes = async {
        app.active(&b, &["9.9.9.0/24"]).await;
        let active = app.active(&b, &["9.9.10.0/24", "9.9.11.0/24"]).await;
        app.decide(Decision::Revoke, &active, pb::ReasonCode::PolicyViolation, "Misuse")
            .await
            .unwrap();
        let mut moved = first.clone();
        moved.source_prefixes = vec!["8.8.8.0/25".into()];
        let revision = app
            .registrations(Some(&a))
            .amend_registration(amend_request(moved, &["source_prefixes"]))
            .await
            .unwrap()
            .into_inner();
        app.approve(&revision).await.unwrap();
        app.active(&a, &["8.8.4.0/24"]).await;
        app.expire_now(&first.reference).await;
        let last = app.last_serial().await;
        done_tx.send(last).unwrap();
    };
    let reads = async {
        let mut done_rx = done_rx;
        let mut target = None;
        loop {
            if target.is_some_and(|t| fresh.serial >= t && !fresh.in_snapshot) {
                return target.unwrap();
            }
            tokio::select! {
                msg = from_zero.message() => fresh.apply(msg.unwrap().expect("stream open")),
                t = &mut done_rx, if target.is_none() => target = Some(t.unwrap()),
            }
        }
    };
    let ((), final_serial) = tokio::join!(writes, reads);
    let expected = db_active_set(&app.pool).await;
    assert_eq!(fresh.entries, expected, "the live copy");
    assert!(
        !expected.contains(&(first.reference.clone(), "8.8.8.0/25".to_owned())),
        "the expired one left"
    );

    // Resuming from the mid serial replays only what came after it.
    let mut resumed = Copy {
        session: mid.0.clone(),
        serial: mid.1,
        entries: fresh_entries_at_mid(&app, mid.1).await,
        in_snapshot: false,
    };
    let mut stream = lookups
        .watch_changes(pb::WatchChangesRequest {
            session_id: mid.0.clone(),
            since_serial: mid.1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    resumed.follow(&mut stream, final_serial).await;
    assert_eq!(resumed.entries, expected, "the resumed copy");

    // A stale session gets a reset and a snapshot.
    let mut stale = Copy {
        session: "not-the-session".into(),
        serial: 3,
        ..Default::default()
    };
    let mut stream = lookups
        .watch_changes(pb::WatchChangesRequest {
            session_id: uuid::Uuid::now_v7().to_string(),
            since_serial: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first_msg = stream.message().await.unwrap().unwrap();
    assert!(matches!(
        first_msg.event,
        Some(pb::watch_changes_response::Event::Reset(_))
    ));
    stale.apply(first_msg);
    stale.follow(&mut stream, final_serial).await;
    assert_eq!(stale.entries, expected, "the reset copy");
    assert_eq!(stale.session, mid.0);
}

/// The active set as of `serial`, replayed from the feed table.
async fn fresh_entries_at_mid(app: &TestApp, serial: i64) -> BTreeSet<(String, String)> {
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT op, reference, prefix::text FROM change_feed WHERE serial <= $1 ORDER BY serial")
            .bind(serial)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let mut set = BTreeSet::new();
    for (op, reference, prefix) in rows {
        if op == "ANNOUNCE" {
            set.insert((reference, prefix));
        } else {
            set.remove(&(reference, prefix));
        }
    }
    set
}

#[sqlx::test]
async fn a_watcher_that_falls_behind_is_dropped_with_a_status_it_can_resume_from(pool: PgPool) {
    use pb::watch_changes_response::Event;
    let app = spawn_app(pool).await; // keeps 8 applied batches for watchers
    let (_, bank) = app.enrol(C::Bank).await;
    // 60 prefixes, so every change is a large batch and an unread stream
    // soon exhausts HTTP/2 flow control and the server's buffer.
    let hosts: Vec<String> = (1..=60).map(|i| format!("8.8.8.{i}")).collect();
    let r = app
        .active(&bank, &hosts.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let lookup = app.token(Role::Lookup).await;
    let mut client = app.lookups(Some(&lookup));
    let mut stream = client
        .watch_changes(pb::WatchChangesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut session = String::new();
    let mut applied;
    loop {
        match stream.message().await.unwrap().unwrap().event.unwrap() {
            Event::Reset(reset) => session = reset.session_id,
            Event::SnapshotEnd(end) => {
                applied = end.serial;
                break;
            }
            _ => {}
        }
    }
    // 600 separately applied changes (about 4 MB of deltas, beyond HTTP/2
    // windows and the server buffer) while the watcher
    // does not read.
    let id = uuid::Uuid::parse_str(&r.id).unwrap();
    let mut checker = app.lookups_on_new_connection(Some(&lookup));
    for i in 0..600 {
        let state = if i % 2 == 0 { "SUSPENDED" } else { "ACTIVE" };
        sqlx::query("UPDATE registrations SET state = $2 WHERE id = $1")
            .bind(id)
            .bind(state)
            .execute(&app.pool)
            .await
            .unwrap();
        let serial = app.last_serial().await;
        checker
            .check_address(pb::CheckAddressRequest {
                address: "8.8.8.8".into(),
                min_serial: serial,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let status = loop {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message());
        let Ok(next) = next.await else {
            let last = app.last_serial().await;
            panic!("no status after applying {applied} of {last}");
        };
        match next {
            Ok(Some(msg)) => {
                if let Some(Event::Deltas(batch)) = msg.event {
                    applied = batch.deltas.last().map_or(applied, |d| d.serial);
                }
            }
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("since_serial"), "{}", status.message());

    // Resuming from what it applied brings it up to date.
    let last = app.last_serial().await;
    let mut resumed = client
        .watch_changes(pb::WatchChangesRequest {
            session_id: session,
            since_serial: applied,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    while applied < last {
        match resumed.message().await.unwrap().unwrap().event.unwrap() {
            Event::Deltas(batch) => {
                for d in batch.deltas {
                    assert_eq!(d.serial, applied + 1, "no gap on resume");
                    applied = d.serial;
                }
            }
            other => panic!("a resume needs no reset: {other:?}"),
        }
    }
}
