//! The background work of a `serve` process, started before it answers:
//! the credential follower, the lookup replica's source (PostgreSQL's feed
//! with pruning and expiry, or a fan-out replica's upstream), and what the
//! operator watches (health probe, metrics listener, lookup summary).

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;
use tokio::{net::TcpListener, sync::watch, task::JoinSet};
use tonic_health::server::HealthReporter;

use super::Options;
use crate::auth::{AuthLayer, Credentials, credentials::RELOAD_INTERVAL, in_flight::InFlightCaps, limits::RateLimits};
use crate::db::notify::Following;
use crate::fence::Fence;
use crate::grpc::upstream::Upstream;
use crate::lookup::{Backfill, Horizon, Lookups, ReplicaSlot, follower::load_and_follow, watchers::Watchers};
use crate::notify;
use crate::observe::{self, Metrics, Vitals, health, summary::LookupSummary, vitals};
use crate::registry::Registry;
use crate::tasks::{expiry, prune};

/// How often rate-limiter state of idle keys is dropped.
const LIMITER_CLEANUP_INTERVAL: Duration = Duration::from_secs(60);
/// How often recorded latencies are folded into histogram buckets.
const LATENCY_FOLD_INTERVAL: Duration = Duration::from_secs(5);

/// What the router is built from, once the background work runs.
pub(super) struct Parts {
    pub registry: Registry,
    pub lookups: Lookups,
    pub upstream: Option<Upstream>,
    pub auth: AuthLayer,
    pub metrics: Arc<Metrics>,
    pub summary: Arc<LookupSummary>,
    pub accounts: crate::accounts::Accounts,
}

/// Where background tasks start from, and where they are kept until the
/// server stops.
pub(super) struct Background<'a> {
    pub pool: &'a PgPool,
    /// Where the replica, history and credentials read (the primary, or a
    /// hot standby).
    pub reads: PgPool,
    pub options: &'a Options,
    pub stopping: &'a watch::Sender<bool>,
    pub tasks: JoinSet<()>,
}

impl Background<'_> {
    /// Starts everything; returns what the router needs.
    pub async fn start(&mut self, http: Option<TcpListener>, reporter: &HealthReporter) -> anyhow::Result<Parts> {
        let following = Following::choose(&self.reads, self.options.notifications).await;
        let (credentials, limits) = self.follow_credentials(following).await?;
        let fence = Fence::default();
        let registry = Registry::fenced(self.pool.clone(), fence.clone()).with_fees(self.options.fee_schedule.clone());
        let expiry = Arc::new(expiry::Stats::default());
        let deliveries = Arc::new(notify::Stats::default());
        let upstream = self.options.upstream.clone().map(Upstream::new).transpose()?;
        let replica: ReplicaSlot = Arc::default();
        let backfill = match &upstream {
            Some(upstream) => self.follow_upstream(upstream, &replica),
            None => self.follow_database(&registry, following, &replica, &expiry, &deliveries),
        };
        let horizon = Horizon::new(self.pool.clone(), fence.clone());
        let o = self.options;
        let watchers = Watchers::new(o.max_watchers, &o.max_watchers_per_principal);
        let lookups = Lookups::new(backfill, replica, horizon, watchers, self.stopping.subscribe());
        let metrics = Arc::new(match http {
            Some(_) => Metrics::enabled(self.options.metrics_per_principal),
            None => Metrics::disabled(),
        });
        let vitals = Arc::new(Vitals::new(vitals::Sources {
            lookups: lookups.clone(),
            credentials: credentials.clone(),
            limits: limits.clone(),
            pools: self.pools(),
            expiry,
            deliveries,
            metrics: metrics.clone(),
            max_feed_lag: self.options.max_feed_lag,
            stopping: self.stopping.subscribe(),
        }));
        let summary = self.observe(vitals, &metrics, http, reporter, fence);
        Ok(Parts {
            registry,
            lookups,
            upstream,
            auth: AuthLayer::new(credentials, limits, InFlightCaps::new(&self.options.max_in_flight)),
            metrics,
            summary,
            accounts: crate::accounts::Accounts::new(self.pool.clone(), crate::auth::password::Passwords::new()?),
        })
    }

    /// Credentials held in memory and followed, and the rate limits.
    async fn follow_credentials(
        &mut self,
        following: Following,
    ) -> anyhow::Result<(Arc<Credentials>, Arc<RateLimits>)> {
        let o = self.options;
        let credentials = Credentials::load(
            self.reads.clone(),
            self.pool.clone(),
            o.credential_max_staleness,
            o.clock.clone(),
        )
        .await?;
        let follow = credentials
            .clone()
            .follow(following, RELOAD_INTERVAL, self.stopping.subscribe());
        self.tasks.spawn(follow);
        let limits = Arc::new(RateLimits::new(&o.rate_limits, o.failed_auth_rate));
        self.tasks.spawn(forget_idle_limits(limits.clone()));
        Ok((credentials, limits))
    }

    /// A fan-out replica: the active set from upstream, no writes.
    fn follow_upstream(&mut self, upstream: &Upstream, replica: &ReplicaSlot) -> Backfill {
        let follow = upstream
            .clone()
            .follow(replica.clone(), self.options.watch_backlog, self.stopping.subscribe());
        self.tasks.spawn(follow);
        Backfill::Journal
    }

    /// A replica reading PostgreSQL: the feed follower, pruning and expiry.
    fn follow_database(
        &mut self,
        registry: &Registry,
        following: Following,
        replica: &ReplicaSlot,
        stats: &Arc<expiry::Stats>,
        deliveries: &Arc<notify::Stats>,
    ) -> Backfill {
        let o = self.options;
        self.tasks.spawn(load_and_follow(
            self.reads.clone(),
            replica.clone(),
            following,
            o.feed_poll_interval,
            o.watch_backlog,
            self.stopping.subscribe(),
        ));
        if let Some(retention) = o.retention {
            self.tasks
                .spawn(prune::run(self.pool.clone(), retention, self.stopping.subscribe()));
        }
        if let Some(every) = o.expiry_interval {
            let run = expiry::run(registry.clone(), every, stats.clone(), self.stopping.subscribe());
            self.tasks.spawn(run);
        }
        let delivery = notify::Delivery {
            mailer: o.mailer.clone(),
            public_url: o.public_url.clone(),
            webhooks: notify::webhook::Sender::new(o.webhook_allow_private),
        };
        let deliver = notify::deliver(
            self.pool.clone(),
            delivery,
            deliveries.clone(),
            self.stopping.subscribe(),
        );
        self.tasks.spawn(deliver);
        if let Some(every) = o.reminder_interval {
            self.tasks
                .spawn(notify::remind(self.pool.clone(), every, self.stopping.subscribe()));
        }
        Backfill::Feed(self.reads.clone())
    }

    /// The pools the operator sees, by name.
    fn pools(&self) -> Vec<(&'static str, PgPool)> {
        let mut pools = vec![("primary", self.pool.clone())];
        if self.options.read_pool.is_some() {
            pools.push(("read", self.reads.clone()));
        }
        pools
    }

    /// What the operator watches: the health probe, the metrics and health
    /// listener, and the periodic lookup summary (returned, for the router).
    fn observe(
        &mut self,
        vitals: Arc<Vitals>,
        metrics: &Arc<Metrics>,
        http: Option<TcpListener>,
        reporter: &HealthReporter,
        fence: Fence,
    ) -> Arc<LookupSummary> {
        self.tasks.spawn(health::probe(
            health::Probe {
                primary: self.pool.clone(),
                reads: self.reads.clone(),
                fence,
                serves_registry: self.options.upstream.is_none(),
            },
            vitals.clone(),
            reporter.clone(),
            self.stopping.subscribe(),
        ));
        if let Some(l) = http {
            self.tasks.spawn(fold_latencies(metrics.clone()));
            self.tasks.spawn(observe::http::serve(l, vitals));
        }
        let summary = Arc::new(LookupSummary::default());
        let (every, stopped) = (self.options.access_summary_interval, self.stopping.subscribe());
        let logging = summary.clone();
        self.tasks.spawn(async move { logging.log_every(every, stopped).await });
        summary
    }
}

async fn forget_idle_limits(limits: Arc<RateLimits>) {
    loop {
        tokio::time::sleep(LIMITER_CLEANUP_INTERVAL).await;
        limits.forget_idle();
    }
}

/// Folds recorded latencies into histogram buckets now and then, so memory
/// stays bounded when nobody scrapes.
async fn fold_latencies(metrics: Arc<Metrics>) {
    loop {
        tokio::time::sleep(LATENCY_FOLD_INTERVAL).await;
        metrics.upkeep();
    }
}
