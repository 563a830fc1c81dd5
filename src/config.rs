//! Command line and environment: every flag has an env fallback and a default
//! that works on a developer machine with a local PostgreSQL.

use std::{net::SocketAddr, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use uuid::Uuid;

use crate::domain::principal::RoleKind;
use crate::telemetry::LogFormat;

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
/// Longest any SQL statement of `serve` may run.
pub const DEFAULT_STATEMENT_TIMEOUT: &str = "10s";
/// How long the in-memory credentials may go without a refresh before
/// authenticated calls are refused.
pub const DEFAULT_CREDENTIAL_MAX_STALENESS: &str = "60s";
/// Calls handled at once by one server; more are shed (RESOURCE_EXHAUSTED).
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 1024;
/// HTTP/2 streams one connection may have open.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 256;
/// HTTP/2 keepalive ping interval (dead peers are found and dropped).
pub const DEFAULT_KEEPALIVE_INTERVAL: &str = "30s";
/// Connections are closed after this long (clients reconnect, spreading load
/// over replicas), with a grace period for calls in flight.
pub const DEFAULT_MAX_CONNECTION_AGE: &str = "1h";
pub const DEFAULT_MAX_CONNECTION_AGE_GRACE: &str = "5m";
/// WatchChanges streams one replica serves at once.
pub const DEFAULT_MAX_WATCHERS: usize = 10_000;
/// Changes a fan-out replica keeps for resuming watchers: about a day of a
/// busy registry's changes, ~20 MB.
pub const DEFAULT_UPSTREAM_JOURNAL: usize = 100_000;
/// Where the metrics and health listener binds unless told otherwise
/// (Prometheus's port for exporters in the 94xx range; loopback only).
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";
/// Readiness fails when the lookup index is further behind than this.
pub const DEFAULT_MAX_FEED_LAG: &str = "30s";
/// How often lookups are summarised in the log.
pub const DEFAULT_ACCESS_SUMMARY_INTERVAL: &str = "60s";
/// How long change-feed rows are kept (replicas and gateways stopped longer
/// reload from a snapshot).
pub const DEFAULT_FEED_RETENTION: &str = "7d";
/// How long as-of lookups can look back.
pub const DEFAULT_HISTORY_RETENTION: &str = "400d";
/// How often the feed and the history are pruned.
pub const DEFAULT_PRUNE_INTERVAL: &str = "1h";
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

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on for gRPC.
    #[arg(long, env = "VPN_REGISTRY_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub db: DbArgs,
    /// Where the lookup replica, history lookups and credentials read, e.g. a
    /// hot standby (followed by polling: standbys have no LISTEN). Writes
    /// always go to --database-url. Defaults to --database-url.
    #[arg(long, env = "VPN_REGISTRY_READ_DATABASE_URL")]
    pub read_database_url: Option<String>,
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
    /// Server certificate chain (PEM): serve TLS 1.2+ instead of plaintext.
    #[arg(long, env = "VPN_REGISTRY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// Private key of the server certificate (PEM).
    #[arg(long, env = "VPN_REGISTRY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// CA (PEM) whose certificates clients must present (mutual TLS).
    #[arg(long, env = "VPN_REGISTRY_CLIENT_CA", requires = "tls_cert")]
    pub client_ca: Option<std::path::PathBuf>,
    /// Longest any SQL statement may run (a runaway query is cancelled).
    #[arg(long, env = "VPN_REGISTRY_STATEMENT_TIMEOUT", default_value = DEFAULT_STATEMENT_TIMEOUT, value_parser = duration)]
    pub statement_timeout: Duration,
    /// Refuse authenticated calls (UNAVAILABLE) when the in-memory
    /// credentials could not be refreshed for this long.
    #[arg(long, env = "VPN_REGISTRY_CREDENTIAL_MAX_STALENESS", default_value = DEFAULT_CREDENTIAL_MAX_STALENESS, value_parser = duration)]
    pub credential_max_staleness: Duration,
    /// Calls per second per principal of a role, as ROLE=PER_SECOND
    /// (repeatable; 0 = unlimited; burst of one second's worth).
    #[arg(long = "rate-limit", env = "VPN_REGISTRY_RATE_LIMITS", value_delimiter = ',', value_parser = crate::auth::limits::parse_rate)]
    pub rate_limits: Vec<(RoleKind, u32)>,
    /// Failed authentications per second one peer address may make.
    #[arg(long, env = "VPN_REGISTRY_FAILED_AUTH_RATE", default_value_t = crate::auth::limits::DEFAULT_FAILED_AUTH_RATE)]
    pub failed_auth_rate: u32,
    /// Calls handled at once; more are refused at once (RESOURCE_EXHAUSTED).
    #[arg(long, env = "VPN_REGISTRY_MAX_CONCURRENT_REQUESTS", default_value_t = DEFAULT_MAX_CONCURRENT_REQUESTS)]
    pub max_concurrent_requests: usize,
    /// HTTP/2 streams per connection.
    #[arg(long, env = "VPN_REGISTRY_MAX_CONCURRENT_STREAMS", default_value_t = DEFAULT_MAX_CONCURRENT_STREAMS)]
    pub max_concurrent_streams: u32,
    /// HTTP/2 keepalive ping interval.
    #[arg(long, env = "VPN_REGISTRY_KEEPALIVE_INTERVAL", default_value = DEFAULT_KEEPALIVE_INTERVAL, value_parser = duration)]
    pub keepalive_interval: Duration,
    /// Connections are closed after this long (clients reconnect).
    #[arg(long, env = "VPN_REGISTRY_MAX_CONNECTION_AGE", default_value = DEFAULT_MAX_CONNECTION_AGE, value_parser = duration)]
    pub max_connection_age: Duration,
    /// Calls in flight on a connection past its age may finish within this.
    #[arg(long, env = "VPN_REGISTRY_MAX_CONNECTION_AGE_GRACE", default_value = DEFAULT_MAX_CONNECTION_AGE_GRACE, value_parser = duration)]
    pub max_connection_age_grace: Duration,
    /// WatchChanges streams served at once; more answer RESOURCE_EXHAUSTED.
    #[arg(long, env = "VPN_REGISTRY_MAX_WATCHERS", default_value_t = DEFAULT_MAX_WATCHERS)]
    pub max_watchers: usize,
    /// HTTP listener for Prometheus (/metrics) and health (/livez, /readyz,
    /// /status); empty disables it (and metrics recording).
    #[arg(long, env = "VPN_REGISTRY_METRICS_LISTEN", default_value = DEFAULT_METRICS_LISTEN)]
    pub metrics_listen: OptionalListen,
    /// Label per-call metrics with the caller's token id (off: it reveals
    /// who is connected to anyone who can scrape).
    #[arg(long, env = "VPN_REGISTRY_METRICS_PER_PRINCIPAL")]
    pub metrics_per_principal: bool,
    /// Readiness (and LookupService health) fails when the lookup index is
    /// further behind the change feed than this.
    #[arg(long, env = "VPN_REGISTRY_MAX_FEED_LAG", default_value = DEFAULT_MAX_FEED_LAG, value_parser = duration)]
    pub max_feed_lag: Duration,
    /// How long change-feed rows are kept: a replica or WatchChanges client
    /// stopped longer gets a reset and a fresh snapshot instead of the deltas.
    #[arg(long, env = "VPN_REGISTRY_FEED_RETENTION", default_value = DEFAULT_FEED_RETENTION, value_parser = duration)]
    pub feed_retention: Duration,
    /// How far back as-of (`at`) lookups can ask; earlier answers
    /// FAILED_PRECONDITION.
    #[arg(long, env = "VPN_REGISTRY_HISTORY_RETENTION", default_value = DEFAULT_HISTORY_RETENTION, value_parser = duration)]
    pub history_retention: Duration,
    /// How often this process prunes the feed and the history (0s disables
    /// it here; any number of replicas may run it).
    #[arg(long, env = "VPN_REGISTRY_PRUNE_INTERVAL", default_value = DEFAULT_PRUNE_INTERVAL, value_parser = duration)]
    pub prune_interval: Duration,
    /// How often the log summarises lookups (each lookup is logged only at debug).
    #[arg(long, env = "VPN_REGISTRY_ACCESS_SUMMARY_INTERVAL", default_value = DEFAULT_ACCESS_SUMMARY_INTERVAL, value_parser = duration)]
    pub access_summary_interval: Duration,
    /// Run a fan-out replica: follow this replica's WatchChanges
    /// (`http://host:port` or `https://host:port`) instead of PostgreSQL and
    /// serve lookups only, with the upstream's session and serials.
    /// PostgreSQL (a standby will do) then only holds the credentials.
    #[arg(long, env = "VPN_REGISTRY_UPSTREAM", requires = "upstream_token_file")]
    pub upstream: Option<String>,
    /// File holding a `lookup` token for the upstream (read at every
    /// reconnection, so it can be rotated in place).
    #[arg(long, env = "VPN_REGISTRY_UPSTREAM_TOKEN_FILE", requires = "upstream")]
    pub upstream_token_file: Option<std::path::PathBuf>,
    /// CA (PEM) to verify an `https` upstream's certificate with.
    #[arg(long, env = "VPN_REGISTRY_UPSTREAM_CA", requires = "upstream")]
    pub upstream_ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for an upstream that requires one.
    #[arg(long, env = "VPN_REGISTRY_UPSTREAM_CLIENT_CERT", requires_all = ["upstream", "upstream_client_key"])]
    pub upstream_client_cert: Option<std::path::PathBuf>,
    /// Private key of --upstream-client-cert (PEM).
    #[arg(long, env = "VPN_REGISTRY_UPSTREAM_CLIENT_KEY", requires = "upstream_client_cert")]
    pub upstream_client_key: Option<std::path::PathBuf>,
    /// Changes a fan-out replica keeps for its own watchers to resume from
    /// (older resumes get a reset and a snapshot).
    #[arg(long, env = "VPN_REGISTRY_UPSTREAM_JOURNAL", default_value_t = DEFAULT_UPSTREAM_JOURNAL)]
    pub upstream_journal: usize,
}

impl ServeArgs {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub fn feed_poll_interval(&self) -> Duration {
        Duration::from_millis(self.feed_poll_interval_ms.max(10))
    }

    /// The upstream a fan-out replica follows, if this is one.
    pub fn upstream(&self) -> Option<crate::grpc::upstream::UpstreamConfig> {
        Some(crate::grpc::upstream::UpstreamConfig {
            url: self.upstream.clone()?,
            token_file: self.upstream_token_file.clone()?,
            ca_file: self.upstream_ca.clone(),
            client_identity: self.upstream_client_cert.clone().zip(self.upstream_client_key.clone()),
            journal: self.upstream_journal,
        })
    }

    /// The pruning task's settings, unless disabled.
    pub fn retention(&self) -> Option<crate::tasks::prune::Retention> {
        (!self.prune_interval.is_zero()).then_some(crate::tasks::prune::Retention {
            feed: self.feed_retention,
            history: self.history_retention,
            every: self.prune_interval,
        })
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
