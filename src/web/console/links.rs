//! Following e-mailed links: accepting an invitation, resetting a password
//! (and asking for a reset link).

use axum::{
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
};
use maud::html;
use serde::Deserialize;

use super::fields::{Field, FieldErrors, Kind};
use super::public::{LinkForm, LinkQuery, dead_link, foreign_form, hex_only, public_form, violation_errors};
use super::{Conn, Console, SIGN_IN, page};
use crate::accounts::LinkError;

fn invitation_page(c: &Console, token: &str, who: (&str, &str), errors: &FieldErrors, status: StatusCode) -> Response {
    let (email, organisation) = who;
    public_form(c, "Join the VPN registry", status, |form_token| {
        html! {
            p { "You are invited to join " strong { (organisation) } " as " strong { (email) } "." }
            (errors.summary())
            form method="post" action="/console/invitation" {
                input type="hidden" name="csrf" value=(form_token);
                input type="hidden" name="token" value=(token);
                (Field::new("name", "Your name", "").required().max(200).render(errors))
                (Field::new("password", "Choose a password", "").kind(Kind::NewPassword).required().max(256)
                    .hint("At least 12 characters; a few unrelated words make a good one.").render(errors))
                button type="submit" { "Create my account" }
            }
        }
    })
}

pub(super) async fn invitation_form(State(c): State<Console>, Query(q): Query<LinkQuery>) -> Response {
    match c.sessions.accounts.invitation(&q.token).await {
        Ok((email, organisation)) => invitation_page(
            &c,
            &q.token,
            (&email, &organisation),
            &FieldErrors::default(),
            StatusCode::OK,
        ),
        Err(LinkError::Failed(failure)) => page::unavailable(&failure),
        Err(_) => dead_link("invitation", (SIGN_IN, "Sign in")),
    }
}

pub(super) async fn accept_invitation(
    State(c): State<Console>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LinkForm>,
) -> Response {
    if !c.sessions.check_form_token(&headers, &form.csrf) {
        return foreign_form(
            &c,
            "Join",
            &format!("/console/invitation?token={}", hex_only(&form.token)),
        );
    }
    match c
        .sessions
        .accounts
        .accept_invitation(&form.token, &form.name, &form.password)
        .await
    {
        Ok(_) => Redirect::to("/console/sign-in?done=joined").into_response(),
        Err(LinkError::Invalid(v)) => match c.sessions.accounts.invitation(&form.token).await {
            Ok((email, organisation)) => invitation_page(
                &c,
                &form.token,
                (&email, &organisation),
                &violation_errors(v, "", &["name", "password"]),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            Err(_) => dead_link("invitation", (SIGN_IN, "Sign in")),
        },
        Err(LinkError::Taken) => {
            let body = html! { p class="error" role="alert" { "This address already has an account. " a href=(SIGN_IN) { "Sign in" } } };
            page::respond(StatusCode::CONFLICT, page::frame("Already registered", None, body))
        }
        Err(LinkError::Dead) => dead_link("invitation", (SIGN_IN, "Sign in")),
        Err(LinkError::Failed(failure)) => page::unavailable(&failure),
    }
}

fn reset_request_page(c: &Console, notice: Option<&str>, status: StatusCode) -> Response {
    public_form(c, "Reset your password", status, |token| {
        html! {
            @if let Some(n) = notice { p class="notice" role="status" { (n) } }
            p { "We e-mail a link to choose a new password. It works once, for 30 minutes." }
            form method="post" action="/console/password-reset" {
                input type="hidden" name="csrf" value=(token);
                label for="email" { "E-mail address" }
                input type="email" id="email" name="email" autocomplete="username" required;
                button type="submit" { "Send the link" }
            }
        }
    })
}

fn new_password_page(c: &Console, token: &str, errors: &FieldErrors, status: StatusCode) -> Response {
    public_form(c, "Choose a new password", status, |form_token| {
        html! {
            (errors.summary())
            form method="post" action="/console/password-reset" {
                input type="hidden" name="csrf" value=(form_token);
                input type="hidden" name="token" value=(token);
                (Field::new("password", "New password", "").kind(Kind::NewPassword).required().max(256)
                    .hint("At least 12 characters. Every session of yours ends.").render(errors))
                button type="submit" { "Set the new password" }
            }
        }
    })
}

pub(super) async fn reset_form(State(c): State<Console>, Query(q): Query<LinkQuery>) -> Response {
    if q.token.is_empty() {
        return reset_request_page(&c, None, StatusCode::OK);
    }
    match c.sessions.accounts.reset_works(&q.token).await {
        Ok(true) => new_password_page(&c, &q.token, &FieldErrors::default(), StatusCode::OK),
        Ok(false) => dead_link("password reset", ("/console/password-reset", "Ask for a new link")),
        Err(LinkError::Failed(failure)) => page::unavailable(&failure),
        Err(_) => dead_link("password reset", ("/console/password-reset", "Ask for a new link")),
    }
}

#[derive(Deserialize)]
pub(super) struct ResetForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
}

pub(super) async fn reset(
    State(c): State<Console>,
    conn: Conn,
    headers: HeaderMap,
    axum::Form(form): axum::Form<ResetForm>,
) -> Response {
    if !c.sessions.check_form_token(&headers, &form.csrf) {
        return foreign_form(&c, "Reset your password", "/console/password-reset");
    }
    if form.token.is_empty() {
        // The same answer whether or not the address has an account.
        return match c.sessions.accounts.request_reset(&form.email, &c.base_url(&conn)).await {
            Ok(()) => reset_request_page(
                &c,
                Some("If this address has an account, a link is on its way. It works for 30 minutes."),
                StatusCode::OK,
            ),
            Err(LinkError::Failed(failure)) => page::unavailable(&failure),
            Err(_) => reset_request_page(&c, None, StatusCode::BAD_REQUEST),
        };
    }
    match c.sessions.accounts.reset_password(&form.token, &form.password).await {
        Ok(()) => Redirect::to("/console/sign-in?done=reset").into_response(),
        Err(LinkError::Invalid(v)) => new_password_page(
            &c,
            &form.token,
            &violation_errors(v, "", &["password"]),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(LinkError::Failed(failure)) => page::unavailable(&failure),
        Err(_) => dead_link("password reset", ("/console/password-reset", "Ask for a new link")),
    }
}
