//! Lookups: the index alone, unary CheckAddress against an empty RPC and
//! the same question as SQL, batches, and what authentication costs.

use super::*;

/// Lookups per second straight against the index (one thread, the bench's
/// address mix, 10k per batch as CheckAddresses does them).
pub(crate) fn index_alone(replica: &Replica, prefixes: u64) -> f64 {
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

/// Unary CheckAddress load over a few HTTP/2 connections.
pub(crate) async fn unary(
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
pub(crate) enum Sql {
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
pub(crate) async fn sql_lookups(
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
pub(crate) async fn batches(
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

/// Index load time and resident memory of one replica, and lookups in the
/// index alone.
pub(crate) async fn load(pool: &PgPool, prefixes: u64) -> anyhow::Result<()> {
    let before = rss_bytes();
    let t = Instant::now();
    let replica = vpn_registry::lookup::follower::load(pool, 1).await?;
    let load = t.elapsed();
    let grown = rss_bytes().saturating_sub(before);
    println!("| index | value |\n|---|---:|");
    println!("| entries | {} |", replica.len());
    println!("| load from PostgreSQL | {:.2} s |", load.as_secs_f64());
    println!("| resident memory growth | {:.0} MB |", grown as f64 / 1e6);
    let rate = index_alone(&replica, prefixes);
    println!("| lookups in the index alone (one core, no gRPC) | {rate:.0}/s |\n");
    Ok(())
}

impl Bench {
    /// CheckAddress at each concurrency against the empty RPC and the same
    /// lookup as SQL.
    pub(crate) async fn unary_lookups(&self) -> anyhow::Result<()> {
        let over = if self.args.tls { ", over TLS" } else { "" };
        println!("## CheckAddress (unary, 50% hits{over})\n");
        println!(
            "| concurrency | ours req/s | p50 ms | p99 ms | empty RPC req/s | SQL GiST join req/s | SQL SP-GiST active set req/s | ours/empty | ours/GiST join | ours/SP-GiST |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let (token, duration) = (Some(self.token.as_str()), self.duration);
        for &c in &self.args.concurrency {
            let mut cells = Vec::new();
            for _ in 0..self.args.rounds {
                let ours = unary(self.server, token, c, duration, self.addresses.clone()).await?;
                // The same request bytes (the token included), no work.
                let base = unary(self.empty, token, c, duration, self.addresses.clone()).await?;
                let gist = sql_lookups(&self.pool, Sql::GistJoin, c, duration, self.addresses.clone()).await?;
                let best = sql_lookups(&self.pool, Sql::ActiveSpgist, c, duration, self.addresses.clone()).await?;
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
        Ok(())
    }

    /// The same load with the operator's metrics and access log, and without.
    pub(crate) async fn metrics_on_and_off(&self) -> anyhow::Result<()> {
        println!("## Metrics and access logging on vs off (CheckAddress, concurrency 16)\n");
        let (bare, _stop_bare) = start_server(self.pool.clone(), false).await?;
        wait_ready(bare, &self.token).await?;
        let token = Some(self.token.as_str());
        let mut cells = Vec::new();
        for _ in 0..self.args.rounds {
            let on = unary(self.server, token, 16, self.duration, self.addresses.clone()).await?;
            let off = unary(bare, token, 16, self.duration, self.addresses.clone()).await?;
            cells.push([on.rate, on.p99_ms, off.rate, off.p99_ms, on.rate / off.rate]);
        }
        let [on, on_p99, off, off_p99, ratio] = medians(&cells);
        println!("| metrics on req/s | p99 ms | metrics off req/s | p99 ms | on/off |\n|---:|---:|---:|---:|---:|");
        println!("| {on:.0} | {on_p99:.3} | {off:.0} | {off_p99:.3} | {ratio:.2} |\n");
        Ok(())
    }

    /// CheckAddresses batches against the empty RPC answering the same bytes
    /// and answering misses only.
    pub(crate) async fn batches(&self) -> anyhow::Result<()> {
        println!("## CheckAddresses (batches)\n");
        println!(
            "| per request | ours addresses/s | empty RPC, same answers | ours/same | empty RPC, all misses | ours/misses |"
        );
        println!("|---:|---:|---:|---:|---:|---:|");
        let (token, duration) = (Some(self.token.as_str()), self.duration);
        for size in [1_000usize, 10_000] {
            let mut cells = Vec::new();
            for _ in 0..self.args.rounds {
                let ours = batches(self.server, token, size, duration, self.addresses.clone()).await?;
                let same = batches(self.canned, token, size, duration, self.addresses.clone()).await?;
                let misses = batches(self.empty, token, size, duration, self.addresses.clone()).await?;
                cells.push([ours, same, ours / same, misses, ours / misses]);
            }
            let [ours, same, vs_same, misses, vs_misses] = medians(&cells);
            println!("| {size} | {ours:.0} | {same:.0} | {vs_same:.2} | {misses:.0} | {vs_misses:.2} |");
        }
        println!();
        Ok(())
    }
}
