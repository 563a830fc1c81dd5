//! Webhook deliveries as the Standard Webhooks specification has them: a
//! thin JSON payload POSTed with `webhook-id` (the event's id, the same on
//! every attempt), `webhook-timestamp` and `webhook-signature` (`v1,` +
//! base64 HMAC-SHA256 of `id.timestamp.body` under each secret that signs,
//! space-separated). Targets are public addresses only, checked on the
//! addresses actually connected to (a name that resolves to a private
//! address is refused even if it did not when the endpoint was created);
//! redirects are not followed; 15 s per attempt.

use std::{
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{
        Client,
        connect::{HttpConnector, dns::Name},
    },
    rt::TokioExecutor,
};
use ipnet::IpNet;
use tonic::codegen::http::{self, Uri, header};

use crate::domain::prefix::PublicPrefix;

/// Time limit of one attempt (connecting, sending, the answer's status).
pub const TIMEOUT: Duration = Duration::from_secs(15);
/// The prefix of secrets (Standard Webhooks).
const SECRET_PREFIX: &str = "whsec_";

/// A new secret: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> Result<String, getrandom::Error> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key)?;
    Ok(format!("{SECRET_PREFIX}{}", BASE64.encode(key)))
}

/// `webhook-signature`: `v1,<base64 HMAC-SHA256>` per secret, space-separated.
pub fn sign(secrets: &[&str], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .filter_map(|s| BASE64.decode(s.strip_prefix(SECRET_PREFIX).unwrap_or(s)).ok())
        .map(|key| {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
            let mut ctx = ring::hmac::Context::with_key(&key);
            ctx.update(id.as_bytes());
            ctx.update(b".");
            ctx.update(timestamp.to_string().as_bytes());
            ctx.update(b".");
            ctx.update(body);
            format!("v1,{}", BASE64.encode(ctx.sign().as_ref()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `addr` may be a webhook's target.
fn allowed(addr: IpAddr, allow_private: bool) -> bool {
    allow_private || PublicPrefix::try_from(IpNet::from(addr)).is_ok()
}

/// Why a URL cannot be a webhook's target (checked when it is registered;
/// the addresses are checked again at every connection).
pub fn check_url(url: &str, allow_private: bool) -> Result<Uri, String> {
    let uri: Uri = url.parse().map_err(|_| "is not a URL".to_owned())?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if allow_private => {}
        _ => return Err("must be an https:// URL".into()),
    }
    let host = uri.host().filter(|h| !h.is_empty()).ok_or("names no host")?;
    if url.len() > 2048 {
        return Err("is longer than 2048 characters".into());
    }
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>()
        && !allowed(ip, allow_private)
    {
        return Err(format!("targets {ip}, which is not a public address"));
    }
    if !allow_private && (host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost")) {
        return Err("targets this machine".into());
    }
    Ok(uri)
}

/// Resolves names, keeping only the addresses a webhook may reach.
#[derive(Clone)]
struct PublicOnly {
    allow_private: bool,
}

impl tower::Service<Name> for PublicOnly {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| allowed(a.ip(), allow_private))
                .collect();
            if kept.is_empty() {
                return Err(io::Error::other(format!(
                    "{} resolves to no public address",
                    name.as_str()
                )));
            }
            Ok(kept.into_iter())
        })
    }
}

/// What an endpoint answered.
#[derive(Debug)]
pub enum Answer {
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    /// Not reached (refused target, DNS, connection, TLS, time limit).
    Unreachable(String),
}

/// The HTTP(S) client deliveries go through.
#[derive(Clone)]
pub struct Sender {
    client: Client<HttpsConnector<HttpConnector<PublicOnly>>, Full<Bytes>>,
    allow_private: bool,
}

impl Sender {
    pub fn new(allow_private: bool) -> Self {
        let mut http = HttpConnector::new_with_resolver(PublicOnly { allow_private });
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(tokio_rustls::rustls::crypto::ring::default_provider())
            .expect("ring supports the default protocol versions")
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Self { client, allow_private }
    }

    /// POSTs `body`, signed with `secrets`, to `url`.
    pub async fn post(&self, url: &str, secrets: &[&str], id: &str, body: Bytes) -> Answer {
        let uri = match check_url(url, self.allow_private) {
            Ok(uri) => uri,
            Err(why) => return Answer::Unreachable(format!("the URL {why}")),
        };
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let request = http::Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, "vpn-registry-webhooks/1")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", sign(secrets, id, timestamp, &body))
            .body(Full::new(body));
        let request = match request {
            Ok(r) => r,
            Err(e) => return Answer::Unreachable(e.to_string()),
        };
        let sent = tokio::time::timeout(TIMEOUT, async {
            let response = self.client.request(request).await?;
            let code = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            // Read (a bounded amount of) the answer so the connection can
            // be reused; what it says does not matter.
            let _ = tokio::time::timeout(Duration::from_secs(1), response.into_body().collect()).await;
            Ok::<_, hyper_util::client::legacy::Error>(Answer::Status { code, retry_after })
        })
        .await;
        match sent {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => Answer::Unreachable(error_chain(&e)),
            Err(_) => Answer::Unreachable(format!("no answer within {TIMEOUT:?}")),
        }
    }
}

/// An error and its causes, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_specifications_example() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let two = sign(&[secret, secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(two.split(' ').count(), 2);
    }

    #[test]
    fn only_public_https_targets_are_taken() {
        assert!(check_url("https://hooks.bank.example.pk/vpn", false).is_ok());
        for bad in [
            "http://hooks.bank.example.pk/vpn",
            "https://127.0.0.1/x",
            "https://10.1.2.3/x",
            "https://[::1]/x",
            "https://169.254.169.254/latest",
            "https://localhost/x",
            "ftp://example.com/",
            "not a url",
        ] {
            assert!(check_url(bad, false).is_err(), "{bad}");
        }
        assert!(check_url("http://127.0.0.1:8080/x", true).is_ok());
    }
}
