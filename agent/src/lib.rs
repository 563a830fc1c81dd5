//! `vpn-registry-agent`: keeps an ISP gateway's allow-list in sync with the
//! national VPN registry. It follows the registry's change stream, keeps its
//! state on disk (enforcing from it at once after a restart, before the
//! registry answers), and writes the current set to the files the
//! gateway's tools read. Errors, restarts and outages never empty what it
//! enforces: the last good set stays.

pub mod config;
pub mod follow;
pub mod nft;
pub mod output;
pub mod pb;
pub mod serve;
pub mod set;
pub mod state;

use std::sync::{Arc, RwLock};

use config::Config;
use follow::{Follower, Shared};
use set::ActiveSet;

/// Runs the agent until `stop` resolves: state first, then `--serve`'s
/// listener (if any), then the upstreams.
pub async fn run(config: Config, stop: impl Future<Output = ()>) -> anyhow::Result<Shared> {
    let listener = match config.serve {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("--serve {addr}: {e}"))?,
        ),
        None => None,
    };
    run_with(config, listener, stop).await
}

/// [`run`] serving on `listener` (tests bind port 0 and read it back).
/// Returns the follower as it stopped (what it held, how many resets).
pub async fn run_with(
    config: Config,
    listener: Option<tokio::net::TcpListener>,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<Shared> {
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
            held
        }
        None => ActiveSet::default(),
    };
    let shared: Shared = Arc::new(RwLock::new(Follower::new(held)));
    // The kernel's sets hold the state before the upstream is asked.
    let kernel = match &config.nft {
        Some(nft) => Some(kernel_side(nft.clone(), shared.clone())?),
        None => None,
    };
    let server = listener.map(|l| tokio::spawn(serve::serve(l, shared.clone())));
    let pending = Arc::new(Pending::default());
    let writer = tokio::spawn(write_behind(config.clone(), shared.clone(), pending.clone()));
    let changed = |_: &ActiveSet| {
        pending.mark();
        if let Some((wake, _)) = &kernel {
            let _ = wake.send(());
        }
    };
    follow::follow(&shared, &config, changed, stop).await;
    writer.abort();
    if let Some((wake, thread)) = kernel {
        // The sets keep their contents: stopping never flushes them.
        drop(wake);
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    // What changed since the last write is written before stopping.
    if pending.take() {
        commit(&config, &follow::read(&shared).held);
    }
    if let Some(server) = server {
        server.abort();
    }
    Ok(shared)
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

/// The kernel's sets, kept by a thread of their own (netlink calls block):
/// adopted and reconciled now, then brought up to the follower whenever
/// woken, and compared (and repaired) every verify interval.
fn kernel_side(
    config: config::NftConfig,
    shared: Shared,
) -> anyhow::Result<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)> {
    let mut enforcer = nft::enforce::Enforcer::start(&config, &follow::read(&shared).held)
        .map_err(|e| anyhow::anyhow!("nftables ({} {}): {e}", config.target.family, config.target.table))?;
    tracing::info!(sets = ?enforcer.sizes(), "the kernel's sets hold the state");
    let (wake, woken) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::Builder::new().name("nft".into()).spawn(move || {
        loop {
            match woken.recv_timeout(config.verify_interval) {
                Ok(()) => {
                    while woken.try_recv().is_ok() {}
                    // Planned under the follower's lock, done without it.
                    let plan = enforcer.plan(&follow::read(&shared));
                    let _ = enforcer.execute(plan);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(e) = enforcer.repair() {
                        tracing::error!(error = %e, "comparing the kernel's sets failed");
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    })?;
    Ok((wake, thread))
}

/// Changes closer together than this are written once: a burst of deltas
/// costs one state file, one set of outputs and one `--on-change`.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(100);

/// Whether the held set changed since it was last written.
#[derive(Default)]
struct Pending {
    dirty: std::sync::atomic::AtomicBool,
    wake: tokio::sync::Notify,
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

/// Writes the state and the outputs after changes, once they settle.
async fn write_behind(config: Config, shared: Shared, pending: Arc<Pending>) {
    loop {
        pending.wake.notified().await;
        tokio::time::sleep(SETTLE).await;
        if pending.take() {
            commit(&config, &follow::read(&shared).held);
        }
    }
}

/// After a change: the state saved, then the files rewritten.
fn commit(config: &Config, held: &ActiveSet) {
    if let Err(e) = state::save(&config.state_dir, held) {
        tracing::error!(error = %e, dir = %config.state_dir.display(), "saving the state failed");
    }
    publish(config, held);
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
