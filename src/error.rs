//! The one error every call can end with: a refusal by the rules, or a
//! failure of the store. `grpc::error` maps it to a status, once.

use crate::db::StoreError;
use crate::domain::{Violations, refusal::Refusal};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Refused(Refusal),
    #[error(transparent)]
    Store(StoreError),
    /// The write database cannot be trusted with writes (`fence`).
    #[error("writes refused: {0}")]
    Fenced(String),
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        Self::Refused(r)
    }
}

impl From<Violations> for Error {
    fn from(v: Violations) -> Self {
        Self::Refused(Refusal::Invalid(v))
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Refused(r) => Self::Refused(r),
            e => Self::Store(e),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
