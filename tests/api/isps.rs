//! ISP administration: licensed ISPs are created and listed by
//! administrators, and registrations must name one.

use sqlx::PgPool;
use tonic::Code;
use vpn_registry::pb::{self, InstitutionCategory as C};

use crate::helpers::*;

/// CreateIsp as `token`.
async fn create_isp(app: &TestApp, token: &str, code: &str, name: &str) -> Result<pb::Isp, tonic::Status> {
    let isp = pb::Isp {
        code: code.into(),
        name: name.into(),
        ..Default::default()
    };
    let created = app
        .isps(Some(token))
        .create_isp(pb::CreateIspRequest { isp: Some(isp) })
        .await?;
    Ok(created.into_inner())
}

#[sqlx::test]
async fn administrators_manage_isps_and_registrations_must_name_one(pool: PgPool) {
    let app = spawn_app(pool).await;
    let admin = app.admin().await;
    let created = create_isp(&app, &admin, "Nayatel", "Nayatel (Pvt) Ltd").await.unwrap();
    assert_eq!(created.code, "nayatel");
    let err = create_isp(&app, &admin, "nayatel", "Again").await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let (_, token) = app.enrol(C::Bank).await;
    let err = create_isp(&app, &token, "rogue", "Rogue").await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let listed = app
        .isps(Some(&token))
        .list_isps(pb::ListIspsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.isps.iter().map(|i| i.code.as_str()).collect::<Vec<_>>(),
        ["nayatel", "ptcl"]
    );

    let mut req = submit_request(&["8.8.8.0/24"]);
    req.registration.as_mut().unwrap().isp = "unknown-isp".into();
    let err = app
        .registrations(Some(&token))
        .submit_registration(req)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&err), ["registration.isp"]);

    // The same answer when an amendment (of a pending or of an active
    // registration) names an unknown ISP.
    let pending = app.submit(&token, &["8.8.9.0/24"]).await;
    let active = app.active(&token, &["8.8.10.0/24"]).await;
    for r in [pending, active] {
        let mut changed = r.clone();
        changed.isp = "unknown-isp".into();
        let err = app
            .registrations(Some(&token))
            .amend_registration(amend_request(changed, &["isp"]))
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&err), ["registration.isp"], "{err:?}");
    }
}
