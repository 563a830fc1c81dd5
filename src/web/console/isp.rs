//! The ISP attestation desk: what waits for this ISP, oldest first, and
//! confirm or deny with a reason. Shows only what attestation needs (the
//! RPC's `Attestation`: no identity documents).

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Console, Refused, Visitor, page, session::Session};
use crate::domain::text::echo;
use crate::grpc::convert::from_timestamp;
use crate::pb::{self, isp_service_server::IspService};

const LIST: &str = "/vpnregistry.v1.IspService/ListPendingAttestations";
const ATTEST: &str = "/vpnregistry.v1.IspService/AttestRegistration";

#[derive(Deserialize, Default)]
pub(super) struct DeskQuery {
    /// The page after this token (from the previous page's "Older" link).
    #[serde(default)]
    after: String,
    /// The reference just attested, and how (to say so).
    #[serde(default)]
    done: String,
    #[serde(default)]
    confirmed: bool,
}

pub(super) async fn desk(State(c): State<Console>, v: Visitor, Query(q): Query<DeskQuery>) -> Response {
    // Only a reference is said back (a crafted link cannot put words here).
    let notice = page::is_reference(&q.done).then(|| {
        let how = if q.confirmed { "confirmed" } else { "denied" };
        format!("{} {how}.", q.done)
    });
    render(&c, &v, &q.after, notice.as_deref(), None).await
}

/// The desk, with a notice or an error above the list.
async fn render(c: &Console, v: &Visitor, after: &str, notice: Option<&str>, error: Option<&str>) -> Response {
    let session = &v.session;
    let msg = pb::ListPendingAttestationsRequest {
        page_size: page::PAGE_SIZE,
        page_token: after.to_owned(),
    };
    let list = match c.call(v, LIST, msg, |req| c.isp.list_pending_attestations(req)).await {
        Ok(list) => list,
        Err(refused) => return refused.page("Attestations waiting for you", v),
    };
    let body = html! {
        @if let Some(n) = notice { p class="notice" role="status" { (n) } }
        @if let Some(e) = error { p class="error" role="alert" { (e) } }
        @if list.attestations.is_empty() {
            p { "Nothing waits for your attestation." }
        } @else {
            p { "Oldest first. Check that the subscriber and the addresses are the applicant's, then confirm or deny with a reason." }
            table {
                thead { tr { th { "Reference" } th { "Applicant" } th { "Subscriber" } th { "Addresses" } th { "Waiting" } th { "Decision" } } }
                tbody { @for a in &list.attestations { (row(a, session)) } }
            }
        }
        @if !list.next_page_token.is_empty() {
            p { a href={ "/console/isp?after=" (list.next_page_token) } { "Older" } }
        }
    };
    page::respond(
        StatusCode::OK,
        page::frame("Attestations waiting for you", Some(session), body),
    )
}

fn row(a: &pb::Attestation, session: &Session) -> Markup {
    let since = a.state_time.as_ref().and_then(|t| from_timestamp(t).ok());
    let reason_id = format!("reason-{}", a.registration_id);
    html! {
        tr {
            td { (a.reference) @if !a.revision_id.is_empty() { br; small { "(a revision)" } } }
            td { (a.institution_name) }
            td { (a.isp_subscriber_id) @if !a.msisdn.is_empty() { br; (a.msisdn) } }
            td { @for p in &a.source_prefixes { (p) br; } }
            td { @if let Some(t) = since { (page::waited(t)) br; small { "since " (page::pkt(t)) } } }
            td {
                form method="post" action="/console/isp/attest" {
                    input type="hidden" name="id" value=(a.registration_id);
                    input type="hidden" name="etag" value=(a.etag);
                    input type="hidden" name="reference" value=(a.reference);
                    input type="hidden" name="csrf" value=(session.csrf);
                    label for=(reason_id) { "Reason (required to deny)" }
                    input type="text" id=(reason_id) name="reason" maxlength="500";
                    button type="submit" name="decision" value="confirm" { "Confirm" }
                    button type="submit" name="decision" value="deny" { "Deny" }
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct AttestForm {
    id: String,
    etag: String,
    reference: String,
    csrf: String,
    decision: String,
    #[serde(default)]
    reason: String,
}

pub(super) async fn attest(State(c): State<Console>, v: Visitor, axum::Form(form): axum::Form<AttestForm>) -> Response {
    if let Err(refusal) = v.check_csrf(&form.csrf) {
        return *refusal;
    }
    let confirmed = form.decision == "confirm";
    let msg = pb::AttestRegistrationRequest {
        id: form.id,
        etag: form.etag,
        confirmed,
        reason: form.reason,
        request_id: String::new(),
    };
    match c.call(&v, ATTEST, msg, |req| c.isp.attest_registration(req)).await {
        // The reference as the registry has it (not the form's) goes in the URL.
        Ok(done) => {
            Redirect::to(&format!("/console/isp?done={}&confirmed={confirmed}", done.reference)).into_response()
        }
        Err(Refused::Page(page)) => *page,
        Err(Refused::Status(status)) => {
            let reference = echo(&form.reference);
            let why = match status.code() {
                tonic::Code::Aborted | tonic::Code::FailedPrecondition => format!(
                    "{} changed since this page was loaded (someone else may have acted on it); it is shown as it is now: check it again. ({})",
                    reference,
                    status.message()
                ),
                _ => format!("{reference} was not attested: {}", status.message()),
            };
            render(&c, &v, "", None, Some(&why)).await
        }
    }
}
