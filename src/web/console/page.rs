//! The console's page frame and its shared pages (sign-in, refusals), and
//! how dates are shown: Pakistan time, which has no daylight saving.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use time::{Date, OffsetDateTime, macros::format_description};

use super::session::Session;
use crate::domain::calendar::PKT;
use crate::domain::principal::RoleKind;
use crate::grpc::convert::{from_timestamp, timestamp};

/// Rows on one page of a list (an "Older"/"Next" link leads on).
pub const PAGE_SIZE: i32 = 25;

/// Readable on a phone and a laptop, high contrast, visible focus.
const STYLE: &str = "
*,*::before,*::after{box-sizing:border-box}
select{max-width:100%}
code{overflow-wrap:anywhere}
body{font-family:system-ui,sans-serif;margin:0;color:#111;background:#fff;line-height:1.5}
header{background:#0b3d2e;color:#fff;padding:.75rem 1rem;display:flex;flex-wrap:wrap;gap:1rem;align-items:center;justify-content:space-between}
header a{color:#fff}
header form{max-width:100%}header span{overflow-wrap:anywhere}
header button{color:#fff;background:transparent;border:2px solid #fff}
nav{display:flex;flex-wrap:wrap}nav a{margin-right:1rem}
.violation{color:#b91c1c;font-weight:600;margin:.25rem 0}
input[type=date],select,textarea{padding:.5rem;border:1px solid #333;font-size:1rem}
textarea{width:100%;max-width:32rem}
.changed td{background:#fff7d6}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}dt{font-weight:600}dd{margin:0}
fieldset{border:1px solid #888;margin:1rem 0;padding:.5rem 1rem;min-width:0}
.filters{display:flex;flex-wrap:wrap;gap:0 1.5rem;align-items:flex-end}
main{padding:1rem;max-width:72rem;margin:auto}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #888;padding:.5rem;text-align:left;vertical-align:top}td{overflow-wrap:anywhere}
label{display:block;font-weight:600;margin-top:.5rem}
input[type=text],input[type=password],input[type=email],input[type=tel]{width:100%;max-width:32rem;padding:.5rem;border:1px solid #333;font-size:1rem}
button{padding:.5rem 1rem;font-size:1rem;margin-top:.5rem;margin-right:.5rem;cursor:pointer}
:focus{outline:3px solid #d97706;outline-offset:2px}
.notice{border-left:4px solid #0b3d2e;background:#ecfdf5;padding:.5rem 1rem}
.error{border-left:4px solid #b91c1c;background:#fef2f2;padding:.5rem 1rem}
.error:empty{display:none}
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
                script src="/console/assets/form.js" defer {}
            }
            body {
                header {
                    strong { "National VPN registry" }
                    @if let Some(s) = session {
                        nav aria-label="Pages" {
                            @for (href, label) in links(s.role) { a href=(href) { (label) } }
                            @if s.manages_keys() { a href="/console/keys" { "API keys" } }
                            @if s.manages_keys() && s.role == RoleKind::Institution { a href="/console/members" { "Members" } }
                            @if s.role == RoleKind::Admin { a href="/console/people" { "People" } }
                            a href="/console/account" { "Account" }
                        }
                        form method="post" action="/console/sign-out" {
                            span { "Signed in as " (s.name) " (" (s.user.membership.label()) ") " }
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

/// The pages a role has.
fn links(role: RoleKind) -> &'static [(&'static str, &'static str)] {
    match role {
        RoleKind::Institution => &[
            ("/console/registrations", "My registrations"),
            ("/console/registrations/new", "New registration"),
            ("/console/webhooks", "Webhooks"),
        ],
        RoleKind::Isp => &[("/console/isp", "Attestations"), ("/console/webhooks", "Webhooks")],
        RoleKind::Reviewer => &[("/console/review", "Review queue")],
        RoleKind::Admin => &[
            ("/console/institutions", "Institutions"),
            ("/console/isps", "ISPs"),
            ("/console/notifications", "Notifications"),
        ],
        RoleKind::Lookup | RoleKind::Payments => &[],
    }
}

/// Every console response: the browser never guesses another type than we
/// send (`nosniff`), and under TLS it never reaches the console over
/// plaintext again (HSTS, a year).
pub fn hardened(mut response: Response, tls: bool) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if tls {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
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
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// A refusal by the rules or the gate, said plainly.
pub fn refused(status: &tonic::Status, session: Option<&Session>) -> Response {
    let body = html! { p class="error" role="alert" { (status.message()) } p { a href="/console/home" { "Back" } } };
    respond(http_status(status.code()), frame("Not allowed", session, body))
}

/// The HTTP status a page refused with `code` answers.
pub fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code as C;
    match code {
        C::InvalidArgument | C::OutOfRange => StatusCode::BAD_REQUEST,
        C::Unauthenticated => StatusCode::UNAUTHORIZED,
        C::PermissionDenied => StatusCode::FORBIDDEN,
        C::NotFound => StatusCode::NOT_FOUND,
        C::AlreadyExists | C::Aborted | C::FailedPrecondition => StatusCode::CONFLICT,
        C::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        C::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        C::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The store or the hasher failed: try again later.
pub fn unavailable(failure: &crate::accounts::Failure) -> Response {
    tracing::warn!(error = %failure, "console request failed");
    let body =
        html! { p class="error" role="alert" { "The registry cannot answer right now. Try again in a moment." } };
    respond(StatusCode::SERVICE_UNAVAILABLE, frame("Unavailable", None, body))
}

pub fn not_found() -> Response {
    let body = html! { p { "There is no such page. " a href="/console/home" { "Start again" } } };
    respond(StatusCode::NOT_FOUND, frame("Not found", None, body))
}

/// Signed in with a role the console has no pages for (lookup clients are
/// services: they have RDAP and the gRPC API).
pub fn no_pages(session: &Session) -> Response {
    let body = html! {
        p { "The " (session.role.as_str()) " role has no console pages: it is for services. "
            "Look addresses up with RDAP (" code { "/rdap/ip/{address}" } ") or the gRPC LookupService." }
    };
    respond(StatusCode::OK, frame("Welcome", Some(session), body))
}

/// A page saying the registry could not do what was asked, and why.
pub fn failed(title: &str, status: &tonic::Status, session: &Session) -> Response {
    if status.code() == tonic::Code::PermissionDenied {
        return refused(status, Some(session));
    }
    let body = html! { p class="error" role="alert" { (status.message()) } p { a href="/console/home" { "Back" } } };
    respond(http_status(status.code()), frame(title, Some(session), body))
}

/// Whether `text` looks like a registration reference (`VPN-2026-000123`):
/// the only text a notice link may put on a page, so a crafted link cannot
/// put words there.
pub fn is_reference(text: &str) -> bool {
    !text.is_empty() && text.len() <= 24 && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// A time in Pakistan time (the regulator's calendar).
pub fn pkt(t: OffsetDateTime) -> String {
    t.to_offset(PKT)
        .format(format_description!(
            "[day] [month repr:short] [year], [hour]:[minute] PKT"
        ))
        .unwrap_or_default()
}

/// The PKT time of a wire timestamp, or a dash.
pub fn pkt_of(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| from_timestamp(t).ok())
        .map(pkt)
        .unwrap_or_else(|| "—".to_owned())
}

/// The PKT calendar day of a wire timestamp (`YYYY-MM-DD`, for date inputs).
pub fn pkt_day(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| from_timestamp(t).ok())
        .map(|t| t.to_offset(PKT).date().to_string())
        .unwrap_or_default()
}

/// The day a date input names (`YYYY-MM-DD`); `Err` says why not.
pub fn parse_day(day: &str) -> Result<Date, String> {
    Date::parse(day.trim(), format_description!("[year]-[month]-[day]"))
        .map_err(|_| format!("{day:?} is not a date (YYYY-MM-DD)"))
}

/// The start (00:00 PKT) of the day a date input names, if it names one.
pub fn day_start(day: &str) -> Result<Option<prost_types::Timestamp>, String> {
    if day.trim().is_empty() {
        return Ok(None);
    }
    let date = parse_day(day)?;
    Ok(Some(timestamp(date.with_time(time::Time::MIDNIGHT).assume_offset(PKT))))
}

/// How long ago `since` was, roughly ("3 days", "5 hours", "12 minutes").
pub fn waited(since: OffsetDateTime) -> String {
    let d = OffsetDateTime::now_utc() - since;
    match (d.whole_days(), d.whole_hours(), d.whole_minutes()) {
        (days, _, _) if days >= 1 => format!("{days} day{}", if days == 1 { "" } else { "s" }),
        (_, hours, _) if hours >= 1 => format!("{hours} hour{}", if hours == 1 { "" } else { "s" }),
        (_, _, minutes) if minutes >= 1 => format!("{minutes} minute{}", if minutes == 1 { "" } else { "s" }),
        _ => "under a minute".to_owned(),
    }
}

/// A proto enum value's name said in words: `REGISTRATION_STATE_UNDER_REVIEW`
/// with prefix `REGISTRATION_STATE_` is "Under review".
pub fn words(name: &str, prefix: &str) -> String {
    let rest = name
        .strip_prefix(prefix)
        .unwrap_or(name)
        .replace('_', " ")
        .to_lowercase();
    let mut chars = rest.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A registration state in words.
pub fn state(state: i32) -> String {
    crate::pb::RegistrationState::try_from(state)
        .map(|s| match s {
            crate::pb::RegistrationState::IspVerification => "ISP verification".to_owned(),
            other => words(other.as_str_name(), "REGISTRATION_STATE_"),
        })
        .unwrap_or_default()
}

/// A registration kind in words.
pub fn kind(kind: i32) -> String {
    crate::pb::RegistrationKind::try_from(kind)
        .map(|k| match k {
            crate::pb::RegistrationKind::Vpn => "VPN".to_owned(),
            crate::pb::RegistrationKind::CallCenterVoip => "Call-centre VoIP".to_owned(),
            other => words(other.as_str_name(), "REGISTRATION_KIND_"),
        })
        .unwrap_or_default()
}

/// Every institution category as a choice: (the API's name, in words).
pub fn categories() -> Vec<(String, String)> {
    crate::domain::institution::Category::ALL
        .iter()
        .map(|&c| {
            let words = category(crate::grpc::convert::category_to_pb(c) as i32);
            (c.as_str().to_owned(), words)
        })
        .collect()
}

/// An institution category in words.
pub fn category(category: i32) -> String {
    crate::pb::InstitutionCategory::try_from(category)
        .map(|c| match c {
            crate::pb::InstitutionCategory::ItCompany => "IT company".to_owned(),
            crate::pb::InstitutionCategory::CallCenterBpo => "Call centre / BPO".to_owned(),
            other => words(other.as_str_name(), "INSTITUTION_CATEGORY_"),
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_names_read_as_words() {
        assert_eq!(
            words("REGISTRATION_STATE_UNDER_REVIEW", "REGISTRATION_STATE_"),
            "Under review"
        );
        assert_eq!(state(crate::pb::RegistrationState::NeedsInfo as i32), "Needs info");
        assert_eq!(kind(crate::pb::RegistrationKind::Vpn as i32), "VPN");
    }

    #[test]
    fn a_date_input_is_the_start_of_that_day_in_pakistan() {
        let t = day_start("2027-01-31").unwrap().unwrap();
        let at = crate::grpc::convert::from_timestamp(&t).unwrap();
        assert_eq!(at, time::macros::datetime!(2027-01-30 19:00 UTC));
        assert_eq!(pkt_day(Some(&t)), "2027-01-31");
        assert_eq!(pkt(at), "31 Jan 2027, 00:00 PKT");
        assert!(day_start("31/01/2027").is_err());
        assert_eq!(day_start(" ").unwrap(), None);
    }
}
