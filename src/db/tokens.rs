//! API credentials: only SHA-256 hashes are stored.

use serde_json::json;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::events::Audience;
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
    pub expire_time: OffsetDateTime,
    pub last_use_time: Option<OffsetDateTime>,
    pub revoke_time: Option<OffsetDateTime>,
    /// Bound to a client certificate.
    pub bound: bool,
}

/// A credential to store.
#[derive(Debug, Clone)]
pub struct NewToken<'a> {
    pub id: Uuid,
    pub role: &'a Role,
    pub name: &'a str,
    pub hash: [u8; 32],
    pub expire_time: OffsetDateTime,
    /// SHA-256 of the client certificate the token is bound to.
    pub cert_sha256: Option<[u8; 32]>,
    /// May manage its organisation's keys.
    pub manages_keys: bool,
}

/// Stores a new credential's hash and audits its issue.
pub async fn insert(pool: &PgPool, token: &NewToken<'_>, actor: &Actor) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    insert_row(&mut tx, token, None).await?;
    let changes = json!([{ "field": "role", "before": null, "after": token.role.as_str() },
                         { "field": "name", "before": null, "after": token.name },
                         { "field": "expire_time", "before": null, "after": token.expire_time.to_string() },
                         { "field": "bound_to_certificate", "before": null, "after": token.cert_sha256.is_some() },
                         { "field": "manages_keys", "before": null, "after": token.manages_keys }]);
    audit::append(
        &mut tx,
        audit::Entry::about("token", token.id, "ISSUED", actor, changes),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn insert_row(
    conn: &mut sqlx::PgConnection,
    t: &NewToken<'_>,
    rotated_from: Option<Uuid>,
) -> Result<(), StoreError> {
    let (institution_id, isp_code) = match t.role {
        Role::Institution(id) => (Some(*id), None),
        Role::Isp(code) => (None, Some(code.as_str())),
        _ => (None, None),
    };
    sqlx::query(
        "INSERT INTO api_tokens (id, token_hash, role, institution_id, isp_code, name, expire_time, cert_sha256,
                                 rotated_from, manages_keys)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(t.id)
    .bind(&t.hash[..])
    .bind(t.role.as_str())
    .bind(institution_id)
    .bind(isp_code)
    .bind(t.name)
    .bind(t.expire_time)
    .bind(t.cert_sha256.as_ref().map(|h| &h[..]))
    .bind(rotated_from)
    .bind(t.manages_keys)
    .execute(conn)
    .await
    .map_err(|e| match super::violated_constraint(&e) {
        Some("api_tokens_institution_id_fkey") => StoreError::NotFound("institution"),
        Some("api_tokens_isp_fkey") => StoreError::NotFound("isp"),
        _ => e.into(),
    })?;
    Ok(())
}

/// An unrevoked, unexpired credential as the in-memory set holds it.
pub struct ActiveToken {
    pub hash: [u8; 32],
    pub principal: Principal,
    pub expire_time: OffsetDateTime,
    pub cert_sha256: Option<[u8; 32]>,
}

#[derive(sqlx::FromRow)]
struct ActiveRow {
    token_hash: Vec<u8>,
    id: Uuid,
    role: String,
    institution_id: Option<Uuid>,
    isp_code: Option<String>,
    name: String,
    /// The institution's category: it never changes, and every submission needs it.
    category: Option<String>,
    expire_time: OffsetDateTime,
    cert_sha256: Option<Vec<u8>>,
    manages_keys: bool,
}

fn hash32(bytes: Vec<u8>, id: Uuid, what: &str) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("token {id} {what} is not 32 bytes")))
}

/// Every unrevoked, unexpired credential with its hash.
pub async fn all_active(pool: &PgPool) -> Result<Vec<ActiveToken>, StoreError> {
    let rows: Vec<ActiveRow> = sqlx::query_as(
        "SELECT t.token_hash, t.id, t.role, t.institution_id, t.isp_code, t.name, i.category, t.expire_time,
                t.cert_sha256, t.manages_keys
           FROM api_tokens t LEFT JOIN institutions i ON i.id = t.institution_id
          WHERE t.revoke_time IS NULL AND t.expire_time > now()",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            let role = match (r.role.as_str(), r.institution_id, r.isp_code) {
                ("admin", ..) => Role::Admin,
                ("reviewer", ..) => Role::Reviewer,
                ("lookup", ..) => Role::Lookup,
                ("payments", ..) => Role::Payments,
                ("institution", Some(inst), _) => Role::Institution(inst),
                ("isp", _, Some(code)) => Role::Isp(reparse(&code, "isp code")?),
                _ => return Err(StoreError::Corrupt(format!("token {} has role {:?}", r.id, r.role))),
            };
            let institution_category = r
                .category
                .map(|c| decode(&c, Category::from_db, "category"))
                .transpose()?;
            Ok(ActiveToken {
                hash: hash32(r.token_hash, r.id, "hash")?,
                principal: Principal {
                    id: r.id,
                    name: r.name,
                    role,
                    institution_category,
                    manages_keys: r.manages_keys,
                },
                expire_time: r.expire_time,
                cert_sha256: r.cert_sha256.map(|h| hash32(h, r.id, "certificate hash")).transpose()?,
            })
        })
        .collect()
}

/// Replaces credential `id` with a new secret (same role, scope, name,
/// binding and expiry); the old one stays valid until `grace_until`.
/// Returns false when no active credential has that id.
pub async fn rotate(
    pool: &PgPool,
    scope: &Audience,
    id: Uuid,
    new_id: Uuid,
    hash: [u8; 32],
    grace_until: OffsetDateTime,
    actor: &Actor,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let copied = sqlx::query(
        "INSERT INTO api_tokens (id, token_hash, role, institution_id, isp_code, name, expire_time, cert_sha256,
                                 rotated_from, manages_keys)
         SELECT $2, $3, role, institution_id, isp_code, name, expire_time, cert_sha256, id, manages_keys
           FROM api_tokens WHERE id = $1 AND revoke_time IS NULL AND expire_time > now()
            AND ($4::uuid IS NULL OR institution_id = $4) AND ($5::text IS NULL OR isp_code = $5)",
    )
    .bind(id)
    .bind(new_id)
    .bind(&hash[..])
    .bind(scope.columns().0)
    .bind(scope.columns().1)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if copied == 0 {
        return Ok(false);
    }
    sqlx::query("UPDATE api_tokens SET expire_time = least(expire_time, $2) WHERE id = $1")
        .bind(id)
        .bind(grace_until)
        .execute(&mut *tx)
        .await?;
    let changes = json!([{ "field": "rotated_to", "before": null, "after": new_id.to_string() },
                         { "field": "expire_time", "before": null, "after": grace_until.to_string() }]);
    audit::append(&mut tx, audit::Entry::about("token", id, "ROTATED", actor, changes)).await?;
    tx.commit().await?;
    Ok(true)
}

/// Revokes a credential; false when no unrevoked credential has that id.
pub async fn revoke(pool: &PgPool, scope: &Audience, id: Uuid, actor: &Actor) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let revoked = sqlx::query(
        "UPDATE api_tokens SET revoke_time = now()
          WHERE id = $1 AND revoke_time IS NULL
            AND ($2::uuid IS NULL OR institution_id = $2) AND ($3::text IS NULL OR isp_code = $3)",
    )
    .bind(id)
    .bind(scope.columns().0)
    .bind(scope.columns().1)
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

/// Records when credentials were last used: (id, microseconds since the epoch).
pub async fn record_last_use(pool: &PgPool, used: &[(Uuid, i64)]) -> Result<(), StoreError> {
    let (ids, times): (Vec<Uuid>, Vec<OffsetDateTime>) = used
        .iter()
        .map(|&(id, us)| {
            let at =
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
            (id, at)
        })
        .unzip();
    sqlx::query("SELECT api_tokens_record_use($1, $2)")
        .bind(ids)
        .bind(times)
        .execute(pool)
        .await?;
    Ok(())
}

/// Every credential, oldest first.
pub async fn list(pool: &PgPool) -> Result<Vec<TokenInfo>, StoreError> {
    Ok(sqlx::query_as::<_, TokenInfo>(
        "SELECT id, role, institution_id, isp_code, name, create_time, expire_time, last_use_time, revoke_time,
                cert_sha256 IS NOT NULL AS bound
           FROM api_tokens ORDER BY create_time, id",
    )
    .fetch_all(pool)
    .await?)
}

/// An organisation's key as ApiKeyService lists it (never the secret).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Key {
    pub id: Uuid,
    pub name: String,
    pub create_time: OffsetDateTime,
    pub expire_time: OffsetDateTime,
    pub last_use_time: Option<OffsetDateTime>,
    pub revoke_time: Option<OffsetDateTime>,
    pub manages_keys: bool,
    pub rotated_from: Option<Uuid>,
}

/// One key of `owner` (an institution or an ISP).
pub async fn key(pool: &PgPool, owner: &Audience, id: Uuid) -> Result<Key, StoreError> {
    let (institution, isp) = owner.columns();
    sqlx::query_as(
        "SELECT id, name, create_time, expire_time, last_use_time, revoke_time, manages_keys, rotated_from
           FROM api_tokens WHERE id = $1 AND institution_id IS NOT DISTINCT FROM $2 AND isp_code IS NOT DISTINCT FROM $3",
    )
    .bind(id)
    .bind(institution)
    .bind(isp)
    .fetch_optional(pool)
    .await?
    .ok_or(StoreError::NotFound("api key"))
}

/// The keys of `owner`, newest first (ids are time-ordered), before `before`.
pub async fn keys(pool: &PgPool, owner: &Audience, before: Uuid, limit: i64) -> Result<Vec<Key>, StoreError> {
    let (institution, isp) = owner.columns();
    Ok(sqlx::query_as(
        "SELECT id, name, create_time, expire_time, last_use_time, revoke_time, manages_keys, rotated_from
           FROM api_tokens
          WHERE institution_id IS NOT DISTINCT FROM $1 AND isp_code IS NOT DISTINCT FROM $2 AND id < $3
          ORDER BY id DESC LIMIT $4",
    )
    .bind(institution)
    .bind(isp)
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
