//! The console's page frame and its shared pages (sign-in, refusals), and
//! how dates are shown: Pakistan time, which has no daylight saving.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use time::{OffsetDateTime, UtcOffset, macros::format_description};

use super::session::Session;

/// Readable on a phone and a laptop, high contrast, visible focus.
const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:0;color:#111;background:#fff;line-height:1.5}
header{background:#0b3d2e;color:#fff;padding:.75rem 1rem;display:flex;flex-wrap:wrap;gap:1rem;align-items:center;justify-content:space-between}
header a,header button{color:#fff}
main{padding:1rem;max-width:72rem;margin:auto}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #888;padding:.5rem;text-align:left;vertical-align:top}
label{display:block;font-weight:600;margin-top:.5rem}
input[type=text],input[type=password]{width:100%;max-width:32rem;padding:.5rem;border:1px solid #333;font-size:1rem}
button{padding:.5rem 1rem;font-size:1rem;margin-top:.5rem;margin-right:.5rem;cursor:pointer}
:focus{outline:3px solid #d97706;outline-offset:2px}
.notice{border-left:4px solid #0b3d2e;background:#ecfdf5;padding:.5rem 1rem}
.error{border-left:4px solid #b91c1c;background:#fef2f2;padding:.5rem 1rem}
@media (max-width:40rem){table,thead,tbody,tr,th,td{display:block}thead{display:none}td{border:none}tr{border-bottom:1px solid #888;padding:.5rem 0}}
";

/// A whole page: `title`, who is signed in (with the sign-out form), `body`.
pub fn frame(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · VPN registry" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    strong { "National VPN registry" }
                    @if let Some(s) = session {
                        form method="post" action="/console/sign-out" {
                            span { "Signed in as " (s.role.as_str()) " " }
                            input type="hidden" name="csrf" value=(s.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" { h1 { (title) } (body) }
            }
        }
    }
}

/// An HTML response that is never cached (pages hold personal data).
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        markup.into_string(),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

pub fn sign_in(error: Option<&str>, status: StatusCode) -> Response {
    let body = html! {
        p { "Sign in with the token your organisation was issued. It is kept only for this browser session." }
        @if let Some(e) = error {
            p class="error" role="alert" { "Not signed in: " (e) }
        }
        form method="post" action="/console/sign-in" {
            label for="token" { "Token" }
            input type="password" id="token" name="token" autocomplete="off" required;
            button type="submit" { "Sign in" }
        }
    };
    respond(status, frame("Sign in", None, body))
}

/// A refusal by the rules or the gate, said plainly.
pub fn refused(status: &tonic::Status, session: Option<&Session>) -> Response {
    let code = match status.code() {
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body = html! { p class="error" role="alert" { (status.message()) } p { a href="/console/home" { "Back" } } };
    respond(code, frame("Not allowed", session, body))
}

pub fn not_found() -> Response {
    let body = html! { p { "There is no such page. " a href="/console/home" { "Start again" } } };
    respond(StatusCode::NOT_FOUND, frame("Not found", None, body))
}

/// Signed in with a role the console has no pages for yet.
pub fn no_pages_yet(session: &Session) -> Response {
    let body = html! {
        p { "The console serves the ISP attestation desk so far; the pages of role "
            (session.role.as_str()) " are not built yet. Use the gRPC API meanwhile." }
    };
    respond(StatusCode::OK, frame("Welcome", Some(session), body))
}

/// Pakistan Standard Time (UTC+5, no daylight saving).
pub fn pkt(t: OffsetDateTime) -> String {
    let offset = UtcOffset::from_hms(5, 0, 0).unwrap_or(UtcOffset::UTC);
    t.to_offset(offset)
        .format(format_description!(
            "[day] [month repr:short] [year], [hour]:[minute] PKT"
        ))
        .unwrap_or_default()
}

/// How long ago `since` was, roughly ("3 days", "5 hours", "12 minutes").
pub fn waited(since: OffsetDateTime) -> String {
    let d = OffsetDateTime::now_utc() - since;
    match (d.whole_days(), d.whole_hours(), d.whole_minutes()) {
        (days, _, _) if days >= 1 => format!("{days} day{}", if days == 1 { "" } else { "s" }),
        (_, hours, _) if hours >= 1 => format!("{hours} hour{}", if hours == 1 { "" } else { "s" }),
        (_, _, minutes) => format!("{minutes} minute{}", if minutes == 1 { "" } else { "s" }),
    }
}
