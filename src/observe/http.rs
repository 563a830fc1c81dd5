//! The operator's HTTP listener (`--metrics-listen`): `/metrics` for
//! Prometheus, `/livez` and `/readyz` for orchestrators, `/status` for people.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::net::TcpListener;

use super::vitals::Vitals;

/// The routes, over one server's vitals.
pub fn router(vitals: Arc<Vitals>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .with_state(vitals)
}

/// Serves until the task is dropped (it outlives the gRPC drain, so that
/// readiness reports the shutdown while calls finish).
pub async fn serve(listener: TcpListener, vitals: Arc<Vitals>) {
    if let Err(e) = axum::serve(listener, router(vitals)).await {
        tracing::error!(error = %e, "the metrics and health listener failed");
    }
}

async fn metrics(State(vitals): State<Arc<Vitals>>) -> Response {
    match vitals.render_metrics() {
        Some(text) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            text,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// 200 when every check passes, else 503 naming the ones that failed.
async fn readyz(State(vitals): State<Arc<Vitals>>) -> Response {
    let c = vitals.checks();
    if c.ready() {
        return (StatusCode::OK, "ready\n").into_response();
    }
    let failing: Vec<&str> = [
        (!c.index_loaded, "lookup index not loaded"),
        (
            c.index_loaded && !c.feed_current,
            "change feed lag above --max-feed-lag (or not yet measured)",
        ),
        (!c.database_up, "PostgreSQL did not answer the last probe"),
        (
            c.database_up && !c.database_consistent,
            "the write database is behind the feed this replica applied (see /status)",
        ),
        (c.shutting_down, "shutting down"),
    ]
    .into_iter()
    .filter_map(|(failed, why)| failed.then_some(why))
    .collect();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("not ready: {}\n", failing.join("; ")),
    )
        .into_response()
}

async fn status(State(vitals): State<Arc<Vitals>>) -> Json<super::vitals::Status> {
    Json(vitals.status())
}

/// GETs `path` from an operator listener at `addr` (HTTP/1.1, no proxy):
/// the status code and body. For `vpn-registry healthcheck` and tests.
pub async fn fetch(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    use http_body_util::{BodyExt as _, Empty};
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    let driver = tokio::spawn(connection);
    let request = axum::http::Request::get(path)
        .header(header::HOST, addr.to_string())
        .body(Empty::<axum::body::Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    driver.abort();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
