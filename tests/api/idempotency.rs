use sqlx::PgPool;
use tonic::Code;
use vpn_registry::pb::{self, InstitutionCategory as C};

use crate::helpers::*;

#[sqlx::test]
async fn a_retried_submission_returns_the_original_and_writes_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Bank).await;
    let mut client = app.registrations(Some(&token));
    let req = submit_request(&["8.8.8.0/24"]);
    let first = client.submit_registration(req.clone()).await.unwrap().into_inner();
    let again = client.submit_registration(req.clone()).await.unwrap().into_inner();
    assert_eq!(first, again);
    assert_eq!(app.count("registrations").await, 1);
    assert_eq!(app.count("audit_events WHERE subject_type = 'registration'").await, 1);

    let mut different = req.clone();
    different.registration.as_mut().unwrap().purpose = "Something else".into();
    let err = client.submit_registration(different).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert!(err.message().contains("request_id"));
    assert_eq!(app.count("registrations").await, 1);
}

#[sqlx::test]
async fn racing_duplicates_create_one_registration(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Bank).await;
    let req = submit_request(&["8.8.8.0/24"]);
    let calls = (0..8).map(|_| {
        let mut client = app.registrations(Some(&token));
        let req = req.clone();
        tokio::spawn(async move { client.submit_registration(req).await.map(|r| r.into_inner().id) })
    });
    let mut ids = Vec::new();
    for call in calls {
        ids.push(call.await.unwrap().unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "all eight calls answer with the same registration");
    assert_eq!(app.count("registrations").await, 1);
}

#[sqlx::test]
async fn racing_duplicate_enrolments_create_one_institution(pool: PgPool) {
    let app = spawn_app(pool).await;
    let admin = app.admin().await;
    let req = pb::CreateInstitutionRequest {
        institution: Some(valid_institution(C::Company)),
        request_id: "enrol-42".into(),
        validate_only: false,
    };
    let calls = (0..8).map(|_| {
        let mut client = app.institutions(Some(&admin));
        let req = req.clone();
        tokio::spawn(async move { client.create_institution(req).await.map(|r| r.into_inner().id) })
    });
    let mut ids = Vec::new();
    for call in calls {
        ids.push(call.await.unwrap().unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1);
    assert_eq!(app.count("institutions").await, 1);
}

#[sqlx::test]
async fn request_ids_are_scoped_to_the_institution(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, a) = app.enrol(C::Bank).await;
    let (_, b) = app.enrol(C::Company).await;
    let mut req_a = submit_request(&["8.8.8.0/24"]);
    req_a.request_id = "same-key".into();
    let mut req_b = submit_request(&["9.9.9.0/24"]);
    req_b.request_id = "same-key".into();
    let ra = app.submit_as(&a, req_a).await;
    let rb = app.submit_as(&b, req_b).await;
    assert_ne!(ra.id, rb.id);

    let err = app
        .registrations(Some(&a))
        .submit_registration(pb::SubmitRegistrationRequest {
            request_id: String::new(),
            ..submit_request(&["8.8.4.0/24"])
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["request_id"]);
}
