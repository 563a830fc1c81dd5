//! Licensed ISPs: reference data registrations and ISP tokens point to.

use sqlx::PgPool;
use time::OffsetDateTime;

use super::StoreError;
use crate::domain::registration::IspCode;

/// A licensed ISP as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Isp {
    pub code: String,
    pub name: String,
    pub create_time: OffsetDateTime,
}

/// Adds an ISP; an existing code is refused.
pub async fn create(pool: &PgPool, code: &IspCode, name: &str) -> Result<Isp, StoreError> {
    sqlx::query_as::<_, Isp>("INSERT INTO isps (code, name) VALUES ($1, $2) RETURNING code, name, create_time")
        .bind(code.as_str())
        .bind(name)
        .fetch_one(pool)
        .await
        .map_err(|e| match super::violated_constraint(&e) {
            Some("isps_pkey") => StoreError::AlreadyExists(format!("ISP {:?} already exists", code.as_str())),
            _ => e.into(),
        })
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
