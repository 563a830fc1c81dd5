//! API credentials: only SHA-256 hashes are stored.

use serde_json::json;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, audit, decode, reparse};
use crate::domain::institution::Category;
use crate::domain::principal::{Actor, Principal, Role};

/// A credential as `token list` shows it (never the secret).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenInfo {
    pub id: Uuid,
    pub role: String,
    pub institution_id: Option<Uuid>,
    pub isp_code: Option<String>,
    pub name: String,
    pub create_time: OffsetDateTime,
    pub revoke_time: Option<OffsetDateTime>,
}

/// Stores a new credential's hash and audits its issue.
pub async fn insert(
    pool: &PgPool,
    id: Uuid,
    role: &Role,
    name: &str,
    hash: &[u8; 32],
    actor: &Actor,
) -> Result<(), StoreError> {
    let (institution_id, isp_code) = match role {
        Role::Institution(id) => (Some(*id), None),
        Role::Isp(code) => (None, Some(code.as_str())),
        _ => (None, None),
    };
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO api_tokens (id, token_hash, role, institution_id, isp_code, name)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(&hash[..])
    .bind(role.as_str())
    .bind(institution_id)
    .bind(isp_code)
    .bind(name)
    .execute(&mut *tx)
    .await
    .map_err(|e| match super::violated_constraint(&e) {
        Some("api_tokens_institution_id_fkey") => StoreError::NotFound("institution"),
        Some("api_tokens_isp_fkey") => StoreError::NotFound("isp"),
        _ => e.into(),
    })?;
    audit::append(
        &mut tx,
        audit::Entry::about(
            "token",
            id,
            "ISSUED",
            actor,
            json!([{ "field": "role", "before": null, "after": role.as_str() },
                   { "field": "name", "before": null, "after": name }]),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// An unrevoked credential: id, role, institution, ISP code, label, and
/// the institution's category.
type ActiveRow = (Uuid, String, Option<Uuid>, Option<String>, String, Option<String>);

/// An unrevoked credential with its hash.
type HashedRow = (
    Vec<u8>,
    Uuid,
    String,
    Option<Uuid>,
    Option<String>,
    String,
    Option<String>,
);

/// The columns of [`HashedRow`] (an institution's category comes along: it
/// never changes, and every submission needs it).
macro_rules! active_columns {
    () => {
        "t.token_hash, t.id, t.role, t.institution_id, t.isp_code, t.name, i.category
           FROM api_tokens t LEFT JOIN institutions i ON i.id = t.institution_id
          WHERE t.revoke_time IS NULL"
    };
}

/// Every unrevoked credential with its hash, for the in-memory cache.
pub async fn all_active(pool: &PgPool) -> Result<Vec<([u8; 32], Principal)>, StoreError> {
    let rows: Vec<HashedRow> = sqlx::query_as(concat!("SELECT ", active_columns!()))
        .fetch_all(pool)
        .await?;
    rows.into_iter()
        .map(
            |(hash, id, role, institution_id, isp_code, name, category): HashedRow| {
                let hash: [u8; 32] = hash
                    .try_into()
                    .map_err(|_| StoreError::Corrupt(format!("token {id} hash is not 32 bytes")))?;
                Ok((hash, principal((id, role, institution_id, isp_code, name, category))?))
            },
        )
        .collect()
}

fn principal((id, role, institution_id, isp_code, name, category): ActiveRow) -> Result<Principal, StoreError> {
    let role = match (role.as_str(), institution_id, isp_code) {
        ("admin", ..) => Role::Admin,
        ("reviewer", ..) => Role::Reviewer,
        ("lookup", ..) => Role::Lookup,
        ("institution", Some(inst), _) => Role::Institution(inst),
        ("isp", _, Some(code)) => Role::Isp(reparse(&code, "isp code")?),
        _ => return Err(StoreError::Corrupt(format!("token {id} has role {role:?}"))),
    };
    let institution_category = category
        .map(|c| decode(&c, Category::from_db, "category"))
        .transpose()?;
    Ok(Principal {
        id,
        name,
        role,
        institution_category,
    })
}

/// The principal an unrevoked token hash stands for.
pub async fn find_active(pool: &PgPool, hash: &[u8; 32]) -> Result<Option<Principal>, StoreError> {
    let row: Option<HashedRow> = sqlx::query_as(concat!("SELECT ", active_columns!(), " AND t.token_hash = $1"))
        .bind(&hash[..])
        .fetch_optional(pool)
        .await?;
    row.map(|(_, id, role, institution_id, isp_code, name, category)| {
        principal((id, role, institution_id, isp_code, name, category))
    })
    .transpose()
}

/// Revokes a credential; false when no unrevoked credential has that id.
pub async fn revoke(pool: &PgPool, id: Uuid, actor: &Actor) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let revoked = sqlx::query("UPDATE api_tokens SET revoke_time = now() WHERE id = $1 AND revoke_time IS NULL")
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        == 1;
    if revoked {
        audit::append(&mut tx, audit::Entry::about("token", id, "REVOKED", actor, json!([]))).await?;
    }
    tx.commit().await?;
    Ok(revoked)
}

/// Every credential, oldest first.
pub async fn list(pool: &PgPool) -> Result<Vec<TokenInfo>, StoreError> {
    Ok(sqlx::query_as::<_, TokenInfo>(
        "SELECT id, role, institution_id, isp_code, name, create_time, revoke_time
           FROM api_tokens ORDER BY create_time, id",
    )
    .fetch_all(pool)
    .await?)
}
