//! Conversions between protobuf messages and domain types. Parsing collects
//! every violation (named by its field path) instead of stopping at the first.

use std::str::FromStr;

use prost_types::{FieldMask, Timestamp};
use time::{Date, Month, OffsetDateTime, UtcOffset};

use crate::db::audit::Event;
use crate::domain::{
    Violations,
    institution::{Category, Institution, PROFILE_FIELDS, ProfileDraft},
    registration::{Kind, PrefixList, Protocol, Registration, Revision, SpecDraft},
    request::Etag,
    state::{ReasonCode, State},
    text::Invalid,
};
use crate::pb;

/// Pakistan Standard Time, the regulator's calendar (no daylight saving).
const PKT: UtcOffset = match UtcOffset::from_hms(5, 0, 0) {
    Ok(offset) => offset,
    Err(_) => panic!("valid offset"),
};

/// Today's date in Pakistan, for "not in the past" checks on dates.
pub fn today() -> Date {
    OffsetDateTime::now_utc().to_offset(PKT).date()
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

fn date(d: Date) -> pb::google::r#type::Date {
    pb::google::r#type::Date {
        year: d.year(),
        month: i32::from(u8::from(d.month())),
        day: i32::from(d.day()),
    }
}

fn from_date(d: &pb::google::r#type::Date) -> Result<Date, Invalid> {
    let month = u8::try_from(d.month)
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .ok_or_else(|| Invalid::new("month must be 1 to 12"))?;
    let day = u8::try_from(d.day).map_err(|_| Invalid::new("day is out of range"))?;
    Date::from_calendar_date(d.year, month, day).map_err(|e| Invalid(format!("is not a calendar date: {e}")))
}

/// Checks an update mask against the fields it may name.
pub fn mask_paths<'m>(mask: Option<&'m FieldMask>, allowed: &[&str], v: &mut Violations) -> Vec<&'m str> {
    let Some(mask) = mask.filter(|m| !m.paths.is_empty()) else {
        v.add("update_mask", "is required and must name the fields to change");
        return Vec::new();
    };
    let mut paths = Vec::new();
    for (i, path) in mask.paths.iter().enumerate() {
        if allowed.contains(&path.as_str()) {
            paths.push(path.as_str());
        } else {
            v.add(
                format!("update_mask.paths[{i}]"),
                format!("{path:?} cannot be updated (allowed: {})", allowed.join(", ")),
            );
        }
    }
    paths
}

pub fn parse_etag(raw: &str, field: &str, v: &mut Violations) -> Option<Etag> {
    if raw.is_empty() {
        None
    } else {
        v.check(field, Etag::from_str(raw))
    }
}

// ---- institutions ----

pub fn category_from_pb(value: i32) -> Option<Category> {
    use pb::InstitutionCategory as C;
    match C::try_from(value).ok()? {
        C::Unspecified => None,
        C::Bank => Some(Category::Bank),
        C::ForeignMission => Some(Category::ForeignMission),
        C::ItCompany => Some(Category::ItCompany),
        C::CallCenterBpo => Some(Category::CallCenterBpo),
        C::Company => Some(Category::Company),
        C::Government => Some(Category::Government),
        C::Freelancer => Some(Category::Freelancer),
    }
}

pub fn category_to_pb(c: Category) -> pb::InstitutionCategory {
    use pb::InstitutionCategory as C;
    match c {
        Category::Bank => C::Bank,
        Category::ForeignMission => C::ForeignMission,
        Category::ItCompany => C::ItCompany,
        Category::CallCenterBpo => C::CallCenterBpo,
        Category::Company => C::Company,
        Category::Government => C::Government,
        Category::Freelancer => C::Freelancer,
    }
}

/// Sets one profile field of `draft` from the message (an empty value clears it).
pub fn set_profile_field(draft: &mut ProfileDraft, field: &str, m: &pb::Institution, v: &mut Violations) {
    match field {
        "legal_name" => draft.legal_name = optional(field, &m.legal_name, v),
        "cnic" => draft.cnic = optional(field, &m.cnic, v),
        "ntn" => draft.ntn = optional(field, &m.ntn, v),
        "secp_number" => draft.secp_number = optional(field, &m.secp_number, v),
        "pseb_number" => draft.pseb_number = optional(field, &m.pseb_number, v),
        "pseb_expiry" => {
            draft.pseb_expiry = m
                .pseb_expiry
                .as_ref()
                .filter(|d| **d != Default::default())
                .and_then(|d| match from_date(d) {
                    Ok(d) if d < today() => {
                        v.add(
                            field,
                            format!("{d} is in the past; an expired PSEB registration is not accepted"),
                        );
                        None
                    }
                    r => v.check(field, r),
                })
        }
        "sbp_licence" => draft.sbp_licence = optional(field, &m.sbp_licence, v),
        "accreditation_ref" => draft.accreditation_ref = optional(field, &m.accreditation_ref, v),
        "country" => draft.country = optional(field, &m.country, v),
        "contact_email" => draft.contact_email = optional(field, &m.contact_email, v),
        "contact_phone" => draft.contact_phone = optional(field, &m.contact_phone, v),
        _ => {}
    }
}

/// Parses a new institution's category and every profile field.
pub fn new_institution(m: &pb::Institution) -> Result<(Category, crate::domain::institution::Profile), Violations> {
    let mut v = Violations::default();
    let category = category_from_pb(m.category);
    if category.is_none() {
        v.add("category", "is required");
    }
    let mut draft = ProfileDraft::default();
    for field in PROFILE_FIELDS {
        set_profile_field(&mut draft, field, m, &mut v);
    }
    let Some(category) = category else {
        return Err(v);
    };
    v.and(draft.finish(category)).map(|profile| (category, profile))
}

pub fn institution_to_pb(i: Institution) -> pb::Institution {
    let p = i.profile;
    let (pseb_number, pseb_expiry) = match p.pseb {
        Some(pseb) => (pseb.number.as_str().to_owned(), Some(date(pseb.expiry))),
        None => (String::new(), None),
    };
    let text = |o: Option<&str>| o.unwrap_or_default().to_owned();
    pb::Institution {
        id: i.id.to_string(),
        category: category_to_pb(i.category) as i32,
        legal_name: p.legal_name.as_str().to_owned(),
        cnic: text(p.cnic.as_ref().map(|c| c.as_str())),
        ntn: text(p.ntn.as_ref().map(|n| n.as_str())),
        secp_number: text(p.secp_number.as_ref().map(|d| d.as_str())),
        pseb_number,
        pseb_expiry,
        sbp_licence: text(p.sbp_licence.as_ref().map(|d| d.as_str())),
        accreditation_ref: text(p.accreditation_ref.as_ref().map(|d| d.as_str())),
        country: text(p.country.map(|c| c.as_str())),
        contact_email: p.contact_email.as_str().to_owned(),
        contact_phone: p.contact_phone.as_str().to_owned(),
        etag: Etag::render(i.version),
        create_time: Some(timestamp(i.create_time)),
        update_time: Some(timestamp(i.update_time)),
    }
}

// ---- registrations ----

pub fn kind_from_pb(value: i32) -> Option<Kind> {
    use pb::RegistrationKind as K;
    match K::try_from(value).ok()? {
        K::Unspecified => None,
        K::Vpn => Some(Kind::Vpn),
        K::CallCenterVoip => Some(Kind::CallCenterVoip),
        K::VideoConferencing => Some(Kind::VideoConferencing),
    }
}

pub fn kind_to_pb(k: Kind) -> pb::RegistrationKind {
    use pb::RegistrationKind as K;
    match k {
        Kind::Vpn => K::Vpn,
        Kind::CallCenterVoip => K::CallCenterVoip,
        Kind::VideoConferencing => K::VideoConferencing,
    }
}

fn protocol_from_pb(value: i32) -> Result<Option<Protocol>, Invalid> {
    use pb::VpnProtocol as P;
    Ok(
        match P::try_from(value).map_err(|_| Invalid(format!("{value} is not a VpnProtocol")))? {
            P::Unspecified => None,
            P::IpsecIkev2 => Some(Protocol::IpsecIkev2),
            P::Openvpn => Some(Protocol::OpenVpn),
            P::Wireguard => Some(Protocol::WireGuard),
            P::SslTls => Some(Protocol::SslTls),
            P::L2tp => Some(Protocol::L2tp),
            P::Other => Some(Protocol::Other),
        },
    )
}

fn protocol_to_pb(p: Option<Protocol>) -> pb::VpnProtocol {
    use pb::VpnProtocol as P;
    match p {
        None => P::Unspecified,
        Some(Protocol::IpsecIkev2) => P::IpsecIkev2,
        Some(Protocol::OpenVpn) => P::Openvpn,
        Some(Protocol::WireGuard) => P::Wireguard,
        Some(Protocol::SslTls) => P::SslTls,
        Some(Protocol::L2tp) => P::L2tp,
        Some(Protocol::Other) => P::Other,
    }
}

pub fn state_from_pb(value: i32) -> Option<State> {
    use pb::RegistrationState as S;
    match S::try_from(value).ok()? {
        S::Unspecified => None,
        S::Submitted => Some(State::Submitted),
        S::IspVerification => Some(State::IspVerification),
        S::UnderReview => Some(State::UnderReview),
        S::NeedsInfo => Some(State::NeedsInfo),
        S::Active => Some(State::Active),
        S::Rejected => Some(State::Rejected),
        S::Suspended => Some(State::Suspended),
        S::Revoked => Some(State::Revoked),
        S::Expired => Some(State::Expired),
        S::Withdrawn => Some(State::Withdrawn),
    }
}

pub fn state_to_pb(s: State) -> pb::RegistrationState {
    use pb::RegistrationState as S;
    match s {
        State::Submitted => S::Submitted,
        State::IspVerification => S::IspVerification,
        State::UnderReview => S::UnderReview,
        State::NeedsInfo => S::NeedsInfo,
        State::Active => S::Active,
        State::Rejected => S::Rejected,
        State::Suspended => S::Suspended,
        State::Revoked => S::Revoked,
        State::Expired => S::Expired,
        State::Withdrawn => S::Withdrawn,
    }
}

/// Sets one spec field of `draft` from the message.
pub fn set_spec_field(draft: &mut SpecDraft, field: &str, m: &pb::Registration, v: &mut Violations) {
    match field {
        "kind" => {
            draft.kind = kind_from_pb(m.kind);
            if draft.kind.is_none() && m.kind != 0 {
                v.add(field, format!("{} is not a RegistrationKind", m.kind));
            }
        }
        "protocol" => draft.protocol = v.check(field, protocol_from_pb(m.protocol)).flatten(),
        "source_prefixes" => {
            let allow_large =
                draft.large_prefix_justification.is_some() || !m.large_prefix_justification.trim().is_empty();
            draft.source_prefixes = PrefixList::Source.parse(field, &m.source_prefixes, allow_large, v)
        }
        "msisdn" => draft.msisdn = optional(field, &m.msisdn, v),
        "peer_prefixes" => draft.peer_prefixes = PrefixList::Peer.parse(field, &m.peer_prefixes, false, v),
        "large_prefix_justification" => {
            draft.large_prefix_justification = optional(field, &m.large_prefix_justification, v)
        }
        "isp" => draft.isp = optional(field, &m.isp, v),
        "isp_subscriber_id" => draft.isp_subscriber_id = optional(field, &m.isp_subscriber_id, v),
        "purpose" => draft.purpose = optional(field, &m.purpose, v),
        "valid_from" => draft.valid_from = m.valid_from.as_ref().and_then(|t| v.check(field, from_timestamp(t))),
        "valid_until" => draft.valid_until = m.valid_until.as_ref().and_then(|t| v.check(field, from_timestamp(t))),
        _ => {}
    }
}

/// Every field of a submission's spec.
pub const SPEC_FIELDS: &[&str] = &[
    "kind",
    "protocol",
    "source_prefixes",
    "msisdn",
    "peer_prefixes",
    "isp",
    "isp_subscriber_id",
    "purpose",
    "valid_from",
    "valid_until",
    "large_prefix_justification",
];

/// A registration as the API returns it; `feed_serial` is what the write
/// that produced it committed at (0 for reads and writes outside the active set).
pub fn registration_to_pb(r: Registration, feed_serial: i64) -> pb::Registration {
    let s = r.spec;
    pb::Registration {
        id: r.id.to_string(),
        reference: r.reference,
        institution_id: r.institution_id.to_string(),
        kind: kind_to_pb(s.kind) as i32,
        protocol: protocol_to_pb(s.protocol) as i32,
        source_prefixes: s.source_prefixes.iter().map(ToString::to_string).collect(),
        msisdn: s.msisdn.map(|m| m.as_str().to_owned()).unwrap_or_default(),
        peer_prefixes: s.peer_prefixes.iter().map(ToString::to_string).collect(),
        isp: s.isp.as_str().to_owned(),
        isp_subscriber_id: s.isp_subscriber_id.as_str().to_owned(),
        purpose: s.purpose.as_str().to_owned(),
        valid_from: Some(timestamp(s.valid_from)),
        valid_until: Some(timestamp(s.valid_until)),
        state: state_to_pb(r.state) as i32,
        etag: Etag::render(r.version),
        create_time: Some(timestamp(r.create_time)),
        update_time: Some(timestamp(r.update_time)),
        large_prefix_justification: s
            .large_prefix_justification
            .map(|j| j.as_str().to_owned())
            .unwrap_or_default(),
        pending_revision: r.pending_revision.map(revision_to_pb),
        state_time: Some(timestamp(r.state_time)),
        feed_serial,
    }
}

fn revision_to_pb(v: Revision) -> pb::RegistrationRevision {
    let s = v.spec;
    pb::RegistrationRevision {
        id: v.id.to_string(),
        is_renewal: v.is_renewal,
        protocol: protocol_to_pb(s.protocol) as i32,
        source_prefixes: s.source_prefixes.iter().map(ToString::to_string).collect(),
        msisdn: s.msisdn.map(|m| m.as_str().to_owned()).unwrap_or_default(),
        peer_prefixes: s.peer_prefixes.iter().map(ToString::to_string).collect(),
        isp: s.isp.as_str().to_owned(),
        isp_subscriber_id: s.isp_subscriber_id.as_str().to_owned(),
        purpose: s.purpose.as_str().to_owned(),
        valid_from: Some(timestamp(s.valid_from)),
        valid_until: Some(timestamp(s.valid_until)),
        large_prefix_justification: s
            .large_prefix_justification
            .map(|j| j.as_str().to_owned())
            .unwrap_or_default(),
        state: state_to_pb(v.state) as i32,
        create_time: Some(timestamp(v.create_time)),
    }
}

/// What an ISP sees of a registration it attests: the attested revision's
/// addresses when there is one, the institution's name, no identity documents.
pub fn attestation_to_pb(r: Registration, institution_name: String, category: Category) -> pb::Attestation {
    let (revision_id, spec, state, state_time) = match r.pending_revision.filter(|_| r.state.is_live()) {
        Some(v) => (v.id.to_string(), v.spec, v.state, v.state_time),
        None => (String::new(), r.spec, r.state, r.state_time),
    };
    pb::Attestation {
        registration_id: r.id.to_string(),
        revision_id,
        reference: r.reference,
        etag: Etag::render(r.version),
        state: state_to_pb(state) as i32,
        institution_name,
        institution_category: category_to_pb(category) as i32,
        isp_subscriber_id: spec.isp_subscriber_id.as_str().to_owned(),
        source_prefixes: spec.source_prefixes.iter().map(ToString::to_string).collect(),
        msisdn: spec.msisdn.map(|m| m.as_str().to_owned()).unwrap_or_default(),
        peer_prefixes: spec.peer_prefixes.iter().map(ToString::to_string).collect(),
        valid_from: Some(timestamp(spec.valid_from)),
        valid_until: Some(timestamp(spec.valid_until)),
        state_time: Some(timestamp(state_time)),
    }
}

pub fn reason_code_from_pb(value: i32) -> Option<ReasonCode> {
    use pb::ReasonCode as R;
    match R::try_from(value).ok()? {
        R::Unspecified => None,
        R::Compliant => Some(ReasonCode::Compliant),
        R::IncompleteInformation => Some(ReasonCode::IncompleteInformation),
        R::IspNotConfirmed => Some(ReasonCode::IspNotConfirmed),
        R::InvalidDocuments => Some(ReasonCode::InvalidDocuments),
        R::PolicyViolation => Some(ReasonCode::PolicyViolation),
        R::SecurityConcern => Some(ReasonCode::SecurityConcern),
        R::LicenceExpired => Some(ReasonCode::LicenceExpired),
        R::InstitutionRequest => Some(ReasonCode::InstitutionRequest),
        R::ValidityEnded => Some(ReasonCode::ValidityEnded),
        R::Other => Some(ReasonCode::Other),
    }
}

fn reason_code_name_to_pb(code: Option<&str>) -> i32 {
    code.and_then(|c| pb::ReasonCode::from_str_name(&format!("REASON_CODE_{c}")))
        .unwrap_or(pb::ReasonCode::Unspecified) as i32
}

pub fn isp_to_pb(i: crate::db::isps::Isp) -> pb::Isp {
    pb::Isp {
        code: i.code,
        name: i.name,
        create_time: Some(timestamp(i.create_time)),
    }
}

fn role_to_pb(role: &str) -> pb::Role {
    match role {
        "admin" => pb::Role::Admin,
        "reviewer" => pb::Role::Reviewer,
        "isp" => pb::Role::Isp,
        "lookup" => pb::Role::Lookup,
        "institution" => pb::Role::Institution,
        "system" => pb::Role::System,
        _ => pb::Role::Unspecified,
    }
}

fn action_to_pb(action: &str) -> pb::RegistrationAction {
    pb::RegistrationAction::from_str_name(&format!("REGISTRATION_ACTION_{action}"))
        .unwrap_or(pb::RegistrationAction::Unspecified)
}

fn state_name_to_pb(s: Option<&str>) -> i32 {
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
