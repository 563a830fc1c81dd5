//! HTTP for people and tools on the gRPC port (so it is served over the
//! same TLS, behind the same access log, metrics and limits): RDAP for
//! address lookups, the web console, and the API reference.

pub mod api;
pub mod console;
pub mod landing;
pub mod rdap;

use std::{
    convert::Infallible,
    marker::PhantomData,
    task::{Context, Poll},
};

use axum::Router;
use tonic::{body::Body, codegen::http, server::NamedService};
use tower::Service;

/// Where a set of routes is mounted: tonic routes by the first path
/// segment, as it does for gRPC services (`/{NAME}/...`).
pub trait Mount {
    const NAME: &'static str;
}

/// An axum router mounted on the gRPC server at `/{M::NAME}/...`.
pub struct Mounted<M>(Router, PhantomData<M>);

impl<M> Mounted<M> {
    pub fn new(router: Router) -> Self {
        Self(router, PhantomData)
    }
}

impl<M> Clone for Mounted<M> {
    fn clone(&self) -> Self {
        Self::new(self.0.clone())
    }
}

impl<M: Mount> NamedService for Mounted<M> {
    const NAME: &'static str = M::NAME;
}

impl<M> Service<http::Request<Body>> for Mounted<M> {
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

/// `/rdap/...`
pub struct AtRdap;

impl Mount for AtRdap {
    const NAME: &'static str = "rdap";
}

/// `/console/...`
pub struct AtConsole;

impl Mount for AtConsole {
    const NAME: &'static str = "console";
}

/// `/api/...`
pub struct AtApi;

impl Mount for AtApi {
    const NAME: &'static str = "api";
}

pub type ApiRoutes = Mounted<AtApi>;
pub type RdapRoutes = Mounted<AtRdap>;
pub type ConsoleRoutes = Mounted<AtConsole>;
