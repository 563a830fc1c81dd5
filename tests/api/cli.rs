//! The binary as an operator runs it: token management and serve/shutdown.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use sqlx::PgPool;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
use vpn_registry::pb;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_vpn-registry");

fn database_url(pool: &PgPool) -> String {
    let o = pool.connect_options();
    format!(
        "postgres://{}@{}:{}/{}",
        o.get_username(),
        o.get_host(),
        o.get_port(),
        o.get_database().expect("test database name")
    )
}

fn run(args: &[&str], url: &str) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[sqlx::test]
async fn token_issue_prints_one_usable_token_and_list_never_shows_secrets(pool: PgPool) {
    let app = spawn_app(pool).await;
    let url = database_url(&app.pool);
    let out = run(&["token", "issue", "--role", "admin", "--name", "ops-desk"], &url);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1);
    let token = stdout.trim();
    assert!(token.starts_with("vpr_"));

    app.wait_until_known(token).await;
    app.institutions(Some(token))
        .list_institutions(pb::ListInstitutionsRequest::default())
        .await
        .unwrap();

    let listed = run(&["token", "list"], &url);
    let listing = String::from_utf8(listed.stdout).unwrap();
    assert!(listing.contains("ops-desk") && listing.contains("admin"));
    assert!(!listing.contains(token), "secrets are never listed");

    let bad = run(&["token", "issue", "--role", "institution"], &url);
    assert!(!bad.status.success());
    let unknown = run(
        &[
            "token",
            "issue",
            "--role",
            "institution",
            "--institution",
            &uuid::Uuid::now_v7().to_string(),
        ],
        &url,
    );
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no such institution"));
}

#[sqlx::test]
async fn isps_are_added_and_listed_from_the_command_line(pool: PgPool) {
    let app = spawn_app(pool).await;
    let url = database_url(&app.pool);
    let added = run(
        &[
            "isp",
            "add",
            "nayatel",
            "--name",
            "Nayatel (Pvt) Ltd",
            "--operator",
            "alice",
        ],
        &url,
    );
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let audited: Vec<(String, serde_json::Value)> =
        sqlx::query_as("SELECT actor_name, changes FROM audit_events WHERE subject_type = 'isp'")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].0, "cli:alice", "the operator is on the record");
    assert_eq!(audited[0].1[0]["after"], "nayatel");
    let again = run(&["isp", "add", "nayatel", "--name", "Twice"], &url);
    assert!(!again.status.success());
    let listed = String::from_utf8(run(&["isp", "list"], &url).stdout).unwrap();
    assert!(
        listed.contains("nayatel") && listed.contains("Nayatel (Pvt) Ltd") && listed.contains("ptcl"),
        "{listed}"
    );

    let unknown = run(&["token", "issue", "--role", "isp", "--isp", "nope"], &url);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no such ISP"));
    let isp_token = run(&["token", "issue", "--role", "isp", "--isp", "nayatel"], &url);
    let token = String::from_utf8(isp_token.stdout).unwrap();
    // Servers learn new credentials by notification, a moment after the write.
    app.wait_until_known(token.trim()).await;
    let pending = app
        .isps(Some(token.trim()))
        .list_pending_attestations(pb::ListPendingAttestationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(pending.attestations.is_empty());
}

#[sqlx::test]
async fn feed_new_session_prints_the_session_watchers_are_reset_to(pool: PgPool) {
    use pb::watch_changes_response::Event;
    let app = spawn_app(pool).await;
    let url = database_url(&app.pool);
    let before: uuid::Uuid = sqlx::query_scalar("SELECT session_id FROM feed_state")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let out = run(&["feed", "new-session"], &url);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: uuid::Uuid = String::from_utf8(out.stdout).unwrap().trim().parse().unwrap();
    let stored: uuid::Uuid = sqlx::query_scalar("SELECT session_id FROM feed_state")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(printed, stored);
    assert_ne!(printed, before);
    // The server follows without a restart: a watcher is reset to it.
    let token = app.token(vpn_registry::domain::principal::Role::Lookup).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut stream = app
            .lookups(Some(&token))
            .watch_changes(pb::WatchChangesRequest::default())
            .await
            .unwrap()
            .into_inner();
        let Some(Event::Reset(reset)) = stream.message().await.unwrap().unwrap().event else {
            panic!("a fresh watcher starts with a reset");
        };
        if reset.session_id == printed.to_string() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the server kept the old session");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `vpn-registry serve` process, its address and its log lines.
struct Served {
    child: std::process::Child,
    addr: String,
    logs: std::thread::JoinHandle<Vec<String>>,
}

fn serve(args: &[&str], url: &str) -> Served {
    let listen: &[&str] = if args.contains(&"--listen") {
        &[]
    } else {
        &["--listen", "127.0.0.1:0"]
    };
    let mut child = Command::new(BIN)
        .args(["serve", "--shutdown-grace-secs", "2"])
        .args(listen)
        .args(args)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let logs = std::thread::spawn(move || {
        let mut logs = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("addr=").nth(1).filter(|_| line.contains("listening")) {
                let _ = addr_tx.send(addr.trim().to_owned());
            }
            // With --log-format json, the same event as an object.
            if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                && event["fields"]["message"] == "listening"
                && let Some(addr) = event["fields"]["addr"].as_str()
            {
                let _ = addr_tx.send(addr.to_owned());
            }
            logs.push(line);
        }
        logs
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("serve logs its address");
    Served { child, addr, logs }
}

impl Served {
    /// Sends SIGTERM, waits for the exit, and returns the exit status and log lines.
    async fn stop(self) -> (std::process::ExitStatus, Vec<String>) {
        signal(&self.child, "TERM");
        let mut child = self.child;
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        (status, self.logs.join().unwrap())
    }
}

fn signal(child: &std::process::Child, name: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

#[sqlx::test]
async fn serve_reports_serving_and_stops_cleanly_on_sigterm(pool: PgPool) {
    let url = database_url(&pool);
    let Served {
        mut child,
        addr,
        logs: reader,
    } = serve(&[], &url);
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let mut watch = health
        .watch(HealthCheckRequest { service: String::new() })
        .await
        .unwrap()
        .into_inner();
    while watch.message().await.unwrap().unwrap().status != ServingStatus::Serving as i32 {}

    signal(&child, "TERM");
    // The watch sees NOT_SERVING (or the stream ends) as shutdown begins.
    let seen = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("shutdown is announced");
    if let Ok(Some(update)) = seen {
        assert_eq!(update.status, ServingStatus::NotServing as i32);
    }
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    let logs = reader.join().unwrap().join("\n");
    assert!(
        logs.contains("database_url=postgres://postgres"),
        "effective config is logged: {logs}"
    );
    assert!(logs.contains("shutting down"), "{logs}");
}

#[sqlx::test]
async fn sighup_rotates_the_tls_certificate_without_dropping_connections(pool: PgPool) {
    use tonic::transport::{Certificate, ClientTlsConfig};
    use vpn_registry::tls::DevCertificates;

    let dir = std::env::temp_dir().join(format!("vpn-registry-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let hosts = ["localhost".to_owned()];
    let first = DevCertificates::generate(&hosts).unwrap();
    first.write_to(&dir).unwrap();
    let (cert, key) = (dir.join("server.pem"), dir.join("server-key.pem"));
    let served = serve(
        &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
        &database_url(&pool),
    );
    let port = served.addr.rsplit(':').next().unwrap().to_owned();
    let connect = |ca: &str| {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name("localhost");
        let endpoint = tonic::transport::Channel::from_shared(format!("https://localhost:{port}"))
            .unwrap()
            .tls_config(tls)
            .unwrap();
        async move { endpoint.connect().await }
    };
    let serving = |channel: tonic::transport::Channel| async move {
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .is_ok_and(|s| s.into_inner().status == ServingStatus::Serving as i32)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let established = loop {
        if let Ok(channel) = connect(&first.ca_pem).await
            && serving(channel.clone()).await
        {
            break channel;
        }
        assert!(std::time::Instant::now() < deadline, "never served over TLS");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let second = DevCertificates::generate(&hosts).unwrap();
    second.write_to(&dir).unwrap();
    signal(&served.child, "HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(channel) = connect(&second.ca_pem).await
            && serving(channel).await
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        connect(&first.ca_pem).await.is_err(),
        "new connections get the new certificate"
    );
    assert!(
        serving(established).await,
        "the connection made before the rotation still works"
    );

    signal(&served.child, "TERM");
    let mut child = served.child;
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let logs = served.logs.join().unwrap().join("\n");
    assert!(logs.contains("TLS certificate, key and CA reloaded"), "{logs}");
}

#[sqlx::test]
async fn serving_plaintext_beyond_loopback_is_warned_about(pool: PgPool) {
    let (_, logs) = serve(&["--listen", "0.0.0.0:0"], &database_url(&pool)).stop().await;
    let logs = logs.join("\n");
    assert!(logs.contains("WARN") && logs.contains("PLAINTEXT"), "{logs}");
}

#[sqlx::test]
async fn json_logs_are_one_object_per_line(pool: PgPool) {
    let (_, lines) = serve(&["--log-format", "json"], &database_url(&pool)).stop().await;
    assert!(lines.len() >= 2, "{lines:?}");
    for line in &lines {
        let event: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(event["timestamp"].is_string() && event["level"].is_string(), "{line}");
        assert!(event["fields"]["message"].is_string(), "{line}");
    }
    assert!(
        lines.iter().any(|l| l.contains("\"statement_timeout\"")),
        "the effective configuration is a structured event"
    );
}
