//! What each part of a call's path costs: the real tower layers, stacked
//! one by one around an empty service and called in process (one thread, no
//! network), the CheckAddress handler and the index alone, beside what one
//! CheckAddress costs in CPU end to end (client included) at concurrency 64;
//! then the pieces inside the layers, each alone.

use std::convert::Infallible;

use tonic::{body::Body, codegen::http};
use tower::{Layer, Service, ServiceExt as _};
use vpn_registry::{
    admission::AdmissionLayer,
    auth::permissions,
    auth::{AuthLayer, Credentials, in_flight::InFlightCaps, limits::RateLimits},
    fence::Fence,
    grpc::lookup::LookupApi,
    lookup::{Backfill, Horizon, Lookups, ReplicaSlot, Scope, entry::Query, watchers::Watchers},
    observe::{Metrics, ObserveLayer, methods, summary::LookupSummary},
    pb::lookup_service_server::LookupService as _,
};

use super::*;

const PATH: &str = "/vpnregistry.v1.LookupService/CheckAddress";
/// Calls per measurement.
const CALLS: u32 = 200_000;

/// Nanoseconds per call of `svc`, with `token`.
async fn per_call<S>(mut svc: S, token: &str) -> anyhow::Result<f64>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Error: std::fmt::Debug,
{
    let bearer = format!("Bearer {token}");
    let t = Instant::now();
    for _ in 0..CALLS {
        let req = http::Request::builder()
            .uri(PATH)
            .header("authorization", bearer.as_str())
            .header("content-type", "application/grpc")
            .body(Body::empty())?;
        let ready = svc.ready().await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let response = ready.call(req).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        drop(std::hint::black_box(response));
    }
    Ok(t.elapsed().as_nanos() as f64 / f64::from(CALLS))
}

/// The layers, each added to the ones before: ns per call, cumulative.
async fn stacked(pool: &PgPool, token: &str) -> anyhow::Result<Vec<(&'static str, f64)>> {
    let empty =
        tower::service_fn(|_: http::Request<Body>| async { Ok::<_, Infallible>(http::Response::new(Body::empty())) });
    let credentials =
        Credentials::load(pool.clone(), pool.clone(), Duration::from_secs(60), Default::default()).await?;
    // A rate no loop here reaches: the limiter is measured, never refuses.
    let rates = [(RoleKind::Lookup, u32::MAX)];
    let auth = AuthLayer::new(
        credentials,
        Arc::new(RateLimits::new(&rates, 20)),
        InFlightCaps::new(&[]),
    );
    let observe = |metrics| ObserveLayer::new(Arc::new(metrics), Arc::new(LookupSummary::default()));
    let admission = AdmissionLayer::new(1024);
    let observed = observe(Metrics::enabled(false));
    // Warm up (allocator, caches, the credential's first use), unmeasured.
    per_call(admission.layer(auth.layer(empty)), token).await?;
    Ok(vec![
        ("an empty service", per_call(empty, token).await?),
        (
            "+ auth: token hash, credential, permission table, rate limit, in-flight count",
            per_call(auth.layer(empty), token).await?,
        ),
        (
            "+ admission: the server-wide limit",
            per_call(admission.layer(auth.layer(empty)), token).await?,
        ),
        (
            "+ observe without the metrics listener: span, access event, lookup summary",
            per_call(
                observe(Metrics::disabled()).layer(admission.layer(auth.layer(empty))),
                token,
            )
            .await?,
        ),
        (
            "+ metrics (the listener on, as by default)",
            per_call(observed.layer(admission.layer(auth.layer(empty))), token).await?,
        ),
    ])
}

/// Nanoseconds per call of `f`.
fn each(mut f: impl FnMut(u32)) -> f64 {
    let t = Instant::now();
    for i in 0..CALLS {
        f(i);
    }
    t.elapsed().as_nanos() as f64 / f64::from(CALLS)
}

/// The pieces inside the auth and observe layers, each alone: what the
/// stacked rows are made of.
async fn pieces(pool: &PgPool, token: &str) -> anyhow::Result<Vec<(&'static str, f64)>> {
    let credentials =
        Credentials::load(pool.clone(), pool.clone(), Duration::from_secs(60), Default::default()).await?;
    let hash = auth::token::hash(token);
    let credential = credentials.check(&hash).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let principal = credential.principal.clone();
    let role = principal.role.kind();
    let limits = RateLimits::new(&[(role, u32::MAX)], 20);
    let caps = InFlightCaps::new(&[]);
    let metrics = Metrics::enabled(false);
    let method = methods::index(PATH);
    let summary = LookupSummary::default();
    let latency = Duration::from_micros(80);
    Ok(vec![
        (
            "auth: token hash (SHA-256)",
            each(|_| {
                std::hint::black_box(auth::token::hash(std::hint::black_box(token)));
            }),
        ),
        (
            "auth: credential lookup (and expiry)",
            each(|_| drop(std::hint::black_box(credentials.check(&hash)))),
        ),
        (
            "auth: permission table",
            each(|_| {
                std::hint::black_box(permissions::allowed(std::hint::black_box(PATH)));
            }),
        ),
        (
            "auth: rate limit (per principal)",
            each(|_| {
                let _ = std::hint::black_box(limits.admit(role, principal.id));
            }),
        ),
        (
            "auth: in-flight accounting (enter and leave)",
            each(|_| drop(std::hint::black_box(caps.enter(credential.clone())))),
        ),
        (
            "observe: span and access event (filtered out, as for lookups)",
            each(|i| {
                let span = tracing::debug_span!("rpc", method = PATH, request_id = "");
                let _entered = span.enter();
                tracing::debug!(target: "vpn_registry::access", method = PATH, code = "Ok", i, "call");
            }),
        ),
        ("observe: lookup summary", each(|_| summary.record(0, latency))),
        (
            "metrics: call started and handled",
            each(|_| {
                metrics.started(method);
                metrics.handled(method, 0, 8e-5);
            }),
        ),
    ])
}

/// Nanoseconds per CheckAddress in the handler (parse, index, answer) and
/// in the index alone, over `addresses`.
async fn handler_and_index(pool: &PgPool, token: &str, addresses: &[String]) -> anyhow::Result<(f64, f64)> {
    let replica = vpn_registry::lookup::follower::load(pool, 1).await?;
    let slot: ReplicaSlot = Arc::default();
    let _ = slot.set(replica.clone());
    let (_, stopping) = tokio::sync::watch::channel(false);
    let lookups = Lookups::new(
        Backfill::Feed(pool.clone()),
        slot,
        Horizon::new(pool.clone(), Fence::default()),
        Watchers::new(10, &[]),
        stopping,
    );
    let api = LookupApi::new(lookups, None);
    let credentials =
        Credentials::load(pool.clone(), pool.clone(), Duration::from_secs(60), Default::default()).await?;
    let principal = credentials
        .check(&auth::token::hash(token))
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .principal
        .clone();
    let t = Instant::now();
    for i in 0..CALLS as usize {
        let mut req = tonic::Request::new(pb::CheckAddressRequest {
            address: addresses[i % addresses.len()].clone(),
            ..Default::default()
        });
        req.extensions_mut().insert(principal.clone());
        std::hint::black_box(api.check_address(req).await?);
    }
    let handler = t.elapsed().as_nanos() as f64 / f64::from(CALLS);
    let parsed: Vec<IpAddr> = addresses.iter().map(|a| a.parse()).collect::<Result<_, _>>()?;
    let now = time::OffsetDateTime::now_utc();
    let t = Instant::now();
    for i in 0..CALLS as usize {
        let q = Query {
            addr: parsed[i % parsed.len()],
            peer: None,
            at: now,
            scope: Scope::All,
        };
        std::hint::black_box(replica.check(&q));
    }
    let index = t.elapsed().as_nanos() as f64 / f64::from(CALLS);
    Ok((handler, index))
}

impl Bench {
    /// The per-layer cost table, and the CPU one CheckAddress costs.
    pub(crate) async fn layers(&self) -> anyhow::Result<()> {
        println!("## What a CheckAddress's path costs, part by part (one core, in process)\n");
        let stacked = stacked(&self.pool, &self.token).await?;
        let pieces = pieces(&self.pool, &self.token).await?;
        let (handler, index) = handler_and_index(&self.pool, &self.token, &self.addresses).await?;
        let calls = unary(
            self.server,
            Some(&self.token),
            64,
            self.duration,
            self.addresses.clone(),
        )
        .await?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
        let per_call = cores * 1e9 / calls.rate;
        println!("| part | ns per call | share of a CheckAddress |\n|---|---:|---:|");
        let base = stacked[0].1;
        let mut before = base;
        println!("| {} | {base:.0} | |", stacked[0].0);
        for (name, ns) in &stacked[1..] {
            let cost = ns - before;
            println!("| {name} | {cost:.0} | {:.1}% |", 100.0 * cost / per_call);
            before = *ns;
        }
        println!(
            "| the layers together | {:.0} | {:.1}% |",
            before - base,
            100.0 * (before - base) / per_call
        );
        println!(
            "| the handler: parse, index, answer | {handler:.0} | {:.1}% |",
            100.0 * handler / per_call
        );
        println!("| of which the index | {index:.0} | {:.1}% |", 100.0 * index / per_call);
        for (name, ns) in &pieces {
            println!("| piece: {name} | {ns:.0} | {:.1}% |", 100.0 * ns / per_call);
        }
        println!("| CPU per CheckAddress at concurrency 64 (2 cores, client included) | {per_call:.0} | 100% |\n");
        Ok(())
    }
}
