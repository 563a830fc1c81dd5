//! The gateway agent against a real registry: it follows the change stream
//! into its state and files, fails over between upstreams, resumes with
//! deltas after a restart, and refuses a damaged state file whole.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vpn_registry::domain::principal::Role;
use vpn_registry::pb::InstitutionCategory as C;
use vpn_registry_agent::{Listeners, Stopped, config::Config, follow::read, output::Output};

use crate::helpers::*;

/// A directory of the test's own under the target's scratch space.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("agent-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(app: &TestApp, token: &str, dir: &Path) -> Config {
    Config {
        outputs: vec![
            format!("plain:{}", dir.join("allow.txt").display())
                .parse::<Output>()
                .unwrap(),
            format!("json:{}", dir.join("allow.json").display())
                .parse::<Output>()
                .unwrap(),
        ],
        on_change: Some(format!("date +%s%N >> {}", dir.join("reloads").display())),
        ..Config::new(
            // The first upstream answers nothing: the agent fails over.
            vec!["http://127.0.0.1:9".into(), format!("http://{}", app.addr)],
            token.to_owned(),
            dir.join("state"),
        )
    }
}

type Running = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<Stopped>>,
);

/// An agent running until its sender is dropped or sent to.
fn start(config: Config) -> Running {
    start_serving(config, None)
}

/// [`start`], answering HTTP on `listener`.
fn start_serving(config: Config, listener: Option<tokio::net::TcpListener>) -> Running {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listeners = Listeners {
        serve: listener,
        metrics: None,
    };
    let agent = tokio::spawn(vpn_registry_agent::run_with(config, listeners, async {
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
    // The outputs are rewritten one after another, then --on-change runs:
    // the JSON and the command may follow the text list.
    eventually(
        "the JSON output to hold both, and --on-change to run",
        Duration::from_secs(15),
        || async {
            let text = std::fs::read_to_string(dir.join("allow.json")).ok()?;
            let json: serde_json::Value = serde_json::from_str(&text).ok()?;
            (json["entries"].as_array()?.len() == 2 && dir.join("reloads").exists()).then_some(())
        },
    )
    .await;
    stop.send(()).unwrap();
    let first_run = agent.await.unwrap().unwrap();
    assert_eq!(read(&first_run.follower).resets, 1, "one snapshot, then deltas");

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
    assert_eq!(
        read(&second_run.follower).resets,
        0,
        "resumed from its serial, no snapshot"
    );
    let last = app.last_serial().await;
    assert_eq!(read(&second_run.follower).held.position.serial, last);
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

/// A GET to the agent's HTTP endpoint: (status, ETag, body).
pub(crate) async fn get(addr: std::net::SocketAddr, path: &str, if_none_match: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let condition = if if_none_match.is_empty() {
        String::new()
    } else {
        format!("If-None-Match: {if_none_match}\r\n")
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: agent\r\n{condition}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: ").or_else(|| l.strip_prefix("ETag: ")))
        .unwrap_or_default()
        .to_owned();
    (status, etag, body.to_owned())
}

#[sqlx::test]
async fn the_agent_serves_its_set_with_an_etag_and_json_deltas(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, bank) = app.enrol(C::Bank).await;
    let lookup = app.token(Role::Lookup).await;
    app.active(&bank, &["8.8.8.0/24"]).await;
    let dir = scratch("serve");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, _agent) = start_serving(config(&app, &lookup, &dir), Some(listener));
    until_listed(&dir, &["8.8.8.0/24"]).await;
    let (status, first, body) = get(addr, "/", "").await;
    assert_eq!((status, body.as_str()), (200, "8.8.8.0/24\n"));
    let (status, _, body) = get(addr, "/", &first).await;
    assert_eq!((status, body.as_str()), (304, ""), "unchanged: not modified");
    let (session, serial) = first.trim_matches('"').rsplit_once('-').unwrap();

    app.active(&bank, &["9.9.9.0/24"]).await;
    until_listed(&dir, &["8.8.8.0/24", "9.9.9.0/24"]).await;
    let (status, second, _) = get(addr, "/", &first).await;
    assert_eq!(status, 200);
    assert_ne!(second, first);
    let (_, _, delta) = get(addr, &format!("/json-delta?session={session}&serial={serial}"), "").await;
    let delta: serde_json::Value = serde_json::from_str(&delta).unwrap();
    assert_eq!(delta["reset"], false);
    let announced: Vec<&str> = delta["announced"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["prefix"].as_str().unwrap())
        .collect();
    assert_eq!(announced, ["9.9.9.0/24"], "only what changed");
    let (_, _, whole) = get(addr, "/json-delta?session=another&serial=1", "").await;
    let whole: serde_json::Value = serde_json::from_str(&whole).unwrap();
    assert_eq!(
        (whole["reset"].clone(), whole["announced"].as_array().unwrap().len()),
        (serde_json::json!(true), 2)
    );
    assert_eq!(get(addr, "/nothing", "").await.0, 404);
}
