//! Where a browser lands: `/`, `/console` and `/console/` (paths tonic
//! cannot route: it mounts services at `/{name}/{*rest}`) redirect to the
//! console, which signs people in; without this a newcomer following the
//! README saw an empty gRPC answer. `/api/` shows the API reference. Outermost on the server, so that gRPC
//! calls pay one short path comparison and nothing else.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tonic::{body::Body, codegen::http};
use tower::{Layer, Service};

/// Where the landing paths send a browser (it signs in, or goes home).
const CONSOLE_HOME: &str = "/console/home";
/// What `/api/` shows.
const API_REFERENCE: &str = "/api/reference";

/// Redirects the landing paths when this server has a console.
#[derive(Clone, Copy)]
pub struct LandingLayer {
    pub console: bool,
}

impl<S> Layer<S> for LandingLayer {
    type Service = Landing<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Landing {
            inner,
            console: self.console,
        }
    }
}

#[derive(Clone)]
pub struct Landing<S> {
    inner: S,
    console: bool,
}

/// Whether `req` is a browser arriving at the front door.
fn landing<B>(req: &http::Request<B>) -> bool {
    matches!(req.uri().path(), "/" | "/console" | "/console/")
        && matches!(*req.method(), http::Method::GET | http::Method::HEAD)
}

impl<S> Service<http::Request<Body>> for Landing<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = LandingFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        if matches!(req.uri().path(), "/api" | "/api/") {
            // The API reference's page, under a path tonic can route.
            *req.uri_mut() = http::Uri::from_static(API_REFERENCE);
        }
        if self.console && landing(&req) {
            let mut response = http::Response::new(Body::empty());
            *response.status_mut() = http::StatusCode::SEE_OTHER;
            response
                .headers_mut()
                .insert(http::header::LOCATION, http::HeaderValue::from_static(CONSOLE_HOME));
            return LandingFuture::Redirect {
                response: Some(response),
            };
        }
        LandingFuture::Inner {
            inner: self.inner.call(req),
        }
    }
}

pin_project_lite::pin_project! {
    /// The redirect, ready at once, or the inner service's answer.
    #[project = LandingProj]
    pub enum LandingFuture<F> {
        Redirect { response: Option<http::Response<Body>> },
        Inner { #[pin] inner: F },
    }
}

impl<F, E> Future for LandingFuture<F>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = Result<http::Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            LandingProj::Redirect { response } => Poll::Ready(Ok(response
                .take()
                .expect("a landing future is polled after it finished"))),
            LandingProj::Inner { inner } => inner.poll(cx),
        }
    }
}
