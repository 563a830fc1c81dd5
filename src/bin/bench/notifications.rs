//! Notifications: what writing them costs a submission (the same server
//! with event rows on and off, alternating rounds), and how fast a backlog
//! of webhook deliveries drains to a local receiver.

use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

/// Deliveries in the backlog.
const BACKLOG: i64 = 10_000;

/// Turns the writing of events (and with them every outbox row) off or on
/// in the bench database: off, a trigger skips each event row, so the
/// submit statement writes the audit entry alone.
async fn events_written(pool: &PgPool, on: bool) -> anyhow::Result<()> {
    sqlx::query("DROP TRIGGER IF EXISTS bench_skip_events ON events")
        .execute(pool)
        .await?;
    if !on {
        sqlx::query(
            "CREATE OR REPLACE FUNCTION bench_skip_event() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'",
        )
        .execute(pool)
        .await?;
        sqlx::query(
            "CREATE TRIGGER bench_skip_events BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION bench_skip_event()",
        )
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// A receiver answering every POST 204, counting them.
async fn receiver() -> anyhow::Result<(SocketAddr, Arc<AtomicU64>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let received = Arc::new(AtomicU64::new(0));
    let counted = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::Relaxed);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, received))
}

impl Bench {
    pub(crate) async fn notifications(&self) -> anyhow::Result<()> {
        println!("## Notifications\n");
        let mut rows = Vec::new();
        for _ in 0..self.args.rounds {
            events_written(&self.pool, true).await?;
            let on = submits(&self.pool, self.server, 16, self.duration).await?;
            events_written(&self.pool, false).await?;
            let off = submits(&self.pool, self.server, 16, self.duration).await?;
            rows.push([on, off, on / off]);
        }
        events_written(&self.pool, true).await?;
        let [on, off, ratio] = medians(&rows);
        println!("| SubmitRegistration/s, notifications on | off | on/off |\n|---:|---:|---:|");
        println!("| {on:.0} | {off:.0} | {ratio:.2} |\n");

        let (addr, received) = receiver().await?;
        let webhook: uuid::Uuid = sqlx::query_scalar(
            "INSERT INTO webhooks (id, institution_id, url, event_types, secret)
             SELECT gen_random_uuid(), (SELECT id FROM institutions LIMIT 1), $1, '{registration.approved}', $2
             RETURNING id",
        )
        .bind(format!("http://{addr}/hook"))
        .bind(vpn_registry::notify::webhook::new_secret()?)
        .fetch_one(&self.pool)
        .await?;
        let started = Instant::now();
        sqlx::query(
            "WITH r AS (SELECT id, institution_id, reference, state FROM registrations LIMIT $1),
                  event AS (
                    INSERT INTO events (id, type, institution_id, registration_id, reference, state)
                    SELECT gen_random_uuid(), 'registration.approved', institution_id, id, reference, state FROM r
                    RETURNING id, registration_id)
             INSERT INTO notifications (event_id, channel, recipient, registration_id)
             SELECT id, 'webhook', $2, registration_id FROM event",
        )
        .bind(BACKLOG)
        .bind(webhook.to_string())
        .execute(&self.pool)
        .await?;
        let queued = started.elapsed();
        let deadline = Instant::now() + Duration::from_secs(120);
        let pending = || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM notifications WHERE channel = 'webhook' AND status = 'PENDING'",
            )
            .fetch_one(&self.pool)
            .await
        };
        while pending().await? > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let drained = started.elapsed();
        let delivered: i64 =
            sqlx::query_scalar("SELECT count(*) FROM notifications WHERE channel = 'webhook' AND status = 'DELIVERED'")
                .fetch_one(&self.pool)
                .await?;
        println!(
            "| backlog | queued in | drained in | delivered | received | deliveries/s |\n|---:|---:|---:|---:|---:|---:|"
        );
        println!(
            "| {BACKLOG} | {:.2} s | {:.2} s | {delivered} | {} | {:.0} |\n",
            queued.as_secs_f64(),
            drained.as_secs_f64(),
            received.load(Ordering::Relaxed),
            delivered as f64 / drained.as_secs_f64()
        );
        Ok(())
    }
}
