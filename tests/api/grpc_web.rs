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
