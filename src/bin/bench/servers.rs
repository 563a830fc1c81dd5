//! The servers a run starts (ours, as `serve` runs it, and fan-out replicas),
//! the run's TLS, credentials, and clients.

use super::*;

/// The run's TLS: the servers' settings and the clients'.
pub(crate) static TLS: std::sync::OnceLock<(Arc<Tls>, ClientTlsConfig)> = std::sync::OnceLock::new();

/// Where this run's development certificates are written.
pub(crate) fn tls_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("vpn-registry-bench-{}", std::process::id()))
}

/// The CA of this run's certificates (for fan-out replicas' upstream links).
pub(crate) fn tls_ca_file() -> std::path::PathBuf {
    tls_dir().join("ca.pem")
}

/// Development certificates in a directory of their own for this run.
pub(crate) fn set_up_tls() -> anyhow::Result<()> {
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

/// A server as `serve` runs it; `metrics` adds the operator's listener (and
/// with it the recording of every call), as by default.
pub(crate) async fn start_server(
    pool: PgPool,
    metrics: bool,
) -> anyhow::Result<(SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    start_server_with(pool, metrics, None).await
}

/// A server, following `upstream` (a fan-out replica) if given.
pub(crate) async fn start_server_with(
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
        rate_limits: vec![(RoleKind::Institution, 0)],
        // One bench lookup token opens the storm's 1,000 streams.
        max_watchers_per_principal: vec![(RoleKind::Lookup, 0)],
        upstream,
        // The notifications section drains to a receiver on this machine.
        webhook_allow_private: true,
        // The documents section uploads institutions' papers.
        document_keys: Some(document_keys()?),
        ..app::Options::default()
    };
    let listeners = app::Listeners { grpc: listener, http };
    tokio::spawn(app::serve(listeners, pool, options, async {
        let _ = rx.await;
    }));
    Ok((addr, tx))
}

pub(crate) async fn issue(pool: &PgPool, role: Role) -> anyhow::Result<String> {
    let (secret, hash) = auth::token::generate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let token = db::tokens::NewToken {
        id: uuid::Uuid::now_v7(),
        role: &role,
        name: "bench",
        hash,
        expire_time: time::OffsetDateTime::now_utc() + time::Duration::days(1),
        cert_sha256: None,
        manages_keys: false,
    };
    db::tokens::insert(pool, &token, &Actor::operator("bench")).await?;
    Ok(secret)
}

/// Waits until `server` knows `token` (it learns new credentials a moment
/// after they are written), at most 10 s.
pub(crate) async fn await_credential(server: SocketAddr, token: &str) -> anyhow::Result<()> {
    let client = RegistrationServiceClient::new(channel(server).await?);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = client
            .clone()
            .list_registrations(authed(pb::ListRegistrationsRequest::default(), Some(token)))
            .await;
        match answer {
            Err(s) if s.code() == tonic::Code::Unauthenticated && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ => return Ok(()),
        }
    }
}

/// This run's document key (made once, beside its certificates).
fn document_keys() -> anyhow::Result<Arc<vpn_registry::vault::Keyring>> {
    static KEYS: std::sync::OnceLock<Arc<vpn_registry::vault::Keyring>> = std::sync::OnceLock::new();
    if let Some(keys) = KEYS.get() {
        return Ok(keys.clone());
    }
    let dir = tls_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("documents.key");
    if !path.exists() {
        vpn_registry::vault::generate_key_file(&path)?;
    }
    let keys = Arc::new(vpn_registry::vault::Keyring::load(&[path])?);
    Ok(KEYS.get_or_init(|| keys).clone())
}

pub(crate) async fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    let endpoint = match TLS.get() {
        Some((_, client)) => {
            Channel::from_shared(format!("https://localhost:{}", addr.port()))?.tls_config(client.clone())?
        }
        None => Channel::from_shared(format!("http://{addr}"))?,
    };
    Ok(endpoint.tcp_nodelay(true).connect().await?)
}

pub(crate) fn authed<T>(msg: T, token: Option<&str>) -> Request<T> {
    let mut req = Request::new(msg);
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().expect("ascii token"));
    }
    req
}

/// Waits until the server's index is loaded and it knows the token (it
/// learns of new credentials by notification, a moment after the write).
pub(crate) async fn wait_ready(addr: SocketAddr, token: &str) -> anyhow::Result<()> {
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
