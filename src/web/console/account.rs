//! People's own pages: signing in and out, signing up, following e-mailed
//! links (verification, invitation, password reset), and the account page
//! (password, second factor, sessions). The rules are `accounts`'; these
//! pages only read forms and say what happened.

use axum::{
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;

use super::fields::{Field, FieldErrors, Kind, select};
use super::{Conn, Console, SIGN_IN, Visitor, home_of, page};
use crate::accounts::{Attempt, LinkError, SignInError, SignUp};
use crate::auth::totp;
use crate::db::sessions;
use crate::domain::Violations;
use crate::grpc::convert;
use crate::pb;

/// Where staff and ISP desks enrol their second factor.
pub const SECOND_FACTOR: &str = "/console/account/second-factor";

/// A page with a form posted before any session: a fresh form token in the
/// form (`render` puts it there) and in its cookie.
fn public_form(c: &Console, title: &str, status: StatusCode, render: impl FnOnce(&str) -> Markup) -> Response {
    let token = c.sessions.issue_form_token();
    let mut response = page::respond(status, page::frame(title, None, render(&token)));
    response
        .headers_mut()
        .append(header::SET_COOKIE, c.sessions.set_form_cookie(&token));
    response
}

/// The refusal of a session-less form whose token does not match its cookie.
fn foreign_form(c: &Console, title: &str, again: &str) -> Response {
    let body = html! {
        p class="error" role="alert" { "This form was not sent by our page (or your browser refused our cookie). " }
        p { a href=(again) { "Open the form again" } }
    };
    let _ = c;
    page::respond(StatusCode::FORBIDDEN, page::frame(title, None, body))
}

/// Field errors from a refusal's violations (`prefix` stripped).
fn violation_errors(v: Violations, prefix: &str, fields: &[&str]) -> FieldErrors {
    FieldErrors::from_status(&tonic::Status::from(v), prefix, fields)
}

#[derive(Deserialize, Default)]
pub(super) struct Notice {
    #[serde(default)]
    done: String,
}

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

/// The sign-up form's fields, as typed.
#[derive(Deserialize, Default)]
pub(super) struct SignUpForm {
    /// IT_COMPANY, CALL_CENTER_BPO, COMPANY or FREELANCER.
    #[serde(default)]
    category: String,
    #[serde(default)]
    legal_name: String,
    #[serde(default)]
    cnic: String,
    #[serde(default)]
    ntn: String,
    #[serde(default)]
    secp_number: String,
    #[serde(default)]
    pseb_number: String,
    #[serde(default)]
    pseb_expiry: String,
    #[serde(default)]
    contact_phone: String,
    #[serde(default)]
    language: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

/// The institution fields a sign-up carries (as CreateInstitution names them).
const SIGN_UP_FIELDS: &[&str] = &[
    "category",
    "legal_name",
    "cnic",
    "ntn",
    "secp_number",
    "pseb_number",
    "pseb_expiry",
    "contact_email",
    "contact_phone",
    "language",
];

impl SignUpForm {
    fn institution(&self) -> Result<pb::Institution, FieldErrors> {
        let pseb_expiry = match self.pseb_expiry.trim() {
            "" => None,
            day => Some(page::parse_day(day).map(convert::date).map_err(|why| {
                let mut errors = FieldErrors::default();
                errors.add("pseb_expiry", why);
                errors
            })?),
        };
        let t = |s: &str| s.trim().to_owned();
        Ok(pb::Institution {
            category: pb::InstitutionCategory::from_str_name(&format!("INSTITUTION_CATEGORY_{}", self.category))
                .map_or(0, |c| c as i32),
            legal_name: t(&self.legal_name),
            cnic: t(&self.cnic),
            ntn: t(&self.ntn),
            secp_number: t(&self.secp_number),
            pseb_number: t(&self.pseb_number),
            pseb_expiry,
            contact_email: t(&self.email),
            contact_phone: t(&self.contact_phone),
            language: pb::Language::from_str_name(&format!("LANGUAGE_{}", self.language)).map_or(0, |l| l as i32),
            ..Default::default()
        })
    }
}

/// Who may sign themselves up, in words.
fn self_service_categories() -> Vec<(String, String)> {
    let mut choices = vec![(String::new(), "Choose…".to_owned())];
    choices.extend(
        crate::accounts::SELF_REGISTERED
            .iter()
            .map(|&c| (c.as_str().to_owned(), page::category(convert::category_to_pb(c) as i32))),
    );
    choices
}

fn sign_up_page(c: &Console, f: &SignUpForm, errors: &FieldErrors, status: StatusCode) -> Response {
    public_form(c, "Register as a company or as an individual", status, |token| {
        html! {
            p { "Companies (IT companies and software houses, call centres and BPOs, other companies) and individual "
                "freelancers register here. Banks, foreign missions and government bodies are enrolled by the regulator, "
                "which then invites their staff." }
            (errors.summary())
            form method="post" action="/console/sign-up" data-validate novalidate {
                input type="hidden" name="csrf" value=(token);
                fieldset {
                    legend { "Who registers" }
                    (select("category", "You are", &f.category, &self_service_categories(), errors))
                    (Field::new("legal_name", "Registered name (a freelancer: your full name)", &f.legal_name).required().render(errors))
                    (Field::new("cnic", "CNIC of the responsible person", &f.cnic).required().max(15)
                        .pattern("[1-7][0-9]{4}-?[0-9]{7}-?[0-9]").hint("13 digits, such as 35202-1234567-1.").render(errors))
                    (Field::new("ntn", "NTN (companies)", &f.ntn).max(15).hint("7 digits with an optional check digit (1234567-8).").render(errors))
                    (Field::new("secp_number", "SECP incorporation number (if incorporated)", &f.secp_number).max(40).render(errors))
                    (Field::new("pseb_number", "PSEB registration number (IT companies, call centres)", &f.pseb_number).max(40).render(errors))
                    (Field::new("pseb_expiry", "PSEB registration expires", &f.pseb_expiry).kind(Kind::Date).render(errors))
                    (Field::new("contact_phone", "Contact phone", &f.contact_phone).kind(Kind::Tel).required().max(20)
                        .hint("Such as +923001234567 or 0300 1234567.").render(errors))
                    (select("language", "Messages are written in", &f.language,
                        &[("ENGLISH".to_owned(), "English".to_owned()), ("URDU".to_owned(), "اردو (Urdu)".to_owned())], errors))
                }
                fieldset {
                    legend { "Your account" }
                    (Field::new("name", "Your name", &f.name).required().max(200).render(errors))
                    (Field::new("email", "Your e-mail address (we send a link to confirm it)", &f.email).kind(Kind::Email).required().render(errors))
                    (Field::new("password", "Password", "").kind(Kind::NewPassword).required().max(256)
                        .hint("At least 12 characters; a few unrelated words make a good one. Common passwords are refused.").render(errors))
                }
                button type="submit" { "Register" }
            }
        }
    })
}

pub(super) async fn sign_up_form(State(c): State<Console>) -> Response {
    sign_up_page(&c, &SignUpForm::default(), &FieldErrors::default(), StatusCode::OK)
}

pub(super) async fn sign_up(
    State(c): State<Console>,
    conn: Conn,
    headers: HeaderMap,
    axum::Form(form): axum::Form<SignUpForm>,
) -> Response {
    if !c.sessions.check_form_token(&headers, &form.csrf) {
        return foreign_form(&c, "Register", "/console/sign-up");
    }
    let institution = match form.institution() {
        Ok(i) => i,
        Err(errors) => return sign_up_page(&c, &form, &errors, StatusCode::UNPROCESSABLE_ENTITY),
    };
    let s = SignUp {
        institution: &institution,
        name: &form.name,
        email: &form.email,
        password: &form.password,
    };
    match c.sessions.accounts.sign_up(&s, &c.base_url(&conn)).await {
        Ok(()) => {
            let body = html! {
                p class="notice" role="status" { "Almost done: we sent a link to " strong { (form.email.trim()) } "." }
                p { "Open it within 24 hours to confirm your address; your registration is created then. "
                    "Nothing arrived? Check the spam folder, or register again." }
            };
            page::respond(StatusCode::OK, page::frame("Check your e-mail", None, body))
        }
        Err(LinkError::Invalid(v)) => {
            let mut fields = SIGN_UP_FIELDS.to_vec();
            fields.extend(["name", "email", "password"]);
            let mut errors = violation_errors(v, "institution.", &fields);
            // The contact address is the account's.
            for e in errors.of("contact_email").to_vec() {
                errors.add("email", e);
            }
            sign_up_page(&c, &form, &errors, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(LinkError::Taken) => {
            let errors = FieldErrors::message(
                "This e-mail address, CNIC or NTN is already registered. If it is yours, sign in (or reset your password); \
                 if a colleague registered your organisation, ask them to invite you.",
            );
            sign_up_page(&c, &form, &errors, StatusCode::CONFLICT)
        }
        Err(LinkError::Dead) => page::not_found(),
        Err(LinkError::Failed(failure)) => page::unavailable(&failure),
    }
}

#[derive(Deserialize, Default)]
pub(super) struct LinkQuery {
    #[serde(default)]
    token: String,
}

/// The page for a link that no longer works.
fn dead_link(what: &str, again: (&str, &str)) -> Response {
    let body = html! {
        p class="error" role="alert" { "This " (what) " link is unknown, already used or expired." }
        p { a href=(again.0) { (again.1) } }
    };
    page::respond(StatusCode::GONE, page::frame("Link expired", None, body))
}

/// A confirmation step: e-mail scanners open links, so following one only
/// shows a button; the button does it.
pub(super) async fn verify_form(State(c): State<Console>, Query(q): Query<LinkQuery>) -> Response {
    public_form(&c, "Confirm your e-mail address", StatusCode::OK, |token| {
        html! {
            p { "Confirm your address to create your account and your institution's record." }
            form method="post" action="/console/sign-up/verify" {
                input type="hidden" name="csrf" value=(token);
                input type="hidden" name="token" value=(q.token);
                button type="submit" { "Confirm and create my account" }
            }
        }
    })
}

#[derive(Deserialize)]
pub(super) struct LinkForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

pub(super) async fn verify(
    State(c): State<Console>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LinkForm>,
) -> Response {
    if !c.sessions.check_form_token(&headers, &form.csrf) {
        return foreign_form(
            &c,
            "Confirm",
            &format!("/console/sign-up/verify?token={}", hex_only(&form.token)),
        );
    }
    match c.sessions.accounts.verify_sign_up(&form.token).await {
        Ok(_) => Redirect::to("/console/sign-in?done=verified").into_response(),
        Err(LinkError::Dead) => dead_link("confirmation", ("/console/sign-up", "Register again")),
        Err(LinkError::Taken) => {
            let body = html! {
                p class="error" role="alert" { "This e-mail address, CNIC or NTN was registered meanwhile; nothing was created." }
                p { a href=(SIGN_IN) { "Sign in" } }
            };
            page::respond(StatusCode::CONFLICT, page::frame("Already registered", None, body))
        }
        Err(LinkError::Invalid(v)) => {
            let body = html! { p class="error" role="alert" { "The registration no longer passes the rules: " (v.to_string()) } };
            page::respond(StatusCode::UNPROCESSABLE_ENTITY, page::frame("Not created", None, body))
        }
        Err(LinkError::Failed(failure)) => page::unavailable(&failure),
    }
}

/// A link's token as it may appear in a link of ours (hex), else nothing.
fn hex_only(token: &str) -> &str {
    if token.len() <= 64 && token.chars().all(|c| c.is_ascii_hexdigit()) {
        token
    } else {
        ""
    }
}

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
