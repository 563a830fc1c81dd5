//! Command line and environment: every flag has an env fallback and a default
//! that works on a developer machine with a local PostgreSQL. The commands
//! are here; `serve`'s many flags in `serve`.

use std::{net::SocketAddr, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use uuid::Uuid;

use crate::telemetry::LogFormat;

mod serve;

pub use serve::*;

/// The local PostgreSQL the README sets up.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/vpn_registry";
/// The PostgreSQL role `serve` runs as, which `migrate` grants what it needs.
pub const DEFAULT_RUNTIME_ROLE: &str = "vpn_registry_runtime";

#[derive(Debug, Parser)]
#[command(
    name = "vpn-registry",
    version,
    about = "National registry of VPNs (gRPC service and admin tools)"
)]
pub struct Cli {
    /// How log lines are written (to stderr).
    #[arg(long, global = true, env = "VPN_REGISTRY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC service (and RDAP on its port; a database migrated by `migrate` first).
    Serve(Box<ServeArgs>),
    /// Apply the embedded migrations (as the schema owner), grant the runtime
    /// role what `serve` needs, and exit.
    Migrate(MigrateArgs),
    /// Write a development CA, a server certificate and a client certificate
    /// (PEM) for trying TLS and mTLS locally. Not for production.
    DevCerts(DevCertsArgs),
    /// Manage API credentials.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage the list of licensed ISPs.
    #[command(subcommand)]
    Isp(IspCommand),
    /// Manage people's accounts (console users).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage the key files documents are encrypted under.
    #[command(subcommand)]
    DocumentKey(DocumentKeyCommand),
    /// Operate the change feed that lookup replicas and gateways follow.
    #[command(subcommand)]
    Feed(FeedCommand),
    /// Exit 0 when the local server is ready (GET /readyz on its metrics
    /// listener), 1 otherwise: a container HEALTHCHECK without shell or curl.
    Healthcheck(HealthcheckArgs),
}

#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// The server's metrics and health listener (as given to `serve`; an
    /// unspecified address such as 0.0.0.0 is asked on loopback).
    #[arg(long, env = "VPN_REGISTRY_METRICS_LISTEN", default_value = DEFAULT_METRICS_LISTEN)]
    pub metrics_listen: SocketAddr,
    /// Ask /livez (the process answers) instead of /readyz (it can serve).
    #[arg(long)]
    pub live: bool,
    /// How long to wait for an answer.
    #[arg(long, default_value = "3s", value_parser = duration)]
    pub timeout: Duration,
}

/// An address to listen on, or none (an empty value turns the listener off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalListen(pub Option<SocketAddr>);

impl std::str::FromStr for OptionalListen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Ok(Self(None));
        }
        s.trim()
            .parse()
            .map(|a| Self(Some(a)))
            .map_err(|e| format!("{s:?}: {e} (host:port, or empty to disable)"))
    }
}

#[derive(Debug, Subcommand)]
pub enum FeedCommand {
    /// Start a new feed session after restoring the database from a backup:
    /// serials already handed out may now name different changes, so every
    /// replica reloads and every WatchChanges client gets a fresh snapshot.
    NewSession {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        operator: OperatorArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum DocumentKeyCommand {
    /// Write a new random key file (readable by its owner only; never
    /// overwrites one); prints its id.
    Generate {
        /// Where the key goes.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Re-wrap every document's data key from the key in `--from` to the
    /// key in `--to` (content is not re-encrypted); prints how many. Serve
    /// with `--document-key-file NEW,OLD` meanwhile, then with NEW alone.
    Rotate {
        #[arg(long)]
        from: std::path::PathBuf,
        #[arg(long)]
        to: std::path::PathBuf,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        operator: OperatorArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// E-mail an invitation (a single-use link, valid 7 days) to regulator
    /// staff, an ISP desk user, or an institution's first owner. The mail
    /// goes through the outbox (the server delivers it); the link is also
    /// printed, for the first administrator before mail is set up.
    Invite(InviteArgs),
}

#[derive(Debug, Args)]
pub struct InviteArgs {
    /// What the person will do.
    #[arg(long, value_enum)]
    pub role: UserRoleArg,
    /// Where the invitation goes (and the account's address).
    #[arg(long)]
    pub email: String,
    /// The institution an `owner` or `member` joins.
    #[arg(long)]
    pub institution: Option<Uuid>,
    /// The ISP an `isp` desk user works for.
    #[arg(long)]
    pub isp: Option<String>,
    /// The console's address, where the link points.
    #[arg(long, env = "VPN_REGISTRY_PUBLIC_URL", value_parser = serve::parse_public_url)]
    pub public_url: String,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub operator: OperatorArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UserRoleArg {
    Admin,
    Reviewer,
    Isp,
    Owner,
    Member,
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
        #[command(flatten)]
        operator: OperatorArgs,
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
pub struct MigrateArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// The role `serve` connects as (directly or as a member): it is granted
    /// reading and writing the data, appending (never rewriting) the audit
    /// trail and the change feed, and nothing on the schema. Skipped with a
    /// warning when the role does not exist.
    #[arg(long, env = "VPN_REGISTRY_RUNTIME_ROLE", default_value = DEFAULT_RUNTIME_ROLE)]
    pub runtime_role: String,
}

/// Who runs an operator command, for the audit trail.
#[derive(Debug, Clone, Args)]
pub struct OperatorArgs {
    /// The operator's name in the audit trail (defaults to the login name).
    #[arg(long, env = "VPN_REGISTRY_OPERATOR")]
    pub operator: Option<String>,
}

impl OperatorArgs {
    pub fn name(&self) -> String {
        self.operator
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .or_else(|| std::env::var("LOGNAME").ok())
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| "unknown".to_owned())
    }
}

#[derive(Debug, Clone, Args)]
pub struct DevCertsArgs {
    /// Directory to write ca.pem, server.pem, server-key.pem, client.pem and
    /// client-key.pem into.
    #[arg(long)]
    pub out: std::path::PathBuf,
    /// Names the server certificate is valid for.
    #[arg(long, value_delimiter = ',', default_values_t = ["localhost".to_owned(), "127.0.0.1".to_owned()])]
    pub hosts: Vec<String>,
}

/// Parses durations like `90d`, `12h`, `30s`, `500ms`.
pub fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (for example 30s, 12h, 90d)"))
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
        #[command(flatten)]
        operator: OperatorArgs,
    },
    /// Replace a token with a new secret (printed once); the old one stays
    /// valid for the grace period.
    Rotate {
        /// The token's id.
        id: Uuid,
        /// How long the old secret keeps working.
        #[arg(long, default_value = "24h", value_parser = duration)]
        grace: Duration,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        operator: OperatorArgs,
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
    /// How long the token is valid (default 365 days; 30 days for admins).
    #[arg(long, value_parser = duration)]
    pub expires_in: Option<Duration>,
    /// Accept the token only on connections presenting this client
    /// certificate (PEM): a leaked token is useless without its key.
    #[arg(long)]
    pub bind_cert: Option<std::path::PathBuf>,
    /// An institution or ISP token that may itself manage its
    /// organisation's API keys (ApiKeyService), for automation.
    #[arg(long)]
    pub manages_keys: bool,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub operator: OperatorArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Admin,
    Reviewer,
    Isp,
    Lookup,
    Institution,
    /// A collecting bank's or payment aggregator's system.
    Payments,
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
