use std::io::Write;

use anyhow::{Context, bail};
use clap::Parser;
use vpn_registry::{
    app, cli,
    config::{Cli, Command, DbArgs, FeedCommand, IspCommand, ServeArgs, TokenCommand, redact_url},
    db,
    domain::principal::Actor,
    telemetry,
    tls::{Tls, TlsFiles},
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match cli.command {
        Command::Serve(args) => serve(*args).await?,
        Command::Migrate(args) => {
            db::ensure_database(&args.db.database_url)
                .await
                .with_context(|| format!("creating database at {}", redact_url(&args.db.database_url)))?;
            let pool = connect(&args.db).await?;
            db::MIGRATOR.run(&pool).await.context("applying migrations")?;
            if db::grant_runtime(&pool, &args.runtime_role).await? {
                tracing::info!(role = %args.runtime_role, "runtime role granted");
            } else {
                tracing::warn!(role = %args.runtime_role, "runtime role does not exist; nothing granted");
            }
            tracing::info!("migrations applied");
        }
        Command::DevCerts(args) => {
            cli::dev_certs(&args)?;
            tracing::info!(dir = %args.out.display(), "development certificates written");
        }
        Command::Token(cmd) => match cmd {
            TokenCommand::Issue(args) => {
                let pool = connect(&args.db).await?;
                let token = cli::issue(&pool, &args).await?;
                writeln!(std::io::stdout(), "{token}")?;
            }
            TokenCommand::Rotate {
                id,
                grace,
                db,
                operator,
            } => {
                let token = cli::rotate(&connect(&db).await?, id, grace, &operator.name()).await?;
                tracing::info!(%id, ?grace, "token rotated; the old secret works until the grace period ends");
                writeln!(std::io::stdout(), "{token}")?;
            }
            TokenCommand::Revoke { id, db, operator } => {
                cli::revoke(&connect(&db).await?, id, &operator.name()).await?;
                tracing::info!(%id, "token revoked");
            }
            TokenCommand::List { db } => cli::list(&connect(&db).await?, &mut std::io::stdout()).await?,
        },
        Command::Isp(cmd) => match cmd {
            IspCommand::Add {
                code,
                name,
                db,
                operator,
            } => cli::add_isp(&connect(&db).await?, &code, &name, &operator.name()).await?,
            IspCommand::List { db } => cli::list_isps(&connect(&db).await?, &mut std::io::stdout()).await?,
        },
        Command::Healthcheck(args) => {
            if let Err(why) = cli::healthcheck(&args).await {
                writeln!(std::io::stderr(), "unhealthy: {why}")?;
                std::process::exit(1);
            }
        }
        Command::Feed(FeedCommand::NewSession { db, operator }) => {
            let actor = Actor::operator(&operator.name());
            let session = db::feed::new_session(&connect(&db).await?, &actor).await?;
            tracing::warn!(%session, "change feed: new session started; replicas reload, watchers resynchronise");
            writeln!(std::io::stdout(), "{session}")?;
        }
    }
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    tracing::info!(
        listen = %args.listen,
        database_url = %redact_url(&args.db.database_url),
        read_database_url = %args.read_database_url.as_deref().map(redact_url).unwrap_or_else(|| "(the same)".into()),
        db_max_connections = args.db_max_connections,
        shutdown_grace_secs = args.shutdown_grace_secs,
        expiry_interval_secs = args.expiry_interval_secs,
        feed_poll_interval_ms = args.feed_poll_interval_ms,
        tls = args.tls_cert.is_some(),
        client_certificates_required = args.client_ca.is_some(),
        statement_timeout = ?args.statement_timeout,
        credential_max_staleness = ?args.credential_max_staleness,
        rate_limits = ?args.rate_limits,
        failed_auth_rate = args.failed_auth_rate,
        max_concurrent_requests = args.max_concurrent_requests,
        max_concurrent_streams = args.max_concurrent_streams,
        keepalive_interval = ?args.keepalive_interval,
        max_connection_age = ?args.max_connection_age,
        max_connection_age_grace = ?args.max_connection_age_grace,
        max_watchers = args.max_watchers,
        metrics_listen = ?args.metrics_listen.0,
        metrics_per_principal = args.metrics_per_principal,
        max_feed_lag = ?args.max_feed_lag,
        access_summary_interval = ?args.access_summary_interval,
        feed_retention = ?args.feed_retention,
        history_retention = ?args.history_retention,
        prune_interval = ?args.prune_interval,
        upstream = args.upstream.as_deref().unwrap_or("(none: follows PostgreSQL)"),
        upstream_token_file = ?args.upstream_token_file,
        upstream_ca = ?args.upstream_ca,
        upstream_client_cert = ?args.upstream_client_cert,
        upstream_journal = args.upstream_journal,
        "starting vpn-registry {}", env!("CARGO_PKG_VERSION")
    );
    let pool = db::connect(
        &args.db.database_url,
        args.db_max_connections,
        Some(args.statement_timeout),
    )
    .await
    .with_context(|| format!("connecting to {}", redact_url(&args.db.database_url)))?;
    let pending = db::pending_migrations(&pool)
        .await
        .context("reading the schema version")?;
    if !pending.is_empty() {
        bail!("the database lacks migrations {pending:?}: run `vpn-registry migrate` (as the schema owner) first");
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            Tls::load(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: args.client_ca.clone(),
            })
            .context("loading the TLS certificate and key")?,
        ),
        _ => None,
    };
    if tls.is_none() && !args.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %args.listen,
            "serving PLAINTEXT on a non-loopback address: tokens and personal data cross the network in clear; \
             configure --tls-cert and --tls-key"
        );
    }
    if let Some(tls) = &tls {
        tokio::spawn(reload_on_sighup(tls.clone()));
    }
    let listener = app::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    let http = match args.metrics_listen.0 {
        Some(addr) => {
            let l = app::bind(addr).await.with_context(|| {
                format!("binding the metrics and health listener {addr} (--metrics-listen; empty disables it)")
            })?;
            tracing::info!(addr = %l.local_addr()?, "metrics and health listening (/metrics, /livez, /readyz, /status)");
            Some(l)
        }
        None => {
            tracing::info!("metrics and health listener disabled");
            None
        }
    };
    let read_pool = match &args.read_database_url {
        Some(url) if url != &args.db.database_url => Some(
            db::connect(url, args.db_max_connections, Some(args.statement_timeout))
                .await
                .with_context(|| format!("connecting to {}", redact_url(url)))?,
        ),
        _ => None,
    };
    let options = app::Options {
        read_pool,
        ..app::Options::from_args(&args, tls)
    };
    let listeners = app::Listeners { grpc: listener, http };
    app::serve(listeners, pool, options, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn connect(args: &DbArgs) -> anyhow::Result<sqlx::PgPool> {
    db::connect(&args.database_url, 2, None).await.with_context(|| {
        format!(
            "connecting to {} (run `vpn-registry migrate` first?)",
            redact_url(&args.database_url)
        )
    })
}

/// Re-reads the TLS certificate, key and CA on every SIGHUP; established
/// connections keep theirs.
async fn reload_on_sighup(tls: std::sync::Arc<Tls>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; TLS files are not reloaded");
            return;
        };
        while hup.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => tracing::info!("TLS certificate, key and CA reloaded"),
                Err(e) => tracing::error!(error = %e, "TLS reload failed; keeping the previous certificate"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tls;
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
