//! The `vpn-registry-agent` binary: settings, logs, the agent until SIGINT
//! or SIGTERM.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = vpn_registry_agent::config::Args::parse();
    let command = args.command;
    let config = vpn_registry_agent::config::Config::from_args(args)?;
    if let Some(vpn_registry_agent::config::Command::Verify) = command {
        let report = vpn_registry_agent::verify(&config)?;
        // The report is the command's output (the operator's terminal or a
        // monitoring check), not a log line.
        use std::io::Write;
        writeln!(std::io::stdout(), "{report}")?;
        std::process::exit(if report.matches() { 0 } else { 1 });
    }
    tracing::info!(
        upstreams = ?config.upstreams,
        state_dir = %config.state_dir.display(),
        outputs = ?config.outputs.iter().map(|o| o.path.display().to_string()).collect::<Vec<_>>(),
        on_change = config.on_change.as_deref().unwrap_or("(none)"),
        nft = ?config.nft,
        max_stale_secs = config.max_stale.as_secs(),
        on_stale = ?config.on_stale,
        serve = ?config.serve,
        metrics_listen = ?config.metrics_listen,
        "starting"
    );
    vpn_registry_agent::run(config, shutdown()).await?;
    Ok(())
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping; the files and state stay as they are");
}
