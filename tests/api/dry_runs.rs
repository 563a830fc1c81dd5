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

/// The requests that offer a dry run.
pub trait DryRunnable: Clone {
    fn validate_only(self, on: bool) -> Self;
}

macro_rules! dry_runnable {
    ($($t:ty),+) => {$(
        impl DryRunnable for $t {
            fn validate_only(mut self, on: bool) -> Self {
                self.validate_only = on;
                self
            }
        }
    )+};
}

dry_runnable!(
    pb::SubmitRegistrationRequest,
    pb::AmendRegistrationRequest,
    pb::RenewRegistrationRequest,
    pb::CreateInstitutionRequest,
    pb::UpdateInstitutionRequest
);

/// Sends `request` as a dry run, checks it left everything as it was, then
/// for real: both must give the same answer (`comparable` strips what names
/// a new resource), or refuse alike.
async fn same_as_real<R, T, F, Fut>(
    pool: &PgPool,
    comparable: impl Fn(T) -> T,
    request: R,
    send: F,
) -> Result<T, Status>
where
    R: DryRunnable,
    T: PartialEq + Debug + Clone,
    F: Fn(R) -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let before = snapshot(pool).await;
    let dry = send(request.clone().validate_only(true)).await;
    assert_eq!(snapshot(pool).await, before, "the dry run left something behind");
    let real = send(request.validate_only(false)).await;
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
    let submit_as = |token: &str| {
        let client = app.registrations(Some(token));
        move |request: pb::SubmitRegistrationRequest| {
            let mut client = client.clone();
            async move { client.submit_registration(request).await.map(|r| r.into_inner()) }
        }
    };
    let submit = submit_as(&token);

    // Accepted: the same registration, without a name; the key is not spent.
    let request = submit_request(&["81.2.69.0/24"]);
    let real = same_as_real(&pool, registration, request.clone(), &submit)
        .await
        .unwrap();
    assert!(!real.id.is_empty() && !real.reference.is_empty());
    let mut another = request.clone().validate_only(true);
    another.request_id = uuid::Uuid::new_v4().to_string();
    another.registration.as_mut().unwrap().source_prefixes = vec!["81.2.70.0/24".into()];
    let dry = submit(another).await.unwrap();
    assert_eq!(
        (dry.id.as_str(), dry.reference.as_str(), dry.etag.as_str()),
        ("", "", "")
    );

    // Refused: a field, an overlap with an active registration, a role.
    let mut invalid = submit_request(&["10.0.0.0/24", "not-a-prefix"]);
    invalid.registration.as_mut().unwrap().purpose.clear();
    let refused = same_as_real(&pool, registration, invalid, &submit).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(violated_fields(&refused).len() >= 2, "{refused:?}");
    let overlapping = submit_request(&["81.2.80.128/25"]);
    let refused = same_as_real(&pool, registration, overlapping, &submit)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
    let reviewer = app.reviewer_token().await.to_owned();
    let mut by_reviewer = submit_request(&["81.2.71.0/24"]);
    by_reviewer.request_id = "reviewer-1".into();
    let refused = same_as_real(&pool, registration, by_reviewer, submit_as(&reviewer))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
}

#[sqlx::test]
async fn dry_run_amendments_and_renewals_answer_as_the_real_ones(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let (_, token) = app.enrol(C::Company).await;
    let client = app.registrations(Some(&token));
    let pending = app.submit(&token, &["81.2.69.0/24"]).await;
    let amendment = |mut changed: pb::Registration, purpose: &str| {
        changed.purpose = purpose.into();
        amend_request(changed, &["purpose"])
    };
    let amend = |request: pb::AmendRegistrationRequest| {
        let mut client = client.clone();
        async move { client.amend_registration(request).await.map(|r| r.into_inner()) }
    };
    let amended_once = same_as_real(&pool, amended, amendment(pending.clone(), "Payroll VPN"), amend)
        .await
        .unwrap();
    assert_eq!(amended_once.purpose, "Payroll VPN");
    // The dry run keeps the current etag: the one the real call must send.
    let dry = amend_request(amended_once.clone(), &["purpose"]).validate_only(true);
    assert_eq!(amend(dry).await.unwrap().etag, amended_once.etag);
    // A stale etag, an empty purpose, a registration that does not exist.
    let refused = same_as_real(&pool, amended, amendment(pending.clone(), "Stale"), amend)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Aborted);
    let refused = same_as_real(&pool, amended, amendment(amended_once, ""), amend)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let mut missing = pending.clone();
    missing.id = uuid::Uuid::now_v7().to_string();
    let refused = same_as_real(&pool, amended, amendment(missing, "Gone"), amend)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound);

    let active = app.active(&token, &["81.2.70.0/24"]).await;
    let renewal = |until: time::OffsetDateTime| pb::RenewRegistrationRequest {
        id: active.id.clone(),
        etag: active.etag.clone(),
        valid_until: Some(ts(until)),
        ..Default::default()
    };
    let renew = |request: pb::RenewRegistrationRequest| {
        let mut client = client.clone();
        async move { client.renew_registration(request).await.map(|r| r.into_inner()) }
    };
    let now = time::OffsetDateTime::now_utc();
    let refused = same_as_real(&pool, amended, renewal(now + time::Duration::days(30)), renew)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert_eq!(violated_fields(&refused), ["valid_until"]);
    let renewed = same_as_real(&pool, amended, renewal(now + time::Duration::days(700)), renew)
        .await
        .unwrap();
    assert!(renewed.pending_revision.is_some());
}

#[sqlx::test]
async fn dry_run_enrolments_and_profile_updates_answer_as_the_real_ones(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let admin = app.admin().await;
    let client = app.institutions(Some(&admin));
    let enrolment = |i: pb::Institution, request_id: &str| pb::CreateInstitutionRequest {
        institution: Some(i),
        request_id: request_id.into(),
        validate_only: false,
    };
    let enrol = |request: pb::CreateInstitutionRequest| {
        let mut client = client.clone();
        async move { client.create_institution(request).await.map(|r| r.into_inner()) }
    };
    let bank = same_as_real(
        &pool,
        institution,
        enrolment(valid_institution(C::Bank), "enrol-1"),
        enrol,
    )
    .await
    .unwrap();
    let mut invalid = valid_institution(C::Bank);
    invalid.sbp_licence.clear();
    invalid.contact_email = "not an address".into();
    let refused = same_as_real(&pool, institution, enrolment(invalid, "enrol-2"), enrol)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    let change = |etag: &str, email: &str| {
        let mut changed = bank.clone();
        changed.etag = etag.into();
        changed.contact_email = email.into();
        pb::UpdateInstitutionRequest {
            institution: Some(changed),
            update_mask: mask(&["contact_email"]),
            ..Default::default()
        }
    };
    let update = |request: pb::UpdateInstitutionRequest| {
        let mut client = client.clone();
        async move { client.update_institution(request).await.map(|r| r.into_inner()) }
    };
    let keep_id = |mut i: pb::Institution| {
        i.etag.clear();
        i.update_time = None;
        i
    };
    let updated = same_as_real(&pool, keep_id, change(&bank.etag, "desk@example.pk"), update)
        .await
        .unwrap();
    assert_eq!(updated.contact_email, "desk@example.pk");
    let refused = same_as_real(&pool, keep_id, change(&bank.etag, "other@example.pk"), update)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Aborted);
}
