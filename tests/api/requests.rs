//! Request builders for the common requests: valid ones to start from, and
//! what names a version to decide on.

use tonic::Status;
use uuid::Uuid;
use vpn_registry::pb;

/// An update mask of `paths`.
pub fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

/// A PSEB expiry a year from now.
pub fn future_date() -> pb::google::r#type::Date {
    let d = time::OffsetDateTime::now_utc().date() + time::Duration::days(365);
    pb::google::r#type::Date {
        year: d.year(),
        month: u8::from(d.month()).into(),
        day: d.day().into(),
    }
}

/// A complete, valid institution of `category`.
pub fn valid_institution(category: pb::InstitutionCategory) -> pb::Institution {
    use pb::InstitutionCategory as C;
    let mut i = pb::Institution {
        category: category as i32,
        legal_name: "Example Institution (Pvt) Ltd".into(),
        cnic: "35202-1234567-1".into(),
        contact_email: "ops@example.pk".into(),
        contact_phone: "0300 1234567".into(),
        ..Default::default()
    };
    match category {
        C::Bank => {
            i.ntn = "1234567-8".into();
            i.sbp_licence = "SBP/BPRD/123".into();
        }
        C::ItCompany | C::CallCenterBpo => {
            i.ntn = "7654321".into();
            i.pseb_number = "PSEB-2024-0042".into();
            i.pseb_expiry = Some(future_date());
        }
        C::Company => i.ntn = "1111111".into(),
        C::ForeignMission => {
            i.cnic.clear();
            i.accreditation_ref = "MOFA-DPL-77".into();
            i.country = "GB".into();
        }
        _ => {}
    }
    i
}

pub fn ts(t: time::OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        nanos: t.nanosecond() as i32,
    }
}

/// A valid VPN registration from `prefixes`, valid for a year.
pub fn valid_registration(prefixes: &[&str]) -> pb::Registration {
    pb::Registration {
        kind: pb::RegistrationKind::Vpn as i32,
        protocol: pb::VpnProtocol::Wireguard as i32,
        source_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
        peer_prefixes: vec!["185.60.216.0/24".into()],
        isp: "ptcl".into(),
        isp_subscriber_id: "SUB-0001".into(),
        purpose: "Remote access to head office".into(),
        valid_until: Some(ts(time::OffsetDateTime::now_utc() + time::Duration::days(365))),
        ..Default::default()
    }
}

pub fn submit_request(prefixes: &[&str]) -> pb::SubmitRegistrationRequest {
    pb::SubmitRegistrationRequest {
        registration: Some(valid_registration(prefixes)),
        request_id: Uuid::new_v4().to_string(),
        validate_only: false,
    }
}

/// The field names of a status's BadRequest details.
pub fn violated_fields(status: &Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// The (type, subject) of each violation in a status's PreconditionFailure.
pub fn precondition_gaps(status: &Status) -> Vec<(String, String)> {
    use tonic_types::StatusExt;
    status
        .get_details_precondition_failure()
        .expect("a PreconditionFailure")
        .violations
        .into_iter()
        .map(|v| (v.r#type, v.subject))
        .collect()
}

/// What a decision names: a registration and the version decided on.
pub trait Versioned {
    fn id(&self) -> &str;
    fn etag(&self) -> &str;
}

impl Versioned for pb::Registration {
    fn id(&self) -> &str {
        &self.id
    }
    fn etag(&self) -> &str {
        &self.etag
    }
}

impl Versioned for pb::Attestation {
    fn id(&self) -> &str {
        &self.registration_id
    }
    fn etag(&self) -> &str {
        &self.etag
    }
}

/// An amendment of the fields `paths` names to their values in `changed`.
pub fn amend_request(changed: pb::Registration, paths: &[&str]) -> pb::AmendRegistrationRequest {
    pb::AmendRegistrationRequest {
        registration: Some(changed),
        update_mask: mask(paths),
        request_id: String::new(),
        validate_only: false,
    }
}

/// An attestation of the version `on` names, without a reason.
pub fn attest_request(on: &impl Versioned, confirmed: bool) -> pb::AttestRegistrationRequest {
    pb::AttestRegistrationRequest {
        id: on.id().into(),
        etag: on.etag().into(),
        confirmed,
        ..Default::default()
    }
}

/// An approval of the version `on` names, without options.
pub fn approve_request(on: &impl Versioned) -> pb::ApproveRegistrationRequest {
    pb::ApproveRegistrationRequest {
        id: on.id().into(),
        etag: on.etag().into(),
        reason_code: pb::ReasonCode::Compliant as i32,
        reason: "In order".into(),
        ..Default::default()
    }
}
