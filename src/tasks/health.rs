//! gRPC health: SERVING while PostgreSQL answers and the lookup index is
//! loaded, NOT_SERVING otherwise and from the moment shutdown begins.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::db;
use crate::lookup::ReplicaSlot;

/// How often the probe checks that PostgreSQL still answers.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Names under which health is reported: the whole server ("") and each API.
const NAMES: &[&str] = &[
    "",
    "vpnregistry.v1.InstitutionService",
    "vpnregistry.v1.RegistrationService",
    "vpnregistry.v1.ReviewService",
    "vpnregistry.v1.IspService",
    "vpnregistry.v1.LookupService",
];

/// Probes until `stopping`, reporting each change of status.
pub async fn probe(pool: PgPool, replica: ReplicaSlot, reporter: HealthReporter, mut stopping: watch::Receiver<bool>) {
    let mut last = None;
    loop {
        let status = match db::ping(&pool).await {
            Ok(()) if replica.get().is_some() => ServingStatus::Serving,
            Ok(()) => ServingStatus::NotServing,
            Err(e) => {
                tracing::warn!(error = %e, "database unreachable");
                ServingStatus::NotServing
            }
        };
        if *stopping.borrow() {
            return;
        }
        if last != Some(status) {
            set(&reporter, status).await;
            last = Some(status);
        }
        // Probe quickly until the index is loaded, then at the normal pace.
        let pause = if replica.get().is_some() {
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

/// Reports `status` for every name.
pub async fn set(reporter: &HealthReporter, status: ServingStatus) {
    for name in NAMES {
        reporter.set_service_status(*name, status).await;
    }
}
