//! Signing in and out. The rules (same answer for an unknown address and a
//! wrong password, growing delays, second factors) are `accounts`'.

use axum::{
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use maud::html;
use serde::Deserialize;

use super::account::SECOND_FACTOR;
use super::public::{Notice, foreign_form, public_form};
use super::{Conn, Console, SIGN_IN, home_of, page};
use crate::accounts::{Attempt, SignInError};

pub(super) async fn sign_in_form(State(c): State<Console>, Query(n): Query<Notice>) -> Response {
    let notice = match n.done.as_str() {
        "verified" => Some("Your address is confirmed and your account is ready: sign in."),
        "joined" => Some("Your account is ready: sign in."),
        "reset" => Some("Your password is changed and every session was ended: sign in with the new one."),
        "signed-out" => Some("You are signed out."),
        _ => None,
    };
    sign_in_page(&c, notice, None, "", StatusCode::OK)
}

fn sign_in_page(c: &Console, notice: Option<&str>, error: Option<&str>, email: &str, status: StatusCode) -> Response {
    public_form(c, "Sign in", status, |token| {
        html! {
            @if let Some(n) = notice { p class="notice" role="status" { (n) } }
            @if let Some(e) = error { p class="error" role="alert" { "Not signed in: " (e) } }
            form method="post" action="/console/sign-in" {
                input type="hidden" name="csrf" value=(token);
                label for="email" { "E-mail address" }
                input type="email" id="email" name="email" value=(email) autocomplete="username" required;
                label for="password" { "Password" }
                input type="password" id="password" name="password" autocomplete="current-password" required;
                label for="code" { "One-time code (if you enrolled an authenticator app)" }
                small { "Six digits from the app, or one of your recovery codes." } br;
                input type="text" id="code" name="code" inputmode="numeric" autocomplete="one-time-code";
                button type="submit" { "Sign in" }
            }
            p { a href="/console/password-reset" { "Forgot your password?" } }
            p { "New here? " a href="/console/sign-up" { "Register as a company or as an individual" } }
        }
    })
}

#[derive(Deserialize)]
pub(super) struct SignInForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf: String,
}

fn retry_after(mut response: Response, wait: std::time::Duration) -> Response {
    if let Ok(value) = HeaderValue::try_from(wait.as_secs().max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

pub(super) async fn sign_in(
    State(c): State<Console>,
    conn: Conn,
    headers: HeaderMap,
    axum::Form(form): axum::Form<SignInForm>,
) -> Response {
    if !c.sessions.check_form_token(&headers, &form.csrf) {
        return foreign_form(&c, "Sign in", SIGN_IN);
    }
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let attempt = Attempt {
        email: &form.email,
        password: &form.password,
        code: &form.code,
        peer: conn.peer(),
        user_agent,
    };
    let signed_in = match c.sessions.accounts.sign_in(&attempt).await {
        Ok(signed_in) => signed_in,
        Err(SignInError::Wrong) => {
            // The address's failures are counted too (as failed token
            // authentications are): one address cannot try many accounts.
            let over = conn.peer().and_then(|addr| c.gate.failed_sign_in(addr).err());
            let page = |why: &str, status| sign_in_page(&c, None, Some(why), &form.email, status);
            return match over {
                Some(wait) => retry_after(
                    page(
                        "too many failed sign-ins from your address; wait a little",
                        StatusCode::TOO_MANY_REQUESTS,
                    ),
                    wait,
                ),
                None => page(&SignInError::Wrong.to_string(), StatusCode::UNAUTHORIZED),
            };
        }
        Err(SignInError::Throttled(wait)) => {
            let why = SignInError::Throttled(wait).to_string();
            let page = sign_in_page(&c, None, Some(&why), &form.email, StatusCode::TOO_MANY_REQUESTS);
            return retry_after(page, wait);
        }
        Err(SignInError::Failed(failure)) => return page::unavailable(&failure),
    };
    let user = &signed_in.user;
    let next = if user.must_enrol_second_factor() {
        SECOND_FACTOR
    } else {
        home_of(user.kind()).unwrap_or("/console/home")
    };
    let mut response = Redirect::to(next).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, c.sessions.set_cookie(&signed_in.session_id));
    response
}

#[derive(Deserialize)]
pub(super) struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

pub(super) async fn sign_out(
    State(c): State<Console>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<CsrfOnly>,
) -> Response {
    if let Ok(Some(s)) = c.sessions.find(&headers).await
        && s.csrf == form.csrf
    {
        let current = crate::accounts::CurrentUser {
            user: s.user.clone(),
            category: s.principal.institution_category,
            csrf: s.csrf.clone(),
            session_hash: s.hash,
        };
        if let Err(failure) = c.sessions.accounts.sign_out(&current).await {
            return page::unavailable(&failure);
        }
    }
    let mut response = Redirect::to("/console/sign-in?done=signed-out").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, c.sessions.clear_cookie());
    response
}
