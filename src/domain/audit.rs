//! What the audit trail records about a change: decided alongside the
//! change itself, written by the store in the same transaction.

use serde_json::{Value, json};
use uuid::Uuid;

use super::state::{Action, ReasonCode, State};
use super::text::Reason;

/// One event in a registration's history (or its pending revision's).
#[derive(Debug, Clone)]
pub struct Record {
    pub action: Action,
    pub from: Option<State>,
    pub to: State,
    pub revision_id: Option<Uuid>,
    pub reason_code: Option<ReasonCode>,
    pub reason: Option<Reason>,
    /// `[{"field", "before", "after"}]`, see [`diff`].
    pub changes: Value,
}

impl Record {
    /// A change of state that touched no declared field.
    pub fn transition(action: Action, from: Option<State>, to: State) -> Self {
        Self {
            action,
            from,
            to,
            revision_id: None,
            reason_code: None,
            reason: None,
            changes: json!([]),
        }
    }
}

/// The fields whose value differs between two snapshots, as
/// `[{"field", "before", "after"}]`. A missing `before` records a creation.
pub fn diff(before: Option<&[(&'static str, Value)]>, after: &[(&'static str, Value)]) -> Value {
    let changes: Vec<Value> = after
        .iter()
        .filter_map(|(field, new)| {
            let old = before
                .and_then(|b| b.iter().find(|(f, _)| f == field))
                .map_or(&Value::Null, |(_, v)| v);
            (old != new).then(|| json!({ "field": field, "before": old, "after": new }))
        })
        .collect();
    Value::Array(changes)
}
