//! What every form posted before a session shares: a token that must equal
//! its own cookie's (see `session`), the page refusing a form from elsewhere,
//! and the e-mailed links' query and form.

use axum::{
    http::{StatusCode, header},
    response::Response,
};
use maud::{Markup, html};
use serde::Deserialize;

use super::fields::FieldErrors;
use super::{Console, page};
use crate::domain::Violations;

#[derive(Deserialize, Default)]
pub(super) struct Notice {
    #[serde(default)]
    pub(super) done: String,
}

/// A page with a form posted before any session: a fresh form token in the
/// form (`render` puts it there) and in its cookie.
pub(super) fn public_form(
    c: &Console,
    title: &str,
    status: StatusCode,
    render: impl FnOnce(&str) -> Markup,
) -> Response {
    let token = c.sessions.issue_form_token();
    let mut response = page::respond(status, page::frame(title, None, render(&token)));
    response
        .headers_mut()
        .append(header::SET_COOKIE, c.sessions.set_form_cookie(&token));
    response
}

/// The refusal of a session-less form whose token does not match its cookie.
pub(super) fn foreign_form(c: &Console, title: &str, again: &str) -> Response {
    let body = html! {
        p class="error" role="alert" { "This form was not sent by our page (or your browser refused our cookie). " }
        p { a href=(again) { "Open the form again" } }
    };
    let _ = c;
    page::respond(StatusCode::FORBIDDEN, page::frame(title, None, body))
}

/// Field errors from a refusal's violations (`prefix` stripped).
pub(super) fn violation_errors(v: Violations, prefix: &str, fields: &[&str]) -> FieldErrors {
    FieldErrors::from_status(&tonic::Status::from(v), prefix, fields)
}

#[derive(Deserialize, Default)]
pub(super) struct LinkQuery {
    #[serde(default)]
    pub(super) token: String,
}

/// The page for a link that no longer works.
pub(super) fn dead_link(what: &str, again: (&str, &str)) -> Response {
    let body = html! {
        p class="error" role="alert" { "This " (what) " link is unknown, already used or expired." }
        p { a href=(again.0) { (again.1) } }
    };
    page::respond(StatusCode::GONE, page::frame("Link expired", None, body))
}

#[derive(Deserialize)]
pub(super) struct LinkForm {
    #[serde(default)]
    pub(super) token: String,
    #[serde(default)]
    pub(super) csrf: String,
    #[serde(default)]
    pub(super) name: String,
    #[serde(default)]
    pub(super) password: String,
}

/// A link's token as it may appear in a link of ours (hex), else nothing.
pub(super) fn hex_only(token: &str) -> &str {
    if token.len() <= 64 && token.chars().all(|c| c.is_ascii_hexdigit()) {
        token
    } else {
        ""
    }
}
