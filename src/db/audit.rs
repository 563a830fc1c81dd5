//! The append-only audit trail, written in the same transaction as the change
//! it records.

use serde_json::Value;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::StoreError;
use crate::domain::principal::Actor;

/// One audit event about to be written.
pub struct Entry<'a> {
    pub subject_type: &'static str,
    pub subject_id: Uuid,
    pub revision_id: Option<Uuid>,
    pub action: &'a str,
    pub actor: &'a Actor,
    pub from_state: Option<&'a str>,
    pub to_state: Option<&'a str>,
    pub reason_code: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub changes: Value,
}

impl<'a> Entry<'a> {
    /// An event about a subject without a lifecycle (an institution's
    /// profile, a credential): no states, no reason.
    pub fn about(
        subject_type: &'static str,
        subject_id: Uuid,
        action: &'a str,
        actor: &'a Actor,
        changes: Value,
    ) -> Self {
        Self {
            subject_type,
            subject_id,
            revision_id: None,
            action,
            actor,
            from_state: None,
            to_state: None,
            reason_code: None,
            reason: None,
            changes,
        }
    }
}

/// The statement appending one entry ($1-$13, bound by [`bind`]); a
/// macro, so that other statements can run it as a CTE.
macro_rules! insert_entry {
    () => {
        "INSERT INTO audit_events (subject_type, subject_id, action, actor_principal_id, actor_name,
                                   actor_role, request_id, from_state, to_state, reason_code, reason, changes,
                                   revision_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    };
}
pub(crate) use insert_entry;

/// Binds `e` as [`insert_entry`] expects it.
pub(crate) fn bind<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    e: &'q Entry<'q>,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(e.subject_type)
        .bind(e.subject_id)
        .bind(e.action)
        .bind(e.actor.principal_id)
        .bind(&e.actor.name)
        .bind(e.actor.role)
        .bind(e.actor.request_id.as_deref())
        .bind(e.from_state)
        .bind(e.to_state)
        .bind(e.reason_code)
        .bind(e.reason)
        .bind(&e.changes)
        .bind(e.revision_id)
}

/// Appends an entry inside the caller's transaction.
pub async fn append(conn: &mut PgConnection, e: Entry<'_>) -> Result<(), StoreError> {
    bind(sqlx::query(insert_entry!()), &e).execute(conn).await?;
    Ok(())
}

/// One stored audit event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Event {
    pub sequence: i64,
    pub subject_id: Uuid,
    pub revision_id: Option<Uuid>,
    pub action: String,
    pub actor_principal_id: Option<Uuid>,
    pub actor_name: String,
    pub actor_role: String,
    pub request_id: Option<String>,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub reason_code: Option<String>,
    pub reason: Option<String>,
    pub changes: Value,
    pub create_time: OffsetDateTime,
}

/// A subject's events after `after`, oldest first.
pub async fn list(
    conn: &mut PgConnection,
    subject_id: Uuid,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<Event>, StoreError> {
    Ok(sqlx::query_as::<_, Event>(
        "SELECT sequence, subject_id, revision_id, action, actor_principal_id, actor_name, actor_role, request_id,
                from_state, to_state, reason_code, reason, changes, create_time
           FROM audit_events
          WHERE subject_id = $1 AND sequence > $2
          ORDER BY sequence
          LIMIT $3",
    )
    .bind(subject_id)
    .bind(after.unwrap_or(0))
    .bind(limit)
    .fetch_all(conn)
    .await?)
}
