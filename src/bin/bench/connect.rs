//! The JSON surface: CheckAddress over the Connect protocol (JSON, HTTP/1.1
//! connections as curl and most HTTP clients use, and HTTP/2) against the
//! same call over gRPC, in the same rounds.

use http_body_util::{BodyExt as _, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

use super::*;

/// Unary CheckAddress as Connect JSON: `c` workers over a pool of HTTP/1.1
/// keep-alive connections (one per worker), or over HTTP/2 (as gRPC's
/// driver does, a few connections).
pub(crate) async fn connect_json(
    addr: SocketAddr,
    token: &str,
    c: usize,
    http2: bool,
    duration: Duration,
    addresses: Arc<Vec<String>>,
) -> anyhow::Result<Rate> {
    let clients: Vec<Client<_, Full<bytes::Bytes>>> = (0..if http2 { c.clamp(1, 4) } else { 1 })
        .map(|_| {
            // As the server does (and curl): no Nagle delay between a
            // request's HEADERS and DATA frames.
            let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
            connector.set_nodelay(true);
            Client::builder(TokioExecutor::new())
                .http2_only(http2)
                .pool_max_idle_per_host(c)
                .build(connector)
        })
        .collect();
    let clients = Arc::new(clients);
    let url: hyper::Uri = format!("http://{addr}/vpnregistry.v1.LookupService/CheckAddress").parse()?;
    let bearer = format!("Bearer {token}");
    drive(c, duration, move |w, i| {
        let client = clients[w % clients.len()].clone();
        let address = &addresses[(w * 7919 + i as usize) % addresses.len()];
        let body = format!("{{\"address\":\"{address}\"}}");
        let request = hyper::Request::post(url.clone())
            .header("content-type", "application/json")
            .header("authorization", &bearer)
            .body(Full::new(bytes::Bytes::from(body)));
        async move {
            let response = client.request(request?).await?;
            anyhow::ensure!(
                response.status() == 200,
                "CheckAddress over Connect: {}",
                response.status()
            );
            response.into_body().collect().await?;
            Ok(())
        }
    })
    .await
}

impl Bench {
    /// CheckAddress at concurrency 16: Connect JSON (HTTP/1.1 and HTTP/2)
    /// against gRPC.
    pub(crate) async fn connect(&self) -> anyhow::Result<()> {
        println!("## CheckAddress over Connect JSON vs gRPC (concurrency 16)\n");
        println!(
            "| | gRPC req/s | JSON HTTP/1.1 req/s | p50 ms | p99 ms | JSON HTTP/2 req/s | p50 ms | p99 ms | HTTP/1.1/gRPC | HTTP/2/gRPC |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let (c, duration, token) = (16, self.duration, self.token.as_str());
        let mut rows = Vec::new();
        for _ in 0..self.args.rounds {
            let grpc = unary(self.server, Some(token), c, duration, self.addresses.clone()).await?;
            let h1 = connect_json(self.server, token, c, false, duration, self.addresses.clone()).await?;
            let h2 = connect_json(self.server, token, c, true, duration, self.addresses.clone()).await?;
            rows.push([
                grpc.rate,
                h1.rate,
                h1.p50_ms,
                h1.p99_ms,
                h2.rate,
                h2.p50_ms,
                h2.p99_ms,
                h1.rate / grpc.rate,
                h2.rate / grpc.rate,
            ]);
        }
        let [grpc, h1, h1_p50, h1_p99, h2, h2_p50, h2_p99, r1, r2] = medians(&rows);
        println!(
            "| median of {} | {grpc:.0} | {h1:.0} | {h1_p50:.3} | {h1_p99:.3} | {h2:.0} | {h2_p50:.3} | {h2_p99:.3} | {r1:.2} | {r2:.2} |\n",
            self.args.rounds
        );
        Ok(())
    }
}
