//! The gateway's nftables sets, kept through netlink.

pub mod enforce;
pub mod keeper;
pub mod kernel;
pub mod layout;
