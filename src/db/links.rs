//! E-mailed single-use links (verifying a sign-up, accepting an
//! invitation, resetting a password), only their secrets' hashes stored, and
//! the account e-mails that carry them, queued in the outbox.

use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::StoreError;
use crate::domain::account::LinkPurpose;

/// A link to write and the e-mail that carries it.
pub struct NewLink<'a> {
    pub hash: [u8; 32],
    pub purpose: LinkPurpose,
    pub email_key: &'a str,
    pub user: Option<Uuid>,
    pub payload: Value,
}

/// Stores a link and queues the e-mail carrying it (`message`, kept in the
/// outbox until delivered), in `tx`.
pub async fn insert_link(
    tx: &mut PgConnection,
    link: &NewLink<'_>,
    recipient: &str,
    message: &Value,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO account_links (token_hash, purpose, email_key, user_id, payload, expire_time)
         VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))",
    )
    .bind(&link.hash[..])
    .bind(link.purpose.as_str())
    .bind(link.email_key)
    .bind(link.user)
    .bind(&link.payload)
    .bind(link.purpose.lifetime().as_secs_f64())
    .execute(&mut *tx)
    .await?;
    queue_mail(tx, recipient, message).await
}

/// Queues an account e-mail in the outbox (no event: its message travels
/// with it).
pub async fn queue_mail(tx: &mut PgConnection, recipient: &str, message: &Value) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO notifications (event_id, channel, recipient, message) VALUES ($1, 'email', $2, $3)")
        .bind(Uuid::new_v4())
        .bind(recipient)
        .bind(message)
        .execute(tx)
        .await?;
    Ok(())
}

/// An unused, unexpired link.
#[derive(Debug, sqlx::FromRow)]
pub struct Link {
    pub email_key: String,
    pub user_id: Option<Uuid>,
    pub payload: Value,
}

/// The link with this hash and purpose if it still works, without using it.
pub async fn peek_link(pool: &PgPool, hash: &[u8; 32], purpose: LinkPurpose) -> Result<Option<Link>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT email_key, user_id, payload FROM account_links
          WHERE token_hash = $1 AND purpose = $2 AND use_time IS NULL AND expire_time > now()",
    )
    .bind(&hash[..])
    .bind(purpose.as_str())
    .fetch_optional(pool)
    .await?)
}

/// Uses the link up (in `tx`): `None` when it is unknown, used or expired.
pub async fn take_link(
    tx: &mut PgConnection,
    hash: &[u8; 32],
    purpose: LinkPurpose,
) -> Result<Option<Link>, StoreError> {
    Ok(sqlx::query_as(
        "UPDATE account_links SET use_time = now()
          WHERE token_hash = $1 AND purpose = $2 AND use_time IS NULL AND expire_time > now()
          RETURNING email_key, user_id, payload",
    )
    .bind(&hash[..])
    .bind(purpose.as_str())
    .fetch_optional(tx)
    .await?)
}

/// Forgets links used or expired a day ago. Returns the rows removed.
pub async fn prune(pool: &PgPool) -> Result<u64, StoreError> {
    Ok(
        sqlx::query("DELETE FROM account_links WHERE coalesce(use_time, expire_time) < now() - interval '1 day'")
            .execute(pool)
            .await?
            .rows_affected(),
    )
}
