//! The pruning task: change-feed rows older than --feed-retention and history
//! intervals that ended before --history-retention go, so neither grows
//! forever; so do ended console sessions, dead e-mailed links and old failed
//! sign-ins, and documents whose registration ended longer ago than
//! --document-retention (content and data key; the record and its audit
//! trail stay). Several servers may run it against one database: the database
//! lets one prune at a time and the others skip.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;

use crate::db::{StoreError, accounts, documents, feed, links, sessions};
use crate::domain::account::FAILURES_FORGOTTEN_AFTER;

/// How long the feed and the history are kept, and how often to prune.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub feed: Duration,
    pub history: Duration,
    /// Documents of registrations that ended longer ago are destroyed.
    pub documents: Duration,
    pub every: Duration,
}

/// Documents destroyed per transaction of the retention pass.
const DESTROY_BATCH: i64 = 100;

/// Prunes every `retention.every` until `stopping`.
pub async fn run(pool: PgPool, retention: Retention, mut stopping: watch::Receiver<bool>) {
    loop {
        match feed::prune(&pool, retention.feed, retention.history).await {
            Ok((0, 0)) => {}
            Ok((feed_rows, history_rows)) => tracing::info!(feed_rows, history_rows, "feed and history pruned"),
            Err(e) => tracing::warn!(error = %e, "pruning failed; retrying next interval"),
        }
        match destroy_documents(&pool, retention.documents).await {
            Ok(0) => {}
            Ok(documents) => tracing::info!(documents, "documents past retention destroyed"),
            Err(e) => tracing::warn!(error = %e, "destroying documents past retention failed; retrying next interval"),
        }
        match prune_accounts(&pool).await {
            Ok(0) => {}
            Ok(rows) => tracing::info!(rows, "ended sessions, dead links and old failed sign-ins pruned"),
            Err(e) => tracing::warn!(error = %e, "pruning accounts failed; retrying next interval"),
        }
        tokio::select! {
            () = tokio::time::sleep(retention.every) => {}
            _ = stopping.changed() => return,
        }
    }
}

/// Destroys every document past retention, a batch per transaction.
pub async fn destroy_documents(pool: &PgPool, keep: Duration) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let destroyed = documents::destroy_ended(pool, keep, DESTROY_BATCH).await?;
        total += destroyed;
        if destroyed < DESTROY_BATCH as usize {
            return Ok(total);
        }
    }
}

/// Ended console sessions, dead links, old failed sign-ins: the rows removed.
pub async fn prune_accounts(pool: &PgPool) -> Result<u64, StoreError> {
    let sessions = sessions::prune(pool).await?;
    let links = links::prune(pool).await?;
    let failures = accounts::prune_failures(pool, FAILURES_FORGOTTEN_AFTER).await?;
    Ok(sessions + links + failures)
}
