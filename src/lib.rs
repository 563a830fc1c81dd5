//! vpn-registry: the national registry of VPNs. Institutions register the
//! tunnels they use, the regulator reviews them, and ISPs ask whether
//! traffic belongs to an active registration. A map of the modules, in the
//! order a request meets them:
//!
//! - [`flags`]: the command line (every flag, its env fallback, its
//!   default); [`operator`]: the operator's commands (tokens, ISPs,
//!   development certificates); [`telemetry`]: logs.
//! - [`app`]: `serve`: starts the background work, builds the router, runs
//!   until shutdown.
//! - [`protocols`]: Connect (JSON over HTTP) and gRPC-Web calls turned
//!   into gRPC calls, in front of everything below.
//! - [`observe`]: the outermost gRPC layer (metrics, access log), the health
//!   probe, and the vitals behind `/readyz`, `/status` and gRPC health.
//! - [`admission`]: the server-wide cap on calls in flight (health checks
//!   never refused), before authentication.
//! - [`auth`]: bearer tokens resolved from memory, the permission table,
//!   rate limits; [`tls`]: TLS and mTLS with reload; [`clock`]: the time
//!   token expiry is judged by.
//! - [`pb`]: the generated wire types, their codec and the shared
//!   `DeltaBatch`.
//! - [`grpc`]: one file per service: parse, call, convert; [`web`]: RDAP
//!   and the console on the same port, through the same gate and handlers.
//! - [`registry`]: the registry's use cases (lock, check the etag, plan,
//!   execute, commit).
//! - [`domain`]: validated types, the lifecycle, the review decisions, the
//!   workflow's pure planners; no I/O.
//! - [`db`]: every SQL statement, one file per aggregate.
//! - [`lookup`]: the in-memory replica that answers lookups, what keeps it
//!   current, history, and the change streams for gateways.
//! - [`tasks`]: background work on the records (expiry, pruning).
//! - [`error`]: the error every layer folds into; [`sync`]: taking std
//!   locks through poison; [`fence`]: whether this process may write (not
//!   while its write database is behind the feed it applied).

pub mod accounts;
pub mod admission;
pub mod app;
pub mod auth;
pub mod clock;
pub mod db;
pub mod domain;
pub mod error;
pub mod fence;
pub mod flags;
pub mod grpc;
pub mod lookup;
pub mod notify;
pub mod observe;
pub mod operator;
pub mod pb;
pub mod protocols;
pub mod registry;
pub mod sync;
pub mod tasks;
pub mod telemetry;
pub mod tls;
pub mod vault;
pub mod web;
