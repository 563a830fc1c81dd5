//! Webhook endpoints and their deliveries (the outbox rows of channel
//! `webhook`), as their owners and administrators see them.

use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, events::Audience};

/// An endpoint as stored (secrets included: callers decide what to show).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Webhook {
    pub id: Uuid,
    pub institution_id: Option<Uuid>,
    pub isp: Option<String>,
    pub url: String,
    pub event_types: Vec<String>,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_expire_time: Option<OffsetDateTime>,
    pub disable_time: Option<OffsetDateTime>,
    pub disable_reason: Option<String>,
    pub create_time: OffsetDateTime,
}

const COLUMNS: &str = "id, institution_id, isp, url, event_types, secret, previous_secret,
    previous_secret_expire_time, disable_time, disable_reason, create_time";

pub async fn insert(
    pool: &PgPool,
    owner_of: &Audience,
    url: &str,
    event_types: &[&str],
    secret: &str,
) -> Result<Webhook, StoreError> {
    let (institution, isp) = owner_of.columns();
    Ok(sqlx::query_as::<_, Webhook>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO webhooks (id, institution_id, isp, url, event_types, secret)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(institution)
    .bind(isp)
    .bind(url)
    .bind(event_types)
    .bind(secret)
    .fetch_one(pool)
    .await?)
}

/// Live (not deleted) endpoints `audience` sees, after `after` (id), oldest first.
pub async fn list(pool: &PgPool, audience: &Audience, after: Uuid, limit: i64) -> Result<Vec<Webhook>, StoreError> {
    let (institution, isp) = audience.columns();
    Ok(sqlx::query_as::<_, Webhook>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhooks
          WHERE delete_time IS NULL AND id > $1
            AND ($2::uuid IS NULL OR institution_id = $2) AND ($3::text IS NULL OR isp = $3)
            AND ($2::uuid IS NOT NULL OR $3::text IS NOT NULL OR $4)
          ORDER BY id LIMIT $5"
    )))
    .bind(after)
    .bind(institution)
    .bind(isp)
    .bind(matches!(audience, Audience::All))
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// One live endpoint `audience` sees; NOT_FOUND otherwise (another's
/// endpoint is not told apart from a missing one).
pub async fn get(pool: &PgPool, audience: &Audience, id: Uuid) -> Result<Webhook, StoreError> {
    let (institution, isp) = audience.columns();
    sqlx::query_as::<_, Webhook>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhooks
          WHERE delete_time IS NULL AND id = $1
            AND ($2::uuid IS NULL OR institution_id = $2) AND ($3::text IS NULL OR isp = $3)"
    )))
    .bind(id)
    .bind(institution)
    .bind(isp)
    .fetch_optional(pool)
    .await?
    .ok_or(StoreError::NotFound("webhook"))
}

pub async fn delete(pool: &PgPool, audience: &Audience, id: Uuid) -> Result<(), StoreError> {
    get(pool, audience, id).await?;
    sqlx::query("UPDATE webhooks SET delete_time = now() WHERE id = $1 AND delete_time IS NULL")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// A new secret; the current one signs too until `grace` has passed.
pub async fn rotate(
    pool: &PgPool,
    audience: &Audience,
    id: Uuid,
    secret: &str,
    grace: std::time::Duration,
) -> Result<Webhook, StoreError> {
    get(pool, audience, id).await?;
    Ok(sqlx::query_as::<_, Webhook>(sqlx::AssertSqlSafe(format!(
        "UPDATE webhooks
            SET previous_secret = secret, secret = $2,
                previous_secret_expire_time = now() + make_interval(secs => $3)
          WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(secret)
    .bind(grace.as_secs_f64())
    .fetch_one(pool)
    .await?)
}

/// Stops deliveries to an endpoint (it answered 410 Gone).
pub async fn disable(pool: &PgPool, id: Uuid, reason: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE webhooks SET disable_time = now(), disable_reason = $2 WHERE id = $1 AND disable_time IS NULL")
        .bind(id)
        .bind(reason)
        .execute(pool)
        .await?;
    Ok(())
}

/// One delivery (an outbox row of an endpoint) with its event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Delivery {
    pub id: i64,
    pub webhook_id: String,
    pub event_id: Uuid,
    pub event_type: String,
    pub registration_id: Uuid,
    pub reference: String,
    pub status: String,
    pub attempts: i32,
    pub last_code: Option<i32>,
    pub last_error: Option<String>,
    pub last_attempt_time: Option<OffsetDateTime>,
    pub next_attempt_time: OffsetDateTime,
    pub create_time: OffsetDateTime,
}

const DELIVERY: &str = "SELECT n.id, n.recipient AS webhook_id, n.event_id, e.type AS event_type, n.registration_id,
        e.reference, n.status, n.attempts, n.last_code, n.last_error, n.last_attempt_time, n.next_attempt_time,
        n.create_time
   FROM notifications n JOIN events e ON e.id = n.event_id";

/// Deliveries to endpoint `webhook` (already checked visible), newest
/// first, before `before` (an id), in `status` if given.
pub async fn deliveries(
    pool: &PgPool,
    webhook: Uuid,
    status: Option<&str>,
    before: i64,
    limit: i64,
) -> Result<Vec<Delivery>, StoreError> {
    Ok(sqlx::query_as::<_, Delivery>(sqlx::AssertSqlSafe(format!(
        "{DELIVERY}
          WHERE n.channel = 'webhook' AND n.recipient = $1 AND n.id < $2 AND ($3::text IS NULL OR n.status = $3)
          ORDER BY n.id DESC LIMIT $4"
    )))
    .bind(webhook.to_string())
    .bind(before)
    .bind(status)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Makes delivery `id` pending again, due now, with a fresh retry budget
/// (unless it is pending already); returns it as it is now.
pub async fn redeliver(pool: &PgPool, id: i64) -> Result<Delivery, StoreError> {
    sqlx::query(
        "UPDATE notifications SET status = 'PENDING', next_attempt_time = now(), done_time = NULL, attempts = 0,
                claimed_until = NULL,
                create_time = now()
          WHERE id = $1 AND channel = 'webhook' AND status <> 'PENDING'",
    )
    .bind(id)
    .execute(pool)
    .await?;
    sqlx::query_as::<_, Delivery>(sqlx::AssertSqlSafe(format!(
        "{DELIVERY} WHERE n.id = $1 AND n.channel = 'webhook'"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or(StoreError::NotFound("webhook delivery"))
}

/// The endpoint delivery `id` belongs to, if it is a webhook delivery.
pub async fn delivery_webhook(pool: &PgPool, id: i64) -> Result<Uuid, StoreError> {
    let recipient: Option<String> =
        sqlx::query_scalar("SELECT recipient FROM notifications WHERE id = $1 AND channel = 'webhook'")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    recipient
        .and_then(|r| Uuid::parse_str(&r).ok())
        .ok_or(StoreError::NotFound("webhook delivery"))
}
