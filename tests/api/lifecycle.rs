//! The registration lifecycle through the public API, as the right (and the
//! wrong) principals drive it.

use sqlx::PgPool;
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;
use vpn_registry::domain::principal::Role;
use vpn_registry::pb::{self, InstitutionCategory as C, RegistrationState as S};

use crate::helpers::*;
use vpn_registry::domain::decision::Decision;

/// (op, prefix) of the change feed for one registration, in serial order.
async fn feed(app: &TestApp, id: &str) -> Vec<(String, String)> {
    sqlx::query_as("SELECT op, prefix::text FROM change_feed WHERE registration_id = $1 ORDER BY serial")
        .bind(Uuid::parse_str(id).unwrap())
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn a_registration_is_attested_reviewed_and_approved_on_the_record(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (inst, token) = app.enrol(C::Bank).await;
    let submitted = app.submit(&token, &["8.8.8.0/24"]).await;

    let pending = app
        .isp_desk()
        .await
        .list_pending_attestations(pb::ListPendingAttestationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .attestations;
    assert_eq!(pending.len(), 1);
    let a = &pending[0];
    assert_eq!(
        (a.registration_id.as_str(), a.institution_name.as_str()),
        (submitted.id.as_str(), inst.legal_name.as_str())
    );
    assert_eq!(a.isp_subscriber_id, "SUB-0001");
    assert_eq!(a.source_prefixes, ["8.8.8.0/24"]);

    let attested = app.attest(&submitted, true).await.unwrap();
    assert_eq!(attested.state, S::UnderReview as i32);

    let queue = app
        .reviewer()
        .await
        .list_review_queue(pb::ListReviewQueueRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        queue.registrations.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [submitted.id.as_str()]
    );

    let approved = app
        .decide(
            Decision::Approve,
            &queue.registrations[0],
            pb::ReasonCode::Compliant,
            "In order",
        )
        .await
        .unwrap();
    assert_eq!(approved.state, S::Active as i32);
    assert!(approved.feed_serial > 0, "approval changed the active set");
    assert_eq!(
        feed(&app, &approved.id).await,
        [("ANNOUNCE".to_owned(), "8.8.8.0/24".to_owned())]
    );
    assert_eq!(app.count("active_prefixes").await, 1);

    let history = app.events(&approved.id).await;
    let steps: Vec<_> = history.iter().map(|e| (e.action, e.from_state, e.to_state)).collect();
    use pb::RegistrationAction as A;
    assert_eq!(
        steps,
        [
            (A::Submitted as i32, S::Submitted as i32, S::IspVerification as i32),
            (A::Attested as i32, S::IspVerification as i32, S::UnderReview as i32),
            (A::Approved as i32, S::UnderReview as i32, S::Active as i32),
        ]
    );
    let approval = &history[2];
    assert_eq!(approval.reason_code, pb::ReasonCode::Compliant as i32);
    assert_eq!(approval.reason, "In order");
    assert_eq!(approval.actor.as_ref().unwrap().role, pb::Role::Reviewer as i32);
    assert_eq!(history[1].actor.as_ref().unwrap().role, pb::Role::Isp as i32);
}

#[sqlx::test]
async fn an_isp_sees_and_attests_only_what_names_it(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Bank).await;
    let r = app.submit(&token, &["8.8.8.0/24"]).await;
    app.add_isp("nayatel").await;
    let other = app.token(Role::Isp("nayatel".parse().unwrap())).await;
    let mut isps = app.isps(Some(&other));
    let pending = isps
        .list_pending_attestations(pb::ListPendingAttestationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(pending.attestations.is_empty());
    let err = isps.attest_registration(attest_request(&r, true)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(app.get(&r.id).await.state, S::IspVerification as i32);
}

#[sqlx::test]
async fn a_denied_attestation_rejects_with_the_isps_reason(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Bank).await;
    let r = app.submit(&token, &["8.8.8.0/24"]).await;
    let err = app
        .isp_desk()
        .await
        .attest_registration(attest_request(&r, false))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["reason"]);

    let denied = app.attest(&r, false).await.unwrap();
    assert_eq!(denied.state, S::Rejected as i32);
    let last = app.events(&r.id).await.pop().unwrap();
    assert_eq!(last.action, pb::RegistrationAction::AttestationDenied as i32);
    assert_eq!(last.reason, "Subscriber unknown");
    assert_eq!(last.reason_code, pb::ReasonCode::IspNotConfirmed as i32);
}

#[sqlx::test]
async fn information_requests_return_to_review_after_an_amendment(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Bank).await;
    let mut mine = app.registrations(Some(&token));
    let r = app.submit(&token, &["8.8.8.0/24"]).await;
    let r = {
        app.attest(&r, true).await.unwrap();
        app.get(&r.id).await
    };
    let asked = app
        .decide(
            Decision::RequestInformation,
            &r,
            pb::ReasonCode::IncompleteInformation,
            "Describe the peer",
        )
        .await
        .unwrap();
    assert_eq!(asked.state, S::NeedsInfo as i32);

    let mut changed = asked.clone();
    changed.purpose = "Remote access to the head office in Karachi for the treasury team".into();
    let amended = mine
        .amend_registration(amend_request(changed, &["purpose"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(amended.state, S::UnderReview as i32, "back to the reviewer");

    // Changing what the ISP vouched for sends it back to the ISP.
    let mut moved = amended.clone();
    moved.source_prefixes = vec!["8.8.4.0/24".into()];
    let reattest = mine
        .amend_registration(amend_request(moved, &["source_prefixes"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reattest.state, S::IspVerification as i32);
}

#[sqlx::test]
async fn suspension_reinstatement_and_revocation_move_the_active_set(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Bank).await;
    let r = app.submit(&token, &["8.8.8.0/24"]).await;
    let active = app.approve(&r).await.unwrap();
    let suspended = app
        .decide(
            Decision::Suspend,
            &active,
            pb::ReasonCode::SecurityConcern,
            "Abuse report",
        )
        .await
        .unwrap();
    assert_eq!(suspended.state, S::Suspended as i32);
    assert!(suspended.feed_serial > active.feed_serial);
    assert_eq!(app.count("active_prefixes").await, 0);

    let err = app
        .decide(Decision::Suspend, &suspended, pb::ReasonCode::SecurityConcern, "Again")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("SUSPENDED"), "{}", err.message());

    let reinstated = app
        .decide(Decision::Reinstate, &suspended, pb::ReasonCode::Compliant, "Resolved")
        .await
        .unwrap();
    assert_eq!(reinstated.state, S::Active as i32);
    assert_eq!(app.count("active_prefixes").await, 1);

    let revoked = app
        .decide(Decision::Revoke, &reinstated, pb::ReasonCode::PolicyViolation, "Misuse")
        .await
        .unwrap();
    assert_eq!(revoked.state, S::Revoked as i32);
    let ops: Vec<_> = feed(&app, &r.id).await.into_iter().map(|(op, _)| op).collect();
    assert_eq!(ops, ["ANNOUNCE", "WITHDRAW", "ANNOUNCE", "WITHDRAW"]);
}

#[sqlx::test]
async fn illegal_decisions_answer_failed_precondition_naming_the_state(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Bank).await;
    let r = app.submit(&token, &["8.8.8.0/24"]).await;
    let err = app
        .decide(Decision::Approve, &r, pb::ReasonCode::Compliant, "In order")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("ISP_VERIFICATION"), "{}", err.message());
    assert_eq!(
        err.get_details_precondition_failure().unwrap().violations[0].subject,
        "ISP_VERIFICATION"
    );

    let err = app
        .decide(Decision::Reinstate, &r, pb::ReasonCode::Other, "x")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    let active = app.approve(&r).await.unwrap();
    let err = app.attest(&active, true).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("ACTIVE"));
    let err = app
        .registrations(Some(&token))
        .withdraw_registration(pb::WithdrawRegistrationRequest {
            id: r.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    let err = app
        .reviewer()
        .await
        .reject_registration(pb::RejectRegistrationRequest {
            id: r.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let mut fields = violated_fields(&err);
    fields.sort();
    assert_eq!(
        fields,
        ["etag", "reason", "reason_code"],
        "decisions need etag, reason code and reason"
    );
}

#[sqlx::test]
async fn a_reason_code_that_does_not_justify_the_decision_is_refused_and_nothing_changes(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Bank).await;
    let r = app.submit(&token, &["8.8.8.0/24"]).await;
    app.attest(&r, true).await.unwrap();
    let r = app.get(&r.id).await;
    for (decision, code) in [
        (Decision::Approve, pb::ReasonCode::SecurityConcern),
        (Decision::Reject, pb::ReasonCode::Compliant),
        (Decision::RequestInformation, pb::ReasonCode::ValidityEnded),
    ] {
        let err = app.decide(decision, &r, code, "Wrong code").await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{decision:?} with {code:?}");
        assert_eq!(violated_fields(&err), ["reason_code"]);
    }
    let unchanged = app.get(&r.id).await;
    assert_eq!((unchanged.state, unchanged.etag), (S::UnderReview as i32, r.etag));
}

#[sqlx::test]
async fn only_reviewers_decide_and_only_isps_attest(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Bank).await;
    let r = app.submit(&token, &["8.8.8.0/24"]).await;
    let admin = app.admin().await;
    let isp = app.isp_token().await.to_owned();
    for who in [&admin, &token, &isp] {
        let err = app
            .decide_as(who, Decision::Approve, &r, pb::ReasonCode::Compliant, "In order")
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "separation of duties");
        let err = app
            .review(Some(who))
            .list_review_queue(pb::ListReviewQueueRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
    }
    let reviewer = app.reviewer_token().await.to_owned();
    for who in [&admin, &reviewer, &token] {
        let err = app
            .isps(Some(who))
            .attest_registration(attest_request(&r, true))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
    }
    assert_eq!(app.get(&r.id).await.state, S::IspVerification as i32);
}

#[sqlx::test]
async fn of_two_reviewers_deciding_at_once_exactly_one_wins(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Bank).await;
    let r = app.submit(&token, &["8.8.8.0/24"]).await;
    app.attest(&r, true).await.unwrap();
    let r = app.get(&r.id).await;
    let (first, second) = (app.token(Role::Reviewer).await, app.token(Role::Reviewer).await);
    let (a, b) = tokio::join!(
        app.decide_as(&first, Decision::Approve, &r, pb::ReasonCode::Compliant, "In order"),
        app.decide_as(&second, Decision::Reject, &r, pb::ReasonCode::PolicyViolation, "No")
    );
    let outcomes = [a.map(|r| r.state), b.map(|r| r.state)];
    let wins: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    let losses: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(wins.len(), 1, "{outcomes:?}");
    assert_eq!(losses[0].code(), Code::Aborted, "{:?}", losses[0]);
    let decided = app
        .events(&r.id)
        .await
        .into_iter()
        .filter(|e| e.from_state == S::UnderReview as i32)
        .count();
    assert_eq!(decided, 1);
}

#[sqlx::test]
async fn approval_refuses_a_prefix_another_institution_got_first(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, a) = app.enrol(C::Bank).await;
    let (_, b) = app.enrol(C::Company).await;
    let ra = app.submit(&a, &["8.8.8.0/24"]).await;
    let rb = app.submit(&b, &["8.8.8.64/26"]).await;
    app.approve(&ra).await.unwrap();
    let err = app.approve(&rb).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("8.8.8.64/26"));
    assert_eq!(app.get(&rb.id).await.state, S::UnderReview as i32, "nothing changed");
}

#[sqlx::test]
async fn an_amended_active_registration_stays_in_force_until_the_revision_is_approved(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Bank).await;
    let mut mine = app.registrations(Some(&token));
    let r = app.submit(&token, &["8.8.8.0/24"]).await;
    let active = app.approve(&r).await.unwrap();

    let mut changed = active.clone();
    changed.source_prefixes = vec!["8.8.4.0/24".into()];
    let proposed = mine
        .amend_registration(amend_request(changed, &["source_prefixes"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(proposed.state, S::Active as i32);
    assert_eq!(
        proposed.source_prefixes,
        ["8.8.8.0/24"],
        "the approved version stays in force"
    );
    assert_eq!(proposed.feed_serial, 0);
    let revision = proposed.pending_revision.clone().unwrap();
    assert_eq!(
        (revision.state, revision.source_prefixes.clone()),
        (S::IspVerification as i32, vec!["8.8.4.0/24".to_owned()])
    );

    let approved = app.approve(&proposed).await.unwrap();
    assert_eq!(approved.state, S::Active as i32);
    assert_eq!(approved.source_prefixes, ["8.8.4.0/24"]);
    assert!(approved.pending_revision.is_none());
    let prefixes: Vec<String> = sqlx::query_scalar("SELECT prefix::text FROM active_prefixes")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(prefixes, ["8.8.4.0/24"]);
    let ops = feed(&app, &r.id).await;
    assert_eq!(
        ops[1..],
        [
            ("WITHDRAW".to_owned(), "8.8.8.0/24".to_owned()),
            ("ANNOUNCE".to_owned(), "8.8.4.0/24".to_owned())
        ]
    );

    // A rejected revision is discarded and changes nothing.
    let mut again = approved.clone();
    again.purpose = "Something new".into();
    let proposed = mine
        .amend_registration(amend_request(again, &["purpose"]))
        .await
        .unwrap()
        .into_inner();
    app.attest(&proposed, true).await.unwrap();
    let current = app.get(&r.id).await;
    let rejected = app
        .decide(
            Decision::Reject,
            &current,
            pb::ReasonCode::PolicyViolation,
            "Not needed",
        )
        .await
        .unwrap();
    assert_eq!(rejected.state, S::Active as i32);
    assert_eq!(rejected.purpose, approved.purpose);
    assert!(rejected.pending_revision.is_none());
}

#[sqlx::test]
async fn large_prefixes_need_a_justification_and_the_reviewers_override(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Bank).await;
    let mut mine = app.registrations(Some(&token));
    let err = mine
        .submit_registration(submit_request(&["8.8.8.0/22"]))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["registration.source_prefixes[0]"]);

    let mut req = submit_request(&["8.8.8.0/22"]);
    req.registration.as_mut().unwrap().large_prefix_justification = "Data centre uplink block".into();
    let r = mine.submit_registration(req).await.unwrap().into_inner();
    app.attest(&r, true).await.unwrap();
    let r = app.get(&r.id).await;
    let mut review = app.reviewer().await;
    let err = review.approve_registration(approve_request(&r)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("override_size_limits"));
    app.verified_evidence(&r.id).await;

    let later = r.valid_until.map(|mut t| {
        t.seconds += 86_400;
        t
    });
    let err = review
        .approve_registration(pb::ApproveRegistrationRequest {
            valid_until: later,
            override_size_limits: true,
            ..approve_request(&r)
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        ["valid_until"],
        "approval may not extend validity"
    );

    let shorter = ts(time::OffsetDateTime::now_utc() + time::Duration::days(90));
    let approved = review
        .approve_registration(pb::ApproveRegistrationRequest {
            valid_until: Some(shorter),
            override_size_limits: true,
            ..approve_request(&r)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(approved.state, S::Active as i32);
    assert_eq!(approved.valid_until.unwrap().seconds, shorter.seconds);
}

#[sqlx::test]
async fn feed_serials_never_show_a_gap_while_approvals_commit_concurrently(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut submitted = Vec::new();
    for i in 0..16 {
        let (_, token) = app.enrol(C::Company).await;
        let r = app
            .submit(&token, &[&format!("9.{i}.0.0/24"), &format!("9.{i}.1.0/24")])
            .await;
        app.attest(&r, true).await.unwrap();
        submitted.push(app.get(&r.id).await);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (pool, stop) = (app.pool.clone(), stop.clone());
        tokio::spawn(async move {
            let mut looks = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (count, max): (i64, Option<i64>) = sqlx::query_as("SELECT count(*), max(serial) FROM change_feed")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                assert_eq!(count, max.unwrap_or(0), "a reader saw a gap in the feed");
                looks += 1;
            }
            looks
        })
    };
    for r in &submitted {
        app.verified_evidence(&r.id).await;
    }
    let reviewer = app.reviewer_token().await;
    let approvals = submitted.iter().map(|r| {
        let mut review = app.review(Some(reviewer));
        let req = approve_request(r);
        tokio::spawn(async move { review.approve_registration(req).await.unwrap().into_inner().feed_serial })
    });
    let mut serials = Vec::new();
    for a in approvals {
        serials.push(a.await.unwrap());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(watcher.await.unwrap() > 0);
    serials.sort();
    assert_eq!(
        serials,
        (1..=16).map(|i| i * 2).collect::<Vec<i64>>(),
        "each approval announced two prefixes"
    );
}

#[sqlx::test]
async fn the_database_trigger_knows_exactly_the_domains_transitions(pool: PgPool) {
    let in_db: std::collections::BTreeSet<(String, String)> =
        sqlx::query_as("SELECT from_state, to_state FROM lifecycle_transitions")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let in_code: std::collections::BTreeSet<(String, String)> = vpn_registry::domain::lifecycle::TRANSITIONS
        .iter()
        .map(|(from, to)| (from.as_str().to_owned(), to.as_str().to_owned()))
        .collect();
    assert_eq!(in_db, in_code);
}

#[sqlx::test]
async fn the_review_queue_filters_by_isp_and_by_how_long_items_have_waited(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, bank) = app.enrol(C::Bank).await;
    app.add_isp("nayatel").await;
    let nayatel_desk = app.token(Role::Isp("nayatel".parse().unwrap())).await;
    let by_ptcl = app.submit(&bank, &["8.8.8.0/24"]).await;
    app.attest(&by_ptcl, true).await.unwrap();
    let by_nayatel = app
        .registrations(Some(&bank))
        .submit_registration(pb::SubmitRegistrationRequest {
            registration: Some(pb::Registration {
                isp: "nayatel".into(),
                ..valid_registration(&["8.8.4.0/24"])
            }),
            request_id: uuid::Uuid::new_v4().to_string(),
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    app.isps(Some(&nayatel_desk))
        .attest_registration(attest_request(&by_nayatel, true))
        .await
        .unwrap();
    let reviewer = app.reviewer_token().await.to_owned();
    let queue = |isp: &str, queued_before: Option<time::OffsetDateTime>| {
        let mut review = app.review(Some(&reviewer));
        let request = pb::ListReviewQueueRequest {
            isp: isp.into(),
            queued_before: queued_before.map(ts),
            ..Default::default()
        };
        async move {
            review.list_review_queue(request).await.map(|r| {
                r.into_inner()
                    .registrations
                    .into_iter()
                    .map(|r| r.id)
                    .collect::<Vec<_>>()
            })
        }
    };
    assert_eq!(
        queue("", None).await.unwrap(),
        [by_ptcl.id.as_str(), by_nayatel.id.as_str()]
    );
    assert_eq!(queue("nayatel", None).await.unwrap(), [by_nayatel.id.as_str()]);
    assert_eq!(queue("ptcl", None).await.unwrap(), [by_ptcl.id.as_str()]);
    let an_hour_ago = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    assert!(
        queue("", Some(an_hour_ago)).await.unwrap().is_empty(),
        "nothing has waited an hour"
    );
    let later = time::OffsetDateTime::now_utc() + time::Duration::seconds(1);
    assert_eq!(queue("", Some(later)).await.unwrap().len(), 2);
    let err = queue("Not An ISP!", None).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&err), ["isp"]);
}
