//! ApiKeyService over gRPC: an organisation's key managers make, list,
//! rotate and revoke its keys; the keys act in the organisation's role and
//! scope; members and other tenants are refused.

use std::time::Duration;

use sqlx::PgPool;
use tonic::Code;

use crate::helpers::*;
use vpn_registry::domain::principal::Role;
use vpn_registry::pb::{self, InstitutionCategory as C};

fn create(name: &str, ttl: Option<Duration>) -> pb::CreateApiKeyRequest {
    pb::CreateApiKeyRequest {
        api_key: Some(pb::ApiKey {
            name: name.into(),
            ..Default::default()
        }),
        ttl: ttl.map(|d| d.try_into().unwrap()),
    }
}

/// Whether `token` is accepted (a call its role may make).
async fn works(app: &TestApp, token: &str, institution: &str) -> bool {
    let answer = app
        .institutions(Some(token))
        .get_institution(pb::GetInstitutionRequest { id: institution.into() })
        .await;
    match answer {
        Ok(_) => true,
        Err(s) if s.code() == Code::Unauthenticated => false,
        Err(s) => panic!("unexpected {s:?}"),
    }
}

#[sqlx::test]
async fn an_owners_key_works_in_its_scope_rotates_and_stops_when_revoked(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (institution, _) = app.enrol(C::ItCompany).await;
    let owner = app
        .key_manager(Role::Institution(institution.id.parse().unwrap()))
        .await;
    let made = app
        .api_keys(Some(&owner))
        .create_api_key(create("core-banking", None))
        .await
        .unwrap()
        .into_inner();
    assert!(made.secret.starts_with("vpr_"), "the secret is shown once");
    let year = made.expire_time.unwrap().seconds - made.create_time.unwrap().seconds;
    assert!(
        (364 * 86_400..=366 * 86_400).contains(&year),
        "a year by default: {year}"
    );
    app.wait_until_known(&made.secret).await;
    let id = institution.id.clone();
    assert!(works(&app, &made.secret, &id).await);
    // The key is the institution's: it sees its own records only.
    let (other, _) = app.enrol(C::Bank).await;
    let theirs = app
        .institutions(Some(&made.secret))
        .get_institution(pb::GetInstitutionRequest { id: other.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(theirs.code(), Code::NotFound);

    let listed = app
        .api_keys(Some(&owner))
        .list_api_keys(pb::ListApiKeysRequest::default())
        .await
        .unwrap()
        .into_inner()
        .api_keys;
    let shown = listed.iter().find(|k| k.id == made.id).expect("listed");
    assert_eq!(shown.name, "core-banking");
    assert!(shown.secret.is_empty(), "never listed with its secret");

    let rotated = app
        .api_keys(Some(&owner))
        .rotate_api_key(pb::RotateApiKeyRequest {
            id: made.id.clone(),
            grace: Some(Duration::from_secs(600).try_into().unwrap()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (rotated.rotated_from.as_str(), rotated.name.as_str()),
        (made.id.as_str(), "core-banking")
    );
    app.wait_until_known(&rotated.secret).await;
    assert!(works(&app, &rotated.secret, &id).await);
    assert!(
        works(&app, &made.secret, &id).await,
        "the old secret works during the grace period"
    );

    let revoked = app
        .api_keys(Some(&owner))
        .revoke_api_key(pb::RevokeApiKeyRequest { id: rotated.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.revoke_time.is_some());
    eventually("the revoked key stops working", Duration::from_secs(5), || async {
        (!works(&app, &rotated.secret, &id).await).then_some(())
    })
    .await;
    let again = app
        .api_keys(Some(&owner))
        .revoke_api_key(pb::RevokeApiKeyRequest { id: rotated.id })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
}

#[sqlx::test]
async fn members_other_tenants_and_overlong_keys_are_refused(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (institution, member) = app.enrol(C::Freelancer).await;
    let refused = app
        .api_keys(Some(&member))
        .create_api_key(create("mine", None))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Code::PermissionDenied,
        "a plain institution key manages no keys"
    );

    let owner = app
        .key_manager(Role::Institution(institution.id.parse().unwrap()))
        .await;
    let too_long = app
        .api_keys(Some(&owner))
        .create_api_key(create("forever", Some(Duration::from_secs(400 * 86_400))))
        .await
        .unwrap_err();
    assert_eq!(too_long.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&too_long), ["ttl"]);
    let unnamed = app
        .api_keys(Some(&owner))
        .create_api_key(create(" ", None))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&unnamed), ["api_key.name"]);

    let mine = app
        .api_keys(Some(&owner))
        .create_api_key(create("mine", Some(Duration::from_secs(86_400))))
        .await
        .unwrap()
        .into_inner();
    let (other, _) = app.enrol(C::ItCompany).await;
    let other_owner = app.key_manager(Role::Institution(other.id.parse().unwrap())).await;
    let theirs = app
        .api_keys(Some(&other_owner))
        .revoke_api_key(pb::RevokeApiKeyRequest { id: mine.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(theirs.code(), Code::NotFound, "another institution's key is not found");
    let listed = app
        .api_keys(Some(&other_owner))
        .list_api_keys(pb::ListApiKeysRequest::default())
        .await
        .unwrap()
        .into_inner()
        .api_keys;
    assert!(listed.iter().all(|k| k.id != mine.id));

    // ISP desks manage their gateways' keys the same way.
    let isp_owner = app.key_manager(Role::Isp("ptcl".parse().unwrap())).await;
    let gateway = app
        .api_keys(Some(&isp_owner))
        .create_api_key(create("gateway-khi-1", None))
        .await
        .unwrap()
        .into_inner();
    app.wait_until_known(&gateway.secret).await;
    let pending = app
        .isps(Some(&gateway.secret))
        .list_pending_attestations(pb::ListPendingAttestationsRequest::default())
        .await;
    assert!(pending.is_ok(), "{pending:?}");
}
