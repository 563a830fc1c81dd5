//! Many WatchChanges subscribers at once: they share one snapshot (memory
//! does not grow with them), a cap refuses more, and a snapshot in progress
//! ends on shutdown.

use std::time::Duration;

use sqlx::PgPool;
use tonic::Code;
use vpn_registry::{domain::principal::Role, pb};

use crate::helpers::*;

/// Active registrations written straight into the tables (as a restore
/// would), one /32 each from 64.0.0.0 on.
async fn seed_active(pool: &PgPool, n: i64) {
    let mut conn = pool.acquire().await.unwrap();
    for statement in [
        "SET session_replication_role = replica",
        "INSERT INTO isps (code, name) VALUES ('ptcl', 'PTCL') ON CONFLICT DO NOTHING",
        "INSERT INTO institutions (id, category, legal_name, cnic, ntn, contact_email, contact_phone)
         VALUES ('00000000-0000-7000-8000-000000000001', 'COMPANY', 'Seeded Co', '3520212345671', '1234567',
                 'ops@seeded.pk', '+923001234567')",
    ] {
        sqlx::query(statement).execute(&mut *conn).await.unwrap();
    }
    sqlx::query(
        "INSERT INTO registrations (id, reference, institution_id, kind, protocol, source_prefixes, isp,
                                    isp_subscriber_id, purpose, valid_from, valid_until, state)
         SELECT gen_random_uuid(), 'VPN-2026-' || lpad(k::text, 7, '0'), '00000000-0000-7000-8000-000000000001',
                'VPN', 'WIREGUARD', ARRAY[('64.0.0.0'::inet + k)::cidr], 'ptcl', 'SUB-' || k, 'Seeded',
                now() - interval '1 day', now() + interval '1 year', 'ACTIVE'
           FROM generate_series(1, $1) k",
    )
    .bind(n)
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO active_prefixes (registration_id, institution_id, prefix)
         SELECT id, institution_id, source_prefixes[1] FROM registrations WHERE state = 'ACTIVE'",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query("SET session_replication_role = origin")
        .execute(&mut *conn)
        .await
        .unwrap();
}

/// Resident memory of this process (the server runs in it).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Reads a fresh watcher's stream to the end of its snapshot; the entries.
async fn read_snapshot(stream: &mut tonic::Streaming<pb::WatchChangesResponse>) -> usize {
    use pb::watch_changes_response::Event;
    let mut entries = 0;
    loop {
        match stream.message().await.unwrap().unwrap().event.unwrap() {
            Event::Reset(_) => {}
            Event::Snapshot(chunk) => entries += chunk.entries.len(),
            Event::SnapshotEnd(_) => return entries,
            Event::Deltas(_) => {}
        }
    }
}

#[sqlx::test]
async fn two_hundred_subscribers_share_one_snapshot(pool: PgPool) {
    const ENTRIES: usize = 20_000;
    seed_active(&pool, ENTRIES as i64).await;
    let app = spawn_app(pool).await;
    let lookup = app.token(Role::Lookup).await;
    // Warm up: one full read, so allocator pools exist before measuring.
    let mut first = app.watch(&lookup).await;
    assert_eq!(read_snapshot(&mut first).await, ENTRIES);
    let before = resident_bytes();

    // 180 subscribers that never read, on four connections (HTTP/2 allows
    // 256 streams each), and 20 that read everything, each on a connection of
    // its own (flow control is per connection: unread streams would stall
    // the readers sharing theirs).
    let clients: Vec<_> = (0..4).map(|_| app.lookups_on_new_connection(Some(&lookup))).collect();
    let mut stalled = Vec::new();
    for i in 0..180 {
        let stream = clients[i % 4]
            .clone()
            .watch_changes(pb::WatchChangesRequest::default())
            .await
            .unwrap()
            .into_inner();
        stalled.push(stream);
    }
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let mut client = app.lookups_on_new_connection(Some(&lookup));
        readers.spawn(async move {
            let mut stream = client
                .watch_changes(pb::WatchChangesRequest::default())
                .await
                .unwrap()
                .into_inner();
            read_snapshot(&mut stream).await
        });
    }
    while let Some(read) = readers.join_next().await {
        assert_eq!(read.unwrap(), ENTRIES, "every reader gets the whole snapshot");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grown = resident_bytes().saturating_sub(before);
    eprintln!(
        "200 subscribers over {ENTRIES} entries: resident memory grew by {} MB",
        grown / 1_000_000
    );
    // A copy of the set per subscriber would be 200 x 20,000 entries (about
    // 600 MB); shared, what grows is the streams' transport buffers.
    assert!(
        grown < 200_000_000,
        "resident memory grew by {} MB with 200 subscribers",
        grown / 1_000_000
    );
    drop(stalled);
}

#[sqlx::test]
async fn watchers_beyond_the_cap_are_refused_until_one_leaves(pool: PgPool) {
    let app = TestApp::builder(pool).options(|o| o.max_watchers = 2).start().await;
    let lookup = app.token(Role::Lookup).await;
    let mut client = app.lookups_on_new_connection(Some(&lookup));
    let first = client.watch_changes(pb::WatchChangesRequest::default()).await.unwrap();
    let _second = client.watch_changes(pb::WatchChangesRequest::default()).await.unwrap();
    let err = client
        .watch_changes(pb::WatchChangesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    drop(first);
    eventually("the slot is given back", Duration::from_secs(5), || {
        let mut client = client.clone();
        async move {
            match client.watch_changes(pb::WatchChangesRequest::default()).await {
                Ok(stream) => Some(stream),
                Err(e) => {
                    assert_eq!(e.code(), Code::ResourceExhausted);
                    None
                }
            }
        }
    })
    .await;
}

#[sqlx::test]
async fn a_snapshot_in_progress_ends_on_shutdown_with_unavailable(pool: PgPool) {
    seed_active(&pool, 50_000).await;
    let app = spawn_app(pool).await;
    let lookup = app.token(Role::Lookup).await;
    let mut stream = app.watch(&lookup).await;
    // Read the reset only: the rest of the snapshot waits on us.
    stream.message().await.unwrap().unwrap();
    drop(app);
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(status) => return Some(status.code()),
            }
        }
    })
    .await
    .expect("the stream ends");
    assert_eq!(ended, Some(Code::Unavailable), "told to resume elsewhere");
}

#[sqlx::test]
async fn a_replica_reading_without_notifications_converges_by_polling(pool: PgPool) {
    // As on a hot standby: a separate read pool, no LISTEN.
    let app = TestApp::builder(pool.clone())
        .read_pool(runtime_pool(&pool).await)
        .options(|o| {
            o.notifications = false;
            o.feed_poll_interval = Duration::from_millis(100);
        })
        .start()
        .await;
    let listening: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(listening, 0, "nothing LISTENs");
    // Credentials arrive by polling too (app.token waits for them).
    let (_, bank) = app.enrol(pb::InstitutionCategory::Bank).await;
    let active = app.active(&bank, &["8.8.8.0/24"]).await;
    let lookup = app.token(Role::Lookup).await;
    let found = app
        .lookups(Some(&lookup))
        .check_address(pb::CheckAddressRequest {
            address: "8.8.8.8".into(),
            min_serial: active.feed_serial,
            ..Default::default()
        })
        .await
        .expect("the replica reaches the serial by polling")
        .into_inner();
    assert!(found.registered);
}
