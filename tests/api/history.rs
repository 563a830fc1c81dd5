//! Bounded history: as-of lookups read intervals of activity kept for the
//! history retention; the change feed is pruned after the feed retention, and
//! whoever is behind what was pruned starts from a snapshot.

use std::time::Duration;

use sqlx::{PgPool, migrate::Migrate as _};
use time::OffsetDateTime;
use tonic::Code;
use vpn_registry::{
    db::{self, feed},
    domain::principal::Role,
    pb::{self, InstitutionCategory as C, watch_changes_response::Event},
};

use crate::helpers::*;
use vpn_registry::domain::decision::Decision;

/// As-of answers by the feed itself (what `at` lookups read before the
/// history table existed): for each address, the (registration, prefix)
/// whose last feed row by `at` is an announcement.
async fn from_the_feed(pool: &PgPool, addrs: &[std::net::IpAddr], at: OffsetDateTime) -> Vec<(usize, String)> {
    let nets: Vec<ipnet::IpNet> = addrs.iter().map(|&a| a.into()).collect();
    let mut rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT q.i, last.registration_id::text || ' ' || last.prefix::text
           FROM unnest($1::inet[]) WITH ORDINALITY AS q(addr, i)
          CROSS JOIN LATERAL (
              SELECT DISTINCT ON (registration_id, prefix) registration_id, prefix, op
                FROM change_feed
               WHERE prefix >>= q.addr AND commit_time <= $2
               ORDER BY registration_id, prefix, serial DESC
          ) last
          WHERE last.op = 'ANNOUNCE'",
    )
    .bind(nets)
    .bind(at)
    .fetch_all(pool)
    .await
    .unwrap();
    rows.sort();
    rows.into_iter().map(|(i, e)| (i as usize - 1, e)).collect()
}

/// The same question answered from the history of intervals.
async fn from_history(pool: &PgPool, addrs: &[std::net::IpAddr], at: OffsetDateTime) -> Vec<(usize, String)> {
    let mut rows: Vec<(usize, String)> = feed::active_at(pool, addrs, at)
        .await
        .unwrap()
        .into_iter()
        .map(|(i, r)| (i, format!("{} {}", r.registration_id, r.prefix)))
        .collect();
    rows.sort();
    rows
}

async fn run(pool: &PgPool, statement: &str) -> OffsetDateTime {
    sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{e}: {statement}"));
    tokio::time::sleep(Duration::from_millis(5)).await;
    sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrations = false)]
async fn the_history_migration_keeps_every_answer_the_feed_gave(pool: PgPool) {
    // The schema before the history table, with a feed written on it.
    let at = db::MIGRATOR
        .migrations
        .iter()
        .position(|m| m.description.contains("bounded history"))
        .expect("the bounded history migration");
    let (before, last) = db::MIGRATOR.migrations.split_at(at);
    let mut conn = pool.acquire().await.unwrap();
    conn.ensure_migrations_table("_sqlx_migrations").await.unwrap();
    for m in before {
        conn.apply("_sqlx_migrations", m).await.unwrap();
    }
    let mut times = vec![OffsetDateTime::now_utc() - time::Duration::hours(1)];
    run(&pool, "INSERT INTO isps (code, name) VALUES ('ptcl', 'PTCL')").await;
    run(
        &pool,
        "INSERT INTO institutions (id, category, legal_name, cnic, ntn, contact_email, contact_phone)
         VALUES ('00000000-0000-7000-8000-000000000001', 'COMPANY', 'Seeded Co', '3520212345671', '1234567',
                 'ops@seeded.pk', '+923001234567')",
    )
    .await;
    run(
        &pool,
        "INSERT INTO registrations (id, reference, institution_id, kind, protocol, source_prefixes, isp,
                                    isp_subscriber_id, purpose, valid_from, valid_until, state)
         SELECT gen_random_uuid(), 'VPN-2026-' || lpad(k::text, 7, '0'), '00000000-0000-7000-8000-000000000001',
                'VPN', 'WIREGUARD', ARRAY[('64.0.' || k || '.0/24')::cidr, ('2a00:' || k || '::/48')::cidr],
                'ptcl', 'SUB-' || k, 'Seeded', now() - interval '1 day', now() + interval '1 year', 'ISP_VERIFICATION'
           FROM generate_series(1, 30) k",
    )
    .await;
    let k = "substring(reference from 10)::int";
    run(&pool, "UPDATE registrations SET state = 'UNDER_REVIEW'").await;
    times.push(run(&pool, "UPDATE registrations SET state = 'ACTIVE'").await);
    times.push(
        run(
            &pool,
            &format!("UPDATE registrations SET peer_prefixes = ARRAY['10.0.0.0/8'::cidr] WHERE {k} % 3 = 0"),
        )
        .await,
    );
    times.push(
        run(
            &pool,
            &format!("UPDATE registrations SET state = 'SUSPENDED' WHERE {k} % 5 = 0"),
        )
        .await,
    );
    times.push(
        run(
            &pool,
            &format!("UPDATE registrations SET state = 'REVOKED' WHERE {k} % 7 = 0 AND state = 'ACTIVE'"),
        )
        .await,
    );

    // It, and every migration after it.
    for m in last {
        conn.apply("_sqlx_migrations", m).await.unwrap();
    }
    // After it, the trigger keeps the history.
    times.push(
        run(
            &pool,
            &format!("UPDATE registrations SET state = 'ACTIVE' WHERE {k} % 5 = 0 AND state = 'SUSPENDED'"),
        )
        .await,
    );
    times.push(
        run(
            &pool,
            &format!("UPDATE registrations SET state = 'EXPIRED' WHERE {k} % 11 = 0 AND state = 'ACTIVE'"),
        )
        .await,
    );

    let addrs: Vec<std::net::IpAddr> = (1..=31)
        .flat_map(|k| [format!("64.0.{k}.9"), format!("2a00:{k}::1")])
        .map(|a| a.parse().unwrap())
        .collect();
    let mut sizes = Vec::new();
    for at in times {
        let expected = from_the_feed(&pool, &addrs, at).await;
        assert_eq!(from_history(&pool, &addrs, at).await, expected, "at {at}");
        sizes.push(expected.len());
    }
    // Nothing, everything, then fewer as the walk suspends, revokes, expires.
    assert_eq!(&sizes[..2], &[0, 60], "{sizes:?}");
    sizes.dedup();
    assert!(sizes.len() >= 4, "the walk changes the answers: {sizes:?}");
    let now = OffsetDateTime::now_utc();
    let active: i64 = sqlx::query_scalar("SELECT count(*) FROM active_prefixes")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(from_history(&pool, &addrs, now).await.len() as i64, active);
}

#[sqlx::test]
async fn pruning_bounds_feed_and_history_and_those_behind_start_over(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, bank) = app.enrol(C::Bank).await;
    let gone = app.active(&bank, &["8.8.8.0/24"]).await;
    let revoked = app
        .decide(Decision::Revoke, &gone, pb::ReasonCode::PolicyViolation, "Misuse")
        .await
        .unwrap();
    let kept = app.active(&bank, &["8.8.9.0/24"]).await;
    let session: String = sqlx::query_scalar("SELECT session_id::text FROM feed_state")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    // Everything so far happened long ago.
    for statement in [
        "UPDATE change_feed SET commit_time = commit_time - interval '10 days'",
        "UPDATE active_history SET active_from = active_from - interval '500 days',
                                   active_until = active_until - interval '500 days'",
    ] {
        sqlx::query(statement).execute(&app.pool).await.unwrap();
    }

    // As the server runs it: the runtime role, through the function only.
    let runtime = runtime_pool(&app.pool).await;
    let denied = sqlx::query("DELETE FROM active_history")
        .execute(&runtime)
        .await
        .unwrap_err();
    assert!(denied.to_string().contains("permission denied"), "{denied}");
    let day = Duration::from_secs(86_400);
    let (feed_rows, history_rows) = feed::prune(&runtime, 7 * day, 400 * day).await.unwrap();
    let last_serial = kept.feed_serial;
    assert_eq!(
        (feed_rows, history_rows),
        (last_serial, 1),
        "every feed row; the one ended interval"
    );
    assert_eq!(app.count("change_feed").await, 0);
    let pruned: i64 = sqlx::query_scalar("SELECT feed_pruned_through FROM feed_state")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(pruned, last_serial);
    assert_eq!(
        feed::prune(&runtime, 7 * day, 400 * day).await.unwrap(),
        (0, 0),
        "nothing twice"
    );

    let lookup = app.token(Role::Lookup).await;
    let mut lookups = app.lookups(Some(&lookup));
    let at = |days: i64| Some(ts(OffsetDateTime::now_utc() - time::Duration::days(days)));
    let too_old = lookups
        .check_address(pb::CheckAddressRequest {
            address: "8.8.9.1".into(),
            at: at(450),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(too_old.code(), Code::FailedPrecondition);
    assert!(too_old.message().contains("--history-retention"), "{too_old:?}");
    // A moment ago (the past: answered from history, not the index).
    let recent = Some(ts(OffsetDateTime::now_utc() - time::Duration::milliseconds(50)));
    for (address, registered) in [("8.8.9.1", true), ("8.8.8.1", false)] {
        let then = lookups
            .check_address(pb::CheckAddressRequest {
                address: address.into(),
                at: recent,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(then.registered, registered, "{address} a moment ago");
    }

    // A gateway that stopped before the pruning resumes with a snapshot,
    // once the replica has seen the pruning (its next catch-up).
    let (_, other) = app.enrol(C::Bank).await;
    let newer = app.active(&other, &["8.8.10.0/24"]).await;
    lookups
        .check_address(pb::CheckAddressRequest {
            address: "8.8.10.1".into(),
            min_serial: newer.feed_serial,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut stream = app
        .lookups_on_new_connection(Some(&lookup))
        .watch_changes(pb::WatchChangesRequest {
            session_id: session,
            since_serial: revoked.feed_serial - 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(matches!(first.event, Some(Event::Reset(_))), "{first:?}");
}

#[sqlx::test]
async fn a_replica_stopped_past_the_pruned_feed_reloads_and_resets_its_watchers(pool: PgPool) {
    let writer = spawn_app(pool.clone()).await;
    let (_, bank) = writer.enrol(C::Bank).await;
    let doomed = writer.active(&bank, &["8.8.8.0/24"]).await;
    // A replica that reads the feed through a link the test can cut.
    let link = crate::proxy::Proxy::to_postgres(&pool).await;
    let replica = TestApp::builder(pool.clone())
        .read_pool(runtime_pool_via(&pool, link.addr.port()).await)
        .start()
        .await;
    let lookup = writer.token(Role::Lookup).await;
    replica.wait_until_known(&lookup).await;
    assert!(
        replica
            .check_address(&lookup, "8.8.8.1", doomed.feed_serial)
            .await
            .registered
    );
    let mut watcher = replica.watch(&lookup).await;

    // Stopped (cut off) while changes commit and the feed is pruned past
    // what it applied.
    link.cut();
    writer
        .decide(Decision::Revoke, &doomed, pb::ReasonCode::PolicyViolation, "Misuse")
        .await
        .unwrap();
    let added = writer.active(&bank, &["8.8.9.0/24"]).await;
    sqlx::query("UPDATE change_feed SET commit_time = commit_time - interval '10 days'")
        .execute(&pool)
        .await
        .unwrap();
    let day = Duration::from_secs(86_400);
    feed::prune(&runtime_pool(&pool).await, 7 * day, 400 * day)
        .await
        .unwrap();
    assert_eq!(writer.count("change_feed").await, 0);

    // Back: the rows it missed are gone, so it reloads rather than resumes.
    link.restore();
    let now = replica.check_address(&lookup, "8.8.9.1", added.feed_serial).await;
    assert!(now.registered && now.serial >= added.feed_serial, "{now:?}");
    assert!(
        !replica
            .check_address(&lookup, "8.8.8.1", added.feed_serial)
            .await
            .registered
    );
    let ended = crate::gateway::Copy::default().until_ended(&mut watcher).await;
    assert_eq!(ended.code(), Code::Aborted, "its watchers start over: {ended:?}");
}
