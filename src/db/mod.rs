//! PostgreSQL storage: one file per aggregate, every SQL statement of the
//! service lives under this module.

pub mod accounts;
pub mod audit;
pub mod documents;
pub mod events;
pub mod feed;
pub mod fees;
pub mod idempotency;
pub mod institutions;
pub mod isps;
pub mod links;
pub mod notify;
pub mod outbox;
pub mod payments;
pub mod registrations;
pub mod sessions;
pub mod tokens;
pub mod webhooks;

use sqlx::{PgPool, Postgres, Transaction, postgres::PgPoolOptions};

use crate::domain::principal::Actor;
use crate::domain::refusal::Refusal;

/// Who writes, the idempotency key of the write (if the caller sent one),
/// and whether the write is kept.
#[derive(Debug, Clone)]
pub struct WriteContext {
    pub actor: Actor,
    pub key: Option<idempotency::Key>,
    /// A dry run (AIP-163's `validate_only`): every check and statement runs
    /// in the transaction, which is then rolled back, so the answer is the
    /// real call's and nothing (record, audit, outbox, idempotency key) is
    /// kept.
    pub dry_run: bool,
}

impl WriteContext {
    /// Ends the write's transaction: committed, or rolled back for a dry run.
    pub async fn end(&self, tx: Transaction<'_, Postgres>) -> Result<(), StoreError> {
        if self.dry_run {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(())
    }
}

/// Everything that can go wrong in a store call.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("request_id was already used for a different request")]
    RequestIdReused,
    #[error("{0}")]
    AlreadyExists(String),
    /// The database's own constraints refused the write: the rules of
    /// `domain`, enforced a second time where no race can slip past them.
    #[error(transparent)]
    Refused(Refusal),
    /// PostgreSQL could not be reached, or is shutting down, restarting,
    /// overloaded or cancelled the statement: worth retrying.
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    #[error("database: {0}")]
    Database(sqlx::Error),
    #[error("stored data unreadable: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_transient(&e) {
            Self::Unavailable(e)
        } else {
            Self::Database(e)
        }
    }
}

/// Whether `e` says the database is (for now) out of reach rather than that
/// the statement is wrong: connection failures, pool exhaustion, and the
/// SQLSTATEs of connection exceptions (08), operator intervention such as a
/// shutdown or a cancelled statement (57), and insufficient resources (53).
fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57") || c.starts_with("53")),
        _ => false,
    }
}

/// The name of the constraint a database error violated, if any.
pub(crate) fn violated_constraint(e: &sqlx::Error) -> Option<&str> {
    e.as_database_error().and_then(|d| d.constraint())
}

/// Connects a pool sized for this service (a small pool: on few cores more
/// connections only add contention, see shared/bench/postgres). With a
/// `statement_timeout`, every statement on these connections is cancelled
/// past it. TLS follows the URL (`sslmode=verify-full&sslrootcert=...`).
pub async fn connect(
    url: &str,
    max_connections: u32,
    statement_timeout: Option<std::time::Duration>,
) -> Result<PgPool, sqlx::Error> {
    use std::str::FromStr;
    let mut options = sqlx::postgres::PgConnectOptions::from_str(url)?;
    if let Some(timeout) = statement_timeout {
        options = options.options([("statement_timeout", timeout.as_millis().to_string())]);
    }
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect_with(options)
        .await
}

/// Tables the runtime role writes: the registry's own records and its
/// people. It appends to the audit trail, records a credential's last use and
/// manages institutions' and ISPs' API keys; everything else (the operator's
/// credentials, the lifecycle table, the active set, the change feed and
/// its state, the history) is written by operators or by the triggers that
/// follow a registration's state, which run as the schema owner.
const RUNTIME_WRITES: &[&str] = &[
    "GRANT INSERT, UPDATE ON institutions, registrations, registration_revisions TO {role}",
    "GRANT INSERT ON isps, idempotency_keys, audit_events, events, registration_batches TO {role}",
    "GRANT INSERT, UPDATE ON notifications, webhooks TO {role}",
    // People and their sessions, links and failed sign-ins.
    "GRANT INSERT, UPDATE, DELETE ON users, recovery_codes, console_sessions, account_links, sign_in_failures TO {role}",
    // Institutions' and ISPs' keys only (row-level security), and every
    // credential's last use through a function.
    "GRANT INSERT, UPDATE (revoke_time, expire_time) ON api_tokens TO {role}",
    "GRANT EXECUTE ON FUNCTION api_tokens_record_use(uuid[], timestamptz[]) TO {role}",
    // Documents: uploaded, decided on, deleted (content destroyed) by their
    // owners before a decision; re-wrapped keys are the operator's.
    "GRANT INSERT, UPDATE ON documents TO {role}",
    "GRANT INSERT, DELETE ON document_segments TO {role}",
    "GRANT EXECUTE ON FUNCTION prune_history(interval, interval) TO {role}",
    // Fees: challans assessed and settled, confirmations recorded.
    "GRANT INSERT, UPDATE ON challans TO {role}",
    "GRANT INSERT ON payment_attempts TO {role}",
];

/// Grants `role` (the role `serve` runs as) exactly what it needs: reading
/// every table and [`RUNTIME_WRITES`], after revoking whatever it held, so
/// that running `migrate` again also takes back what an older version
/// granted. Fails when the role does not exist: serving as a role that was
/// never granted anything would fail later and less clearly.
pub async fn grant_runtime(pool: &PgPool, role: &str) -> Result<(), GrantError> {
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)")
        .bind(role)
        .fetch_one(pool)
        .await?;
    if !exists {
        return Err(GrantError::NoSuchRole(role.to_owned()));
    }
    let quoted = quote_ident(role);
    let mut statements = vec![
        format!("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {quoted}"),
        format!("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {quoted}"),
        format!("REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM {quoted}"),
        format!("GRANT USAGE ON SCHEMA public TO {quoted}"),
        format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {quoted}"),
        format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}"),
    ];
    statements.extend(RUNTIME_WRITES.iter().map(|s| s.replace("{role}", &quoted)));
    let mut tx = pool.begin().await?;
    for statement in statements {
        sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Why `migrate` could not grant the runtime role.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error(
        "the runtime role {0:?} does not exist: create it (CREATE ROLE ... NOLOGIN, with login roles as its members) \
         or name another with --runtime-role"
    )]
    NoSuchRole(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A PostgreSQL identifier, quoted.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The migrations this binary knows that the database has not applied.
pub async fn pending_migrations(pool: &PgPool) -> Result<Vec<i64>, sqlx::Error> {
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
        .fetch_all(pool)
        .await
        .or_else(|e| match e.as_database_error().and_then(|d| d.code()).as_deref() {
            // No migrations table: nothing applied.
            Some("42P01") => Ok(Vec::new()),
            _ => Err(e),
        })?;
    Ok(MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version))
        .map(|m| m.version)
        .collect())
}

/// Creates the database named in `url` when it does not exist yet.
pub async fn ensure_database(url: &str) -> Result<(), sqlx::Error> {
    use sqlx::migrate::MigrateDatabase;
    if !sqlx::Postgres::database_exists(url).await? {
        sqlx::Postgres::create_database(url).await?;
    }
    Ok(())
}

/// The migrations embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Decodes a stored enum name, or reports the row as corrupt.
pub(crate) fn decode<T>(value: &str, parse: impl Fn(&str) -> Option<T>, what: &str) -> Result<T, StoreError> {
    parse(value).ok_or_else(|| StoreError::Corrupt(format!("unknown {what} {value:?}")))
}

/// Parses a stored, already-normalised value with its domain type.
pub(crate) fn reparse<T: std::str::FromStr>(value: &str, what: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("{what} {value:?}: {e}")))
}

/// Whether PostgreSQL answers (the health probe).
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(drop)
}
