use std::io::Write;

use anyhow::{Context, bail};
use clap::Parser;
use vpn_registry::{
    app, db,
    domain::principal::Actor,
    flags::{
        Cli, Command, DbArgs, DocumentKeyCommand, FeedCommand, IspCommand, ServeArgs, TokenCommand, UserCommand,
        redact_url,
    },
    operator, telemetry,
    tls::{Tls, TlsFiles},
};

/// The lookup tier allocates a few small objects per call from many tasks at
/// once; mimalloc's per-thread heaps keep that off a shared lock (see README, bench).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
            db::grant_runtime(&pool, &args.runtime_role).await?;
            tracing::info!(role = %args.runtime_role, "runtime role granted");
            tracing::info!("migrations applied");
        }
        Command::DevCerts(args) => {
            operator::dev_certs(&args)?;
            tracing::info!(dir = %args.out.display(), "development certificates written");
        }
        Command::Token(cmd) => match cmd {
            TokenCommand::Issue(args) => {
                let pool = connect(&args.db).await?;
                let token = operator::issue(&pool, &args).await?;
                writeln!(std::io::stdout(), "{token}")?;
            }
            TokenCommand::Rotate {
                id,
                grace,
                db,
                operator,
            } => {
                let token = operator::rotate(&connect(&db).await?, id, grace, &operator.name()).await?;
                tracing::info!(%id, ?grace, "token rotated; the old secret works until the grace period ends");
                writeln!(std::io::stdout(), "{token}")?;
            }
            TokenCommand::Revoke { id, db, operator } => {
                operator::revoke(&connect(&db).await?, id, &operator.name()).await?;
                tracing::info!(%id, "token revoked");
            }
            TokenCommand::List { db } => operator::list(&connect(&db).await?, &mut std::io::stdout()).await?,
        },
        Command::Isp(cmd) => match cmd {
            IspCommand::Add {
                code,
                name,
                db,
                operator,
            } => operator::add_isp(&connect(&db).await?, &code, &name, &operator.name()).await?,
            IspCommand::List { db } => operator::list_isps(&connect(&db).await?, &mut std::io::stdout()).await?,
        },
        Command::DocumentKey(DocumentKeyCommand::Generate { out }) => {
            let id = vpn_registry::vault::generate_key_file(&out)?;
            tracing::info!(file = %out.display(), "document key written; keep it out of the database and its backups");
            writeln!(std::io::stdout(), "{id}")?;
        }
        Command::DocumentKey(DocumentKeyCommand::Rotate { from, to, db, operator }) => {
            let rewrapped = operator::rotate_document_key(&connect(&db).await?, &from, &to, &operator.name()).await?;
            tracing::info!(rewrapped, "document keys re-wrapped");
            writeln!(std::io::stdout(), "{rewrapped}")?;
        }
        Command::User(UserCommand::Invite(args)) => {
            let link = operator::invite(&connect(&args.db).await?, &args).await?;
            tracing::info!(email = %args.email, "invitation queued: the server e-mails it (the link, valid 7 days, once, is on stdout)");
            writeln!(std::io::stdout(), "{link}")?;
        }
        Command::Healthcheck(args) => {
            if let Err(why) = operator::healthcheck(&args).await {
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

/// `serve`: settings logged, the database checked, TLS loaded, listeners
/// bound, then the app until SIGINT or SIGTERM.
async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    args.log_settings();
    let pool = primary_pool(&args).await?;
    let read_pool = read_pool(&args).await?;
    let tls = load_tls(&args)?;
    let listeners = bind_listeners(&args).await?;
    let options = app::Options {
        read_pool,
        ..app::Options::from_args(&args, tls, mailer(&args)?, document_keys(&args)?, fee_schedule(&args)?)
    };
    app::serve(listeners, pool, options, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// The SMTP client e-mail goes through, if `--smtp-url` names one; said
/// once at start when there is none.
fn mailer(args: &ServeArgs) -> anyhow::Result<Option<vpn_registry::notify::mail::Mailer>> {
    match &args.smtp_url {
        Some(url) => {
            let ca = match &args.smtp_ca {
                Some(path) => Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?),
                None => None,
            };
            Ok(Some(vpn_registry::notify::mail::Mailer::new(
                url,
                &args.mail_from,
                ca.as_deref(),
            )?))
        }
        None => {
            tracing::warn!("no --smtp-url: e-mail notifications are kept (administrators can read them), not sent");
            Ok(None)
        }
    }
}

/// The document keys, if files are given; said once at start when not.
fn document_keys(args: &ServeArgs) -> anyhow::Result<Option<std::sync::Arc<vpn_registry::vault::Keyring>>> {
    if args.document_key_files.is_empty() {
        tracing::warn!("no --document-key-file: document uploads and downloads are refused");
        return Ok(None);
    }
    let keys = vpn_registry::vault::Keyring::load(&args.document_key_files)?;
    tracing::info!(key_id = keys.current_id(), "document key loaded");
    Ok(Some(std::sync::Arc::new(keys)))
}

/// The fee schedule: `--fee-schedule`'s, or the regulation's default.
fn fee_schedule(args: &ServeArgs) -> anyhow::Result<std::sync::Arc<vpn_registry::domain::fees::FeeSchedule>> {
    let Some(path) = &args.fee_schedule else {
        return Ok(std::sync::Arc::default());
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let schedule = text
        .parse()
        .map_err(|e| anyhow::anyhow!("fee schedule {}: {e}", path.display()))?;
    Ok(std::sync::Arc::new(schedule))
}

/// The primary's pool, once its schema is known to be current.
async fn primary_pool(args: &ServeArgs) -> anyhow::Result<sqlx::PgPool> {
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
    Ok(pool)
}

/// A pool on `--read-database-url`, when it names another database.
async fn read_pool(args: &ServeArgs) -> anyhow::Result<Option<sqlx::PgPool>> {
    Ok(match &args.read_database_url {
        Some(url) if url != &args.db.database_url => Some(
            db::connect(url, args.db_max_connections, Some(args.statement_timeout))
                .await
                .with_context(|| format!("connecting to {}", redact_url(url)))?,
        ),
        _ => None,
    })
}

/// The TLS configuration, reloaded on SIGHUP; plaintext beyond loopback is
/// warned about.
fn load_tls(args: &ServeArgs) -> anyhow::Result<Option<std::sync::Arc<Tls>>> {
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
    match &tls {
        Some(tls) => {
            tokio::spawn(reload_on_sighup(tls.clone()));
        }
        None if !args.listen.ip().is_loopback() => tracing::warn!(
            listen = %args.listen,
            "serving PLAINTEXT on a non-loopback address: tokens and personal data cross the network in clear; \
             configure --tls-cert and --tls-key"
        ),
        None => {}
    }
    Ok(tls)
}

/// The gRPC listener and, unless disabled, the metrics and health one.
async fn bind_listeners(args: &ServeArgs) -> anyhow::Result<app::Listeners> {
    let grpc = app::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(addr = %grpc.local_addr()?, "listening");
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
    Ok(app::Listeners { grpc, http })
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
