//! PostgreSQL storage: one file per aggregate, every SQL statement of the
//! service lives under this module.

pub mod audit;
pub mod feed;
pub mod idempotency;
pub mod institutions;
pub mod isps;
pub mod notify;
pub mod registrations;
pub mod tokens;

use sqlx::{PgPool, postgres::PgPoolOptions};

use crate::domain::refusal::Refusal;

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
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored data unreadable: {0}")]
    Corrupt(String),
}

/// The name of the constraint a database error violated, if any.
pub(crate) fn violated_constraint(e: &sqlx::Error) -> Option<&str> {
    e.as_database_error().and_then(|d| d.constraint())
}

/// Connects a pool sized for this service (a small pool: on few cores more
/// connections only add contention, see shared/bench/postgres).
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect(url)
        .await
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
