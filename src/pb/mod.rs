//! The API's wire types: the protobuf and gRPC code generated from
//! `proto/` (in OUT_DIR), the descriptor set that server reflection serves,
//! and the two pieces the generated code is pointed at (`build.rs`): the
//! codec every service uses and the hand-written `DeltaBatch`.

pub mod codec;
pub mod delta_batch;

/// The generated code; lints are relaxed here and nowhere else.
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/protos.rs"));
}

pub use delta_batch::DeltaBatch;
pub use generated::google;
pub use generated::vpnregistry::v1::*;

include!(concat!(env!("OUT_DIR"), "/proto_sources.rs"));

/// Encoded `FileDescriptorSet` of `proto/`, for tonic-reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vpnregistry_descriptor.bin"));
