//! Expiry: registrations past their validity (or whose institution's PSEB
//! registration lapsed) expire exactly once, come back only through a
//! reviewed renewal, and applicants see what expires soon.

use sqlx::PgPool;
use tonic::Code;
use uuid::Uuid;
use vpn_registry::pb::{self, InstitutionCategory as C, RegistrationState as S};

use crate::helpers::*;

#[sqlx::test]
async fn an_expired_registration_comes_back_only_through_a_reviewed_renewal(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Bank).await;
    let mut mine = app.registrations(Some(&token));
    let r = app.submit(&token, &["8.8.8.0/24"]).await;
    app.approve(&r).await.unwrap();
    sqlx::query("UPDATE registrations SET valid_from = now() - interval '2 days', valid_until = now() - interval '1 day' WHERE id = $1")
        .bind(Uuid::parse_str(&r.id).unwrap())
        .execute(&app.pool)
        .await
        .unwrap();
    let expired = app.expire_due().await;
    assert_eq!(expired, 1);
    let current = app.get(&r.id).await;
    assert_eq!(current.state, S::Expired as i32);
    assert_eq!(app.count("active_prefixes").await, 0);

    let renewal_end = time::OffsetDateTime::now_utc() + time::Duration::days(400);
    let renewing = mine
        .renew_registration(pb::RenewRegistrationRequest {
            id: r.id.clone(),
            etag: current.etag.clone(),
            valid_until: Some(ts(renewal_end)),
            request_id: "renew-1".into(),
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renewing.state, S::Expired as i32);
    assert!(renewing.pending_revision.as_ref().unwrap().is_renewal);
    let err = mine
        .renew_registration(pb::RenewRegistrationRequest {
            id: r.id.clone(),
            etag: renewing.etag.clone(),
            valid_until: Some(ts(renewal_end)),
            request_id: String::new(),
            validate_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "one pending revision at a time");

    let renewed = app.approve(&renewing).await.unwrap();
    assert_eq!(renewed.state, S::Active as i32);
    assert_eq!(renewed.valid_until.unwrap().seconds, renewal_end.unix_timestamp());
    assert_eq!(app.count("active_prefixes").await, 1);
}

#[sqlx::test]
async fn two_expiry_workers_expire_each_registration_exactly_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Bank).await;
    let mut ids = Vec::new();
    for i in 0..12 {
        let r = app.submit(&token, &[&format!("8.8.{i}.0/24")]).await;
        app.approve(&r).await.unwrap();
        ids.push(Uuid::parse_str(&r.id).unwrap());
    }
    sqlx::query(
        "UPDATE registrations SET valid_from = now() - interval '2 days', valid_until = now() - interval '1 second'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let withdrawn_before = app.count("change_feed WHERE op = 'WITHDRAW'").await;
    let worker = |pool: PgPool| async move {
        let system = vpn_registry::domain::principal::Actor::system("expiry-test");
        let mut total = 0;
        loop {
            let n = vpn_registry::registry::Registry::new(pool.clone())
                .expire_due(time::OffsetDateTime::now_utc().date(), 2, &system)
                .await
                .unwrap();
            if n == 0 {
                return total;
            }
            total += n;
        }
    };
    let (a, b) = tokio::join!(
        tokio::spawn(worker(app.pool.clone())),
        tokio::spawn(worker(app.pool.clone()))
    );
    assert_eq!(a.unwrap() + b.unwrap(), 12);
    let per_registration: Vec<i64> = sqlx::query_scalar(
        "SELECT count(e.*) FROM registrations r LEFT JOIN audit_events e ON e.subject_id = r.id AND e.action = 'EXPIRED'
          GROUP BY r.id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(per_registration, vec![1; 12]);
    assert_eq!(app.count("registrations WHERE state = 'EXPIRED'").await, 12);
    assert_eq!(
        app.count("change_feed WHERE op = 'WITHDRAW'").await - withdrawn_before,
        12
    );
}

#[sqlx::test]
async fn a_lapsed_pseb_registration_expires_the_institutions_registrations(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (inst, token) = app.enrol(C::ItCompany).await;
    let r = app.submit(&token, &["8.8.8.0/24"]).await;
    app.approve(&r).await.unwrap();
    sqlx::query("UPDATE institutions SET pseb_expiry = current_date - 1 WHERE id = $1")
        .bind(Uuid::parse_str(&inst.id).unwrap())
        .execute(&app.pool)
        .await
        .unwrap();
    app.expire_due().await;
    let last = app.events(&r.id).await.pop().unwrap();
    assert_eq!(last.to_state, S::Expired as i32);
    assert_eq!(last.reason_code, pb::ReasonCode::LicenceExpired as i32);
}

#[sqlx::test]
async fn institutions_list_what_expires_soon(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Bank).await;
    let mut mine = app.registrations(Some(&token));
    let mut soon = submit_request(&["8.8.8.0/24"]);
    soon.registration.as_mut().unwrap().valid_until =
        Some(ts(time::OffsetDateTime::now_utc() + time::Duration::days(10)));
    let soon = mine.submit_registration(soon).await.unwrap().into_inner();
    let late = app.submit(&token, &["8.8.9.0/24"]).await;
    app.approve(&soon).await.unwrap();
    app.approve(&late).await.unwrap();
    let listed = mine
        .list_registrations(pb::ListRegistrationsRequest {
            expiring_within_days: 30,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.registrations.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [soon.id.as_str()]
    );
}
