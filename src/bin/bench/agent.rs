//! The gateway agent end to end at the seeded size: the real
//! `vpn-registry-agent` binary (built next to this one: `cargo build
//! --release -p vpn-registry-agent`) follows our server and keeps the
//! nftables sets of a network namespace of its own (root; the host's
//! ruleset is never touched). Measured: the first snapshot into the
//! kernel, the agent's memory, and commit in PostgreSQL -> kernel
//! transaction done, timed here by watching the agent's own transaction
//! counter on its metrics endpoint.

use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const NETNS: &str = "vpnreg-bench-e2e";

/// The agent's process, stopped when dropped.
struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes the namespace (and with it the agent's sets) when dropped.
struct Namespace;

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["netns", "del", NETNS]).status();
    }
}

impl Bench {
    pub(crate) async fn agent(&self) -> anyhow::Result<()> {
        println!("## Gateway agent: commit -> element in the kernel's set\n");
        let binary = std::env::current_exe()?.with_file_name("vpn-registry-agent");
        anyhow::ensure!(
            binary.exists(),
            "{} is missing: cargo build --release -p vpn-registry-agent",
            binary.display()
        );
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", NETNS])
            .stderr(Stdio::null())
            .status();
        let made = std::process::Command::new("ip")
            .args(["netns", "add", NETNS])
            .status()?;
        anyhow::ensure!(made.success(), "ip netns add {NETNS} (run as root)");
        let _namespace = Namespace;
        let dir = std::env::temp_dir().join(format!("vpn-registry-bench-agent-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("token"), &self.token)?;
        // A free port for its metrics (taken back a moment before the agent binds it).
        let metrics = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
        let started = Instant::now();
        let agent = self.start_agent(&binary, &dir, metrics).await?;
        let pid = agent.0.id();
        let ready = started.elapsed();
        let (held, elements) = scrape(metrics, "vpn_registry_agent_entries")
            .await
            .zip(total_elements(metrics).await)
            .unwrap_or_default();
        println!("| measure | value |\n|---|---:|");
        println!(
            "| start -> snapshot of {held:.0} entries in the kernel ({elements:.0} elements), ready | {:.1} s |",
            ready.as_secs_f64()
        );
        let (rss, peak) = memory_of(pid);
        println!("| agent resident memory after the first load (peak) | {rss} MiB ({peak} MiB) |");

        let mut latencies = commit_to_kernel(&self.pool, metrics, 400).await?;
        latencies.sort();
        println!(
            "| commit -> kernel transaction done (400 changes, 20 ms apart) | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms |",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            percentile(&latencies, 1.0)
        );
        let (rss, peak) = memory_of(pid);
        println!("| agent resident memory at the end (peak) | {rss} MiB ({peak} MiB) |\n");
        drop(agent);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}

impl Bench {
    /// The agent following our server into the namespace's sets, once
    /// ready (its snapshot in the kernel).
    async fn start_agent(
        &self,
        binary: &std::path::Path,
        dir: &std::path::Path,
        metrics: SocketAddr,
    ) -> anyhow::Result<Agent> {
        let started = Instant::now();
        let mut agent = Agent(
            std::process::Command::new(binary)
                .arg("--upstream")
                .arg(format!("http://{}", self.server))
                .arg("--token-file")
                .arg(dir.join("token"))
                .arg("--state-dir")
                .arg(dir.join("state"))
                .args(["--nft-netns", NETNS, "--metrics-listen", &metrics.to_string()])
                .env("RUST_LOG", "warn")
                .spawn()?,
        );
        loop {
            if get(metrics, "/readyz").await.is_some_and(|(status, _)| status == 200) {
                return Ok(agent);
            }
            anyhow::ensure!(agent.0.try_wait()?.is_none(), "the agent stopped");
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(900),
                "the agent was not ready in 15 min"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// One registration suspended and reinstated in turn, `n` times: each
/// commit is one delta, one kernel transaction, timed from the commit to
/// the agent's transaction counter moving.
async fn commit_to_kernel(pool: &PgPool, metrics: SocketAddr, n: usize) -> anyhow::Result<Vec<Duration>> {
    const APPLIED: &str = "vpn_registry_agent_apply_duration_seconds_count";
    let flipper = Flipper::new(pool).await?;
    let mut latencies = Vec::new();
    for i in 0..n {
        let before = scrape(metrics, APPLIED).await.unwrap_or(0.0);
        flipper.commit(i).await?;
        let committed = Instant::now();
        while scrape(metrics, APPLIED).await.unwrap_or(0.0) <= before {
            anyhow::ensure!(
                committed.elapsed() < Duration::from_secs(30),
                "change {i} never reached the kernel"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(committed.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(latencies)
}

/// (status, body) of a GET, or `None` if nothing answers.
async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    Some((head.get(9..12)?.parse().ok()?, body.to_owned()))
}

/// One unlabelled metric's value.
async fn scrape(addr: SocketAddr, name: &str) -> Option<f64> {
    let (_, text) = get(addr, "/metrics").await?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// The elements of all six sets.
async fn total_elements(addr: SocketAddr) -> Option<f64> {
    let (_, text) = get(addr, "/metrics").await?;
    Some(
        text.lines()
            .filter(|l| l.starts_with("vpn_registry_agent_set_elements{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

/// (resident, peak resident) of a process, MiB.
fn memory_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
