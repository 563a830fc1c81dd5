//! Telling people what happened. Every notifiable change writes its event
//! and one outbox row per recipient in its own transaction (`db::events`);
//! delivery workers, one in every `serve` process that writes to PostgreSQL,
//! drain the outbox (`db::outbox`: SKIP LOCKED claims under a lease, so a
//! killed process loses nothing and two never deliver the same row at once),
//! retrying with backoff until delivered or dead-lettered. Reminders are
//! recorded by a periodic pass that any number of servers may run.
//!
//! Why a table of our own rather than a job-queue crate: the outbox rows
//! are written by the same statement as the audit entry (one round trip on
//! the write path), deliveries must keep their order per recipient and
//! registration, and administrators and institutions read the rows back
//! (attempts, codes, dead letters) through our API: a queue crate's own
//! schema would give us none of that and another thing to migrate.

pub mod backoff;
pub mod mail;
pub mod messages;
pub mod webhook;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::{sync::watch, task::JoinSet};

use crate::db::{
    events,
    outbox::{self, Claimed, Outcome},
    webhooks,
};
use mail::{Mailer, Sent};

/// Notifications claimed per round (delivered concurrently, recorded in
/// one statement).
const BATCH: i64 = 64;
/// How long a claim holds a notification: twice every delivery's time
/// limit (15 s), so a row is only claimed again once its delivery surely
/// ended (or its process died: then another takes it over after this).
const LEASE: Duration = Duration::from_secs(30);
/// How often an idle worker looks for work: the most a notification waits
/// for its first attempt.
const POLL: Duration = Duration::from_secs(1);
/// The pause after a round that was not full (a full one claims again at
/// once): short, as the next event of a registration just delivered may be
/// waiting its turn, yet long enough that submissions arriving one by one
/// are delivered in rounds, not one statement pair each.
const AFTER_PARTIAL_ROUND: Duration = Duration::from_millis(100);

/// How notifications are delivered here.
#[derive(Clone)]
pub struct Delivery {
    /// `None`: e-mail is kept (delivered to nothing, visible to
    /// administrators).
    pub mailer: Option<Mailer>,
    /// Links into the console, where set.
    pub public_url: Option<String>,
    pub webhooks: webhook::Sender,
}

/// The channels, in the order [`Stats`] counts them.
const CHANNELS: [&str; 2] = ["email", "webhook"];
/// The outcomes, in the order [`Stats`] counts them.
pub const OUTCOMES: [&str; 4] = ["delivered", "kept", "retried", "dead"];

/// Deliveries by channel and outcome since start, for metrics.
#[derive(Default)]
pub struct Stats {
    counts: [[AtomicU64; 4]; 2],
}

impl Stats {
    fn count(&self, channel: &str, outcome: &Outcome) {
        let c = CHANNELS.iter().position(|c| *c == channel).unwrap_or(0);
        let o = match outcome {
            Outcome::Delivered { .. } => 0,
            Outcome::Kept => 1,
            Outcome::Failed { retry_in: Some(_), .. } => 2,
            Outcome::Failed { retry_in: None, .. } => 3,
        };
        self.counts[c][o].fetch_add(1, Relaxed);
    }

    /// (channel, outcome, count) for every pair.
    pub fn totals(&self) -> impl Iterator<Item = (&'static str, &'static str, u64)> + '_ {
        CHANNELS.iter().enumerate().flat_map(move |(c, channel)| {
            OUTCOMES
                .iter()
                .enumerate()
                .map(move |(o, outcome)| (*channel, *outcome, self.counts[c][o].load(Relaxed)))
        })
    }
}

/// Drains the outbox until `stopping`.
pub async fn deliver(pool: PgPool, delivery: Delivery, stats: Arc<Stats>, mut stopping: watch::Receiver<bool>) {
    let delivery = Arc::new(delivery);
    loop {
        match outbox::claim(&pool, BATCH, LEASE).await {
            Ok(claimed) if !claimed.is_empty() => {
                let full = claimed.len() as i64 == BATCH;
                let mut round = JoinSet::new();
                for n in claimed {
                    let (pool, delivery, stats) = (pool.clone(), delivery.clone(), stats.clone());
                    round.spawn(async move {
                        let outcome = delivery.attempt(&pool, &n).await;
                        stats.count(&n.channel, &outcome);
                        if let Outcome::Failed { error, retry_in, .. } = &outcome {
                            tracing::warn!(notification = n.id, channel = n.channel, attempts = n.attempts, error, retry_in = ?retry_in, "delivery failed");
                        }
                        (n.id, outcome)
                    });
                }
                let outcomes = round.join_all().await;
                if let Err(e) = outbox::finish(&pool, &outcomes).await {
                    // The leases run out and the rows are tried again.
                    tracing::warn!(error = %e, notifications = outcomes.len(), "could not record deliveries");
                }
                if full {
                    continue;
                }
                if pause(AFTER_PARTIAL_ROUND, &mut stopping).await {
                    return;
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not claim notifications"),
        }
        if pause(POLL, &mut stopping).await {
            return;
        }
    }
}

/// Sleeps `how_long`; whether the server is stopping meanwhile.
async fn pause(how_long: Duration, stopping: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(how_long) => false,
        _ = stopping.changed() => true,
    }
}

impl Delivery {
    /// One attempt at one notification.
    async fn attempt(&self, pool: &PgPool, n: &Claimed) -> Outcome {
        match n.channel.as_str() {
            "email" => self.email(n).await,
            "webhook" => self.webhook(pool, n).await,
            other => Outcome::Failed {
                code: None,
                error: format!("no delivery for channel {other}"),
                retry_in: None,
            },
        }
    }

    async fn email(&self, n: &Claimed) -> Outcome {
        let Some(mailer) = &self.mailer else {
            return Outcome::Kept;
        };
        let composed = match &n.message {
            Some(account) => mail::compose_account(&account.0),
            None => mail::compose(n, self.public_url.as_deref()),
        };
        let Some(message) = composed else {
            return failed(n, None, format!("unknown event type {}", n.event_type), None, true);
        };
        match mailer.send(&n.recipient, n.event_id, &message).await {
            Sent::Ok(code) => Outcome::Delivered {
                code: Some(i32::from(code)),
            },
            Sent::Transient(code, error) => failed(n, code, error, None, false),
            Sent::Permanent(code, error) => failed(n, code, error, None, true),
        }
    }
}

impl Delivery {
    /// A thin, signed POST: 2xx delivered, 410 Gone stops the endpoint,
    /// anything else is retried (after `Retry-After` where given).
    async fn webhook(&self, pool: &PgPool, n: &Claimed) -> Outcome {
        let (Some(url), Some(secret)) = (&n.url, &n.secret) else {
            return failed(n, None, "the endpoint was deleted or disabled".into(), None, true);
        };
        let mut secrets = vec![secret.as_str()];
        secrets.extend(n.previous_secret.as_deref());
        let body = payload(n);
        match self.webhooks.post(url, &secrets, &n.event_id.to_string(), body).await {
            webhook::Answer::Status { code, .. } if (200..300).contains(&code) => Outcome::Delivered {
                code: Some(i32::from(code)),
            },
            webhook::Answer::Status { code: 410, .. } => {
                if let Ok(id) = uuid::Uuid::parse_str(&n.recipient)
                    && let Err(e) = webhooks::disable(pool, id, "the endpoint answered 410 Gone").await
                {
                    tracing::warn!(webhook = %id, error = %e, "could not disable a webhook");
                }
                failed(n, Some(410), "410 Gone: the endpoint is disabled".into(), None, true)
            }
            webhook::Answer::Status { code, retry_after } => failed(
                n,
                Some(code),
                format!("the endpoint answered {code}"),
                retry_after,
                false,
            ),
            webhook::Answer::Unreachable(why) => failed(n, None, why, None, false),
        }
    }
}

/// The thin payload (Standard Webhooks: type, timestamp, data): what
/// happened to which registration, never personal data; the receiver reads
/// the details through the API.
fn payload(n: &Claimed) -> bytes::Bytes {
    let occurred = n
        .occur_time
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let body = serde_json::json!({
        "type": n.event_type,
        "timestamp": occurred,
        "data": {
            "event_id": n.event_id,
            "registration_id": n.registration_id,
            "reference": n.reference,
            "state": n.state,
            "reason_code": n.reason_code,
            "days_left": n.days_left,
        },
    });
    bytes::Bytes::from(body.to_string())
}

/// A failed attempt: retried by [`backoff`] unless `permanent` or too old.
fn failed(n: &Claimed, code: Option<u16>, error: String, retry_after: Option<Duration>, permanent: bool) -> Outcome {
    let age = (OffsetDateTime::now_utc() - n.create_time).unsigned_abs();
    let attempts = u32::try_from(n.attempts).unwrap_or(u32::MAX);
    Outcome::Failed {
        code: code.map(i32::from),
        error,
        retry_in: (!permanent)
            .then(|| backoff::next(attempts, age, retry_after))
            .flatten(),
    }
}

/// Records due reminders every `every` until `stopping`.
pub async fn remind(pool: PgPool, every: Duration, mut stopping: watch::Receiver<bool>) {
    loop {
        match events::remind(&pool).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(reminders = n, "expiry reminders recorded"),
            Err(e) => tracing::warn!(error = %e, "reminder pass failed; retrying next interval"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stopping.changed() => return,
        }
    }
}
