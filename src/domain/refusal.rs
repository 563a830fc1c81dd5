//! Why the registry refuses a command: the business answers, as opposed to
//! storage failures. One mapping (`grpc::error`) turns each into a status.

use super::{Violations, lifecycle::Illegal, request::Etag, state::State};

/// A command the rules do not allow, as the caller should learn it.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("invalid argument: {0}")]
    Invalid(Violations),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// Missing, or not the caller's to see (the two look the same).
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("the etag is stale; the current one is {current}")]
    StaleEtag { current: String },
    /// Names the applicant's own prefix, never the other holder's.
    #[error("source prefix {prefix} overlaps an active registration of another institution")]
    Overlap { prefix: String },
    #[error("a registration in state {current} cannot be {action}")]
    WrongState { current: State, action: &'static str },
    #[error("a revision of this registration is already pending; amend or withdraw it first")]
    RevisionPending,
    /// Not complete enough to decide: every gap, as (kind, subject, what).
    #[error("not ready to approve: {}", .0.iter().map(|(_, _, what)| what.as_str()).collect::<Vec<_>>().join("; "))]
    Incomplete(Vec<(&'static str, String, String)>),
    /// Any other unmet precondition, named by kind (`PREFIX_SIZE`) and subject.
    #[error("{message}")]
    Precondition {
        kind: &'static str,
        subject: String,
        message: String,
    },
}

impl From<Violations> for Refusal {
    fn from(v: Violations) -> Self {
        Self::Invalid(v)
    }
}

impl From<Illegal> for Refusal {
    fn from(e: Illegal) -> Self {
        Self::WrongState {
            current: e.current,
            action: e.event.verb(),
        }
    }
}

impl Refusal {
    /// The refusal of one item of a batch, naming it (`requests[7]`): field
    /// paths and messages start with `item`.
    pub fn in_item(self, item: &str) -> Self {
        match self {
            Self::Invalid(v) => Self::Invalid(v.nested(item)),
            Self::Precondition { kind, subject, message } => Self::Precondition {
                kind,
                subject,
                message: format!("{item}: {message}"),
            },
            Self::Overlap { prefix } => Self::Precondition {
                kind: "PREFIX_OVERLAP",
                message: format!("{item}: {}", Self::Overlap { prefix: prefix.clone() }),
                subject: prefix,
            },
            other => other,
        }
    }
}

/// Refuses a write based on an older version than `version` (optimistic
/// concurrency); no etag means "whatever is current".
pub fn check_etag(etag: Option<Etag>, version: i64) -> Result<(), Refusal> {
    match etag {
        Some(Etag(v)) if v != version => Err(Refusal::StaleEtag {
            current: Etag::render(version),
        }),
        _ => Ok(()),
    }
}
