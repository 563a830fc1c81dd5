//! The health probe: every second it asks PostgreSQL (the primary) where
//! the change feed stands, which tells both whether the database answers and
//! how far behind the lookup index is, and reports gRPC health per service:
//! the registry services follow the database, `LookupService` follows the
//! index (loaded, and current within `--max-feed-lag`), and the whole server
//! ("") is SERVING only when both are. Everything turns NOT_SERVING from the
//! moment shutdown begins, except `liveness`, which only says the process runs.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use sqlx::PgPool;
use tokio::sync::watch;
use tonic_health::{ServingStatus, server::HealthReporter};
use uuid::Uuid;

use super::vitals::{Probed, Vitals};
use crate::db::{feed, outbox, registrations};
use crate::fence::Fence;

/// How often the probe asks PostgreSQL; an answer must come within it.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How often registrations are counted by state (a scan, so not per scrape).
const COUNT_INTERVAL: Duration = Duration::from_secs(30);
/// How often the notification outbox is measured.
const OUTBOX_INTERVAL: Duration = Duration::from_secs(5);

/// The services that need the database.
const REGISTRY_SERVICES: &[&str] = &[
    "vpnregistry.v1.InstitutionService",
    "vpnregistry.v1.RegistrationService",
    "vpnregistry.v1.ReviewService",
    "vpnregistry.v1.IspService",
];
const LOOKUP_SERVICE: &str = "vpnregistry.v1.LookupService";
/// SERVING while the process runs, whatever the database or the feed do:
/// for liveness probes, which must not restart a replica that still
/// answers lookups from memory.
pub const LIVENESS: &str = "liveness";

/// A session mismatch between the write database and the replica lasting
/// this long is a split, not a reload under way (`feed new-session`).
const SESSION_MISMATCH_GRACE: Duration = Duration::from_secs(5);

/// What the probe asks and what it keeps current.
pub struct Probe {
    /// The write database.
    pub primary: PgPool,
    /// Where the replica reads (the primary, or a standby).
    pub reads: PgPool,
    /// Closed while the write database cannot be trusted with writes.
    pub fence: Fence,
    /// Whether this process serves the registry services (not a fan-out replica).
    pub serves_registry: bool,
}

/// Probes until `stopping`, reporting each change of status.
pub async fn probe(probe: Probe, vitals: Arc<Vitals>, reporter: HealthReporter, mut stopping: watch::Receiver<bool>) {
    let Probe {
        primary,
        reads,
        fence,
        serves_registry,
    } = probe;
    let mut reported = None;
    let mut mismatch_since: Option<Instant> = None;
    let mut counted: Option<Instant> = None;
    let mut outbox_measured: Option<Instant> = None;
    loop {
        let previous = vitals.probed();
        let probed = probe_feed(&primary, &vitals, &previous, &mut mismatch_since).await;
        if probed.database_up && !previous.database_up && reported.is_some() {
            tracing::info!("database reachable again");
        }
        if fence.set(probed.split.clone()) {
            match &probed.split {
                Some(why) => {
                    tracing::error!(%why, "writes and reads of own writes refused until the write database is fenced or caught up")
                }
                None => tracing::info!("the write database agrees with the feed again: writes accepted"),
            }
        }
        vitals.set_probed(probed);
        if count_due(counted) {
            match registrations::count_by_state(&reads).await {
                Ok(counts) => {
                    vitals.set_registrations(counts);
                    counted = Some(Instant::now());
                }
                Err(e) => tracing::debug!(error = %e, "counting registrations failed"),
            }
        }
        if *stopping.borrow() {
            return;
        }
        let checks = vitals.checks();
        let now = (checks.ready(), checks.registry_ready(), checks.lookups_ready());
        if reported != Some(now) {
            report(&reporter, now, serves_registry).await;
            reported = Some(now);
        }
        // After reporting, and bounded: a database that does not answer
        // must not hold back what health says.
        if serves_registry && outbox_measured.is_none_or(|at| at.elapsed() >= OUTBOX_INTERVAL) {
            outbox_measured = Some(Instant::now());
            match tokio::time::timeout(PROBE_INTERVAL, outbox::depth(&primary)).await {
                Ok(Ok(depth)) => vitals.set_outbox(depth),
                Ok(Err(e)) => tracing::debug!(error = %e, "measuring the outbox failed"),
                Err(_) => tracing::debug!("measuring the outbox timed out"),
            }
        }
        // Quickly until the index is loaded, then at the normal pace.
        let pause = if checks.index_loaded {
            PROBE_INTERVAL
        } else {
            Duration::from_millis(50)
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stopping.changed() => return,
        }
    }
}

/// Where the feed stands and how far behind the index is, from one
/// statement on the primary; when it does not answer in time, what was
/// known before with the database marked down. `mismatch_since` is when the
/// index's session was first seen to differ from the feed's.
async fn probe_feed(
    primary: &PgPool,
    vitals: &Vitals,
    previous: &Probed,
    mismatch_since: &mut Option<Instant>,
) -> Probed {
    let applied = vitals.lookups().loaded().map(|r| (r.session_id(), r.serial()));
    let position = tokio::time::timeout(PROBE_INTERVAL, feed::position(primary, applied.map_or(0, |a| a.1))).await;
    match position {
        Ok(Ok(p)) => {
            let lag = applied.map(|(session, _)| {
                if session == p.session {
                    *mismatch_since = None;
                    p.oldest_unapplied_age.unwrap_or_default()
                } else {
                    // A new session (or a restore): behind until reloaded.
                    mismatch_since.get_or_insert_with(Instant::now).elapsed()
                }
            });
            Probed {
                database_up: true,
                feed: Some((p.session, p.last_serial)),
                lag,
                split: split(applied, &p, lag),
            }
        }
        failed => {
            if previous.database_up {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no answer within the probe interval".to_owned(),
                };
                tracing::warn!(%error, "database unreachable: registry services NOT_SERVING, lookups answer from memory");
            }
            // Nothing commits while the database is away: the index
            // stays as current as it was.
            Probed {
                database_up: false,
                ..previous.clone()
            }
        }
    }
}

/// Why the write database cannot be trusted, if it cannot: its feed is
/// behind what the replica applied, or it has followed another session for
/// longer than a reload takes.
fn split(applied: Option<(Uuid, i64)>, p: &feed::Position, lag: Option<Duration>) -> Option<String> {
    let (session, serial) = applied?;
    if session == p.session && serial > p.last_serial {
        return Some(format!(
            "the write database's feed is at serial {}, behind the {serial} this replica applied \
             (an old primary back after a failover? fence it and point --database-url at the new one)",
            p.last_serial
        ));
    }
    if session != p.session && lag.is_some_and(|l| l > SESSION_MISMATCH_GRACE) {
        return Some(format!(
            "the write database follows feed session {}, this replica {session} (another database's history?)",
            p.session
        ));
    }
    None
}

fn count_due(counted: Option<Instant>) -> bool {
    counted.is_none_or(|at| at.elapsed() >= COUNT_INTERVAL)
}

fn serving(up: bool) -> ServingStatus {
    if up {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

/// Reports each service's status (a fan-out replica, which does not serve
/// the registry services, reports only the lookup service and the whole).
async fn report(reporter: &HealthReporter, (all, registry, lookups): (bool, bool, bool), serves_registry: bool) {
    reporter.set_service_status(LIVENESS, ServingStatus::Serving).await;
    if serves_registry {
        reporter.set_service_status("", serving(all)).await;
        for name in REGISTRY_SERVICES {
            reporter.set_service_status(*name, serving(registry)).await;
        }
    } else {
        reporter.set_service_status("", serving(lookups)).await;
    }
    reporter.set_service_status(LOOKUP_SERVICE, serving(lookups)).await;
}

/// Reports `status` for every name.
pub async fn set(reporter: &HealthReporter, status: ServingStatus, serves_registry: bool) {
    let up = status == ServingStatus::Serving;
    report(reporter, (up, up, up), serves_registry).await;
}
