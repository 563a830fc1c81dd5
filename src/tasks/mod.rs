//! Background tasks of a `serve` process besides the lookup replica's feed
//! follower (`lookup`) and the credential follower (`auth`).

pub mod expiry;
pub mod health;
pub mod prune;
