//! Documents: their records, sealed segments, verdicts and every read, all
//! audited (subject `document`). An upload is one transaction: segments as
//! they arrive, the record last; a cut or refused upload rolls back whole.

use serde_json::json;
use sqlx::{PgPool, Postgres, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, audit};
use crate::domain::evidence::{DocumentStatus, DocumentType, MediaType};
use crate::domain::principal::Actor;

/// A document's record (never its content).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Document {
    pub id: Uuid,
    pub institution_id: Uuid,
    pub registration_id: Option<Uuid>,
    pub r#type: String,
    pub file_name: String,
    pub media_type: String,
    pub size_bytes: i64,
    pub sha256: Vec<u8>,
    pub status: String,
    pub status_reason: Option<String>,
    pub decide_time: Option<OffsetDateTime>,
    pub replaces: Option<Uuid>,
    pub delete_time: Option<OffsetDateTime>,
    /// When its content and data key were destroyed (deleted, or past retention).
    pub destroy_time: Option<OffsetDateTime>,
    pub create_time: OffsetDateTime,
    /// The wrapped data key, the id of the key that wraps it, the nonce prefix.
    pub key_id: String,
    pub wrapped_key: Vec<u8>,
    pub nonce_prefix: Vec<u8>,
    /// Segments of sealed content.
    pub segments: i64,
}

const COLUMNS: &str = "d.id, d.institution_id, d.registration_id, d.type, d.file_name, d.media_type, d.size_bytes,
    d.sha256, d.status, d.status_reason, d.decide_time, d.replaces, d.delete_time, d.destroy_time, d.create_time, d.key_id,
    d.wrapped_key, d.nonce_prefix,
    (SELECT count(*) FROM document_segments s WHERE s.document_id = d.id) AS segments";

/// One document by id (deleted ones too: their record stays).
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Document>, StoreError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM documents d WHERE d.id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// The upload an institution already made with `request_id`, if any.
pub async fn by_request(pool: &PgPool, institution: Uuid, request_id: &str) -> Result<Option<Document>, StoreError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM documents d WHERE d.institution_id = $1 AND d.request_id = $2"
    )))
    .bind(institution)
    .bind(request_id)
    .fetch_optional(pool)
    .await?)
}

/// The current (neither deleted nor replaced) documents of a registration, or of an
/// institution itself (`registration` `None`), newest first.
pub async fn list(pool: &PgPool, institution: Uuid, registration: Option<Uuid>) -> Result<Vec<Document>, StoreError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM documents d
          WHERE d.institution_id = $1 AND d.registration_id IS NOT DISTINCT FROM $2
            AND d.delete_time IS NULL AND d.supersede_time IS NULL
          ORDER BY d.create_time DESC, d.id DESC"
    )))
    .bind(institution)
    .bind(registration)
    .fetch_all(pool)
    .await?)
}

/// One sealed segment of a document's content.
pub async fn segment(pool: &PgPool, id: Uuid, seq: i32) -> Result<Vec<u8>, StoreError> {
    sqlx::query_scalar("SELECT sealed FROM document_segments WHERE document_id = $1 AND seq = $2")
        .bind(id)
        .bind(seq)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("document {id} lacks segment {seq}")))
}

/// What an upload stores besides its content.
pub struct NewDocument<'a> {
    pub id: Uuid,
    pub institution_id: Uuid,
    pub registration_id: Option<Uuid>,
    pub r#type: DocumentType,
    pub file_name: &'a str,
    pub request_id: &'a str,
    pub key_id: &'a str,
    pub wrapped_key: &'a [u8],
    pub nonce_prefix: &'a [u8],
}

/// An upload in progress: its transaction and the next segment's number.
pub struct Upload {
    tx: Transaction<'static, Postgres>,
    id: Uuid,
    next: i32,
}

impl Upload {
    pub async fn begin(pool: &PgPool, id: Uuid) -> Result<Self, StoreError> {
        Ok(Self {
            tx: pool.begin().await?,
            id,
            next: 0,
        })
    }

    /// Stores the next sealed segments, in order.
    pub async fn segments(&mut self, sealed: &[Vec<u8>]) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO document_segments (document_id, seq, sealed)
             SELECT $1, $2 + s.n - 1, s.sealed FROM unnest($3::bytea[]) WITH ORDINALITY AS s(sealed, n)",
        )
        .bind(self.id)
        .bind(self.next)
        .bind(sealed)
        .execute(&mut *self.tx)
        .await?;
        self.next += sealed.len() as i32;
        Ok(())
    }

    /// Writes the record of the complete content, replacing the live
    /// document of the same type (its history keeps the old one), audits
    /// and commits. A concurrent upload with the same request id loses:
    /// `AlreadyExists`.
    pub async fn finish(
        mut self,
        d: &NewDocument<'_>,
        media_type: MediaType,
        size: i64,
        sha256: &[u8; 32],
        actor: &Actor,
    ) -> Result<(), StoreError> {
        let replaced: Option<Uuid> = sqlx::query_scalar(
            "UPDATE documents SET supersede_time = now()
              WHERE institution_id = $1 AND registration_id IS NOT DISTINCT FROM $2 AND type = $3
                AND delete_time IS NULL AND supersede_time IS NULL
              RETURNING id",
        )
        .bind(d.institution_id)
        .bind(d.registration_id)
        .bind(d.r#type.as_str())
        .fetch_optional(&mut *self.tx)
        .await?;
        sqlx::query(
            "INSERT INTO documents (id, institution_id, registration_id, type, file_name, media_type, size_bytes, sha256,
                                    key_id, wrapped_key, nonce_prefix, request_id, replaces)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(d.id)
        .bind(d.institution_id)
        .bind(d.registration_id)
        .bind(d.r#type.as_str())
        .bind(d.file_name)
        .bind(media_type.as_str())
        .bind(size)
        .bind(&sha256[..])
        .bind(d.key_id)
        .bind(d.wrapped_key)
        .bind(d.nonce_prefix)
        .bind(d.request_id)
        .bind(replaced)
        .execute(&mut *self.tx)
        .await
        .map_err(|e| match super::violated_constraint(&e) {
            Some("documents_institution_id_request_id_key") => {
                StoreError::AlreadyExists("an upload with this request_id".into())
            }
            _ => e.into(),
        })?;
        let changes = json!([{ "field": "type", "before": null, "after": d.r#type.as_str() },
                             { "field": "registration_id", "before": null, "after": d.registration_id },
                             { "field": "media_type", "before": null, "after": media_type.as_str() },
                             { "field": "size_bytes", "before": null, "after": size },
                             { "field": "replaces", "before": null, "after": replaced }]);
        audit::append(
            &mut self.tx,
            audit::Entry::about("document", d.id, "UPLOADED", actor, changes),
        )
        .await?;
        self.tx.commit().await?;
        Ok(())
    }
}

/// Deletes a document: its content and data key are destroyed, its record
/// stays, marked deleted; audited.
pub async fn delete(pool: &PgPool, id: Uuid, actor: &Actor) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE documents SET delete_time = now() WHERE id = $1 AND delete_time IS NULL")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    destroy(&mut tx, &[id]).await?;
    audit::append(
        &mut tx,
        audit::Entry::about("document", id, "DELETED", actor, json!([])),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Destroys the content and the data key of `ids` (without its data key a
/// segment left in a backup opens to no one).
async fn destroy(tx: &mut Transaction<'_, Postgres>, ids: &[Uuid]) -> Result<(), StoreError> {
    sqlx::query("UPDATE documents SET wrapped_key = '', destroy_time = now() WHERE id = ANY($1)")
        .bind(ids)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM document_segments WHERE document_id = ANY($1)")
        .bind(ids)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Destroys (as [`delete`] does, audited as DESTROYED) up to `limit`
/// documents of registrations that ended (withdrawn, rejected, revoked,
/// expired) more than `keep` ago. How many.
pub async fn destroy_ended(pool: &PgPool, keep: std::time::Duration, limit: i64) -> Result<usize, StoreError> {
    let mut tx = pool.begin().await?;
    let due: Vec<Uuid> = sqlx::query_scalar(
        "SELECT d.id FROM documents d JOIN registrations r ON r.id = d.registration_id
          WHERE d.destroy_time IS NULL AND r.state IN ('WITHDRAWN', 'REJECTED', 'REVOKED', 'EXPIRED')
            AND r.state_time < now() - $1::interval
          LIMIT $2 FOR UPDATE OF d SKIP LOCKED",
    )
    .bind(format!("{} milliseconds", keep.as_millis()))
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    destroy(&mut tx, &due).await?;
    let actor = Actor::system("document-retention");
    for id in &due {
        let changes = json!([{ "field": "retention", "before": null, "after": format!("{}s", keep.as_secs()) }]);
        audit::append(
            &mut tx,
            audit::Entry::about("document", *id, "DESTROYED", &actor, changes),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(due.len())
}

/// Records a reviewer's verdict; audited.
pub async fn decide(
    pool: &PgPool,
    id: Uuid,
    status: DocumentStatus,
    reason: Option<&str>,
    actor: &Actor,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    let before: String = sqlx::query_scalar(
        "UPDATE documents d SET status = $2, status_reason = $3, decide_time = now()
           FROM documents old WHERE d.id = $1 AND old.id = d.id RETURNING old.status",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(reason)
    .fetch_one(&mut *tx)
    .await?;
    let changes = json!([{ "field": "status", "before": before, "after": status.as_str() },
                         { "field": "reason", "before": null, "after": reason }]);
    audit::append(&mut tx, audit::Entry::about("document", id, "DECIDED", actor, changes)).await?;
    tx.commit().await?;
    Ok(())
}

/// Records that `actor` opened a document, and why.
pub async fn record_view(pool: &PgPool, id: Uuid, why: &str, actor: &Actor) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    let changes = json!([{ "field": "why", "before": null, "after": why }]);
    audit::append(&mut conn, audit::Entry::about("document", id, "VIEWED", actor, changes)).await
}

/// One read of a document, from the audit trail.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct View {
    pub sequence: i64,
    pub document_id: Uuid,
    pub document_type: String,
    pub viewer: String,
    pub viewer_role: String,
    pub purpose: Option<String>,
    pub view_time: OffsetDateTime,
}

/// Reads of `institution`'s documents (of `registration`, or its own),
/// newest first, before audit sequence `before`.
pub async fn views(
    pool: &PgPool,
    institution: Uuid,
    registration: Option<Uuid>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<View>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT a.sequence, d.id AS document_id, d.type AS document_type, a.actor_name AS viewer,
                a.actor_role AS viewer_role, a.changes -> 0 ->> 'after' AS purpose, a.create_time AS view_time
           FROM documents d
           JOIN audit_events a ON a.subject_id = d.id AND a.subject_type = 'document' AND a.action = 'VIEWED'
          WHERE d.institution_id = $1 AND d.registration_id IS NOT DISTINCT FROM $2 AND a.sequence < $3
          ORDER BY a.sequence DESC
          LIMIT $4",
    )
    .bind(institution)
    .bind(registration)
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Re-wraps every data key wrapped by key `old_id` through `rewrap` (which
/// returns the new key id and wrapped key), in one transaction; audited.
/// How many.
pub async fn rewrap(
    pool: &PgPool,
    old_id: &str,
    rewrap: impl Fn(&[u8]) -> Result<(String, Vec<u8>), crate::vault::KeyError>,
    actor: &Actor,
) -> Result<u64, RewrapError> {
    let mut tx = pool.begin().await.map_err(StoreError::from)?;
    let rows: Vec<(Uuid, Vec<u8>)> =
        sqlx::query_as("SELECT id, wrapped_key FROM documents WHERE key_id = $1 AND destroy_time IS NULL FOR UPDATE")
            .bind(old_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::from)?;
    let mut new_id = None;
    for (id, wrapped) in &rows {
        let (key_id, rewrapped) = rewrap(wrapped)?;
        sqlx::query("UPDATE documents SET key_id = $2, wrapped_key = $3 WHERE id = $1")
            .bind(id)
            .bind(&key_id)
            .bind(&rewrapped)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        new_id = Some(key_id);
    }
    let changes = json!([{ "field": "key_id", "before": old_id, "after": new_id },
                         { "field": "documents", "before": null, "after": rows.len() }]);
    audit::append(
        &mut tx,
        audit::Entry::about("document", Uuid::nil(), "KEYS_REWRAPPED", actor, changes),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(rows.len() as u64)
}

/// Why re-wrapping stopped (nothing was changed).
#[derive(Debug, thiserror::Error)]
pub enum RewrapError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] crate::vault::KeyError),
}
