//! Lookups: the in-memory replica of the active set that answers "is this
//! address (or flow) registered?", what keeps it current, the history that
//! answers about the past, and the change streams for gateways.
//!
//! A tree, leaves first:
//! - `entry`: what an entry is, whose entries a caller sees, a query's
//!   conditions (the types everything else here uses);
//! - `change`: one change, the batches watchers share, what they are told;
//! - `index`: the longest-prefix-match index of entries;
//! - `copy`, `journal`: the shared copy streams send as their snapshot, and
//!   a fan-out replica's window of recent changes;
//! - `replica`: the index with its serial and session, in memory only;
//! - `stored`: the feed's storage rows as entries and changes (the edge);
//! - `follower`: loads the replica from PostgreSQL and follows the feed;
//! - `history`: questions about the past, asked of PostgreSQL; `horizon`:
//!   the write database's last serial, for `min_serial` beyond this replica;
//! - `watchers`, `stream`: admitting change streams, and running one;
//! - `lookups`: the facade handlers call; `error`: why a lookup failed.

pub mod change;
mod copy;
pub mod entry;
pub mod error;
pub mod follower;
pub mod history;
mod horizon;
pub mod index;
mod journal;
mod lookups;
pub mod replica;
mod stored;
pub mod stream;
pub mod watchers;

pub use entry::{Match, Scope};
pub use error::LookupError;
pub use horizon::Horizon;
pub use lookups::{Lookups, MAX_BATCH, Terms, scope};
pub use replica::{Replica, ReplicaSlot};
pub use stream::Backfill;
