//! vpn-registry: the national registry of VPNs.
//!
//! Institutions register the tunnels they use (`grpc::registrations`),
//! administrators enrol institutions (`grpc::institutions`), and every record
//! lives in PostgreSQL (`db`). Domain rules live in `domain`, credentials in
//! `auth`; `app` wires it all into one tonic server.

pub mod app;
pub mod auth;
pub mod clock;
pub mod db;
pub mod domain;
pub mod error;
pub mod flags;
pub mod grpc;
pub mod lookup;
pub mod observe;
pub mod operator;
pub mod pb;
pub mod registry;
pub mod sync;
pub mod tasks;
pub mod telemetry;
pub mod tls;
pub mod web;
