//! Background work on the registry's records in every `serve` process:
//! expiring registrations and pruning the feed's history. (The lookup
//! replica's feed follower lives in `lookup`, the credential follower in
//! `auth`, the health probe in `observe`.)

pub mod expiry;
pub mod prune;
