//! Lookups: the in-memory replica of the active set that answers "is this
//! address (or flow) registered?" and follows the change feed, the history
//! that answers about the past, and the change stream for gateways.

pub mod history;
pub mod index;
mod journal;
pub mod replica;
mod service;
mod snapshot;
pub mod watch;

pub use index::Scope;
pub use replica::Replica;
pub use service::{LookupError, Lookups, MAX_BATCH, ReplicaSlot, Terms, scope};
pub use watch::Backfill;
