//! The change feed as the lookup replicas read it: a consistent snapshot of
//! the active set with its serial, the rows after a serial, and history.

use ipnet::IpNet;
use sqlx::{PgPool, Row as _};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, audit, decode};
use crate::domain::{institution::Category, principal::Actor, registration::Kind};

/// The channel every feed commit NOTIFYs (see the lookup feed migration).
pub const CHANNEL: &str = "vpnregistry_feed";

/// One active (prefix, registration) pair with what lookups report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveRow {
    pub prefix: IpNet,
    pub registration_id: Uuid,
    pub institution_id: Uuid,
    pub reference: String,
    pub kind: Kind,
    pub category: Category,
    pub peers: Vec<IpNet>,
    pub valid_from: OffsetDateTime,
    pub valid_until: OffsetDateTime,
    /// The ISP the registration names (ISPs look up only their own).
    pub isp: String,
}

/// Whether a feed row adds or removes its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Announce,
    Withdraw,
}

/// One row of the change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRow {
    pub serial: i64,
    pub op: Op,
    pub entry: ActiveRow,
}

fn active_row(r: &sqlx::postgres::PgRow) -> Result<ActiveRow, StoreError> {
    Ok(ActiveRow {
        prefix: r.try_get("prefix")?,
        registration_id: r.try_get("registration_id")?,
        institution_id: r.try_get("institution_id")?,
        reference: r.try_get("reference")?,
        kind: decode(r.try_get::<&str, _>("kind")?, Kind::from_db, "kind")?,
        category: decode(r.try_get::<&str, _>("category")?, Category::from_db, "category")?,
        peers: r.try_get("peer_prefixes")?,
        valid_from: r.try_get("valid_from")?,
        valid_until: r.try_get("valid_until")?,
        isp: r.try_get("isp")?,
    })
}

fn feed_row(r: &sqlx::postgres::PgRow) -> Result<FeedRow, StoreError> {
    let op = match r.try_get::<&str, _>("op")? {
        "ANNOUNCE" => Op::Announce,
        "WITHDRAW" => Op::Withdraw,
        other => return Err(StoreError::Corrupt(format!("feed op {other:?}"))),
    };
    Ok(FeedRow {
        serial: r.try_get("serial")?,
        op,
        entry: active_row(r)?,
    })
}

/// The feed's session and the active set at one serial, read in a single
/// repeatable-read transaction so the two agree. Rows are streamed into
/// `each`, so a million of them are never all in memory at once.
pub async fn snapshot(pool: &PgPool, mut each: impl FnMut(ActiveRow)) -> Result<(Uuid, i64), StoreError> {
    use tokio_stream::StreamExt as _;
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let (session, serial): (Uuid, i64) = sqlx::query_as("SELECT session_id, last_serial FROM feed_state")
        .fetch_one(&mut *tx)
        .await?;
    {
        let mut rows = sqlx::query(
            "SELECT a.prefix, r.id AS registration_id, r.institution_id, r.reference, r.kind, i.category,
                    r.peer_prefixes, r.valid_from, r.valid_until, r.isp
               FROM active_prefixes a
               JOIN registrations r ON r.id = a.registration_id
               JOIN institutions i ON i.id = r.institution_id",
        )
        .fetch(&mut *tx);
        while let Some(row) = rows.next().await {
            each(active_row(&row?)?);
        }
    }
    tx.commit().await?;
    Ok((session, serial))
}

const FEED_COLUMNS: &str = "serial, op, prefix, registration_id, institution_id, reference, kind,
    institution_category AS category, peer_prefixes, valid_from, valid_until, isp";

/// The feed's current session, its last serial, and up to `limit` of its
/// rows after `serial`, in serial order, read by one statement so they agree.
pub async fn since(pool: &PgPool, serial: i64, limit: i64) -> Result<(Uuid, i64, Vec<FeedRow>), StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT s.session_id, s.last_serial, f.*
           FROM feed_state s
           LEFT JOIN LATERAL (
               SELECT {FEED_COLUMNS} FROM change_feed WHERE serial > $1 ORDER BY serial LIMIT $2
           ) f ON true
          ORDER BY f.serial"
    )))
    .bind(serial)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let (session, last_serial) = match rows.first() {
        Some(r) => (r.try_get("session_id")?, r.try_get("last_serial")?),
        None => return Err(StoreError::Corrupt("feed_state has no row".into())),
    };
    let mut feed = Vec::with_capacity(rows.len());
    for r in &rows {
        if r.try_get::<Option<i64>, _>("serial")?.is_some() {
            feed.push(feed_row(r)?);
        }
    }
    Ok((session, last_serial, feed))
}

/// Starts a new feed session, for when serials already handed out can no
/// longer be trusted (the database was restored from a backup): every
/// replica reloads and every watcher gets a fresh snapshot. Returns the new
/// session.
pub async fn new_session(pool: &PgPool, actor: &Actor) -> Result<Uuid, StoreError> {
    let mut tx = pool.begin().await?;
    let (old, session): (Uuid, Uuid) = sqlx::query_as(
        "UPDATE feed_state s SET session_id = gen_random_uuid()
           FROM feed_state old RETURNING old.session_id, s.session_id",
    )
    .fetch_one(&mut *tx)
    .await?;
    let changes =
        serde_json::json!([{ "field": "session_id", "before": old.to_string(), "after": session.to_string() }]);
    audit::append(
        &mut tx,
        audit::Entry::about("feed", session, "NEW_SESSION", actor, changes),
    )
    .await?;
    sqlx::query("SELECT pg_notify($1, 'session')")
        .bind(CHANNEL)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(session)
}

/// For each of `addrs`, the entries that were active at `at` and whose
/// prefix contains it: for each (registration, prefix) the last feed row
/// committed by then, if it was an announcement. One query for the whole
/// batch; rows come as (position in `addrs`, entry).
pub async fn active_at(
    pool: &PgPool,
    addrs: &[std::net::IpAddr],
    at: OffsetDateTime,
) -> Result<Vec<(usize, ActiveRow)>, StoreError> {
    let nets: Vec<IpNet> = addrs.iter().map(|&a| IpNet::from(a)).collect();
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT q.i, last.*
           FROM unnest($1::inet[]) WITH ORDINALITY AS q(addr, i)
          CROSS JOIN LATERAL (
              SELECT DISTINCT ON (registration_id, prefix) {FEED_COLUMNS}
                FROM change_feed
               WHERE prefix >>= q.addr AND commit_time <= $2
               ORDER BY registration_id, prefix, serial DESC
          ) last
          WHERE last.op = 'ANNOUNCE'"
    )))
    .bind(nets)
    .bind(at)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let i: i64 = r.try_get("i")?;
            Ok((i as usize - 1, feed_row(r)?.entry))
        })
        .collect()
}

/// Where the feed stands, seen from a replica that applied `applied`.
#[derive(Debug, Clone, Copy)]
pub struct Position {
    pub session: Uuid,
    pub last_serial: i64,
    /// Age of the oldest change after `applied` (by the database's clock),
    /// if there is one.
    pub oldest_unapplied_age: Option<std::time::Duration>,
}

/// The feed's session and last serial, and how old the first change after
/// `applied` is: one cheap statement (the health probe runs it every second).
pub async fn position(pool: &PgPool, applied: i64) -> Result<Position, StoreError> {
    let (session, last_serial, age): (Uuid, i64, Option<f64>) = sqlx::query_as(
        "SELECT s.session_id, s.last_serial,
                (SELECT extract(epoch FROM clock_timestamp() - commit_time)::float8
                   FROM change_feed WHERE serial > $1 ORDER BY serial LIMIT 1)
           FROM feed_state s",
    )
    .bind(applied)
    .fetch_one(pool)
    .await?;
    Ok(Position {
        session,
        last_serial,
        oldest_unapplied_age: age.map(|s| std::time::Duration::from_secs_f64(s.max(0.0))),
    })
}
