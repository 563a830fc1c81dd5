//! Registrations, attestations and ISPs on the wire.

use time::OffsetDateTime;

use super::{category_to_pb, from_timestamp, optional, timestamp};
use crate::db::isps::Isp;
use crate::domain::{
    Invalid, Violations,
    institution::Category,
    registration::{Kind, PrefixList, Protocol, Registration, Revision, Spec, SpecDraft, SpecField, SpecPatch},
    request::Etag,
    state::{ReasonCode, State},
};
use crate::pb;
use crate::registry::Attestation;

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
fn set_spec_field(draft: &mut SpecDraft, field: SpecField, m: &pb::Registration, v: &mut Violations) {
    use SpecField as F;
    let name = field.as_str();
    match field {
        F::Kind => {
            draft.kind = kind_from_pb(m.kind);
            if draft.kind.is_none() && m.kind != 0 {
                v.add(name, format!("{} is not a RegistrationKind", m.kind));
            }
        }
        F::Protocol => draft.protocol = v.check(name, protocol_from_pb(m.protocol)).flatten(),
        F::SourcePrefixes => {
            let allow_large = !m.large_prefix_justification.trim().is_empty();
            draft.source_prefixes = PrefixList::Source.parse(name, &m.source_prefixes, allow_large, v)
        }
        F::Msisdn => draft.msisdn = optional(name, &m.msisdn, v),
        F::PeerPrefixes => draft.peer_prefixes = PrefixList::Peer.parse(name, &m.peer_prefixes, false, v),
        F::LargePrefixJustification => {
            draft.large_prefix_justification = optional(name, &m.large_prefix_justification, v)
        }
        F::Isp => draft.isp = optional(name, &m.isp, v),
        F::IspSubscriberId => draft.isp_subscriber_id = optional(name, &m.isp_subscriber_id, v),
        F::Purpose => draft.purpose = optional(name, &m.purpose, v),
        F::ValidFrom => draft.valid_from = m.valid_from.as_ref().and_then(|t| v.check(name, from_timestamp(t))),
        F::ValidUntil => draft.valid_until = m.valid_until.as_ref().and_then(|t| v.check(name, from_timestamp(t))),
    }
}

/// Parses a submission's declaration for an applicant of `category`: every
/// field, then the rules across fields. Violations name fields of the
/// Registration message.
pub fn new_spec(m: &pb::Registration, category: Category, now: OffsetDateTime) -> Result<Spec, Violations> {
    let mut v = Violations::default();
    let mut draft = SpecDraft::default();
    for &field in SpecField::ALL {
        set_spec_field(&mut draft, field, m, &mut v);
    }
    v.and(draft.finish(category, now))
}

/// Parses the fields an amendment's update mask names (the rules across
/// fields are checked against the registration as stored).
pub fn spec_patch(fields: Vec<SpecField>, m: &pb::Registration) -> Result<SpecPatch, Violations> {
    let mut v = Violations::default();
    let mut values = SpecDraft::default();
    for &field in &fields {
        set_spec_field(&mut values, field, m, &mut v);
    }
    v.into_result(|| SpecPatch { fields, values })
}

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
        state_time: Some(timestamp(v.state_time)),
    }
}

/// What an ISP sees of a registration it attests: the attested revision's
/// addresses when there is one, the institution's name, no identity documents.
pub fn attestation_to_pb(a: Attestation) -> pb::Attestation {
    let Attestation {
        registration: r,
        institution_name,
        category,
    } = a;
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

pub fn reason_code_name_to_pb(code: Option<&str>) -> i32 {
    code.and_then(|c| pb::ReasonCode::from_str_name(&format!("REASON_CODE_{c}")))
        .unwrap_or(pb::ReasonCode::Unspecified) as i32
}

pub fn isp_to_pb(i: Isp) -> pb::Isp {
    pb::Isp {
        code: i.code,
        name: i.name,
        create_time: Some(timestamp(i.create_time)),
    }
}
