//! The one mapping from everything a handler can fail with to a gRPC status.
//! Internal causes are logged here and never sent to the caller.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::db::StoreError;
use crate::domain::Violations;

/// Domain of the `google.rpc.ErrorInfo` details this service sends.
pub const ERROR_DOMAIN: &str = "vpnregistry.v1";

/// Why a call failed, before it becomes a status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid argument: {0}")]
    Invalid(Violations),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Violations> for ApiError {
    fn from(v: Violations) -> Self {
        Self::Invalid(v)
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Invalid(v) => invalid(&v),
            ApiError::PermissionDenied(msg) => Status::permission_denied(msg),
            ApiError::Store(e) => store(e),
        }
    }
}

fn invalid(v: &Violations) -> Status {
    let mut details = ErrorDetails::new();
    for violation in v.iter() {
        details.add_bad_request_violation(&violation.field, &violation.description);
    }
    Status::with_error_details(Code::InvalidArgument, v.to_string(), details)
}

fn store(e: StoreError) -> Status {
    let msg = e.to_string();
    match e {
        StoreError::NotFound(_) => Status::not_found(msg),
        StoreError::StaleEtag { .. } => Status::aborted(msg),
        StoreError::RequestIdReused => Status::with_error_details(
            Code::AlreadyExists,
            msg,
            ErrorDetails::with_error_info(
                "REQUEST_ID_REUSED",
                ERROR_DOMAIN,
                [("field".to_owned(), "request_id".to_owned())],
            ),
        ),
        StoreError::Overlap { prefix, .. } => Status::with_error_details(
            Code::FailedPrecondition,
            msg.clone(),
            ErrorDetails::with_precondition_failure_violation("PREFIX_OVERLAP", prefix, msg),
        ),
        StoreError::WrongState { current, .. } => Status::with_error_details(
            Code::FailedPrecondition,
            msg.clone(),
            ErrorDetails::with_precondition_failure_violation("STATE", current.as_str(), msg),
        ),
        StoreError::RevisionPending => Status::with_error_details(
            Code::FailedPrecondition,
            msg.clone(),
            ErrorDetails::with_precondition_failure_violation("REVISION_PENDING", "pending_revision", msg),
        ),
        StoreError::Precondition { kind, subject, message } => Status::with_error_details(
            Code::FailedPrecondition,
            message.clone(),
            ErrorDetails::with_precondition_failure_violation(kind, subject, message),
        ),
        StoreError::AlreadyExists(_) => Status::already_exists(msg),
        StoreError::Invalid(v) => invalid(&v),
        StoreError::Database(sqlx::Error::PoolTimedOut) => {
            tracing::error!("database pool exhausted");
            Status::unavailable("database busy; retry with backoff")
        }
        StoreError::Database(e) => {
            tracing::error!(error = %e, "database error");
            Status::internal("internal error")
        }
        StoreError::Corrupt(detail) => {
            tracing::error!(%detail, "unreadable stored data");
            Status::internal("internal error")
        }
    }
}
