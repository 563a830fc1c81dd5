//! The server-wide cap on calls handled at once: a call beyond it is
//! refused at once with RESOURCE_EXHAUSTED (and a retry hint), never queued,
//! except health checks, which are never refused for load.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use tonic::{Code, Status, body::Body, codegen::http};
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};

/// Paths admitted whatever the load.
const NEVER_SHED: &str = "/grpc.health.v1.Health/";
/// When a shed call is told to retry.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// At most `max` calls at once (health checks besides).
#[derive(Clone)]
pub struct AdmissionLayer {
    in_flight: Arc<AtomicUsize>,
    max: usize,
}

impl AdmissionLayer {
    pub fn new(max: usize) -> Self {
        Self {
            in_flight: Arc::default(),
            max,
        }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Admission {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`AdmissionLayer`] wraps.
#[derive(Clone)]
pub struct Admission<S> {
    inner: S,
    layer: AdmissionLayer,
}

/// One admitted call, counted until its response is ready.
struct Admitted(Arc<AtomicUsize>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> Service<http::Request<B>> for Admission<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // The inner service is called here, not in a future, so the one
        // poll_ready readied is the one called: no clone per call.
        if req.uri().path().starts_with(NEVER_SHED) {
            return Box::pin(self.inner.call(req));
        }
        let before = self.layer.in_flight.fetch_add(1, Ordering::Relaxed);
        let admitted = Admitted(self.layer.in_flight.clone());
        if before >= self.layer.max {
            drop(admitted);
            let status = Status::with_error_details(
                Code::ResourceExhausted,
                "the server is at its limit of calls in flight; retry shortly or elsewhere",
                ErrorDetails::with_retry_info(Some(RETRY_AFTER)),
            );
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await;
            drop(admitted);
            response
        })
    }
}
