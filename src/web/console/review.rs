//! The reviewer's registration page (the queue is `review_queue`): the
//! institution, the ISP's attestation, a revision as a diff
//! against the version in force, the full history, and the decisions, each
//! with a reason code and a reason. A decision on a page that went stale
//! (another reviewer acted) is refused by the etag and the page reloads.

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use maud::{Markup, html};
use serde::Deserialize;

use super::evidence::Evidence;
use super::fields::FieldErrors;
use super::{Console, Id, Refused, Visitor, applicant, history, page};
use crate::domain::{decision::Decision, state::ReasonCode};
use crate::grpc::convert;
use crate::grpc::review::DecisionFields;
use crate::pb::{self, institution_service_server::InstitutionService};

const INSTITUTION: &str = "/vpnregistry.v1.InstitutionService/GetInstitution";

pub(super) async fn institution(c: &Console, v: &Visitor, id: &str) -> Option<pb::Institution> {
    let msg = pb::GetInstitutionRequest { id: id.to_owned() };
    c.call(v, INSTITUTION, msg, |req| c.institutions.get_institution(req))
        .await
        .ok()
}

/// The decisions open on `r` now (the workflow's own rules).
fn open_decisions(r: &pb::Registration) -> Vec<Decision> {
    let (state, revision) = applicant::states(r);
    Decision::ALL
        .into_iter()
        .filter(|d| d.open_on(state, revision))
        .collect()
}

#[derive(Deserialize, Default)]
pub(super) struct DetailQuery {
    /// The history's next page (from the "Later events" link).
    #[serde(default)]
    events_after: String,
}

pub(super) async fn detail(
    State(c): State<Console>,
    v: Visitor,
    Path(Id { id }): Path<Id>,
    Query(q): Query<DetailQuery>,
) -> Response {
    show(&c, &v, &id, q.events_after, &FieldErrors::default()).await
}

async fn show(c: &Console, v: &Visitor, id: &str, events_after: String, errors: &FieldErrors) -> Response {
    let (r, events) = match applicant::load(c, v, id, events_after).await {
        Ok(loaded) => loaded,
        Err(refused) => return refused.page("Review", v),
    };
    let institution = institution(c, v, &r.institution_id).await;
    let attestation = events.events.iter().rev().find(|e| {
        e.action == pb::RegistrationAction::Attested as i32
            || e.action == pb::RegistrationAction::AttestationDenied as i32
    });
    let evidence = match Evidence::load(c, v, id).await {
        Ok(evidence) => evidence,
        Err(refused) => return refused.page("Review", v),
    };
    let decisions = open_decisions(&r);
    let status = errors.status(StatusCode::CONFLICT);
    let body = html! {
        (errors.summary())
        p { a href="/console/review" { "Back to the queue" } }
        h2 { "Institution" }
        @match &institution {
            Some(i) => (institution_summary(i)),
            None => p { "The institution could not be read." },
        }
        h2 { "ISP attestation" }
        @match attestation {
            Some(a) => p {
                strong { (history::action(a.action)) }
                " by " (a.actor.as_ref().map_or("", |a| a.name.as_str()))
                " on " (page::pkt_of(a.create_time.as_ref()))
                @if !a.reason.is_empty() { ": " (a.reason) }
            },
            None => p { "Not attested yet." },
        }
        h2 { "Registration" }
        (applicant::summary(&r))
        @if let Some(rev) = &r.pending_revision {
            h2 { (if rev.is_renewal { "Renewal" } else { "Amendment" }) ": what would change" }
            p { "State: " (page::state(rev.state)) ". Changed rows are marked; the version in force stays until approved." }
            (diff(&r, rev))
        }
        (evidence.panel(&r.id, None, Some(&v.session.csrf)))
        h2 { "Decide" }
        @if decisions.is_empty() {
            p { "No decision is open: the registration is " (page::state(r.state).to_lowercase()) "." }
        } @else {
            (decision_form(&r, &decisions, &evidence.gaps(), &v.session.csrf))
        }
        h2 { "History" }
        (history::table(&events.events))
        @if !events.next_page_token.is_empty() {
            p { a href={ "/console/review/" (r.id) "?events_after=" (events.next_page_token) } { "Later events" } }
        }
    };
    page::respond(
        status,
        page::frame(&format!("Review {}", r.reference), Some(&v.session), body),
    )
}

fn institution_summary(i: &pb::Institution) -> Markup {
    let rows: [(&str, &str); 9] = [
        ("CNIC", &i.cnic),
        ("NTN", &i.ntn),
        ("SECP number", &i.secp_number),
        ("PSEB number", &i.pseb_number),
        ("SBP licence", &i.sbp_licence),
        ("Accreditation", &i.accreditation_ref),
        ("Country", &i.country),
        ("E-mail", &i.contact_email),
        ("Phone", &i.contact_phone),
    ];
    html! {
        dl {
            dt { "Name" } dd { (i.legal_name) }
            dt { "Category" } dd { (page::category(i.category)) }
            dt { "Enrolment" } dd {
                @if i.self_registered { strong { "Self-registered" } " (signed itself up; identifiers not yet checked by the regulator)" }
                @else { "Enrolled by an administrator" }
            }
            @for (label, value) in rows { @if !value.is_empty() { dt { (label) } dd { (value) } } }
            @if let Some(d) = &i.pseb_expiry { dt { "PSEB expiry" } dd { (convert::from_date(d).map(|d| d.to_string()).unwrap_or_default()) } }
        }
    }
}

/// The revision against the version in force, field by field.
fn diff(r: &pb::Registration, rev: &pb::RegistrationRevision) -> Markup {
    let day = |t: Option<&prost_types::Timestamp>| page::pkt_of(t);
    let rows: Vec<(&str, String, String)> = vec![
        (
            "Protocol",
            applicant::protocol(r.protocol),
            applicant::protocol(rev.protocol),
        ),
        (
            "Source addresses",
            r.source_prefixes.join(", "),
            rev.source_prefixes.join(", "),
        ),
        ("Mobile number", r.msisdn.clone(), rev.msisdn.clone()),
        ("Peers", r.peer_prefixes.join(", "), rev.peer_prefixes.join(", ")),
        ("ISP", r.isp.clone(), rev.isp.clone()),
        (
            "Subscriber ID",
            r.isp_subscriber_id.clone(),
            rev.isp_subscriber_id.clone(),
        ),
        ("Purpose", r.purpose.clone(), rev.purpose.clone()),
        ("Valid from", day(r.valid_from.as_ref()), day(rev.valid_from.as_ref())),
        (
            "Valid until",
            day(r.valid_until.as_ref()),
            day(rev.valid_until.as_ref()),
        ),
        (
            "Wider prefix because",
            r.large_prefix_justification.clone(),
            rev.large_prefix_justification.clone(),
        ),
    ];
    html! {
        table {
            thead { tr { th { "Field" } th { "In force" } th { "Proposed" } } }
            tbody {
                @for (field, before, after) in &rows {
                    @let changed = before != after;
                    tr class=[changed.then_some("changed")] {
                        td { (field) @if changed { " " strong { "(changed)" } } }
                        td { @if changed { del { (before) } } @else { (before) } }
                        td { @if changed { ins { (after) } } @else { (after) } }
                    }
                }
            }
        }
    }
}

/// The decisions open on `r`; approval disabled, saying why, while
/// `gaps` (documents or fees) stand in its way.
fn decision_form(r: &pb::Registration, decisions: &[Decision], gaps: &[String], csrf: &str) -> Markup {
    let approving = decisions.contains(&Decision::Approve);
    // The codes that justify any decision offered, in the domain's order.
    let codes = ReasonCode::ALL
        .iter()
        .filter(|c| decisions.iter().any(|d| d.justified_by(**c)));
    html! {
        form method="post" action={ "/console/review/" (r.id) } {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="etag" value=(r.etag);
            input type="hidden" name="request_id" value=(uuid::Uuid::new_v4().to_string());
            label for="reason_code" { "Reason code (required)" }
            select id="reason_code" name="reason_code" required {
                option value="" { "Choose…" }
                @for code in codes { option value=(code.as_str()) { (page::words(code.as_str(), "")) } }
            }
            label for="reason" { "Reason (required; the applicant reads it)" }
            textarea id="reason" name="reason" rows="3" maxlength="1000" required {}
            @if approving {
                fieldset {
                    legend { "When approving" }
                    label for="valid_until" { "Shorten validity to (optional, Pakistan time)" }
                    input type="date" id="valid_until" name="valid_until";
                    label { input type="checkbox" name="override_size_limits" value="true"; " Allow prefixes wider than the default limits" }
                }
            }
            @for d in decisions {
                @if *d == Decision::Approve && !gaps.is_empty() {
                    button type="submit" name="decision" value=(d.about().name) disabled aria-describedby="approve-blocked" { (d.about().label) }
                } @else {
                    button type="submit" name="decision" value=(d.about().name) { (d.about().label) }
                }
            }
        }
        @if approving && !gaps.is_empty() {
            div id="approve-blocked" class="notice" role="note" {
                p { strong { "Approval is not possible yet:" } }
                ul { @for gap in gaps { li { (gap) } } }
            }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct DecisionForm {
    csrf: String,
    etag: String,
    decision: String,
    #[serde(default)]
    request_id: String,
    #[serde(default)]
    reason_code: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    valid_until: String,
    #[serde(default)]
    override_size_limits: Option<String>,
}

pub(super) async fn decide(
    State(c): State<Console>,
    v: Visitor,
    Path(Id { id }): Path<Id>,
    axum::Form(f): axum::Form<DecisionForm>,
) -> Response {
    if let Err(refusal) = v.check_csrf(&f.csrf) {
        return *refusal;
    }
    let Some(decision) = Decision::named(&f.decision) else {
        let errors = FieldErrors::message("Choose one of the decision buttons.");
        return show(&c, &v, &id, String::new(), &errors).await;
    };
    let valid_until = match page::day_start(&f.valid_until) {
        Ok(t) => t,
        Err(why) => return show(&c, &v, &id, String::new(), &FieldErrors::message(why)).await,
    };
    let fields = DecisionFields {
        id: id.clone(),
        etag: f.etag,
        reason_code: pb::ReasonCode::from_str_name(&format!("REASON_CODE_{}", f.reason_code)).map_or(0, |c| c as i32),
        reason: f.reason,
        request_id: f.request_id,
        valid_until,
        override_size_limits: f.override_size_limits.is_some(),
    };
    let about = decision.about();
    match c.call(&v, about.rpc, fields, |req| c.review.take(decision, req)).await {
        Ok(decided) => Redirect::to(&format!(
            "/console/review?done={}&how={}",
            decided.reference, about.name
        ))
        .into_response(),
        Err(Refused::Page(refusal)) => *refusal,
        Err(Refused::Status(status)) => {
            let stale = "this registration changed since you opened it (another reviewer or the applicant acted). It is shown as it is now: read it again and decide.";
            let errors = FieldErrors::refused(about.done, &status, stale);
            show(&c, &v, &id, String::new(), &errors).await
        }
    }
}
