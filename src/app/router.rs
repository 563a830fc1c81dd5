//! The tonic server: transport settings, the layers every call passes, and
//! the services (all of them, or a fan-out replica's lookups only).

use std::time::Duration;

use tonic::transport::{Server, server::Router};
use tonic_health::pb::health_server::{Health, HealthServer};
use tower::{
    ServiceBuilder,
    layer::util::{Identity, Stack},
    util::Either,
};
use tower_http::cors::CorsLayer;

use super::Options;
use super::background::Parts;
use crate::admission::AdmissionLayer;
use crate::auth::AuthLayer;
use crate::grpc::{
    api_keys::ApiKeyApi, documents::DocumentApi, events::EventApi, institutions::InstitutionApi, isps::IspApi,
    lookup::LookupApi, payments::PaymentApi, registrations::RegistrationApi, review::ReviewApi, webhooks::WebhookApi,
};
use crate::observe::ObserveLayer;
use crate::pb::{
    self, api_key_service_server::ApiKeyServiceServer, document_service_server::DocumentServiceServer,
    event_service_server::EventServiceServer, institution_service_server::InstitutionServiceServer,
    isp_service_server::IspServiceServer, lookup_service_server::LookupServiceServer,
    payment_service_server::PaymentServiceServer, registration_service_server::RegistrationServiceServer,
    review_service_server::ReviewServiceServer, webhook_service_server::WebhookServiceServer,
};
use crate::protocols::ProtocolsLayer;
use crate::registry::{Registry, documents::Documents};
use crate::web::{self, ApiRoutes, ConsoleRoutes, RdapRoutes, landing::LandingLayer};

/// Largest request the registry services decode: a registration with 64
/// prefixes and every text field full is a few kilobytes.
const MAX_REGISTRY_REQUEST: usize = 256 * 1024;
/// A document's content arrives in chunks of at most this (the stream as a
/// whole is bounded by --max-document-bytes).
const MAX_DOCUMENT_CHUNK: usize = 1024 * 1024;
/// Largest lookup request: a full CheckAddresses batch of 100,000 IPv6
/// addresses in their longest text form is about 4.1 MB.
const MAX_LOOKUP_REQUEST: usize = 6 * 1024 * 1024;
/// Largest response: a 100,000-address answer with every address registered.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;
/// HTTP/2 header block limit (tokens and request ids are short).
const MAX_HEADER_LIST: u32 = 16 * 1024;
/// The layers every call passes, outermost last in the type (tower's order).
pub(super) type Layers = Stack<
    Stack<
        AuthLayer,
        Stack<
            AdmissionLayer,
            Stack<
                ObserveLayer,
                Stack<ProtocolsLayer, Stack<Either<CorsLayer, Identity>, Stack<LandingLayer, Identity>>>,
            >,
        >,
    >,
    Identity,
>;
/// The tonic server: transport settings, the layers (outermost first) and
/// every service (a fan-out replica serves lookups only: UNIMPLEMENTED for
/// the rest).
pub(super) fn router<H: Health>(
    options: &Options,
    parts: Parts,
    health: HealthServer<H>,
) -> anyhow::Result<Router<Layers>> {
    let serves_registry = parts.upstream.is_none();
    let Parts {
        registry,
        lookups,
        upstream,
        auth,
        metrics,
        summary,
        accounts,
    } = parts;
    let rdap = RdapRoutes::new(web::rdap::router(
        lookups.clone(),
        auth.clone(),
        options.public_url.clone(),
    ));
    let console = ConsoleRoutes::new(web::console::router(
        registry.clone(),
        documents(&registry, options),
        auth.clone(),
        accounts,
        options.tls.is_some(),
        options.public_url.clone(),
    ));
    let router = Server::builder()
        // HTTP/1.1 too, for RDAP clients, Connect and gRPC-Web (gRPC stays
        // on HTTP/2).
        .accept_http1(true)
        .max_concurrent_streams(options.max_concurrent_streams)
        .http2_keepalive_interval(Some(options.keepalive_interval))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .max_connection_age(options.max_connection_age)
        .max_connection_age_grace(options.max_connection_age_grace)
        .http2_max_header_list_size(MAX_HEADER_LIST)
        .tcp_nodelay(true)
        // Outermost first: every call is counted and logged, then beyond
        // the limit answered at once rather than queued.
        .layer(
            ServiceBuilder::new()
                // A browser at `/` or `/console/` is sent to the console.
                .layer(LandingLayer {
                    console: serves_registry,
                })
                // Browsers' preflights for the origins allowed (none by default).
                .option_layer(crate::protocols::cors::layer(&options.cors_origins))
                // Connect and gRPC-Web calls become gRPC calls here.
                .layer(ProtocolsLayer)
                .layer(ObserveLayer::new(metrics, summary))
                .layer(AdmissionLayer::new(options.max_concurrent_requests))
                .layer(auth)
                .into_inner(),
        )
        .add_service(health)
        .add_service(rdap)
        .add_service(ApiRoutes::new(web::api::router()))
        .add_optional_service(serves_registry.then_some(console))
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(
            LookupServiceServer::new(LookupApi::new(lookups, upstream))
                .max_decoding_message_size(MAX_LOOKUP_REQUEST)
                .max_encoding_message_size(MAX_RESPONSE),
        );
    let registry = serves_registry.then_some(&registry);
    Ok(with_registry_services(router, registry, options))
}

/// The registry's services (none on a fan-out replica: UNIMPLEMENTED), each
/// with the registry's message size limits.
fn with_registry_services(router: Router<Layers>, registry: Option<&Registry>, options: &Options) -> Router<Layers> {
    let webhook_allow_private = options.webhook_allow_private;
    macro_rules! limited {
        ($server:ident, $api:expr) => {
            registry.map(|r| {
                $server::new($api(r.clone()))
                    .max_decoding_message_size(MAX_REGISTRY_REQUEST)
                    .max_encoding_message_size(MAX_RESPONSE)
            })
        };
    }
    router
        .add_optional_service(limited!(InstitutionServiceServer, InstitutionApi::new))
        .add_optional_service(limited!(RegistrationServiceServer, RegistrationApi::new))
        .add_optional_service(limited!(ReviewServiceServer, ReviewApi::new))
        .add_optional_service(limited!(EventServiceServer, EventApi::new))
        .add_optional_service(limited!(IspServiceServer, IspApi::new))
        .add_optional_service(limited!(ApiKeyServiceServer, ApiKeyApi::new))
        .add_optional_service(limited!(PaymentServiceServer, PaymentApi::new))
        .add_optional_service(registry.map(|r| {
            DocumentServiceServer::new(DocumentApi::new(documents(r, options)))
                .max_decoding_message_size(MAX_DOCUMENT_CHUNK + 1024)
                .max_encoding_message_size(MAX_RESPONSE)
        }))
        .add_optional_service(limited!(WebhookServiceServer, |r| WebhookApi::new(
            r,
            webhook_allow_private
        )))
}

/// Documents as the options keep them.
fn documents(registry: &Registry, options: &Options) -> Documents {
    Documents::new(
        registry.clone(),
        options.document_keys.clone(),
        options.max_document_bytes,
    )
}

/// Server reflection over our descriptors and health's.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}
