//! Who works in the registry: an institution's owners see its members,
//! invite colleagues, hand ownership on and remove people (an institution
//! keeps at least one owner); administrators invite regulator staff, ISP desk
//! users and institutions' first owners. Each action is admitted by the gate
//! like an RPC (`permissions::CONSOLE_MEMBERS`, `CONSOLE_PEOPLE`) and audited.

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use maud::html;
use serde::Deserialize;
use uuid::Uuid;

use super::fields::{Field, FieldErrors, Kind, select};
use super::{Conn, Console, Visitor, page};
use crate::accounts::{Invitee, LinkError, actor_of};
use crate::auth::permissions::{CONSOLE_MEMBERS, CONSOLE_PEOPLE};
use crate::db::{StoreError, accounts};
use crate::domain::account::Membership;
use crate::domain::principal::Role;
use crate::pb::{self, institution_service_server::InstitutionService};

const GET_INSTITUTION: &str = "/vpnregistry.v1.InstitutionService/GetInstitution";

#[derive(Deserialize, Default)]
pub(super) struct Done {
    #[serde(default)]
    done: String,
}

/// The institution an owner manages.
fn institution_of(v: &Visitor) -> Option<Uuid> {
    match v.session.principal.role {
        Role::Institution(id) => Some(id),
        _ => None,
    }
}

async fn institution_name(c: &Console, v: &Visitor, id: Uuid) -> Result<String, Response> {
    let msg = pb::GetInstitutionRequest { id: id.to_string() };
    c.call(v, GET_INSTITUTION, msg, |req| c.institutions.get_institution(req))
        .await
        .map(|i| i.legal_name)
        .map_err(|refused| refused.page("Members", v))
}

pub(super) async fn list(State(c): State<Console>, v: Visitor, Query(d): Query<Done>) -> Response {
    members_page(&c, &v, &d.done, &FieldErrors::default(), StatusCode::OK).await
}

async fn members_page(c: &Console, v: &Visitor, done: &str, errors: &FieldErrors, status: StatusCode) -> Response {
    if let Err(refusal) = c.admit(v, CONSOLE_MEMBERS) {
        return *refusal;
    }
    let Some(institution) = institution_of(v) else {
        return page::not_found();
    };
    let listed = match accounts::members(c.sessions.accounts.pool(), Some(institution), None).await {
        Ok(listed) => listed,
        Err(e) => return page::unavailable(&e.into()),
    };
    let notice = match done {
        "invited" => Some("Invitation sent: the link works once, for 7 days."),
        "changed" => Some("Done."),
        _ => None,
    };
    let roles = [
        ("MEMBER".to_owned(), "Member".to_owned()),
        ("OWNER".to_owned(), "Owner".to_owned()),
    ];
    let body = html! {
        @if let Some(n) = notice { p class="notice" role="status" { (n) } }
        p { "Members act for the institution: they submit and follow its registrations. Owners also manage members and API keys. "
            "The institution always keeps at least one owner." }
        table {
            thead { tr { th { "Name" } th { "E-mail" } th { "Role" } th { "Second factor" } th { "Since" } th { "" } } }
            tbody {
                @for m in &listed {
                    tr {
                        td { (m.name) }
                        td { (m.email) }
                        td { (if m.owner { "Owner" } else { "Member" }) }
                        td { (if m.second_factor { "Yes" } else { "No" }) }
                        td { (page::pkt(m.create_time)) }
                        td {
                            form method="post" action="/console/members" {
                                input type="hidden" name="csrf" value=(v.session.csrf);
                                input type="hidden" name="user" value=(m.id);
                                @if m.owner {
                                    button type="submit" name="action" value="member" { "Make member" }
                                } @else {
                                    button type="submit" name="action" value="owner" { "Make owner" }
                                }
                                button type="submit" name="action" value="remove" { "Remove" }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Invite a colleague" }
        (errors.summary())
        form method="post" action="/console/members/invite" {
            input type="hidden" name="csrf" value=(v.session.csrf);
            (Field::new("email", "Their e-mail address", "").kind(Kind::Email).required().render(errors))
            (select("role", "Role", "MEMBER", &roles, errors))
            button type="submit" { "Send the invitation" }
        }
    };
    page::respond(status, page::frame("Members", Some(&v.session), body))
}

#[derive(Deserialize)]
pub(super) struct ChangeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    action: String,
}

pub(super) async fn change(State(c): State<Console>, v: Visitor, axum::Form(form): axum::Form<ChangeForm>) -> Response {
    if let Err(refusal) = v.check_csrf(&form.csrf) {
        return *refusal;
    }
    if let Err(refusal) = c.admit(&v, CONSOLE_MEMBERS) {
        return *refusal;
    }
    let (Some(institution), Ok(user)) = (institution_of(&v), form.user.parse::<Uuid>()) else {
        return page::not_found();
    };
    let owner = match form.action.as_str() {
        "owner" => Some(true),
        "member" => Some(false),
        "remove" => None,
        _ => return page::not_found(),
    };
    let actor = actor_of(&v.session.user);
    match accounts::change_member(c.sessions.accounts.pool(), institution, user, owner, &actor).await {
        Ok(()) if user == v.session.user.id => Redirect::to("/console/home").into_response(),
        Ok(()) => Redirect::to("/console/members?done=changed").into_response(),
        Err(StoreError::Refused(refusal)) => {
            let errors = FieldErrors::message(refusal.to_string());
            members_page(&c, &v, "", &errors, StatusCode::CONFLICT).await
        }
        Err(StoreError::NotFound(_)) => page::not_found(),
        Err(e) => page::unavailable(&e.into()),
    }
}

#[derive(Deserialize)]
pub(super) struct InviteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    /// MEMBER or OWNER (an owner's invitation); REVIEWER, ADMIN, ISP or
    /// OWNER with an institution (an administrator's).
    #[serde(default)]
    role: String,
    #[serde(default)]
    isp: String,
    #[serde(default)]
    institution: String,
}

/// What an invitation's refusal says on the form.
fn invite_errors(e: LinkError) -> Result<FieldErrors, Box<Response>> {
    match e {
        LinkError::Invalid(v) => Ok(FieldErrors::from_status(&tonic::Status::from(v), "", &["email"])),
        LinkError::Taken => Ok(FieldErrors::message("This address already has an account.")),
        LinkError::Dead => Err(Box::new(page::not_found())),
        LinkError::Failed(failure) => Err(Box::new(page::unavailable(&failure))),
    }
}

pub(super) async fn invite(
    State(c): State<Console>,
    v: Visitor,
    conn: Conn,
    axum::Form(form): axum::Form<InviteForm>,
) -> Response {
    if let Err(refusal) = v.check_csrf(&form.csrf) {
        return *refusal;
    }
    if let Err(refusal) = c.admit(&v, CONSOLE_MEMBERS) {
        return *refusal;
    }
    let Some(institution) = institution_of(&v) else {
        return page::not_found();
    };
    let organisation = match institution_name(&c, &v, institution).await {
        Ok(name) => name,
        Err(page) => return page,
    };
    let invitee = Invitee {
        email: &form.email,
        membership: Membership::Institution {
            id: institution,
            owner: form.role == "OWNER",
        },
        organisation: &organisation,
    };
    let actor = actor_of(&v.session.user);
    match c.sessions.accounts.invite(&invitee, &c.base_url(&conn), &actor).await {
        Ok(_) => Redirect::to("/console/members?done=invited").into_response(),
        Err(e) => match invite_errors(e) {
            Ok(errors) => members_page(&c, &v, "", &errors, StatusCode::UNPROCESSABLE_ENTITY).await,
            Err(page) => *page,
        },
    }
}

pub(super) async fn people(State(c): State<Console>, v: Visitor, Query(d): Query<Done>) -> Response {
    people_page(&c, &v, &d.done, &FieldErrors::default(), StatusCode::OK).await
}

async fn people_page(c: &Console, v: &Visitor, done: &str, errors: &FieldErrors, status: StatusCode) -> Response {
    if let Err(refusal) = c.admit(v, CONSOLE_PEOPLE) {
        return *refusal;
    }
    let staff = match accounts::staff(c.sessions.accounts.pool()).await {
        Ok(staff) => staff,
        Err(e) => return page::unavailable(&e.into()),
    };
    let isps: Vec<(String, String)> = c
        .isps(v)
        .await
        .into_iter()
        .map(|(code, name)| (code.clone(), format!("{name} ({code})")))
        .collect();
    let roles = [
        ("REVIEWER".to_owned(), "Reviewer".to_owned()),
        ("ADMIN".to_owned(), "Administrator".to_owned()),
        ("ISP".to_owned(), "ISP desk".to_owned()),
        ("OWNER".to_owned(), "An institution's first owner".to_owned()),
    ];
    let mut isp_choices = vec![(String::new(), "—".to_owned())];
    isp_choices.extend(isps);
    let body = html! {
        @if done == "invited" { p class="notice" role="status" { "Invitation sent: the link works once, for 7 days." } }
        h2 { "Invite someone" }
        p { "Reviewers, administrators and ISP desk users must enrol a second factor before their first action. "
            "Banks, foreign missions and government bodies get their first owner this way, after they are enrolled." }
        (errors.summary())
        form method="post" action="/console/people" {
            input type="hidden" name="csrf" value=(v.session.csrf);
            (Field::new("email", "E-mail address", "").kind(Kind::Email).required().render(errors))
            (select("role", "Role", "REVIEWER", &roles, errors))
            (select("isp", "ISP (for an ISP desk user)", "", &isp_choices, errors))
            (Field::new("institution", "Institution id (for a first owner)", "").max(36).render(errors))
            button type="submit" { "Send the invitation" }
        }
        h2 { "Regulator staff and ISP desks" }
        table {
            thead { tr { th { "Name" } th { "E-mail" } th { "Role" } th { "Second factor" } th { "Since" } } }
            tbody {
                @for (m, role, isp) in &staff {
                    tr {
                        td { (m.name) }
                        td { (m.email) }
                        td { (role) @if let Some(isp) = isp { " (" (isp) ")" } }
                        td { (if m.second_factor { "Yes" } else { "No" }) }
                        td { (page::pkt(m.create_time)) }
                    }
                }
            }
        }
    };
    page::respond(status, page::frame("People", Some(&v.session), body))
}

pub(super) async fn invite_person(
    State(c): State<Console>,
    v: Visitor,
    conn: Conn,
    axum::Form(form): axum::Form<InviteForm>,
) -> Response {
    if let Err(refusal) = v.check_csrf(&form.csrf) {
        return *refusal;
    }
    if let Err(refusal) = c.admit(&v, CONSOLE_PEOPLE) {
        return *refusal;
    }
    let mut errors = FieldErrors::default();
    let membership = match form.role.as_str() {
        "REVIEWER" => Some(Membership::Reviewer),
        "ADMIN" => Some(Membership::Admin),
        "ISP" => match form.isp.parse() {
            Ok(code) => Some(Membership::Isp(code)),
            Err(_) => {
                errors.add("isp", "choose the ISP");
                None
            }
        },
        "OWNER" => match form.institution.trim().parse() {
            Ok(id) => Some(Membership::Institution { id, owner: true }),
            Err(_) => {
                errors.add("institution", "the institution's id (from the Institutions page)");
                None
            }
        },
        _ => {
            errors.add("role", "choose a role");
            None
        }
    };
    let Some(membership) = membership else {
        return people_page(&c, &v, "", &errors, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let organisation = match &membership {
        Membership::Institution { id, .. } => match institution_name(&c, &v, *id).await {
            Ok(name) => name,
            Err(_) => {
                let errors = FieldErrors::message("No institution has that id.");
                return people_page(&c, &v, "", &errors, StatusCode::UNPROCESSABLE_ENTITY).await;
            }
        },
        Membership::Isp(code) => format!("the ISP desk of {}", code.as_str()),
        _ => "the regulator".to_owned(),
    };
    let invitee = Invitee {
        email: &form.email,
        membership,
        organisation: &organisation,
    };
    let actor = actor_of(&v.session.user);
    match c.sessions.accounts.invite(&invitee, &c.base_url(&conn), &actor).await {
        Ok(_) => Redirect::to("/console/people?done=invited").into_response(),
        Err(e) => match invite_errors(e) {
            Ok(errors) => people_page(&c, &v, "", &errors, StatusCode::UNPROCESSABLE_ENTITY).await,
            Err(page) => *page,
        },
    }
}
