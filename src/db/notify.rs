//! Following a NOTIFY channel: what the credential cache and the lookup
//! replica both do to keep an in-memory copy of a table current.

use std::time::Duration;

use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::watch;

/// Calls `refresh` after (re)subscribing to `channel`, on every notification,
/// and every `interval` regardless, until `stopping` changes. A lost
/// notification or a dropped LISTEN connection therefore only delays a
/// refresh; the connection is re-opened on the next round.
pub async fn follow<F, Fut>(
    pool: &PgPool,
    channel: &str,
    interval: Duration,
    mut stopping: watch::Receiver<bool>,
    mut refresh: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut listener: Option<PgListener> = None;
    loop {
        if listener.is_none() {
            listener = match PgListener::connect_with(pool).await {
                Ok(mut l) => match l.listen(channel).await {
                    Ok(()) => Some(l),
                    Err(e) => {
                        tracing::warn!(error = %e, channel, "LISTEN failed; polling instead");
                        None
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, channel, "no LISTEN connection; polling instead");
                    None
                }
            };
        }
        // After (re)subscribing too, so nothing committed in between is missed.
        refresh().await;
        let woke = async {
            match listener.as_mut() {
                Some(l) => l.try_recv().await.map(|n| n.is_some()).unwrap_or(false),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            alive = woke => if !alive { listener = None },
            () = tokio::time::sleep(interval) => {}
            _ = stopping.changed() => return,
        }
    }
}
