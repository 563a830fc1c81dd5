//! A tower layer in front of every gRPC service: health checks and reflection
//! pass freely, everything else needs a valid bearer token.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use tonic::{Status, body::Body, codegen::http};
use tower::{Layer, Service};

use super::{credentials::Credentials, token};
use std::sync::Arc;

/// Paths that answer without credentials.
const PUBLIC_PREFIXES: &[&str] = &["/grpc.health.v1.Health/", "/grpc.reflection."];

/// Resolves `authorization: Bearer <token>` against the credentials held in memory.
#[derive(Clone)]
pub struct AuthLayer {
    credentials: Arc<Credentials>,
}

impl AuthLayer {
    pub fn new(credentials: Arc<Credentials>) -> Self {
        Self { credentials }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            credentials: self.credentials.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around the router.
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    credentials: Arc<Credentials>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> Service<http::Request<B>> for Auth<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The clone is not ready yet; take the one that is (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let credentials = self.credentials.clone();
        Box::pin(async move {
            let path = req.uri().path();
            if PUBLIC_PREFIXES.iter().any(|p| path.starts_with(p)) {
                return inner.call(req).await;
            }
            match authenticate(&credentials, req.headers()).await {
                Ok(principal) => {
                    req.extensions_mut().insert(principal);
                    inner.call(req).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

async fn authenticate(
    credentials: &Credentials,
    headers: &http::HeaderMap,
) -> Result<Arc<crate::domain::principal::Principal>, Status> {
    let value = headers
        .get(http::header::AUTHORIZATION)
        .ok_or_else(|| Status::unauthenticated("missing authorization metadata (Bearer token)"))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <token>`"))?;
    match credentials.principal(&token::hash(token)).await {
        Ok(Some(principal)) => Ok(principal),
        Ok(None) => Err(Status::unauthenticated("unknown or revoked token")),
        Err(e) => {
            tracing::error!(error = %e, "credential lookup failed");
            Err(Status::unavailable("credential store unavailable"))
        }
    }
}
