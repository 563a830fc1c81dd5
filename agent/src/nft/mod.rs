//! The gateway's nftables sets, kept through netlink.

pub mod layout;
