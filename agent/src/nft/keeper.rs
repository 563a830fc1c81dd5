//! The thread that keeps the kernel's sets (netlink calls block): brought
//! up to the follower whenever woken, switched to the `--on-stale`
//! fallback and back as contact is lost and found, compared with the
//! expected set (and repaired) every verify interval. It reports to the
//! health (in step or not, alive) and the metrics after every pass.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use super::enforce::{Enforcer, Plan, now};
use crate::config::NftConfig;
use crate::follow::{Shared, read};
use crate::health::{Health, OnStale};
use crate::metrics::{Metrics, seconds_since};

/// How often the thread looks at the stale clock without being woken.
const TICK: Duration = Duration::from_secs(1);

/// The running thread: wake it after a change; drop `wake` to stop it.
pub struct Keeper {
    pub wake: Sender<()>,
    pub thread: std::thread::JoinHandle<()>,
}

/// Adopts and reconciles the kernel's sets now (before the upstream is
/// asked), then keeps them on a thread of their own.
pub fn start(
    config: NftConfig,
    on_stale: OnStale,
    shared: Shared,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Keeper> {
    let mut enforcer = Enforcer::start(&config, &read(&shared).held)
        .map_err(|e| anyhow::anyhow!("nftables ({} {}): {e}", config.target.family, config.target.table))?;
    tracing::info!(sets = ?enforcer.sizes(), "the kernel's sets hold the state");
    health.set_kernel_in_step(true);
    health.beat();
    metrics.set_elements(&enforcer.sizes());
    let (wake, woken) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::Builder::new().name("nft".into()).spawn(move || {
        let pass = Pass {
            shared,
            health,
            metrics,
            on_stale,
        };
        pass.run(&mut enforcer, &woken, config.verify_interval);
    })?;
    Ok(Keeper { wake, thread })
}

struct Pass {
    shared: Shared,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    on_stale: OnStale,
}

impl Pass {
    fn run(&self, enforcer: &mut Enforcer, woken: &Receiver<()>, verify_interval: Duration) {
        let mut verified = Instant::now();
        loop {
            let woke = match woken.recv_timeout(TICK) {
                Ok(()) => {
                    while woken.try_recv().is_ok() {}
                    true
                }
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            self.health.beat();
            let fallback = self.health.stale(now()).then_some(self.on_stale);
            if !enforcer.has_fallback(fallback) {
                self.timed(|| enforcer.set_fallback(fallback));
            }
            if enforcer.has_fallback(fallback) {
                self.metrics.set_holding(match fallback {
                    None => "registry",
                    Some(OnStale::Hold) => "last_good",
                    Some(OnStale::Open) => "everything",
                    Some(OnStale::Closed) => "nothing",
                });
            }
            if woke || !enforcer.in_step() {
                // Planned under the follower's lock, done without it.
                let plan = enforcer.plan(&read(&self.shared));
                let announced = match &plan {
                    Plan::Nothing => None,
                    Plan::Apply(_, announced) => Some(announced.clone()),
                    Plan::Replace | Plan::Repair => Some(Vec::new()),
                };
                if let Some(announced) = announced
                    && self.timed(|| enforcer.execute(plan))
                {
                    for at in announced {
                        self.metrics.commit_to_kernel.observe(seconds_since(at));
                    }
                }
            }
            if verified.elapsed() >= verify_interval {
                verified = Instant::now();
                self.metrics.verify_runs.inc();
                match enforcer.repair() {
                    Ok(differences) => {
                        self.metrics
                            .verify_differences
                            .set(i64::try_from(differences).unwrap_or(i64::MAX));
                    }
                    Err(e) => tracing::error!(error = %e, "comparing the kernel's sets failed"),
                }
            }
            self.health.set_kernel_in_step(enforcer.in_step());
            self.metrics.set_elements(&enforcer.sizes());
        }
    }

    /// Runs one kernel change, timing it; whether it succeeded.
    fn timed<E>(&self, change: impl FnOnce() -> Result<(), E>) -> bool {
        let started = Instant::now();
        let ok = change().is_ok();
        self.metrics.apply_duration.observe(started.elapsed().as_secs_f64());
        if !ok {
            self.metrics.apply_failures.inc();
        }
        ok
    }
}
