//! The signed-in person's account page: password, authenticator app and
//! recovery codes, where they are signed in.

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use maud::{PreEscaped, html};
use serde::Deserialize;

use super::fields::{Field, FieldErrors, Kind};
use super::public::Notice;
use super::{Console, Visitor, home_of, page};
use crate::auth::totp;
use crate::db::sessions;

/// Where staff and ISP desks enrol their second factor.
pub const SECOND_FACTOR: &str = "/console/account/second-factor";

/// The signed-in user's session as `accounts` takes it.
fn current(v: &Visitor) -> crate::accounts::CurrentUser {
    crate::accounts::CurrentUser {
        user: v.session.user.clone(),
        category: v.session.principal.institution_category,
        csrf: v.session.csrf.clone(),
        session_hash: v.session.hash,
    }
}

pub(super) async fn overview(State(c): State<Console>, v: Visitor, Query(n): Query<Notice>) -> Response {
    account_page(&c, &v, notice_of(&n.done), &FieldErrors::default(), StatusCode::OK).await
}

fn notice_of(done: &str) -> Option<&'static str> {
    match done {
        "password" => Some("Password changed; your other sessions were ended."),
        "revoked" => Some("That session is ended."),
        "enrolled" => Some("Second factor enrolled; your other sessions were ended."),
        _ => None,
    }
}

async fn account_page(
    c: &Console,
    v: &Visitor,
    notice: Option<&str>,
    errors: &FieldErrors,
    status: StatusCode,
) -> Response {
    let listed = match sessions::list(c.sessions.accounts.pool(), v.session.user.id).await {
        Ok(listed) => listed,
        Err(e) => return page::unavailable(&e.into()),
    };
    let this = &hex(&v.session.hash)[..16];
    let u = &v.session.user;
    let body = html! {
        @if let Some(n) = notice { p class="notice" role="status" { (n) } }
        dl {
            dt { "Name" } dd { (u.name) }
            dt { "E-mail" } dd { (u.email) }
            dt { "Role" } dd { (u.membership.label()) }
            dt { "Second factor" } dd {
                @if u.totp_enrolled { "Enrolled. " a href=(SECOND_FACTOR) { "Replace it" } }
                @else { "Not enrolled. " a href=(SECOND_FACTOR) { "Enrol an authenticator app" } }
            }
        }
        h2 { "Signed in on" }
        table {
            thead { tr { th { "Since" } th { "Last seen" } th { "Browser" } th { "Address" } th { "" } } }
            tbody {
                @for s in &listed {
                    tr {
                        td { (page::pkt(s.create_time)) }
                        td { (page::pkt(s.last_seen_time)) }
                        td { (s.user_agent) }
                        td { (s.address.map(|a| a.addr().to_string()).unwrap_or_default()) }
                        td {
                            @if s.handle == this { "This browser" } @else {
                                form method="post" action="/console/account/sessions" {
                                    input type="hidden" name="csrf" value=(v.session.csrf);
                                    input type="hidden" name="session" value=(s.handle);
                                    button type="submit" { "Sign out there" }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Change your password" }
        (errors.summary())
        form method="post" action="/console/account/password" {
            input type="hidden" name="csrf" value=(v.session.csrf);
            label for="current" { "Current password" }
            input type="password" id="current" name="current" autocomplete="current-password" required;
            (Field::new("password", "New password", "").kind(Kind::NewPassword).required().max(256)
                .hint("At least 12 characters. Your other sessions end.").render(errors))
            button type="submit" { "Change password" }
        }
    };
    page::respond(status, page::frame("Your account", Some(&v.session), body))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Deserialize)]
pub(super) struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current: String,
    #[serde(default)]
    password: String,
}

pub(super) async fn change_password(
    State(c): State<Console>,
    v: Visitor,
    axum::Form(form): axum::Form<PasswordForm>,
) -> Response {
    if let Err(refusal) = v.check_csrf(&form.csrf) {
        return *refusal;
    }
    let u = &v.session.user;
    let new = match crate::domain::account::Password::parse(&form.password, &[&u.email, &u.name]) {
        Ok(p) => p,
        Err(e) => {
            let mut errors = FieldErrors::default();
            errors.add("password", e.0);
            return account_page(&c, &v, None, &errors, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
    };
    match c
        .sessions
        .accounts
        .change_password(&current(&v), &form.current, &new)
        .await
    {
        Ok(true) => Redirect::to("/console/account?done=password").into_response(),
        Ok(false) => {
            let errors = FieldErrors::message("The current password is wrong; nothing changed.");
            account_page(&c, &v, None, &errors, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(failure) => page::unavailable(&failure),
    }
}

#[derive(Deserialize)]
pub(super) struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    session: String,
}

pub(super) async fn revoke_session(
    State(c): State<Console>,
    v: Visitor,
    axum::Form(form): axum::Form<RevokeForm>,
) -> Response {
    if let Err(refusal) = v.check_csrf(&form.csrf) {
        return *refusal;
    }
    let actor = crate::accounts::actor_of(&v.session.user);
    match sessions::revoke(c.sessions.accounts.pool(), v.session.user.id, &form.session, &actor).await {
        Ok(_) => Redirect::to("/console/account?done=revoked").into_response(),
        Err(e) => page::unavailable(&e.into()),
    }
}

/// The enrolment page: a new secret as a QR code and in base32, and the
/// form that proves the app has it.
fn second_factor_page(v: &Visitor, secret: &[u8], error: Option<&str>, status: StatusCode) -> Response {
    let Some((url, base32)) = totp::enrolment(secret, &v.session.user.email) else {
        return page::respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            page::frame(
                "Second factor",
                Some(&v.session),
                html! { p { "Could not make a secret." } },
            ),
        );
    };
    let qr = qrcode::QrCode::new(url.as_bytes())
        .map(|code| {
            code.render::<qrcode::render::svg::Color>()
                .min_dimensions(200, 200)
                .build()
        })
        .unwrap_or_default();
    let must = v.session.user.must_enrol_second_factor();
    let body = html! {
        @if must { p class="notice" role="status" { "Regulator staff and ISP desks use a second factor: enrol one before anything else." } }
        @if let Some(e) = error { p class="error" role="alert" { (e) } }
        p { "Open an authenticator app (such as FreeOTP, Google Authenticator or Microsoft Authenticator) and scan this code:" }
        div role="img" aria-label="QR code of the enrolment link" { (PreEscaped(qr)) }
        p { "Or type this key into the app: " code id="totp-secret" { (base32) } }
        form method="post" action=(SECOND_FACTOR) {
            input type="hidden" name="csrf" value=(v.session.csrf);
            input type="hidden" name="secret" value=(base32);
            label for="code" { "The six digits the app shows now" }
            input type="text" id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required;
            button type="submit" { "Enrol" }
        }
    };
    page::respond(status, page::frame("Second factor", Some(&v.session), body))
}

pub(super) async fn second_factor_form(v: Visitor) -> Response {
    second_factor_page(&v, &totp::new_secret(), None, StatusCode::OK)
}

#[derive(Deserialize)]
pub(super) struct EnrolForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    code: String,
}

pub(super) async fn enrol_second_factor(
    State(c): State<Console>,
    v: Visitor,
    axum::Form(form): axum::Form<EnrolForm>,
) -> Response {
    if let Err(refusal) = v.check_csrf(&form.csrf) {
        return *refusal;
    }
    let Some(secret) = totp::decode_secret(&form.secret).filter(|s| s.len() >= 16) else {
        return second_factor_page(
            &v,
            &totp::new_secret(),
            Some("The key was damaged; scan the new one."),
            StatusCode::BAD_REQUEST,
        );
    };
    match c
        .sessions
        .accounts
        .enrol_second_factor(&current(&v), &secret, &form.code)
        .await
    {
        Ok(Some(codes)) => {
            let body = html! {
                p class="notice" role="status" { "Your authenticator app is enrolled; your other sessions were ended." }
                h2 { "Recovery codes" }
                p { "Each works once, in place of a code from the app, if you lose it. Keep them somewhere safe: they are shown only now." }
                ul id="recovery-codes" { @for code in &codes { li { code { (code) } } } }
                p { a href=(home_of(v.session.role).unwrap_or("/console/home")) { "Continue" } }
            };
            page::respond(
                StatusCode::OK,
                page::frame("Second factor enrolled", Some(&v.session), body),
            )
        }
        Ok(None) => second_factor_page(
            &v,
            &secret,
            Some("That code does not match; check the app's clock and try the next code."),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(failure) => page::unavailable(&failure),
    }
}
