//! A registration's history as applicants and reviewers read it: who, when
//! (PKT), what happened, why, and what changed.

use maud::{Markup, html};
use prost_types::value::Kind;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::page;
use crate::pb;

/// The events, oldest first.
pub fn table(events: &[pb::RegistrationEvent]) -> Markup {
    html! {
        @if events.is_empty() {
            p { "No history yet." }
        } @else {
            table {
                thead { tr { th { "When" } th { "What" } th { "Who" } th { "Why" } th { "What changed" } } }
                tbody {
                    @for e in events {
                        tr {
                            td { (page::pkt_of(e.create_time.as_ref())) }
                            td {
                                (action(e.action))
                                @if e.from_state != e.to_state {
                                    br; small { (page::state(e.from_state)) " → " (page::state(e.to_state)) }
                                }
                                @if !e.revision_id.is_empty() { br; small { "(a revision)" } }
                            }
                            td {
                                @if let Some(a) = &e.actor {
                                    (a.name) br; small { (role(a.role)) }
                                }
                            }
                            td {
                                @if e.reason_code != 0 { strong { (reason_code(e.reason_code)) } br; }
                                (e.reason)
                            }
                            td {
                                @for c in e.changes.iter().filter(|c| value(c.before.as_ref()) != value(c.after.as_ref())) {
                                    div { strong { (c.field) } ": " (value(c.before.as_ref())) " → " (value(c.after.as_ref())) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn action(action: i32) -> String {
    pb::RegistrationAction::try_from(action)
        .map(|a| page::words(a.as_str_name(), "REGISTRATION_ACTION_"))
        .unwrap_or_default()
}

pub fn reason_code(code: i32) -> String {
    pb::ReasonCode::try_from(code)
        .map(|c| page::words(c.as_str_name(), "REASON_CODE_"))
        .unwrap_or_default()
}

fn role(role: i32) -> String {
    pb::Role::try_from(role)
        .map(|r| match r {
            pb::Role::Isp => "ISP".to_owned(),
            other => page::words(other.as_str_name(), "ROLE_"),
        })
        .unwrap_or_default()
}

/// A changed field's value as text.
fn value(v: Option<&prost_types::Value>) -> String {
    match v.and_then(|v| v.kind.as_ref()) {
        None | Some(Kind::NullValue(_)) => "—".to_owned(),
        Some(Kind::StringValue(s)) if s.is_empty() => "—".to_owned(),
        Some(Kind::StringValue(s)) => match OffsetDateTime::parse(s, &Rfc3339) {
            Ok(t) => page::pkt(t),
            Err(_) => s.clone(),
        },
        Some(Kind::NumberValue(n)) => n.to_string(),
        Some(Kind::BoolValue(b)) => b.to_string(),
        Some(Kind::ListValue(l)) if l.values.is_empty() => "—".to_owned(),
        Some(Kind::ListValue(l)) => l.values.iter().map(|v| value(Some(v))).collect::<Vec<_>>().join(", "),
        Some(Kind::StructValue(_)) => "(details)".to_owned(),
    }
}
