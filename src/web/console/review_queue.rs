//! The reviewer's queue: filters by category, kind, ISP and age; oldest
//! first; how long each has waited; a notice of the decision just taken.

use std::collections::HashMap;

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::Response,
};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::review::institution;
use super::{Console, Visitor, page};
use crate::domain::decision::Decision;
use crate::grpc::convert::timestamp;
use crate::pb::{self, review_service_server::ReviewService};

const QUEUE: &str = "/vpnregistry.v1.ReviewService/ListReviewQueue";

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
