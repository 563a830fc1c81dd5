//! The gateway agent's kernel sets while it runs, as its upstreams come and
//! go (a proxy the test cuts): it fails over to the next upstream and keeps
//! following; past `--max-stale` without any, it reports not ready, raises
//! its alarm and holds, opens or empties the sets as `--on-stale` says; back
//! in contact, the sets hold the registry's set again. A reset from the
//! registry replaces the sets' contents; and the agent compares the sets
//! with what they should hold, and repairs them, while changes go on.

use std::net::SocketAddr;
use std::time::Duration;

use sqlx::PgPool;
use vpn_registry::domain::principal::Role;
use vpn_registry::pb::InstitutionCategory as C;
use vpn_registry_agent::Listeners;
use vpn_registry_agent::health::OnStale;

use crate::agent::get;
use crate::agent_nft::{
    FLOWS, Running, add_stray_host, agent_config, flow, matches, remove_flow_of_8_8_4_4, start_with, until_matching,
};
use crate::helpers::*;
use crate::netns::Netns;
use crate::proxy::Proxy;

fn scratch() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("agent-stale-{}", uuid::Uuid::new_v4()))
}

/// An agent answering metrics and health on a port of its own.
async fn start_observed(config: vpn_registry_agent::config::Config) -> (Running, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listeners = Listeners {
        serve: None,
        metrics: Some(listener),
    };
    (start_with(config, listeners), addr)
}

/// The value of one metric line, as scraped.
async fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    let (_, _, text) = get(addr, "/metrics", "").await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

async fn until_ready(addr: SocketAddr, ready: bool, within: Duration) -> String {
    eventually(&format!("/readyz to say ready={ready}"), within, || async {
        let (status, _, body) = get(addr, "/readyz", "").await;
        ((status == 200) == ready).then_some(body)
    })
    .await
}

#[sqlx::test]
async fn the_agent_fails_over_to_the_next_upstream_and_keeps_the_sets(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, bank) = app.enrol(C::Bank).await;
    let lookup = app.token(Role::Lookup).await;
    app.active(&bank, &["8.8.8.0/24"]).await;
    let (first, second) = (Proxy::start(app.addr).await, Proxy::start(app.addr).await);
    let ns = Netns::new();
    let mut config = agent_config(&app, &lookup, &scratch(), &ns);
    config.upstreams = vec![format!("http://{}", first.addr), format!("http://{}", second.addr)];
    let ((stop, agent), ops) = start_observed(config).await;
    until_matching(&ns, FLOWS, &[&flow("8.8.8.1")], &[&flow("9.9.9.1")]).await;
    until_ready(ops, true, Duration::from_secs(5)).await;

    // The first upstream goes away; what the registry approves meanwhile
    // arrives through the second.
    first.cut();
    app.active(&bank, &["9.9.9.0/24"]).await;
    until_matching(&ns, FLOWS, &[&flow("8.8.8.1"), &flow("9.9.9.1")], &[]).await;
    assert_eq!(metric(ops, "vpn_registry_agent_stream_breaks_total").await, Some(1.0));
    assert_eq!(metric(ops, "vpn_registry_agent_upstream_connected").await, Some(1.0));
    assert_eq!(
        metric(ops, "vpn_registry_agent_serial").await,
        Some(app.last_serial().await as f64)
    );
    let lag = metric(ops, "vpn_registry_agent_commit_to_kernel_seconds_count").await;
    assert!(
        lag >= Some(1.0),
        "the delta's commit-to-kernel time was measured: {lag:?}"
    );
    until_ready(ops, true, Duration::from_secs(5)).await;
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

/// Follows through a proxy, loses it for longer than `--max-stale`, and
/// checks the sets under `policy`; then gets it back.
async fn outage_under(pool: PgPool, policy: OnStale) {
    let app = spawn_app(pool).await;
    let (_, bank) = app.enrol(C::Bank).await;
    let lookup = app.token(Role::Lookup).await;
    app.active(&bank, &["8.8.8.0/24"]).await;
    let link = Proxy::start(app.addr).await;
    let ns = Netns::new();
    let mut config = agent_config(&app, &lookup, &scratch(), &ns);
    config.upstreams = vec![format!("http://{}", link.addr)];
    config.max_stale = Duration::from_secs(2);
    config.on_stale = policy;
    let ((stop, agent), ops) = start_observed(config).await;
    until_matching(&ns, FLOWS, &[&flow("8.8.8.1")], &[&flow("7.7.7.7")]).await;
    until_ready(ops, true, Duration::from_secs(5)).await;
    assert_eq!(metric(ops, "vpn_registry_agent_stale").await, Some(0.0));

    link.cut();
    let why = until_ready(ops, false, Duration::from_secs(20)).await;
    assert!(why.contains("stale"), "{why}");
    assert_eq!(metric(ops, "vpn_registry_agent_stale").await, Some(1.0), "the alarm");
    assert!(metric(ops, "vpn_registry_agent_seconds_since_last_contact").await > Some(2.0));
    let holding = match policy {
        OnStale::Hold => "last_good",
        OnStale::Open => "everything",
        OnStale::Closed => "nothing",
    };
    let in_force = format!("vpn_registry_agent_sets_holding{{what=\"{holding}\"}}");
    eventually(&format!("{in_force} to be 1"), Duration::from_secs(10), || async {
        (metric(ops, &in_force).await == Some(1.0)).then_some(())
    })
    .await;
    match policy {
        OnStale::Hold => {
            assert!(matches(&ns, FLOWS, &flow("8.8.8.1")), "the last good set is held");
            assert!(!matches(&ns, FLOWS, &flow("7.7.7.7")));
        }
        OnStale::Open => {
            until_matching(&ns, FLOWS, &[&flow("8.8.8.1"), &flow("7.7.7.7")], &[]).await;
            until_matching(&ns, "registered_nets4", &["7.7.7.7"], &[]).await;
            until_matching(&ns, "registered_nets6", &["2001:db8::1"], &[]).await;
        }
        OnStale::Closed => {
            until_matching(&ns, FLOWS, &[], &[&flow("8.8.8.1"), &flow("7.7.7.7")]).await;
        }
    }

    // Back in contact: ready, the alarm down, the registry's set again.
    link.restore();
    until_ready(ops, true, Duration::from_secs(45)).await;
    assert_eq!(metric(ops, "vpn_registry_agent_stale").await, Some(0.0));
    let registry = "vpn_registry_agent_sets_holding{what=\"registry\"}";
    eventually(
        "the sets to hold the registry's set",
        Duration::from_secs(10),
        || async { (metric(ops, registry).await == Some(1.0)).then_some(()) },
    )
    .await;
    until_matching(&ns, FLOWS, &[&flow("8.8.8.1")], &[&flow("7.7.7.7")]).await;
    until_matching(&ns, "registered_nets4", &[], &["7.7.7.7"]).await;
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

#[sqlx::test]
async fn stale_under_hold_keeps_the_last_good_set(pool: PgPool) {
    outage_under(pool, OnStale::Hold).await;
}

#[sqlx::test]
async fn stale_under_open_lets_every_address_count_as_registered(pool: PgPool) {
    outage_under(pool, OnStale::Open).await;
}

#[sqlx::test]
async fn stale_under_closed_empties_the_sets(pool: PgPool) {
    outage_under(pool, OnStale::Closed).await;
}

#[sqlx::test]
async fn the_running_agent_lists_its_sets_aside_and_repairs_what_was_changed(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, bank) = app.enrol(C::Bank).await;
    let lookup = app.token(Role::Lookup).await;
    app.active(&bank, &["8.8.8.0/24", "8.8.4.4/32"]).await;
    let ns = Netns::new();
    let mut config = agent_config(&app, &lookup, &scratch(), &ns);
    config.nft.as_mut().unwrap().verify_interval = Duration::from_secs(1);
    let ((stop, agent), ops) = start_observed(config).await;
    until_matching(&ns, FLOWS, &[&flow("8.8.8.1"), &flow("8.8.4.4")], &[]).await;

    // Behind the agent's back, while it runs: one element removed, a
    // stray one added. The next listing finds both and puts them right.
    remove_flow_of_8_8_4_4(&ns);
    add_stray_host(&ns);
    until_matching(&ns, FLOWS, &[&flow("8.8.4.4")], &[]).await;
    until_matching(&ns, "registered_hosts4", &[], &["1.1.1.1"]).await;
    let runs = metric(ops, "vpn_registry_agent_verify_runs_total").await;
    assert!(runs >= Some(1.0), "{runs:?}");
    // The whole table deleted (a ruleset file with `flush ruleset`
    // reloaded): made again and refilled.
    ns.nft(&["delete", "table", "inet", "vpn_registry"]);
    until_matching(&ns, FLOWS, &[&flow("8.8.8.1"), &flow("8.8.4.4")], &[]).await;
    // Changes go on while the sets are listed (on a socket of their own).
    app.active(&bank, &["9.9.9.0/24"]).await;
    until_matching(&ns, FLOWS, &[&flow("9.9.9.1")], &[]).await;
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

#[sqlx::test]
async fn a_reset_from_the_registry_replaces_the_sets_contents(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, bank) = app.enrol(C::Bank).await;
    let lookup = app.token(Role::Lookup).await;
    app.active(&bank, &["8.8.8.0/24"]).await;
    let ns = Netns::new();
    let config = agent_config(&app, &lookup, &scratch(), &ns);
    let ((stop, agent), ops) = start_observed(config).await;
    until_matching(&ns, FLOWS, &[&flow("8.8.8.1")], &[]).await;
    assert_eq!(metric(ops, "vpn_registry_agent_resets_total").await, Some(1.0));
    // A stray element: a reset's replacement leaves only the registry's set.
    add_stray_host(&ns);

    // The registry starts a new feed session (after a restore from backup):
    // the agent gets a reset and a full snapshot while it runs.
    let out = crate::cli::run(&["feed", "new-session"], &crate::cli::database_url(&app.pool));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eventually("the agent's second reset", Duration::from_secs(20), || async {
        (metric(ops, "vpn_registry_agent_resets_total").await == Some(2.0)).then_some(())
    })
    .await;
    until_matching(&ns, "registered_hosts4", &[], &["1.1.1.1"]).await;
    until_matching(&ns, FLOWS, &[&flow("8.8.8.1")], &[]).await;
    // And it follows the new session's deltas.
    app.active(&bank, &["9.9.9.0/24"]).await;
    until_matching(&ns, FLOWS, &[&flow("8.8.8.1"), &flow("9.9.9.1")], &[]).await;
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}
