//! Integration tests: the real server over a real socket, each test on a
//! fresh PostgreSQL database (`#[sqlx::test]`, migrations applied).

mod auth;
mod browser;
mod change_stream;
mod cli;
mod console;
mod deploy;
mod events;
mod expiry;
mod fairness;
mod fanout;
mod following;
mod fuzz;
mod gateway;
mod harness;
mod helpers;
mod history;
mod idempotency;
mod institutions;
mod isps;
mod lifecycle;
mod lookup;
mod notifications;
mod operations;
mod permissions;
mod properties;
mod proxy;
mod raw;
mod rdap;
mod registrations;
mod requests;
mod restores;
mod runtime_role;
mod security;
mod watchers;
mod webhooks;
