//! The live state an operator asks about, in one place: what `/readyz`,
//! `/status`, `/metrics` and gRPC health all read, so they cannot disagree.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::Serialize;
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use super::metrics::Metrics;
use crate::auth::{Credentials, limits::RateLimits};
use crate::db::outbox::Depth;
use crate::domain::state::State;
use crate::lookup::Lookups;
use crate::notify;
use crate::sync::lock;
use crate::tasks::expiry;

/// What the last health probe found.
#[derive(Debug, Clone, Default)]
pub struct Probed {
    /// PostgreSQL (the primary) answered the last probe.
    pub database_up: bool,
    /// The feed's session and last serial there.
    pub feed: Option<(Uuid, i64)>,
    /// How far behind the index is; `None` until measured.
    pub lag: Option<Duration>,
    /// Why the write database cannot be trusted (`fence`), if it cannot.
    pub split: Option<String>,
}

/// The state of one server.
pub struct Vitals {
    started: Instant,
    sources: Sources,
    probed: Mutex<Probed>,
    /// Registrations by state, once counted.
    registrations: Mutex<Option<Vec<(State, i64)>>>,
    /// The notification outbox, as last measured.
    outbox: Mutex<Option<Depth>>,
}

/// The checks behind readiness.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Checks {
    pub index_loaded: bool,
    pub feed_current: bool,
    pub database_up: bool,
    /// The write database agrees with the feed this replica applied.
    pub database_consistent: bool,
    pub shutting_down: bool,
}

impl Checks {
    /// Ready for any call: what `/readyz` and the empty gRPC service name report.
    pub fn ready(&self) -> bool {
        self.lookups_ready() && self.registry_ready()
    }

    /// Lookups answer from memory: they need the index, current, not the database.
    pub fn lookups_ready(&self) -> bool {
        self.index_loaded && self.feed_current && !self.shutting_down
    }

    /// The registry services need the database, one that agrees with the feed.
    pub fn registry_ready(&self) -> bool {
        self.database_up && self.database_consistent && !self.shutting_down
    }
}

/// The `/status` document.
#[derive(Debug, Serialize)]
pub struct Status {
    pub version: &'static str,
    pub uptime_seconds: f64,
    pub ready: bool,
    pub checks: Checks,
    pub feed: FeedStatus,
    pub index: IndexStatus,
    pub watchers: usize,
    pub credentials: usize,
    /// The notification outbox (servers of the registry only).
    pub notifications: Option<NotificationStatus>,
}

#[derive(Debug, Serialize)]
pub struct NotificationStatus {
    #[serde(flatten)]
    pub outbox: Depth,
    /// Deliveries by this process since it started: channel -> outcome -> count.
    pub deliveries: std::collections::BTreeMap<&'static str, std::collections::BTreeMap<&'static str, u64>>,
}

#[derive(Debug, Serialize)]
pub struct FeedStatus {
    /// Why writes are refused (the write database is behind this replica).
    pub split: Option<String>,
    pub session: Option<Uuid>,
    pub applied_serial: Option<i64>,
    pub database_serial: Option<i64>,
    pub lag_seconds: Option<f64>,
    pub max_lag_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct IndexStatus {
    pub ipv4: usize,
    pub ipv6: usize,
}

/// What a server's vitals are read from.
pub struct Sources {
    pub lookups: Lookups,
    pub credentials: Arc<Credentials>,
    pub limits: Arc<RateLimits>,
    pub pools: Vec<(&'static str, PgPool)>,
    pub expiry: Arc<expiry::Stats>,
    pub deliveries: Arc<notify::Stats>,
    pub metrics: Arc<Metrics>,
    pub max_feed_lag: Duration,
    pub stopping: watch::Receiver<bool>,
}

impl Vitals {
    pub fn new(sources: Sources) -> Self {
        Self {
            started: Instant::now(),
            sources,
            probed: Mutex::default(),
            registrations: Mutex::default(),
            outbox: Mutex::default(),
        }
    }

    pub fn lookups(&self) -> &Lookups {
        &self.sources.lookups
    }

    pub fn probed(&self) -> Probed {
        lock(&self.probed).clone()
    }

    pub fn set_probed(&self, p: Probed) {
        *lock(&self.probed) = p;
    }

    pub fn set_outbox(&self, depth: Depth) {
        *lock(&self.outbox) = Some(depth);
    }

    pub fn set_registrations(&self, counts: Vec<(State, i64)>) {
        *lock(&self.registrations) = Some(counts);
    }

    pub fn checks(&self) -> Checks {
        self.checks_of(&self.probed(), self.sources.lookups.loaded().is_some())
    }

    fn checks_of(&self, probed: &Probed, index_loaded: bool) -> Checks {
        Checks {
            index_loaded,
            feed_current: probed.lag.is_some_and(|lag| lag <= self.sources.max_feed_lag),
            database_up: probed.database_up,
            database_consistent: probed.split.is_none(),
            shutting_down: *self.sources.stopping.borrow(),
        }
    }

    pub fn status(&self) -> Status {
        let probed = self.probed();
        let replica = self.sources.lookups.loaded();
        let checks = self.checks_of(&probed, replica.is_some());
        let (ipv4, ipv6) = replica.as_ref().map_or((0, 0), |r| r.len_by_family());
        Status {
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            ready: checks.ready(),
            checks,
            feed: FeedStatus {
                split: probed.split.clone(),
                session: replica.as_ref().map(|r| r.session_id()),
                applied_serial: replica.as_ref().map(|r| r.serial()),
                database_serial: probed.feed.map(|(_, serial)| serial),
                lag_seconds: probed.lag.map(|l| l.as_secs_f64()),
                max_lag_seconds: self.sources.max_feed_lag.as_secs_f64(),
            },
            index: IndexStatus { ipv4, ipv6 },
            watchers: self.sources.lookups.watchers(),
            credentials: self.sources.credentials.len(),
            notifications: lock(&self.outbox).clone().map(|outbox| {
                let mut deliveries = std::collections::BTreeMap::new();
                for (channel, outcome, n) in self.sources.deliveries.totals() {
                    deliveries
                        .entry(channel)
                        .or_insert_with(std::collections::BTreeMap::new)
                        .insert(outcome, n);
                }
                NotificationStatus { outbox, deliveries }
            }),
        }
    }

    /// The outbox's gauges and the deliveries' counters.
    fn render_notifications(&self, status: &Status) {
        let m = &self.sources.metrics;
        if let Some(n) = &status.notifications {
            m.gauge("vpn_registry_notifications_pending", &[], n.outbox.pending as f64);
            m.gauge("vpn_registry_notifications_dead", &[], n.outbox.dead as f64);
            m.gauge(
                "vpn_registry_notifications_oldest_pending_seconds",
                &[],
                n.outbox.oldest_pending_seconds.unwrap_or(0.0),
            );
        }
        for (channel, outcome, n) in self.sources.deliveries.totals() {
            m.counter(
                "vpn_registry_notification_deliveries_total",
                &[("channel", channel.into()), ("outcome", outcome.into())],
                n,
            );
        }
    }

    /// The text exposition with every gauge set from the live state.
    pub fn render_metrics(&self) -> Option<String> {
        let s = &self.sources;
        let m = &s.metrics;
        if !m.is_enabled() {
            return None;
        }
        let status = self.status();
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        m.gauge("vpn_registry_build_info", &[("version", status.version.into())], 1.0);
        m.gauge("vpn_registry_uptime_seconds", &[], status.uptime_seconds);
        m.gauge("vpn_registry_ready", &[], flag(status.ready));
        m.gauge("vpn_registry_database_up", &[], flag(status.checks.database_up));
        if let Some(serial) = status.feed.applied_serial {
            m.gauge("vpn_registry_feed_applied_serial", &[], serial as f64);
        }
        m.gauge(
            "vpn_registry_feed_lag_seconds",
            &[],
            status.feed.lag_seconds.unwrap_or(f64::NAN),
        );
        m.gauge(
            "vpn_registry_index_entries",
            &[("family", "ipv4".into())],
            status.index.ipv4 as f64,
        );
        m.gauge(
            "vpn_registry_index_entries",
            &[("family", "ipv6".into())],
            status.index.ipv6 as f64,
        );
        m.gauge("vpn_registry_watchers", &[], status.watchers as f64);
        m.gauge("vpn_registry_credentials", &[], status.credentials as f64);
        for (reason, n) in s.lookups.dropped_watchers() {
            m.counter(
                "vpn_registry_watchers_dropped_total",
                &[("reason", reason.as_str().into())],
                n,
            );
        }
        for (role, n) in s.limits.limited() {
            m.counter("vpn_registry_rate_limited_total", &[("role", role.as_str().into())], n);
        }
        m.counter("vpn_registry_auth_failures_total", &[], s.limits.auth_failures());
        self.render_notifications(&status);
        let (runs, expired) = s.expiry.totals();
        m.counter("vpn_registry_expiry_runs_total", &[], runs);
        m.counter("vpn_registry_registrations_expired_total", &[], expired);
        let counts = lock(&self.registrations).clone();
        if let Some(counts) = counts {
            for state in State::ALL {
                let n = counts.iter().find(|(s, _)| s == state).map_or(0, |(_, n)| *n);
                m.gauge(
                    "vpn_registry_registrations",
                    &[("state", state.as_str().into())],
                    n as f64,
                );
            }
        }
        for (name, pool) in &s.pools {
            let (size, idle) = (pool.size(), pool.num_idle() as u32);
            let labels = |state: &'static str| [("pool", (*name).into()), ("state", state.into())];
            m.gauge("vpn_registry_db_pool_connections", &labels("idle"), f64::from(idle));
            m.gauge(
                "vpn_registry_db_pool_connections",
                &labels("in_use"),
                f64::from(size.saturating_sub(idle)),
            );
        }
        m.render()
    }
}
