use sqlx::PgPool;
use tonic::Code;
use vpn_registry::pb::{self, InstitutionCategory as C};

use crate::helpers::*;

fn create(i: pb::Institution) -> pb::CreateInstitutionRequest {
    pb::CreateInstitutionRequest {
        institution: Some(i),
        request_id: uuid::Uuid::new_v4().to_string(),
        validate_only: false,
    }
}

#[sqlx::test]
async fn admin_enrols_institutions_of_every_category_with_normalised_identifiers(pool: PgPool) {
    let app = spawn_app(pool).await;
    let admin = app.admin().await;
    let mut client = app.institutions(Some(&admin));
    for category in [
        C::Bank,
        C::ForeignMission,
        C::ItCompany,
        C::CallCenterBpo,
        C::Company,
        C::Government,
        C::Freelancer,
    ] {
        let created = client
            .create_institution(create(valid_institution(category)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(created.category, category as i32);
        assert!(!created.id.is_empty() && !created.etag.is_empty());
        assert!(created.create_time.is_some());
        assert_eq!(created.contact_phone, "+923001234567");
        if category != C::ForeignMission {
            assert_eq!(created.cnic, "3520212345671");
        }
        let fetched = client
            .get_institution(pb::GetInstitutionRequest { id: created.id.clone() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(fetched, created);
    }
    assert_eq!(app.count("institutions").await, 7);
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE subject_type = 'institution' AND action = 'CREATED' AND actor_role = 'admin'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(audited, 7);
}

#[sqlx::test]
async fn enrolment_names_every_invalid_field_and_writes_nothing(pool: PgPool) {
    let app = spawn_app(pool).await;
    let admin = app.admin().await;
    let mut bank = valid_institution(C::Bank);
    bank.cnic = "95202-1234567-1".into();
    bank.ntn.clear();
    bank.sbp_licence.clear();
    bank.contact_email = "not-an-email".into();
    bank.contact_phone = "12".into();
    bank.country = "GB".into();
    bank.legal_name = "x".repeat(201);
    let err = app
        .institutions(Some(&admin))
        .create_institution(create(bank))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut fields = violated_fields(&err);
    fields.sort();
    assert_eq!(
        fields,
        [
            "institution.cnic",
            "institution.contact_email",
            "institution.contact_phone",
            "institution.country",
            "institution.legal_name",
            "institution.ntn",
            "institution.sbp_licence",
        ]
    );
    assert_eq!(app.count("institutions").await, 0);
    assert_eq!(app.count("audit_events WHERE subject_type = 'institution'").await, 0);
}

#[sqlx::test]
async fn category_rules_apply_to_missions_and_pseb(pool: PgPool) {
    let app = spawn_app(pool).await;
    let admin = app.admin().await;
    let mut client = app.institutions(Some(&admin));

    let mut mission = valid_institution(C::ForeignMission);
    mission.accreditation_ref.clear();
    mission.country = "XX".into();
    let err = client.create_institution(create(mission)).await.unwrap_err();
    let mut fields = violated_fields(&err);
    fields.sort();
    assert_eq!(fields, ["institution.accreditation_ref", "institution.country"]);

    let mut it = valid_institution(C::ItCompany);
    it.pseb_expiry = Some(pb::google::r#type::Date {
        year: 2020,
        month: 1,
        day: 1,
    });
    let err = client.create_institution(create(it)).await.unwrap_err();
    assert_eq!(violated_fields(&err), ["institution.pseb_expiry"]);

    let mut bpo = valid_institution(C::CallCenterBpo);
    bpo.pseb_number.clear();
    bpo.pseb_expiry = None;
    let err = client.create_institution(create(bpo)).await.unwrap_err();
    let mut fields = violated_fields(&err);
    fields.sort();
    assert_eq!(fields, ["institution.pseb_expiry", "institution.pseb_number"]);

    let err = client
        .create_institution(create(pb::Institution::default()))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err)[0], "institution.category");
}

#[sqlx::test]
async fn institutions_see_only_themselves(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (a, a_token) = app.enrol(C::Bank).await;
    let (b, _) = app.enrol(C::Company).await;
    let mut as_a = app.institutions(Some(&a_token));

    let own = as_a
        .get_institution(pb::GetInstitutionRequest { id: a.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.id, a.id);
    let err = as_a
        .get_institution(pb::GetInstitutionRequest { id: b.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = as_a
        .get_institution(pb::GetInstitutionRequest {
            id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "unknown and foreign ids answer alike");

    let listed = as_a
        .list_institutions(pb::ListInstitutionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.institutions.iter().map(|i| &i.id).collect::<Vec<_>>(), [&a.id]);

    let err = as_a
        .get_institution(pb::GetInstitutionRequest { id: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&err), ["id"]);
}

#[sqlx::test]
async fn listing_pages_through_everything_and_filters_by_category(pool: PgPool) {
    let app = spawn_app(pool).await;
    let admin = app.admin().await;
    let mut client = app.institutions(Some(&admin));
    let mut created = Vec::new();
    for category in [C::Bank, C::Company, C::Bank, C::Government, C::Bank] {
        created.push(
            client
                .create_institution(create(valid_institution(category)))
                .await
                .unwrap()
                .into_inner()
                .id,
        );
    }
    let mut as_reviewer = app.institutions(Some(app.reviewer_token().await));
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = as_reviewer
            .list_institutions(pb::ListInstitutionsRequest {
                page_size: 2,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.institutions.len() <= 2);
        seen.extend(page.institutions.into_iter().map(|i| i.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, created, "every institution once, oldest first");

    let banks = client
        .list_institutions(pb::ListInstitutionsRequest {
            category: C::Bank as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(banks.institutions.len(), 3);

    let err = client
        .list_institutions(pb::ListInstitutionsRequest {
            page_token: "garbage".into(),
            page_size: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    let mut fields = violated_fields(&err);
    fields.sort();
    assert_eq!(fields, ["page_size", "page_token"]);
}

#[sqlx::test]
async fn updates_apply_the_mask_check_the_etag_and_are_audited(pool: PgPool) {
    let app = spawn_app(pool).await;
    let admin = app.admin().await;
    let (inst, _) = app.enrol(C::Bank).await;
    let mut client = app.institutions(Some(&admin));

    let mut changed = inst.clone();
    changed.legal_name = "Renamed Bank Ltd".into();
    changed.contact_email = "ignored@example.pk".into();
    let updated = client
        .update_institution(pb::UpdateInstitutionRequest {
            institution: Some(changed.clone()),
            update_mask: mask(&["legal_name"]),
            request_id: String::new(),
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.legal_name, "Renamed Bank Ltd");
    assert_eq!(
        updated.contact_email, inst.contact_email,
        "fields outside the mask stay"
    );
    assert_ne!(updated.etag, inst.etag);

    // The old etag is stale now.
    let err = client
        .update_institution(pb::UpdateInstitutionRequest {
            institution: Some(changed.clone()),
            update_mask: mask(&["legal_name"]),
            request_id: String::new(),
            validate_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);

    // Clearing a required identifier breaks the category rules.
    let mut cleared = updated.clone();
    cleared.sbp_licence.clear();
    let err = client
        .update_institution(pb::UpdateInstitutionRequest {
            institution: Some(cleared),
            update_mask: mask(&["sbp_licence", "category"]),
            request_id: String::new(),
            validate_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&err), ["update_mask.paths[1]"]);

    let change: serde_json::Value =
        sqlx::query_scalar("SELECT changes FROM audit_events WHERE subject_id = $1 AND action = 'UPDATED'")
            .bind(uuid::Uuid::parse_str(&inst.id).unwrap())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        change,
        serde_json::json!([{ "field": "legal_name", "before": inst.legal_name, "after": "Renamed Bank Ltd" }])
    );
}

#[sqlx::test]
async fn institutions_may_change_only_their_contact_details(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (inst, token) = app.enrol(C::ItCompany).await;
    let mut client = app.institutions(Some(&token));

    let mut changed = inst.clone();
    changed.contact_phone = "+92 51 1234567".into();
    let updated = client
        .update_institution(pb::UpdateInstitutionRequest {
            institution: Some(changed.clone()),
            update_mask: mask(&["contact_phone"]),
            request_id: String::new(),
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.contact_phone, "+92511234567");

    let mut changed = updated.clone();
    changed.cnic = "4210112345671".into();
    let err = client
        .update_institution(pb::UpdateInstitutionRequest {
            institution: Some(changed),
            update_mask: mask(&["cnic"]),
            request_id: String::new(),
            validate_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // The PSEB registration and its expiry are the regulator's to record.
    let mut renewed = updated.clone();
    renewed.pseb_expiry = Some(future_date());
    renewed.pseb_expiry.as_mut().unwrap().year += 1;
    let err = client
        .update_institution(pb::UpdateInstitutionRequest {
            institution: Some(renewed.clone()),
            update_mask: mask(&["pseb_expiry"]),
            request_id: String::new(),
            validate_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let by_admin = app
        .institutions(Some(&app.admin().await))
        .update_institution(pb::UpdateInstitutionRequest {
            institution: Some(renewed.clone()),
            update_mask: mask(&["pseb_expiry"]),
            request_id: String::new(),
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_admin.pseb_expiry, renewed.pseb_expiry);

    let err = app
        .institutions(Some(app.reviewer_token().await))
        .update_institution(pb::UpdateInstitutionRequest {
            institution: Some(updated),
            update_mask: mask(&["contact_phone"]),
            request_id: String::new(),
            validate_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}
