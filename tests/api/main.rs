//! Integration tests: the real server over a real socket, each test on a
//! fresh PostgreSQL database (`#[sqlx::test]`, migrations applied).

mod auth;
mod browser;
mod cli;
mod console;
mod deploy;
mod fanout;
mod fuzz;
mod harness;
mod helpers;
mod history;
mod idempotency;
mod institutions;
mod lifecycle;
mod lookup;
mod operations;
mod permissions;
mod properties;
mod proxy;
mod raw;
mod rdap;
mod registrations;
mod requests;
mod security;
mod watchers;
