//! `/api/`: the API reference for integrators, generated from the
//! descriptors the server serves (never written by hand): a page people
//! read, the OpenAPI document of the JSON endpoint, the descriptor set and
//! the `.proto` files. Public: it describes the API, nothing in it is
//! anyone's data.

mod comments;
pub mod openapi;
mod page;

use std::sync::LazyLock;

use axum::{
    Router,
    http::{HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::get,
};

/// The OpenAPI document, rendered once.
static OPENAPI: LazyLock<String> =
    LazyLock::new(|| serde_json::to_string_pretty(&openapi::document()).expect("JSON values serialise"));
/// The page, rendered once.
static PAGE: LazyLock<String> = LazyLock::new(|| page::render().into_string());

pub fn router() -> Router {
    Router::new()
        // `/api/` (the landing layer points it here).
        .route(
            "/api/reference",
            get(|| async { reply("text/html; charset=utf-8", PAGE.as_bytes()) }),
        )
        .route(
            "/api/openapi.json",
            get(|| async { reply("application/json", OPENAPI.as_bytes()) }),
        )
        .route(
            "/api/vpnregistry.binpb",
            get(|| async { reply("application/octet-stream", crate::pb::FILE_DESCRIPTOR_SET) }),
        )
        .route("/api/proto/{*path}", get(proto_file))
}

/// One of the `.proto` files. (Read from the URI: tonic's router already
/// holds a path parameter of its own.)
async fn proto_file(uri: Uri) -> Response {
    let path = uri.path().strip_prefix("/api/proto/").unwrap_or_default();
    match crate::pb::PROTO_SOURCES.iter().find(|(p, _)| *p == path) {
        Some((_, text)) => reply("text/plain; charset=utf-8", text.as_bytes()),
        None => (StatusCode::NOT_FOUND, "no such .proto file\n").into_response(),
    }
}

fn reply(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Changes only with a new release.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}
