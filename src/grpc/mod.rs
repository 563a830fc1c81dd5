//! gRPC services: one file per service, each handler parse -> call ->
//! convert. Parsing and conversion live in `convert`; decisions in `domain`
//! and `lookup`, reached through `registry` and `lookup::Lookups`.

pub mod convert;
pub mod error;
pub mod institutions;
pub mod isps;
pub mod lookup;
pub mod registrations;
pub mod review;
mod turn;
pub mod upstream;
