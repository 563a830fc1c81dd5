//! gRPC services: one file per service, each handler parse -> call ->
//! convert. Parsing and conversion live in `convert`; decisions in `domain`
//! and `lookup`, reached through `registry` and `lookup::Lookups`.

pub mod api_keys;
pub mod convert;
pub mod documents;
pub mod error;
pub mod events;
pub mod institutions;
pub mod isps;
pub mod lookup;
mod one_at_a_time;
pub mod payments;
pub mod registrations;
pub mod review;
pub mod upstream;
pub mod webhooks;
