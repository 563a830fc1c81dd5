//! The web console for people who do not write code, served at `/console/`
//! on the gRPC port (its TLS when configured). Pages are rendered on the
//! server; every action is the RPC a gRPC client would call, run by the same
//! handler after the same gate (`AuthLayer::admit_as`: token, permission
//! table row, rate limits), so there is one authorisation path. Each role
//! has its pages: applicants (institutions), the ISP desk, reviewers and
//! administrators.

mod account;
mod admin;
mod applicant;
mod assets;
mod evidence;
mod fields;
mod history;
mod import;
mod isp;
mod keys;
mod links;
mod members;
mod notifications;
mod page;
mod public;
mod registration_form;
mod review;
mod review_queue;
pub mod session;
mod sign_in;
mod sign_up;

use std::{sync::Arc, time::Instant};

use axum::{
    Router,
    extract::{FromRequestParts, State},
    http::{HeaderMap, request::Parts},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::Deserialize;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use self::session::{Session, Sessions};
use crate::accounts::Accounts;
use crate::auth::AuthLayer;
use crate::domain::principal::{Principal, RoleKind};
use crate::grpc::{
    api_keys::ApiKeyApi, documents::DocumentApi, events::EventApi, institutions::InstitutionApi, isps::IspApi,
    payments::PaymentApi, registrations::RegistrationApi, review::ReviewApi, webhooks::WebhookApi,
};
use crate::pb::{self, isp_service_server::IspService};
use crate::registry::{Registry, documents::Documents};

const ISPS: &str = "/vpnregistry.v1.IspService/ListIsps";

/// Where a browser without a session is sent.
const SIGN_IN: &str = "/console/sign-in";

/// What the console's handlers share: the gate and the API's own handlers.
#[derive(Clone)]
struct Console {
    gate: AuthLayer,
    sessions: Arc<Sessions>,
    isp: Arc<IspApi>,
    registrations: Arc<RegistrationApi>,
    review: Arc<ReviewApi>,
    institutions: Arc<InstitutionApi>,
    events: Arc<EventApi>,
    webhooks: Arc<WebhookApi>,
    api_keys: Arc<ApiKeyApi>,
    documents: Arc<DocumentApi>,
    payments: Arc<PaymentApi>,
    /// Uploads and views, which stream (the API's handlers take gRPC streams).
    document_store: Documents,
    /// Where e-mailed links point (`--public-url`); else the address a
    /// request reached this server at.
    public_url: Option<Arc<str>>,
}

/// The `/console` routes.
pub fn router(
    registry: Registry,
    documents: Documents,
    gate: AuthLayer,
    accounts: Accounts,
    tls: bool,
    public_url: Option<String>,
) -> Router {
    let console = Console {
        gate,
        sessions: Arc::new(Sessions::new(accounts, tls)),
        api_keys: Arc::new(ApiKeyApi::new(registry.clone())),
        documents: Arc::new(DocumentApi::new(documents.clone())),
        payments: Arc::new(PaymentApi::new(registry.clone())),
        document_store: documents,
        public_url: public_url.map(|u| Arc::from(u.trim_end_matches('/'))),
        isp: Arc::new(IspApi::new(registry.clone())),
        registrations: Arc::new(RegistrationApi::new(registry.clone())),
        review: Arc::new(ReviewApi::new(registry.clone())),
        events: Arc::new(EventApi::new(registry.clone())),
        // The console only reads webhooks: whether private targets may be
        // registered does not arise.
        webhooks: Arc::new(WebhookApi::new(registry.clone(), false)),
        institutions: Arc::new(InstitutionApi::new(registry)),
    };
    people_routes()
        .merge(work_routes())
        .fallback(|| async { page::not_found() })
        .with_state(console)
        .layer(axum::middleware::map_response(move |response: Response| async move {
            page::hardened(response, tls)
        }))
}

/// Signing up and in, accounts, members, people and keys.
fn people_routes() -> Router<Console> {
    Router::new()
        // (`/console/` itself is not routable here: tonic mounts services at
        // `/{name}/{*rest}`, which needs a non-empty rest.)
        .route("/console/home", get(home))
        .route("/console/sign-in", get(sign_in::sign_in_form).post(sign_in::sign_in))
        .route("/console/sign-out", post(sign_in::sign_out))
        .route("/console/sign-up", get(sign_up::sign_up_form).post(sign_up::sign_up))
        .route(
            "/console/sign-up/verify",
            get(sign_up::verify_form).post(sign_up::verify),
        )
        .route(
            "/console/invitation",
            get(links::invitation_form).post(links::accept_invitation),
        )
        .route("/console/password-reset", get(links::reset_form).post(links::reset))
        .route("/console/account", get(account::overview))
        .route("/console/account/password", post(account::change_password))
        .route("/console/account/sessions", post(account::revoke_session))
        .route(
            "/console/account/second-factor",
            get(account::second_factor_form).post(account::enrol_second_factor),
        )
        .route("/console/members", get(members::list).post(members::change))
        .route("/console/members/invite", post(members::invite))
        .route("/console/people", get(members::people).post(members::invite_person))
        .route("/console/keys", get(keys::list).post(keys::create))
        .route("/console/keys/{id}", post(keys::change))
}

/// Each role's work: applicants, ISP desks, reviewers, administrators.
fn work_routes() -> Router<Console> {
    Router::new()
        .route("/console/assets/form.js", get(assets::form_js))
        .route("/console/isp", get(isp::desk))
        .route("/console/isp/attest", post(isp::attest))
        .route("/console/registrations", get(applicant::list))
        .route(
            "/console/registrations/new",
            get(applicant::new_form).post(applicant::submit),
        )
        .route("/console/registrations/import", get(import::form).post(import::import))
        .route("/console/registrations/import/template.csv", get(import::template))
        .route("/console/registrations/{id}", get(applicant::detail))
        .route(
            "/console/registrations/{id}/amend",
            get(applicant::amend_form).post(applicant::amend),
        )
        .route("/console/registrations/{id}/withdraw", post(applicant::withdraw))
        .route("/console/registrations/{id}/renew", post(applicant::renew))
        .route("/console/documents/upload", post(evidence::upload))
        .route("/console/documents/{id}", get(evidence::view))
        .route("/console/documents/{id}/verdict", post(evidence::verdict))
        .route("/console/review", get(review_queue::queue))
        .route("/console/review/{id}", get(review::detail).post(review::decide))
        .route("/console/institutions", get(admin::institutions))
        .route("/console/institutions/new", get(admin::new_form).post(admin::create))
        .route("/console/institutions/{id}", get(admin::edit_form).post(admin::update))
        .route("/console/isps", get(admin::isps))
        .route("/console/notifications", get(notifications::outbox))
        .route("/console/webhooks", get(notifications::webhooks))
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
    fn peer(&self) -> Option<std::net::IpAddr> {
        let tcp = self.tcp.as_ref().or_else(|| self.tls.as_ref().map(|t| t.get_ref()));
        tcp.and_then(TcpConnectInfo::remote_addr).map(|a| a.ip())
    }

    /// This server as the connection reached it (scheme and local
    /// address): where links point when no public URL is configured (never
    /// a `Host` header a client chose).
    fn local_url(&self) -> String {
        let (scheme, local) = match &self.tls {
            Some(tls) => ("https", tls.get_ref().local_addr()),
            None => ("http", self.tcp.as_ref().and_then(TcpConnectInfo::local_addr)),
        };
        let host = local.map_or_else(|| "localhost".to_owned(), |a| a.to_string());
        format!("{scheme}://{host}")
    }
}

impl Console {
    /// `msg` as a request of `method` from `visitor`, admitted by the gate
    /// (its principal in the request, as the auth layer leaves it for the
    /// handler), or the page refusing it (a token revoked meanwhile ends the
    /// session).
    fn request<M>(&self, visitor: &Visitor, method: &str, msg: M) -> Result<tonic::Request<M>, Box<Response>> {
        let principal = &visitor.session.principal;
        self.admit(visitor, method)?;
        let mut req = tonic::Request::new(msg);
        req.extensions_mut().insert(principal.clone());
        Ok(req)
    }

    /// Admits `visitor`'s action as the gate admits `method` from a token of
    /// the user's role and scope, or the page refusing it.
    fn admit(&self, visitor: &Visitor, method: &str) -> Result<(), Box<Response>> {
        self.gate
            .admit_user(&visitor.session.principal, method)
            .map_err(|status| Box::new(page::refused(&status, Some(&visitor.session))))
    }

    /// Where an e-mailed link points.
    fn base_url(&self, conn: &Conn) -> String {
        match &self.public_url {
            Some(url) => url.to_string(),
            None => conn.local_url(),
        }
    }

    /// Calls an RPC for `visitor`: admitted by the gate as `method`, then
    /// run by the RPC's own `handler`. Each call is logged as an access
    /// event (`via=console`), as the observe layer logs a gRPC call.
    async fn call<M, R, Fut>(
        &self,
        visitor: &Visitor,
        method: &'static str,
        msg: M,
        handler: impl FnOnce(tonic::Request<M>) -> Fut,
    ) -> Result<R, Refused>
    where
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let req = self.request(visitor, method, msg).map_err(Refused::Page)?;
        let caller = req
            .extensions()
            .get::<Arc<Principal>>()
            .map(|p| (p.id, p.role.as_str()));
        let started = Instant::now();
        let result = handler(req).await;
        let code = match &result {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        };
        tracing::info!(
            target: "vpn_registry::access",
            method,
            token_id = caller.map(|(id, _)| tracing::field::display(id)),
            role = caller.map(|(_, role)| role),
            peer = visitor.conn.peer().map(tracing::field::display),
            code = ?code,
            latency_ms = started.elapsed().as_secs_f64() * 1e3,
            via = "console",
            "call"
        );
        result.map(tonic::Response::into_inner).map_err(Refused::Status)
    }

    /// The licensed ISPs, as (code, name) (the first page of ListIsps,
    /// which is all of them in practice: a country has dozens); none if
    /// they cannot be read.
    async fn isps(&self, visitor: &Visitor) -> Vec<(String, String)> {
        let msg = pb::ListIspsRequest {
            page_size: 1000,
            page_token: String::new(),
        };
        match self.call(visitor, ISPS, msg, |req| self.isp.list_isps(req)).await {
            Ok(list) => list.isps.into_iter().map(|i| (i.code, i.name)).collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// Why a console call brought no answer.
enum Refused {
    /// The gate refused (or the session ended): its page.
    Page(Box<Response>),
    /// The RPC refused.
    Status(tonic::Status),
}

impl Refused {
    /// The page saying so, for a page that cannot go on without the answer.
    fn page(self, title: &str, visitor: &Visitor) -> Response {
        match self {
            Self::Page(page) => *page,
            Self::Status(status) => page::failed(title, &status, &visitor.session),
        }
    }
}

/// A signed-in browser on its connection; a browser without a session is
/// sent to the sign-in page.
struct Visitor {
    session: Session,
    conn: Conn,
}

impl FromRequestParts<Console> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Self::Rejection> {
        let Ok(conn) = Conn::from_request_parts(parts, console).await;
        match console.sessions.find(&parts.headers).await {
            // Staff and ISP desks enrol a second factor before anything else.
            Ok(Some(session))
                if session.user.must_enrol_second_factor() && !parts.uri.path().starts_with("/console/account") =>
            {
                Err(Redirect::to(account::SECOND_FACTOR).into_response())
            }
            Ok(Some(session)) => Ok(Self { session, conn }),
            Ok(None) => Err(Redirect::to(SIGN_IN).into_response()),
            Err(failure) => Err(page::unavailable(&failure)),
        }
    }
}

impl Visitor {
    /// Refuses a form that does not carry this session's CSRF token (a post
    /// from another site).
    fn check_csrf(&self, csrf: &str) -> Result<(), Box<Response>> {
        if csrf == self.session.csrf {
            return Ok(());
        }
        let status = tonic::Status::permission_denied("this form was not sent by your console page; reload it");
        Err(Box::new(page::refused(&status, Some(&self.session))))
    }
}

/// The `{id}` of a console path. (A struct, not `Path<String>`: the
/// router is nested in tonic's, whose own path parameters come along.)
#[derive(Deserialize)]
struct Id {
    id: String,
}

/// Where a role's work starts.
fn home_of(role: RoleKind) -> Option<&'static str> {
    match role {
        RoleKind::Isp => Some("/console/isp"),
        RoleKind::Institution => Some("/console/registrations"),
        RoleKind::Reviewer => Some("/console/review"),
        RoleKind::Admin => Some("/console/institutions"),
        RoleKind::Lookup | RoleKind::Payments => None,
    }
}

async fn home(State(c): State<Console>, headers: HeaderMap) -> Response {
    match c.sessions.find(&headers).await {
        Ok(Some(s)) if s.user.must_enrol_second_factor() => Redirect::to(account::SECOND_FACTOR).into_response(),
        Ok(Some(s)) => match home_of(s.role) {
            Some(path) => Redirect::to(path).into_response(),
            None => page::no_pages(&s),
        },
        Ok(None) => Redirect::to(SIGN_IN).into_response(),
        Err(failure) => page::unavailable(&failure),
    }
}
