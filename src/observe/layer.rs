//! The outermost tower layer: every call, whatever answers it (a handler,
//! the auth layer, load shedding), is counted in the grpc-prometheus series
//! and gets one access-log event when it ends: method, caller (token id and
//! role, never the secret), peer, status code, latency, request id. Writes
//! and decisions log at info; lookups, health checks and reflection at
//! debug, lookups summarised every interval instead.

use std::{
    net::IpAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use http_body::{Body as HttpBody, Frame};
use tonic::{Status, body::Body, codegen::http};
use tower::{Layer, Service};
use tracing::Instrument as _;
use uuid::Uuid;

use super::methods::{self, Method};
use super::metrics::{CODE_NAMES, Metrics};
use super::summary::LookupSummary;
use crate::auth::Caller;
use crate::protocols::Protocol;

/// Counts and logs every call.
#[derive(Clone)]
pub struct ObserveLayer {
    /// One pointer, as every call holds a copy until it ends.
    sinks: Arc<Sinks>,
}

/// Where calls are counted.
struct Sinks {
    metrics: Arc<Metrics>,
    lookups: Arc<LookupSummary>,
}

impl ObserveLayer {
    pub fn new(metrics: Arc<Metrics>, lookups: Arc<LookupSummary>) -> Self {
        Self {
            sinks: Arc::new(Sinks { metrics, lookups }),
        }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`ObserveLayer`] wraps around the others.
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    layer: ObserveLayer,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> Service<http::Request<B>> for Observe<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Send + 'static,
    S::Future: Send,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The inner service is called here, not in a future, so the one
        // poll_ready readied is the one called: no clone per call.
        let path = req.uri().path();
        let index = methods::index(path);
        let method = &methods::all()[index];
        let quiet = method.is_quiet();
        let caller_id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok());
        let request_id = match caller_id {
            Some(id) => id.chars().take(64).collect(),
            // Quiet calls (lookups above all) are too many to be worth a fresh id each.
            None if quiet => String::new(),
            None => Uuid::new_v4().to_string(),
        };
        // Recorded as strings, which the text log quotes and escapes: a
        // client-chosen id cannot pose as the rest of the line.
        let span = if quiet {
            tracing::debug_span!("rpc", method = path, request_id = request_id.as_str())
        } else {
            tracing::info_span!("rpc", method = path, request_id = request_id.as_str())
        };
        // A path naming no method is logged as sent (within reason).
        let unknown_path = (!method.is_known()).then(|| path.chars().take(128).collect());
        let caller = Caller::default();
        let protocol = req.extensions().get::<Protocol>().map_or("grpc", |p| p.as_str());
        req.extensions_mut().insert(caller.clone());
        let layer = self.layer.clone();
        let call = Call {
            started: Instant::now(),
            index,
            method,
            unknown_path,
            peer: crate::auth::peer_addr(&req),
            request_id,
            protocol,
            caller,
            span: span.clone(),
            layer,
            finished: false,
        };
        call.layer.sinks.metrics.started(index);
        let response = self.inner.call(req).instrument(span);
        Box::pin(async move {
            let response = match response.await {
                Ok(response) => response,
                // What tonic would answer for an error of the layers inside
                // (load shedding): answered here, so it is counted.
                Err(e) => Status::from_error(e.into()).into_http(),
            };
            match grpc_status(response.headers()) {
                Some(code) => {
                    // Trailers-only: the call ended with its headers.
                    let mut call = call;
                    call.finish(code);
                    Ok(response)
                }
                None => Ok(response.map(|body| Body::new(Observed { body, call }))),
            }
        })
    }
}

/// The status code in a header (or trailer) map.
fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// One call until it ends.
struct Call {
    started: Instant,
    /// The method's place in `methods::all()`.
    index: usize,
    method: &'static Method,
    unknown_path: Option<String>,
    peer: Option<IpAddr>,
    request_id: String,
    /// grpc, connect or grpc-web.
    protocol: &'static str,
    caller: Caller,
    span: tracing::Span,
    layer: ObserveLayer,
    finished: bool,
}

impl Call {
    fn finish(&mut self, code: i32) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let latency = self.started.elapsed();
        let metrics = &self.layer.sinks.metrics;
        metrics.handled(self.index, code, latency.as_secs_f64());
        let caller = self.caller.get();
        if let Some((token, role)) = caller {
            metrics.principal_call(self.method, token, role, code);
        }
        if self.method.is_lookup() {
            self.layer.sinks.lookups.record(code, latency);
        }
        let code_name = usize::try_from(code)
            .ok()
            .and_then(|c| CODE_NAMES.get(c))
            .unwrap_or(&"Unknown");
        let token_id = caller.map(|(t, _)| tracing::field::display(t));
        let role = caller.map(|(_, r)| r.as_str());
        let peer = self.peer.map(tracing::field::display);
        let latency_ms = latency.as_secs_f64() * 1e3;
        let method = self.unknown_path.as_deref().unwrap_or(self.method.path);
        let request_id = self.request_id.as_str();
        let protocol = self.protocol;
        let _entered = self.span.enter();
        if self.method.is_quiet() {
            tracing::debug!(target: "vpn_registry::access", method, protocol, request_id, token_id, role, peer, code = code_name, latency_ms, "call");
        } else {
            tracing::info!(target: "vpn_registry::access", method, protocol, request_id, token_id, role, peer, code = code_name, latency_ms, "call");
        }
    }
}

impl Drop for Call {
    /// A body dropped before its trailers: the client went away.
    fn drop(&mut self) {
        self.finish(tonic::Code::Cancelled as i32);
    }
}

/// A response body that reports the call's end: its trailers, or its drop.
struct Observed {
    body: Body,
    call: Call,
}

impl HttpBody for Observed {
    type Data = tonic::codegen::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                    this.call.finish(code);
                }
            }
            Poll::Ready(Some(Err(status))) => this.call.finish(status.code() as i32),
            Poll::Ready(None) => this.call.finish(tonic::Code::Unknown as i32),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
