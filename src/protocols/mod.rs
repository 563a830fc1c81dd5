//! The other ways in to the same RPCs, on the same port: the Connect
//! protocol's unary calls (JSON or protobuf over HTTP/1.1 or HTTP/2, for
//! back offices that start with curl or sit behind proxies that pass only
//! HTTP/1.1) and gRPC-Web (browsers, .NET's `GrpcWebHandler`). Each is
//! turned into a gRPC call in front of the server's layers, so the access
//! log, metrics, admission, authentication, permissions, rate limits and
//! handlers are the ones gRPC calls meet.

pub mod connect;
pub mod connect_error;
pub mod cors;
pub mod deprecation;
pub mod schema;

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use tonic::{body::Body, codegen::http};
use tonic_web::GrpcWebLayer;
use tower::{Layer, Service};

use connect::Format;

/// How a call arrived, for the access log (absent: gRPC itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Connect,
    GrpcWeb,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::GrpcWeb => "grpc-web",
        }
    }
}

/// Translates Connect and gRPC-Web calls to gRPC; everything else passes.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProtocolsLayer;

impl<S> Layer<S> for ProtocolsLayer {
    type Service = Protocols<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Protocols { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Protocols<S> {
    inner: S,
}

/// What a request is, by its content type and path.
enum Kind {
    GrpcWeb,
    Connect(Format),
    Other,
}

fn kind<B>(req: &http::Request<B>) -> Kind {
    let Some(content_type) = req.headers().get(http::header::CONTENT_TYPE) else {
        return Kind::Other;
    };
    if content_type.as_bytes().starts_with(b"application/grpc-web") {
        return Kind::GrpcWeb;
    }
    match Format::of(content_type) {
        // RPC paths are `/package.Service/Method`; the web routes
        // (`/rdap/...`, `/console/...`) have no dot in their first segment.
        Some(format) if is_rpc_path(req.uri().path()) => Kind::Connect(format),
        _ => Kind::Other,
    }
}

fn is_rpc_path(path: &str) -> bool {
    let mut segments = path.strip_prefix('/').unwrap_or("").split('/');
    matches!(
        (segments.next(), segments.next(), segments.next()),
        (Some(service), Some(method), None) if service.contains('.') && !method.is_empty()
    )
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S> Service<http::Request<Body>> for Protocols<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        match kind(&req) {
            Kind::Other => Box::pin(self.inner.call(req)),
            Kind::GrpcWeb => {
                req.extensions_mut().insert(Protocol::GrpcWeb);
                // The service readied by poll_ready is the one called.
                let fresh = self.inner.clone();
                let readied = std::mem::replace(&mut self.inner, fresh);
                Box::pin(GrpcWebLayer::new().layer(readied).call(req))
            }
            Kind::Connect(format) => {
                let path = req.uri().path().to_owned();
                // A request Connect cannot carry is still a call: refused by
                // its handler (after authentication), counted and logged.
                let refused = connect::refusal(&req, &path);
                req.extensions_mut().insert(Protocol::Connect);
                let unary = schema::unary(&path);
                let retiring = deprecation::headers(&path);
                let call = self.inner.call(connect::to_grpc(req, format, unary, refused));
                Box::pin(async move {
                    let mut response = connect::to_connect(call.await?, format, unary).await;
                    response.headers_mut().extend(retiring.unwrap_or_default());
                    Ok(response)
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_paths_are_told_from_web_routes() {
        assert!(is_rpc_path("/vpnregistry.v1.RegistrationService/SubmitRegistration"));
        assert!(is_rpc_path("/vpnregistry.v1.Nothing/Here"));
        assert!(!is_rpc_path("/rdap/ip/192.0.2.1"));
        assert!(!is_rpc_path("/console/registrations"));
        assert!(!is_rpc_path("/vpnregistry.v1.RegistrationService/"));
        assert!(!is_rpc_path("/vpnregistry.v1.RegistrationService/A/B"));
        assert!(!is_rpc_path("/"));
    }
}
