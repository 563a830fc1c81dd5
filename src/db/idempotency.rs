//! Idempotency keys: the first call with a key claims it inside its own
//! transaction; a retry finds the claim and gets the original resource back.

use sqlx::PgConnection;
use uuid::Uuid;

use super::StoreError;

/// A key to claim: who (scope), which key, which operation, which payload.
#[derive(Debug, Clone)]
pub struct Key {
    pub scope: String,
    pub request_id: String,
    pub operation: &'static str,
    pub request_hash: [u8; 32],
}

/// Claims `key` for `resource_id`. Returns `None` when this call is the first
/// (go on and write), or the id the first call produced when this is a retry
/// of it. A racing duplicate waits on the primary key until the first
/// transaction ends, then sees its row.
pub async fn claim(conn: &mut PgConnection, key: &Key, resource_id: Uuid) -> Result<Option<Uuid>, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (scope, request_id, operation, request_hash, resource_id)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT DO NOTHING",
    )
    .bind(&key.scope)
    .bind(&key.request_id)
    .bind(key.operation)
    .bind(&key.request_hash[..])
    .bind(resource_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(None);
    }
    let (operation, hash, original): (String, Vec<u8>, Uuid) = sqlx::query_as(
        "SELECT operation, request_hash, resource_id FROM idempotency_keys
          WHERE scope = $1 AND request_id = $2",
    )
    .bind(&key.scope)
    .bind(&key.request_id)
    .fetch_one(&mut *conn)
    .await?;
    if operation == key.operation && hash == key.request_hash {
        Ok(Some(original))
    } else {
        Err(StoreError::RequestIdReused)
    }
}
