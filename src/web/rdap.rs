//! RDAP for address lookups (RFC 9082 queries, RFC 9083 answers): what
//! internal services and tools that speak RDAP expect. `GET /rdap/ip/{addr}`
//! and `GET /rdap/ip/{prefix}/{length}` answer with the IP network object of
//! the registration in force that covers the address (or all of the
//! prefix), from the in-memory index, to a bearer token that may call
//! `CheckAddress`, scoped as `CheckAddress` is. No personal data: the
//! reference, the prefix, kind, category, dates and status.

use std::net::IpAddr;

use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use ipnet::IpNet;
use serde_json::{Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use tonic::Code;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::auth::AuthLayer;
use crate::grpc::convert::{category_to_pb, kind_to_pb};
use crate::lookup::{LookupError, Lookups, Match, scope};

/// The RPC whose permission row and rate limit RDAP queries share.
const AS_METHOD: &str = "/vpnregistry.v1.LookupService/CheckAddress";
const MEDIA_TYPE: &str = "application/rdap+json";
/// RFC 9083 conformance, plus RFC 9083's cidr0 extension for `cidr0_cidrs`.
const CONFORMANCE: [&str; 2] = ["rdap_level_0", "cidr0"];

#[derive(Clone)]
struct Rdap {
    lookups: Lookups,
    gate: AuthLayer,
    /// The registry's address as clients reach it, without a trailing `/`.
    public_url: Option<String>,
}

/// RDAP's routes. Links name `public_url` (the registry's address as its
/// clients reach it) or, without one, the address the request came in on:
/// never a `Host` header a client chose. Answers depend on the caller, so
/// caches are told so (`Vary: Authorization`).
pub fn router(lookups: Lookups, gate: AuthLayer, public_url: Option<String>) -> Router {
    Router::new()
        .route("/rdap/ip/{*query}", get(ip))
        .fallback(|| async {
            error(
                StatusCode::BAD_REQUEST,
                "Unsupported query",
                "this server answers ip queries: /rdap/ip/{address} and /rdap/ip/{prefix}/{length}",
            )
        })
        .with_state(Rdap {
            lookups,
            gate,
            public_url: public_url.map(|u| u.trim_end_matches('/').to_owned()),
        })
        .layer(axum::middleware::map_response(|mut response: Response| async move {
            let headers = response.headers_mut();
            headers.insert(header::VARY, HeaderValue::from_static("Authorization"));
            headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            response
        }))
}

/// `ip/{address}` or `ip/{prefix}/{length}` (read from the path itself: the
/// router this is mounted in captures path parameters of its own).
async fn ip(State(rdap): State<Rdap>, req: Request) -> Response {
    let query = req.uri().path().trim_start_matches("/rdap/ip/");
    // Some clients escape the colons of IPv6 addresses.
    let query = query.replace("%3A", ":").replace("%3a", ":");
    let malformed = |what: &str| {
        error(
            StatusCode::BAD_REQUEST,
            "Malformed query",
            &format!("{} is not an IPv4 or IPv6 {what}", crate::domain::text::echo(&query)),
        )
    };
    let net = if query.contains('/') {
        match query.parse::<IpNet>() {
            Ok(net) if net.trunc() == net => net,
            Ok(net) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Malformed query",
                    &format!("{net} has host bits set (the network is {})", net.trunc()),
                );
            }
            Err(_) => return malformed("prefix"),
        }
    } else {
        match query.parse::<IpAddr>() {
            Ok(addr) => IpNet::from(addr),
            Err(_) => return malformed("address"),
        }
    };
    rdap.answer(net, &req)
}

impl Rdap {
    /// The absolute URL of this query (RDAP links are absolute): under the
    /// public URL, or the scheme and local address of the connection.
    fn self_link(&self, req: &Request) -> String {
        let path = req.uri().path();
        if let Some(base) = &self.public_url {
            return format!("{base}{path}");
        }
        let ext = req.extensions();
        let (scheme, local) = match ext.get::<TlsConnectInfo<TcpConnectInfo>>() {
            Some(tls) => ("https", tls.get_ref().local_addr()),
            None => ("http", ext.get::<TcpConnectInfo>().and_then(|c| c.local_addr())),
        };
        let host = local.map(|a| a.to_string()).unwrap_or_else(|| "localhost".into());
        format!("{scheme}://{host}{path}")
    }

    fn answer(&self, net: IpNet, req: &Request) -> Response {
        let principal = match self.gate.admit_as(req, AS_METHOD) {
            Ok(p) => p,
            Err(status) => return refused(&status),
        };
        let scope = match scope(&principal) {
            Ok(scope) => scope,
            Err(refusal) => return error(StatusCode::FORBIDDEN, "Forbidden", &refusal.to_string()),
        };
        match self.lookups.covering(net, scope) {
            Ok((Some(found), _)) => {
                let mut response = Json(network(&found, &self.self_link(req))).into_response();
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=60"));
                response
            }
            Ok((None, _)) => error(
                StatusCode::NOT_FOUND,
                "Not found",
                &format!("no registration in force covers {net}"),
            ),
            Err(LookupError::Loading) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "the lookup index is still loading; retry shortly",
            ),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "Internal error", &e.to_string()),
        }
    }
}

/// The RFC 9083 IP network object of a match.
fn network(m: &Match, link: &str) -> Value {
    let (start, end, version, cidr) = match m.prefix {
        IpNet::V4(n) => (
            n.network().to_string(),
            n.broadcast().to_string(),
            "v4",
            json!({"v4prefix": n.network().to_string(), "length": n.prefix_len()}),
        ),
        IpNet::V6(n) => (
            n.network().to_string(),
            n.broadcast().to_string(),
            "v6",
            json!({"v6prefix": n.network().to_string(), "length": n.prefix_len()}),
        ),
    };
    let e = &m.entry;
    json!({
        "rdapConformance": CONFORMANCE,
        "objectClassName": "ip network",
        "handle": e.reference.as_str(),
        "startAddress": start,
        "endAddress": end,
        "ipVersion": version,
        "name": e.reference.as_str(),
        "type": kind_to_pb(e.kind).as_str_name().trim_start_matches("REGISTRATION_KIND_"),
        "cidr0_cidrs": [cidr],
        "status": ["active"],
        "events": [
            {"eventAction": "registration", "eventDate": rfc3339(e.valid_from())},
            {"eventAction": "last changed", "eventDate": rfc3339(e.changed())},
            {"eventAction": "expiration", "eventDate": rfc3339(e.valid_until())},
        ],
        "remarks": [{
            "title": "Registration",
            "description": [format!(
                "A VPN registered with the national VPN registry by an institution of category {}.",
                category_to_pb(e.category).as_str_name().trim_start_matches("INSTITUTION_CATEGORY_")
            )],
        }],
        "links": [{"value": link, "rel": "self", "href": link, "type": MEDIA_TYPE}],
        "notices": notices(),
    })
}

fn notices() -> Value {
    json!([{
        "title": "Terms of use",
        "description": [
            "Answers come from the national VPN registry's active set, for the caller's token and scope.",
            "They name registrations, not the people behind them: no personal data is served here."
        ],
    }])
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// An RFC 9083 error response.
fn error(status: StatusCode, title: &str, description: &str) -> Response {
    let body = json!({
        "rdapConformance": CONFORMANCE,
        "errorCode": status.as_u16(),
        "title": title,
        "description": [description],
        "notices": notices(),
    });
    (status, Json(body)).into_response()
}

/// A refusal of the gate, as HTTP and RDAP say it.
fn refused(status: &tonic::Status) -> Response {
    let (code, title) = match status.code() {
        Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "Unauthorized"),
        Code::PermissionDenied => (StatusCode::FORBIDDEN, "Forbidden"),
        Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "Too many requests"),
        Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "Internal error"),
    };
    let mut response = error(code, title, status.message());
    if code == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// JSON with RDAP's media type.
struct Json(Value);

impl IntoResponse for Json {
    fn into_response(self) -> Response {
        (
            [(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE))],
            self.0.to_string(),
        )
            .into_response()
    }
}
