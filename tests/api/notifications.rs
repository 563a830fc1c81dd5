//! Notifications: every change someone must hear about reaches a real SMTP
//! server (aiosmtpd, started per test through `scripts/python-tools`), in
//! the institution's language; nothing is sent for a change that rolled
//! back; transient failures are retried; reminders go out once however many
//! servers look for them.

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use sqlx::PgPool;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};
use uuid::Uuid;
use vpn_registry::{
    domain::decision::Decision,
    notify::mail::Mailer,
    pb::{self, InstitutionCategory as C},
};

use crate::harness::{TestApp, eventually};

/// The venv python with aiosmtpd and standardwebhooks (the test script
/// installs it; run alone, the tests install it themselves).
pub fn python() -> String {
    if let Ok(python) = std::env::var("VPN_REGISTRY_TEST_PYTHON") {
        return python;
    }
    let out = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/python-tools"))
        .output()
        .expect("scripts/python-tools runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A real SMTP server and what it received.
pub struct Mailbox {
    _child: Child,
    pub port: u16,
    received: Arc<Mutex<Vec<Value>>>,
}

impl Mailbox {
    /// Starts one; it answers the first `fail_first` messages 451.
    pub async fn start(fail_first: u32) -> Self {
        Self::spawn(&["--fail-first", &fail_first.to_string()]).await
    }

    /// One that requires STARTTLS with the certificate in `dir`
    /// (`server.pem`, `server-key.pem`) and AUTH as `user`/`password`.
    pub async fn tls(dir: &std::path::Path, user: &str, password: &str) -> Self {
        let cert = dir.join("server.pem");
        let key = dir.join("server-key.pem");
        Self::spawn(&[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--user",
            user,
            "--password",
            password,
        ])
        .await
    }

    /// One that accepts connections and never answers: deliveries hang.
    pub async fn silent() -> Self {
        Self::spawn(&["--silent"]).await
    }

    async fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(python())
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/smtp_sink.py"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the SMTP server starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next_line().await.unwrap().expect("the SMTP server says its port");
        let port = first.strip_prefix("port ").unwrap().parse().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(serde_json::from_str(&line).unwrap());
            }
        });
        Self {
            _child: child,
            port,
            received,
        }
    }

    pub fn mailer(&self) -> Mailer {
        Mailer::new(
            &format!("smtp://127.0.0.1:{}", self.port),
            "VPN Registry <no-reply@registry.test>",
            None,
        )
        .unwrap()
    }

    /// Messages received for `to`.
    pub fn to(&self, to: &str) -> Vec<Value> {
        let all = self.received.lock().unwrap();
        all.iter()
            .filter(|m| {
                m["to"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r.as_str() == Some(to)))
            })
            .cloned()
            .collect()
    }

    /// Waits until `n` messages for `to` arrived; returns them.
    pub async fn wait_to(&self, to: &str, n: usize) -> Vec<Value> {
        eventually("the messages arrive", Duration::from_secs(30), || async {
            let got = self.to(to);
            (got.len() >= n).then_some(got)
        })
        .await
    }

    /// Messages received whose subject names `reference`.
    pub fn about(&self, reference: &str) -> Vec<Value> {
        let all = self.received.lock().unwrap();
        all.iter()
            .filter(|m| m["subject"].as_str().unwrap_or_default().contains(reference))
            .cloned()
            .collect()
    }

    /// Waits until `n` messages about `reference` arrived; returns them.
    pub async fn wait_for(&self, reference: &str, n: usize) -> Vec<Value> {
        self.wait_within(reference, n, Duration::from_secs(30)).await
    }

    /// [`Mailbox::wait_for`], for at most `within`.
    pub async fn wait_within(&self, reference: &str, n: usize, within: Duration) -> Vec<Value> {
        eventually("the messages arrive", within, || async {
            let got = self.about(reference);
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

pub async fn app_mailing_to(pool: PgPool, mailbox: &Mailbox) -> TestApp {
    let mailer = mailbox.mailer();
    TestApp::builder(pool)
        .options(|o| {
            o.mailer = Some(mailer);
            o.public_url = Some("https://registry.example.pk".into());
        })
        .start()
        .await
}

/// Event types recorded for a registration, in order.
async fn event_types(pool: &PgPool, registration: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT type FROM events WHERE registration_id = $1 ORDER BY seq")
        .bind(Uuid::parse_str(registration).unwrap())
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn every_change_an_institution_must_hear_reaches_its_mailbox(pool: PgPool) {
    let mailbox = Mailbox::start(0).await;
    let app = app_mailing_to(pool, &mailbox).await;
    let (institution, token) = app.enrol(C::Bank).await;
    let r = app.submit(&token, &["8.8.8.0/24"]).await;
    let active = app.approve(&r).await.unwrap();
    let suspended = app
        .decide(
            Decision::Suspend,
            &active,
            pb::ReasonCode::SecurityConcern,
            "Traffic seen from an unregistered peer",
        )
        .await
        .unwrap();
    let reinstated = app
        .decide(
            Decision::Reinstate,
            &suspended,
            pb::ReasonCode::Compliant,
            "Resolved with the bank",
        )
        .await
        .unwrap();
    app.decide(
        Decision::Revoke,
        &reinstated,
        pb::ReasonCode::PolicyViolation,
        "Repeated violations",
    )
    .await
    .unwrap();

    let expected = [
        ("registration.submitted", "We received application"),
        ("registration.attested", "Your ISP confirmed the connection"),
        ("registration.approved", "is approved and active"),
        ("registration.suspended", "is suspended"),
        ("registration.reinstated", "is active again"),
        ("registration.revoked", "was revoked"),
    ];
    assert_eq!(
        event_types(&app.pool, &r.id).await,
        expected.iter().map(|(t, _)| *t).collect::<Vec<_>>()
    );
    let mails = mailbox.wait_for(&r.reference, expected.len()).await;
    let events: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, type FROM events WHERE registration_id = $1 ORDER BY seq")
            .bind(Uuid::parse_str(&r.id).unwrap())
            .fetch_all(&app.pool)
            .await
            .unwrap();
    // In order, one each, to the institution's contact, each naming its event.
    for ((mail, (_, headline)), (event_id, _)) in mails.iter().zip(&expected).zip(&events) {
        assert_eq!(mail["to"], serde_json::json!([institution.contact_email]));
        assert_eq!(mail["from"], "no-reply@registry.test");
        let subject = mail["subject"].as_str().unwrap();
        assert!(subject.contains(headline), "{subject}");
        assert_eq!(mail["event"], event_id.to_string());
        assert!(mail["message_id"].as_str().unwrap().contains(&event_id.to_string()));
        assert_eq!(mail["language"], "en");
        let text = mail["text"].as_str().unwrap();
        assert!(text.contains(&r.reference), "{text}");
        assert!(text.contains("What to do next"), "{text}");
        let link = format!("https://registry.example.pk/console/registrations/{}", r.id);
        assert!(text.contains(&link), "{text}");
        assert!(mail["html"].as_str().unwrap().contains(&link));
        assert!(!text.contains(&token), "never a token in a message");
    }
    // Why: the reviewer's reason.
    let suspension = &mails[3]["text"].as_str().unwrap();
    assert!(
        suspension.contains("Traffic seen from an unregistered peer"),
        "{suspension}"
    );
    // Recorded as delivered at the first attempt (a moment after the
    // server accepted each).
    eventually("deliveries recorded", Duration::from_secs(10), || async {
        let delivered: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM notifications WHERE status = 'DELIVERED' AND last_code = 250 AND attempts = 1",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        (delivered == expected.len() as i64).then_some(())
    })
    .await;
}

#[sqlx::test]
async fn an_institution_that_chose_urdu_is_written_to_in_urdu(pool: PgPool) {
    let mailbox = Mailbox::start(0).await;
    let app = app_mailing_to(pool, &mailbox).await;
    let (institution, token) = app.enrol(C::Company).await;
    // The institution chooses, as it may change its contact details.
    let chosen = app
        .institutions(Some(&token))
        .update_institution(pb::UpdateInstitutionRequest {
            institution: Some(pb::Institution {
                id: institution.id.clone(),
                language: pb::Language::Urdu as i32,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["language".into()],
            }),
            request_id: String::new(),
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(chosen.language, pb::Language::Urdu as i32);
    assert_eq!(institution.language, pb::Language::English as i32, "English by default");
    let r = app.submit(&token, &["8.8.8.0/24"]).await;
    let mail = &mailbox.wait_for(&r.reference, 1).await[0];
    assert_eq!(mail["language"], "ur");
    assert!(
        mail["subject"].as_str().unwrap().contains("موصول"),
        "{}",
        mail["subject"]
    );
    assert!(mail["text"].as_str().unwrap().contains("آگے کیا کریں"));
    let html = mail["html"].as_str().unwrap();
    assert!(html.contains(r#"dir="rtl""#) && html.contains(r#"lang="ur""#), "{html}");
}

#[sqlx::test]
async fn a_change_that_rolled_back_tells_nobody(pool: PgPool) {
    let mailbox = Mailbox::start(0).await;
    let app = app_mailing_to(pool, &mailbox).await;
    let (_, first) = app.enrol(C::Bank).await;
    let (_, second) = app.enrol(C::Company).await;
    let a = app.submit(&first, &["8.8.8.0/24"]).await;
    let b = app.submit(&second, &["8.8.8.0/25"]).await;
    let attested = app.attest(&b, true).await.unwrap();
    app.approve(&a).await.unwrap();
    // The approval of b reaches the exclusion constraint and rolls back.
    let refused = app
        .decide(Decision::Approve, &attested, pb::ReasonCode::Compliant, "Looks fine")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
    assert_eq!(
        event_types(&app.pool, &b.id).await,
        ["registration.submitted", "registration.attested"]
    );
    mailbox.wait_for(&a.reference, 3).await;
    let about_b = mailbox.wait_for(&b.reference, 2).await;
    assert!(
        about_b
            .iter()
            .all(|m| !m["subject"].as_str().unwrap().contains("approved")),
        "{about_b:?}"
    );
}

#[sqlx::test]
async fn a_mail_server_refusing_for_now_is_tried_again(pool: PgPool) {
    let mailbox = Mailbox::start(1).await;
    let app = app_mailing_to(pool, &mailbox).await;
    let (_, token) = app.enrol(C::Bank).await;
    let r = app.submit(&token, &["8.8.8.0/24"]).await;
    mailbox.wait_for(&r.reference, 1).await;
    eventually("the retry is recorded", Duration::from_secs(10), || async {
        let (attempts, code, status): (i32, Option<i32>, String) =
            sqlx::query_as("SELECT attempts, last_code, status FROM notifications")
                .fetch_one(&app.pool)
                .await
                .unwrap();
        (status == "DELIVERED").then(|| assert_eq!((attempts, code), (2, Some(250))))
    })
    .await;
}

#[sqlx::test]
async fn without_a_mail_server_messages_are_kept_not_lost(pool: PgPool) {
    let app = TestApp::builder(pool).start().await;
    let (_, token) = app.enrol(C::Bank).await;
    app.submit(&token, &["8.8.8.0/24"]).await;
    eventually("the notification is kept", Duration::from_secs(10), || async {
        let status: String = sqlx::query_scalar("SELECT status FROM notifications")
            .fetch_one(&app.pool)
            .await
            .ok()?;
        (status == "KEPT").then_some(())
    })
    .await;
    // The operator sees the outbox and what became of deliveries.
    let status = eventually("/status shows the outbox", Duration::from_secs(10), || async {
        let (_, body) = app.http("/status").await;
        let status: Value = serde_json::from_str(&body).ok()?;
        (status["notifications"]["pending"] == 0).then_some(status)
    })
    .await;
    assert_eq!(status["notifications"]["dead"], 0);
    assert_eq!(status["notifications"]["deliveries"]["email"]["kept"], 1);
    let (_, metrics) = app.http("/metrics").await;
    assert!(
        metrics.contains(r#"vpn_registry_notification_deliveries_total{channel="email",outcome="kept"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("vpn_registry_notifications_pending 0"), "{metrics}");
}

#[sqlx::test]
async fn reminders_go_out_once_however_many_servers_look(pool: PgPool) {
    let mailbox = Mailbox::start(0).await;
    let options = |mailer: Mailer| {
        move |o: &mut vpn_registry::app::Options| {
            o.mailer = Some(mailer);
            o.reminder_interval = Some(Duration::from_millis(50));
        }
    };
    let app = TestApp::builder(pool.clone())
        .options(options(mailbox.mailer()))
        .start()
        .await;
    let _second = TestApp::builder(pool).options(options(mailbox.mailer())).start().await;
    let (_, token) = app.enrol(C::Bank).await;
    let r = app.approve(&app.submit(&token, &["8.8.8.0/24"]).await).await.unwrap();
    let id = Uuid::parse_str(&r.id).unwrap();
    let set_validity = |hours: i32| {
        let pool = app.pool.clone();
        async move {
            sqlx::query("UPDATE registrations SET valid_until = now() + make_interval(hours => $2) WHERE id = $1")
                .bind(id)
                .bind(hours)
                .execute(&pool)
                .await
                .unwrap();
        }
    };
    let reminders = || async {
        sqlx::query_scalar::<_, i32>(
            "SELECT days_left FROM events WHERE registration_id = $1 AND type = 'registration.expiry_reminder' ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&app.pool)
        .await
        .unwrap()
    };
    // 20 days left: the 30-day reminder, once, while both servers keep looking.
    set_validity(20 * 24 - 1).await;
    eventually("the 30-day reminder", Duration::from_secs(10), || async {
        (reminders().await.len() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reminders().await, [20]);
    // 5 days left: the 7-day one; 12 hours left: the last.
    set_validity(5 * 24 - 1).await;
    eventually("the 7-day reminder", Duration::from_secs(10), || async {
        (reminders().await.len() == 2).then_some(())
    })
    .await;
    set_validity(12).await;
    eventually("the 1-day reminder", Duration::from_secs(10), || async {
        (reminders().await.len() == 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reminders().await, [20, 5, 1]);
    let mails = mailbox.wait_for(&r.reference, 6).await;
    let subjects: Vec<&str> = mails.iter().map(|m| m["subject"].as_str().unwrap()).collect();
    assert!(subjects[3].contains("expires in 20 day(s)"), "{subjects:?}");
    assert!(subjects[5].contains("expires in 1 day(s)"), "{subjects:?}");

    // And told when it expired.
    sqlx::query("UPDATE registrations SET valid_from = now() - interval '2 days', valid_until = now() - interval '1 hour' WHERE id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(app.expire_due().await, 1);
    let mails = mailbox.wait_for(&r.reference, 7).await;
    assert!(mails[6]["subject"].as_str().unwrap().contains("has expired"));
}

#[sqlx::test]
async fn deliveries_resume_by_themselves_after_a_database_outage(pool: PgPool) {
    let mailbox = Mailbox::start(0).await;
    let mailer = mailbox.mailer();
    let proxy = crate::proxy::Proxy::to_postgres(&pool).await;
    let server_pool = crate::harness::runtime_pool_via(&pool, proxy.addr.port()).await;
    let app = TestApp::builder(pool.clone())
        .server_pool(server_pool)
        .options(|o| o.mailer = Some(mailer))
        .start()
        .await;
    let (_, token) = app.enrol(C::Bank).await;
    let r = app.submit(&token, &["8.8.8.0/24"]).await;
    mailbox.wait_for(&r.reference, 1).await;
    // (Recorded as delivered: cut before that, the server could not record
    // it and would send it again once its claim ran out: at least once.)
    eventually("the first delivery recorded", Duration::from_secs(10), || async {
        let status: String = sqlx::query_scalar("SELECT status FROM notifications")
            .fetch_one(&app.pool)
            .await
            .ok()?;
        (status == "DELIVERED").then_some(())
    })
    .await;

    // The server loses PostgreSQL; meanwhile an event is committed (as by
    // another server that still reaches it).
    proxy.cut();
    sqlx::query(
        "WITH event AS (
            INSERT INTO events (id, type, institution_id, isp, registration_id, reference, state)
            SELECT gen_random_uuid(), 'registration.attested', institution_id, isp, id, reference, 'UNDER_REVIEW'
              FROM registrations WHERE id = $1
            RETURNING id, registration_id, institution_id)
         INSERT INTO notifications (event_id, channel, recipient, registration_id)
         SELECT e.id, 'email', i.contact_email, e.registration_id FROM event e JOIN institutions i ON i.id = e.institution_id",
    )
    .bind(Uuid::parse_str(&r.id).unwrap())
    .execute(&pool)
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        mailbox.about(&r.reference).len(),
        1,
        "nothing reaches a server without its database"
    );
    proxy.restore();
    let mails = mailbox.wait_for(&r.reference, 2).await;
    assert!(
        mails[1]["subject"]
            .as_str()
            .unwrap()
            .contains("confirmed the connection")
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(mailbox.about(&r.reference).len(), 2, "each once");
}

#[sqlx::test]
async fn mail_goes_over_starttls_with_credentials_to_a_relay_with_a_private_ca(pool: PgPool) {
    let dir = std::env::temp_dir().join(format!("vpn-registry-smtp-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let certs = vpn_registry::tls::DevCertificates::generate(&["localhost".into()]).unwrap();
    certs.write_to(&dir).unwrap();
    let mailbox = Mailbox::tls(&dir, "registry", "s3cret pass").await;
    let url = |password: &str| format!("smtp://registry:{password}@localhost:{}?tls=required", mailbox.port);
    let mailer = Mailer::new(
        &url("s3cret%20pass"),
        "no-reply@registry.test",
        Some(certs.ca_pem.as_bytes()),
    )
    .unwrap();
    let app = TestApp::builder(pool.clone())
        .options(|o| o.mailer = Some(mailer))
        .start()
        .await;
    let (_, token) = app.enrol(C::Bank).await;
    let r = app.submit(&token, &["8.8.8.0/24"]).await;
    let mails = mailbox.wait_for(&r.reference, 1).await;
    assert!(
        mails[0]["subject"]
            .as_str()
            .unwrap()
            .contains("We received application")
    );
    // Plaintext refuses a CA it would not use.
    assert!(
        Mailer::new(
            "smtp://localhost:25",
            "no-reply@registry.test",
            Some(certs.ca_pem.as_bytes())
        )
        .is_err()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
