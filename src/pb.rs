//! Generated protobuf and gRPC code (in OUT_DIR), and the descriptor set that
//! server reflection serves.
#![allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]

include!(concat!(env!("OUT_DIR"), "/protos.rs"));

pub use crate::wire::DeltaBatch;
pub use vpnregistry::v1::*;

/// Encoded `FileDescriptorSet` of `proto/`, for tonic-reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vpnregistry_descriptor.bin"));
