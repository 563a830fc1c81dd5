//! The one mapping from everything a call can fail with to a gRPC status.
//! Internal causes are logged here and never sent to the caller.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::db::StoreError;
use crate::domain::{Violations, refusal::Refusal};
use crate::error::Error;
use crate::lookup::{LookupError, stream::WatchEnd};

/// Domain of the `google.rpc.ErrorInfo` details this service sends.
pub const ERROR_DOMAIN: &str = "vpnregistry.v1";

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Refused(r) => refusal(r),
            Error::Store(e) => store(e),
            Error::Fenced(_) => Status::unavailable(e.to_string()),
        }
    }
}

impl From<Refusal> for Status {
    fn from(r: Refusal) -> Self {
        refusal(r)
    }
}

/// Violations spelt out in the status message; the details list up to
/// `MAX_LISTED` (metadata must stay within what clients accept: gRPC's
/// C core refuses more than 16 KiB).
const IN_MESSAGE: usize = 3;

fn invalid(v: &Violations) -> Status {
    let mut details = ErrorDetails::new();
    let mut message = String::new();
    for (i, violation) in v.iter().enumerate() {
        details.add_bad_request_violation(&violation.field, &violation.description);
        if i < IN_MESSAGE {
            if i > 0 {
                message.push_str("; ");
            }
            message.push_str(&format!("{}: {}", violation.field, violation.description));
        }
    }
    let unmentioned = v.iter().count().saturating_sub(IN_MESSAGE) + v.omitted();
    if unmentioned > 0 {
        message.push_str(&format!("; and {unmentioned} more"));
    }
    Status::with_error_details(Code::InvalidArgument, message, details)
}

fn precondition(kind: &str, subject: impl Into<String>, message: String) -> Status {
    Status::with_error_details(
        Code::FailedPrecondition,
        message.clone(),
        ErrorDetails::with_precondition_failure_violation(kind, subject, message),
    )
}

fn refusal(r: Refusal) -> Status {
    let msg = r.to_string();
    match r {
        Refusal::Invalid(v) => invalid(&v),
        Refusal::PermissionDenied(msg) => Status::permission_denied(msg),
        Refusal::NotFound(_) => Status::not_found(msg),
        Refusal::StaleEtag { .. } => Status::aborted(msg),
        Refusal::Overlap { prefix, .. } => precondition("PREFIX_OVERLAP", prefix, msg),
        Refusal::WrongState { current, .. } => precondition("STATE", current.as_str(), msg),
        Refusal::RevisionPending => precondition("REVISION_PENDING", "pending_revision", msg),
        Refusal::Precondition { kind, subject, message } => precondition(kind, subject, message),
        Refusal::Incomplete(gaps) => {
            let mut details = ErrorDetails::new();
            for (kind, subject, what) in gaps {
                details.add_precondition_failure_violation(kind, subject, what);
            }
            Status::with_error_details(Code::FailedPrecondition, msg, details)
        }
    }
}

fn store(e: StoreError) -> Status {
    let msg = e.to_string();
    match e {
        StoreError::NotFound(_) => Status::not_found(msg),
        StoreError::RequestIdReused => Status::with_error_details(
            Code::AlreadyExists,
            msg,
            ErrorDetails::with_error_info(
                "REQUEST_ID_REUSED",
                ERROR_DOMAIN,
                [("field".to_owned(), "request_id".to_owned())],
            ),
        ),
        StoreError::AlreadyExists(_) => Status::already_exists(msg),
        StoreError::Refused(r) => refusal(r),
        StoreError::Unavailable(e) => {
            tracing::warn!(error = %e, "database unavailable");
            Status::unavailable("database unavailable; retry with backoff")
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

impl From<Violations> for Status {
    fn from(v: Violations) -> Self {
        invalid(&v)
    }
}

impl From<LookupError> for Status {
    fn from(e: LookupError) -> Self {
        match e {
            LookupError::Loading | LookupError::NoHistory | LookupError::Behind { .. } => {
                Status::unavailable(e.to_string())
            }
            LookupError::TooManyWatchers(_) | LookupError::TooManyWatchersOfPrincipal(_) => {
                Status::resource_exhausted(e.to_string())
            }
            LookupError::BeyondFeed { .. } => Status::out_of_range(e.to_string()),
            LookupError::Fenced(_) => Status::unavailable(e.to_string()),
            LookupError::Refused(r) => refusal(r),
            LookupError::Store(e) => store(e),
        }
    }
}

impl From<WatchEnd> for Status {
    fn from(e: WatchEnd) -> Self {
        let msg = e.to_string();
        match e {
            WatchEnd::ShuttingDown => Status::unavailable(msg),
            WatchEnd::NewSession | WatchEnd::Pruned => Status::aborted(msg),
            WatchEnd::TooSlow => Status::resource_exhausted(msg),
            WatchEnd::Store(e) => store(e),
        }
    }
}
