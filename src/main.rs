use std::io::Write;

use anyhow::Context;
use clap::Parser;
use vpn_registry::{
    app, cli,
    config::{Cli, Command, DbArgs, FeedCommand, IspCommand, TokenCommand, redact_url},
    db, telemetry,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init();
    match cli.command {
        Command::Serve(args) => {
            tracing::info!(
                listen = %args.listen,
                database_url = %redact_url(&args.db.database_url),
                db_max_connections = args.db_max_connections,
                shutdown_grace_secs = args.shutdown_grace_secs,
                expiry_interval_secs = args.expiry_interval_secs,
                feed_poll_interval_ms = args.feed_poll_interval_ms,
                "starting vpn-registry {}", env!("CARGO_PKG_VERSION")
            );
            let pool = prepare(&args.db, args.db_max_connections).await?;
            let listener = app::bind(args.listen)
                .await
                .with_context(|| format!("binding {}", args.listen))?;
            tracing::info!(addr = %listener.local_addr()?, "listening");
            let options = app::Options {
                shutdown_grace: args.shutdown_grace(),
                expiry_interval: args.expiry_interval(),
                feed_poll_interval: args.feed_poll_interval(),
                watch_backlog: vpn_registry::lookup::replica::DEFAULT_WATCH_BACKLOG,
            };
            app::serve(listener, pool, options, shutdown_signal()).await?;
            tracing::info!("stopped");
        }
        Command::Migrate(db_args) => {
            prepare(&db_args, 1).await?;
            tracing::info!("migrations applied");
        }
        Command::Token(cmd) => match cmd {
            TokenCommand::Issue(args) => {
                let pool = connect(&args.db).await?;
                let token = cli::issue(&pool, &args).await?;
                writeln!(std::io::stdout(), "{token}")?;
            }
            TokenCommand::Revoke { id, db } => {
                cli::revoke(&connect(&db).await?, id).await?;
                tracing::info!(%id, "token revoked");
            }
            TokenCommand::List { db } => cli::list(&connect(&db).await?, &mut std::io::stdout()).await?,
        },
        Command::Isp(cmd) => match cmd {
            IspCommand::Add { code, name, db } => cli::add_isp(&connect(&db).await?, &code, &name).await?,
            IspCommand::List { db } => cli::list_isps(&connect(&db).await?, &mut std::io::stdout()).await?,
        },
        Command::Feed(FeedCommand::NewSession { db }) => {
            let session = db::feed::new_session(&connect(&db).await?).await?;
            tracing::warn!(%session, "change feed: new session started; replicas reload, watchers resynchronise");
            writeln!(std::io::stdout(), "{session}")?;
        }
    }
    Ok(())
}

/// Creates the database if needed, connects and applies migrations.
async fn prepare(args: &DbArgs, max_connections: u32) -> anyhow::Result<sqlx::PgPool> {
    db::ensure_database(&args.database_url)
        .await
        .with_context(|| format!("creating database at {}", redact_url(&args.database_url)))?;
    let pool = db::connect(&args.database_url, max_connections)
        .await
        .context("connecting to PostgreSQL")?;
    db::MIGRATOR.run(&pool).await.context("applying migrations")?;
    Ok(pool)
}

async fn connect(args: &DbArgs) -> anyhow::Result<sqlx::PgPool> {
    db::connect(&args.database_url, 2).await.with_context(|| {
        format!(
            "connecting to {} (run `vpn-registry migrate` first?)",
            redact_url(&args.database_url)
        )
    })
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
