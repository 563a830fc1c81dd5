//! The options of a running server: what `serve`'s flags say, or what a
//! test chooses, with `serve`'s defaults.

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;

use crate::admission::peers::PeerLimits;
use crate::clock::Clock;
use crate::domain::principal::RoleKind;
use crate::flags::{self, ServeArgs};
use crate::grpc::upstream::UpstreamConfig;
use crate::notify::mail::Mailer;
use crate::tasks::prune::Retention;
use crate::tls::Tls;

/// Options of a running server that tests and `serve` choose.
#[derive(Clone)]
pub struct Options {
    /// How long in-flight calls may run on after shutdown begins.
    pub shutdown_grace: Duration,
    /// How often the expiry task looks for registrations past their validity
    /// (or whose institution's PSEB registration lapsed); `None` disables it.
    pub expiry_interval: Option<Duration>,
    /// How often the lookup replica reads the change feed even without a
    /// notification (a lost NOTIFY delays a change by at most this).
    pub feed_poll_interval: Duration,
    /// Applied change batches kept for WatchChanges streams; a consumer
    /// further behind is dropped (RESOURCE_EXHAUSTED) and resumes.
    pub watch_backlog: usize,
    /// Serve TLS (and require client certificates if it says so).
    pub tls: Option<Arc<Tls>>,
    /// What one source address may hold before authentication.
    pub peer_limits: PeerLimits,
    /// Per-role rate overrides (calls per second per principal; 0 = none).
    pub rate_limits: Vec<(RoleKind, u32)>,
    /// Per-role overrides of the calls one principal may have in flight
    /// (0 = no cap of the role's own).
    pub max_in_flight: Vec<(RoleKind, u32)>,
    pub failed_auth_rate: u32,
    pub credential_max_staleness: Duration,
    pub max_concurrent_requests: usize,
    pub max_concurrent_streams: u32,
    pub keepalive_interval: Duration,
    pub max_connection_age: Duration,
    pub max_connection_age_grace: Duration,
    /// WatchChanges streams at once; more answer RESOURCE_EXHAUSTED.
    pub max_watchers: usize,
    /// Per-role overrides of the streams one principal may hold (0 = no
    /// cap of the role's own).
    pub max_watchers_per_principal: Vec<(RoleKind, u32)>,
    /// Where the replica, history lookups and credentials read (a hot
    /// standby will do); `None`: the primary. Writes always go to the primary.
    pub read_pool: Option<PgPool>,
    /// LISTEN for changes (else, and on a standby, follow by polling only).
    pub notifications: bool,
    /// Label calls with their token in the metrics (reveals who is connected).
    pub metrics_per_principal: bool,
    /// Readiness fails when the index is further behind the feed than this.
    pub max_feed_lag: Duration,
    /// How often lookups (logged one by one only at debug) are summarised.
    pub access_summary_interval: Duration,
    /// Pruning of the feed and the history; `None` disables it here.
    pub retention: Option<Retention>,
    /// Follow this replica instead of PostgreSQL and serve lookups only (a
    /// fan-out replica); PostgreSQL then only holds the credentials.
    pub upstream: Option<UpstreamConfig>,
    /// What token expiry is judged by (tests move it forward).
    pub clock: Clock,
    /// The registry's address as its clients and people reach it (behind a
    /// proxy, say): RDAP links name it. `None`: the listener's own address.
    pub public_url: Option<String>,
    /// Web origins whose pages may call the API from a browser (CORS).
    pub cors_origins: Vec<String>,
    /// Where e-mail goes (`None`: kept, not sent).
    pub mailer: Option<Mailer>,
    /// How often reminders are looked for; `None` disables the pass here.
    pub reminder_interval: Option<Duration>,
    /// Webhooks may target private, loopback and link-local addresses, and
    /// plain http:// (tests, closed networks).
    pub webhook_allow_private: bool,
    /// The keys documents are encrypted under (`None`: documents refused).
    pub document_keys: Option<Arc<crate::vault::Keyring>>,
    /// The largest document accepted, in bytes.
    pub max_document_bytes: u64,
    /// What applications owe.
    pub fee_schedule: Arc<crate::domain::fees::FeeSchedule>,
}

impl Options {
    /// The options `serve` runs with.
    pub fn from_args(
        args: &ServeArgs,
        tls: Option<Arc<Tls>>,
        mailer: Option<Mailer>,
        document_keys: Option<Arc<crate::vault::Keyring>>,
        fee_schedule: Arc<crate::domain::fees::FeeSchedule>,
    ) -> Self {
        Self {
            shutdown_grace: args.shutdown_grace(),
            expiry_interval: args.expiry_interval(),
            feed_poll_interval: args.feed_poll_interval(),
            watch_backlog: crate::lookup::replica::DEFAULT_WATCH_BACKLOG,
            tls,
            peer_limits: args.peer_limits(),
            rate_limits: args.rate_limits.clone(),
            max_in_flight: args.max_in_flight.clone(),
            failed_auth_rate: args.failed_auth_rate,
            credential_max_staleness: args.credential_max_staleness,
            max_concurrent_requests: args.max_concurrent_requests,
            max_concurrent_streams: args.max_concurrent_streams,
            keepalive_interval: args.keepalive_interval,
            max_connection_age: args.max_connection_age,
            max_connection_age_grace: args.max_connection_age_grace,
            max_watchers: args.max_watchers,
            max_watchers_per_principal: args.max_watchers_per_principal.clone(),
            read_pool: None,
            notifications: true,
            metrics_per_principal: args.metrics_per_principal,
            max_feed_lag: args.max_feed_lag,
            access_summary_interval: args.access_summary_interval,
            retention: args.retention(),
            upstream: args.upstream(),
            clock: Clock::default(),
            public_url: args.public_url.clone(),
            cors_origins: args.cors_origins.clone(),
            mailer,
            reminder_interval: (!args.reminder_interval.is_zero()).then_some(args.reminder_interval),
            webhook_allow_private: args.webhook_allow_private,
            document_keys,
            max_document_bytes: args.max_document_bytes,
            fee_schedule,
        }
    }
}

impl Default for Options {
    /// The defaults `serve` has, plaintext.
    fn default() -> Self {
        let parse = |s: &str| flags::duration(s).unwrap_or(Duration::from_secs(60));
        Self {
            shutdown_grace: Duration::from_secs(flags::DEFAULT_SHUTDOWN_GRACE_SECS),
            expiry_interval: Some(Duration::from_secs(flags::DEFAULT_EXPIRY_INTERVAL_SECS)),
            feed_poll_interval: Duration::from_millis(flags::DEFAULT_FEED_POLL_INTERVAL_MS),
            watch_backlog: crate::lookup::replica::DEFAULT_WATCH_BACKLOG,
            tls: None,
            peer_limits: PeerLimits::default(),
            rate_limits: Vec::new(),
            max_in_flight: Vec::new(),
            failed_auth_rate: crate::auth::limits::DEFAULT_FAILED_AUTH_RATE,
            credential_max_staleness: parse(flags::DEFAULT_CREDENTIAL_MAX_STALENESS),
            max_concurrent_requests: flags::DEFAULT_MAX_CONCURRENT_REQUESTS,
            max_concurrent_streams: flags::DEFAULT_MAX_CONCURRENT_STREAMS,
            keepalive_interval: parse(flags::DEFAULT_KEEPALIVE_INTERVAL),
            max_connection_age: parse(flags::DEFAULT_MAX_CONNECTION_AGE),
            max_connection_age_grace: parse(flags::DEFAULT_MAX_CONNECTION_AGE_GRACE),
            max_watchers: flags::DEFAULT_MAX_WATCHERS,
            max_watchers_per_principal: Vec::new(),
            read_pool: None,
            notifications: true,
            metrics_per_principal: false,
            max_feed_lag: parse(flags::DEFAULT_MAX_FEED_LAG),
            access_summary_interval: parse(flags::DEFAULT_ACCESS_SUMMARY_INTERVAL),
            retention: Some(Retention {
                feed: parse(flags::DEFAULT_FEED_RETENTION),
                history: parse(flags::DEFAULT_HISTORY_RETENTION),
                documents: parse(flags::DEFAULT_DOCUMENT_RETENTION),
                every: parse(flags::DEFAULT_PRUNE_INTERVAL),
            }),
            upstream: None,
            clock: Clock::default(),
            public_url: None,
            cors_origins: Vec::new(),
            mailer: None,
            reminder_interval: Some(Duration::from_secs(600)),
            webhook_allow_private: false,
            document_keys: None,
            max_document_bytes: crate::domain::evidence::DEFAULT_MAX_DOCUMENT_BYTES,
            fee_schedule: Arc::default(),
        }
    }
}
