//! Restores and failovers: a new feed session, or a database behind what a
//! replica applied, reloads replicas and resets their watchers.

use sqlx::PgPool;
use tonic::Code;
use vpn_registry::domain::principal::Role;
use vpn_registry::pb::{self, InstitutionCategory as C};

use crate::gateway::{Copy, db_active_set};
use crate::helpers::*;

/// A replica with a watcher that holds the active set, in which `lost` (the
/// bank's 8.8.8.0/24) is about to be lost by the database.
struct Scene {
    app: TestApp,
    company: String,
    lost: pb::Registration,
    lookups: Lookups,
    copy: Copy,
    stream: tonic::Streaming<pb::WatchChangesResponse>,
}

impl Scene {
    async fn new(pool: PgPool) -> Self {
        let app = spawn_app(pool).await;
        let (_, bank) = app.enrol(C::Bank).await;
        let (_, company) = app.enrol(C::Company).await;
        let lost = app.active(&bank, &["8.8.8.0/24"]).await;
        let watcher = app.token(Role::Lookup).await;
        let mut lookups = app.lookups(Some(&watcher));
        let mut copy = Copy::default();
        let mut stream = lookups
            .watch_changes(pb::WatchChangesRequest::default())
            .await
            .unwrap()
            .into_inner();
        copy.follow(&mut stream, lost.feed_serial).await;
        Self {
            app,
            company,
            lost,
            lookups,
            copy,
            stream,
        }
    }
}

/// Waits until `address` is no longer registered (the replica reloaded).
async fn until_unregistered(lookups: &mut Lookups, address: &str) {
    eventually("the replica reloads", std::time::Duration::from_secs(10), || {
        let mut lookups = lookups.clone();
        async move { (!check(&mut lookups, address).await.registered).then_some(()) }
    })
    .await
}

/// The database as a backup taken before `lost` was approved would restore
/// it: not active, its feed rows and serials gone (they will be handed out
/// again for other changes), the session unchanged.
async fn rewind_before(app: &TestApp, lost: &pb::Registration) {
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    let id = uuid::Uuid::parse_str(&lost.id).unwrap();
    for statement in [
        "DELETE FROM active_prefixes WHERE registration_id = $1",
        "UPDATE registrations SET state = 'SUSPENDED' WHERE id = $1",
    ] {
        sqlx::query(statement).bind(id).execute(&mut *tx).await.unwrap();
    }
    for statement in [
        "DELETE FROM change_feed WHERE serial >= $1",
        "DELETE FROM active_history WHERE announce_serial >= $1",
    ] {
        sqlx::query(statement)
            .bind(lost.feed_serial)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    sqlx::query("UPDATE feed_state SET last_serial = $1 - 1")
        .bind(lost.feed_serial)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

#[sqlx::test]
async fn a_new_feed_session_after_a_restore_reloads_replicas_and_resets_watchers(pool: PgPool) {
    let Scene {
        app,
        company,
        lost,
        mut lookups,
        mut copy,
        mut stream,
    } = Scene::new(pool).await;
    assert!(check(&mut lookups, "8.8.8.8").await.registered);

    // A restore from a backup taken before the approval: the registration
    // is not active in the restored database, and the serials the approval
    // used will be handed out again for other changes.
    rewind_before(&app, &lost).await;
    let session =
        vpn_registry::db::feed::new_session(&app.pool, &vpn_registry::domain::principal::Actor::operator("test"))
            .await
            .unwrap();

    // The watcher is told to resynchronise ...
    let status = copy.until_ended(&mut stream).await;
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert!(status.message().contains("new session"), "{}", status.message());
    // ... the replica reloads (no restart) ...
    until_unregistered(&mut lookups, "8.8.8.8").await;
    // ... and resuming with the old session gets a reset and a snapshot of
    // the restored set, then live changes of the new session.
    let mut stream = lookups
        .watch_changes(pb::WatchChangesRequest {
            session_id: copy.session.clone(),
            since_serial: copy.serial,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let after = app.active(&company, &["9.9.9.0/24"]).await;
    copy.serial = 0;
    copy.follow(&mut stream, after.feed_serial).await;
    assert_eq!(copy.session, session.to_string());
    assert_eq!(copy.entries, db_active_set(&app.pool).await);
    assert!(!copy.entries.iter().any(|(r, _)| *r == lost.reference));
    assert!(check(&mut lookups, "9.9.9.9").await.registered);
}

#[sqlx::test]
async fn a_database_behind_the_replica_reloads_it_and_resets_watchers_without_a_new_session(pool: PgPool) {
    let Scene {
        app,
        company,
        lost,
        mut lookups,
        mut copy,
        mut stream,
    } = Scene::new(pool).await;
    let old_session = copy.session.clone();

    // A standby promoted without the approval's commit (or a restore), and
    // nobody ran `feed new-session`: the database's last serial is behind
    // what the replica applied; the session is the same.
    rewind_before(&app, &lost).await;

    // The watcher is told to start over, the replica reloads ...
    let status = copy.until_ended(&mut stream).await;
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    until_unregistered(&mut lookups, "8.8.8.8").await;
    // ... and new changes reuse the lost serials: resuming from a lost one
    // (same session) gets a reset and the database's set, not stale deltas.
    let after = app.active(&company, &["9.9.9.0/24"]).await;
    assert!(
        after.feed_serial >= lost.feed_serial,
        "the serials are handed out again"
    );
    let mut stream = lookups
        .watch_changes(pb::WatchChangesRequest {
            session_id: old_session.clone(),
            since_serial: copy.serial,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    copy.serial = 0;
    copy.entries.clear();
    copy.follow(&mut stream, after.feed_serial).await;
    assert_eq!(copy.session, old_session, "the same session, started over");
    assert_eq!(copy.entries, db_active_set(&app.pool).await);
    assert!(!copy.entries.iter().any(|(r, _)| *r == lost.reference));
}
