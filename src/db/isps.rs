//! Licensed ISPs: reference data registrations and ISP tokens point to.

use sqlx::PgPool;
use time::OffsetDateTime;

use serde_json::json;
use uuid::Uuid;

use super::{StoreError, audit};
use crate::domain::{identifiers::IspCode, principal::Actor};

/// A licensed ISP as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Isp {
    pub code: String,
    pub name: String,
    pub create_time: OffsetDateTime,
}

/// Adds an ISP, audited (subject: the nil UUID; the code is in the
/// changes); an existing code is refused.
pub async fn create(pool: &PgPool, code: &IspCode, name: &str, actor: &Actor) -> Result<Isp, StoreError> {
    let mut tx = pool.begin().await?;
    let isp =
        sqlx::query_as::<_, Isp>("INSERT INTO isps (code, name) VALUES ($1, $2) RETURNING code, name, create_time")
            .bind(code.as_str())
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| match super::violated_constraint(&e) {
                Some("isps_pkey") => StoreError::AlreadyExists(format!("ISP {:?} already exists", code.as_str())),
                _ => e.into(),
            })?;
    let changes = json!([{ "field": "code", "before": null, "after": code.as_str() },
                         { "field": "name", "before": null, "after": name }]);
    audit::append(
        &mut tx,
        audit::Entry::about("isp", Uuid::nil(), "CREATED", actor, changes),
    )
    .await?;
    tx.commit().await?;
    Ok(isp)
}

/// One page of ISPs by code, after `after`.
pub async fn list(pool: &PgPool, after: Option<&str>, limit: i64) -> Result<Vec<Isp>, StoreError> {
    Ok(sqlx::query_as::<_, Isp>(
        "SELECT code, name, create_time FROM isps WHERE ($1::text IS NULL OR code > $1) ORDER BY code LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
