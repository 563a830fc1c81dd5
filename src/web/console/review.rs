//! The reviewer's pages: the queue (filters by category, kind, ISP and
//! age; oldest first; how long each has waited), and a registration's
//! detail with the institution, the ISP's attestation, a revision as a diff
//! against the version in force, the full history, and the decisions, each
//! with a reason code and a reason. A decision on a page that went stale
//! (another reviewer acted) is refused by the etag and the page reloads.

use std::collections::HashMap;

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::evidence::Evidence;
use super::fields::FieldErrors;
use super::{Console, Id, Refused, Visitor, applicant, history, page};
use crate::domain::{decision::Decision, state::ReasonCode};
use crate::grpc::convert::{self, timestamp};
use crate::grpc::review::DecisionFields;
use crate::pb::{self, institution_service_server::InstitutionService, review_service_server::ReviewService};

const QUEUE: &str = "/vpnregistry.v1.ReviewService/ListReviewQueue";
const INSTITUTION: &str = "/vpnregistry.v1.InstitutionService/GetInstitution";

#[derive(Deserialize, Serialize, Default, Clone)]
pub(super) struct QueueQuery {
    #[serde(default)]
    category: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    isp: String,
    /// Waiting at least this many days.
    #[serde(default)]
    days: String,
    #[serde(default)]
    after: String,
    /// The reference just decided, and how (to say so).
    #[serde(default, skip_serializing)]
    done: String,
    #[serde(default, skip_serializing)]
    how: String,
}

impl QueueQuery {
    /// The link to the page after `token`, with the same filters.
    fn next_page(&self, token: &str) -> String {
        let next = Self {
            after: token.to_owned(),
            ..self.clone()
        };
        format!(
            "/console/review?{}",
            serde_urlencoded::to_string(next).unwrap_or_default()
        )
    }
}

pub(super) async fn queue(State(c): State<Console>, v: Visitor, Query(q): Query<QueueQuery>) -> Response {
    let days: i64 = q.days.trim().parse().unwrap_or(0).clamp(0, 3650);
    let msg = pb::ListReviewQueueRequest {
        page_size: page::PAGE_SIZE,
        page_token: q.after.clone(),
        kind: enum_of(&q.kind, "REGISTRATION_KIND_", |n| {
            pb::RegistrationKind::from_str_name(n).map(|k| k as i32)
        }),
        category: enum_of(&q.category, "INSTITUTION_CATEGORY_", |n| {
            pb::InstitutionCategory::from_str_name(n).map(|k| k as i32)
        }),
        isp: q.isp.clone(),
        queued_before: (days > 0).then(|| timestamp(OffsetDateTime::now_utc() - Duration::days(days))),
    };
    let list = match c.call(&v, QUEUE, msg, |req| c.review.list_review_queue(req)).await {
        Ok(list) => list,
        Err(refused) => return refused.page("Review queue", &v),
    };
    let names = institution_names(&c, &v, list.registrations.iter().map(|r| r.institution_id.as_str())).await;
    let isps = c.isps(&v).await;
    let notice = decided_notice(&q.done, &q.how);
    let body = html! {
        @if let Some(n) = notice { p class="notice" role="status" { (n) } }
        (queue_filters(&q, &isps))
        @if list.registrations.is_empty() {
            p { "Nothing waits for review with these filters." }
        } @else {
            p { "Oldest first." }
            (queue_table(&list.registrations, &names))
        }
        @if !list.next_page_token.is_empty() {
            p { a href=(q.next_page(&list.next_page_token)) { "Older" } }
        }
    };
    page::respond(StatusCode::OK, page::frame("Review queue", Some(&v.session), body))
}

/// The queue's filters: category, kind, ISP, how long items have waited.
fn queue_filters(q: &QueueQuery, isps: &[(String, String)]) -> Markup {
    html! {
    form method="get" action="/console/review" {
        fieldset class="filters" {
            legend { "Show only" }
            div {
                label for="q-category" { "Category" }
                select id="q-category" name="category" {
                    option value="" { "Any" }
                    @for (value, words) in page::categories() { option value=(value) selected[value == q.category] { (words) } }
                }
            }
            div {
                label for="q-kind" { "Kind" }
                select id="q-kind" name="kind" {
                    option value="" { "Any" }
                    @for k in ["VPN", "CALL_CENTER_VOIP", "VIDEO_CONFERENCING"] {
                        option value=(k) selected[k == q.kind] { (page::kind(pb::RegistrationKind::from_str_name(&format!("REGISTRATION_KIND_{k}")).map_or(0, |k| k as i32))) }
                    }
                }
            }
            div {
                label for="q-isp" { "ISP" }
                select id="q-isp" name="isp" {
                    option value="" { "Any" }
                    @for (code, name) in isps { option value=(code) selected[*code == q.isp] { (name) } }
                }
            }
            div {
                label for="q-days" { "Waiting at least" }
                select id="q-days" name="days" {
                    @for (d, l) in [("", "Any time"), ("1", "1 day"), ("3", "3 days"), ("7", "7 days"), ("30", "30 days")] {
                        option value=(d) selected[d == q.days] { (l) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
    }
    }
}

/// The queue's page: reference, institution, what it is, ISP, how long it waited.
fn queue_table(registrations: &[pb::Registration], names: &HashMap<String, (String, String)>) -> Markup {
    html! {
        table {
            thead { tr { th { "Reference" } th { "Institution" } th { "What" } th { "ISP" } th { "Waiting" } } }
            tbody {
                @for r in registrations {
                    @let since = queued_at(r);
                    tr {
                        td { a href={ "/console/review/" (r.id) } { (r.reference) } }
                        td { @match names.get(&r.institution_id) { Some((name, cat)) => { (name) br; small { (cat) } } None => { (r.institution_id) } } }
                        td {
                            (page::kind(r.kind))
                            @match &r.pending_revision {
                                Some(rev) if rev.is_renewal => { br; small { "renewal" } }
                                Some(_) => { br; small { "amendment of an active registration" } }
                                None => { br; small { "new registration" } }
                            }
                        }
                        td { (r.pending_revision.as_ref().map_or(&r.isp, |rev| &rev.isp)) }
                        td {
                            @if let Some(t) = since { strong { (page::waited(t)) } br; small { "since " (page::pkt(t)) } }
                        }
                    }
                }
            }
        }
    }
}

/// A filter's enum value; an unknown name is sent as an invalid value so
/// the API refuses it rather than the filter silently widening.
fn enum_of(name: &str, prefix: &str, from: fn(&str) -> Option<i32>) -> i32 {
    if name.is_empty() {
        0
    } else {
        from(&format!("{prefix}{name}")).unwrap_or(-1)
    }
}

/// When an item entered the queue: its revision's state time for a revision.
fn queued_at(r: &pb::Registration) -> Option<OffsetDateTime> {
    let t = r
        .pending_revision
        .as_ref()
        .map_or(r.state_time.as_ref(), |rev| rev.state_time.as_ref());
    t.and_then(|t| crate::grpc::convert::from_timestamp(t).ok())
}

/// "VPN-… approved." after a decision (only a reference and a known word
/// are said back).
fn decided_notice(done: &str, how: &str) -> Option<String> {
    let how = Decision::named(how)?;
    page::is_reference(done).then(|| format!("{done}: {}.", how.about().done))
}

/// Names and categories of institutions, by id (one GetInstitution each,
/// through the gate like any call).
async fn institution_names<'a>(
    c: &Console,
    v: &Visitor,
    ids: impl Iterator<Item = &'a str>,
) -> HashMap<String, (String, String)> {
    let mut names = HashMap::new();
    for id in ids {
        if names.contains_key(id) {
            continue;
        }
        if let Some(i) = institution(c, v, id).await {
            names.insert(id.to_owned(), (i.legal_name, page::category(i.category)));
        }
    }
    names
}

async fn institution(c: &Console, v: &Visitor, id: &str) -> Option<pb::Institution> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_keeps_the_filters_and_drops_the_notice() {
        let q = QueueQuery {
            category: "BANK".into(),
            isp: "a&b c".into(),
            days: "3".into(),
            after: "q:1:old".into(),
            done: "VPN-2026-000001".into(),
            how: "approve".into(),
            ..QueueQuery::default()
        };
        assert_eq!(
            q.next_page("q:2:abc"),
            "/console/review?category=BANK&kind=&isp=a%26b+c&days=3&after=q%3A2%3Aabc"
        );
    }
}
