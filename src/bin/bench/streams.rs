//! Change streams: snapshots, commit-to-delta latency on another replica,
//! a reconnect storm, and fan-out replicas.

use super::*;

/// A full snapshot through WatchChanges: entries and seconds.
pub(crate) async fn snapshot(addr: SocketAddr, token: &str) -> anyhow::Result<(usize, f64)> {
    use pb::watch_changes_response::Event;
    let mut client = LookupServiceClient::new(channel(addr).await?).max_decoding_message_size(64 << 20);
    let t = Instant::now();
    let mut stream = client
        .watch_changes(authed(pb::WatchChangesRequest::default(), Some(token)))
        .await?
        .into_inner();
    let mut entries = 0;
    while let Some(msg) = stream.message().await? {
        // A gateway runs on its own machine; here it shares the server's
        // runtime, so it takes turns as the server's streams do (else its
        // decoding holds a worker for up to 128 messages at a time).
        tokio::task::yield_now().await;
        match msg.event {
            Some(Event::Snapshot(chunk)) => entries += chunk.entries.len(),
            Some(Event::SnapshotEnd(_)) => break,
            _ => {}
        }
    }
    Ok((entries, t.elapsed().as_secs_f64()))
}

/// 990 subscribers that open a stream from scratch and read nothing, 10 that
/// read the whole snapshot, CheckAddress at concurrency 16 meanwhile; then
/// 1,000 subscribers resuming from the current serial and the time from each
/// of 20 commits to its delta at every one of them. Memory is the bench
/// process's (server and clients both live in it).
pub(crate) async fn storm(
    pool: &PgPool,
    token: &str,
    duration: Duration,
    addresses: Arc<Vec<String>>,
) -> anyhow::Result<()> {
    let (replica, _stop) = start_server(pool.clone(), true).await?;
    wait_ready(replica, token).await?;
    let mut connections = Vec::new();
    for _ in 0..4 {
        connections.push(channel(replica).await?);
    }
    let fresh = fresh_storm(pool, replica, &connections, token, duration, addresses).await?;
    let commits = 20usize;
    let (latencies, complete) = resumed_storm(pool, replica, token, commits).await?;
    println!("| measure | value | target |\n|---|---:|---:|");
    println!(
        "| resident memory growth, 990 idle + 10 reading subscribers (server and clients) | {:.0} MB | < 300 MB |",
        fresh.grown as f64 / 1e6
    );
    println!("| readers that got the full snapshot | {} of 10 | 10 |", fresh.full);
    println!(
        "| CheckAddress c16 during the storm | {:.0} req/s, p99 {:.2} ms | p99 < 5 ms |",
        fresh.during.rate, fresh.during.p99_ms
    );
    println!(
        "| commit -> delta at 1,000 resumed subscribers ({complete} got all {commits}) | p50 {:.1} ms, p99 {:.1} ms | p99 < 100 ms |\n",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    Ok(())
}

/// What a storm of subscribers starting from scratch cost.
pub(crate) struct FreshStorm {
    /// Resident memory growth while they were open.
    grown: u64,
    /// Readers (of 10) that received the whole active set.
    full: usize,
    /// CheckAddress at concurrency 16 meanwhile.
    during: Rate,
}

/// 990 idle subscribers from scratch over `connections`, 10 reading the
/// whole snapshot, and lookups meanwhile.
async fn fresh_storm(
    pool: &PgPool,
    replica: SocketAddr,
    connections: &[Channel],
    token: &str,
    duration: Duration,
    addresses: Arc<Vec<String>>,
) -> anyhow::Result<FreshStorm> {
    let before = rss_bytes();
    let mut idle = Vec::new();
    for i in 0..990 {
        let mut client = LookupServiceClient::new(connections[i % connections.len()].clone());
        idle.push(
            client
                .watch_changes(authed(pb::WatchChangesRequest::default(), Some(token)))
                .await?
                .into_inner(),
        );
    }
    let readers: Vec<_> = (0..10)
        .map(|_| {
            let token = token.to_owned();
            tokio::spawn(async move { snapshot(replica, &token).await })
        })
        .collect();
    let during = unary(replica, Some(token), 16, duration, addresses).await?;
    let active: i64 = sqlx::query_scalar("SELECT count(*) FROM active_prefixes")
        .fetch_one(pool)
        .await?;
    let mut full = 0;
    for r in readers {
        let (entries, _) = r.await??;
        full += usize::from(entries as i64 == active);
    }
    let grown = rss_bytes().saturating_sub(before);
    drop(idle);
    Ok(FreshStorm { grown, full, during })
}

/// 1,000 subscribers resuming from the current serial; `commits` changes
/// committed 50 ms apart. Returns every commit -> delta latency, sorted, and
/// how many subscribers received all of them.
async fn resumed_storm(
    pool: &PgPool,
    replica: SocketAddr,
    token: &str,
    commits: usize,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    use pb::watch_changes_response::Event;
    let (session, serial): (uuid::Uuid, i64) = sqlx::query_as("SELECT session_id, last_serial FROM feed_state")
        .fetch_one(pool)
        .await?;
    let mut subscribers = Vec::new();
    let mut connection = None;
    for i in 0..1000 {
        if i % 125 == 0 {
            connection = Some(channel(replica).await?);
        }
        let connection = connection.clone().expect("opened at the first subscriber");
        let request = pb::WatchChangesRequest {
            session_id: session.to_string(),
            since_serial: serial,
            ..Default::default()
        };
        let mut stream = LookupServiceClient::new(connection)
            .watch_changes(authed(request, Some(token)))
            .await?
            .into_inner();
        subscribers.push(tokio::spawn(async move {
            let mut arrivals = Vec::with_capacity(commits);
            while arrivals.len() < commits {
                match stream.message().await {
                    Ok(Some(msg)) if matches!(msg.event, Some(Event::Deltas(_))) => arrivals.push(Instant::now()),
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
            arrivals
        }));
    }
    let flipper = Flipper::new(pool).await?;
    let mut committed = Vec::new();
    for i in 0..commits {
        flipper.commit(i).await?;
        committed.push(Instant::now());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut latencies = Vec::new();
    let mut complete = 0;
    for s in subscribers {
        let arrivals = tokio::time::timeout(Duration::from_secs(30), s).await??;
        complete += usize::from(arrivals.len() == commits);
        latencies.extend(
            arrivals
                .iter()
                .zip(&committed)
                .map(|(a, c)| a.saturating_duration_since(*c)),
        );
    }
    latencies.sort();
    Ok((latencies, complete))
}

/// Two levels of fan-out replicas below `server`: how long each takes to
/// load the active set from its upstream, and commit -> delta received from
/// each level, against a replica reading PostgreSQL in the same run.
pub(crate) async fn fan_out(pool: &PgPool, server: SocketAddr, token: &str) -> anyhow::Result<()> {
    let token_file = std::env::temp_dir().join(format!("vpn-registry-bench-upstream-{}", std::process::id()));
    std::fs::write(&token_file, token)?;
    let scheme = if TLS.get().is_some() { "https" } else { "http" };
    let follow = |upstream: SocketAddr| UpstreamConfig {
        url: format!("{scheme}://localhost:{}", upstream.port()),
        token_file: token_file.clone(),
        ca_file: TLS.get().map(|_| tls_ca_file()),
        client_identity: None,
        journal: vpn_registry::flags::DEFAULT_UPSTREAM_JOURNAL,
    };
    let t = Instant::now();
    let (first, _stop_first) = start_server_with(pool.clone(), true, Some(follow(server))).await?;
    wait_ready(first, token).await?;
    let first_load = t.elapsed();
    let t = Instant::now();
    let (second, _stop_second) = start_server_with(pool.clone(), true, Some(follow(first))).await?;
    wait_ready(second, token).await?;
    let second_load = t.elapsed();
    let (db_p50, db_p99) = feed_latency(pool, server, token, 200).await?;
    let (one_p50, one_p99) = feed_latency(pool, first, token, 200).await?;
    let (two_p50, two_p99) = feed_latency(pool, second, token, 200).await?;
    println!("| measure | replica on PostgreSQL | fan-out level 1 | fan-out level 2 |\n|---|---:|---:|---:|");
    println!(
        "| active set loaded (from upstream) | | {:.2} s | {:.2} s |",
        first_load.as_secs_f64(),
        second_load.as_secs_f64()
    );
    println!(
        "| commit -> delta received, p50 / p99 ms | {db_p50:.1} / {db_p99:.1} | {one_p50:.1} / {one_p99:.1} | {two_p50:.1} / {two_p99:.1} |\n"
    );
    let _ = std::fs::remove_file(&token_file);
    Ok(())
}

/// Makes feed changes on demand: suspends and reinstates one active
/// registration in turn, straight in SQL (one delta each).
pub(crate) struct Flipper<'a> {
    pool: &'a PgPool,
    id: uuid::Uuid,
}

impl<'a> Flipper<'a> {
    pub(crate) async fn new(pool: &'a PgPool) -> anyhow::Result<Self> {
        let id = sqlx::query_scalar("SELECT registration_id FROM active_prefixes LIMIT 1")
            .fetch_one(pool)
            .await?;
        Ok(Self { pool, id })
    }

    /// The `i`th change: even ones suspend, odd ones reinstate.
    pub(crate) async fn commit(&self, i: usize) -> anyhow::Result<()> {
        let state = if i.is_multiple_of(2) { "SUSPENDED" } else { "ACTIVE" };
        sqlx::query("UPDATE registrations SET state = $2 WHERE id = $1")
            .bind(self.id)
            .bind(state)
            .execute(self.pool)
            .await?;
        Ok(())
    }
}

/// Commits `n` changes (suspend / reinstate of one registration, straight in
/// SQL) and times each until its delta arrives from another replica.
pub(crate) async fn feed_latency(
    pool: &PgPool,
    replica: SocketAddr,
    token: &str,
    n: usize,
) -> anyhow::Result<(f64, f64)> {
    use pb::watch_changes_response::Event;
    let mut client = LookupServiceClient::new(channel(replica).await?).max_decoding_message_size(64 << 20);
    let mut stream = client
        .watch_changes(authed(pb::WatchChangesRequest::default(), Some(token)))
        .await?
        .into_inner();
    while let Some(msg) = stream.message().await? {
        if matches!(msg.event, Some(Event::SnapshotEnd(_))) {
            break;
        }
    }
    let flipper = Flipper::new(pool).await?;
    let mut latencies = Vec::new();
    for i in 0..n {
        flipper.commit(i).await?;
        let committed = Instant::now();
        loop {
            let msg = stream.message().await?.context("stream ended")?;
            if matches!(msg.event, Some(Event::Deltas(_))) {
                break;
            }
        }
        latencies.push(committed.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    latencies.sort();
    Ok((percentile(&latencies, 0.5), percentile(&latencies, 0.99)))
}

impl Bench {
    /// A full snapshot, and commit -> delta on another replica.
    pub(crate) async fn watch(&self) -> anyhow::Result<()> {
        println!("## WatchChanges\n");
        let (entries, secs) = snapshot(self.server, &self.token).await?;
        println!("| measure | value |\n|---|---:|");
        println!(
            "| full snapshot | {entries} entries in {secs:.2} s = {:.0} entries/s |",
            entries as f64 / secs
        );
        let (second, _stop_second) = start_server(self.pool.clone(), true).await?;
        wait_ready(second, &self.token).await?;
        let (p50, p99) = feed_latency(&self.pool, second, &self.token, 200).await?;
        println!("| commit -> delta received on another replica | p50 {p50:.1} ms, p99 {p99:.1} ms |\n");
        Ok(())
    }

    /// Feed latency and lookups on a replica, quiet and while full
    /// snapshots are read back to back.
    pub(crate) async fn snapshots_under_load(&self) -> anyhow::Result<()> {
        println!("## Snapshots under load (full snapshots read back to back, each a fresh copy)\n");
        let (pool, token) = (&self.pool, &self.token);
        let (replica, _stop_replica) = start_server(pool.clone(), true).await?;
        wait_ready(replica, token).await?;
        let (quiet_p50, quiet_p99) = feed_latency(pool, replica, token, 100).await?;
        let quiet = unary(replica, Some(token), 16, self.duration, self.addresses.clone()).await?;
        let reading = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let reader = tokio::spawn({
            let (reading, token) = (reading.clone(), token.clone());
            async move {
                let mut copies = 0u32;
                while reading.load(std::sync::atomic::Ordering::Relaxed) {
                    if snapshot(replica, &token).await.is_ok() {
                        copies += 1;
                    }
                }
                copies
            }
        });
        let (busy_p50, busy_p99) = feed_latency(pool, replica, token, 100).await?;
        let busy = unary(replica, Some(token), 16, self.duration, self.addresses.clone()).await?;
        reading.store(false, std::sync::atomic::Ordering::Relaxed);
        let copies = reader.await?;
        println!("| measure | quiet | during snapshots |\n|---|---:|---:|");
        println!("| commit -> delta, p50 / p99 ms | {quiet_p50:.1} / {quiet_p99:.1} | {busy_p50:.1} / {busy_p99:.1} |");
        println!(
            "| CheckAddress c16 req/s, p99 ms | {:.0}, {:.3} | {:.0}, {:.3} |",
            quiet.rate, quiet.p99_ms, busy.rate, busy.p99_ms
        );
        println!("| snapshots read meanwhile | | {copies} |\n");
        Ok(())
    }
}
