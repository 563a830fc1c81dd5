//! `validate_only` (AIP-163): a dry run answers what the real call answers,
//! success or refusal, and leaves the database as it found it: every
//! table's rows (the feed's serial and the outbox included) and the
//! registration reference numbers.

use std::fmt::Debug;

use sqlx::PgPool;
use tonic::Status;
use vpn_registry::pb::{self, InstitutionCategory as C};

use crate::helpers::*;

/// Everything a write could leave behind: each table's rows (hashed) and
/// each sequence's position.
pub async fn snapshot(pool: &PgPool) -> Vec<(String, String)> {
    // The outbox's worker settles what real calls queued (no mail server
    // here: KEPT) before the picture is taken.
    eventually("the outbox settles", std::time::Duration::from_secs(30), || async {
        let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM notifications WHERE status = 'PENDING'")
            .fetch_one(pool)
            .await
            .unwrap();
        (pending == 0).then_some(())
    })
    .await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut state = Vec::new();
    for table in tables {
        // Table names as PostgreSQL quoted them itself.
        let rows: (i64, Option<String>) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t"
        )))
        .fetch_one(pool)
        .await
        .unwrap();
        state.push((table, format!("{rows:?}")));
    }
    // The reference numbers people see are not spent. (The internal
    // sequences behind audit, event and outbox ids advance, as in any
    // rolled-back transaction: PostgreSQL never hands their values back, and
    // readers already meet such gaps.)
    let reference: Option<i64> =
        sqlx::query_scalar("SELECT last_value FROM pg_sequences WHERE sequencename = 'registration_reference_seq'")
            .fetch_one(pool)
            .await
            .unwrap();
    state.push(("registration_reference_seq".into(), format!("{reference:?}")));
    state
}

/// Runs the dry run, checks it left everything as it was, then runs the real
/// call: both must give the same answer (`comparable` strips what names a
/// new resource), or refuse alike.
async fn same_as_real<T, F, Fut>(pool: &PgPool, comparable: impl Fn(T) -> T, call: F) -> Result<T, Status>
where
    T: PartialEq + Debug + Clone,
    F: Fn(bool) -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let before = snapshot(pool).await;
    let dry = call(true).await;
    assert_eq!(snapshot(pool).await, before, "the dry run left something behind");
    let real = call(false).await;
    match (dry, &real) {
        (Ok(dry), Ok(real)) => assert_eq!(comparable(dry), comparable(real.clone())),
        (Err(dry), Err(real)) => {
            assert_eq!(dry.code(), real.code());
            assert_eq!(dry.message(), real.message());
            assert_eq!(dry.details(), real.details());
            assert_eq!(snapshot(pool).await, before, "the refused call wrote");
        }
        (dry, real) => panic!("the dry run answered {dry:?}, the real call {real:?}"),
    }
    real
}

/// A registration answer without what only the real call has: its name,
/// and the times the write happened.
fn registration(mut r: pb::Registration) -> pb::Registration {
    r.id.clear();
    r.reference.clear();
    r.etag.clear();
    r.create_time = None;
    r.update_time = None;
    r.state_time = None;
    r.valid_from = None;
    r
}

/// As `registration`, for an existing one: the etag it is left at differs.
fn amended(mut r: pb::Registration) -> pb::Registration {
    r.etag.clear();
    r.update_time = None;
    r.state_time = None;
    // A renewal opens a revision: its own id and times.
    if let Some(p) = r.pending_revision.as_mut() {
        p.id.clear();
        p.valid_from = None;
        p.create_time = None;
        p.state_time = None;
    }
    r
}

fn institution(mut i: pb::Institution) -> pb::Institution {
    i.id.clear();
    i.etag.clear();
    i.create_time = None;
    i.update_time = None;
    i
}

#[sqlx::test]
async fn a_dry_run_submission_answers_as_the_real_one_and_writes_nothing(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let (_, token) = app.enrol(C::Company).await;
    let (_, other) = app.enrol(C::Company).await;
    app.active(&other, &["81.2.80.0/24"]).await;
    let submit = |request: pb::SubmitRegistrationRequest| {
        let app = &app;
        let token = token.clone();
        move |validate_only: bool| {
            let mut request = request.clone();
            request.validate_only = validate_only;
            let mut client = app.registrations(Some(&token));
            async move { client.submit_registration(request).await.map(|r| r.into_inner()) }
        }
    };

    // Accepted: the same registration, without a name; the key is not spent.
    let request = submit_request(&["81.2.69.0/24"]);
    let real = same_as_real(&pool, registration, submit(request.clone()))
        .await
        .unwrap();
    assert!(!real.id.is_empty() && !real.reference.is_empty());
    let dry = {
        let mut r = request.clone();
        r.request_id = uuid::Uuid::new_v4().to_string();
        r.registration.as_mut().unwrap().source_prefixes = vec!["81.2.70.0/24".into()];
        r.validate_only = true;
        app.registrations(Some(&token))
            .submit_registration(r)
            .await
            .unwrap()
            .into_inner()
    };
    assert_eq!(
        (dry.id.as_str(), dry.reference.as_str(), dry.etag.as_str()),
        ("", "", "")
    );

    // Refused: a field, an overlap with an active registration, a role.
    let mut invalid = submit_request(&["10.0.0.0/24", "not-a-prefix"]);
    invalid.registration.as_mut().unwrap().purpose.clear();
    let refused = same_as_real(&pool, registration, submit(invalid)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(violated_fields(&refused).len() >= 2, "{refused:?}");
    let refused = same_as_real(&pool, registration, submit(submit_request(&["81.2.80.128/25"])))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
    let reviewer = app.reviewer_token().await.to_owned();
    let as_reviewer = |validate_only: bool| {
        let mut request = submit_request(&["81.2.71.0/24"]);
        request.request_id = "reviewer-1".into();
        request.validate_only = validate_only;
        let mut client = app.registrations(Some(&reviewer));
        async move { client.submit_registration(request).await.map(|r| r.into_inner()) }
    };
    let refused = same_as_real(&pool, registration, as_reviewer).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
}

#[sqlx::test]
async fn dry_run_amendments_and_renewals_answer_as_the_real_ones(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let (_, token) = app.enrol(C::Company).await;
    let pending = app.submit(&token, &["81.2.69.0/24"]).await;
    let amend = |registration: pb::Registration, purpose: &str| {
        let mut changed = registration;
        changed.purpose = purpose.into();
        let request = amend_request(changed, &["purpose"]);
        let app = &app;
        let token = token.clone();
        move |validate_only: bool| {
            let mut request = request.clone();
            request.validate_only = validate_only;
            let mut client = app.registrations(Some(&token));
            async move { client.amend_registration(request).await.map(|r| r.into_inner()) }
        }
    };
    let amended_once = same_as_real(&pool, amended, amend(pending.clone(), "Payroll VPN"))
        .await
        .unwrap();
    assert_eq!(amended_once.purpose, "Payroll VPN");
    // The dry run keeps the current etag: the one the real call must send.
    let mut dry = amend_request(amended_once.clone(), &["purpose"]);
    dry.validate_only = true;
    let answer = app
        .registrations(Some(&token))
        .amend_registration(dry)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.etag, amended_once.etag);
    // A stale etag, and an empty purpose.
    let refused = same_as_real(&pool, amended, amend(pending.clone(), "Stale"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Aborted);
    let refused = same_as_real(&pool, amended, amend(amended_once, "")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let mut missing = pending.clone();
    missing.id = uuid::Uuid::now_v7().to_string();
    let refused = same_as_real(&pool, amended, amend(missing, "Gone")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound);

    let active = app.active(&token, &["81.2.70.0/24"]).await;
    let renew = |until: time::OffsetDateTime| {
        let request = pb::RenewRegistrationRequest {
            id: active.id.clone(),
            etag: active.etag.clone(),
            valid_until: Some(ts(until)),
            ..Default::default()
        };
        let app = &app;
        let token = token.clone();
        move |validate_only: bool| {
            let mut request = request.clone();
            request.validate_only = validate_only;
            let mut client = app.registrations(Some(&token));
            async move { client.renew_registration(request).await.map(|r| r.into_inner()) }
        }
    };
    let now = time::OffsetDateTime::now_utc();
    let refused = same_as_real(&pool, amended, renew(now + time::Duration::days(30)))
        .await
        .unwrap_err();
    assert_ne!(refused.code(), tonic::Code::Ok);
    let renewed = same_as_real(&pool, amended, renew(now + time::Duration::days(700)))
        .await
        .unwrap();
    assert!(renewed.pending_revision.is_some());
}

#[sqlx::test]
async fn dry_run_enrolments_and_profile_updates_answer_as_the_real_ones(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let admin = app.admin().await;
    let enrol = |i: pb::Institution, request_id: &str| {
        let request = pb::CreateInstitutionRequest {
            institution: Some(i),
            request_id: request_id.into(),
            validate_only: false,
        };
        let app = &app;
        let admin = admin.clone();
        move |validate_only: bool| {
            let mut request = request.clone();
            request.validate_only = validate_only;
            let mut client = app.institutions(Some(&admin));
            async move { client.create_institution(request).await.map(|r| r.into_inner()) }
        }
    };
    let bank = same_as_real(&pool, institution, enrol(valid_institution(C::Bank), "enrol-1"))
        .await
        .unwrap();
    let mut invalid = valid_institution(C::Bank);
    invalid.sbp_licence.clear();
    invalid.contact_email = "not an address".into();
    let refused = same_as_real(&pool, institution, enrol(invalid, "enrol-2"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    let update = |etag: &str, email: &str| {
        let mut changed = bank.clone();
        changed.etag = etag.into();
        changed.contact_email = email.into();
        let request = pb::UpdateInstitutionRequest {
            institution: Some(changed),
            update_mask: mask(&["contact_email"]),
            ..Default::default()
        };
        let app = &app;
        let admin = admin.clone();
        move |validate_only: bool| {
            let mut request = request.clone();
            request.validate_only = validate_only;
            let mut client = app.institutions(Some(&admin));
            async move { client.update_institution(request).await.map(|r| r.into_inner()) }
        }
    };
    let keep_id = |mut i: pb::Institution| {
        i.etag.clear();
        i.update_time = None;
        i
    };
    let updated = same_as_real(&pool, keep_id, update(&bank.etag, "desk@example.pk"))
        .await
        .unwrap();
    assert_eq!(updated.contact_email, "desk@example.pk");
    let refused = same_as_real(&pool, keep_id, update(&bank.etag, "other@example.pk"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Aborted);
}
