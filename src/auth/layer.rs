//! A tower layer in front of every gRPC service, the one authorisation path:
//! health checks and reflection pass freely; every other call needs an
//! active bearer token (bound to the connection's client certificate when it
//! was issued so), a role the permission table allows for the method, and
//! room in its principal's rate limit. Failed authentication is rate-limited
//! per peer address. Nothing here queries the database.

use std::{
    net::{IpAddr, Ipv4Addr},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tonic::{
    Status,
    body::Body,
    codegen::http,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};

use super::Caller;
use super::credentials::{Credential, Credentials, Refused};
use super::in_flight::{Admitted, InFlightCaps};
use super::limits::RateLimits;
use super::{permissions, token};
use crate::domain::principal::Principal;
use crate::tls::certificate_sha256;

/// When a principal at its in-flight cap is told to retry.
const IN_FLIGHT_RETRY: Duration = Duration::from_millis(100);

/// Resolves `authorization: Bearer <token>` against the credentials held in memory.
#[derive(Clone)]
pub struct AuthLayer {
    gate: Arc<Gate>,
}

/// What every call passes through.
struct Gate {
    credentials: Arc<Credentials>,
    limits: Arc<RateLimits>,
    in_flight: InFlightCaps,
}

impl AuthLayer {
    pub fn new(credentials: Arc<Credentials>, limits: Arc<RateLimits>, in_flight: InFlightCaps) -> Self {
        Self {
            gate: Arc::new(Gate {
                credentials,
                limits,
                in_flight,
            }),
        }
    }

    /// Admits an HTTP request (RDAP) as if it called `method`:
    /// the same tokens, permission table row, rate limits and in-flight cap
    /// as the RPC (the request itself is short: it is not held in flight).
    pub fn admit_as<B>(&self, req: &http::Request<B>, method: &str) -> Result<Arc<Principal>, Status> {
        self.gate
            .admit(req, method)
            .map(|admitted| admitted.principal().clone())
    }
}

impl AuthLayer {
    /// Admits a signed-in person's console action as if `principal` (the
    /// user's role and scope) called `method`: the same permission table
    /// row, key managers' rule and rate limit as a token of that role.
    pub fn admit_user(&self, principal: &Principal, method: &str) -> Result<(), Status> {
        self.gate.authorize(principal, method)
    }

    /// Counts a failed console sign-in from `addr` with failed token
    /// authentications; `Err` with the wait when the address failed too
    /// often.
    pub fn failed_sign_in(&self, addr: IpAddr) -> Result<(), Duration> {
        self.gate.limits.count_auth_failure();
        self.gate.limits.failed_authentication(addr)
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            gate: self.gate.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around the router.
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    gate: Arc<Gate>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> Service<http::Request<B>> for Auth<S>
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

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The inner service is called here, not in a future, so the one
        // poll_ready readied is the one called: no clone per call.
        if permissions::is_public(req.uri().path()) {
            return Box::pin(self.inner.call(req));
        }
        let admitted = self.gate.admit(&req, req.uri().path());
        match admitted {
            Ok(admitted) => {
                // Counted in flight until the handler drops the request.
                req.extensions_mut().insert(admitted);
                Box::pin(self.inner.call(req))
            }
            Err(status) => Box::pin(async move { Ok(status.into_http()) }),
        }
    }
}

/// The connection a request came on: peer address and client certificate.
struct Peer<'a> {
    addr: IpAddr,
    leaf_certificate: Option<&'a [u8]>,
}

/// The client certificates of a TLS connection (leaf first).
type PeerCertificates = Arc<Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>>>;

/// The address a request came from (for logs).
pub fn peer_addr<B>(req: &http::Request<B>) -> Option<IpAddr> {
    Some(peer(req).0).filter(|a| !a.is_unspecified())
}

/// The address a request came from, and the certificates its connection
/// presented (none on plaintext).
fn peer<B>(req: &http::Request<B>) -> (IpAddr, Option<PeerCertificates>) {
    let unknown = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let ext = req.extensions();
    if let Some(tls) = ext.get::<TlsConnectInfo<TcpConnectInfo>>() {
        let addr = tls.get_ref().remote_addr().map_or(unknown, |a| a.ip());
        return (addr, tls.peer_certs());
    }
    let addr = ext
        .get::<TcpConnectInfo>()
        .and_then(|c| c.remote_addr())
        .map_or(unknown, |a| a.ip());
    (addr, None)
}

impl Gate {
    /// The principal a call of `path` acts as, counted in flight, or the
    /// status refusing it.
    fn admit<B>(&self, req: &http::Request<B>, path: &str) -> Result<Admitted, Status> {
        let (addr, certs) = peer(req);
        let peer = Peer {
            addr,
            leaf_certificate: certs.as_ref().and_then(|c| c.first()).map(|c| c.as_ref()),
        };
        let credential = self.authenticate(req.headers(), &peer)?;
        let principal = &credential.principal;
        // For the access log and metrics, even if refused below.
        if let Some(caller) = req.extensions().get::<Caller>() {
            caller.identify(principal.id, principal.role.kind());
        }
        self.authorize(principal, path)?;
        let role = principal.role.kind();
        self.in_flight.enter(credential).map_err(|cap| {
            self.limits.count_limited(role);
            too_many(
                &format!("this principal has {cap} calls in flight, the most role {role} may; retry when one ends"),
                IN_FLIGHT_RETRY,
            )
        })
    }

    /// Whether `principal` may call `path` now: the permission table's row,
    /// the key managers' rule, the role's rate limit.
    fn authorize(&self, principal: &Principal, path: &str) -> Result<(), Status> {
        let role = principal.role.kind();
        let Some(allowed) = permissions::allowed(path) else {
            return Err(Status::unimplemented(format!("no method {path}")));
        };
        if !allowed.contains(&role) {
            let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
            let method = path.rsplit('/').next().unwrap_or(path);
            return Err(Status::permission_denied(format!(
                "role {role} may not call {method} (allowed: {})",
                names.join(", ")
            )));
        }
        if permissions::for_key_managers(path) && !principal.manages_keys {
            let method = path.rsplit('/').next().unwrap_or(path);
            return Err(Status::permission_denied(format!(
                "{method} is for the organisation's owners (an institution's owner, an ISP desk user, or a key made to manage keys)"
            )));
        }
        if let Err(wait) = self.limits.admit(role, principal.id) {
            self.limits.count_limited(role);
            return Err(too_many(
                &format!("rate limit of role {role} exceeded; retry later"),
                wait,
            ));
        }
        Ok(())
    }

    fn authenticate(&self, headers: &http::HeaderMap, peer: &Peer<'_>) -> Result<Arc<Credential>, Status> {
        let refused = |message: &str| -> Status {
            self.limits.count_auth_failure();
            match self.limits.failed_authentication(peer.addr) {
                Ok(()) => Status::unauthenticated(message),
                Err(wait) => too_many("too many failed authentications from this address", wait),
            }
        };
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(refused("missing authorization metadata (Bearer token)"));
        };
        let Some(token) = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return Err(refused("authorization must be `Bearer <token>`"));
        };
        let credential = match self.credentials.check(&token::hash(token)) {
            Ok(c) => c,
            Err(Refused::Unknown) => return Err(refused("unknown, revoked or expired token")),
            Err(Refused::Stale) => {
                return Err(Status::unavailable(
                    "credentials could not be refreshed recently; refusing calls until they are",
                ));
            }
        };
        if let Some(bound) = credential.cert_sha256
            && peer.leaf_certificate.map(certificate_sha256) != Some(bound)
        {
            return Err(refused(
                "this token is bound to a client certificate the connection did not present",
            ));
        }
        Ok(credential)
    }
}

/// RESOURCE_EXHAUSTED with `google.rpc.RetryInfo`.
fn too_many(message: &str, wait: Duration) -> Status {
    Status::with_error_details(
        tonic::Code::ResourceExhausted,
        message,
        ErrorDetails::with_retry_info(Some(wait)),
    )
}
