//! Benchmark of the lookup path and the submit path, each against a baseline
//! measured in the same run (this machine is shared and noisy, so ratios are
//! what to read). Starts everything it needs: a fresh database (seeded with
//! N active prefixes), the real server, an empty tonic server with the same
//! request and response shapes, and a second replica for feed latency.
//!
//!     cargo run --release --bin bench -- --prefixes 1000000 --seconds 5

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::Parser;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tonic::{
    Request, Response, Status,
    transport::{Channel, ClientTlsConfig},
};
use vpn_registry::{
    app, auth, db,
    domain::principal::{Actor, Role},
    grpc::upstream::UpstreamConfig,
    lookup::Replica,
    pb::{
        self,
        lookup_service_client::LookupServiceClient,
        lookup_service_server::{LookupService, LookupServiceServer},
        registration_service_client::RegistrationServiceClient,
    },
    tls::{DevCertificates, Tls, TlsFiles},
};

#[derive(Debug, Parser)]
#[command(about = "Benchmark vpn-registry lookups and submissions against same-run baselines")]
struct Args {
    /// Server URL of PostgreSQL (a database `vpn_registry_bench` is created and dropped there).
    #[arg(
        long,
        env = "BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432"
    )]
    postgres: String,
    /// Active prefixes to seed.
    #[arg(long, default_value_t = 1_000_000)]
    prefixes: u64,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrency levels for unary lookups.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 16, 64, 256])]
    concurrency: Vec<usize>,
    /// Keep the database afterwards.
    #[arg(long)]
    keep: bool,
    /// Reuse a database kept by an earlier `--keep` run instead of seeding.
    #[arg(long)]
    reuse: bool,
    /// Rounds per comparison: each round measures ours and its baselines
    /// back to back; the table shows the medians (ratios per round), so a
    /// burst of load from elsewhere on this shared machine skews one round,
    /// not the result.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Which measurements to run.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Section::all())]
    only: Vec<Section>,
    /// Serve (ours and the empty baselines) and call over TLS, with
    /// development certificates made for the run.
    #[arg(long)]
    tls: bool,
}

/// The run's TLS: the servers' settings and the clients'.
static TLS: std::sync::OnceLock<(Arc<Tls>, ClientTlsConfig)> = std::sync::OnceLock::new();

/// Where this run's development certificates are written.
fn tls_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("vpn-registry-bench-{}", std::process::id()))
}

/// The CA of this run's certificates (for fan-out replicas' upstream links).
fn tls_ca_file() -> std::path::PathBuf {
    tls_dir().join("ca.pem")
}

/// Development certificates in a directory of their own for this run.
fn set_up_tls() -> anyhow::Result<()> {
    let certs = DevCertificates::generate(&["localhost".to_owned()])?;
    let dir = tls_dir();
    std::fs::create_dir_all(&dir)?;
    certs.write_to(&dir)?;
    let server = Tls::load(TlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server-key.pem"),
        client_ca: None,
    })?;
    let client = ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&certs.ca_pem))
        .domain_name("localhost");
    let _ = TLS.set((server, client));
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Section {
    Load,
    Unary,
    Auth,
    Metrics,
    Batches,
    Watch,
    SnapshotLoad,
    Storm,
    Fanout,
    Submit,
}

impl Section {
    fn all() -> Vec<Section> {
        vec![
            Self::Load,
            Self::Unary,
            Self::Auth,
            Self::Metrics,
            Self::Batches,
            Self::Watch,
            Self::SnapshotLoad,
            Self::Storm,
            Self::Fanout,
            Self::Submit,
        ]
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.tls {
        set_up_tls()?;
    }
    let url = format!("{}/vpn_registry_bench", args.postgres);
    if !args.reuse {
        sqlx::query("DROP DATABASE IF EXISTS vpn_registry_bench WITH (FORCE)")
            .execute(&db::connect(&format!("{}/postgres", args.postgres), 1, None).await?)
            .await?;
    }
    db::ensure_database(&url).await?;
    let pool = db::connect(&url, 32, None).await?;
    db::MIGRATOR.run(&pool).await?;

    let t = Instant::now();
    if !args.reuse {
        seed(&pool, args.prefixes).await.context("seeding")?;
    }
    println!("# vpn-registry benchmark\n");
    println!(
        "seeded {} active prefixes in {:.1} s\n",
        args.prefixes,
        t.elapsed().as_secs_f64()
    );

    let run = |section| args.only.contains(&section);
    if run(Section::Load) {
        // Index load time and resident memory of one replica.
        let before = rss_bytes();
        let t = Instant::now();
        let replica = vpn_registry::lookup::follower::load(&pool, 1).await?;
        let load = t.elapsed();
        let grown = rss_bytes().saturating_sub(before);
        println!("| index | value |\n|---|---:|");
        println!("| entries | {} |", replica.len());
        println!("| load from PostgreSQL | {:.2} s |", load.as_secs_f64());
        println!("| resident memory growth | {:.0} MB |", grown as f64 / 1e6);
        let rate = index_alone(&replica, args.prefixes);
        println!("| lookups in the index alone (one core, no gRPC) | {rate:.0}/s |\n");
    }

    let (server, _stop) = start_server(pool.clone(), true).await?;
    let (empty, _stop_empty) = start_empty(None).await?;
    let (canned, _stop_canned) = start_empty(Some(canned_hit())).await?;
    let token = issue(&pool, Role::Lookup).await?;
    wait_ready(server, &token).await?;
    let duration = Duration::from_secs(args.seconds);
    let addresses = Arc::new(addresses(args.prefixes, 100_000));

    if run(Section::Unary) {
        let over = if args.tls { ", over TLS" } else { "" };
        println!("## CheckAddress (unary, 50% hits{over})\n");
        println!(
            "| concurrency | ours req/s | p50 ms | p99 ms | empty RPC req/s | SQL GiST join req/s | SQL SP-GiST active set req/s | ours/empty | ours/GiST join | ours/SP-GiST |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for &c in &args.concurrency {
            let mut cells = Vec::new();
            for _ in 0..args.rounds {
                let ours = unary(server, Some(&token), c, duration, addresses.clone()).await?;
                let base = unary(empty, None, c, duration, addresses.clone()).await?;
                let gist = sql_lookups(&pool, Sql::GistJoin, c, duration, addresses.clone()).await?;
                let best = sql_lookups(&pool, Sql::ActiveSpgist, c, duration, addresses.clone()).await?;
                cells.push([
                    ours.rate,
                    ours.p50_ms,
                    ours.p99_ms,
                    base.rate,
                    gist.rate,
                    best.rate,
                    ours.rate / base.rate,
                    ours.rate / gist.rate,
                    ours.rate / best.rate,
                ]);
            }
            let [ours, p50, p99, base, gist, best, vs_base, vs_gist, vs_best] = medians(&cells);
            println!(
                "| {c} | {ours:.0} | {p50:.3} | {p99:.3} | {base:.0} | {gist:.0} | {best:.0} | {vs_base:.2} | {vs_gist:.1} | {vs_best:.1} |"
            );
        }
        println!();
    }

    if run(Section::Metrics) {
        println!("## Metrics and access logging on vs off (CheckAddress, concurrency 16)\n");
        let (bare, _stop_bare) = start_server(pool.clone(), false).await?;
        wait_ready(bare, &token).await?;
        let mut cells = Vec::new();
        for _ in 0..args.rounds {
            let on = unary(server, Some(&token), 16, duration, addresses.clone()).await?;
            let off = unary(bare, Some(&token), 16, duration, addresses.clone()).await?;
            cells.push([on.rate, on.p99_ms, off.rate, off.p99_ms, on.rate / off.rate]);
        }
        let [on, on_p99, off, off_p99, ratio] = medians(&cells);
        println!("| metrics on req/s | p99 ms | metrics off req/s | p99 ms | on/off |\n|---:|---:|---:|---:|---:|");
        println!("| {on:.0} | {on_p99:.3} | {off:.0} | {off_p99:.3} | {ratio:.2} |\n");
    }

    if run(Section::Auth) {
        println!("## Authentication and rate limiting, per call\n");
        let (ns, per_call_ns) = auth_cost(&pool, &token, server, duration, addresses.clone()).await?;
        println!("| measure | value |\n|---|---:|");
        println!("| token hash, credential, permission table and rate limit (one core) | {ns:.0} ns |");
        println!("| CPU per CheckAddress at concurrency 64 (2 cores, client included) | {per_call_ns:.0} ns |");
        println!("| share of a call | {:.1}% |\n", 100.0 * ns / per_call_ns);
    }

    if run(Section::Batches) {
        println!("## CheckAddresses (batches)\n");
        println!(
            "| per request | ours addresses/s | empty RPC, same answers | ours/same | empty RPC, all misses | ours/misses |"
        );
        println!("|---:|---:|---:|---:|---:|---:|");
        for size in [1_000usize, 10_000] {
            let mut cells = Vec::new();
            for _ in 0..args.rounds {
                let ours = batches(server, Some(&token), size, duration, addresses.clone()).await?;
                let same = batches(canned, None, size, duration, addresses.clone()).await?;
                let misses = batches(empty, None, size, duration, addresses.clone()).await?;
                cells.push([ours, same, ours / same, misses, ours / misses]);
            }
            let [ours, same, vs_same, misses, vs_misses] = medians(&cells);
            println!("| {size} | {ours:.0} | {same:.0} | {vs_same:.2} | {misses:.0} | {vs_misses:.2} |");
        }
        println!();
    }

    if run(Section::Watch) {
        println!("## WatchChanges\n");
        let (entries, secs) = snapshot(server, &token).await?;
        println!("| measure | value |\n|---|---:|");
        println!(
            "| full snapshot | {entries} entries in {secs:.2} s = {:.0} entries/s |",
            entries as f64 / secs
        );
        let (second, _stop_second) = start_server(pool.clone(), true).await?;
        wait_ready(second, &token).await?;
        let (p50, p99) = feed_latency(&pool, second, &token, 200).await?;
        println!("| commit -> delta received on another replica | p50 {p50:.1} ms, p99 {p99:.1} ms |\n");
    }

    if run(Section::SnapshotLoad) {
        println!("## Snapshots under load (full snapshots read back to back, each a fresh copy)\n");
        let (replica, _stop_replica) = start_server(pool.clone(), true).await?;
        wait_ready(replica, &token).await?;
        let (quiet_p50, quiet_p99) = feed_latency(&pool, replica, &token, 100).await?;
        let quiet = unary(replica, Some(&token), 16, duration, addresses.clone()).await?;
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
        let (busy_p50, busy_p99) = feed_latency(&pool, replica, &token, 100).await?;
        let busy = unary(replica, Some(&token), 16, duration, addresses.clone()).await?;
        reading.store(false, std::sync::atomic::Ordering::Relaxed);
        let copies = reader.await?;
        println!("| measure | quiet | during snapshots |\n|---|---:|---:|");
        println!("| commit -> delta, p50 / p99 ms | {quiet_p50:.1} / {quiet_p99:.1} | {busy_p50:.1} / {busy_p99:.1} |");
        println!(
            "| CheckAddress c16 req/s, p99 ms | {:.0}, {:.3} | {:.0}, {:.3} |",
            quiet.rate, quiet.p99_ms, busy.rate, busy.p99_ms
        );
        println!("| snapshots read meanwhile | | {copies} |\n");
    }

    if run(Section::Storm) {
        println!("## Reconnect storm: 1,000 WatchChanges subscribers at once on one replica\n");
        storm(&pool, &token, duration, addresses.clone()).await?;
    }

    if run(Section::Fanout) {
        println!("## Fan-out replicas (PostgreSQL -> replica -> fan-out -> fan-out)\n");
        fan_out(&pool, server, &token).await?;
    }

    if run(Section::Submit) {
        println!("## SubmitRegistration (concurrency 16)\n");
        let ours = submits(&pool, server, 16, duration).await?;
        let raw = raw_submits(&pool, 16, duration).await?;
        println!("| ours registrations/s | raw SQL transaction/s | ours/raw |\n|---:|---:|---:|");
        println!("| {ours:.0} | {raw:.0} | {:.2} |", ours / raw);
    }

    drop(pool);
    if !args.keep {
        let admin = db::connect(&format!("{}/postgres", args.postgres), 1, None).await?;
        sqlx::query("DROP DATABASE IF EXISTS vpn_registry_bench WITH (FORCE)")
            .execute(&admin)
            .await?;
    }
    Ok(())
}

/// Seeds `n` active registrations of one prefix each, straight into the
/// tables (triggers off, as a bulk load would), laid out so none overlap:
/// 50% IPv4 /32, 35% IPv4 /24../29 (each in its own /24 of 64.0.0.0/2), 15%
/// IPv6 /48../64 (each in its own /48 of 2a00::/16).
async fn seed(pool: &PgPool, n: u64) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO institutions (id, category, legal_name, cnic, ntn, contact_email, contact_phone)
         SELECT gen_random_uuid(), 'COMPANY', 'Bench Co ' || g, '3520212345671', '1234567', 'ops@bench.pk', '+923001234567'
           FROM generate_series(1, 1000) g",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query("INSERT INTO isps (code, name) VALUES ('ptcl', 'PTCL') ON CONFLICT DO NOTHING")
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "CREATE TEMP TABLE seed AS
         SELECT k,
                CASE WHEN k % 20 < 10 THEN ('64.0.0.0'::inet + (k * 256 + 1))::cidr
                     WHEN k % 20 < 17 THEN set_masklen('64.0.0.0'::inet + k * 256, 24 + (k % 6)::int)::cidr
                     ELSE format('2a00:%s:%s::/%s', to_hex(k >> 16), to_hex(k & 65535), 48 + (k % 17))::cidr
                END AS prefix
           FROM generate_series(0::bigint, $1 - 1) k",
    )
    .bind(n as i64)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO registrations (id, reference, institution_id, kind, protocol, source_prefixes, isp,
                                    isp_subscriber_id, purpose, valid_from, valid_until, state)
         SELECT gen_random_uuid(), 'VPN-2026-' || lpad(k::text, 7, '0'), i.id, 'VPN', 'WIREGUARD',
                ARRAY[prefix], 'ptcl', 'SUB-' || k, 'Bench', now() - interval '1 day', now() + interval '1 year', 'ACTIVE'
           FROM seed JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM institutions) i ON i.n = seed.k % 1000",
    )
    .execute(&mut *conn)
    .await?;
    // An index build beats a million index insertions.
    sqlx::query("ALTER TABLE active_prefixes DROP CONSTRAINT active_prefixes_no_overlap")
        .execute(&mut *conn)
        .await?;
    sqlx::query("DROP INDEX active_prefixes_prefix_idx")
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO active_prefixes (registration_id, institution_id, prefix)
         SELECT id, institution_id, source_prefixes[1] FROM registrations WHERE state = 'ACTIVE'",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query("CREATE INDEX active_prefixes_prefix_idx ON active_prefixes USING spgist (prefix inet_ops)")
        .execute(&mut *conn)
        .await?;
    // The baseline the issue names "the plain GiST join": prefixes in their
    // own table under a GiST inet_ops index, joined to registrations (as in
    // shared/bench/postgres/pgbench/lookup_gist.sql).
    sqlx::query("CREATE TABLE bench_gist_prefixes AS SELECT registration_id, prefix FROM active_prefixes")
        .execute(&mut *conn)
        .await?;
    sqlx::query("CREATE INDEX ON bench_gist_prefixes USING gist (prefix inet_ops)")
        .execute(&mut *conn)
        .await?;
    // The exclusion constraint is not rebuilt: validating it over a million
    // rows takes this machine a quarter of an hour, and no measured path
    // inserts active prefixes except the feed-latency toggles (which then
    // skip one GiST search each).
    sqlx::query("SET session_replication_role = DEFAULT")
        .execute(&mut *conn)
        .await?;
    sqlx::query("ANALYZE").execute(&mut *conn).await?;
    Ok(())
}

/// Lookups per second straight against the index (one thread, the bench's
/// address mix, 10k per batch as CheckAddresses does them).
fn index_alone(replica: &Replica, prefixes: u64) -> f64 {
    use vpn_registry::lookup::entry::Filter;
    let filter = Filter::new(time::OffsetDateTime::now_utc(), None, vpn_registry::lookup::Scope::All);
    let addrs: Vec<IpAddr> = addresses(prefixes, 200_000)
        .iter()
        .map(|a| a.parse().expect("bench addresses parse"))
        .collect();
    let mut hits = 0usize;
    let t = Instant::now();
    for chunk in addrs.chunks(10_000) {
        replica.check_batch(chunk, &filter, |_, found| hits += usize::from(found.is_some()));
    }
    addrs.len() as f64 / t.elapsed().as_secs_f64()
}

/// Query addresses: alternately inside a seeded prefix and in unused space.
fn addresses(n: u64, count: usize) -> Vec<String> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..count)
        .map(|i| {
            let k = next() % n;
            let addr: IpAddr = if i % 2 == 0 {
                match k % 20 {
                    0..10 => Ipv4Addr::from(0x4000_0000u32 + (k as u32) * 256 + 1).into(),
                    10..17 => Ipv4Addr::from(0x4000_0000u32 + (k as u32) * 256 + (next() % 4) as u32).into(),
                    _ => Ipv6Addr::new(0x2a00, (k >> 16) as u16, (k & 0xffff) as u16, 0, 0, 0, 0, 1).into(),
                }
            } else if k.is_multiple_of(7) {
                Ipv6Addr::new(0x2a01, (k >> 16) as u16, (k & 0xffff) as u16, 0, 0, 0, 0, 1).into()
            } else {
                Ipv4Addr::from(0x8000_0000u32 + (next() as u32 >> 2)).into()
            };
            addr.to_string()
        })
        .collect()
}

/// A server as `serve` runs it; `metrics` adds the operator's listener (and
/// with it the recording of every call), as by default.
async fn start_server(pool: PgPool, metrics: bool) -> anyhow::Result<(SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    start_server_with(pool, metrics, None).await
}

/// A server, following `upstream` (a fan-out replica) if given.
async fn start_server_with(
    pool: PgPool,
    metrics: bool,
    upstream: Option<UpstreamConfig>,
) -> anyhow::Result<(SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let http = if metrics {
        Some(TcpListener::bind("127.0.0.1:0").await?)
    } else {
        None
    };
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let options = app::Options {
        shutdown_grace: Duration::from_secs(1),
        expiry_interval: None,
        feed_poll_interval: Duration::from_secs(1),
        tls: TLS.get().map(|(server, _)| server.clone()),
        // One bench institution submits thousands a second: the institution
        // limit is about people, not throughput (lookups keep the default).
        rate_limits: vec![(vpn_registry::domain::principal::RoleKind::Institution, 0)],
        upstream,
        ..app::Options::default()
    };
    let listeners = app::Listeners { grpc: listener, http };
    tokio::spawn(app::serve(listeners, pool, options, async {
        let _ = rx.await;
    }));
    Ok((addr, tx))
}

/// The baseline: the same service shapes, no work at all. With `canned`,
/// CheckAddresses answers every other address with a fixed, pre-built match
/// (the mix the bench asks for), so its responses carry the same bytes as
/// ours; without it every answer is an empty "not registered".
struct Empty {
    canned: Option<pb::CheckResult>,
}

#[tonic::async_trait]
impl LookupService for Empty {
    async fn check_address(&self, _: Request<pb::CheckAddressRequest>) -> Result<Response<pb::CheckResult>, Status> {
        Ok(Response::new(pb::CheckResult::default()))
    }
    async fn check_flow(&self, _: Request<pb::CheckFlowRequest>) -> Result<Response<pb::CheckResult>, Status> {
        Ok(Response::new(pb::CheckResult::default()))
    }
    async fn check_addresses(
        &self,
        req: Request<pb::CheckAddressesRequest>,
    ) -> Result<Response<pb::CheckAddressesResponse>, Status> {
        let n = req.into_inner().addresses.len();
        let results = match &self.canned {
            Some(hit) => (0..n)
                .map(|i| {
                    if i % 2 == 0 {
                        hit.clone()
                    } else {
                        pb::CheckResult::default()
                    }
                })
                .collect(),
            None => vec![pb::CheckResult::default(); n],
        };
        Ok(Response::new(pb::CheckAddressesResponse { results, serial: 0 }))
    }
    type WatchChangesStream = tokio_stream::Empty<Result<pb::WatchChangesResponse, Status>>;
    async fn watch_changes(
        &self,
        _: Request<pb::WatchChangesRequest>,
    ) -> Result<Response<Self::WatchChangesStream>, Status> {
        Err(Status::unimplemented("baseline"))
    }
}

/// A match as ours would answer it, for the canned baseline.
fn canned_hit() -> pb::CheckResult {
    pb::CheckResult {
        registered: true,
        reference: "VPN-2026-0123456".into(),
        kind: pb::RegistrationKind::Vpn as i32,
        institution_category: pb::InstitutionCategory::Company as i32,
        matched_prefix: "64.18.214.0/26".into(),
        valid_until: Some(prost_types::Timestamp {
            seconds: 1_830_000_000,
            nanos: 123_456_000,
        }),
        serial: 0,
    }
}

async fn start_empty(
    canned: Option<pb::CheckResult>,
) -> anyhow::Result<(SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let router = tonic::transport::Server::builder().add_service(LookupServiceServer::new(Empty { canned }));
    let stop = async {
        let _ = rx.await;
    };
    tokio::spawn(async move {
        match TLS.get() {
            Some((tls, _)) => {
                router
                    .serve_with_incoming_shutdown(tls.clone().incoming(listener), stop)
                    .await
            }
            None => router.serve_with_incoming_shutdown(app::incoming(listener), stop).await,
        }
    });
    Ok((addr, tx))
}

async fn issue(pool: &PgPool, role: Role) -> anyhow::Result<String> {
    let (secret, hash) = auth::token::generate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let token = db::tokens::NewToken {
        id: uuid::Uuid::now_v7(),
        role: &role,
        name: "bench",
        hash,
        expire_time: time::OffsetDateTime::now_utc() + time::Duration::days(1),
        cert_sha256: None,
    };
    db::tokens::insert(pool, &token, &Actor::operator("bench")).await?;
    Ok(secret)
}

async fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    let endpoint = match TLS.get() {
        Some((_, client)) => {
            Channel::from_shared(format!("https://localhost:{}", addr.port()))?.tls_config(client.clone())?
        }
        None => Channel::from_shared(format!("http://{addr}"))?,
    };
    Ok(endpoint.tcp_nodelay(true).connect().await?)
}

/// What the auth layer does per call, in a loop on one core (hash the
/// token, find the credential, check the permission table and the rate
/// limit), beside the CPU one CheckAddress costs at concurrency 64.
async fn auth_cost(
    pool: &PgPool,
    token: &str,
    server: SocketAddr,
    duration: Duration,
    addresses: Arc<Vec<String>>,
) -> anyhow::Result<(f64, f64)> {
    use vpn_registry::auth::{Credentials, limits::RateLimits, permissions};
    let credentials = Credentials::load(pool.clone(), pool.clone(), Duration::from_secs(60)).await?;
    let limits = RateLimits::new(&[], 20);
    let path = "/vpnregistry.v1.LookupService/CheckAddress";
    let n = 1_000_000u32;
    let t = Instant::now();
    for _ in 0..n {
        let credential = credentials
            .check(&auth::token::hash(std::hint::black_box(token)))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let role = credential.principal.role.kind();
        let allowed = permissions::allowed(std::hint::black_box(path)).is_some_and(|r| r.contains(&role));
        let admitted = limits.admit(role, credential.principal.id).is_ok();
        std::hint::black_box((allowed, admitted));
    }
    let ns = t.elapsed().as_nanos() as f64 / f64::from(n);
    let calls = unary(server, Some(token), 64, duration, addresses).await?;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
    Ok((ns, cores * 1e9 / calls.rate))
}

fn authed<T>(msg: T, token: Option<&str>) -> Request<T> {
    let mut req = Request::new(msg);
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().expect("ascii token"));
    }
    req
}

/// Waits until the server's index is loaded and it knows the token (it
/// learns of new credentials by notification, a moment after the write).
async fn wait_ready(addr: SocketAddr, token: &str) -> anyhow::Result<()> {
    let mut client = LookupServiceClient::new(channel(addr).await?);
    for _ in 0..600 {
        let req = authed(
            pb::CheckAddressRequest {
                address: "8.8.8.8".into(),
                ..Default::default()
            },
            Some(token),
        );
        match client.check_address(req).await {
            Ok(_) => return Ok(()),
            Err(s) if matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unauthenticated) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(s) => return Err(s.into()),
        }
    }
    anyhow::bail!("server index did not load in a minute")
}

struct Rate {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// The median of each column.
fn medians<const N: usize>(rows: &[[f64; N]]) -> [f64; N] {
    std::array::from_fn(|col| {
        let mut values: Vec<f64> = rows.iter().map(|r| r[col]).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(0.0)
    })
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3
}

/// Runs `c` workers doing `op` until `duration` passes; returns completions/s and latencies.
async fn drive<F, Fut>(c: usize, duration: Duration, op: F) -> anyhow::Result<Rate>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let end = start + duration;
    let workers: Vec<_> = (0..c)
        .map(|w| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = 0u64;
                while Instant::now() < end {
                    let t = Instant::now();
                    op(w, i).await?;
                    lat.push(t.elapsed());
                    i += 1;
                }
                anyhow::Ok(lat)
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort();
    Ok(Rate {
        rate: all.len() as f64 / secs,
        p50_ms: percentile(&all, 0.5),
        p99_ms: percentile(&all, 0.99),
    })
}

/// Unary CheckAddress load over a few HTTP/2 connections.
async fn unary(
    addr: SocketAddr,
    token: Option<&str>,
    c: usize,
    duration: Duration,
    addresses: Arc<Vec<String>>,
) -> anyhow::Result<Rate> {
    let mut clients = Vec::new();
    for _ in 0..c.clamp(1, 4) {
        clients.push(LookupServiceClient::new(channel(addr).await?));
    }
    let clients = Arc::new(clients);
    let token = token.map(str::to_owned);
    drive(c, duration, move |w, i| {
        let mut client = clients[w % clients.len()].clone();
        let address = addresses[(w * 7919 + i as usize) % addresses.len()].clone();
        let req = authed(
            pb::CheckAddressRequest {
                address,
                ..Default::default()
            },
            token.as_deref(),
        );
        async move {
            client.check_address(req).await?;
            Ok(())
        }
    })
    .await
}

/// The lookup as SQL sent straight to PostgreSQL.
#[derive(Debug, Clone, Copy)]
enum Sql {
    /// The plain form: a GiST inet_ops index joined to registrations.
    GistJoin,
    /// Our schema's form: the denormalised active set under SP-GiST.
    ActiveSpgist,
}

impl Sql {
    fn text(self) -> &'static str {
        match self {
            Sql::GistJoin => {
                "SELECT r.reference, p.prefix::text FROM bench_gist_prefixes p JOIN registrations r ON r.id = p.registration_id
                  WHERE p.prefix >>= $1::inet AND r.state = 'ACTIVE' AND r.valid_from <= now() AND r.valid_until > now()
                  ORDER BY masklen(p.prefix) DESC LIMIT 1"
            }
            Sql::ActiveSpgist => {
                "SELECT r.reference, a.prefix::text FROM active_prefixes a JOIN registrations r ON r.id = a.registration_id
                  WHERE a.prefix >>= $1::inet AND r.valid_from <= now() AND r.valid_until > now()
                  ORDER BY masklen(a.prefix) DESC LIMIT 1"
            }
        }
    }
}

/// The same lookup as SQL straight to PostgreSQL (prepared, like sqlx does;
/// JIT off, as the shared pgbench notes advise).
async fn sql_lookups(
    pool: &PgPool,
    form: Sql,
    c: usize,
    duration: Duration,
    addresses: Arc<Vec<String>>,
) -> anyhow::Result<Rate> {
    let sql_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(c.min(16) as u32)
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::query("SET jit = off").execute(conn).await?;
                Ok(())
            })
        })
        .connect_with((*pool.connect_options()).clone())
        .await?;
    drive(c, duration, move |w, i| {
        let pool = sql_pool.clone();
        let address = addresses[(w * 7919 + i as usize) % addresses.len()].clone();
        async move {
            let _: Option<(String, String)> = sqlx::query_as(form.text()).bind(address).fetch_optional(&pool).await?;
            Ok(())
        }
    })
    .await
}

/// CheckAddresses load with `size` addresses per call (concurrency 2, one per core).
async fn batches(
    addr: SocketAddr,
    token: Option<&str>,
    size: usize,
    duration: Duration,
    addresses: Arc<Vec<String>>,
) -> anyhow::Result<f64> {
    let client = LookupServiceClient::new(channel(addr).await?)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let token = token.map(str::to_owned);
    let rate = drive(2, duration, move |w, i| {
        let mut client = client.clone();
        let start = ((w * 31 + i as usize) * size) % (addresses.len() - size);
        let req = authed(
            pb::CheckAddressesRequest {
                addresses: addresses[start..start + size].to_vec(),
                ..Default::default()
            },
            token.as_deref(),
        );
        async move {
            client.check_addresses(req).await?;
            Ok(())
        }
    })
    .await?;
    Ok(rate.rate * size as f64)
}

/// A full snapshot through WatchChanges: entries and seconds.
async fn snapshot(addr: SocketAddr, token: &str) -> anyhow::Result<(usize, f64)> {
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
async fn storm(pool: &PgPool, token: &str, duration: Duration, addresses: Arc<Vec<String>>) -> anyhow::Result<()> {
    use pb::watch_changes_response::Event;
    let (replica, _stop) = start_server(pool.clone(), true).await?;
    wait_ready(replica, token).await?;
    let before = rss_bytes();
    let mut connections = Vec::new();
    for _ in 0..4 {
        connections.push(channel(replica).await?);
    }
    let mut idle = Vec::new();
    for i in 0..990 {
        let mut client = LookupServiceClient::new(connections[i % 4].clone());
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

    let (session, serial): (uuid::Uuid, i64) = sqlx::query_as("SELECT session_id, last_serial FROM feed_state")
        .fetch_one(pool)
        .await?;
    let commits = 20usize;
    let mut subscribers = Vec::new();
    for i in 0..1000 {
        if i % 125 == 0 {
            connections.push(channel(replica).await?);
        }
        let mut client = LookupServiceClient::new(connections.last().unwrap().clone());
        let mut stream = client
            .watch_changes(authed(
                pb::WatchChangesRequest {
                    session_id: session.to_string(),
                    since_serial: serial,
                    ..Default::default()
                },
                Some(token),
            ))
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
    println!("| measure | value | target |\n|---|---:|---:|");
    println!(
        "| resident memory growth, 990 idle + 10 reading subscribers (server and clients) | {:.0} MB | < 300 MB |",
        grown as f64 / 1e6
    );
    println!("| readers that got the full snapshot | {full} of 10 | 10 |");
    println!(
        "| CheckAddress c16 during the storm | {:.0} req/s, p99 {:.2} ms | p99 < 5 ms |",
        during.rate, during.p99_ms
    );
    println!(
        "| commit -> delta at 1,000 resumed subscribers ({complete} got all {commits}) | p50 {:.1} ms, p99 {:.1} ms | p99 < 100 ms |\n",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    Ok(())
}

/// Two levels of fan-out replicas below `server`: how long each takes to
/// load the active set from its upstream, and commit -> delta received from
/// each level, against a replica reading PostgreSQL in the same run.
async fn fan_out(pool: &PgPool, server: SocketAddr, token: &str) -> anyhow::Result<()> {
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
struct Flipper<'a> {
    pool: &'a PgPool,
    id: uuid::Uuid,
}

impl<'a> Flipper<'a> {
    async fn new(pool: &'a PgPool) -> anyhow::Result<Self> {
        let id = sqlx::query_scalar("SELECT registration_id FROM active_prefixes LIMIT 1")
            .fetch_one(pool)
            .await?;
        Ok(Self { pool, id })
    }

    /// The `i`th change: even ones suspend, odd ones reinstate.
    async fn commit(&self, i: usize) -> anyhow::Result<()> {
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
async fn feed_latency(pool: &PgPool, replica: SocketAddr, token: &str, n: usize) -> anyhow::Result<(f64, f64)> {
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

/// Submits through the API from 16 institutions, distinct prefixes each.
async fn submits(pool: &PgPool, server: SocketAddr, c: usize, duration: Duration) -> anyhow::Result<f64> {
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM institutions ORDER BY id LIMIT $1")
        .bind(c as i64)
        .fetch_all(pool)
        .await?;
    let mut clients = Vec::new();
    for id in ids {
        let token = issue(pool, Role::Institution(id)).await?;
        clients.push((RegistrationServiceClient::new(channel(server).await?), token));
    }
    let clients = Arc::new(clients);
    let valid_until = prost_types::Timestamp {
        seconds: time::OffsetDateTime::now_utc().unix_timestamp() + 86_400 * 365,
        nanos: 0,
    };
    let rate = drive(c, duration, move |w, i| {
        let (client, token) = &clients[w];
        let mut client = client.clone();
        // 192.0.0.0/2 is unused by the seed; every call its own /32.
        let n = 0xC100_0000u32 + (w as u32) * 0x0010_0000 + i as u32;
        let registration = pb::Registration {
            kind: pb::RegistrationKind::Vpn as i32,
            protocol: pb::VpnProtocol::Wireguard as i32,
            source_prefixes: vec![Ipv4Addr::from(n).to_string()],
            isp: "ptcl".into(),
            isp_subscriber_id: format!("SUB-{w}-{i}"),
            purpose: "Bench".into(),
            valid_until: Some(valid_until),
            ..Default::default()
        };
        let req = authed(
            pb::SubmitRegistrationRequest {
                registration: Some(registration),
                request_id: uuid::Uuid::new_v4().to_string(),
            },
            Some(token),
        );
        async move {
            client.submit_registration(req).await?;
            Ok(())
        }
    })
    .await?;
    Ok(rate.rate)
}

/// The submit transaction as raw SQL: idempotency key, overlap check,
/// registration row, audit row, commit.
async fn raw_submits(pool: &PgPool, c: usize, duration: Duration) -> anyhow::Result<f64> {
    let institution: uuid::Uuid = sqlx::query_scalar("SELECT id FROM institutions LIMIT 1")
        .fetch_one(pool)
        .await?;
    let pool = pool.clone();
    let rate = drive(c, duration, move |w, i| {
        let pool = pool.clone();
        async move {
            let id = uuid::Uuid::now_v7();
            let prefix = ipnet::IpNet::from(IpAddr::V4(Ipv4Addr::from(
                0xD000_0000u32 + (w as u32) * 0x0010_0000 + i as u32,
            )));
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO idempotency_keys (scope, request_id, operation, request_hash, resource_id)
                 VALUES ($1, $2, 'raw', '\\x00', $3)",
            )
            .bind(format!("raw:{w}"))
            .bind(id.to_string())
            .bind(id)
            .execute(&mut *tx)
            .await?;
            let _: Option<(ipnet::IpNet, ipnet::IpNet)> = sqlx::query_as(db::registrations::OVERLAP_SQL)
                .bind(vec![prefix])
                .bind(institution)
                .fetch_optional(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO registrations (id, reference, institution_id, kind, protocol, source_prefixes, isp,
                                            isp_subscriber_id, purpose, valid_from, valid_until, state)
                 VALUES ($1, 'RAW-' || $1::text, $2, 'VPN', 'WIREGUARD', ARRAY[$3::cidr], 'ptcl', 'SUB', 'Bench', now(),
                         now() + interval '1 year', 'ISP_VERIFICATION')",
            )
            .bind(id)
            .bind(institution)
            .bind(prefix)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO audit_events (subject_type, subject_id, action, actor_name, actor_role, changes)
                 VALUES ('registration', $1, 'SUBMITTED', 'bench', 'institution', '[]')",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        }
    })
    .await?;
    Ok(rate.rate)
}

/// Resident set size of this process.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}
