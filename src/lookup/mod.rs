//! Lookups: the in-memory replica of the active set that answers "is this
//! address (or flow) registered?", and follows the change feed.

pub mod index;
pub mod replica;

pub use replica::Replica;
