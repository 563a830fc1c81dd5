//! gRPC services: one file per service, each handler parse -> call -> convert.

pub mod convert;
pub mod error;
pub mod institutions;
pub mod isps;
pub mod lookup;
pub mod registrations;
pub mod review;

use prost::Message;
use sha2::{Digest, Sha256};
use std::str::FromStr;

use crate::db::idempotency;
use crate::domain::{
    Violations,
    principal::{Principal, Role},
    request::RequestId,
};
use error::ApiError;

/// Refuses the call unless the principal acts in one of `allowed` roles.
pub(crate) fn require_role(p: &Principal, allowed: &[&str], what: &str) -> Result<(), ApiError> {
    if allowed.contains(&p.role.as_str()) {
        Ok(())
    } else {
        Err(ApiError::PermissionDenied(format!(
            "role {} may not {what} (allowed: {})",
            p.role.as_str(),
            allowed.join(", ")
        )))
    }
}

/// The institution an institution principal acts for.
pub(crate) fn own_institution(p: &Principal) -> Option<uuid::Uuid> {
    match p.role {
        Role::Institution(id) => Some(id),
        _ => None,
    }
}

/// Parses `request_id` (required or optional) and builds the idempotency key
/// for `operation`. The payload hash covers the whole request except the key
/// itself, so a retry must resend the same payload.
pub(crate) fn idempotency_key<M: Message + Clone>(
    principal: &Principal,
    operation: &'static str,
    request_id: &str,
    required: bool,
    request: &M,
    clear_request_id: impl FnOnce(&mut M),
    v: &mut Violations,
) -> Option<idempotency::Key> {
    if request_id.is_empty() {
        if required {
            v.add("request_id", "is required (an idempotency key, a UUID is best)");
        }
        return None;
    }
    let id = v.check("request_id", RequestId::from_str(request_id))?;
    let mut payload = request.clone();
    clear_request_id(&mut payload);
    Some(idempotency::Key {
        scope: principal.idempotency_scope(),
        request_id: id.into_string(),
        operation,
        request_hash: Sha256::digest(payload.encode_to_vec()).into(),
    })
}
