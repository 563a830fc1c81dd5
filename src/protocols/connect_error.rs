//! A gRPC status as the Connect protocol's error: the HTTP status Connect
//! maps its code to, a JSON object with the code's name, the message and
//! every detail (base64 protobuf, as Connect clients decode it, plus a
//! `debug` JSON rendering for people reading it with curl), and
//! `Retry-After` when the status carries `google.rpc.RetryInfo`.

use base64::Engine as _;
use prost::Message as _;
use serde_json::{Map, Value, json};
use tonic::{Code, Status, body::Body, codegen::http};
use tonic_types::StatusExt as _;

use super::schema;

/// The Connect name of a code (gRPC's, in snake case; `canceled` as Connect spells it).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// The HTTP status the Connect protocol gives a code.
pub fn http_status(code: Code) -> http::StatusCode {
    use http::StatusCode as S;
    match code {
        Code::Ok => S::OK,
        Code::Cancelled => S::from_u16(499).expect("499 is a valid status"),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => S::BAD_REQUEST,
        Code::DeadlineExceeded => S::GATEWAY_TIMEOUT,
        Code::NotFound => S::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => S::CONFLICT,
        Code::PermissionDenied => S::FORBIDDEN,
        Code::ResourceExhausted => S::TOO_MANY_REQUESTS,
        Code::Unimplemented => S::NOT_IMPLEMENTED,
        Code::Unavailable => S::SERVICE_UNAVAILABLE,
        Code::Unauthenticated => S::UNAUTHORIZED,
        Code::Unknown | Code::Internal | Code::DataLoss => S::INTERNAL_SERVER_ERROR,
    }
}

/// The error object (`{"code", "message", "details"}`).
pub fn error_json(status: &Status) -> Value {
    let mut error = Map::new();
    error.insert("code".into(), code_name(status.code()).into());
    if !status.message().is_empty() {
        error.insert("message".into(), status.message().into());
    }
    let details = details(status);
    if !details.is_empty() {
        error.insert("details".into(), Value::Array(details));
    }
    Value::Object(error)
}

/// The status's details, each as Connect carries one.
fn details(status: &Status) -> Vec<Value> {
    let Ok(rich) = tonic_types::pb::Status::decode(status.details()) else {
        return Vec::new();
    };
    rich.details
        .iter()
        .map(|any| {
            let type_name = any.type_url.rsplit('/').next().unwrap_or(&any.type_url);
            let mut detail = json!({
                "type": type_name,
                "value": base64::engine::general_purpose::STANDARD_NO_PAD.encode(&any.value),
            });
            if let Some(debug) = schema::detail_as_json(type_name, &any.value) {
                detail["debug"] = debug;
            }
            detail
        })
        .collect()
}

/// The whole error response; `headers` are the call's metadata (already
/// named as Connect names them).
pub fn error_response(status: &Status, headers: http::HeaderMap) -> http::Response<Body> {
    let body = serde_json::to_vec(&error_json(status)).expect("JSON values serialise");
    let mut response = http::Response::new(Body::new(http_body_util::Full::new(bytes::Bytes::from(body))));
    *response.status_mut() = http_status(status.code());
    *response.headers_mut() = headers;
    let h = response.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Some(wait) = status.get_details_retry_info().and_then(|r| r.retry_delay) {
        // Whole seconds, rounded up: retrying early is refused again.
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        h.insert(http::header::RETRY_AFTER, seconds.max(1).into());
    }
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic_types::ErrorDetails;

    use super::*;

    #[test]
    fn codes_map_as_connect_maps_them() {
        assert_eq!(http_status(Code::InvalidArgument), 400);
        assert_eq!(http_status(Code::FailedPrecondition), 400);
        assert_eq!(http_status(Code::Aborted), 409);
        assert_eq!(http_status(Code::Unauthenticated), 401);
        assert_eq!(http_status(Code::ResourceExhausted), 429);
        assert_eq!(http_status(Code::Unimplemented), 501);
        assert_eq!(http_status(Code::Cancelled), 499);
        assert_eq!(code_name(Code::Cancelled), "canceled");
    }

    #[test]
    fn rate_limits_say_when_to_retry() {
        let status = Status::with_error_details(
            Code::ResourceExhausted,
            "slow down",
            ErrorDetails::with_retry_info(Some(Duration::from_millis(1500))),
        );
        let response = error_response(&status, http::HeaderMap::new());
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "2");
        let json = error_json(&status);
        assert_eq!(json["code"], "resource_exhausted");
        assert_eq!(json["details"][0]["type"], "google.rpc.RetryInfo");
        assert_eq!(json["details"][0]["debug"]["retryDelay"], "1.500s");
    }

    #[test]
    fn a_status_without_details_has_none() {
        let json = error_json(&Status::not_found("no registration REG-1"));
        assert_eq!(json, json!({"code": "not_found", "message": "no registration REG-1"}));
    }
}
