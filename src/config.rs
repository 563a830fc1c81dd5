//! Command line and environment: every flag has an env fallback and a default
//! that works on a developer machine with a local PostgreSQL.

use std::{net::SocketAddr, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use uuid::Uuid;

/// Where `serve` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// The local PostgreSQL the README sets up.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/vpn_registry";
/// How long in-flight calls may run on after a shutdown signal.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 10;
/// Milliseconds between change-feed reads without a notification.
pub const DEFAULT_FEED_POLL_INTERVAL_MS: u64 = 1000;
/// Seconds between expiry passes.
pub const DEFAULT_EXPIRY_INTERVAL_SECS: u64 = 60;
/// Connections in the pool; small on purpose (few cores, see shared/bench/postgres).
pub const DEFAULT_DB_MAX_CONNECTIONS: u32 = 8;

#[derive(Debug, Parser)]
#[command(
    name = "vpn-registry",
    version,
    about = "National registry of VPNs (gRPC service and admin tools)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC service (creates the database and applies migrations first).
    Serve(ServeArgs),
    /// Apply the embedded migrations and exit.
    Migrate(DbArgs),
    /// Manage API credentials.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage the list of licensed ISPs.
    #[command(subcommand)]
    Isp(IspCommand),
    /// Operate the change feed that lookup replicas and gateways follow.
    #[command(subcommand)]
    Feed(FeedCommand),
}

#[derive(Debug, Subcommand)]
pub enum FeedCommand {
    /// Start a new feed session after restoring the database from a backup:
    /// serials already handed out may now name different changes, so every
    /// replica reloads and every WatchChanges client gets a fresh snapshot.
    NewSession {
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum IspCommand {
    /// Add a licensed ISP.
    Add {
        /// Short lower-case code registrations name (`ptcl`).
        code: String,
        /// Display name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List licensed ISPs.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on for gRPC.
    #[arg(long, env = "VPN_REGISTRY_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub db: DbArgs,
    /// Maximum PostgreSQL connections in the pool.
    #[arg(long, env = "VPN_REGISTRY_DB_MAX_CONNECTIONS", default_value_t = DEFAULT_DB_MAX_CONNECTIONS)]
    pub db_max_connections: u32,
    /// Seconds in-flight calls may take to finish after SIGINT/SIGTERM.
    #[arg(long, env = "VPN_REGISTRY_SHUTDOWN_GRACE_SECS", default_value_t = DEFAULT_SHUTDOWN_GRACE_SECS)]
    pub shutdown_grace_secs: u64,
    /// Seconds between passes of the task that expires registrations past
    /// their validity (0 disables it on this process).
    #[arg(long, env = "VPN_REGISTRY_EXPIRY_INTERVAL_SECS", default_value_t = DEFAULT_EXPIRY_INTERVAL_SECS)]
    pub expiry_interval_secs: u64,
    /// Milliseconds between reads of the change feed when no notification
    /// arrived (bounds the delay a lost NOTIFY can cause).
    #[arg(long, env = "VPN_REGISTRY_FEED_POLL_INTERVAL_MS", default_value_t = DEFAULT_FEED_POLL_INTERVAL_MS)]
    pub feed_poll_interval_ms: u64,
}

impl ServeArgs {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub fn feed_poll_interval(&self) -> Duration {
        Duration::from_millis(self.feed_poll_interval_ms.max(10))
    }

    pub fn expiry_interval(&self) -> Option<Duration> {
        (self.expiry_interval_secs > 0).then(|| Duration::from_secs(self.expiry_interval_secs))
    }
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a new bearer token; prints only the token, once.
    Issue(IssueArgs),
    /// Revoke a token by its id (from `token list`).
    Revoke {
        /// The token's id.
        id: Uuid,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// The role the token acts in.
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// The institution an `institution` token acts for.
    #[arg(long)]
    pub institution: Option<Uuid>,
    /// The ISP code an `isp` token acts for.
    #[arg(long)]
    pub isp: Option<String>,
    /// A label to recognise the token by (defaults to the role).
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Admin,
    Reviewer,
    Isp,
    Lookup,
    Institution,
}

/// The URL with any password replaced, for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_logged_urls() {
        assert_eq!(redact_url("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }
}
