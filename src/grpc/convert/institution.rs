//! Institutions on the wire.

use super::{date, from_date, optional, timestamp};
use crate::domain::institution::Language;
use crate::domain::{
    Violations,
    institution::{self, Category, Institution, Profile, ProfileDraft, ProfileField, ProfilePatch},
    request::Etag,
};
use crate::pb;

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
fn set_profile_field(draft: &mut ProfileDraft, field: ProfileField, m: &pb::Institution, v: &mut Violations) {
    use ProfileField as F;
    let name = field.as_str();
    match field {
        F::LegalName => draft.legal_name = optional(name, &m.legal_name, v),
        F::Cnic => draft.cnic = optional(name, &m.cnic, v),
        F::Ntn => draft.ntn = optional(name, &m.ntn, v),
        F::SecpNumber => draft.secp_number = optional(name, &m.secp_number, v),
        F::PsebNumber => draft.pseb_number = optional(name, &m.pseb_number, v),
        F::PsebExpiry => {
            draft.pseb_expiry = m
                .pseb_expiry
                .as_ref()
                .filter(|d| **d != Default::default())
                .and_then(|d| v.check(name, from_date(d).and_then(institution::pseb_expiry)))
        }
        F::SbpLicence => draft.sbp_licence = optional(name, &m.sbp_licence, v),
        F::AccreditationRef => draft.accreditation_ref = optional(name, &m.accreditation_ref, v),
        F::Country => draft.country = optional(name, &m.country, v),
        F::ContactEmail => draft.contact_email = optional(name, &m.contact_email, v),
        F::ContactPhone => draft.contact_phone = optional(name, &m.contact_phone, v),
        F::Language => {
            draft.language = match pb::Language::try_from(m.language) {
                Ok(pb::Language::Unspecified) => None,
                Ok(pb::Language::English) => Some(Language::English),
                Ok(pb::Language::Urdu) => Some(Language::Urdu),
                Err(_) => {
                    v.add(name, format!("{} is not a language", m.language));
                    None
                }
            }
        }
    }
}

/// Parses the fields an update mask names; violations name fields of the
/// Institution message.
pub fn profile_patch(fields: Vec<ProfileField>, m: &pb::Institution) -> Result<ProfilePatch, Violations> {
    let mut v = Violations::default();
    let mut values = ProfileDraft::default();
    for &field in &fields {
        set_profile_field(&mut values, field, m, &mut v);
    }
    v.into_result(|| ProfilePatch { fields, values })
}

/// Parses a new institution's category and every profile field.
pub fn new_institution(m: &pb::Institution) -> Result<(Category, Profile), Violations> {
    let mut v = Violations::default();
    let category = category_from_pb(m.category);
    if category.is_none() {
        v.add("category", "is required");
    }
    let mut draft = ProfileDraft::default();
    for &field in ProfileField::ALL {
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
        language: match p.language {
            Language::English => pb::Language::English,
            Language::Urdu => pb::Language::Urdu,
        } as i32,
        etag: Etag::render(i.version),
        create_time: Some(timestamp(i.create_time)),
        update_time: Some(timestamp(i.update_time)),
        self_registered: i.self_registered,
    }
}
