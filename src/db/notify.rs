//! Following a NOTIFY channel: what the credential cache and the lookup
//! replica both do to keep an in-memory copy of a table current.

use std::time::Duration;

use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::watch;

/// How often a follower polling a hot standby asks whether it was promoted.
const PROMOTION_CHECK: Duration = Duration::from_secs(5);

/// How a follower learns of changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Following {
    /// LISTEN, and read every interval regardless.
    Notified,
    /// Read every interval only (notifications turned off).
    Polling,
    /// Read every interval: a hot standby accepts no LISTEN. Once it leaves
    /// recovery (promoted), the follower LISTENs.
    Standby,
}

impl Following {
    /// Notified unless notifications are turned off or `pool` reads a hot
    /// standby (where LISTEN does not exist).
    pub async fn choose(pool: &PgPool, notifications: bool) -> Self {
        if !notifications {
            return Self::Polling;
        }
        if in_recovery(pool).await == Some(true) {
            tracing::info!("reading a hot standby: following the change feed and credentials by polling");
            Self::Standby
        } else {
            Self::Notified
        }
    }
}

/// Whether `pool` reads a hot standby; `None` when it does not answer.
async fn in_recovery(pool: &PgPool) -> Option<bool> {
    sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(pool)
        .await
        .ok()
}

/// Calls `refresh` after (re)subscribing to `channel`, on every notification,
/// and every `interval` regardless, until `stopping` changes. A lost
/// notification or a dropped LISTEN connection therefore only delays a
/// refresh; the connection is re-opened on the next round. `Polling` never
/// subscribes.
pub async fn follow<F, Fut>(
    pool: &PgPool,
    channel: &str,
    following: Following,
    interval: Duration,
    mut stopping: watch::Receiver<bool>,
    mut refresh: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut listener: Option<PgListener> = None;
    let mut following = following;
    let mut promotion_checked = tokio::time::Instant::now();
    loop {
        if following == Following::Standby && promotion_checked.elapsed() >= PROMOTION_CHECK {
            promotion_checked = tokio::time::Instant::now();
            if in_recovery(pool).await == Some(false) {
                tracing::info!(
                    channel,
                    "the read database left recovery (promoted): following by LISTEN from now on"
                );
                following = Following::Notified;
            }
        }
        if listener.is_none() && following == Following::Notified {
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
