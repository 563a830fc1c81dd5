//! The gateway agent against a real registry: it follows the change stream
//! into its state and files, fails over between upstreams, resumes with
//! deltas after a restart, and refuses a damaged state file whole.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::PgPool;
use vpn_registry::domain::principal::Role;
use vpn_registry::pb::InstitutionCategory as C;
use vpn_registry_agent::{config::Config, follow::Follower, output::Output};

use crate::helpers::*;

/// A directory of the test's own under the target's scratch space.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("agent-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(app: &TestApp, token: &str, dir: &Path) -> Config {
    Config {
        // The first upstream answers nothing: the agent fails over.
        upstreams: vec!["http://127.0.0.1:9".into(), format!("http://{}", app.addr)],
        upstream_ca: None,
        client_identity: None,
        token: token.to_owned(),
        state_dir: dir.join("state"),
        outputs: vec![
            format!("plain:{}", dir.join("allow.txt").display())
                .parse::<Output>()
                .unwrap(),
            format!("json:{}", dir.join("allow.json").display())
                .parse::<Output>()
                .unwrap(),
        ],
        on_change: Some(format!("date +%s%N >> {}", dir.join("reloads").display())),
    }
}

/// An agent running until its sender is dropped or sent to.
fn start(
    config: Config,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<Follower>>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(vpn_registry_agent::run(config, async {
        let _ = stopped.await;
    }));
    (stop, agent)
}

async fn listed(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("allow.txt"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn until_listed(dir: &Path, wanted: &[&str]) {
    eventually("the allow-list to match", Duration::from_secs(15), || async {
        (listed(dir).await == wanted).then_some(())
    })
    .await;
}

#[sqlx::test]
async fn the_agent_follows_into_its_files_fails_over_and_resumes_after_a_restart(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, bank) = app.enrol(C::Bank).await;
    let lookup = app.token(Role::Lookup).await;
    app.active(&bank, &["8.8.8.0/24"]).await;
    let dir = scratch("follow");

    let (stop, agent) = start(config(&app, &lookup, &dir));
    until_listed(&dir, &["8.8.8.0/24"]).await;
    let second = app.active(&bank, &["9.9.9.0/24"]).await;
    until_listed(&dir, &["8.8.8.0/24", "9.9.9.0/24"]).await;
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("allow.json")).unwrap()).unwrap();
    assert_eq!(json["entries"].as_array().unwrap().len(), 2);
    assert!(dir.join("reloads").exists(), "--on-change ran");
    stop.send(()).unwrap();
    let first_run = agent.await.unwrap().unwrap();
    assert_eq!(first_run.resets, 1, "one snapshot, then deltas");

    // While it is down: one more approved, one revoked.
    app.active(&bank, &["7.7.7.0/24"]).await;
    app.decide(
        vpn_registry::domain::decision::Decision::Revoke,
        &app.get(&second.id).await,
        vpn_registry::pb::ReasonCode::SecurityConcern,
        "Revoked while the agent was down",
    )
    .await
    .unwrap();
    // Back up: it enforces its state at once, then catches up with deltas.
    let (stop, agent) = start(config(&app, &lookup, &dir));
    until_listed(&dir, &["7.7.7.0/24", "8.8.8.0/24"]).await;
    stop.send(()).unwrap();
    let second_run = agent.await.unwrap().unwrap();
    assert_eq!(second_run.resets, 0, "resumed from its serial, no snapshot");
    assert_eq!(second_run.held.position.serial, app.last_serial().await);
}

#[sqlx::test]
async fn a_damaged_state_file_is_refused_and_the_files_stay(pool: PgPool) {
    let app = spawn_app(pool).await;
    let lookup = app.token(Role::Lookup).await;
    let dir = scratch("damaged");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join(vpn_registry_agent::state::FILE), "vrps from another tool").unwrap();
    std::fs::write(dir.join("allow.txt"), "8.8.8.0/24\n").unwrap();
    let (_stop, agent) = start(config(&app, &lookup, &dir));
    let refused = agent.await.unwrap().unwrap_err().to_string();
    assert!(refused.contains("is not a vpn-registry-agent state file"), "{refused}");
    assert_eq!(listed(&dir).await, ["8.8.8.0/24"], "nothing was applied or rewritten");
}
