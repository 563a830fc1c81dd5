//! The web console for people who do not write code, served at `/console/`
//! on the gRPC port (its TLS when configured). Pages are rendered on the
//! server; every action is the RPC a gRPC client would call, run by the same
//! handler after the same gate (`AuthLayer::admit_as`: token, permission
//! table row, rate limits), so there is one authorisation path. So far: sign
//! in and out, and the ISP attestation desk.

mod isp;
mod page;
pub mod session;

use std::sync::Arc;

use axum::{
    Router,
    extract::{FromRequestParts, State},
    http::{HeaderMap, StatusCode, header, request::Parts},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::Deserialize;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use self::session::{Session, Sessions};
use crate::auth::AuthLayer;
use crate::domain::principal::{Principal, RoleKind};
use crate::grpc::isps::IspApi;
use crate::registry::Registry;

/// Where a browser without a session is sent.
const SIGN_IN: &str = "/console/sign-in";

/// What the console's handlers share.
#[derive(Clone)]
struct Console {
    gate: AuthLayer,
    sessions: Arc<Sessions>,
    isp: Arc<IspApi>,
    tls: bool,
}

/// The `/console` routes.
pub fn router(registry: Registry, gate: AuthLayer, tls: bool) -> Router {
    let console = Console {
        gate,
        sessions: Arc::default(),
        isp: Arc::new(IspApi::new(registry)),
        tls,
    };
    Router::new()
        // (`/console/` itself is not routable here: tonic mounts services at
        // `/{name}/{*rest}`, which needs a non-empty rest.)
        .route("/console/home", get(home))
        .route("/console/sign-in", get(home).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/isp", get(isp::desk))
        .route("/console/isp/attest", post(isp::attest))
        .fallback(|| async { page::not_found() })
        .with_state(console)
}

/// The connection a request came on (peer address, client certificate),
/// for the gate's per-peer limits and certificate-bound tokens.
struct Conn {
    tcp: Option<TcpConnectInfo>,
    tls: Option<TlsConnectInfo<TcpConnectInfo>>,
}

impl<S: Send + Sync> FromRequestParts<S> for Conn {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            tcp: parts.extensions.get::<TcpConnectInfo>().cloned(),
            tls: parts.extensions.get::<TlsConnectInfo<TcpConnectInfo>>().cloned(),
        })
    }
}

impl Conn {
    /// A request as the gate sees a gRPC call: this connection, this token.
    fn call_with(&self, token: &str) -> axum::http::Request<()> {
        let mut req = axum::http::Request::new(());
        if let Ok(value) = format!("Bearer {token}").parse() {
            req.headers_mut().insert(header::AUTHORIZATION, value);
        }
        if let Some(tcp) = &self.tcp {
            req.extensions_mut().insert(tcp.clone());
        }
        if let Some(tls) = &self.tls {
            req.extensions_mut().insert(tls.clone());
        }
        req
    }
}

impl Console {
    /// The principal `session` acts as for `method`, or the page refusing it
    /// (a token revoked meanwhile ends the session).
    fn admit(&self, session: &Session, conn: &Conn, method: &str) -> Result<Arc<Principal>, Box<Response>> {
        self.gate
            .admit_as(&conn.call_with(&session.token), method)
            .map_err(|status| {
                Box::new(match status.code() {
                    tonic::Code::Unauthenticated => Redirect::to(SIGN_IN).into_response(),
                    _ => page::refused(&status, Some(session)),
                })
            })
    }

    fn session(&self, headers: &HeaderMap) -> Option<Session> {
        self.sessions.find(headers)
    }
}

/// Where a role's work starts.
fn home_of(role: RoleKind) -> Option<&'static str> {
    match role {
        RoleKind::Isp => Some("/console/isp"),
        _ => None,
    }
}

async fn home(State(c): State<Console>, headers: HeaderMap) -> Response {
    match c.session(&headers) {
        Some(s) => match home_of(s.role) {
            Some(path) => Redirect::to(path).into_response(),
            None => page::no_pages_yet(&s),
        },
        None => page::sign_in(None, StatusCode::OK),
    }
}

#[derive(Deserialize)]
struct SignIn {
    token: String,
}

async fn sign_in(State(c): State<Console>, conn: Conn, axum::Form(form): axum::Form<SignIn>) -> Response {
    let token = form.token.trim().to_owned();
    match c.gate.identify(&conn.call_with(&token)) {
        Ok(principal) => {
            let role = principal.role.kind();
            let id = c.sessions.start(token, role);
            let mut response = Redirect::to(home_of(role).unwrap_or("/console/home")).into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, session::set_cookie(&id, c.tls));
            response
        }
        Err(status) => {
            let code = match status.code() {
                tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
                tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::UNAUTHORIZED,
            };
            page::sign_in(Some(status.message()), code)
        }
    }
}

#[derive(Deserialize)]
struct SignOut {
    csrf: String,
}

async fn sign_out(State(c): State<Console>, headers: HeaderMap, axum::Form(form): axum::Form<SignOut>) -> Response {
    if c.session(&headers).is_some_and(|s| s.csrf == form.csrf) {
        c.sessions.end(&headers);
    }
    let mut response = Redirect::to(SIGN_IN).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::clear_cookie());
    response
}
