//! The console's one script, compiled into the binary (no front-end build).

use axum::{
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};

/// Checks forms as the user types (see the file's header).
const FORM_JS: &str = include_str!("assets/form.js");

pub(super) async fn form_js() -> Response {
    let mut response = FORM_JS.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}
