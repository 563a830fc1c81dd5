//! How followers learn of changes: a follower that started on a hot standby
//! (polling, as a standby has no LISTEN) LISTENs once its database has left
//! recovery; one told to poll never does.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use sqlx::PgPool;
use tokio::sync::watch;
use vpn_registry::db::notify::{Following, follow};

use crate::helpers::eventually;

const CHANNEL: &str = "following_test";
/// Long beside a burst of notifications: a poll adds at most one refresh to it.
const POLL: Duration = Duration::from_secs(2);
const BURST: usize = 5;

/// Refreshes of a follower started as `following`, counted.
fn start(pool: &PgPool, following: Following) -> (Arc<AtomicUsize>, watch::Sender<bool>) {
    let refreshes = Arc::new(AtomicUsize::new(0));
    let (stop, stopping) = watch::channel(false);
    let (pool, counted) = (pool.clone(), refreshes.clone());
    tokio::spawn(async move {
        follow(&pool, CHANNEL, following, POLL, stopping, || {
            counted.fetch_add(1, Ordering::SeqCst);
            async {}
        })
        .await
    });
    (refreshes, stop)
}

/// Refreshes during a burst of notifications 50 ms apart (and 100 ms after).
async fn during_burst(pool: &PgPool, refreshes: &AtomicUsize) -> usize {
    let before = refreshes.load(Ordering::SeqCst);
    for _ in 0..BURST {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(CHANNEL)
            .execute(pool)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    refreshes.load(Ordering::SeqCst) - before
}

#[sqlx::test]
async fn a_follower_of_a_promoted_standby_switches_to_listen(pool: PgPool) {
    // The test database is a primary: to a follower that began on a standby,
    // it is one that has just been promoted.
    let (refreshes, _stop) = start(&pool, Following::Standby);
    // It checks for promotion every 5 s; until then notifications go unheard.
    eventually(
        "the follower LISTENs after promotion",
        Duration::from_secs(20),
        || async { (during_burst(&pool, &refreshes).await >= BURST - 1).then_some(()) },
    )
    .await;

    // The control: a follower told to poll hears none of a burst (at most
    // one poll falls inside it), however long it runs.
    let (polled, _stop) = start(&pool, Following::Polling);
    for _ in 0..4 {
        assert!(during_burst(&pool, &polled).await <= 1);
    }
}
