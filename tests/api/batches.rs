//! BatchSubmitRegistrations (AIP-233): all or nothing, at most 100, one
//! idempotency key, refusals that name the item.

use sqlx::PgPool;
use tonic_types::StatusExt as _;
use vpn_registry::pb::{self, InstitutionCategory as C};

use crate::dry_runs::snapshot;
use crate::helpers::*;

/// A batch of submissions of `prefixes`, one each, under a fresh key.
fn batch(prefixes: &[&str]) -> pb::BatchSubmitRegistrationsRequest {
    pb::BatchSubmitRegistrationsRequest {
        requests: prefixes
            .iter()
            .map(|p| pb::SubmitRegistrationRequest {
                registration: Some(valid_registration(&[p])),
                ..Default::default()
            })
            .collect(),
        request_id: uuid::Uuid::new_v4().to_string(),
        validate_only: false,
    }
}

#[sqlx::test]
async fn a_batch_is_submitted_in_order_once_and_replayed_whole(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (institution, token) = app.enrol(C::ItCompany).await;
    let request = batch(&["81.2.69.0/24", "81.2.70.0/24", "81.2.71.0/24"]);
    let mut client = app.registrations(Some(&token));
    let submitted = client
        .batch_submit_registrations(request.clone())
        .await
        .unwrap()
        .into_inner()
        .registrations;
    let prefixes: Vec<&str> = submitted.iter().map(|r| r.source_prefixes[0].as_str()).collect();
    assert_eq!(prefixes, ["81.2.69.0/24", "81.2.70.0/24", "81.2.71.0/24"]);
    assert!(submitted.iter().all(|r| r.institution_id == institution.id));
    assert!(
        submitted
            .iter()
            .all(|r| r.state == pb::RegistrationState::IspVerification as i32)
    );
    // A retry with the batch's key: the same registrations, nothing new.
    let replayed = client
        .batch_submit_registrations(request.clone())
        .await
        .unwrap()
        .into_inner()
        .registrations;
    let ids = |rs: &[pb::Registration]| rs.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&replayed), ids(&submitted));
    let listed = client
        .list_registrations(pb::ListRegistrationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.registrations.len(), 3);
    // The same key for another batch is refused.
    let mut other = batch(&["81.2.72.0/24"]);
    other.request_id = request.request_id.clone();
    let refused = client.batch_submit_registrations(other).await.unwrap_err();
    assert_ne!(refused.code(), tonic::Code::Ok);
}

#[sqlx::test]
async fn one_bad_item_refuses_the_batch_names_it_and_writes_nothing_nor_does_a_dry_run(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let (_, token) = app.enrol(C::ItCompany).await;
    let (_, other) = app.enrol(C::Company).await;
    app.active(&other, &["81.2.90.0/24"]).await;
    let mut client = app.registrations(Some(&token));
    let before = snapshot(&pool).await;

    let prefixes: Vec<String> = (0..10).map(|i| format!("81.2.{}.0/24", 60 + i)).collect();
    let prefixes: Vec<&str> = prefixes.iter().map(String::as_str).collect();
    let mut request = batch(&prefixes);
    request.requests[7].registration.as_mut().unwrap().source_prefixes[0] = "10.9.9.0/24".into();
    let refused = client.batch_submit_registrations(request).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        violated_fields(&refused),
        ["requests[7].registration.source_prefixes[0]"]
    );

    // An overlap found while writing: the items before it are not kept.
    let mut request = batch(&prefixes);
    request.requests[4].registration.as_mut().unwrap().source_prefixes[0] = "81.2.90.128/25".into();
    let refused = client.batch_submit_registrations(request).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(refused.message().starts_with("requests[4]: "), "{}", refused.message());
    let failure = refused.get_details_precondition_failure().unwrap();
    assert_eq!(failure.violations[0].r#type, "PREFIX_OVERLAP");

    // Bounds, and keys of its own.
    let many: Vec<String> = (0..101).map(|i| format!("81.{}.1.0/24", 10 + i)).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let refused = client.batch_submit_registrations(batch(&many)).await.unwrap_err();
    assert_eq!(violated_fields(&refused), ["requests"]);
    let refused = client.batch_submit_registrations(batch(&[])).await.unwrap_err();
    assert_eq!(violated_fields(&refused), ["requests"]);
    let mut keyed = batch(&["81.2.69.0/24", "81.2.70.0/24"]);
    keyed.requests[1].request_id = "mine".into();
    let refused = client.batch_submit_registrations(keyed).await.unwrap_err();
    assert_eq!(violated_fields(&refused), ["requests[1].request_id"]);

    // A dry run: the answer, and nothing written either.
    let mut dry = batch(&["81.2.69.0/24", "81.2.70.0/24"]);
    dry.validate_only = true;
    let answer = client.batch_submit_registrations(dry).await.unwrap().into_inner();
    assert_eq!(answer.registrations.len(), 2);
    assert!(
        answer
            .registrations
            .iter()
            .all(|r| r.id.is_empty() && r.reference.is_empty())
    );

    assert_eq!(snapshot(&pool).await, before, "a refused batch or a dry run wrote");
}
