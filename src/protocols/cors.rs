//! Which web pages may call the API from a browser (gRPC-Web and JSON): the
//! origins the operator names (`--cors-origin`), none by default. Preflights
//! are answered before authentication (a browser sends them without the
//! token); the answer names the headers the protocols use, and lets the
//! page read the statuses, details and retry hints.

use std::time::Duration;

use tonic::codegen::http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Request headers a page may send.
const ALLOWED: [&str; 9] = [
    "authorization",
    "content-type",
    "content-encoding",
    "connect-protocol-version",
    "connect-timeout-ms",
    "grpc-timeout",
    "x-grpc-web",
    "x-user-agent",
    "x-request-id",
];
/// Response headers a page may read.
const EXPOSED: [&str; 8] = [
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "retry-after",
    "deprecation",
    "sunset",
    "link",
    "x-request-id",
];

/// The layer for `origins` (parsed by the flags), `None` without any.
pub fn layer(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    if origins.is_empty() {
        return None;
    }
    let names = |list: &[&'static str]| list.iter().map(|h| HeaderName::from_static(h)).collect::<Vec<_>>();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::POST])
            .allow_headers(names(&ALLOWED))
            .expose_headers(names(&EXPOSED))
            .max_age(Duration::from_secs(3600)),
    )
}
