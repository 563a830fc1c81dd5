//! gRPC-Web on the gRPC port (HTTP/1.1, as a browser or .NET's
//! GrpcWebHandler behind a proxy sends it): the same answers as gRPC, and
//! errors with their details in the trailers.

use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use sqlx::PgPool;
use tonic_web::GrpcWebClientLayer;
use vpn_registry::pb::{self, InstitutionCategory as C, registration_service_client::RegistrationServiceClient};

use crate::connect::{comparable, submission};
use crate::helpers::*;

/// A RegistrationService client speaking gRPC-Web over HTTP/1.1.
fn grpc_web_client(
    app: &TestApp,
) -> RegistrationServiceClient<
    tonic_web::GrpcWebClientService<
        Client<hyper_util::client::legacy::connect::HttpConnector, tonic_web::GrpcWebCall<tonic::body::Body>>,
    >,
> {
    let http1 = Client::builder(TokioExecutor::new()).build_http();
    let service = tower::ServiceBuilder::new()
        .layer(GrpcWebClientLayer::new())
        .service(http1);
    RegistrationServiceClient::with_origin(service, format!("http://{}", app.addr).parse().unwrap())
}

fn authorised<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[sqlx::test]
async fn grpc_web_submits_what_grpc_submits_and_refuses_alike(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Company).await;
    let mut web = grpc_web_client(&app);

    let over_grpc = app.submit_as(&token, submission("grpc-1", "81.2.69.0/24")).await;
    let over_web = web
        .submit_registration(authorised(submission("web-1", "81.2.70.0/24"), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(over_web.source_prefixes, ["81.2.70.0/24"]);
    assert_eq!(comparable(over_web), comparable(over_grpc));

    // A refusal: the same code and field violations as over gRPC.
    let mut bad = submission("web-2", "10.1.2.0/24");
    bad.registration
        .as_mut()
        .unwrap()
        .source_prefixes
        .push("not-a-prefix".into());
    let over_web = web
        .submit_registration(authorised(bad.clone(), &token))
        .await
        .unwrap_err();
    let over_grpc = app
        .registrations(Some(&token))
        .submit_registration(bad)
        .await
        .unwrap_err();
    assert_eq!(over_web.code(), tonic::Code::InvalidArgument);
    assert_eq!(over_web.code(), over_grpc.code());
    assert_eq!(violated_fields(&over_web), violated_fields(&over_grpc));
    assert_eq!(violated_fields(&over_web).len(), 2);

    // No token.
    let status = web
        .get_registration(pb::GetRegistrationRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
}

/// The CORS headers curl saw for `method` with `Origin: origin`.
async fn cors(app: &TestApp, method: &str, origin: &str) -> Vec<(String, String)> {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-D", "-", "-X", method])
        .args([
            "-H",
            &format!("origin: {origin}"),
            "-H",
            "content-type: application/json",
        ])
        .args(["-H", "access-control-request-method: POST"])
        .args([
            "-H",
            "access-control-request-headers: authorization,content-type,x-grpc-web",
        ])
        .args(["--data-binary", "{}"])
        .arg(format!(
            "http://{}/vpnregistry.v1.RegistrationService/GetRegistration",
            app.addr
        ))
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .filter(|(n, _)| n.starts_with("access-control-"))
        .collect()
}

#[sqlx::test]
async fn browsers_on_the_origins_named_may_call_and_others_may_not(pool: PgPool) {
    let portal = "https://portal.example.pk";
    let app = TestApp::builder(pool.clone())
        .options(|o| o.cors_origins = vec![portal.into()])
        .start()
        .await;
    let get =
        |headers: &[(String, String)], name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    // The preflight is answered without a token.
    let preflight = cors(&app, "OPTIONS", portal).await;
    assert_eq!(get(&preflight, "access-control-allow-origin").as_deref(), Some(portal));
    let allowed = get(&preflight, "access-control-allow-headers").unwrap();
    assert!(
        allowed.contains("authorization") && allowed.contains("x-grpc-web"),
        "{allowed}"
    );
    // The call itself (refused: no token) tells the page what it may read.
    let call = cors(&app, "POST", portal).await;
    assert_eq!(get(&call, "access-control-allow-origin").as_deref(), Some(portal));
    assert!(
        get(&call, "access-control-expose-headers")
            .unwrap()
            .contains("grpc-status-details-bin")
    );
    // Another origin, and a server that names none.
    assert_eq!(
        get(
            &cors(&app, "OPTIONS", "https://elsewhere.example").await,
            "access-control-allow-origin"
        ),
        None
    );
    let closed = spawn_app(pool).await;
    assert!(cors(&closed, "OPTIONS", portal).await.is_empty());
}
