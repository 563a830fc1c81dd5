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

pub fn database_url(pool: &PgPool) -> String {
    let o = pool.connect_options();
    format!(
        "postgres://{}@{}:{}/{}",
        o.get_username(),
        o.get_host(),
        o.get_port(),
        o.get_database().expect("test database name")
    )
}

pub fn run(args: &[&str], url: &str) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[sqlx::test]
async fn migrate_fails_when_it_cannot_grant_the_runtime_role(pool: PgPool) {
    let url = database_url(&pool);
    let out = run(&["migrate", "--runtime-role", "no_such_role_here"], &url);
    assert!(!out.status.success(), "migrate succeeded without granting");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no_such_role_here") && stderr.contains("does not exist"),
        "{stderr}"
    );
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
async fn user_invite_queues_the_mail_prints_the_link_and_the_invitee_joins(pool: PgPool) {
    let app = spawn_app(pool).await;
    let url = database_url(&app.pool);
    let base = format!("http://{}", app.addr);
    let invite = |args: &[&str]| {
        let mut all = vec!["user", "invite", "--public-url", base.as_str(), "--operator", "alice"];
        all.extend_from_slice(args);
        run(&all, &url)
    };
    let out = invite(&["--role", "admin", "--email", "first.admin@pta.example.pk"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let link = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(link.starts_with(&format!("{base}/console/invitation?token=")), "{link}");
    let queued: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notifications WHERE recipient = 'first.admin@pta.example.pk' AND message IS NOT NULL",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(queued, 1, "the invitation goes out through the outbox");
    let actor: String = sqlx::query_scalar("SELECT actor_name FROM audit_events WHERE action = 'INVITED'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(actor, "cli:alice");

    // The invitee follows the link, chooses a password, and must then enrol
    // a second factor (administrators do).
    let path = link.trim_start_matches(&base);
    let token = path.split_once("token=").unwrap().1;
    let (cookie, csrf) = crate::web::public_form(&app, path).await;
    let form = [
        ("token", token),
        ("csrf", csrf.as_str()),
        ("name", "First Admin"),
        ("password", crate::web::GOOD_PASSWORD),
    ];
    let joined = crate::web::call(&app, "POST", "/console/invitation", Some(&cookie), &form).await;
    assert_eq!(joined.status, 303, "{}", joined.body);
    let page = crate::web::try_sign_in(&app, "first.admin@pta.example.pk", crate::web::GOOD_PASSWORD, "").await;
    assert_eq!(page.location.as_deref(), Some("/console/account/second-factor"));

    let again = invite(&["--role", "reviewer", "--email", "first.admin@pta.example.pk"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has an account"));
    let no_isp = invite(&["--role", "isp", "--email", "desk@ptcl.example.pk"]);
    assert!(String::from_utf8_lossy(&no_isp.stderr).contains("--isp"));
    let no_institution = invite(&[
        "--role",
        "owner",
        "--email",
        "owner@bank.example.pk",
        "--institution",
        &uuid::Uuid::now_v7().to_string(),
    ]);
    assert!(String::from_utf8_lossy(&no_institution.stderr).contains("no such institution"));
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
    eventually(
        "the server follows the new session",
        Duration::from_secs(10),
        || async {
            let mut stream = app
                .lookups(Some(&token))
                .watch_changes(pb::WatchChangesRequest::default())
                .await
                .unwrap()
                .into_inner();
            let Some(Event::Reset(reset)) = stream.message().await.unwrap().unwrap().event else {
                panic!("a fresh watcher starts with a reset");
            };
            (reset.session_id == printed.to_string()).then_some(())
        },
    )
    .await;
}

/// A `vpn-registry serve` process, its address and its log lines; killed if
/// a failing test leaves it running (it would hold the test's database).
struct Served {
    child: Option<std::process::Child>,
    addr: String,
    /// The metrics and health listener.
    http: Option<String>,
    logs: Option<std::thread::JoinHandle<Vec<String>>>,
}

fn serve(args: &[&str], url: &str) -> Served {
    serve_logging(args, url, "info")
}

/// [`serve`] with `RUST_LOG=rust_log`.
fn serve_logging(args: &[&str], url: &str, rust_log: &str) -> Served {
    let listen: &[&str] = if args.contains(&"--listen") {
        &[]
    } else {
        &["--listen", "127.0.0.1:0"]
    };
    let metrics: &[&str] = if args.contains(&"--metrics-listen") {
        &[]
    } else {
        &["--metrics-listen", "127.0.0.1:0"]
    };
    let grace: &[&str] = if args.contains(&"--shutdown-grace-secs") {
        &[]
    } else {
        &["--shutdown-grace-secs", "2"]
    };
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(grace)
        .args(listen)
        .args(metrics)
        .args(args)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", rust_log)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let logs = std::thread::spawn(move || {
        let mut logs = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // "listening" (gRPC) then "metrics and health listening", as
            // text or (--log-format json) as an object.
            let json = serde_json::from_str::<serde_json::Value>(&line).ok();
            let message = json
                .as_ref()
                .and_then(|e| e["fields"]["message"].as_str().map(str::to_owned));
            let addr = match &json {
                Some(e) => e["fields"]["addr"].as_str().map(str::to_owned),
                None => line.split("addr=").nth(1).map(|a| a.trim().to_owned()),
            };
            let text = message.as_deref().unwrap_or(&line);
            let http = text.contains("metrics and health listening");
            if let Some(addr) = addr.filter(|_| http || text.contains("listening")) {
                let _ = addr_tx.send((http, addr));
            }
            logs.push(line);
        }
        logs
    });
    // The gRPC address, and the metrics one when this helper asked for it.
    let (mut addr, mut http) = (None, None);
    while addr.is_none() || (http.is_none() && !metrics.is_empty()) {
        match addr_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("serve logs its addresses")
        {
            (true, a) => http = Some(a),
            (false, a) => addr = Some(a),
        }
    }
    let addr = addr.unwrap();
    Served {
        child: Some(child),
        addr,
        http,
        logs: Some(logs),
    }
}

impl Served {
    /// Sends SIGTERM, waits for the exit, and returns the exit status and log lines.
    async fn stop(self) -> (std::process::ExitStatus, Vec<String>) {
        signal(self.child(), "TERM");
        self.wait().await
    }

    /// Waits for the exit; returns the exit status and log lines.
    async fn wait(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let mut child = self.child.take().expect("running");
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        (status, self.logs.take().expect("read").join().unwrap())
    }

    fn child(&self) -> &std::process::Child {
        self.child.as_ref().expect("running")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
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
    let served = serve(&[], &url);
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", served.addr))
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

    signal(served.child(), "TERM");
    // The watch sees NOT_SERVING (or the stream ends) as shutdown begins.
    let seen = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("shutdown is announced");
    if let Ok(Some(update)) = seen {
        assert_eq!(update.status, ServingStatus::NotServing as i32);
    }
    let (status, logs) = served.wait().await;
    assert!(status.success(), "exit status {status:?}");
    let logs = logs.join("\n");
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
    let established = eventually("served over TLS", Duration::from_secs(30), || async {
        let channel = connect(&first.ca_pem).await.ok()?;
        serving(channel.clone()).await.then_some(channel)
    })
    .await;

    let second = DevCertificates::generate(&hosts).unwrap();
    second.write_to(&dir).unwrap();
    signal(served.child(), "HUP");
    eventually("the new certificate is served", Duration::from_secs(10), || async {
        let channel = connect(&second.ca_pem).await.ok()?;
        serving(channel).await.then_some(())
    })
    .await;
    assert!(
        connect(&first.ca_pem).await.is_err(),
        "new connections get the new certificate"
    );
    assert!(
        serving(established).await,
        "the connection made before the rotation still works"
    );

    let (status, logs) = served.stop().await;
    assert!(status.success());
    let logs = logs.join("\n");
    assert!(logs.contains("TLS certificate, key and CA reloaded"), "{logs}");
}

#[sqlx::test]
async fn serving_plaintext_beyond_loopback_is_warned_about(pool: PgPool) {
    let (_, logs) = serve(&["--listen", "0.0.0.0:0"], &database_url(&pool)).stop().await;
    let logs = logs.join("\n");
    assert!(logs.contains("WARN") && logs.contains("PLAINTEXT"), "{logs}");
}

#[sqlx::test]
async fn a_client_chosen_request_id_cannot_forge_a_text_log_line(pool: PgPool) {
    let served = serve(&[], &database_url(&pool));
    let app = TestApp::attach(
        served.addr.parse().unwrap(),
        served.http.as_deref().unwrap().parse().unwrap(),
        pool.clone(),
    )
    .await;
    let admin = app.admin().await;
    let forged = "x} vpn_registry::access: call method=/forged code=OK";
    let mut request = tonic::Request::new(pb::ListIspsRequest::default());
    request.metadata_mut().insert("x-request-id", forged.parse().unwrap());
    app.isps(Some(&admin)).list_isps(request).await.unwrap();
    let (_, lines) = served.stop().await;
    let logged: Vec<&String> = lines.iter().filter(|l| l.contains("/forged")).collect();
    assert!(!logged.is_empty(), "the call is logged");
    for line in logged {
        assert!(line.contains(&format!("request_id={forged:?}")), "quoted: {line}");
        assert!(!line.contains(&format!("request_id={forged}")), "never bare: {line}");
    }
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

/// Personal data the walk-through below sends; none may reach a log line.
const PII: &[&str] = &[
    "Zarmeen Khanzada",
    "42201-9876543-5",
    "4220198765435",
    "zarmeen.pii@example.pk",
    "0345 9876543",
    "03459876543",
    "zarmeen.bad@@example",
];

#[sqlx::test]
async fn access_logs_carry_the_call_and_never_personal_data(pool: PgPool) {
    let served = serve_logging(
        &["--log-format", "json", "--access-summary-interval", "1s"],
        &database_url(&pool),
        "trace",
    );
    let app = TestApp::attach(
        served.addr.parse().unwrap(),
        served.http.as_deref().unwrap().parse().unwrap(),
        pool.clone(),
    )
    .await;
    let (admin_id, admin) = app
        .token_with(
            vpn_registry::domain::principal::Role::Admin,
            Duration::from_secs(3600),
            None,
        )
        .await;
    let person = pb::Institution {
        legal_name: "Zarmeen Khanzada".into(),
        cnic: "42201-9876543-5".into(),
        contact_email: "zarmeen.pii@example.pk".into(),
        contact_phone: "0345 9876543".into(),
        ..valid_institution(pb::InstitutionCategory::Freelancer)
    };
    let mut create = tonic::Request::new(pb::CreateInstitutionRequest {
        institution: Some(person),
        request_id: uuid::Uuid::new_v4().to_string(),
        validate_only: false,
    });
    create
        .metadata_mut()
        .insert("x-request-id", "walk-through-1".parse().unwrap());
    let created = app
        .institutions(Some(&admin))
        .create_institution(create)
        .await
        .unwrap()
        .into_inner();
    let id: uuid::Uuid = created.id.parse().unwrap();
    let token = app.token(vpn_registry::domain::principal::Role::Institution(id)).await;
    let registration = app.active(&token, &["8.8.12.0/24"]).await;
    let refused = app
        .institutions(Some(&token))
        .update_institution(pb::UpdateInstitutionRequest {
            institution: Some(pb::Institution {
                id: created.id.clone(),
                contact_email: "zarmeen.bad@@example".into(),
                etag: created.etag.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["contact_email"]),
            request_id: uuid::Uuid::new_v4().to_string(),
            validate_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let lookup = app.token(vpn_registry::domain::principal::Role::Lookup).await;
    let hit = app
        .lookups(Some(&lookup))
        .check_address(pb::CheckAddressRequest {
            address: "8.8.12.1".into(),
            // Answered once the lookup index holds the approval.
            min_serial: registration.feed_serial,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hit.reference, registration.reference);
    // The same write over JSON: the same access event, naming the protocol.
    let json = serde_json::json!({"id": registration.id});
    let got = crate::connect::curl(
        &app,
        "vpnregistry.v1.RegistrationService/GetRegistration",
        Some(&token),
        json.to_string().as_bytes(),
        &["-H", "x-request-id: over-json-1"],
    )
    .await;
    assert_eq!(got.status, 200);
    // The last interval's summary is logged as the server stops.
    let (_, lines) = served.stop().await;

    let secrets = [admin.as_str(), token.as_str(), lookup.as_str()];
    for line in &lines {
        for needle in PII.iter().chain(&secrets) {
            assert!(!line.contains(needle), "{needle:?} logged: {line}");
        }
    }
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let calls: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["target"] == "vpn_registry::access" && e["fields"]["message"] == "call")
        .collect();
    let create = calls
        .iter()
        .find(|e| e["fields"]["method"] == "/vpnregistry.v1.InstitutionService/CreateInstitution")
        .expect("an access event for the write");
    assert_eq!(create["level"], "INFO");
    assert_eq!(create["fields"]["request_id"], "walk-through-1");
    assert_eq!(create["fields"]["token_id"], admin_id.to_string());
    assert_eq!(create["fields"]["role"], "admin");
    assert_eq!(create["fields"]["peer"], "127.0.0.1");
    assert_eq!(create["fields"]["code"], "OK");
    assert_eq!(create["fields"]["protocol"], "grpc");
    assert!(create["fields"]["latency_ms"].as_f64().unwrap() > 0.0);
    let over_json = calls
        .iter()
        .find(|e| e["fields"]["request_id"] == "over-json-1")
        .expect("an access event for the JSON call");
    assert_eq!(over_json["fields"]["protocol"], "connect");
    assert_eq!(
        over_json["fields"]["method"],
        "/vpnregistry.v1.RegistrationService/GetRegistration"
    );
    assert_eq!(over_json["fields"]["role"], "institution");
    assert_eq!(over_json["fields"]["code"], "OK");
    let update = calls
        .iter()
        .find(|e| e["fields"]["method"] == "/vpnregistry.v1.InstitutionService/UpdateInstitution")
        .unwrap();
    assert_eq!(update["fields"]["code"], "InvalidArgument");
    assert!(
        update["fields"]["request_id"].as_str().is_some_and(|id| !id.is_empty()),
        "a fresh id when none is sent"
    );
    let lookup = calls
        .iter()
        .find(|e| e["fields"]["method"] == "/vpnregistry.v1.LookupService/CheckAddress")
        .unwrap();
    assert_eq!(lookup["level"], "DEBUG", "lookups one by one only at debug");
    let summary = events
        .iter()
        .find(|e| e["fields"]["message"] == "lookup summary")
        .expect("lookups are summarised every interval");
    assert_eq!(summary["level"], "INFO");
    assert!(summary["fields"]["calls"].as_u64().unwrap() >= 1);
    assert!(summary["fields"]["p99_le_ms"].as_f64().is_some());
}

#[sqlx::test]
async fn on_sigterm_readiness_fails_first_and_watchers_are_told_to_resume_elsewhere(pool: PgPool) {
    let served = serve(&["--shutdown-grace-secs", "8"], &database_url(&pool));
    let http: std::net::SocketAddr = served.http.as_deref().unwrap().parse().unwrap();
    let app = TestApp::attach(served.addr.parse().unwrap(), http, pool.clone()).await;
    let healthcheck = |extra: &[&str]| {
        Command::new(BIN)
            .args(["healthcheck", "--metrics-listen", &http.to_string()])
            .args(extra)
            .output()
            .unwrap()
    };
    assert!(healthcheck(&[]).status.success());
    let lookup = app.token(vpn_registry::domain::principal::Role::Lookup).await;
    let mut watch = app.watch(&lookup).await;
    // Reset, then the end of the (empty) snapshot.
    watch.message().await.unwrap().unwrap();
    watch.message().await.unwrap().unwrap();
    // A call in flight through the shutdown: a lookup waiting for a serial
    // this replica does not see (up to five seconds).
    let mut waiting = app.lookups_on_new_connection(Some(&lookup));
    let unapplied = app.unapplied_serial().await;
    let in_flight = tokio::spawn(async move {
        waiting
            .check_address(pb::CheckAddressRequest {
                address: "8.8.8.8".into(),
                min_serial: unapplied,
                ..Default::default()
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    signal(served.child(), "TERM");
    let ended = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("the watcher is told at once")
        .unwrap_err();
    assert_eq!(ended.code(), tonic::Code::Unavailable);
    assert!(ended.message().contains("resume elsewhere"), "{ended:?}");
    let (ready, body) = vpn_registry::observe::http::fetch(http, "/readyz").await.unwrap();
    assert_eq!((ready, body.as_str()), (503, "not ready: shutting down\n"));
    let unhealthy = healthcheck(&[]);
    assert!(!unhealthy.status.success());
    assert!(String::from_utf8_lossy(&unhealthy.stderr).contains("shutting down"));
    assert!(healthcheck(&["--live"]).status.success(), "alive while draining");
    let refused = app
        .lookups_on_new_connection(Some(&lookup))
        .check_address(pb::CheckAddressRequest {
            address: "8.8.8.8".into(),
            ..Default::default()
        })
        .await;
    assert!(refused.is_err(), "new calls are refused while draining");
    // The call in flight had its grace: it ended on its own terms.
    let answered = in_flight.await.unwrap().unwrap_err();
    assert_eq!(answered.code(), tonic::Code::Unavailable);
    assert!(answered.message().contains("serial"), "{answered:?}");
    let (status, _) = served.wait().await;
    assert!(status.success());
}

#[sqlx::test]
async fn kill_9_of_the_delivering_process_loses_no_notification(pool: PgPool) {
    use crate::notifications::Mailbox;
    let url = database_url(&pool);
    // The first server's mail server takes the connection and never answers:
    // it is killed in the middle of a delivery.
    let hole = Mailbox::silent().await;
    let smtp = format!("smtp://127.0.0.1:{}", hole.port);
    let first = serve(&["--smtp-url", &smtp], &url);
    let app = TestApp::attach(
        first.addr.parse().unwrap(),
        first.http.as_deref().unwrap().parse().unwrap(),
        pool.clone(),
    )
    .await;
    let (_, token) = app.enrol(pb::InstitutionCategory::Bank).await;
    let r = app.submit(&token, &["8.8.8.0/24"]).await;
    eventually("the delivery is under way", Duration::from_secs(10), || async {
        let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM notifications")
            .fetch_one(&pool)
            .await
            .ok()?;
        (attempts == 1).then_some(())
    })
    .await;
    signal(first.child(), "KILL");
    let (status, _) = first.wait().await;
    assert!(!status.success());

    // Another server takes it over once the dead one's claim runs out.
    let mailbox = Mailbox::start(0).await;
    let smtp = format!("smtp://127.0.0.1:{}", mailbox.port);
    let _second = serve(&["--smtp-url", &smtp], &url);
    // The claim's lease is 30 s.
    let mails = mailbox.wait_within(&r.reference, 1, Duration::from_secs(60)).await;
    assert!(
        mails[0]["subject"]
            .as_str()
            .unwrap()
            .contains("We received application")
    );
    eventually("recorded as delivered", Duration::from_secs(10), || async {
        let (status, attempts): (String, i32) = sqlx::query_as("SELECT status, attempts FROM notifications")
            .fetch_one(&pool)
            .await
            .ok()?;
        (status == "DELIVERED").then(|| assert_eq!(attempts, 2))
    })
    .await;
    assert_eq!(mailbox.about(&r.reference).len(), 1);
}

/// The server's peak resident memory so far (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// A document size well above the allocator's own noise (a few MiB of
/// per-thread caches that come and go with scheduling): were the content held
/// whole, the server's peak would grow by at least this much.
const LARGE_DOCUMENT: usize = 64 << 20;

#[sqlx::test]
async fn documents_stream_through_the_server_without_being_held_whole(pool: PgPool) {
    use crate::documents::{header, pdf, sized, upload};
    use pb::DocumentType as T;
    let key = test_key_file().to_str().unwrap().to_owned();
    let limit = LARGE_DOCUMENT.to_string();
    let args = ["--document-key-file", &key, "--max-document-bytes", &limit];
    let served = serve(&args, &database_url(&pool));
    let http = served.http.as_deref().unwrap().parse().unwrap();
    let app = TestApp::attach(served.addr.parse().unwrap(), http, pool.clone()).await;
    let (_, token) = app.enrol(pb::InstitutionCategory::Company).await;
    let r = app.submit(&token, &["8.8.8.0/24"]).await;
    let id = || uuid::Uuid::new_v4().to_string();
    // Warm up the paths an upload takes (HTTP/2, the pool, the cipher).
    upload(
        &app,
        &token,
        header(&r.id, T::CnicFront, "a.pdf", &id()),
        &pdf(1 << 20, b""),
    )
    .await
    .unwrap();
    let pid = served.child().id();
    let before = peak_rss_kib(pid);
    let large = pdf(LARGE_DOCUMENT, b"");
    upload(&app, &token, header(&r.id, T::CnicBack, "large.pdf", &id()), &large)
        .await
        .expect("at the limit: accepted");
    // Declared at the limit, sent longer: refused when it runs past.
    let longer = pdf(LARGE_DOCUMENT + (1 << 20), b"");
    let mut parts = vec![sized(
        header(&r.id, T::TaxpayerProof, "lying.pdf", &id()),
        LARGE_DOCUMENT as i64,
    )];
    parts.extend(longer.chunks(256 * 1024).map(|c| pb::UploadDocumentRequest {
        part: Some(pb::upload_document_request::Part::Content(c.to_vec())),
    }));
    let lying = app
        .documents(Some(&token))
        .upload_document(tokio_stream::iter(parts))
        .await
        .unwrap_err();
    assert_eq!(lying.code(), tonic::Code::InvalidArgument);
    let growth = peak_rss_kib(pid).saturating_sub(before);
    eprintln!("server peak RSS {before} KiB; grew by {growth} KiB over a 64 MiB upload and a refused 65 MiB one");
    assert!(
        growth < (LARGE_DOCUMENT as u64 / 1024) / 3,
        "the server's peak memory grew by {growth} KiB: documents are held, not streamed"
    );
}
