//! The permission table, cell by cell, against the real server: every RPC
//! as every role (own and another tenant), without a token, and with an
//! expired one.

use std::time::Duration;

use prost::Message;
use sqlx::PgPool;
use tonic::Code;
use uuid::Uuid;
use vpn_registry::{
    auth::permissions,
    domain::decision::Decision,
    domain::principal::{Role, RoleKind},
    grpc::review::{self, DecisionFields},
    pb::{self, InstitutionCategory as C},
};

use crate::helpers::*;
use crate::raw;

/// What the sample requests refer to.
struct World {
    institution: pb::Institution,
    active: pb::Registration,
    pending: pb::Registration,
}

/// A request for `path` that the right principal may make (it may still be
/// refused for the state the record is in: only authorisation is checked).
fn sample(path: &str, w: &World) -> Vec<u8> {
    let method = path.rsplit('/').next().unwrap();
    let id = w.active.id.clone();
    if let Some(decision) = Decision::by_rpc(path) {
        let fields = DecisionFields {
            id,
            etag: "v1".into(),
            reason_code: pb::ReasonCode::Other as i32,
            reason: "walk".into(),
            ..DecisionFields::default()
        };
        return review::encode(decision, fields);
    }
    match method {
        "CreateInstitution" => pb::CreateInstitutionRequest {
            institution: Some(valid_institution(C::Company)),
            request_id: Uuid::new_v4().to_string(),
            validate_only: false,
        }
        .encode_to_vec(),
        "GetInstitution" => pb::GetInstitutionRequest {
            id: w.institution.id.clone(),
        }
        .encode_to_vec(),
        "ListInstitutions" => pb::ListInstitutionsRequest::default().encode_to_vec(),
        "UpdateInstitution" => {
            let mut changed = w.institution.clone();
            changed.contact_phone = "0300 7654321".into();
            changed.etag.clear();
            pb::UpdateInstitutionRequest {
                institution: Some(changed),
                update_mask: mask(&["contact_phone"]),
                request_id: String::new(),
                validate_only: false,
            }
            .encode_to_vec()
        }
        "SubmitRegistration" => submit_request(&["7.7.7.0/24"]).encode_to_vec(),
        "BatchSubmitRegistrations" => pb::BatchSubmitRegistrationsRequest {
            requests: vec![pb::SubmitRegistrationRequest {
                registration: Some(valid_registration(&["7.7.8.0/24"])),
                ..Default::default()
            }],
            request_id: Uuid::new_v4().to_string(),
            validate_only: false,
        }
        .encode_to_vec(),
        "GetRegistration" => pb::GetRegistrationRequest { id }.encode_to_vec(),
        "ListRegistrations" => pb::ListRegistrationsRequest::default().encode_to_vec(),
        "AmendRegistration" => {
            let mut changed = w.pending.clone();
            changed.purpose = "Amended during the permission walk".into();
            changed.etag.clear();
            amend_request(changed, &["purpose"]).encode_to_vec()
        }
        "WithdrawRegistration" => pb::WithdrawRegistrationRequest {
            id: w.pending.id.clone(),
            ..Default::default()
        }
        .encode_to_vec(),
        "RenewRegistration" => pb::RenewRegistrationRequest {
            id,
            valid_until: Some(ts(time::OffsetDateTime::now_utc() + time::Duration::days(800))),
            ..Default::default()
        }
        .encode_to_vec(),
        "ListRegistrationEvents" => pb::ListRegistrationEventsRequest {
            id,
            ..Default::default()
        }
        .encode_to_vec(),
        "CreateIsp" => pb::CreateIspRequest {
            isp: Some(pb::Isp {
                code: format!("isp-{}", &Uuid::new_v4().simple().to_string()[..8]),
                name: "Walk ISP".into(),
                ..Default::default()
            }),
        }
        .encode_to_vec(),
        "ListIsps" => pb::ListIspsRequest::default().encode_to_vec(),
        "ListPendingAttestations" => pb::ListPendingAttestationsRequest::default().encode_to_vec(),
        "AttestRegistration" => pb::AttestRegistrationRequest {
            id: w.pending.id.clone(),
            etag: "v1".into(),
            confirmed: true,
            ..Default::default()
        }
        .encode_to_vec(),
        "ListReviewQueue" => pb::ListReviewQueueRequest::default().encode_to_vec(),
        "CheckAddress" => pb::CheckAddressRequest {
            address: "8.8.8.8".into(),
            ..Default::default()
        }
        .encode_to_vec(),
        "CheckFlow" => pb::CheckFlowRequest {
            source: "8.8.8.8".into(),
            peer: "185.60.216.1".into(),
            ..Default::default()
        }
        .encode_to_vec(),
        "CheckAddresses" => pb::CheckAddressesRequest {
            addresses: vec!["8.8.8.8".into()],
            ..Default::default()
        }
        .encode_to_vec(),
        "WatchChanges" => pb::WatchChangesRequest::default().encode_to_vec(),
        // Webhooks: an endpoint no one has (NOT_FOUND after authorisation;
        // the webhook tests check tenants).
        "CreateWebhook" => pb::CreateWebhookRequest {
            webhook: Some(pb::Webhook {
                url: "https://hooks.example.pk/vpn".into(),
                ..Default::default()
            }),
        }
        .encode_to_vec(),
        "ListWebhooks" => pb::ListWebhooksRequest::default().encode_to_vec(),
        "ListInstitutionEvents" => pb::ListInstitutionEventsRequest::default().encode_to_vec(),
        "ListNotifications" => pb::ListNotificationsRequest::default().encode_to_vec(),
        "WatchInstitutionEvents" => pb::WatchInstitutionEventsRequest::default().encode_to_vec(),
        "DeleteWebhook" => pb::DeleteWebhookRequest { id: nobody() }.encode_to_vec(),
        "RotateWebhookSecret" => pb::RotateWebhookSecretRequest { id: nobody() }.encode_to_vec(),
        "TestWebhook" => pb::TestWebhookRequest { id: nobody() }.encode_to_vec(),
        "ListWebhookDeliveries" => pb::ListWebhookDeliveriesRequest {
            webhook_id: nobody(),
            ..Default::default()
        }
        .encode_to_vec(),
        "RedeliverWebhook" => pb::RedeliverWebhookRequest {
            delivery_id: "1".into(),
        }
        .encode_to_vec(),
        "CreateApiKey" => pb::CreateApiKeyRequest {
            api_key: Some(pb::ApiKey {
                name: "walk".into(),
                ..Default::default()
            }),
            ttl: None,
        }
        .encode_to_vec(),
        "ListApiKeys" => pb::ListApiKeysRequest::default().encode_to_vec(),
        "RotateApiKey" => pb::RotateApiKeyRequest {
            id: nobody(),
            grace: None,
        }
        .encode_to_vec(),
        "RevokeApiKey" => pb::RevokeApiKeyRequest { id: nobody() }.encode_to_vec(),
        "UploadDocument" => pb::UploadDocumentRequest {
            part: Some(pb::upload_document_request::Part::Header(pb::DocumentHeader {
                registration_id: nobody(),
                institution_id: String::new(),
                r#type: pb::DocumentType::CnicFront as i32,
                file_name: "walk.pdf".into(),
                request_id: Uuid::new_v4().to_string(),
                size_bytes: 100,
                sha256: String::new(),
            })),
        }
        .encode_to_vec(),
        "ListDocuments" => pb::ListDocumentsRequest {
            registration_id: nobody(),
            institution_id: String::new(),
        }
        .encode_to_vec(),
        "DownloadDocument" => pb::DownloadDocumentRequest { id: nobody() }.encode_to_vec(),
        "DeleteDocument" => pb::DeleteDocumentRequest { id: nobody() }.encode_to_vec(),
        "VerifyDocument" => pb::VerifyDocumentRequest {
            id: nobody(),
            status: pb::DocumentStatus::Verified as i32,
            reason: String::new(),
        }
        .encode_to_vec(),
        "ListDocumentViews" => pb::ListDocumentViewsRequest {
            registration_id: id,
            ..Default::default()
        }
        .encode_to_vec(),
        "ListChallans" => pb::ListChallansRequest { registration_id: id }.encode_to_vec(),
        "GetChallan" => pb::GetChallanRequest {
            payment_id: vpn_registry::domain::fees::Psid::issue("1001", 7).to_string(),
        }
        .encode_to_vec(),
        "ConfirmPayment" => pb::ConfirmPaymentRequest {
            payment_id: vpn_registry::domain::fees::Psid::issue("1001", 7).to_string(),
            amount_pkr: 5000,
            transaction_reference: "walk".into(),
        }
        .encode_to_vec(),
        "ConfirmRefund" => pb::ConfirmRefundRequest {
            payment_id: vpn_registry::domain::fees::Psid::issue("1001", 7).to_string(),
            transaction_reference: "walk".into(),
        }
        .encode_to_vec(),
        other => panic!("no sample request for {other}: add one"),
    }
}

/// An id nothing has.
fn nobody() -> String {
    Uuid::now_v7().to_string()
}

/// RPCs on one record: another tenant must find nothing.
const TENANT_SCOPED: &[&str] = &[
    "GetInstitution",
    "UpdateInstitution",
    "GetRegistration",
    "AmendRegistration",
    "WithdrawRegistration",
    "RenewRegistration",
    "ListRegistrationEvents",
    "AttestRegistration",
    "ListChallans",
    "ListDocumentViews",
];

#[sqlx::test]
async fn every_cell_of_the_permission_table_holds(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.add_isp("nayatel").await;
    let (institution, own) = app.enrol(C::Bank).await;
    // Keys are managed by key managers of a role (owners); the rest of the
    // role is refused them (see api_keys.rs).
    let own_manager = app
        .key_manager(Role::Institution(institution.id.parse().unwrap()))
        .await;
    let (_, other) = app.enrol(C::Bank).await;
    let active = app.active(&own, &["8.8.8.0/24"]).await;
    let pending = app.submit(&own, &["9.9.9.0/24"]).await;
    let world = World {
        institution,
        active,
        pending,
    };
    let admin = app.admin().await;
    let reviewer = app.reviewer_token().await.to_owned();
    let isp = app.isp_token().await.to_owned();
    let other_isp = app.token(Role::Isp("nayatel".parse().unwrap())).await;
    let lookup = app.token(Role::Lookup).await;
    let payments = app.token(Role::Payments).await;
    let (_, expired) = app.token_with(Role::Admin, Duration::ZERO, None).await;
    let isp_manager = app.key_manager(Role::Isp("ptcl".parse().unwrap())).await;
    let principals: [(RoleKind, &str, Option<&str>); 6] = [
        (RoleKind::Admin, &admin, None),
        (RoleKind::Reviewer, &reviewer, None),
        (RoleKind::Isp, &isp, Some(&other_isp)),
        (RoleKind::Lookup, &lookup, None),
        (RoleKind::Institution, &own, Some(&other)),
        (RoleKind::Payments, &payments, None),
    ];

    let rows: Vec<_> = permissions::rows().collect();
    let mut cells = 0;
    for &(path, allowed) in &rows {
        let method = path.rsplit('/').next().unwrap();
        for (role, token, other_tenant) in principals {
            let token = match (permissions::for_key_managers(path), role) {
                (true, RoleKind::Institution) => own_manager.as_str(),
                (true, RoleKind::Isp) => isp_manager.as_str(),
                _ => token,
            };
            let answer = raw::call(&app.channel, path, Some(token), sample(path, &world)).await;
            cells += 1;
            if allowed.contains(&role) {
                if let Err(e) = &answer {
                    assert!(
                        !matches!(e.code(), Code::PermissionDenied | Code::Unauthenticated),
                        "{role} was refused {method}: {e:?}"
                    );
                }
                let Some(other_tenant) = other_tenant else { continue };
                let theirs = raw::call(&app.channel, path, Some(other_tenant), sample(path, &world)).await;
                if TENANT_SCOPED.contains(&method) {
                    assert_eq!(
                        theirs.as_ref().map_err(|e| e.code()).err(),
                        Some(Code::NotFound),
                        "another {role} reached {method}"
                    );
                } else if method == "CheckAddress" {
                    let found = pb::CheckResult::decode(&theirs.unwrap()[..]).unwrap();
                    assert!(!found.registered, "another {role} saw the registration");
                }
            } else {
                assert_eq!(
                    answer.map_err(|e| e.code()).err(),
                    Some(Code::PermissionDenied),
                    "{role} called {method}"
                );
            }
        }
        for token in [None, Some(expired.as_str())] {
            let answer = raw::call(&app.channel, path, token, sample(path, &world)).await;
            assert_eq!(
                answer.map_err(|e| e.code()).err(),
                Some(Code::Unauthenticated),
                "{method} with {token:?}"
            );
            cells += 1;
        }
    }
    assert_eq!(cells, rows.len() * 8);
}
