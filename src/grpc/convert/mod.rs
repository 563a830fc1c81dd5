//! Conversions between protobuf messages and domain types. Parsing collects
//! every violation (named by its field path) instead of stopping at the first.

mod event;
mod institution;
mod lookup;
mod page_token;
mod registration;

use std::str::FromStr;

use prost::Message;
use prost_types::{FieldMask, Timestamp};
use sha2::{Digest, Sha256};
use time::{Date, Month, OffsetDateTime};

use crate::db::idempotency;
use crate::domain::{
    Invalid, Violations,
    principal::Principal,
    request::{Etag, RequestId},
    text::echo,
};
use crate::pb;
use crate::registry::WriteContext;

pub use event::{event_to_pb, role_to_pb, state_name_to_pb};
pub use institution::*;
pub use lookup::*;
pub use page_token::*;
pub use registration::*;

/// A write request: it carries an idempotency key (`request_id`).
pub trait WriteRequest: Message + Clone {
    /// The RPC's name, part of the key: a key reused for another RPC is refused.
    const OPERATION: &'static str;
    fn request_id(&self) -> &str;
    /// Whether the caller asked for a dry run (`validate_only`).
    fn validate_only(&self) -> bool;
    /// What the idempotency key's hash covers: the request without the key
    /// and without `validate_only` (a dry run and the real call are one
    /// request).
    fn payload(&self) -> Self;
}

macro_rules! write_requests {
    ($($req:ty => $op:literal,)+) => {$(
        impl WriteRequest for $req {
            const OPERATION: &'static str = $op;
            fn request_id(&self) -> &str {
                &self.request_id
            }
            fn validate_only(&self) -> bool {
                false
            }
            fn payload(&self) -> Self {
                Self { request_id: String::new(), ..self.clone() }
            }
        }
    )+};
}

/// Writes that offer a dry run.
macro_rules! dry_runnable_write_requests {
    ($($req:ty => $op:literal,)+) => {$(
        impl WriteRequest for $req {
            const OPERATION: &'static str = $op;
            fn request_id(&self) -> &str {
                &self.request_id
            }
            fn validate_only(&self) -> bool {
                self.validate_only
            }
            fn payload(&self) -> Self {
                Self { request_id: String::new(), validate_only: false, ..self.clone() }
            }
        }
    )+};
}

dry_runnable_write_requests! {
    pb::CreateInstitutionRequest => "CreateInstitution",
    pb::UpdateInstitutionRequest => "UpdateInstitution",
    pb::SubmitRegistrationRequest => "SubmitRegistration",
    pb::AmendRegistrationRequest => "AmendRegistration",
    pb::RenewRegistrationRequest => "RenewRegistration",
    pb::BatchSubmitRegistrationsRequest => "BatchSubmitRegistrations",
}

write_requests! {
    pb::WithdrawRegistrationRequest => "WithdrawRegistration",
    pb::AttestRegistrationRequest => "AttestRegistration",
    pb::ApproveRegistrationRequest => "ApproveRegistration",
    pb::RejectRegistrationRequest => "RejectRegistration",
    pb::RequestInformationRequest => "RequestInformation",
    pb::SuspendRegistrationRequest => "SuspendRegistration",
    pb::ReinstateRegistrationRequest => "ReinstateRegistration",
    pb::RevokeRegistrationRequest => "RevokeRegistration",
}

/// Parses `request_id` (required on creations) into the context of a write
/// by `principal`: the actor the audit trail names and the idempotency key.
/// The key's payload hash covers the whole request except the key itself,
/// so a retry must resend the same payload.
pub fn write_context<M: WriteRequest>(
    principal: &Principal,
    request: &M,
    required: bool,
    v: &mut Violations,
) -> WriteContext {
    let request_id = request.request_id();
    let actor = principal.actor(request_id);
    let dry_run = request.validate_only();
    let unkeyed = |actor| WriteContext {
        actor,
        key: None,
        dry_run,
    };
    if request_id.is_empty() {
        if required {
            v.add("request_id", "is required (an idempotency key, a UUID is best)");
        }
        return unkeyed(actor);
    }
    let Some(id) = v.check("request_id", RequestId::from_str(request_id)) else {
        return unkeyed(actor);
    };
    let key = idempotency::Key {
        scope: principal.idempotency_scope(),
        request_id: id.into_string(),
        operation: M::OPERATION,
        request_hash: Sha256::digest(request.payload().encode_to_vec()).into(),
    };
    WriteContext {
        actor,
        key: Some(key),
        dry_run,
    }
}

/// Parses a filter on an enum: UNSPECIFIED means any.
pub fn enum_filter<T>(field: &str, raw: i32, parse: fn(i32) -> Option<T>, what: &str, v: &mut Violations) -> Option<T> {
    let parsed = parse(raw);
    if parsed.is_none() && raw != 0 {
        v.add(field, format!("{raw} is not {what}"));
    }
    parsed
}

/// Parses a text field that may be left empty.
pub fn optional<T: FromStr<Err = Invalid>>(field: &str, raw: &str, v: &mut Violations) -> Option<T> {
    if raw.trim().is_empty() {
        None
    } else {
        v.check(field, T::from_str(raw))
    }
}

/// Parses a text field that must be present.
pub fn required<T: FromStr<Err = Invalid>>(field: &str, raw: &str, v: &mut Violations) -> Option<T> {
    if raw.trim().is_empty() {
        v.add(field, "is required");
        None
    } else {
        v.check(field, T::from_str(raw))
    }
}

pub fn timestamp(t: OffsetDateTime) -> Timestamp {
    Timestamp {
        seconds: t.unix_timestamp(),
        nanos: t.nanosecond() as i32,
    }
}

pub fn from_timestamp(t: &Timestamp) -> Result<OffsetDateTime, Invalid> {
    let nanos = u32::try_from(t.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| Invalid::new("nanos must be in 0..1e9"))?;
    OffsetDateTime::from_unix_timestamp(t.seconds)
        .map(|d| d.replace_nanosecond(nanos).unwrap_or(d))
        .map_err(|_| Invalid::new("is out of range"))
}

pub fn date(d: Date) -> pb::google::r#type::Date {
    pb::google::r#type::Date {
        year: d.year(),
        month: i32::from(u8::from(d.month())),
        day: i32::from(d.day()),
    }
}

pub fn from_date(d: &pb::google::r#type::Date) -> Result<Date, Invalid> {
    let month = u8::try_from(d.month)
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .ok_or_else(|| Invalid::new("month must be 1 to 12"))?;
    let day = u8::try_from(d.day).map_err(|_| Invalid::new("day is out of range"))?;
    Date::from_calendar_date(d.year, month, day).map_err(|e| Invalid(format!("is not a calendar date: {e}")))
}

/// Checks an update mask against the fields it may name (`name` gives a
/// field's name in the mask).
pub fn mask_fields<F: Copy>(
    mask: Option<&FieldMask>,
    allowed: &[F],
    name: fn(F) -> &'static str,
    v: &mut Violations,
) -> Vec<F> {
    let Some(mask) = mask.filter(|m| !m.paths.is_empty()) else {
        v.add("update_mask", "is required and must name the fields to change");
        return Vec::new();
    };
    let mut fields = Vec::new();
    for (i, path) in mask.paths.iter().enumerate() {
        match allowed.iter().find(|f| name(**f) == path) {
            Some(f) => fields.push(*f),
            None => {
                let names: Vec<&str> = allowed.iter().map(|f| name(*f)).collect();
                v.add(
                    format!("update_mask.paths[{i}]"),
                    format!("{} cannot be updated (allowed: {})", echo(path), names.join(", ")),
                );
            }
        }
    }
    fields
}

pub fn parse_etag(raw: &str, field: &str, v: &mut Violations) -> Option<Etag> {
    if raw.is_empty() {
        None
    } else {
        v.check(field, Etag::from_str(raw))
    }
}

/// Parses a timestamp that must be present.
pub fn required_timestamp(field: &str, t: Option<&Timestamp>, v: &mut Violations) -> Option<OffsetDateTime> {
    match t {
        Some(t) => v.check(field, from_timestamp(t)),
        None => {
            v.add(field, "is required");
            None
        }
    }
}

/// Parses an etag that must be present (`missing` says why).
pub fn required_etag(raw: &str, field: &str, missing: &str, v: &mut Violations) -> Option<Etag> {
    if raw.is_empty() {
        v.add(field, missing);
        None
    } else {
        parse_etag(raw, field, v)
    }
}

/// The `category` filter of a list: UNSPECIFIED means any.
pub fn category_filter(raw: i32, v: &mut Violations) -> Option<crate::domain::institution::Category> {
    enum_filter("category", raw, category_from_pb, "an InstitutionCategory", v)
}

/// The `kind` filter of a list: UNSPECIFIED means any.
pub fn kind_filter(raw: i32, v: &mut Violations) -> Option<crate::domain::registration::Kind> {
    enum_filter("kind", raw, kind_from_pb, "a RegistrationKind", v)
}
