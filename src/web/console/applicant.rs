//! The applicant's pages (institution role): their registrations with state,
//! reference and validity; submitting one; amending (which is also how a
//! reviewer's request for information is answered), withdrawing and renewing
//! it; and reading its history.

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use maud::{Markup, html};
use serde::Deserialize;

use super::evidence::Evidence;
use super::fields::FieldErrors;
use super::registration_form::{FormPage, RegistrationForm, form_page, refusal_errors};
use super::{Console, Id, Refused, Visitor, history, page};
use crate::domain::{lifecycle::Event, state::State as RegistrationState, workflow};
use crate::grpc::convert::state_from_pb;
use crate::pb::{self, registration_service_server::RegistrationService};

const LIST: &str = "/vpnregistry.v1.RegistrationService/ListRegistrations";
const GET: &str = "/vpnregistry.v1.RegistrationService/GetRegistration";
const EVENTS: &str = "/vpnregistry.v1.RegistrationService/ListRegistrationEvents";
const SUBMIT: &str = "/vpnregistry.v1.RegistrationService/SubmitRegistration";
const AMEND: &str = "/vpnregistry.v1.RegistrationService/AmendRegistration";
const WITHDRAW: &str = "/vpnregistry.v1.RegistrationService/WithdrawRegistration";
const RENEW: &str = "/vpnregistry.v1.RegistrationService/RenewRegistration";

#[derive(Deserialize, Default)]
pub(super) struct ListQuery {
    #[serde(default)]
    after: String,
}

pub(super) async fn list(State(c): State<Console>, v: Visitor, Query(q): Query<ListQuery>) -> Response {
    let msg = pb::ListRegistrationsRequest {
        page_size: page::PAGE_SIZE,
        page_token: q.after,
        ..Default::default()
    };
    let list = match c
        .call(&v, LIST, msg, |req| c.registrations.list_registrations(req))
        .await
    {
        Ok(list) => list,
        Err(refused) => return refused.page("Your registrations", &v),
    };
    let body = html! {
        p { a href="/console/registrations/new" { "Register a VPN or service" } " · " a href="/console/registrations/import" { "Import many from a spreadsheet (CSV)" } }
        @if list.registrations.is_empty() {
            p { "You have no registrations yet." }
        } @else {
            table {
                thead { tr { th { "Reference" } th { "Kind" } th { "State" } th { "Addresses" } th { "Valid" } } }
                tbody {
                    @for r in &list.registrations {
                        tr {
                            td { a href={ "/console/registrations/" (r.id) } { (r.reference) } }
                            td { (page::kind(r.kind)) }
                            td {
                                (page::state(r.state))
                                @if let Some(rev) = &r.pending_revision { br; small { "revision: " (page::state(rev.state)) } }
                            }
                            td { @for p in &r.source_prefixes { (p) br; } @if !r.msisdn.is_empty() { (r.msisdn) } }
                            td { (page::pkt_of(r.valid_from.as_ref())) br; "until " (page::pkt_of(r.valid_until.as_ref())) }
                        }
                    }
                }
            }
        }
        @if !list.next_page_token.is_empty() {
            p { a href={ "/console/registrations?after=" (list.next_page_token) } { "Next page" } }
        }
    };
    page::respond(
        StatusCode::OK,
        page::frame("Your registrations", Some(&v.session), body),
    )
}

fn new_page() -> FormPage<'static> {
    FormPage {
        title: "Register a VPN or service",
        action: "/console/registrations/new".to_owned(),
        amending: false,
        intro: html! {
            p { "Your ISP confirms the subscriber ID and addresses, then the regulator reviews the registration. "
                "You can follow it, and answer questions, under " a href="/console/registrations" { "your registrations" } "." }
        },
    }
}

pub(super) async fn new_form(State(c): State<Console>, v: Visitor) -> Response {
    form_page(
        &c,
        &v,
        &new_page(),
        &RegistrationForm::default(),
        &FieldErrors::default(),
    )
    .await
}

pub(super) async fn submit(
    State(c): State<Console>,
    v: Visitor,
    axum::Form(form): axum::Form<RegistrationForm>,
) -> Response {
    if let Err(refusal) = v.check_csrf(&form.csrf) {
        return *refusal;
    }
    let registration = match form.to_pb() {
        Ok(r) => r,
        Err(errors) => return form_page(&c, &v, &new_page(), &form, &errors).await,
    };
    let msg = pb::SubmitRegistrationRequest {
        registration: Some(registration),
        request_id: form.request_id.clone(),
        validate_only: false,
    };
    match c
        .call(&v, SUBMIT, msg, |req| c.registrations.submit_registration(req))
        .await
    {
        Ok(created) => Redirect::to(&format!("/console/registrations/{}?done=submitted", created.id)).into_response(),
        Err(Refused::Page(page)) => *page,
        Err(Refused::Status(status)) => form_page(&c, &v, &new_page(), &form, &refusal_errors(&status)).await,
    }
}

/// A registration and (a page of) its history, as its reader may see them.
pub(super) async fn load(
    c: &Console,
    v: &Visitor,
    id: &str,
    events_after: String,
) -> Result<(pb::Registration, pb::ListRegistrationEventsResponse), Refused> {
    let registration = current(c, v, id).await?;
    let msg = pb::ListRegistrationEventsRequest {
        id: id.to_owned(),
        page_size: 100,
        page_token: events_after,
    };
    let events = c
        .call(v, EVENTS, msg, |req| c.registrations.list_registration_events(req))
        .await?;
    Ok((registration, events))
}

#[derive(Deserialize, Default)]
pub(super) struct DetailQuery {
    /// What was just done (one of a few words; nothing else is said back).
    #[serde(default)]
    done: String,
    #[serde(default)]
    events_after: String,
}

pub(super) async fn detail(
    State(c): State<Console>,
    v: Visitor,
    Path(Id { id }): Path<Id>,
    Query(q): Query<DetailQuery>,
) -> Response {
    let notice = match q.done.as_str() {
        "submitted" => Some("Submitted. Your ISP confirms it next, then a reviewer decides."),
        "amended" => Some("Amendment sent. A reviewer looks at it again."),
        "withdrawn" => Some("Withdrawn."),
        "renewed" => Some("Renewal requested. A reviewer decides on it; the registration stays in force meanwhile."),
        _ => None,
    };
    show(&c, &v, &id, q.events_after, notice, &FieldErrors::default()).await
}

/// The registration page, with a notice or the refusal of an action on it.
async fn show(
    c: &Console,
    v: &Visitor,
    id: &str,
    events_after: String,
    notice: Option<&str>,
    errors: &FieldErrors,
) -> Response {
    let (r, events) = match load(c, v, id, events_after).await {
        Ok(loaded) => loaded,
        Err(refused) => return refused.page("Registration", v),
    };
    let evidence = match Evidence::load(c, v, id).await {
        Ok(evidence) => evidence,
        Err(refused) => return refused.page("Registration", v),
    };
    let (state, revision) = states(&r);
    let needs_info = state == RegistrationState::NeedsInfo || revision == Some(RegistrationState::NeedsInfo);
    // Documents are uploaded for an application still open: the
    // registration's own, or its amendment's or renewal's.
    let uploads = state.is_undecided() || revision.is_some();
    let question = needs_info
        .then(|| {
            events
                .events
                .iter()
                .rev()
                .find(|e| e.action == pb::RegistrationAction::InformationRequested as i32)
        })
        .flatten();
    let status = errors.status(StatusCode::CONFLICT);
    let body = html! {
        @if let Some(n) = notice { p class="notice" role="status" { (n) } }
        (errors.summary())
        @if needs_info {
            div class="notice" role="note" {
                h2 { "The reviewer asks for more information" }
                @if let Some(q) = question {
                    p { strong { (history::reason_code(q.reason_code)) } ": " (q.reason) }
                    p { small { "Asked " (page::pkt_of(q.create_time.as_ref())) } }
                }
                p { "Answer by amending the registration: correct or add what is asked. It then goes back to the reviewer." }
                p { a href={ "/console/registrations/" (r.id) "/amend" } { "Answer the request" } }
            }
        }
        (summary(&r))
        @if let Some(rev) = &r.pending_revision {
            h2 { (if rev.is_renewal { "Renewal waiting for a decision" } else { "Amendment waiting for a decision" }) }
            p { "State: " (page::state(rev.state)) ". The version above stays in force until it is approved." }
            (revision_summary(rev))
        }
        (evidence.panel(&r.id, uploads.then_some(v.session.csrf.as_str()), None))
        h2 { "What you can do" }
        (actions(&r, needs_info, &v.session.csrf))
        h2 { "History" }
        (history::table(&events.events))
        @if !events.next_page_token.is_empty() {
            p { a href={ "/console/registrations/" (r.id) "?events_after=" (events.next_page_token) } { "Later events" } }
        }
    };
    page::respond(
        status,
        page::frame(&format!("Registration {}", r.reference), Some(&v.session), body),
    )
}

/// The actions open on `r` (the workflow's rules): amend, renew, withdraw.
fn actions(r: &pb::Registration, needs_info: bool, csrf: &str) -> Markup {
    let (state, revision) = states(r);
    let withdrawable = workflow::allows(state, revision, Event::Withdraw);
    let amendable = workflow::allows(state, revision, Event::Amend { reattest: false });
    let renewable = workflow::renewal_refused(state, revision).is_none();
    html! {
        @if amendable && !needs_info {
            p { a href={ "/console/registrations/" (r.id) "/amend" } { "Amend this registration" } }
        }
        @if renewable {
            form method="post" action={ "/console/registrations/" (r.id) "/renew" } {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="etag" value=(r.etag);
                label for="renew-until" { "Renew: new end of validity (Pakistan time)" }
                input type="date" id="renew-until" name="valid_until" required;
                button type="submit" { "Request renewal" }
            }
        }
        @if withdrawable {
            form method="post" action={ "/console/registrations/" (r.id) "/withdraw" } {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="etag" value=(r.etag);
                label for="withdraw-reason" { "Withdraw: why (optional)" }
                input type="text" id="withdraw-reason" name="reason" maxlength="500";
                button type="submit" { "Withdraw this registration" }
            }
        }
        @if !amendable && !renewable && !withdrawable { p { "Nothing: this registration is " (page::state(r.state).to_lowercase()) "." } }
    }
}

/// The states of a registration and of its pending revision, if any, as the
/// domain's rules take them.
pub(super) fn states(r: &pb::Registration) -> (RegistrationState, Option<RegistrationState>) {
    let state = state_from_pb(r.state).unwrap_or(RegistrationState::Submitted);
    (
        state,
        r.pending_revision.as_ref().and_then(|rev| state_from_pb(rev.state)),
    )
}

/// What a registration declares, as a description list.
pub(super) fn summary(r: &pb::Registration) -> Markup {
    html! {
        dl {
            dt { "Reference" } dd { (r.reference) }
            dt { "State" } dd { strong { (page::state(r.state)) } " since " (page::pkt_of(r.state_time.as_ref())) }
            dt { "Kind" } dd { (page::kind(r.kind)) @if r.protocol != 0 { " · " (protocol(r.protocol)) } }
            dt { "Source addresses" } dd { @for p in &r.source_prefixes { (p) br; } @if !r.msisdn.is_empty() { (r.msisdn) } }
            dt { "Peers" } dd { @if r.peer_prefixes.is_empty() { "any" } @for p in &r.peer_prefixes { (p) br; } }
            dt { "ISP" } dd { (r.isp) ", subscriber " (r.isp_subscriber_id) }
            dt { "Purpose" } dd { (r.purpose) }
            @if !r.large_prefix_justification.is_empty() { dt { "Wider prefix because" } dd { (r.large_prefix_justification) } }
            dt { "Valid" } dd { (page::pkt_of(r.valid_from.as_ref())) " until " (page::pkt_of(r.valid_until.as_ref())) }
            dt { "Submitted" } dd { (page::pkt_of(r.create_time.as_ref())) }
        }
    }
}

fn revision_summary(rev: &pb::RegistrationRevision) -> Markup {
    html! {
        dl {
            dt { "Source addresses" } dd { @for p in &rev.source_prefixes { (p) br; } @if !rev.msisdn.is_empty() { (rev.msisdn) } }
            dt { "Peers" } dd { @if rev.peer_prefixes.is_empty() { "any" } @for p in &rev.peer_prefixes { (p) br; } }
            dt { "ISP" } dd { (rev.isp) ", subscriber " (rev.isp_subscriber_id) }
            dt { "Purpose" } dd { (rev.purpose) }
            dt { "Valid" } dd { (page::pkt_of(rev.valid_from.as_ref())) " until " (page::pkt_of(rev.valid_until.as_ref())) }
        }
    }
}

pub(super) fn protocol(p: i32) -> String {
    pb::VpnProtocol::try_from(p)
        .map(|p| match p {
            pb::VpnProtocol::IpsecIkev2 => "IPsec / IKEv2".to_owned(),
            pb::VpnProtocol::Openvpn => "OpenVPN".to_owned(),
            pb::VpnProtocol::Wireguard => "WireGuard".to_owned(),
            pb::VpnProtocol::SslTls => "SSL/TLS".to_owned(),
            pb::VpnProtocol::L2tp => "L2TP".to_owned(),
            other => page::words(other.as_str_name(), "VPN_PROTOCOL_"),
        })
        .unwrap_or_default()
}

fn amend_page(r: &pb::Registration) -> FormPage<'static> {
    let answering = r.state == pb::RegistrationState::NeedsInfo as i32
        || r.pending_revision
            .as_ref()
            .is_some_and(|rev| rev.state == pb::RegistrationState::NeedsInfo as i32);
    FormPage {
        title: if answering {
            "Answer the reviewer"
        } else {
            "Amend a registration"
        },
        action: format!("/console/registrations/{}/amend", r.id),
        amending: true,
        intro: html! {
            p { "Amending " strong { (r.reference) } ". Change what needs changing; only changed fields are sent."
                @if r.state == pb::RegistrationState::Active as i32 { " The version in force stays in force until a reviewer approves the amendment." } }
        },
    }
}

pub(super) async fn amend_form(State(c): State<Console>, v: Visitor, Path(Id { id }): Path<Id>) -> Response {
    let r = match current(&c, &v, &id).await {
        Ok(r) => r,
        Err(refused) => return refused.page("Registration", &v),
    };
    form_page(
        &c,
        &v,
        &amend_page(&r),
        &RegistrationForm::of(&r),
        &FieldErrors::default(),
    )
    .await
}

async fn current(c: &Console, v: &Visitor, id: &str) -> Result<pb::Registration, Refused> {
    let msg = pb::GetRegistrationRequest { id: id.to_owned() };
    c.call(v, GET, msg, |req| c.registrations.get_registration(req)).await
}

pub(super) async fn amend(
    State(c): State<Console>,
    v: Visitor,
    Path(Id { id }): Path<Id>,
    axum::Form(form): axum::Form<RegistrationForm>,
) -> Response {
    if let Err(refusal) = v.check_csrf(&form.csrf) {
        return *refusal;
    }
    let r = match current(&c, &v, &id).await {
        Ok(r) => r,
        Err(refused) => return refused.page("Registration", &v),
    };
    let f = amend_page(&r);
    // Changes are measured against the version the page showed; if it has
    // changed since, the etag refuses the amendment below.
    let paths = form.changed_from(&RegistrationForm::of(&r));
    if paths.is_empty() {
        let errors = FieldErrors::message("Nothing was changed: change a field, or go back.");
        return form_page(&c, &v, &f, &form, &errors).await;
    }
    let mut registration = match form.to_pb() {
        Ok(reg) => reg,
        Err(errors) => return form_page(&c, &v, &f, &form, &errors).await,
    };
    registration.id = r.id.clone();
    let msg = pb::AmendRegistrationRequest {
        registration: Some(registration),
        update_mask: Some(prost_types::FieldMask { paths }),
        request_id: form.request_id.clone(),
        validate_only: false,
    };
    match c
        .call(&v, AMEND, msg, |req| c.registrations.amend_registration(req))
        .await
    {
        Ok(_) => Redirect::to(&format!("/console/registrations/{}?done=amended", r.id)).into_response(),
        Err(Refused::Page(page)) => *page,
        Err(Refused::Status(status)) => form_page(&c, &v, &f, &form, &refusal_errors(&status)).await,
    }
}

#[derive(Deserialize)]
pub(super) struct WithdrawForm {
    csrf: String,
    etag: String,
    #[serde(default)]
    reason: String,
}

pub(super) async fn withdraw(
    State(c): State<Console>,
    v: Visitor,
    Path(Id { id }): Path<Id>,
    axum::Form(form): axum::Form<WithdrawForm>,
) -> Response {
    if let Err(refusal) = v.check_csrf(&form.csrf) {
        return *refusal;
    }
    let msg = pb::WithdrawRegistrationRequest {
        id: id.clone(),
        etag: form.etag,
        reason: form.reason,
        request_id: String::new(),
    };
    match c
        .call(&v, WITHDRAW, msg, |req| c.registrations.withdraw_registration(req))
        .await
    {
        Ok(_) => Redirect::to(&format!("/console/registrations/{id}?done=withdrawn")).into_response(),
        Err(Refused::Page(page)) => *page,
        Err(Refused::Status(status)) => {
            show(&c, &v, &id, String::new(), None, &action_errors("withdrawn", &status)).await
        }
    }
}

/// Why an action on the registration page was refused, in words.
fn action_errors(what: &str, status: &tonic::Status) -> FieldErrors {
    FieldErrors::refused(
        what,
        status,
        "the registration changed since the page was loaded, or no longer allows it. It is shown as it is now.",
    )
}

#[derive(Deserialize)]
pub(super) struct RenewForm {
    csrf: String,
    etag: String,
    valid_until: String,
}

pub(super) async fn renew(
    State(c): State<Console>,
    v: Visitor,
    Path(Id { id }): Path<Id>,
    axum::Form(form): axum::Form<RenewForm>,
) -> Response {
    if let Err(refusal) = v.check_csrf(&form.csrf) {
        return *refusal;
    }
    let valid_until = match page::day_start(&form.valid_until) {
        Ok(until) => until,
        Err(why) => {
            return show(
                &c,
                &v,
                &id,
                String::new(),
                None,
                &FieldErrors::message(format!("Not renewed: {why}")),
            )
            .await;
        }
    };
    let msg = pb::RenewRegistrationRequest {
        id: id.clone(),
        etag: form.etag,
        valid_until,
        ..Default::default()
    };
    match c
        .call(&v, RENEW, msg, |req| c.registrations.renew_registration(req))
        .await
    {
        Ok(_) => Redirect::to(&format!("/console/registrations/{id}?done=renewed")).into_response(),
        Err(Refused::Page(page)) => *page,
        Err(Refused::Status(status)) => {
            show(&c, &v, &id, String::new(), None, &action_errors("renewed", &status)).await
        }
    }
}
