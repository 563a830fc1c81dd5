//! The thread that keeps the kernel's sets (netlink calls block): brought
//! up to the follower whenever woken, switched to the `--on-stale`
//! fallback and back as contact is lost and found, compared with the
//! expected set (and repaired) every verify interval. It reports to the
//! health (in step or not, alive) and the metrics after every pass.
//!
//! Reading a million-element set back takes the kernel tens of seconds, so
//! a second thread reads on a socket of its own while changes go on; the
//! listing is compared only if no transaction happened meanwhile (the
//! ruleset's generation is the same), and otherwise read again later.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender};
use std::time::{Duration, Instant};

use super::enforce::{Enforcer, Plan, now};
use super::kernel::Kernel;
use super::layout::{Family, Layout, SetKind};
use crate::config::NftConfig;
use crate::follow::{Shared, read};
use crate::health::{Health, OnStale};
use crate::metrics::{Metrics, seconds_since};

/// How often the thread looks at the stale clock without being woken.
const TICK: Duration = Duration::from_secs(1);

/// How soon a listing overtaken by changes is read again.
const REREAD: Duration = Duration::from_secs(10);

/// What the keeper's thread is told.
pub enum Message {
    /// The follower changed.
    Wake,
    /// One of the kernel's sets as listed at a generation.
    Listed(Box<Layout>, u32, Family, SetKind),
    /// Listing a set failed (it may be gone).
    ListingFailed,
    /// The agent stops (the sets keep their contents).
    Stop,
}

/// The running thread: wake it after a change; send [`Message::Stop`] to
/// stop it.
pub struct Keeper {
    pub wake: Sender<Message>,
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
    crate::memory::release();
    tracing::info!(sets = ?enforcer.sizes(), "the kernel's sets hold the state");
    health.set_kernel_in_step(true);
    health.beat();
    metrics.set_elements(&enforcer.sizes());
    let (wake, woken) = std::sync::mpsc::channel::<Message>();
    let (outcome, outcomes) = std::sync::mpsc::sync_channel::<bool>(1);
    let reader = Kernel::connect(config.target.clone(), config.netns.as_deref())
        .map_err(|e| anyhow::anyhow!("nftables, a second socket for verifying: {e}"))?;
    let listed = wake.clone();
    std::thread::Builder::new()
        .name("nft-verify".into())
        .spawn(move || verifier(reader, &listed, &outcomes, config.verify_interval))?;
    let thread = std::thread::Builder::new().name("nft".into()).spawn(move || {
        let pass = Pass {
            shared,
            health,
            metrics,
            on_stale,
            differences: std::cell::Cell::new([0; 6]),
        };
        pass.run(&mut enforcer, &woken, &outcome);
    })?;
    Ok(Keeper { wake, thread })
}

/// Lists the kernel's sets every `interval` (or [`REREAD`] after a listing
/// that changes overtook), one set at a time between two readings of the
/// generation, and hands each listing to the keeper, which answers whether
/// it was of use. Ends when the keeper does.
fn verifier(mut kernel: Kernel, keeper: &Sender<Message>, outcomes: &Receiver<bool>, interval: Duration) {
    let mut wait = interval;
    loop {
        match outcomes.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(_) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let mut complete = true;
        for (family, kind) in SetKind::each() {
            let listing = (|| {
                let before = kernel.generation()?;
                let layout = kernel.read_set(family, kind, now())?;
                Ok::<_, super::kernel::NftError>((before == kernel.generation()?).then_some((layout, before)))
            })();
            complete &= match listing {
                Ok(Some((layout, generation))) => {
                    let listed = Message::Listed(Box::new(layout), generation, family, kind);
                    if keeper.send(listed).is_err() {
                        return;
                    }
                    match outcomes.recv() {
                        Ok(used) => used,
                        Err(_) => return,
                    }
                }
                Ok(None) => false,
                Err(e) => {
                    tracing::error!(error = %e, "listing the kernel's sets failed; repairing");
                    if keeper.send(Message::ListingFailed).is_err() {
                        return;
                    }
                    false
                }
            };
        }
        if !complete {
            tracing::debug!("the sets changed while being listed; listing again soon");
        }
        wait = if complete { interval } else { REREAD };
    }
}

struct Pass {
    shared: Shared,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    on_stale: OnStale,
    /// Per set (IPv4 hosts, nets, flows, then IPv6), the elements that
    /// differed at its last comparison.
    differences: std::cell::Cell<[usize; 6]>,
}

impl Pass {
    fn run(&self, enforcer: &mut Enforcer, woken: &Receiver<Message>, outcome: &SyncSender<bool>) {
        loop {
            let mut woke = false;
            let mut listed = Vec::new();
            match woken.recv_timeout(TICK) {
                Ok(first) => {
                    for message in std::iter::once(first).chain(woken.try_iter()) {
                        match message {
                            Message::Wake => woke = true,
                            Message::Listed(layout, generation, family, kind) => {
                                listed.push((layout, generation, family, kind));
                            }
                            Message::ListingFailed => enforcer.mark_damaged(),
                            Message::Stop => return,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
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
                let whole = matches!(plan, Plan::Replace | Plan::Repair);
                if let Some(announced) = announced
                    && self.timed(|| enforcer.execute(plan))
                {
                    for at in announced {
                        self.metrics.commit_to_kernel.observe(seconds_since(at));
                    }
                }
                if whole {
                    crate::memory::release();
                }
            }
            for (layout, generation, family, kind) in listed {
                // After this pass's own changes: a listing from before them
                // is overtaken, and read again.
                let used = match enforcer.repair_from(*layout, generation, family, kind) {
                    Ok(Some(differences)) => {
                        let mut each = self.differences.get();
                        each[family.index() * 3 + kind as usize] = differences;
                        self.differences.set(each);
                        if (family, kind) == (Family::V6, SetKind::Flows) {
                            // The last of the six: one comparison done.
                            self.metrics.verify_runs.inc();
                        }
                        let total: usize = each.iter().sum();
                        self.metrics
                            .verify_differences
                            .set(i64::try_from(total).unwrap_or(i64::MAX));
                        true
                    }
                    Ok(None) => {
                        self.metrics.verify_overtaken.inc();
                        false
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "comparing the kernel's sets failed");
                        false
                    }
                };
                let _ = outcome.send(used);
                // The listing is gone.
                crate::memory::release();
            }
            let caught_up = enforcer.is_at(&read(&self.shared).held.position);
            self.health.set_kernel_in_step(enforcer.in_step() && caught_up);
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
