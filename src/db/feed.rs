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
    /// When the entry was last announced (the feed's commit time; in the
    /// active set, the registration's last update).
    pub changed: OffsetDateTime,
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
        changed: r.try_get("changed")?,
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
pub async fn read_active_set(pool: &PgPool, mut each: impl FnMut(ActiveRow)) -> Result<(Uuid, i64), StoreError> {
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
                    r.peer_prefixes, r.valid_from, r.valid_until, r.isp, r.update_time AS changed
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
    institution_category AS category, peer_prefixes, valid_from, valid_until, isp, commit_time AS changed";

/// What the feed holds after a serial, read by one statement so it agrees.
#[derive(Debug)]
pub struct Since {
    pub session: Uuid,
    pub last_serial: i64,
    /// Rows up to this serial were pruned: a reader behind it has a gap.
    pub pruned_through: i64,
    /// Up to the limit asked for, in serial order.
    pub rows: Vec<FeedRow>,
}

/// The feed's current session, its last serial, what was pruned, and up to
/// `limit` of its rows after `serial`.
pub async fn since(pool: &PgPool, serial: i64, limit: i64) -> Result<Since, StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT s.session_id, s.last_serial, s.feed_pruned_through, f.*
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
    let Some(first) = rows.first() else {
        return Err(StoreError::Corrupt("feed_state has no row".into()));
    };
    let mut since = Since {
        session: first.try_get("session_id")?,
        last_serial: first.try_get("last_serial")?,
        pruned_through: first.try_get("feed_pruned_through")?,
        rows: Vec::with_capacity(rows.len()),
    };
    for r in &rows {
        if r.try_get::<Option<i64>, _>("serial")?.is_some() {
            since.rows.push(feed_row(r)?);
        }
    }
    Ok(since)
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

/// For each of `addrs`, the entries active at `at` whose prefix contains
/// it, from the history of active intervals. One query for the whole batch;
/// rows come as (position in `addrs`, entry).
pub async fn active_at(
    pool: &PgPool,
    addrs: &[std::net::IpAddr],
    at: OffsetDateTime,
) -> Result<Vec<(usize, ActiveRow)>, StoreError> {
    let nets: Vec<IpNet> = addrs.iter().map(|&a| IpNet::from(a)).collect();
    let rows = sqlx::query(
        "SELECT q.i, h.prefix, h.registration_id, h.institution_id, h.reference, h.kind,
                h.institution_category AS category, h.peer_prefixes, h.valid_from, h.valid_until, h.isp,
                h.active_from AS changed
           FROM unnest($1::inet[]) WITH ORDINALITY AS q(addr, i)
           JOIN active_history h
             ON h.prefix >>= q.addr AND h.active_from <= $2 AND (h.active_until IS NULL OR h.active_until > $2)",
    )
    .bind(nets)
    .bind(at)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let i: i64 = r.try_get("i")?;
            Ok((i as usize - 1, active_row(r)?))
        })
        .collect()
}

/// Since when the history of active intervals is complete (earlier
/// intervals may have been pruned); `None`: nothing was ever pruned.
pub async fn history_since(pool: &PgPool) -> Result<Option<OffsetDateTime>, StoreError> {
    let since: Option<OffsetDateTime> =
        sqlx::query_scalar("SELECT history_since FROM feed_state WHERE history_since > '-infinity'")
            .fetch_optional(pool)
            .await?;
    Ok(since)
}

/// Prunes feed rows older than `feed_keep` and history intervals that ended
/// more than `history_keep` ago (see the bounded history migration); returns
/// how many of each went. Returns (0, 0) while another server is pruning.
pub async fn prune(
    pool: &PgPool,
    feed_keep: std::time::Duration,
    history_keep: std::time::Duration,
) -> Result<(i64, i64), StoreError> {
    let interval = |d: std::time::Duration| format!("{} milliseconds", d.as_millis());
    let pruned: (i64, i64) =
        sqlx::query_as("SELECT feed_rows, history_rows FROM prune_history($1::interval, $2::interval)")
            .bind(interval(feed_keep))
            .bind(interval(history_keep))
            .fetch_one(pool)
            .await?;
    Ok(pruned)
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

/// The feed's last serial.
pub async fn last_serial(pool: &PgPool) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT last_serial FROM feed_state")
        .fetch_one(pool)
        .await?)
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
