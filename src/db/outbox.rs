//! The outbox: notifications claimed for delivery, and what came of each.
//!
//! A claim is a short transaction (SKIP LOCKED, then a lease: the row's
//! `claimed_until` moves past the delivery's time limit), so no transaction is
//! held open across a network call; a process killed mid-delivery leaves its
//! rows to be claimed again once the lease runs out (at least once). Within
//! one recipient and registration, only the oldest pending row is claimable:
//! deliveries keep their order.

use std::time::Duration;

use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::StoreError;

/// A notification claimed for delivery, with what its message needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: i64,
    pub channel: String,
    pub recipient: String,
    /// Attempts including this one.
    pub attempts: i32,
    pub create_time: OffsetDateTime,
    pub event_id: Uuid,
    pub event_type: String,
    pub registration_id: Uuid,
    pub reference: String,
    pub state: String,
    pub reason_code: Option<String>,
    pub reason: Option<String>,
    pub days_left: Option<i32>,
    pub occur_time: OffsetDateTime,
    pub language: String,
    /// For a webhook: its URL and the secrets that sign (the previous one
    /// during a rotation's grace), `None` once it is deleted or disabled.
    pub url: Option<String>,
    pub secret: Option<String>,
    pub previous_secret: Option<String>,
    /// An account e-mail's message (it has no event; `event_type` is
    /// `ACCOUNT`): see `notify::mail::compose_account`.
    pub message: Option<sqlx::types::Json<serde_json::Value>>,
}

/// Claims up to `limit` due notifications for `lease`.
pub async fn claim(pool: &PgPool, limit: i64, lease: Duration) -> Result<Vec<Claimed>, StoreError> {
    Ok(sqlx::query_as::<_, Claimed>(
        "WITH due AS (
            SELECT n.id, n.event_id, n.channel, n.recipient FROM notifications n
             WHERE n.status = 'PENDING' AND n.next_attempt_time <= now()
               AND (n.claimed_until IS NULL OR n.claimed_until <= now())
               AND NOT EXISTS (SELECT FROM notifications o
                                WHERE o.status = 'PENDING' AND o.recipient = n.recipient
                                  AND o.registration_id = n.registration_id AND o.id < n.id)
             ORDER BY n.next_attempt_time, n.id
             LIMIT $1
             FOR UPDATE SKIP LOCKED
         )
         UPDATE notifications n
            SET attempts = n.attempts + 1, last_attempt_time = now(),
                claimed_until = now() + make_interval(secs => $2)
           FROM due
           LEFT JOIN events e ON e.id = due.event_id
           LEFT JOIN institutions i ON i.id = e.institution_id
           LEFT JOIN webhooks w ON due.channel = 'webhook' AND w.id::text = due.recipient
                               AND w.delete_time IS NULL AND w.disable_time IS NULL
          WHERE n.id = due.id
         RETURNING n.id, n.channel, n.recipient, n.attempts, n.create_time, n.event_id,
                   coalesce(e.type, 'ACCOUNT') AS event_type,
                   coalesce(e.registration_id, '00000000-0000-0000-0000-000000000000') AS registration_id,
                   coalesce(e.reference, '') AS reference, coalesce(e.state, '') AS state, e.reason_code, e.reason,
                   e.days_left, coalesce(e.occur_time, n.create_time) AS occur_time,
                   coalesce(i.language, n.message->>'language', 'en') AS language, w.url, w.secret,
                   CASE WHEN w.previous_secret_expire_time > now() THEN w.previous_secret END AS previous_secret,
                   n.message",
    )
    .bind(limit)
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await?)
}

/// How a delivery attempt ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Delivered {
        code: Option<i32>,
    },
    /// No mail server configured: kept for administrators to read.
    Kept,
    /// Failed; retried after the delay, or dead-lettered when `None`.
    Failed {
        code: Option<i32>,
        error: String,
        retry_in: Option<Duration>,
    },
}

/// Records the outcomes of a round of attempts, in one statement.
pub async fn finish(pool: &PgPool, outcomes: &[(i64, Outcome)]) -> Result<(), StoreError> {
    let mut ids = Vec::with_capacity(outcomes.len());
    let mut statuses = Vec::with_capacity(outcomes.len());
    let mut codes = Vec::with_capacity(outcomes.len());
    let mut errors = Vec::with_capacity(outcomes.len());
    let mut retries = Vec::with_capacity(outcomes.len());
    for (id, outcome) in outcomes {
        let (status, code, error, retry_in) = match outcome {
            Outcome::Delivered { code } => ("DELIVERED", *code, None, None),
            Outcome::Kept => ("KEPT", None, None, None),
            Outcome::Failed {
                code,
                error,
                retry_in: Some(delay),
            } => ("PENDING", *code, Some(error.as_str()), Some(delay.as_secs_f64())),
            Outcome::Failed {
                code,
                error,
                retry_in: None,
            } => ("DEAD", *code, Some(error.as_str()), None),
        };
        ids.push(*id);
        statuses.push(status);
        codes.push(code);
        errors.push(error);
        retries.push(retry_in);
    }
    sqlx::query(
        "UPDATE notifications n
            SET status = u.status, last_code = u.code, last_error = u.error, claimed_until = NULL,
                next_attempt_time = CASE WHEN u.retry IS NULL THEN n.next_attempt_time
                                         ELSE now() + make_interval(secs => u.retry) END,
                done_time = CASE WHEN u.status = 'PENDING' THEN NULL ELSE now() END,
                -- An account e-mail's link dies with its delivery (kept
                -- only where no mail server is configured: see SECURITY.md).
                message = CASE WHEN u.status IN ('DELIVERED', 'DEAD') THEN NULL ELSE n.message END
           FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::float8[])
                AS u(id, status, code, error, retry)
          WHERE n.id = u.id",
    )
    .bind(ids)
    .bind(statuses)
    .bind(codes)
    .bind(errors)
    .bind(retries)
    .execute(pool)
    .await?;
    Ok(())
}

/// The outbox at a glance, for metrics and `/status`.
#[derive(Debug, Clone, Default, serde::Serialize, sqlx::FromRow)]
pub struct Depth {
    /// Notifications waiting for delivery (or for a retry).
    pub pending: i64,
    /// Age of the oldest of them.
    pub oldest_pending_seconds: Option<f64>,
    /// Given up (dead-lettered): an administrator should look.
    pub dead: i64,
}

/// Both counts come from partial indexes: cheap however many were delivered.
pub async fn depth(pool: &PgPool) -> Result<Depth, StoreError> {
    Ok(sqlx::query_as::<_, Depth>(
        "SELECT (SELECT count(*) FROM notifications WHERE status = 'PENDING') AS pending,
                (SELECT extract(epoch FROM now() - min(create_time))::float8
                   FROM notifications WHERE status = 'PENDING') AS oldest_pending_seconds,
                (SELECT count(*) FROM notifications WHERE status = 'DEAD') AS dead",
    )
    .fetch_one(pool)
    .await?)
}

/// A notification as administrators list it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Listed {
    pub id: i64,
    pub channel: String,
    pub recipient: String,
    pub event_id: Uuid,
    pub event_type: String,
    pub registration_id: Option<Uuid>,
    pub reference: String,
    pub status: String,
    pub attempts: i32,
    pub last_code: Option<i32>,
    pub last_error: Option<String>,
    pub next_attempt_time: OffsetDateTime,
    pub create_time: OffsetDateTime,
}

/// Notifications in `status` (`None`: all but DELIVERED), newest first,
/// before `before` (an id).
pub async fn list(pool: &PgPool, status: Option<&str>, before: i64, limit: i64) -> Result<Vec<Listed>, StoreError> {
    Ok(sqlx::query_as::<_, Listed>(
        "SELECT n.id, n.channel, n.recipient, n.event_id,
                coalesce(e.type, 'ACCOUNT_' || (n.message->>'kind'), 'ACCOUNT') AS event_type,
                n.registration_id, coalesce(e.reference, '') AS reference,
                n.status, n.attempts, n.last_code, n.last_error, n.next_attempt_time, n.create_time
           FROM notifications n LEFT JOIN events e ON e.id = n.event_id
          WHERE n.id < $1 AND (CASE WHEN $2::text IS NULL THEN n.status <> 'DELIVERED' ELSE n.status = $2 END)
          ORDER BY n.id DESC LIMIT $3",
    )
    .bind(before)
    .bind(status)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
