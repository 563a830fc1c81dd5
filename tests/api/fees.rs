//! Fees: challans assessed at submission, amendment and renewal; payments
//! and refunds confirmed by the collecting bank's system; approval waits for
//! payment.

use sqlx::PgPool;
use tonic::Code;
use vpn_registry::domain::{decision::Decision, fees::Psid, principal::Role};
use vpn_registry::pb::{self, ChallanStatus as S, InstitutionCategory as C, RegistrationAction as A};

use crate::helpers::*;

/// A call-centre VoIP registration of `prefixes`.
fn voip(prefixes: &[&str]) -> pb::SubmitRegistrationRequest {
    let mut request = submit_request(prefixes);
    let r = request.registration.as_mut().unwrap();
    r.kind = pb::RegistrationKind::CallCenterVoip as i32;
    r.protocol = 0;
    request
}

async fn challans(app: &TestApp, token: &str, registration: &str) -> Vec<pb::Challan> {
    app.payments(Some(token))
        .list_challans(pb::ListChallansRequest {
            registration_id: registration.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .challans
}

fn summary(challans: &[pb::Challan]) -> Vec<(i64, i64, S)> {
    challans
        .iter()
        .map(|c| (c.addresses, c.amount_pkr, S::try_from(c.status).unwrap()))
        .collect()
}

fn confirm(psid: &str, amount: i64, reference: &str) -> pb::ConfirmPaymentRequest {
    pb::ConfirmPaymentRequest {
        payment_id: psid.into(),
        amount_pkr: amount,
        transaction_reference: reference.into(),
    }
}

async fn actions(app: &TestApp, id: &str) -> Vec<A> {
    app.events(id)
        .await
        .iter()
        .map(|e| A::try_from(e.action).unwrap())
        .collect()
}

async fn approve_as_is(app: &TestApp, on: &impl Versioned) -> Result<pb::Registration, tonic::Status> {
    let reviewer = app.reviewer_token().await.to_owned();
    app.decide_as_is(&reviewer, Decision::Approve, on, pb::ReasonCode::Compliant, "In order")
        .await
}

#[sqlx::test]
async fn the_fifth_address_is_charged_and_approval_waits_for_payment(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, bpo) = app.enrol(C::CallCenterBpo).await;
    let (_, other) = app.enrol(C::CallCenterBpo).await;
    let payments = app.token(Role::Payments).await;
    let four = app
        .submit_as(&bpo, voip(&["8.8.4.1/32", "8.8.4.2/32", "8.8.4.3/32", "8.8.4.4/32"]))
        .await;
    assert!(
        challans(&app, &bpo, &four.id).await.is_empty(),
        "four addresses are free"
    );
    let vpn = app.submit(&bpo, &["9.9.9.0/24"]).await;
    assert!(challans(&app, &bpo, &vpn.id).await.is_empty(), "VPNs stay free");

    // A /29 counts eight: the institution now whitelists twelve.
    let r = app.submit_as(&bpo, voip(&["8.8.8.8/29"])).await;
    let issued = challans(&app, &bpo, &r.id).await;
    assert_eq!(summary(&issued), [(8, 40_000, S::Unpaid)]);
    let psid = issued[0].payment_id.clone();
    assert_eq!(psid.len(), 18);
    psid.parse::<Psid>().expect("a PSID with its check digit");

    // Nobody else reads it; nobody but a payments system confirms it.
    let hidden = app
        .payments(Some(&other))
        .list_challans(pb::ListChallansRequest {
            registration_id: r.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    for token in [bpo.as_str(), app.reviewer_token().await] {
        let denied = app
            .payments(Some(token))
            .confirm_payment(confirm(&psid, 40_000, "TXN-1"))
            .await
            .unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied);
    }
    let denied = app
        .registrations(Some(&payments))
        .list_registrations(pb::ListRegistrationsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        denied.code(),
        Code::PermissionDenied,
        "a payments system reads challans only"
    );

    // Documents verified, the fee unpaid: the approval names the challan.
    let attested = app.attest(&r, true).await.unwrap();
    app.verified_documents(&r.id).await;
    let refused = approve_as_is(&app, &attested).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        precondition_gaps(&refused),
        [("FEE_UNPAID".to_owned(), format!("challans/{psid}"))]
    );

    // The bank looks the challan up, then pays; wrong amounts and unknown
    // ids are refused, and every attempt is recorded.
    let mut bank = app.payments(Some(&payments));
    let inquiry = bank
        .get_challan(pb::GetChallanRequest {
            payment_id: psid.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(inquiry.amount_pkr, 40_000);
    let wrong = bank.confirm_payment(confirm(&psid, 4_000, "TXN-1")).await.unwrap_err();
    assert_eq!(wrong.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&wrong), ["amount_pkr"]);
    let unknown = Psid::issue("1001", 999_999).to_string();
    let missing = bank
        .confirm_payment(confirm(&unknown, 40_000, "TXN-1"))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let mut typo = psid.clone().into_bytes();
    typo[10] = if typo[10] == b'9' { b'0' } else { typo[10] + 1 };
    let typo = String::from_utf8(typo).unwrap();
    let mistyped = bank.confirm_payment(confirm(&typo, 40_000, "TXN-1")).await.unwrap_err();
    assert_eq!(
        violated_fields(&mistyped),
        ["payment_id"],
        "the check digit catches a typo"
    );
    let paid = bank
        .confirm_payment(confirm(&psid, 40_000, "TXN-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(S::try_from(paid.status).unwrap(), S::Paid);
    let again = bank
        .confirm_payment(confirm(&psid, 40_000, "TXN-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, paid, "a retry answers the same");
    let twice = bank.confirm_payment(confirm(&psid, 40_000, "TXN-2")).await.unwrap_err();
    assert_eq!(twice.code(), Code::FailedPrecondition, "paid once only");
    let outcomes: Vec<String> = sqlx::query_scalar("SELECT outcome FROM payment_attempts ORDER BY sequence")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        ["WRONG_AMOUNT", "UNKNOWN_PSID", "ACCEPTED", "ACCEPTED", "CHALLAN_PAID"]
    );

    let approved = approve_as_is(&app, &attested)
        .await
        .expect("documents verified, fee paid");
    assert_eq!(approved.state, pb::RegistrationState::Active as i32);
    let history = actions(&app, &r.id).await;
    assert!(
        history.contains(&A::FeeAssessed) && history.contains(&A::FeePaid),
        "{history:?}"
    );

    // An amendment of the approved registration pays for what it adds.
    let mut wider = approved.clone();
    wider.source_prefixes.push("8.8.8.64/32".into());
    let revised = app
        .registrations(Some(&bpo))
        .amend_registration(amend_request(wider, &["source_prefixes"]))
        .await
        .unwrap()
        .into_inner();
    let after = challans(&app, &bpo, &r.id).await;
    assert_eq!(summary(&after), [(8, 40_000, S::Paid), (1, 5_000, S::Unpaid)]);
    assert_eq!(
        after[1].revision_id,
        revised.pending_revision.as_ref().unwrap().id,
        "charged to the revision"
    );
}

#[sqlx::test]
async fn amendments_reassess_and_a_withdrawn_application_is_refunded(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, bpo) = app.enrol(C::CallCenterBpo).await;
    let payments = app.token(Role::Payments).await;
    let mut bank = app.payments(Some(&payments));
    let r = app.submit_as(&bpo, voip(&["8.8.8.8/29"])).await;
    assert_eq!(summary(&challans(&app, &bpo, &r.id).await), [(8, 40_000, S::Unpaid)]);

    let amend = |current: pb::Registration, prefix: &str| {
        let (app, bpo, prefix) = (&app, &bpo, prefix.to_owned());
        async move {
            let mut changed = current;
            changed.source_prefixes = vec![prefix];
            app.registrations(Some(bpo))
                .amend_registration(amend_request(changed, &["source_prefixes"]))
                .await
                .unwrap()
                .into_inner()
        }
    };
    // Shrunk below five: nothing is owed, the challan is withdrawn.
    let r = amend(r, "8.8.8.8/30").await;
    assert_eq!(summary(&challans(&app, &bpo, &r.id).await), [(8, 40_000, S::Cancelled)]);
    // Widened to sixteen: a new challan; paid.
    let r = amend(r, "8.8.8.0/28").await;
    let now = challans(&app, &bpo, &r.id).await;
    assert_eq!(summary(&now)[1], (16, 80_000, S::Unpaid));
    bank.confirm_payment(confirm(&now[1].payment_id, 80_000, "TXN-16"))
        .await
        .unwrap();
    // Shrunk to eight after paying for sixteen: nothing new is owed.
    let r = amend(r, "8.8.8.8/29").await;
    assert_eq!(challans(&app, &bpo, &r.id).await.len(), 2);
    // An unrelated amendment leaves the challans as they are.
    let mut purpose = r.clone();
    purpose.purpose = "Outbound support calls".into();
    let r = app
        .registrations(Some(&bpo))
        .amend_registration(amend_request(purpose, &["purpose"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(challans(&app, &bpo, &r.id).await.len(), 2);

    // Withdrawn before a decision: the fee is owed back, then refunded.
    app.registrations(Some(&bpo))
        .withdraw_registration(pb::WithdrawRegistrationRequest {
            id: r.id.clone(),
            etag: r.etag.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let settled = challans(&app, &bpo, &r.id).await;
    assert_eq!(summary(&settled)[1], (16, 80_000, S::RefundDue));
    let psid = settled[1].payment_id.clone();
    let refund = |reference: &str| pb::ConfirmRefundRequest {
        payment_id: psid.clone(),
        transaction_reference: reference.into(),
    };
    let refunded = bank.confirm_refund(refund("RFND-1")).await.unwrap().into_inner();
    assert_eq!(S::try_from(refunded.status).unwrap(), S::Refunded);
    assert_eq!(
        bank.confirm_refund(refund("RFND-1")).await.unwrap().into_inner(),
        refunded
    );
    let again = bank.confirm_refund(refund("RFND-2")).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    let history = actions(&app, &r.id).await;
    for wanted in [
        A::FeeAssessed,
        A::FeeCancelled,
        A::FeePaid,
        A::FeeRefundDue,
        A::FeeRefunded,
    ] {
        assert!(history.contains(&wanted), "{wanted:?} in {history:?}");
    }
}

#[sqlx::test]
async fn a_renewal_is_a_new_term_and_pays_for_every_address(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, bpo) = app.enrol(C::CallCenterBpo).await;
    let r = app.submit_as(&bpo, voip(&["8.8.8.8/29"])).await;
    // Approved with its documents verified and its fee paid (fixtures).
    let approved = app.approve(&r).await.unwrap();
    assert_eq!(summary(&challans(&app, &bpo, &r.id).await), [(8, 40_000, S::Paid)]);
    let until = ts(time::OffsetDateTime::now_utc() + time::Duration::days(730));
    let renewed = app
        .registrations(Some(&bpo))
        .renew_registration(pb::RenewRegistrationRequest {
            id: r.id.clone(),
            etag: approved.etag.clone(),
            valid_until: Some(until),
            request_id: String::new(),
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    let after = challans(&app, &bpo, &r.id).await;
    assert_eq!(summary(&after), [(8, 40_000, S::Paid), (8, 40_000, S::Unpaid)]);
    let renewal = renewed.pending_revision.as_ref().unwrap();
    assert!(renewal.is_renewal);
    assert_eq!(after[1].revision_id, renewal.id, "charged to the renewal");
    // The renewal's approval waits for its own fee; the first stays earned.
    let attested = app.attest(&renewed, true).await.unwrap();
    app.verified_documents(&r.id).await;
    let refused = approve_as_is(&app, &attested).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains(&after[1].payment_id),
        "{}",
        refused.message()
    );
}
