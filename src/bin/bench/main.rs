//! Benchmark of the lookup path and the submit path, each against a baseline
//! measured in the same run (this machine is shared and noisy, so ratios are
//! what to read). Starts everything it needs: a fresh database (seeded with
//! N active prefixes), the real server, an empty tonic server with the same
//! request and response shapes, and a second replica for feed latency.
//!
//!     cargo run --release --bin bench -- --prefixes 1000000 --seconds 5
//!
//! One module per part: `seed` (the data), `servers` and `baseline` (what
//! runs), `measure` (load driver and statistics), and the sections:
//! `lookups`, `connect`, `layers`, `streams`, `submit`.

mod agent;
mod baseline;
mod connect;
mod documents;
mod layers;
mod lookups;
mod measure;
mod notifications;
mod seed;
mod servers;
mod streams;
mod submit;

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
    domain::principal::{Actor, Role, RoleKind},
    grpc::upstream::UpstreamConfig,
    lookup::Replica,
    pb::{
        self,
        document_service_client::DocumentServiceClient,
        lookup_service_client::LookupServiceClient,
        lookup_service_server::{LookupService, LookupServiceServer},
        registration_service_client::RegistrationServiceClient,
    },
    tls::{DevCertificates, Tls, TlsFiles},
};

use baseline::*;
use documents::*;
use lookups::*;
use measure::*;
use seed::*;
use servers::*;
use streams::*;
use submit::*;

/// The allocator `serve` runs with (see `src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Section::ALL)]
    only: Vec<Section>,
    /// Serve (ours and the empty baselines) and call over TLS, with
    /// development certificates made for the run.
    #[arg(long)]
    tls: bool,
}

/// The measurements, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Section {
    Load,
    Unary,
    /// CheckAddress over Connect JSON against gRPC.
    Connect,
    Layers,
    Metrics,
    Batches,
    Watch,
    SnapshotLoad,
    Storm,
    Fanout,
    Submit,
    Documents,
    Notifications,
    /// The gateway agent end to end (root, nftables; not in the default
    /// run: `--only agent`, after `cargo build --release -p vpn-registry-agent`).
    Agent,
}

impl Section {
    const ALL: [Section; 13] = [
        Self::Load,
        Self::Unary,
        Self::Connect,
        Self::Metrics,
        Self::Layers,
        Self::Batches,
        Self::Watch,
        Self::SnapshotLoad,
        Self::Storm,
        Self::Fanout,
        Self::Submit,
        Self::Documents,
        Self::Notifications,
    ];
}

/// What every section measures with: the seeded database, our server and
/// the baselines, a lookup token, and the addresses to ask about.
pub(crate) struct Bench {
    args: Args,
    pool: PgPool,
    server: SocketAddr,
    /// The empty RPC answering every address "not registered".
    empty: SocketAddr,
    /// The empty RPC answering with the same bytes as ours.
    canned: SocketAddr,
    token: String,
    duration: Duration,
    addresses: Arc<Vec<String>>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The server's own log subscriber and filter (info unless RUST_LOG says
    // otherwise, to stderr), so that spans and events cost what they do in
    // production.
    vpn_registry::telemetry::init(Default::default());
    if args.tls {
        set_up_tls()?;
    }
    let pool = prepare_database(&args).await?;
    if args.only.contains(&Section::Load) {
        load(&pool, args.prefixes).await?;
    }
    let (server, _stop) = start_server(pool.clone(), true).await?;
    let (empty, _stop_empty) = start_empty(None).await?;
    let (canned, _stop_canned) = start_empty(Some(canned_hit())).await?;
    let token = issue(&pool, Role::Lookup).await?;
    wait_ready(server, &token).await?;
    let bench = Bench {
        duration: Duration::from_secs(args.seconds),
        addresses: Arc::new(addresses(args.prefixes, 100_000)),
        args,
        pool,
        server,
        empty,
        canned,
        token,
    };
    // The default sections, then the opt-in agent one.
    let every = Section::ALL.into_iter().chain([Section::Agent]);
    for section in every.filter(|s| bench.args.only.contains(s)) {
        bench.run(section).await?;
    }
    let Bench { args, pool, .. } = bench;
    drop(pool);
    if !args.keep {
        let admin = db::connect(&format!("{}/postgres", args.postgres), 1, None).await?;
        sqlx::query("DROP DATABASE IF EXISTS vpn_registry_bench WITH (FORCE)")
            .execute(&admin)
            .await?;
    }
    Ok(())
}

/// A fresh database `vpn_registry_bench`, migrated and seeded (or the one
/// an earlier `--keep` run left, with `--reuse`).
async fn prepare_database(args: &Args) -> anyhow::Result<PgPool> {
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
    Ok(pool)
}

impl Bench {
    async fn run(&self, section: Section) -> anyhow::Result<()> {
        match section {
            // Measured before the servers start, in main.
            Section::Load => Ok(()),
            Section::Unary => self.unary_lookups().await,
            Section::Connect => self.connect().await,
            Section::Metrics => self.metrics_on_and_off().await,
            Section::Layers => self.layers().await,
            Section::Batches => self.batches().await,
            Section::Watch => self.watch().await,
            Section::SnapshotLoad => self.snapshots_under_load().await,
            Section::Storm => {
                println!("## Reconnect storm: 1,000 WatchChanges subscribers at once on one replica\n");
                storm(&self.pool, &self.token, self.duration, self.addresses.clone()).await
            }
            Section::Fanout => {
                println!("## Fan-out replicas (PostgreSQL -> replica -> fan-out -> fan-out)\n");
                fan_out(&self.pool, self.server, &self.token).await
            }
            Section::Documents => {
                println!("## UploadDocument, 1 MiB documents (concurrency 4)\n");
                println!("| round | ours documents/s | raw INSERT rows/s | ours/raw |\n|---:|---:|---:|---:|");
                let mut ratios = Vec::new();
                for round in 1..=self.args.rounds {
                    let ours = uploads(&self.pool, self.server, 4, self.duration).await?;
                    let raw = raw_inserts(&self.pool, 4, self.duration).await?;
                    ratios.push(ours / raw);
                    println!("| {round} | {ours:.1} | {raw:.1} | {:.2} |", ours / raw);
                }
                ratios.sort_by(f64::total_cmp);
                println!("\nmedian ours/raw: {:.2}\n", ratios[ratios.len() / 2]);
                Ok(())
            }
            Section::Notifications => self.notifications().await,
            Section::Agent => self.agent().await,
            Section::Submit => {
                println!("## SubmitRegistration (concurrency 16)\n");
                let ours = submits(&self.pool, self.server, 16, self.duration).await?;
                let raw = raw_submits(&self.pool, 16, self.duration).await?;
                println!("| ours registrations/s | raw SQL transaction/s | ours/raw |\n|---:|---:|---:|");
                println!("| {ours:.0} | {raw:.0} | {:.2} |", ours / raw);
                Ok(())
            }
        }
    }
}
