//! Integration tests: the real server over a real socket, each test on a
//! fresh PostgreSQL database (`#[sqlx::test]`, migrations applied).

mod auth;
mod cli;
mod helpers;
mod idempotency;
mod institutions;
mod lifecycle;
mod lookup;
mod properties;
mod registrations;
mod security;
