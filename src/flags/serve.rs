//! `serve`'s flags and their defaults, and how they are logged at start.

use std::{net::SocketAddr, time::Duration};

use clap::Args;

use super::{DbArgs, OptionalListen, duration, redact_url};
use crate::domain::principal::RoleKind;

/// Where `serve` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
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
/// How long documents outlive the end of their registration.
pub const DEFAULT_DOCUMENT_RETENTION: &str = "3years";

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
    /// Calls one principal of a role may have in flight, as ROLE=N
    /// (repeatable; 0 = no cap of the role's own; defaults lookup=512,
    /// isp=256, reviewer=64, admin=32, institution=32).
    #[arg(long = "max-in-flight", env = "VPN_REGISTRY_MAX_IN_FLIGHT", value_delimiter = ',', value_parser = crate::auth::limits::parse_cap)]
    pub max_in_flight: Vec<(RoleKind, u32)>,
    /// The registry's address as its clients and people reach it, such as
    /// https://registry.example.pk (behind a proxy, say): RDAP links name
    /// it. Without it, links name the address the request came in on.
    #[arg(long, env = "VPN_REGISTRY_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,
    /// Web origins whose pages may call the API from a browser (gRPC-Web
    /// and JSON), such as https://portal.example.pk (repeatable). Without
    /// one, browsers allow only pages the registry itself serves.
    #[arg(long = "cors-origin", env = "VPN_REGISTRY_CORS_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<String>,
    /// Where e-mail is sent: smtp://host:port (add ?tls=required for
    /// STARTTLS), smtps://host:port, with user:password@ for credentials.
    /// Without it, messages are kept (visible to administrators) and sent
    /// nowhere.
    #[arg(long, env = "VPN_REGISTRY_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// CA certificate (PEM) the mail server's certificate must chain to,
    /// for a relay with a private CA (smtps:// or ?tls=required).
    #[arg(long, env = "VPN_REGISTRY_SMTP_CA", requires = "smtp_url")]
    pub smtp_ca: Option<std::path::PathBuf>,
    /// The sender of e-mail, as `Name <address>` or an address.
    #[arg(
        long,
        env = "VPN_REGISTRY_MAIL_FROM",
        default_value = "VPN Registry <no-reply@vpn-registry.invalid>"
    )]
    pub mail_from: String,
    /// How often this process looks for expiry reminders to send (0s
    /// disables it here; any number of servers may run it, each reminder is
    /// recorded once).
    #[arg(long, env = "VPN_REGISTRY_REMINDER_INTERVAL", default_value = "10m", value_parser = duration)]
    pub reminder_interval: Duration,
    /// Let webhooks target private, loopback and link-local addresses, and
    /// plain http:// URLs: for tests and closed networks only (otherwise a
    /// webhook could make this server call into its own network).
    #[arg(long, env = "VPN_REGISTRY_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,
    /// The key file that encrypts documents (`vpn-registry document-key
    /// generate`); repeat it during a rotation: the first wraps new
    /// documents' keys, the others still open older ones. Without one,
    /// DocumentService refuses.
    #[arg(
        long = "document-key-file",
        env = "VPN_REGISTRY_DOCUMENT_KEY_FILE",
        value_delimiter = ','
    )]
    pub document_key_files: Vec<std::path::PathBuf>,
    /// Documents of registrations that ended (withdrawn, rejected, revoked,
    /// expired) longer ago are destroyed by the pruning task: content and
    /// data key; the record and the audit trail stay.
    #[arg(long, env = "VPN_REGISTRY_DOCUMENT_RETENTION", default_value = DEFAULT_DOCUMENT_RETENTION, value_parser = duration)]
    pub document_retention: Duration,
    /// The fee schedule (TOML: which kinds pay, from how many addresses,
    /// how much; see `docs/fees.md`). Without one, the regulation's default.
    #[arg(long, env = "VPN_REGISTRY_FEE_SCHEDULE")]
    pub fee_schedule: Option<std::path::PathBuf>,
    /// The largest document accepted, in bytes.
    #[arg(long, env = "VPN_REGISTRY_MAX_DOCUMENT_BYTES", default_value_t = crate::domain::evidence::DEFAULT_MAX_DOCUMENT_BYTES)]
    pub max_document_bytes: u64,
    /// Connections one source address may hold open (TLS or not).
    #[arg(long, env = "VPN_REGISTRY_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = crate::admission::peers::DEFAULT_CONNECTIONS_PER_ADDRESS)]
    pub max_connections_per_address: u32,
    /// Handshakes (TLS, or in plaintext the first bytes) one source address
    /// may have pending at once.
    #[arg(long, env = "VPN_REGISTRY_MAX_HANDSHAKES_PER_ADDRESS", default_value_t = crate::admission::peers::DEFAULT_HANDSHAKES_PER_ADDRESS)]
    pub max_handshakes_per_address: u32,
    /// How long a new connection has to complete its TLS handshake (in
    /// plaintext: to send its first bytes).
    #[arg(long, env = "VPN_REGISTRY_HANDSHAKE_TIMEOUT", default_value = "3s", value_parser = duration)]
    pub handshake_timeout: Duration,
    /// A connection whose peer sends nothing this long is closed.
    #[arg(long, env = "VPN_REGISTRY_IDLE_TIMEOUT", default_value = "120s", value_parser = duration)]
    pub idle_timeout: Duration,
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
    /// WatchChanges streams one principal of a role may hold, as ROLE=N
    /// (repeatable; 0 = no cap of the role's own; defaults lookup=64,
    /// isp=16, reviewer=8).
    #[arg(long = "max-watchers-per-principal", env = "VPN_REGISTRY_MAX_WATCHERS_PER_PRINCIPAL", value_delimiter = ',', value_parser = crate::auth::limits::parse_cap)]
    pub max_watchers_per_principal: Vec<(RoleKind, u32)>,
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
    /// What one source address may hold before authentication.
    pub fn peer_limits(&self) -> crate::admission::peers::PeerLimits {
        crate::admission::peers::PeerLimits {
            handshakes_per_address: self.max_handshakes_per_address,
            connections_per_address: self.max_connections_per_address,
            handshake_timeout: self.handshake_timeout,
            idle_timeout: self.idle_timeout,
        }
    }

    /// Logs every setting `serve` runs with (secrets redacted), once at start.
    pub fn log_settings(&self) {
        let args = self;
        tracing::info!(
            listen = %args.listen,
            database_url = %redact_url(&args.db.database_url),
            read_database_url = %args.read_database_url.as_deref().map(redact_url).unwrap_or_else(|| "(the same)".into()),
            db_max_connections = args.db_max_connections,
            shutdown_grace_secs = args.shutdown_grace_secs,
            expiry_interval_secs = args.expiry_interval_secs,
            feed_poll_interval_ms = args.feed_poll_interval_ms,
            tls = args.tls_cert.is_some(),
            client_certificates_required = args.client_ca.is_some(),
            statement_timeout = ?args.statement_timeout,
            credential_max_staleness = ?args.credential_max_staleness,
            rate_limits = ?args.rate_limits,
            max_in_flight = ?args.max_in_flight,
            failed_auth_rate = args.failed_auth_rate,
            public_url = args.public_url.as_deref().unwrap_or("(the listener's address)"),
            cors_origins = ?args.cors_origins,
            smtp_url = %args.smtp_url.as_deref().map(redact_url).unwrap_or_else(|| "(none: e-mail is kept, not sent)".into()),
            mail_from = args.mail_from,
            reminder_interval = ?args.reminder_interval,
            webhook_allow_private = args.webhook_allow_private,
            document_key_files = ?args.document_key_files,
            max_document_bytes = args.max_document_bytes,
            document_retention = ?args.document_retention,
            fee_schedule = ?args.fee_schedule.as_deref().unwrap_or(std::path::Path::new("(the default)")),
            max_connections_per_address = args.max_connections_per_address,
            max_handshakes_per_address = args.max_handshakes_per_address,
            handshake_timeout = ?args.handshake_timeout,
            idle_timeout = ?args.idle_timeout,
            max_concurrent_requests = args.max_concurrent_requests,
            max_concurrent_streams = args.max_concurrent_streams,
            keepalive_interval = ?args.keepalive_interval,
            max_connection_age = ?args.max_connection_age,
            max_connection_age_grace = ?args.max_connection_age_grace,
            max_watchers = args.max_watchers,
            max_watchers_per_principal = ?args.max_watchers_per_principal,
            metrics_listen = ?args.metrics_listen.0,
            metrics_per_principal = args.metrics_per_principal,
            max_feed_lag = ?args.max_feed_lag,
            access_summary_interval = ?args.access_summary_interval,
            feed_retention = ?args.feed_retention,
            history_retention = ?args.history_retention,
            prune_interval = ?args.prune_interval,
            upstream = args.upstream.as_deref().unwrap_or("(none: follows PostgreSQL)"),
            upstream_token_file = ?args.upstream_token_file,
            upstream_ca = ?args.upstream_ca,
            upstream_client_cert = ?args.upstream_client_cert,
            upstream_journal = args.upstream_journal,
            "starting vpn-registry {}", env!("CARGO_PKG_VERSION")
        );
    }

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
            documents: self.document_retention,
            every: self.prune_interval,
        })
    }

    pub fn expiry_interval(&self) -> Option<Duration> {
        (self.expiry_interval_secs > 0).then(|| Duration::from_secs(self.expiry_interval_secs))
    }
}

/// A web origin: scheme, host and port only (`https://portal.example.pk`).
pub(crate) fn parse_origin(s: &str) -> Result<String, String> {
    let uri: axum::http::Uri = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    let bare = uri.path() == "/" && !s.ends_with('/') && uri.query().is_none();
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() || !bare {
        return Err(format!(
            "{s:?}: expected an origin such as https://portal.example.pk (no path)"
        ));
    }
    Ok(s.to_owned())
}

/// An absolute http(s) URL without a query or fragment.
pub(crate) fn parse_public_url(s: &str) -> Result<String, String> {
    let uri: axum::http::Uri = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.authority().is_none() || uri.query().is_some() {
        return Err(format!(
            "{s:?}: expected an absolute http(s) URL such as https://registry.example.pk"
        ));
    }
    Ok(s.trim_end_matches('/').to_owned())
}
