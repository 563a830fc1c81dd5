//! Lookups about the past, answered from the change feed's history in
//! PostgreSQL (what was announced and not withdrawn by then).

use std::net::IpAddr;

use ipnet::IpNet;
use sqlx::PgPool;
use time::OffsetDateTime;

use super::entry::{Entry, Filter, Match};
use super::error::LookupError;
use super::stored;
use crate::db::feed;
use crate::domain::refusal::Refusal;

/// Whether `at` asks about the past (answered from history) rather than now
/// or the future (answered from the index, which holds validity windows).
pub fn is_past(at: OffsetDateTime) -> bool {
    at < OffsetDateTime::now_utc()
}

/// Answers many addresses about the same past instant with one query, in
/// order: for each, the most specific entry active then that `filter` accepts.
/// Refused (FAILED_PRECONDITION) before the retained history begins: an
/// answer from a pruned history could be wrong.
pub async fn check_batch(
    pool: &PgPool,
    addrs: &[IpAddr],
    filter: &Filter,
    at: OffsetDateTime,
) -> Result<Vec<Option<Match>>, LookupError> {
    if let Some(since) = feed::history_since(pool).await?
        && at < since
    {
        return Err(LookupError::Refused(Refusal::Precondition {
            kind: "HISTORY_RETENTION",
            subject: "at".into(),
            message: format!("history before {since} is no longer kept (--history-retention); ask about a later time"),
        }));
    }
    let mut candidates: Vec<Vec<(IpNet, Entry)>> = vec![Vec::new(); addrs.len()];
    for (i, row) in feed::active_at(pool, addrs, at).await? {
        candidates[i].push(stored::entry(row));
    }
    Ok(candidates
        .into_iter()
        .map(|mut c| {
            c.sort_by_key(|(p, _)| std::cmp::Reverse(p.prefix_len()));
            c.into_iter()
                .find(|(_, e)| filter.accepts(e))
                .map(|(prefix, entry)| Match { prefix, entry })
        })
        .collect())
}
