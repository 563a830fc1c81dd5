//! Why a lookup could not be answered (yet).

use crate::db::StoreError;
use crate::domain::refusal::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("lookup index still loading; retry shortly")]
    Loading,
    #[error("this replica serves {0} change streams already; retry later or elsewhere")]
    TooManyWatchers(usize),
    #[error("this principal holds {0} change streams already, the most its role may; close one first")]
    TooManyWatchersOfPrincipal(u32),
    #[error("this fan-out replica holds no history; ask its upstream")]
    NoHistory,
    #[error("this replica has applied serial {applied}, not yet {wanted}; retry")]
    Behind { applied: i64, wanted: i64 },
    #[error("min_serial {wanted} is beyond the registry's last serial {last}: no write has that serial")]
    BeyondFeed { wanted: i64, last: i64 },
    /// Reads of one's own writes are refused while the write database is
    /// behind this replica (`fence`).
    #[error("min_serial cannot be answered here: {0}")]
    Fenced(String),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}
