//! HTTP for people and tools on the gRPC port (so it is served over the
//! same TLS, behind the same access log, metrics and limits): RDAP for
//! address lookups, and the web console.

pub mod console;
pub mod rdap;

use std::{
    convert::Infallible,
    task::{Context, Poll},
};

use axum::Router;
use tonic::{body::Body, codegen::http, server::NamedService};
use tower::Service;

/// The console's routes, mounted on the gRPC server at `/console/...`.
#[derive(Clone)]
pub struct ConsoleRoutes(Router);

impl ConsoleRoutes {
    pub fn new(router: Router) -> Self {
        Self(router)
    }
}

impl NamedService for ConsoleRoutes {
    const NAME: &'static str = "console";
}

impl Service<http::Request<Body>> for ConsoleRoutes {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = axum::routing::future::RouteFuture<Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<http::Request<Body>>::poll_ready(&mut self.0, cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        self.0.call(req)
    }
}

/// The RDAP routes, mounted on the gRPC server at `/rdap/...` (tonic routes
/// by the first path segment, as it does for gRPC services).
#[derive(Clone)]
pub struct RdapRoutes(Router);

impl RdapRoutes {
    pub fn new(router: Router) -> Self {
        Self(router)
    }
}

impl NamedService for RdapRoutes {
    const NAME: &'static str = "rdap";
}

impl Service<http::Request<Body>> for RdapRoutes {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = axum::routing::future::RouteFuture<Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<http::Request<Body>>::poll_ready(&mut self.0, cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        self.0.call(req)
    }
}
