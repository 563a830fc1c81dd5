//! Registrations and their pending revisions: every statement that reads or
//! writes `registrations` and `registration_revisions`. What a write does is
//! decided in `domain::workflow`; the change feed follows from the database
//! trigger on `registrations`.

mod row;
mod write;

use sqlx::{PgConnection, PgPool};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::{StoreError, audit};
use crate::domain::{
    identifiers::IspCode,
    institution::Category,
    principal::Visibility,
    registration::{Kind, Registration},
    state::State,
};
use row::Row;
pub use write::{Expiring, Locked, OVERLAP_SQL, Write, claim_expiring, insert, insert_batch, lock};

/// The columns every registration query returns, in `Row`'s order, with the
/// pending revision (if any) joined as `v`. A macro so SQL stays `&'static str`.
macro_rules! columns {
    () => {
        "r.id, r.reference, r.institution_id, r.kind, r.protocol, r.source_prefixes, r.msisdn,
         r.peer_prefixes, r.isp, r.isp_subscriber_id, r.purpose, r.valid_from, r.valid_until,
         r.large_prefix_justification, r.state, r.state_time, r.version, r.create_time, r.update_time,
         v.id AS v_id, v.is_renewal AS v_is_renewal, v.protocol AS v_protocol,
         v.source_prefixes AS v_source_prefixes, v.msisdn AS v_msisdn, v.peer_prefixes AS v_peer_prefixes,
         v.isp AS v_isp, v.isp_subscriber_id AS v_isp_subscriber_id, v.purpose AS v_purpose,
         v.valid_from AS v_valid_from, v.valid_until AS v_valid_until,
         v.large_prefix_justification AS v_large_prefix_justification, v.state AS v_state,
         v.state_time AS v_state_time, v.create_time AS v_create_time"
    };
}

/// `registrations r` with its undecided revision `v`.
macro_rules! from_clause {
    () => {
        " FROM registrations r
          LEFT JOIN registration_revisions v
                 ON v.registration_id = r.id AND v.state IN ('ISP_VERIFICATION', 'UNDER_REVIEW', 'NEEDS_INFO')"
    };
}

/// Reads one registration the caller may see.
pub async fn get(pool: &PgPool, id: Uuid, vis: Visibility) -> Result<Registration, StoreError> {
    let mut conn = pool.acquire().await?;
    fetch(&mut conn, id, vis, false).await
}

async fn fetch(conn: &mut PgConnection, id: Uuid, vis: Visibility, lock: bool) -> Result<Registration, StoreError> {
    let only = match vis {
        Visibility::All => None,
        Visibility::Institution(own) => Some(own),
    };
    let sql = if lock {
        concat!(
            "SELECT ",
            columns!(),
            from_clause!(),
            " WHERE r.id = $1 AND ($2::uuid IS NULL OR r.institution_id = $2)
                 FOR UPDATE OF r"
        )
    } else {
        concat!(
            "SELECT ",
            columns!(),
            from_clause!(),
            " WHERE r.id = $1 AND ($2::uuid IS NULL OR r.institution_id = $2)"
        )
    };
    let row: Option<Row> = sqlx::query_as(sql).bind(id).bind(only).fetch_optional(conn).await?;
    row.ok_or(StoreError::NotFound("registration"))?.try_into()
}

/// Filters for [`list`]; `None` means any.
#[derive(Debug, Default, Clone, Copy)]
pub struct Filter {
    pub institution_id: Option<Uuid>,
    pub state: Option<State>,
    pub category: Option<Category>,
    pub kind: Option<Kind>,
    /// Only ACTIVE registrations whose validity ends before this instant.
    pub expiring_before: Option<OffsetDateTime>,
}

/// One page of registrations the caller may see, oldest first.
pub async fn list(
    pool: &PgPool,
    vis: Visibility,
    filter: Filter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Registration>, StoreError> {
    let institution_id = match (vis, filter.institution_id) {
        (Visibility::All, requested) => requested,
        (Visibility::Institution(own), Some(requested)) if requested != own => {
            return Ok(Vec::new());
        }
        (Visibility::Institution(own), _) => Some(own),
    };
    let rows: Vec<Row> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        from_clause!(),
        " WHERE ($1::uuid IS NULL OR r.institution_id = $1)
            AND ($2::text IS NULL OR r.state = $2)
            AND ($3::text IS NULL OR r.institution_id IN (SELECT id FROM institutions WHERE category = $3))
            AND ($4::text IS NULL OR r.kind = $4)
            AND ($5::timestamptz IS NULL OR (r.state = 'ACTIVE' AND r.valid_until < $5))
            AND ($6::uuid IS NULL OR r.id > $6)
          ORDER BY r.id
          LIMIT $7"
    ))
    .bind(institution_id)
    .bind(filter.state.map(State::as_str))
    .bind(filter.category.map(Category::as_str))
    .bind(filter.kind.map(Kind::as_str))
    .bind(filter.expiring_before)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

/// One page of a registration's history, if the caller may see it.
pub async fn events(
    pool: &PgPool,
    id: Uuid,
    vis: Visibility,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<audit::Event>, StoreError> {
    let mut conn = pool.acquire().await?;
    fetch(&mut conn, id, vis, false).await?;
    audit::list(&mut conn, id, after, limit).await
}

/// Where a queue resumes: after this (time, id).
pub type QueueCursor = (OffsetDateTime, Uuid);

/// Filters of a work queue ([`queue`]); `None` means any.
#[derive(Debug, Clone, Default)]
pub struct QueueFilter {
    pub isp: Option<IspCode>,
    pub kind: Option<Kind>,
    pub category: Option<Category>,
    /// Only what entered the state before this time.
    pub queued_before: Option<OffsetDateTime>,
}

/// Registrations (or their revisions) in `state`, oldest first by the time
/// they entered it, with that time.
pub async fn queue(
    pool: &PgPool,
    state: State,
    filter: &QueueFilter,
    after: Option<QueueCursor>,
    limit: i64,
) -> Result<Vec<(Registration, OffsetDateTime)>, StoreError> {
    #[derive(sqlx::FromRow)]
    struct QueueRow {
        #[sqlx(flatten)]
        row: Row,
        queued_at: OffsetDateTime,
    }
    let rows: Vec<QueueRow> = sqlx::query_as(concat!(
        "SELECT * FROM (SELECT ",
        columns!(),
        ", CASE WHEN v.state = $1 THEN v.state_time ELSE r.state_time END AS queued_at",
        from_clause!(),
        " WHERE (r.state = $1 OR v.state = $1)
            AND ($2::text IS NULL OR CASE WHEN v.state = $1 THEN v.isp ELSE r.isp END = $2)
            AND ($3::text IS NULL OR r.kind = $3)
            AND ($4::text IS NULL OR r.institution_id IN (SELECT id FROM institutions WHERE category = $4))
         ) q
          WHERE ($5::timestamptz IS NULL OR (q.queued_at, q.id) > ($5, $6))
            AND ($8::timestamptz IS NULL OR q.queued_at < $8)
          ORDER BY q.queued_at, q.id
          LIMIT $7"
    ))
    .bind(state.as_str())
    .bind(filter.isp.as_ref().map(IspCode::as_str))
    .bind(filter.kind.map(Kind::as_str))
    .bind(filter.category.map(Category::as_str))
    .bind(after.map(|(t, _)| t))
    .bind(after.map(|(_, id)| id))
    .bind(limit)
    .bind(filter.queued_before)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|q| Ok((Registration::try_from(q.row)?, q.queued_at)))
        .collect()
}

/// ACTIVE registrations due to expire before `today` (Pakistan date):
/// (id, whether the validity ended rather than a required PSEB registration).
async fn due_for_expiry(conn: &mut PgConnection, today: Date, limit: i64) -> Result<Vec<(Uuid, bool)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT r.id, r.valid_until <= now() AS validity_ended
           FROM registrations r JOIN institutions i ON i.id = r.institution_id
          WHERE r.state = 'ACTIVE'
            AND (r.valid_until <= now()
                 OR (i.category IN ('IT_COMPANY', 'CALL_CENTER_BPO') AND i.pseb_expiry < $1))
          ORDER BY r.valid_until
          LIMIT $2
          FOR UPDATE OF r SKIP LOCKED",
    )
    .bind(today)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// How many registrations are in each state (for the operator's dashboard).
pub async fn count_by_state(pool: &PgPool) -> Result<Vec<(State, i64)>, StoreError> {
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT state, count(*) FROM registrations GROUP BY state")
        .fetch_all(pool)
        .await?;
    rows.into_iter()
        .map(|(state, n)| Ok((super::decode(&state, State::from_db, "state")?, n)))
        .collect()
}
