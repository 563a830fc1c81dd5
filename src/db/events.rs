//! Events someone must hear about, written in the same transaction (and the
//! same statement) as the change and its audit entry, with one outbox row per
//! recipient; and the event feed read back in commit-safe order.
//!
//! Order: `seq` is an identity, handed out before commit, so a transaction
//! that took seq 11 may commit before the one holding seq 10. Readers
//! therefore never pass the oldest transaction still running
//! (`pg_snapshot_xmin`): every event of an older transaction is final, and
//! any event yet to appear belongs to a transaction at least that new. The
//! cursor is (xid, seq); it never skips an event, as the change feed's
//! serials never do.

use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, audit};
use crate::domain::event::{EventType, REMINDER_DAYS};

/// The outbox rows of the events in CTE `event` (id, type, institution_id,
/// isp, registration_id): the institution's contact e-mail, and every live
/// webhook of the institution, or of the ISP, that asked for the type (an
/// ISP's webhooks can only ask for the types that concern it).
macro_rules! fan_out {
    () => {
        "INSERT INTO notifications (event_id, channel, recipient, registration_id)
         SELECT e.id, 'email', i.contact_email, e.registration_id
           FROM event e JOIN institutions i ON i.id = e.institution_id
         UNION ALL
         SELECT e.id, 'webhook', w.id::text, e.registration_id
           FROM event e JOIN webhooks w ON w.institution_id = e.institution_id OR w.isp = e.isp
          WHERE w.delete_time IS NULL AND w.disable_time IS NULL AND e.type = ANY (w.event_types)"
    };
}

/// Appends `entry` (about a registration) and the event `event_type` it
/// produces, with its notifications: one statement, one round trip, in the
/// caller's transaction. The event carries the registration's state as the
/// statement sees it (after the change).
pub async fn append_with_audit(
    conn: &mut PgConnection,
    entry: audit::Entry<'_>,
    event_type: EventType,
) -> Result<(), StoreError> {
    let sql = concat!(
        "WITH audit AS (",
        audit::insert_entry!(),
        "), event AS (
            INSERT INTO events (id, type, institution_id, isp, registration_id, reference, state, reason_code, reason)
            SELECT $14, $15, r.institution_id, r.isp, r.id, r.reference, r.state, $10, $11
              FROM registrations r WHERE r.id = $2
            RETURNING id, type, institution_id, isp, registration_id
        ) ",
        fan_out!()
    );
    audit::bind(sqlx::query(sql), &entry)
        .bind(Uuid::now_v7())
        .bind(event_type.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// Records the reminders due now: for each ACTIVE registration, the
/// tightest of [`REMINDER_DAYS`] its validity falls within, once per
/// registration, validity and reminder (a unique key, so several servers
/// running this at once send each once). Returns how many were recorded.
pub async fn remind(pool: &PgPool) -> Result<u64, StoreError> {
    let sql = concat!(
        "WITH due AS (
            SELECT r.id, r.institution_id, r.isp, r.reference, r.state, r.valid_until,
                   (SELECT min(d) FROM unnest($1::int[]) d
                     WHERE r.valid_until <= now() + make_interval(days => d)) AS days
              FROM registrations r
             WHERE r.state = 'ACTIVE' AND r.valid_until > now()
               AND r.valid_until <= now() + make_interval(days => $2)
        ), event AS (
            INSERT INTO events (id, type, institution_id, isp, registration_id, reference, state, days_left, once_key)
            SELECT gen_random_uuid(), $3, due.institution_id, due.isp, due.id, due.reference, due.state,
                   ceil(extract(epoch FROM due.valid_until - now()) / 86400)::int,
                   'reminder:' || due.id || ':' || due.valid_until || ':' || due.days
              FROM due
            ON CONFLICT (once_key) WHERE once_key IS NOT NULL DO NOTHING
            RETURNING id, type, institution_id, isp, registration_id
        ), fanned AS (",
        fan_out!(),
        " RETURNING 1)
        SELECT count(*) FROM event"
    );
    let n: i64 = sqlx::query_scalar(sql)
        .bind(REMINDER_DAYS.as_slice())
        .bind(REMINDER_DAYS[0])
        .bind(EventType::ExpiryReminder.as_str())
        .fetch_one(pool)
        .await?;
    Ok(n as u64)
}

/// One event as the feed and the deliveries read it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Event {
    pub seq: i64,
    /// The writing transaction's id (a cursor's first half).
    pub xid: i64,
    pub id: Uuid,
    #[sqlx(rename = "type")]
    pub event_type: String,
    pub institution_id: Uuid,
    pub isp: Option<String>,
    pub registration_id: Uuid,
    pub reference: String,
    pub state: String,
    pub reason_code: Option<String>,
    pub reason: Option<String>,
    pub days_left: Option<i32>,
    pub occur_time: OffsetDateTime,
}

/// Whose events a reader sees (and whose webhooks).
#[derive(Debug, Clone)]
pub enum Audience {
    All,
    Institution(Uuid),
    /// An ISP's desk: the events that ask it to attest.
    Isp(String),
}

impl Audience {
    /// The owner columns it filters on (institution_id, isp): both `None`
    /// for all.
    pub fn columns(&self) -> (Option<Uuid>, Option<&str>) {
        match self {
            Audience::All => (None, None),
            Audience::Institution(id) => (Some(*id), None),
            Audience::Isp(code) => (None, Some(code.as_str())),
        }
    }
}

/// Events after `after` (a cursor: xid, seq), oldest first, never past a
/// transaction still running.
pub async fn list(pool: &PgPool, audience: &Audience, after: (i64, i64), limit: i64) -> Result<Vec<Event>, StoreError> {
    let isp_types: Vec<&str> = EventType::ALL
        .iter()
        .filter(|t| t.asks_isp())
        .map(|t| t.as_str())
        .collect();
    let (institution, isp) = audience.columns();
    Ok(sqlx::query_as::<_, Event>(
        "SELECT seq, xid::text::bigint AS xid, id, type, institution_id, isp, registration_id, reference, state,
                reason_code, reason, days_left, occur_time
           FROM events
          WHERE (xid, seq) > ($1::text::xid8, $2)
            AND xid < pg_snapshot_xmin(pg_current_snapshot())
            AND ($3::uuid IS NULL OR institution_id = $3)
            AND ($4::text IS NULL OR (isp = $4 AND type = ANY($5)))
          ORDER BY xid, seq
          LIMIT $6",
    )
    .bind(after.0.to_string())
    .bind(after.1)
    .bind(institution)
    .bind(isp)
    .bind(isp_types)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
