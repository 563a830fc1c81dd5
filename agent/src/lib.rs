//! `vpn-registry-agent`: keeps an ISP gateway's allow-list in sync with the
//! national VPN registry. It follows the registry's change stream, keeps its
//! state on disk (enforcing from it at once after a restart, before the
//! registry answers), and writes the current set to the files the
//! gateway's tools read. Errors, restarts and outages never empty what it
//! enforces: the last good set stays.

pub mod config;
pub mod follow;
pub mod health;
pub mod memory;
pub mod metrics;
pub mod nft;
pub mod ops;
pub mod output;
pub mod pb;
pub mod serve;
pub mod set;
pub mod state;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use config::Config;
use follow::{Follower, Shared, Watch};
use health::Health;
use metrics::Metrics;
use set::ActiveSet;

/// The listeners the agent answers on (tests bind port 0 and read it back).
#[derive(Default)]
pub struct Listeners {
    /// `--serve`: the current set.
    pub serve: Option<tokio::net::TcpListener>,
    /// `--metrics-listen`: metrics and health.
    pub metrics: Option<tokio::net::TcpListener>,
}

/// The agent as it stopped: what it held, and what it reported.
#[derive(Debug)]
pub struct Stopped {
    pub follower: Shared,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
}

/// Runs the agent until `stop` resolves: state first, then the listeners,
/// then the upstreams.
pub async fn run(config: Config, stop: impl Future<Output = ()>) -> anyhow::Result<Stopped> {
    async fn bind(addr: Option<std::net::SocketAddr>, flag: &str) -> anyhow::Result<Option<tokio::net::TcpListener>> {
        match addr {
            Some(addr) => Ok(Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("{flag} {addr}: {e}"))?,
            )),
            None => Ok(None),
        }
    }
    let listeners = Listeners {
        serve: bind(config.serve, "--serve").await?,
        metrics: bind(config.metrics_listen, "--metrics-listen").await?,
    };
    run_with(config, listeners, stop).await
}

/// [`run`] answering on `listeners`.
pub async fn run_with(config: Config, listeners: Listeners, stop: impl Future<Output = ()>) -> anyhow::Result<Stopped> {
    std::fs::create_dir_all(&config.state_dir)
        .map_err(|e| anyhow::anyhow!("--state-dir {}: {e}", config.state_dir.display()))?;
    let held = match state::load(&config.state_dir)? {
        Some(held) => {
            tracing::info!(
                entries = held.len(),
                serial = held.position.serial,
                "state loaded; enforcing it"
            );
            publish(&config, &held);
            memory::release();
            held
        }
        None => ActiveSet::default(),
    };
    let health = Arc::new(Health::new(
        &config.state_dir,
        config.max_stale,
        !held.position.session.is_empty(),
        config.nft.is_some(),
    ));
    let metrics = Arc::new(Metrics::new());
    let shared: Shared = Arc::new(RwLock::new(Follower::new(held)));
    // The kernel's sets hold the state before the upstream is asked.
    let keeper = match &config.nft {
        Some(nft) => Some(nft::keeper::start(
            nft.clone(),
            config.on_stale,
            shared.clone(),
            health.clone(),
            metrics.clone(),
        )?),
        None => None,
    };
    let mut tasks = Vec::new();
    if let Some(listener) = listeners.serve {
        tasks.push(tokio::spawn(serve::serve(listener, shared.clone())));
    }
    if let Some(listener) = listeners.metrics {
        tasks.push(tokio::spawn(ops::serve(
            listener,
            shared.clone(),
            health.clone(),
            metrics.clone(),
        )));
    }
    tasks.push(tokio::spawn(keep_contact(health.clone())));
    if let Some(every) = sd_notify::watchdog_enabled() {
        tasks.push(tokio::spawn(watchdog(health.clone(), every)));
    }
    let pending = Arc::new(Pending::default());
    tasks.push(tokio::spawn(write_behind(
        config.clone(),
        shared.clone(),
        pending.clone(),
    )));
    // Ready for systemd: the sets hold the state, the listeners answer.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let changed = |_: &ActiveSet| {
        pending.mark();
        if let Some(keeper) = &keeper {
            // Not ready until the kernel holds this change too.
            health.set_kernel_in_step(false);
            let _ = keeper.wake.send(nft::keeper::Message::Wake);
        }
    };
    let watch = Watch {
        health: &health,
        metrics: &metrics,
    };
    follow::follow(&shared, &config, watch, changed, stop).await;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    for task in &tasks {
        task.abort();
    }
    if let Some(keeper) = keeper {
        // The sets keep their contents: stopping never flushes them.
        let _ = keeper.wake.send(nft::keeper::Message::Stop);
        let _ = tokio::task::spawn_blocking(move || keeper.thread.join()).await;
    }
    // What changed since the last write is written before stopping.
    if pending.take() {
        commit(&config, &shared, &pending);
    }
    Ok(Stopped {
        follower: shared,
        health,
        metrics,
    })
}

/// `vpn-registry-agent verify`: the kernel's sets against the state the
/// agent last saved (counts and digests per set).
pub fn verify(config: &Config) -> anyhow::Result<nft::enforce::Report> {
    let nft = config
        .nft
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("verify compares the nftables sets: not with --mode files"))?;
    let held = state::load(&config.state_dir)?
        .ok_or_else(|| anyhow::anyhow!("{}: no state yet; nothing to compare with", config.state_dir.display()))?;
    let mut enforcer = nft::enforce::Enforcer::attach(nft, &held)?;
    Ok(enforcer.verify()?)
}

/// How often the time of contact is saved while connected.
const CONTACT_SAVE: Duration = Duration::from_secs(60);

/// Saves the time of contact now and then, so a crash loses little of
/// the stale clock.
async fn keep_contact(health: Arc<Health>) {
    loop {
        tokio::time::sleep(CONTACT_SAVE).await;
        health.touch();
    }
}

/// Pings systemd's watchdog at half its interval while the kernel's thread
/// goes round; a stuck thread stops the pings and systemd restarts the
/// agent (which adopts the sets as they are: nothing is flushed).
async fn watchdog(health: Arc<Health>, every: Duration) {
    let limit = i64::try_from(every.as_secs()).unwrap_or(i64::MAX).max(1);
    loop {
        tokio::time::sleep(every / 2).await;
        if health.alive(nft::enforce::now(), limit) {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        } else {
            tracing::error!("the kernel's thread is stuck; no watchdog ping");
        }
    }
}

/// Changes closer together than this are written once: a burst of deltas
/// costs one state file, one set of outputs and one `--on-change`.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(100);

/// Whether the held set changed since it was last written.
#[derive(Default)]
struct Pending {
    dirty: std::sync::atomic::AtomicBool,
    wake: tokio::sync::Notify,
    /// One write at a time (the last one, at stop, may meet one under way).
    writing: std::sync::Mutex<()>,
}

impl Pending {
    fn mark(&self) {
        self.dirty.store(true, std::sync::atomic::Ordering::Release);
        self.wake.notify_one();
    }

    /// Whether there is something to write (and now nothing is pending).
    fn take(&self) -> bool {
        self.dirty.swap(false, std::sync::atomic::Ordering::AcqRel)
    }
}

/// Writing the state may take at most this share of the time: a million
/// entries take about a second to write, and changes keep coming.
const SAVE_SHARE: u32 = 5;

/// Writes the state and the outputs after changes, once they settle, and
/// no more often than [`SAVE_SHARE`] allows (a bounded interval: one write's
/// time times five).
async fn write_behind(config: Config, shared: Shared, pending: Arc<Pending>) {
    let mut last: Option<(tokio::time::Instant, Duration)> = None;
    loop {
        pending.wake.notified().await;
        tokio::time::sleep(SETTLE).await;
        if let Some((started, took)) = last {
            tokio::time::sleep_until(started + took * SAVE_SHARE).await;
        }
        if pending.take() {
            let started = tokio::time::Instant::now();
            let (config, shared, pending) = (config.clone(), shared.clone(), pending.clone());
            // Blocking file work, off the runtime's workers.
            let _ = tokio::task::spawn_blocking(move || commit(&config, &shared, &pending)).await;
            last = Some((started, started.elapsed()));
        }
    }
}

/// After a change: the state saved, then the files rewritten. The state is
/// copied a chunk at a time, so the stream is never held up for long.
fn commit(config: &Config, shared: &Shared, pending: &Pending) {
    let _one = pending
        .writing
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let position = follow::read(shared).held.position.clone();
    let mut after = None;
    let saved = state::save_with(&config.state_dir, &position, |chunk| {
        after = follow::read(shared)
            .held
            .copy_after(after.as_ref(), state::CHUNK, chunk);
        after.is_some()
    });
    if let Err(e) = saved {
        tracing::error!(error = %e, dir = %config.state_dir.display(), "saving the state failed");
    }
    if !config.outputs.is_empty() || config.on_change.is_some() {
        publish(config, &follow::read(shared).held);
    }
}

/// Writes every output, then runs `--on-change` (not waited for).
fn publish(config: &Config, held: &ActiveSet) {
    for output in &config.outputs {
        if let Err(e) = output.write(held) {
            tracing::error!(error = %e, path = %output.path.display(), "writing an output failed; the old file stays");
        }
    }
    if let Some(command) = &config.on_change {
        match tokio::process::Command::new("sh").arg("-c").arg(command).spawn() {
            Ok(mut child) => {
                tokio::spawn(async move { child.wait().await });
            }
            Err(e) => tracing::error!(error = %e, "--on-change did not start"),
        }
    }
}
