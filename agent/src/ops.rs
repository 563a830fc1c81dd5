//! `--metrics-listen`: what the operator's monitoring asks. `/metrics` for
//! Prometheus, `/readyz` (200 only while the agent can vouch for what the
//! gateway enforces: a set held, an upstream in contact within
//! `--max-stale`, the kernel's sets in step; 503 and the reason
//! otherwise), `/livez` (200 while the process and its kernel thread go
//! round).

use std::sync::Arc;

use hyper::StatusCode;

use crate::follow::{Shared, read};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::nft::enforce::now;
use crate::serve::{accept, plain};

/// How long the kernel's thread may go without a round before `/livez`
/// fails: longer than reading back a set of a million elements.
pub const LIVENESS_LIMIT: i64 = 60;

/// Answers until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, shared: Shared, health: Arc<Health>, metrics: Arc<Metrics>) {
    accept(listener, move |req| {
        let now = now();
        match req.uri().path() {
            "/metrics" => {
                let (serial, entries) = {
                    let follower = read(&shared);
                    (follower.held.position.serial, follower.held.len())
                };
                plain(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    metrics.render(&health, serial, entries),
                )
            }
            "/readyz" => match health.readiness(now) {
                Ok(()) => plain(StatusCode::OK, "text/plain; charset=utf-8", "ready\n".into()),
                Err(why) => plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=utf-8",
                    format!("not ready: {why}\n"),
                ),
            },
            "/livez" if health.alive(now, LIVENESS_LIMIT) => {
                plain(StatusCode::OK, "text/plain; charset=utf-8", "alive\n".into())
            }
            "/livez" => plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                "the kernel's thread has not gone round for a minute\n".into(),
            ),
            _ => plain(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "not found\n".into()),
        }
    })
    .await;
}
