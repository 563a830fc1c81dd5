use sqlx::PgPool;
use tonic::Code;
use tonic_types::StatusExt;
use vpn_registry::pb::{self, InstitutionCategory as C, RegistrationState as S};

use crate::helpers::*;

#[sqlx::test]
async fn an_institution_submits_a_registration_and_its_history_records_it(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (inst, token) = app.enrol(C::Bank).await;
    let mut client = app.registrations(Some(&token));
    let mut req = submit_request(&["8.8.8.0/24", "2a00:1450:4000::/48", "9.9.9.9"]);
    req.request_id = "submit-1".into();
    let reg = client.submit_registration(req).await.unwrap().into_inner();

    assert_eq!(
        reg.state,
        S::IspVerification as i32,
        "a submission goes straight to the ISP"
    );
    assert_eq!(reg.institution_id, inst.id);
    assert_eq!(reg.source_prefixes, ["8.8.8.0/24", "2a00:1450:4000::/48", "9.9.9.9/32"]);
    let year = time::OffsetDateTime::now_utc().year();
    assert!(
        reg.reference.starts_with(&format!("VPN-{year}-")) && reg.reference.len() == 15,
        "{}",
        reg.reference
    );
    assert!(reg.valid_from.is_some(), "valid_from defaults to the submission time");

    let fetched = client
        .get_registration(pb::GetRegistrationRequest { id: reg.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched, reg);

    let events = events_of(&mut client, &reg.id).await;
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.action, pb::RegistrationAction::Submitted as i32);
    assert_eq!(
        (e.from_state, e.to_state),
        (S::Submitted as i32, S::IspVerification as i32)
    );
    assert_eq!(e.request_id, "submit-1");
    let actor = e.actor.as_ref().unwrap();
    assert_eq!(actor.role, pb::Role::Institution as i32);
    assert!(!actor.principal_id.is_empty());
    assert!(e.changes.iter().any(|c| c.field == "source_prefixes"));
}

#[sqlx::test]
async fn submission_names_every_invalid_field_and_writes_nothing(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Company).await;
    let mut reg = valid_registration(&[
        "8.8.8.8/24",  // host bits set
        "10.1.2.0/24", // private
        "8.8.0.0/16",  // larger than /24
        "9.9.9.0/24",
        "9.9.9.128/25",  // overlaps [3]
        "2001:db8::/48", // documentation
        "not-a-prefix",
    ]);
    reg.protocol = 0;
    reg.msisdn = "03001234567".into();
    reg.isp = "P T C L".into();
    reg.purpose = "x".repeat(1001);
    reg.peer_prefixes = vec!["192.168.0.0/16".into()];
    reg.valid_from = Some(ts(time::OffsetDateTime::now_utc() + time::Duration::days(30)));
    reg.valid_until = Some(ts(time::OffsetDateTime::now_utc() + time::Duration::days(10)));
    let err = app
        .registrations(Some(&token))
        .submit_registration(pb::SubmitRegistrationRequest {
            registration: Some(reg),
            request_id: "x".into(),
            validate_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let mut fields = violated_fields(&err);
    fields.sort();
    assert_eq!(
        fields,
        [
            "registration.isp",
            "registration.msisdn",
            "registration.peer_prefixes[0]",
            "registration.protocol",
            "registration.purpose",
            "registration.source_prefixes[0]",
            "registration.source_prefixes[1]",
            "registration.source_prefixes[2]",
            "registration.source_prefixes[4]",
            "registration.source_prefixes[5]",
            "registration.source_prefixes[6]",
            "registration.valid_until",
        ]
    );
    let host_bits = err.get_details_bad_request().unwrap().field_violations[0]
        .description
        .clone();
    assert!(
        host_bits.contains("8.8.8.0/24"),
        "names the canonical form: {host_bits}"
    );
    assert_eq!(app.count("registrations").await, 0);
    assert_eq!(app.count("audit_events WHERE subject_type = 'registration'").await, 0);
}

#[sqlx::test]
async fn a_freelancer_may_register_a_mobile_number_instead_of_a_prefix(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Freelancer).await;
    let mut reg = valid_registration(&[]);
    reg.msisdn = "0301 2345678".into();
    let created = app
        .registrations(Some(&token))
        .submit_registration(pb::SubmitRegistrationRequest {
            registration: Some(reg),
            request_id: "m".into(),
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.msisdn, "+923012345678");
    assert!(created.source_prefixes.is_empty());

    let err = app
        .registrations(Some(&token))
        .submit_registration(pb::SubmitRegistrationRequest {
            registration: Some(valid_registration(&[])),
            request_id: "n".into(),
            validate_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["registration.source_prefixes"]);
}

#[sqlx::test]
async fn a_prefix_overlapping_another_institutions_active_registration_is_refused(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, a) = app.enrol(C::Bank).await;
    let (_, b) = app.enrol(C::Company).await;
    let active = app.submit(&a, &["8.8.8.0/24"]).await;
    app.approve(&active).await.unwrap();

    let err = app
        .registrations(Some(&b))
        .submit_registration(submit_request(&["9.9.9.0/24", "8.8.8.128/25"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("8.8.8.128/25"), "{}", err.message());
    assert!(
        !err.message().contains(&active.institution_id),
        "the owner is not revealed"
    );
    assert!(
        !err.message().contains("8.8.8.0/24"),
        "nor the other holder's prefix: {}",
        err.message()
    );
    let pf = err.get_details_precondition_failure().unwrap();
    assert_eq!(pf.violations[0].subject, "8.8.8.128/25");

    // The same institution may overlap its own active registration (a renewal, say).
    app.registrations(Some(&a))
        .submit_registration(submit_request(&["8.8.8.0/25"]))
        .await
        .unwrap();
    assert_eq!(app.count("registrations").await, 2);
}

#[sqlx::test]
async fn the_database_refuses_overlapping_active_prefixes_of_two_institutions(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, a) = app.enrol(C::Bank).await;
    let (_, b) = app.enrol(C::Company).await;
    let ra = app.submit(&a, &["8.8.8.0/24"]).await;
    let rb = app.submit(&b, &["8.8.8.8"]).await;
    // Straight SQL, bypassing the service: the database still holds the line.
    let activate = |id: String| {
        let pool = app.pool.clone();
        async move {
            let id: uuid::Uuid = id.parse().unwrap();
            for state in ["UNDER_REVIEW", "ACTIVE"] {
                sqlx::query("UPDATE registrations SET state = $2 WHERE id = $1")
                    .bind(id)
                    .bind(state)
                    .execute(&pool)
                    .await?;
            }
            Ok::<_, sqlx::Error>(())
        }
    };
    activate(ra.id.clone()).await.unwrap();
    let err = activate(rb.id.clone()).await.unwrap_err();
    let db = err.as_database_error().unwrap();
    assert_eq!(db.code().as_deref(), Some("23P01"));
    assert_eq!(db.constraint(), Some("active_prefixes_no_overlap"));
    assert_eq!(app.count("active_prefixes").await, 1);
}

#[sqlx::test]
async fn the_database_refuses_illegal_state_transitions(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, a) = app.enrol(C::Bank).await;
    let r = app.submit(&a, &["8.8.8.0/24"]).await;
    let err = sqlx::query("UPDATE registrations SET state = 'ACTIVE' WHERE id = $1")
        .bind(uuid::Uuid::parse_str(&r.id).unwrap())
        .execute(&app.pool)
        .await
        .unwrap_err();
    assert_eq!(
        err.as_database_error().unwrap().constraint(),
        Some("legal_state_transition")
    );
    assert_eq!(app.count("active_prefixes").await, 0);
}

#[sqlx::test]
async fn institutions_cannot_see_or_touch_each_others_registrations(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (a_inst, a) = app.enrol(C::Bank).await;
    let (_, b) = app.enrol(C::Company).await;
    let reg = app.submit(&a, &["8.8.8.0/24"]).await;
    let mut as_b = app.registrations(Some(&b));

    let err = as_b
        .get_registration(pb::GetRegistrationRequest { id: reg.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = as_b
        .list_registration_events(pb::ListRegistrationEventsRequest {
            id: reg.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = as_b
        .withdraw_registration(pb::WithdrawRegistrationRequest {
            id: reg.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let mut amend = reg.clone();
    amend.purpose = "hijack".into();
    let err = as_b
        .amend_registration(amend_request(amend, &["purpose"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let listed = as_b
        .list_registrations(pb::ListRegistrationsRequest {
            institution_id: a_inst.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.registrations.is_empty());
    let mut for_a = submit_request(&["9.9.9.0/24"]);
    for_a.registration.as_mut().unwrap().institution_id = a_inst.id.clone();
    let err = as_b.submit_registration(for_a).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Reviewers read everything.
    let mut as_reviewer = app.registrations(Some(app.reviewer_token().await));
    as_reviewer
        .get_registration(pb::GetRegistrationRequest { id: reg.id.clone() })
        .await
        .unwrap();
    let all = as_reviewer
        .list_registrations(pb::ListRegistrationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.registrations.len(), 1);
    let err = as_reviewer
        .submit_registration(submit_request(&["9.9.9.0/24"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[sqlx::test]
async fn listing_filters_by_state_kind_and_category(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, bank) = app.enrol(C::Bank).await;
    let (_, company) = app.enrol(C::Company).await;
    let r1 = app.submit(&bank, &["8.8.8.0/24"]).await;
    app.registrations(Some(&bank))
        .submit_registration(submit_request(&["8.8.9.0/24"]))
        .await
        .unwrap();
    let mut voip = submit_request(&["8.8.10.0/24"]);
    let r = voip.registration.as_mut().unwrap();
    r.kind = pb::RegistrationKind::CallCenterVoip as i32;
    r.protocol = 0;
    app.registrations(Some(&company))
        .submit_registration(voip)
        .await
        .unwrap();
    app.registrations(Some(&bank))
        .withdraw_registration(pb::WithdrawRegistrationRequest {
            id: r1.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();

    let mut client = app.registrations(Some(app.reviewer_token().await));
    let count = |req: pb::ListRegistrationsRequest| {
        let mut client = client.clone();
        async move {
            client
                .list_registrations(req)
                .await
                .unwrap()
                .into_inner()
                .registrations
                .len()
        }
    };
    assert_eq!(
        count(pb::ListRegistrationsRequest {
            category: C::Bank as i32,
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        count(pb::ListRegistrationsRequest {
            state: S::Withdrawn as i32,
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        count(pb::ListRegistrationsRequest {
            kind: pb::RegistrationKind::CallCenterVoip as i32,
            ..Default::default()
        })
        .await,
        1
    );
    let page = client
        .list_registrations(pb::ListRegistrationsRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.registrations.len(), 2);
    let rest = client
        .list_registrations(pb::ListRegistrationsRequest {
            page_size: 2,
            page_token: page.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.registrations.len(), 1);
    assert!(rest.next_page_token.is_empty());
}

#[sqlx::test]
async fn amendments_change_masked_fields_check_etags_and_record_before_and_after(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Bank).await;
    let mut client = app.registrations(Some(&token));
    let reg = app.submit(&token, &["8.8.8.0/24"]).await;

    let mut changed = reg.clone();
    changed.source_prefixes = vec!["8.8.8.0/25".into()];
    changed.purpose = "ignored, not in the mask".into();
    let amended = client
        .amend_registration(pb::AmendRegistrationRequest {
            registration: Some(changed.clone()),
            update_mask: mask(&["source_prefixes"]),
            request_id: "amend-1".into(),
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(amended.source_prefixes, ["8.8.8.0/25"]);
    assert_eq!(amended.purpose, reg.purpose);
    assert_ne!(amended.etag, reg.etag);

    let err = client
        .amend_registration(pb::AmendRegistrationRequest {
            registration: Some(changed.clone()),
            update_mask: mask(&["purpose"]),
            request_id: String::new(),
            validate_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");

    let mut kind = amended.clone();
    kind.kind = pb::RegistrationKind::VideoConferencing as i32;
    let err = client
        .amend_registration(amend_request(kind, &["kind"]))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["update_mask.paths[0]"]);

    let events = events_of(&mut client, &reg.id).await;
    assert_eq!(events.len(), 2);
    let amend = &events[1];
    assert_eq!(amend.action, pb::RegistrationAction::Amended as i32);
    assert_eq!(amend.request_id, "amend-1");
    assert_eq!(amend.changes.len(), 1);
    assert_eq!(amend.changes[0].field, "source_prefixes");
    let list = |v: &Option<prost_types::Value>| format!("{v:?}");
    assert!(list(&amend.changes[0].before).contains("8.8.8.0/24"));
    assert!(list(&amend.changes[0].after).contains("8.8.8.0/25"));
}

#[sqlx::test]
async fn a_withdrawn_registration_cannot_change_again(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Bank).await;
    let mut client = app.registrations(Some(&token));
    let reg = app.submit(&token, &["8.8.8.0/24"]).await;
    let withdrawn = client
        .withdraw_registration(pb::WithdrawRegistrationRequest {
            id: reg.id.clone(),
            etag: reg.etag.clone(),
            reason: "Project cancelled".into(),
            request_id: "w-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(withdrawn.state, S::Withdrawn as i32);

    let err = client
        .withdraw_registration(pb::WithdrawRegistrationRequest {
            id: reg.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("WITHDRAWN"), "{}", err.message());
    let mut changed = withdrawn.clone();
    changed.purpose = "Revived".into();
    let err = client
        .amend_registration(amend_request(changed, &["purpose"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    let events = client
        .list_registration_events(pb::ListRegistrationEventsRequest {
            id: reg.id.clone(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(events.events.len(), 1);
    let second = client
        .list_registration_events(pb::ListRegistrationEventsRequest {
            id: reg.id.clone(),
            page_size: 1,
            page_token: events.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    let w = &second.events[0];
    assert_eq!(
        (w.from_state, w.to_state),
        (S::IspVerification as i32, S::Withdrawn as i32)
    );
    assert_eq!(w.reason, "Project cancelled");
    assert_eq!(w.request_id, "w-1");
}
