//! The registry's use cases, one method per command: read what the rules
//! need (under a lock, for writes), let `domain` decide, let `db` carry out
//! the plan in one transaction. Nothing is decided here; handlers in `grpc`
//! call these after parsing, and convert what they return.

pub mod api_keys;
pub mod documents;
pub mod events;
mod institutions;
mod isps;
pub mod payments;
mod registrations;
mod review;
mod upload;
pub mod webhooks;

use std::sync::Arc;

use sqlx::PgPool;

use crate::domain::fees::FeeSchedule;
use crate::fence::Fence;

pub use crate::db::WriteContext;
pub use review::Attestation;

/// The registry over its database; cheap to clone.
#[derive(Clone)]
pub struct Registry {
    pool: PgPool,
    fence: Fence,
    fees: Arc<FeeSchedule>,
}

impl Registry {
    /// A registry that always writes (tools, tests).
    pub fn new(pool: PgPool) -> Self {
        Self::fenced(pool, Fence::default())
    }

    /// A registry that refuses writes while `fence` is closed.
    pub fn fenced(pool: PgPool, fence: Fence) -> Self {
        Self {
            pool,
            fence,
            fees: Arc::default(),
        }
    }

    /// The same registry assessing fees by `schedule` (default: the
    /// regulation's, [`FeeSchedule::default`]).
    pub fn with_fees(self, schedule: Arc<FeeSchedule>) -> Self {
        Self { fees: schedule, ..self }
    }

    /// The database (for use cases kept beside the registry's own).
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether a write may begin: refused (UNAVAILABLE) while fenced.
    fn writable(&self) -> crate::error::Result<()> {
        match self.fence.closed() {
            Some(why) => Err(crate::error::Error::Fenced(why)),
            None => Ok(()),
        }
    }
}

/// One page of a list, fetched with one extra item to tell whether more follow.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The last item of this page when another page follows.
    pub more: bool,
}

impl<T> Page<T> {
    /// Trims `fetched` (up to `limit + 1` items) to a page of `limit`.
    pub fn of(mut fetched: Vec<T>, limit: i64) -> Self {
        let more = fetched.len() as i64 > limit;
        fetched.truncate(limit as usize);
        Self { items: fetched, more }
    }

    /// The item the next page resumes after, when there is one.
    pub fn resume_after(&self) -> Option<&T> {
        self.items.last().filter(|_| self.more)
    }
}
