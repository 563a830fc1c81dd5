//! The administrator's pages: institutions (enrol, edit, list by category)
//! and the licensed ISPs.

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use maud::{Markup, html};
use serde::Deserialize;

use super::fields::{self, Field, FieldErrors, Kind};
use super::{Console, Id, Refused, Visitor, page};
use crate::grpc::convert;
use crate::pb::{self, institution_service_server::InstitutionService, isp_service_server::IspService};

const LIST: &str = "/vpnregistry.v1.InstitutionService/ListInstitutions";
const GET: &str = "/vpnregistry.v1.InstitutionService/GetInstitution";
const CREATE: &str = "/vpnregistry.v1.InstitutionService/CreateInstitution";
const UPDATE: &str = "/vpnregistry.v1.InstitutionService/UpdateInstitution";
const ISPS: &str = "/vpnregistry.v1.IspService/ListIsps";

#[derive(Deserialize, Default)]
pub(super) struct ListQuery {
    #[serde(default)]
    after: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    done: String,
}

pub(super) async fn institutions(State(c): State<Console>, v: Visitor, Query(q): Query<ListQuery>) -> Response {
    let category =
        pb::InstitutionCategory::from_str_name(&format!("INSTITUTION_CATEGORY_{}", q.category)).map_or(0, |c| c as i32);
    let msg = pb::ListInstitutionsRequest {
        page_size: page::PAGE_SIZE,
        page_token: q.after.clone(),
        category,
    };
    let list = match c.call(&v, LIST, msg, |req| c.institutions.list_institutions(req)).await {
        Ok(list) => list,
        Err(refused) => return refused.page("Institutions", &v),
    };
    let notice = match q.done.as_str() {
        "created" => Some(
            "Institution enrolled. Invite its first owner from People with its id (in the list below); the owner then invites colleagues and makes the back office's API keys.",
        ),
        "updated" => Some("Institution updated."),
        _ => None,
    };
    let body = html! {
        @if let Some(n) = notice { p class="notice" role="status" { (n) } }
        p { a href="/console/institutions/new" { "Enrol an institution" } }
        form method="get" action="/console/institutions" {
            label for="q-category" { "Category" }
            select id="q-category" name="category" {
                option value="" { "Any" }
                @for (value, label) in page::categories() { option value=(value) selected[value == q.category] { (label) } }
            }
            button type="submit" { "Show" }
        }
        @if list.institutions.is_empty() {
            p { "No institutions." }
        } @else {
            table {
                thead { tr { th { "Name" } th { "Category" } th { "Contact" } th { "Enrolled" } th { "Id (for its first owner's invitation)" } } }
                tbody {
                    @for i in &list.institutions {
                        tr {
                            td { a href={ "/console/institutions/" (i.id) } { (i.legal_name) } }
                            td { (page::category(i.category)) }
                            td { (i.contact_email) br; (i.contact_phone) }
                            td { (page::pkt_of(i.create_time.as_ref())) }
                            td { code { (i.id) } }
                        }
                    }
                }
            }
        }
        @if !list.next_page_token.is_empty() {
            p { a href={ "/console/institutions?category=" (q.category) "&after=" (list.next_page_token) } { "Next page" } }
        }
    };
    page::respond(StatusCode::OK, page::frame("Institutions", Some(&v.session), body))
}

/// The institution form's fields, as typed.
#[derive(Deserialize, Default, Clone)]
pub(super) struct InstitutionForm {
    #[serde(default)]
    pub(super) category: String,
    #[serde(default)]
    pub(super) legal_name: String,
    #[serde(default)]
    pub(super) cnic: String,
    #[serde(default)]
    pub(super) ntn: String,
    #[serde(default)]
    pub(super) secp_number: String,
    #[serde(default)]
    pub(super) pseb_number: String,
    #[serde(default)]
    pub(super) pseb_expiry: String,
    #[serde(default)]
    pub(super) sbp_licence: String,
    #[serde(default)]
    pub(super) accreditation_ref: String,
    #[serde(default)]
    pub(super) country: String,
    #[serde(default)]
    pub(super) contact_email: String,
    #[serde(default)]
    pub(super) contact_phone: String,
    /// ENGLISH or URDU (the API's Language without its prefix).
    #[serde(default)]
    pub(super) language: String,
    #[serde(default)]
    pub(super) csrf: String,
    #[serde(default)]
    pub(super) request_id: String,
    #[serde(default)]
    pub(super) etag: String,
}

/// The profile fields (as the API's `Institution` names them), for masks.
pub(super) const PROFILE_FIELDS: &[&str] = &[
    "legal_name",
    "cnic",
    "ntn",
    "secp_number",
    "pseb_number",
    "pseb_expiry",
    "sbp_licence",
    "accreditation_ref",
    "country",
    "contact_email",
    "contact_phone",
    "language",
];

impl InstitutionForm {
    fn of(i: &pb::Institution) -> Self {
        Self {
            category: pb::InstitutionCategory::try_from(i.category)
                .map(|c| c.as_str_name().trim_start_matches("INSTITUTION_CATEGORY_").to_owned())
                .unwrap_or_default(),
            legal_name: i.legal_name.clone(),
            cnic: i.cnic.clone(),
            ntn: i.ntn.clone(),
            secp_number: i.secp_number.clone(),
            pseb_number: i.pseb_number.clone(),
            pseb_expiry: i
                .pseb_expiry
                .as_ref()
                .and_then(|d| convert::from_date(d).ok())
                .map(|d| d.to_string())
                .unwrap_or_default(),
            sbp_licence: i.sbp_licence.clone(),
            accreditation_ref: i.accreditation_ref.clone(),
            country: i.country.clone(),
            contact_email: i.contact_email.clone(),
            contact_phone: i.contact_phone.clone(),
            language: pb::Language::try_from(i.language)
                .map(|l| l.as_str_name().trim_start_matches("LANGUAGE_").to_owned())
                .unwrap_or_default(),
            etag: i.etag.clone(),
            ..Self::default()
        }
    }

    fn values(&self) -> [(&'static str, &str); 12] {
        [
            ("legal_name", &self.legal_name),
            ("cnic", &self.cnic),
            ("ntn", &self.ntn),
            ("secp_number", &self.secp_number),
            ("pseb_number", &self.pseb_number),
            ("pseb_expiry", &self.pseb_expiry),
            ("sbp_licence", &self.sbp_licence),
            ("accreditation_ref", &self.accreditation_ref),
            ("country", &self.country),
            ("contact_email", &self.contact_email),
            ("contact_phone", &self.contact_phone),
            ("language", &self.language),
        ]
    }

    pub(super) fn to_pb(&self) -> Result<pb::Institution, FieldErrors> {
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
            sbp_licence: t(&self.sbp_licence),
            accreditation_ref: t(&self.accreditation_ref),
            country: t(&self.country),
            contact_email: t(&self.contact_email),
            contact_phone: t(&self.contact_phone),
            language: pb::Language::from_str_name(&format!("LANGUAGE_{}", self.language)).map_or(0, |l| l as i32),
            etag: self.etag.clone(),
            ..Default::default()
        })
    }
}

struct FormPage {
    title: &'static str,
    action: String,
    editing: bool,
}

fn form_page(v: &Visitor, f: &FormPage, values: &InstitutionForm, errors: &FieldErrors) -> Response {
    let request_id = if values.request_id.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        values.request_id.clone()
    };
    let mut category_choices = vec![(String::new(), "Choose…".to_owned())];
    category_choices.extend(page::categories());
    let status = errors.status(StatusCode::UNPROCESSABLE_ENTITY);
    let body = html! {
        p { "What each category must supply: CNIC for everyone but foreign missions; NTN for banks, IT companies, call centres and companies; "
            "PSEB number and expiry for IT companies and call centres; SBP licence for banks; accreditation and country for foreign missions." }
        (errors.summary())
        form method="post" action=(f.action) data-validate novalidate {
            input type="hidden" name="csrf" value=(v.session.csrf);
            input type="hidden" name="request_id" value=(request_id);
            @if f.editing {
                input type="hidden" name="etag" value=(values.etag);
                input type="hidden" name="category" value=(values.category);
                p { "Category: " strong { (page::category(pb::InstitutionCategory::from_str_name(&format!("INSTITUTION_CATEGORY_{}", values.category)).map_or(0, |c| c as i32))) } " (fixed at enrolment)" }
            } @else {
                (fields::select("category", "Category (required)", &values.category, &category_choices, errors))
            }
            (Field::new("legal_name", "Legal name", &values.legal_name).required().render(errors))
            (Field::new("cnic", "CNIC of the responsible person", &values.cnic).max(15)
                .pattern("[1-7][0-9]{4}-?[0-9]{7}-?[0-9]").hint("13 digits, such as 35202-1234567-1.").render(errors))
            (Field::new("ntn", "NTN", &values.ntn).max(15).hint("7 digits with an optional check digit (1234567-8), or a CNIC.").render(errors))
            (Field::new("secp_number", "SECP incorporation number", &values.secp_number).max(40).render(errors))
            (Field::new("pseb_number", "PSEB registration number", &values.pseb_number).max(40).render(errors))
            (Field::new("pseb_expiry", "PSEB registration expires", &values.pseb_expiry).kind(Kind::Date).render(errors))
            (Field::new("sbp_licence", "SBP licence", &values.sbp_licence).max(40).render(errors))
            (Field::new("accreditation_ref", "Foreign-ministry accreditation", &values.accreditation_ref).max(40).render(errors))
            (Field::new("country", "Country (ISO code, such as DE)", &values.country).max(2).pattern("[A-Za-z]{2}").render(errors))
            (Field::new("contact_email", "Contact e-mail", &values.contact_email).kind(Kind::Email).required().render(errors))
            (Field::new("contact_phone", "Contact phone", &values.contact_phone).kind(Kind::Tel).required().max(20)
                .hint("Such as +923001234567 or 0300 1234567.").render(errors))
            (fields::select("language", "Messages are written in", &values.language, &languages(), errors))
            button type="submit" { (if f.editing { "Save changes" } else { "Enrol" }) }
        }
    };
    page::respond(status, page::frame(f.title, Some(&v.session), body))
}

/// The languages an institution may be written to in.
fn languages() -> Vec<(String, String)> {
    vec![
        ("ENGLISH".to_owned(), "English".to_owned()),
        ("URDU".to_owned(), "اردو (Urdu)".to_owned()),
    ]
}

fn refusal_errors(status: &tonic::Status) -> FieldErrors {
    match status.code() {
        tonic::Code::Aborted => FieldErrors::message(
            "This institution changed since you opened the form. Open it again to see it as it is now.",
        ),
        _ => {
            let mut fields = PROFILE_FIELDS.to_vec();
            fields.push("category");
            FieldErrors::from_status(status, "institution.", &fields)
        }
    }
}

fn new_page() -> FormPage {
    FormPage {
        title: "Enrol an institution",
        action: "/console/institutions/new".to_owned(),
        editing: false,
    }
}

pub(super) async fn new_form(v: Visitor) -> Response {
    form_page(&v, &new_page(), &InstitutionForm::default(), &FieldErrors::default())
}

pub(super) async fn create(
    State(c): State<Console>,
    v: Visitor,
    axum::Form(form): axum::Form<InstitutionForm>,
) -> Response {
    if let Err(refusal) = v.check_csrf(&form.csrf) {
        return *refusal;
    }
    let institution = match form.to_pb() {
        Ok(i) => i,
        Err(errors) => return form_page(&v, &new_page(), &form, &errors),
    };
    let msg = pb::CreateInstitutionRequest {
        institution: Some(institution),
        request_id: form.request_id.clone(),
        validate_only: false,
    };
    match c
        .call(&v, CREATE, msg, |req| c.institutions.create_institution(req))
        .await
    {
        Ok(_) => Redirect::to("/console/institutions?done=created").into_response(),
        Err(Refused::Page(page)) => *page,
        Err(Refused::Status(status)) => form_page(&v, &new_page(), &form, &refusal_errors(&status)),
    }
}

async fn current(c: &Console, v: &Visitor, id: &str) -> Result<pb::Institution, Response> {
    let msg = pb::GetInstitutionRequest { id: id.to_owned() };
    c.call(v, GET, msg, |req| c.institutions.get_institution(req))
        .await
        .map_err(|refused| refused.page("Institution", v))
}

fn edit_page(id: &str) -> FormPage {
    FormPage {
        title: "Edit an institution",
        action: format!("/console/institutions/{id}"),
        editing: true,
    }
}

pub(super) async fn edit_form(State(c): State<Console>, v: Visitor, Path(Id { id }): Path<Id>) -> Response {
    match current(&c, &v, &id).await {
        Ok(i) => form_page(&v, &edit_page(&i.id), &InstitutionForm::of(&i), &FieldErrors::default()),
        Err(page) => page,
    }
}

pub(super) async fn update(
    State(c): State<Console>,
    v: Visitor,
    Path(Id { id }): Path<Id>,
    axum::Form(form): axum::Form<InstitutionForm>,
) -> Response {
    if let Err(refusal) = v.check_csrf(&form.csrf) {
        return *refusal;
    }
    let stored = match current(&c, &v, &id).await {
        Ok(i) => i,
        Err(page) => return page,
    };
    let f = edit_page(&stored.id);
    let before = InstitutionForm::of(&stored);
    let paths: Vec<String> = form
        .values()
        .iter()
        .zip(before.values())
        // A form without a language (sent before there was one) keeps it.
        .filter(|((name, now), (_, was))| now.trim() != was.trim() && !(*name == "language" && now.is_empty()))
        .map(|((name, _), _)| (*name).to_owned())
        .collect();
    if paths.is_empty() {
        return form_page(&v, &f, &form, &FieldErrors::message("Nothing was changed."));
    }
    let mut institution = match form.to_pb() {
        Ok(i) => i,
        Err(errors) => return form_page(&v, &f, &form, &errors),
    };
    institution.id = stored.id.clone();
    let msg = pb::UpdateInstitutionRequest {
        institution: Some(institution),
        update_mask: Some(prost_types::FieldMask { paths }),
        request_id: form.request_id.clone(),
        validate_only: false,
    };
    match c
        .call(&v, UPDATE, msg, |req| c.institutions.update_institution(req))
        .await
    {
        Ok(_) => Redirect::to("/console/institutions?done=updated").into_response(),
        Err(Refused::Page(page)) => *page,
        Err(Refused::Status(status)) => form_page(&v, &f, &form, &refusal_errors(&status)),
    }
}

#[derive(Deserialize, Default)]
pub(super) struct IspQuery {
    #[serde(default)]
    after: String,
}

pub(super) async fn isps(State(c): State<Console>, v: Visitor, Query(q): Query<IspQuery>) -> Response {
    let msg = pb::ListIspsRequest {
        page_size: page::PAGE_SIZE,
        page_token: q.after,
    };
    let list = match c.call(&v, ISPS, msg, |req| c.isp.list_isps(req)).await {
        Ok(list) => list,
        Err(refused) => return refused.page("ISPs", &v),
    };
    let body: Markup = html! {
        p { "Licensed ISPs are added with " code { "vpn-registry isp add" } "." }
        @if list.isps.is_empty() {
            p { "No ISPs yet." }
        } @else {
            table {
                thead { tr { th { "Code" } th { "Name" } th { "Added" } } }
                tbody {
                    @for i in &list.isps {
                        tr { td { code { (i.code) } } td { (i.name) } td { (page::pkt_of(i.create_time.as_ref())) } }
                    }
                }
            }
        }
        @if !list.next_page_token.is_empty() {
            p { a href={ "/console/isps?after=" (list.next_page_token) } { "Next page" } }
        }
    };
    page::respond(StatusCode::OK, page::frame("ISPs", Some(&v.session), body))
}
