use sqlx::PgPool;
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
use vpn_registry::domain::principal::Role;
use vpn_registry::pb;

use crate::helpers::*;

#[sqlx::test]
async fn calls_without_a_token_are_unauthenticated(pool: PgPool) {
    let app = spawn_app(pool).await;
    let err = app
        .institutions(None)
        .list_institutions(pb::ListInstitutionsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let err = app
        .registrations(Some("vpr_not-a-real-token"))
        .list_registrations(pb::ListRegistrationsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
}

#[sqlx::test]
async fn a_revoked_token_is_unauthenticated(pool: PgPool) {
    let app = spawn_app(pool).await;
    let admin = app.admin().await;
    let mut client = app.institutions(Some(&admin));
    client
        .list_institutions(pb::ListInstitutionsRequest::default())
        .await
        .unwrap();

    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM api_tokens WHERE role = 'admin'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    vpn_registry::operator::revoke(&app.pool, id, "test").await.unwrap();

    // Servers hold credentials in memory; the revocation reaches them through
    // a notification, within moments.
    let err = eventually(
        "the revoked token is refused",
        std::time::Duration::from_secs(5),
        || {
            let mut client = client.clone();
            async move {
                client
                    .list_institutions(pb::ListInstitutionsRequest::default())
                    .await
                    .err()
            }
        },
    )
    .await;
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(
        vpn_registry::operator::revoke(&app.pool, id, "test").await.is_err(),
        "revoking twice must fail"
    );
}

#[sqlx::test]
async fn health_reports_serving_without_credentials(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut health = HealthClient::new(app.channel.clone());
    // The probe flips to SERVING right after start; wait for it through Watch.
    let mut stream = health
        .watch(HealthCheckRequest {
            service: "vpnregistry.v1.RegistrationService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    loop {
        let status = stream.message().await.unwrap().unwrap().status;
        if status == ServingStatus::Serving as i32 {
            break;
        }
    }
    let overall = health
        .check(HealthCheckRequest { service: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(overall.status, ServingStatus::Serving as i32);
}

#[sqlx::test]
async fn reflection_lists_the_services_without_credentials(pool: PgPool) {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let app = spawn_app(pool).await;
    let mut client = ServerReflectionClient::new(app.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer {response:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "vpnregistry.v1.InstitutionService",
        "vpnregistry.v1.RegistrationService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }
}

#[sqlx::test]
async fn lookup_and_isp_principals_may_not_call_registry_services(pool: PgPool) {
    let app = spawn_app(pool).await;
    for role in [Role::Lookup, Role::Isp("ptcl".parse().unwrap())] {
        let token = app.token(role).await;
        let err = app
            .institutions(Some(&token))
            .list_institutions(pb::ListInstitutionsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        let err = app
            .registrations(Some(&token))
            .submit_registration(submit_request(&["8.8.8.0/24"]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        let err = app
            .registrations(Some(&token))
            .get_registration(pb::GetRegistrationRequest {
                id: uuid::Uuid::now_v7().to_string(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
    }
}

#[sqlx::test]
async fn institutions_and_reviewers_may_not_enrol_institutions(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, inst_token) = app.enrol(pb::InstitutionCategory::Bank).await;
    let reviewer = app.reviewer_token().await.to_owned();
    for token in [inst_token, reviewer] {
        let err = app
            .institutions(Some(&token))
            .create_institution(pb::CreateInstitutionRequest {
                institution: Some(valid_institution(pb::InstitutionCategory::Company)),
                request_id: "r-1".into(),
                validate_only: false,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
    }
    assert_eq!(app.count("institutions").await, 1);
}
