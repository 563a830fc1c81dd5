//! Webhooks against a real receiver that verifies every delivery with the
//! Standard Webhooks reference library (Python `standardwebhooks`):
//! every event signed, in order, once per id, through an outage; 410
//! disables; private targets refused; rotation signs with both secrets;
//! one owner never reaches another's endpoints.

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use sqlx::PgPool;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, Command},
};
use tonic::Code;
use vpn_registry::{
    domain::decision::Decision,
    pb::{self, InstitutionCategory as C},
};

use crate::harness::{TestApp, eventually};
use crate::helpers::Webhooks;
use crate::notifications::python;

/// A real HTTP receiver and the requests it got.
struct Receiver {
    _child: Child,
    stdin: ChildStdin,
    url: String,
    requests: Arc<Mutex<Vec<Value>>>,
    acks: Arc<Mutex<usize>>,
}

impl Receiver {
    async fn start() -> Self {
        let mut child = Command::new(python())
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/webhook_receiver.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the receiver starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next_line().await.unwrap().expect("the receiver says its port");
        let port: u16 = first.strip_prefix("port ").unwrap().parse().unwrap();
        let (requests, acks) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(0)));
        let (sink, acked) = (requests.clone(), acks.clone());
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let v: Value = serde_json::from_str(&line).unwrap();
                if v.get("ack").is_some() {
                    *acked.lock().unwrap() += 1;
                } else {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        Self {
            stdin: child.stdin.take().unwrap(),
            _child: child,
            url: format!("http://127.0.0.1:{port}/hooks/vpn"),
            requests,
            acks,
        }
    }

    /// Sends a command and waits until the receiver took it.
    async fn command(&mut self, line: &str) {
        let before = *self.acks.lock().unwrap();
        self.stdin.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
        let acks = self.acks.clone();
        eventually("the receiver takes the command", Duration::from_secs(5), || async {
            (*acks.lock().unwrap() > before).then_some(())
        })
        .await;
    }

    fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests answered 2xx, once each by webhook-id, in arrival order.
    async fn delivered(&self, n: usize) -> Vec<Value> {
        eventually("the deliveries arrive", Duration::from_secs(30), || async {
            let mut seen = std::collections::HashSet::new();
            let got: Vec<Value> = self
                .requests()
                .into_iter()
                .filter(|r| r["status"].as_u64().is_some_and(|s| (200..300).contains(&s)))
                .filter(|r| seen.insert(r["id"].as_str().unwrap_or_default().to_owned()))
                .collect();
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

async fn app(pool: PgPool) -> TestApp {
    TestApp::builder(pool)
        .options(|o| o.webhook_allow_private = true)
        .start()
        .await
}

/// The deliveries to `webhook` (in `status`, if not empty), newest first.
async fn deliveries(app: &TestApp, token: &str, webhook: &str, status: &str) -> Vec<pb::WebhookDelivery> {
    app.webhooks(Some(token))
        .list_webhook_deliveries(pb::ListWebhookDeliveriesRequest {
            webhook_id: webhook.into(),
            status: status.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .deliveries
}

async fn create(client: &mut Webhooks, url: &str, types: &[&str]) -> Result<pb::Webhook, tonic::Status> {
    client
        .create_webhook(pb::CreateWebhookRequest {
            webhook: Some(pb::Webhook {
                url: url.into(),
                event_types: types.iter().map(|t| t.to_string()).collect(),
                ..Default::default()
            }),
        })
        .await
        .map(|r| r.into_inner())
}

#[sqlx::test]
async fn every_event_arrives_signed_in_order_once_even_through_an_outage(pool: PgPool) {
    let app = app(pool).await;
    let mut receiver = Receiver::start().await;
    let (_, token) = app.enrol(C::Bank).await;
    let hook = create(&mut app.webhooks(Some(&token)), &receiver.url, &[])
        .await
        .unwrap();
    assert!(hook.secret.starts_with("whsec_"), "{hook:?}");
    receiver.command(&format!("secret {}", hook.secret)).await;

    // Down for a while: 503 with Retry-After 1 s.
    receiver.command("status 503 1").await;
    let r = app.submit(&token, &["8.8.8.0/24"]).await;
    let active = app.approve(&r).await.unwrap();
    app.decide(
        Decision::Suspend,
        &active,
        pb::ReasonCode::SecurityConcern,
        "Unregistered peer",
    )
    .await
    .unwrap();
    eventually("a refused attempt", Duration::from_secs(10), || async {
        (!receiver.requests().is_empty()).then_some(())
    })
    .await;
    receiver.command("status 200").await;

    let delivered = receiver.delivered(4).await;
    let types: Vec<&str> = delivered.iter().map(|d| d["body"]["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "registration.submitted",
            "registration.attested",
            "registration.approved",
            "registration.suspended"
        ]
    );
    let event_ids: Vec<String> = sqlx::query_scalar("SELECT id::text FROM events ORDER BY seq")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    for (d, event_id) in delivered.iter().zip(&event_ids) {
        assert_eq!(d["verified_by"], serde_json::json!([0]), "{d}");
        assert_eq!(d["id"].as_str().unwrap(), event_id);
        let data = &d["body"]["data"];
        assert_eq!(data["reference"], r.reference);
        assert_eq!(data["registration_id"], r.id);
        assert_eq!(data["event_id"].as_str().unwrap(), event_id);
        // Thin: nothing about the people behind it.
        assert!(data.get("reason").is_none() && data.get("contact_email").is_none());
    }
    // The refused attempts were retried, not lost or duplicated as delivered.
    assert!(receiver.requests().iter().any(|r| r["status"] == 503));
    // Recorded as delivered a moment after the receiver answered.
    let deliveries = eventually("deliveries recorded", Duration::from_secs(10), || async {
        let deliveries = deliveries(&app, &token, &hook.id, "").await;
        let done = deliveries.len() == 4
            && deliveries
                .iter()
                .all(|d| d.status == "DELIVERED" && d.last_status_code == 200);
        done.then_some(deliveries)
    })
    .await;
    assert!(deliveries.iter().any(|d| d.attempts > 1), "{deliveries:?}");

    // Redelivery: the same event again, with the same webhook-id.
    let again = app
        .webhooks(Some(&token))
        .redeliver_webhook(pb::RedeliverWebhookRequest {
            delivery_id: deliveries[0].id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.status, "PENDING");
    eventually("the redelivery", Duration::from_secs(10), || async {
        let n = receiver
            .requests()
            .iter()
            .filter(|r| r["id"].as_str() == Some(&deliveries[0].event_id) && r["status"] == 200)
            .count();
        (n == 2).then_some(())
    })
    .await;
}

#[sqlx::test]
async fn a_gone_endpoint_is_disabled_and_a_ping_says_what_it_answered(pool: PgPool) {
    let app = app(pool).await;
    let mut receiver = Receiver::start().await;
    let (_, token) = app.enrol(C::Bank).await;
    let mut client = app.webhooks(Some(&token));
    let hook = create(&mut client, &receiver.url, &["registration.submitted"])
        .await
        .unwrap();
    receiver.command(&format!("secret {}", hook.secret)).await;

    let ping = client
        .test_webhook(pb::TestWebhookRequest { id: hook.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((ping.status_code, ping.error.as_str()), (200, ""));
    let got = receiver.delivered(1).await;
    assert_eq!(got[0]["body"]["type"], "webhook.ping");
    assert_eq!(got[0]["verified_by"], serde_json::json!([0]));

    receiver.command("status 410").await;
    app.submit(&token, &["8.8.8.0/24"]).await;
    let disabled = eventually("the endpoint is disabled", Duration::from_secs(10), || async {
        let hooks = app
            .webhooks(Some(&token))
            .list_webhooks(pb::ListWebhooksRequest::default())
            .await
            .unwrap()
            .into_inner()
            .webhooks;
        hooks.into_iter().find(|h| h.disable_time.is_some())
    })
    .await;
    assert!(disabled.disable_reason.contains("410"), "{disabled:?}");
    assert!(disabled.secret.is_empty(), "a secret is shown only when made");
    let dead = eventually("the dead letter", Duration::from_secs(10), || async {
        let dead = deliveries(&app, &token, &hook.id, "DEAD").await;
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_status_code, 410);
    // Later events no longer go there.
    app.submit(&token, &["9.9.9.0/24"]).await;
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM notifications WHERE channel = 'webhook'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(pending, 1);
}

#[sqlx::test]
async fn rotation_signs_with_both_secrets_during_the_grace(pool: PgPool) {
    let app = app(pool).await;
    let mut receiver = Receiver::start().await;
    let (_, token) = app.enrol(C::Bank).await;
    let mut client = app.webhooks(Some(&token));
    let hook = create(&mut client, &receiver.url, &["registration.submitted"])
        .await
        .unwrap();
    let rotated = client
        .rotate_webhook_secret(pb::RotateWebhookSecretRequest { id: hook.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(rotated.secret, hook.secret);
    assert!(rotated.previous_secret_expire_time.is_some());
    receiver.command(&format!("secret {}", hook.secret)).await;
    receiver.command(&format!("secret {}", rotated.secret)).await;
    app.submit(&token, &["8.8.8.0/24"]).await;
    let got = receiver.delivered(1).await;
    assert_eq!(got[0]["signatures"], 2);
    assert_eq!(got[0]["verified_by"], serde_json::json!([0, 1]));
}

#[sqlx::test]
async fn private_targets_foreign_types_and_other_owners_are_refused(pool: PgPool) {
    // Without --webhook-allow-private.
    let app = TestApp::builder(pool).start().await;
    let (_, token) = app.enrol(C::Bank).await;
    let (_, other) = app.enrol(C::Company).await;
    let mut mine = app.webhooks(Some(&token));
    for url in [
        "http://hooks.example.pk/vpn",
        "https://127.0.0.1/hook",
        "https://10.0.0.7/hook",
        "https://[fd00::1]/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://localhost/hook",
    ] {
        let err = create(&mut mine, url, &[]).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{url}");
        assert!(err.message().contains("webhook.url"), "{url}: {err:?}");
    }
    let err = create(&mut mine, "https://hooks.example.pk/vpn", &["registration.everything"])
        .await
        .unwrap_err();
    assert!(err.message().contains("webhook.event_types[0]"), "{err:?}");
    let isp = app.isp_token().await.to_owned();
    let err = create(
        &mut app.webhooks(Some(&isp)),
        "https://isp.example.pk/h",
        &["registration.approved"],
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.code(),
        Code::InvalidArgument,
        "an ISP hears only what asks it to attest"
    );
    let isp_hook = create(&mut app.webhooks(Some(&isp)), "https://isp.example.pk/h", &[])
        .await
        .unwrap();
    assert!(
        isp_hook.event_types.iter().all(|t| t != "registration.approved"),
        "{isp_hook:?}"
    );

    let hook = create(&mut mine, "https://hooks.example.pk/vpn", &[]).await.unwrap();
    let mut theirs = app.webhooks(Some(&other));
    let listed = theirs
        .list_webhooks(pb::ListWebhooksRequest::default())
        .await
        .unwrap()
        .into_inner()
        .webhooks;
    assert!(listed.is_empty());
    for code in [
        theirs
            .delete_webhook(pb::DeleteWebhookRequest { id: hook.id.clone() })
            .await
            .map(|_| ())
            .unwrap_err()
            .code(),
        theirs
            .rotate_webhook_secret(pb::RotateWebhookSecretRequest { id: hook.id.clone() })
            .await
            .map(|_| ())
            .unwrap_err()
            .code(),
        theirs
            .list_webhook_deliveries(pb::ListWebhookDeliveriesRequest {
                webhook_id: hook.id.clone(),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .unwrap_err()
            .code(),
    ] {
        assert_eq!(code, Code::NotFound);
    }
    // Administrators see every endpoint, secrets never.
    let admin = app.admin().await;
    let all = app
        .webhooks(Some(&admin))
        .list_webhooks(pb::ListWebhooksRequest::default())
        .await
        .unwrap()
        .into_inner()
        .webhooks;
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|h| h.secret.is_empty()));
    mine.delete_webhook(pb::DeleteWebhookRequest { id: hook.id.clone() })
        .await
        .unwrap();
    assert!(
        mine.list_webhooks(pb::ListWebhooksRequest::default())
            .await
            .unwrap()
            .into_inner()
            .webhooks
            .is_empty()
    );
}

#[sqlx::test]
async fn every_event_type_reaches_the_mailbox_and_the_webhook(pool: PgPool) {
    use crate::notifications::Mailbox;
    use crate::requests::amend_request;
    use pb::ReasonCode as R;
    let mailbox = Mailbox::start(0).await;
    let mailer = mailbox.mailer();
    let app = TestApp::builder(pool)
        .options(|o| {
            o.webhook_allow_private = true;
            o.mailer = Some(mailer);
            o.reminder_interval = Some(Duration::from_millis(100));
        })
        .start()
        .await;
    let mut receiver = Receiver::start().await;
    let (_, token) = app.enrol(C::Bank).await;
    let hook = create(&mut app.webhooks(Some(&token)), &receiver.url, &[])
        .await
        .unwrap();
    receiver.command(&format!("secret {}", hook.secret)).await;
    let mut mine = app.registrations(Some(&token));
    let amend = |r: &pb::Registration, purpose: &str| {
        let mut changed = r.clone();
        changed.purpose = purpose.into();
        amend_request(changed, &["purpose"])
    };
    let renew = |r: &pb::Registration, days: i64| pb::RenewRegistrationRequest {
        id: r.id.clone(),
        etag: r.etag.clone(),
        valid_until: Some(crate::requests::ts(
            time::OffsetDateTime::now_utc() + time::Duration::days(days),
        )),
        request_id: uuid::Uuid::new_v4().to_string(),
        validate_only: false,
    };

    // Asked for more, then approved; a revision approved, another rejected;
    // a renewal approved, another rejected.
    let a = app.submit(&token, &["8.8.8.0/24"]).await;
    app.attest(&a, true).await.unwrap();
    let a = app.get(&a.id).await;
    let asked = app
        .decide(
            Decision::RequestInformation,
            &a,
            R::IncompleteInformation,
            "Describe the peer",
        )
        .await
        .unwrap();
    let answered = mine
        .amend_registration(amend(&asked, "Treasury access to the head office"))
        .await
        .unwrap();
    let active = app
        .decide(Decision::Approve, &answered.into_inner(), R::Compliant, "In order")
        .await
        .unwrap();
    let proposed = mine.amend_registration(amend(&active, "Second purpose")).await.unwrap();
    let active = app.approve(&proposed.into_inner()).await.unwrap();
    let proposed = mine.amend_registration(amend(&active, "Third purpose")).await.unwrap();
    app.attest(&proposed.into_inner(), true).await.unwrap();
    let current = app.get(&a.id).await;
    let active = app
        .decide(Decision::Reject, &current, R::PolicyViolation, "Not needed")
        .await
        .unwrap();
    let renewing = mine.renew_registration(renew(&active, 500)).await.unwrap();
    let active = app.approve(&renewing.into_inner()).await.unwrap();
    let renewing = mine.renew_registration(renew(&active, 600)).await.unwrap();
    app.attest(&renewing.into_inner(), true).await.unwrap();
    let current = app.get(&a.id).await;
    let active = app
        .decide(Decision::Reject, &current, R::PolicyViolation, "Not yet")
        .await
        .unwrap();
    // Suspended, reinstated, revoked.
    let suspended = app
        .decide(Decision::Suspend, &active, R::SecurityConcern, "Unregistered peer")
        .await
        .unwrap();
    let reinstated = app
        .decide(Decision::Reinstate, &suspended, R::Compliant, "Resolved")
        .await
        .unwrap();
    app.decide(Decision::Revoke, &reinstated, R::PolicyViolation, "Repeated")
        .await
        .unwrap();
    // The ISP could not confirm one; a reviewer rejected another.
    let denied = app.submit(&token, &["9.9.9.0/24"]).await;
    app.attest(&denied, false).await.unwrap();
    let rejected = app.submit(&token, &["9.9.8.0/24"]).await;
    app.attest(&rejected, true).await.unwrap();
    let rejected = app.get(&rejected.id).await;
    app.decide(Decision::Reject, &rejected, R::PolicyViolation, "Not a VPN")
        .await
        .unwrap();
    // Reminded, then expired.
    let expiring = app.approve(&app.submit(&token, &["9.9.7.0/24"]).await).await.unwrap();
    let id = uuid::Uuid::parse_str(&expiring.id).unwrap();
    sqlx::query("UPDATE registrations SET valid_until = now() + interval '12 hours' WHERE id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    eventually("the reminder", Duration::from_secs(10), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE type = 'registration.expiry_reminder'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        (n == 1).then_some(())
    })
    .await;
    sqlx::query("UPDATE registrations SET valid_from = now() - interval '2 days', valid_until = now() - interval '1 hour' WHERE id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(app.expire_due().await, 1);

    let every: std::collections::BTreeSet<&str> = vpn_registry::domain::event::EventType::ALL
        .iter()
        .map(|t| t.as_str())
        .collect();
    let recorded: Vec<String> = sqlx::query_scalar("SELECT type FROM events ORDER BY seq")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    let recorded_types: std::collections::BTreeSet<&str> = recorded.iter().map(String::as_str).collect();
    assert_eq!(recorded_types, every, "every event type happened");
    // Every event reached both, the webhook's verified.
    let hooked = receiver.delivered(recorded.len()).await;
    assert!(hooked.iter().all(|d| d["verified_by"] == serde_json::json!([0])));
    let hooked_types: std::collections::BTreeSet<&str> =
        hooked.iter().map(|d| d["body"]["type"].as_str().unwrap()).collect();
    assert_eq!(hooked_types, every);
    let mails = eventually("every mail", Duration::from_secs(30), || async {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM notifications WHERE channel = 'email' AND status = 'DELIVERED'")
                .fetch_one(&app.pool)
                .await
                .unwrap();
        (n == recorded.len() as i64).then_some(n)
    })
    .await;
    assert_eq!(mails as usize, recorded.len());
}
