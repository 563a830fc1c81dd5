//! Audit events (a registration's history) on the wire.

use super::{reason_code_name_to_pb, state_to_pb, timestamp};
use crate::db::audit::Event;
use crate::domain::state::State;
use crate::pb;

pub fn role_to_pb(role: &str) -> pb::Role {
    match role {
        "admin" => pb::Role::Admin,
        "reviewer" => pb::Role::Reviewer,
        "isp" => pb::Role::Isp,
        "lookup" => pb::Role::Lookup,
        "institution" => pb::Role::Institution,
        "payments" => pb::Role::Payments,
        "system" => pb::Role::System,
        _ => pb::Role::Unspecified,
    }
}

fn action_to_pb(action: &str) -> pb::RegistrationAction {
    pb::RegistrationAction::from_str_name(&format!("REGISTRATION_ACTION_{action}"))
        .unwrap_or(pb::RegistrationAction::Unspecified)
}

/// A state as stored (a name, or none) on the wire.
pub fn state_name_to_pb(s: Option<&str>) -> i32 {
    s.and_then(State::from_db)
        .map_or(pb::RegistrationState::Unspecified, state_to_pb) as i32
}

/// JSON (as stored in the audit trail) to a protobuf Value.
fn json_to_value(j: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind as V;
    use serde_json::Value as J;
    let kind = match j {
        J::Null => V::NullValue(0),
        J::Bool(b) => V::BoolValue(b),
        J::Number(n) => V::NumberValue(n.as_f64().unwrap_or_default()),
        J::String(s) => V::StringValue(s),
        J::Array(a) => V::ListValue(prost_types::ListValue {
            values: a.into_iter().map(json_to_value).collect(),
        }),
        J::Object(o) => V::StructValue(prost_types::Struct {
            fields: o.into_iter().map(|(k, v)| (k, json_to_value(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

pub fn event_to_pb(e: Event) -> pb::RegistrationEvent {
    let changes = match e.changes {
        serde_json::Value::Array(items) => items
            .into_iter()
            .map(|mut c| pb::FieldChange {
                field: c["field"].as_str().unwrap_or_default().to_owned(),
                before: Some(json_to_value(c["before"].take())),
                after: Some(json_to_value(c["after"].take())),
            })
            .collect(),
        _ => Vec::new(),
    };
    pb::RegistrationEvent {
        sequence: e.sequence,
        registration_id: e.subject_id.to_string(),
        action: action_to_pb(&e.action) as i32,
        actor: Some(pb::Actor {
            principal_id: e.actor_principal_id.map(|id| id.to_string()).unwrap_or_default(),
            name: e.actor_name,
            role: role_to_pb(&e.actor_role) as i32,
        }),
        create_time: Some(timestamp(e.create_time)),
        request_id: e.request_id.unwrap_or_default(),
        from_state: state_name_to_pb(e.from_state.as_deref()),
        to_state: state_name_to_pb(e.to_state.as_deref()),
        reason: e.reason.unwrap_or_default(),
        changes,
        reason_code: reason_code_name_to_pb(e.reason_code.as_deref()),
        revision_id: e.revision_id.map(|id| id.to_string()).unwrap_or_default(),
    }
}
