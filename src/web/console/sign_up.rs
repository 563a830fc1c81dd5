//! Self-registration: companies and freelancers sign up, and the e-mailed
//! link's confirmation creates the institution with its first owner.

use axum::{
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
};
use maud::html;
use serde::Deserialize;

use super::admin::{InstitutionForm, PROFILE_FIELDS};
use super::fields::{Field, FieldErrors, Kind, select};
use super::public::{LinkForm, LinkQuery, dead_link, foreign_form, hex_only, public_form, violation_errors};
use super::{Conn, Console, SIGN_IN, page};
use crate::accounts::{LinkError, SignUp};
use crate::grpc::convert;
use crate::pb;

/// The sign-up form's fields, as typed: the institution's (as an
/// administrator's enrolment form has them; its contact address is the
/// account's), then the person's.
#[derive(Deserialize, Default)]
pub(super) struct SignUpForm {
    #[serde(flatten)]
    institution: InstitutionForm,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

impl SignUpForm {
    fn institution(&self) -> Result<pb::Institution, FieldErrors> {
        let mut i = self.institution.clone();
        i.contact_email = self.email.clone();
        i.to_pb()
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
                    (select("category", "You are", &f.institution.category, &self_service_categories(), errors))
                    (Field::new("legal_name", "Registered name (a freelancer: your full name)", &f.institution.legal_name).required().render(errors))
                    (Field::new("cnic", "CNIC of the responsible person", &f.institution.cnic).required().max(15)
                        .pattern("[1-7][0-9]{4}-?[0-9]{7}-?[0-9]").hint("13 digits, such as 35202-1234567-1.").render(errors))
                    (Field::new("ntn", "NTN (companies)", &f.institution.ntn).max(15).hint("7 digits with an optional check digit (1234567-8).").render(errors))
                    (Field::new("secp_number", "SECP incorporation number (if incorporated)", &f.institution.secp_number).max(40).render(errors))
                    (Field::new("pseb_number", "PSEB registration number (IT companies, call centres)", &f.institution.pseb_number).max(40).render(errors))
                    (Field::new("pseb_expiry", "PSEB registration expires", &f.institution.pseb_expiry).kind(Kind::Date).render(errors))
                    (Field::new("contact_phone", "Contact phone", &f.institution.contact_phone).kind(Kind::Tel).required().max(20)
                        .hint("Such as +923001234567 or 0300 1234567.").render(errors))
                    (select("language", "Messages are written in", &f.institution.language,
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
    if !c.sessions.check_form_token(&headers, &form.institution.csrf) {
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
            let mut fields = PROFILE_FIELDS.to_vec();
            fields.push("category");
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
