//! Institutions: who may hold registrations, and which identifiers each
//! category must supply (DOMAIN.md, "Institutions and identifiers").

use serde_json::{Value, json};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::audit::diff;
use super::calendar;
use super::identifiers::{Cnic, Country, Email, Ntn, Phone};
use super::refusal::Refusal;
use super::text::{DocumentRef, LegalName};
use super::violations::Invalid;
use super::violations::Violations;

/// What kind of organisation (or person) an institution is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    Bank,
    ForeignMission,
    ItCompany,
    CallCenterBpo,
    Company,
    Government,
    Freelancer,
}

impl Category {
    pub const ALL: [Category; 7] = [
        Self::Bank,
        Self::ForeignMission,
        Self::ItCompany,
        Self::CallCenterBpo,
        Self::Company,
        Self::Government,
        Self::Freelancer,
    ];

    /// The name stored in the database and used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bank => "BANK",
            Self::ForeignMission => "FOREIGN_MISSION",
            Self::ItCompany => "IT_COMPANY",
            Self::CallCenterBpo => "CALL_CENTER_BPO",
            Self::Company => "COMPANY",
            Self::Government => "GOVERNMENT",
            Self::Freelancer => "FREELANCER",
        }
    }

    pub fn from_db(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    fn is_company(self) -> bool {
        matches!(self, Self::Bank | Self::ItCompany | Self::CallCenterBpo | Self::Company)
    }

    fn needs_pseb(self) -> bool {
        matches!(self, Self::ItCompany | Self::CallCenterBpo)
    }
}

/// A PSEB registration; its expiry matters because an expired one ends the
/// institution's registrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pseb {
    pub number: DocumentRef,
    pub expiry: Date,
}

/// An institution's descriptive fields, complete and consistent with its category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub legal_name: LegalName,
    pub cnic: Option<Cnic>,
    pub ntn: Option<Ntn>,
    pub secp_number: Option<DocumentRef>,
    pub pseb: Option<Pseb>,
    pub sbp_licence: Option<DocumentRef>,
    pub accreditation_ref: Option<DocumentRef>,
    pub country: Option<Country>,
    pub contact_email: Email,
    pub contact_phone: Phone,
    /// What the registry's messages to the institution are written in.
    pub language: Language,
}

crate::domain::db_enum::db_enum!(
    /// The languages the registry writes to institutions in.
    Language {
        English => "en",
        Urdu => "ur",
    }
);

impl Language {
    /// Written right to left.
    pub fn is_rtl(self) -> bool {
        self == Self::Urdu
    }
}

/// Profile fields as parsed one by one from a request, before the category
/// rules have been checked. Every field is optional here.
#[derive(Debug, Clone, Default)]
pub struct ProfileDraft {
    pub legal_name: Option<LegalName>,
    pub cnic: Option<Cnic>,
    pub ntn: Option<Ntn>,
    pub secp_number: Option<DocumentRef>,
    pub pseb_number: Option<DocumentRef>,
    pub pseb_expiry: Option<Date>,
    pub sbp_licence: Option<DocumentRef>,
    pub accreditation_ref: Option<DocumentRef>,
    pub country: Option<Country>,
    pub contact_email: Option<Email>,
    pub contact_phone: Option<Phone>,
    pub language: Option<Language>,
}

crate::domain::db_enum::db_enum!(
    /// A profile field, as update masks name it.
    ProfileField {
        LegalName => "legal_name",
        Cnic => "cnic",
        Ntn => "ntn",
        SecpNumber => "secp_number",
        PsebNumber => "pseb_number",
        PsebExpiry => "pseb_expiry",
        SbpLicence => "sbp_licence",
        AccreditationRef => "accreditation_ref",
        Country => "country",
        ContactEmail => "contact_email",
        ContactPhone => "contact_phone",
        Language => "language",
    }
);

impl ProfileField {
    /// What an institution may change about itself: its contact details and
    /// the language it is written to in. The rest (category, identity
    /// documents, the PSEB registration and its expiry) are the regulator's,
    /// changed by administrators.
    pub const SELF_SERVICE: &[ProfileField] = &[Self::ContactEmail, Self::ContactPhone, Self::Language];
}

/// A PSEB expiry as given: an expired registration is not accepted (the
/// registrations depending on it would expire at once).
pub fn pseb_expiry(expiry: Date) -> Result<Date, Invalid> {
    if expiry < calendar::today() {
        Err(Invalid(format!(
            "{expiry} is in the past; an expired PSEB registration is not accepted"
        )))
    } else {
        Ok(expiry)
    }
}

/// An update as parsed: new values for the fields its update mask names.
#[derive(Debug, Clone, Default)]
pub struct ProfilePatch {
    pub fields: Vec<ProfileField>,
    pub values: ProfileDraft,
}

/// Refuses an institution changing what only administrators may.
pub fn check_self_service(fields: &[ProfileField]) -> Result<(), Refusal> {
    let denied: Vec<&str> = fields
        .iter()
        .filter(|f| !ProfileField::SELF_SERVICE.contains(f))
        .map(|f| f.as_str())
        .collect();
    if denied.is_empty() {
        return Ok(());
    }
    let allowed: Vec<&str> = ProfileField::SELF_SERVICE.iter().map(|f| f.as_str()).collect();
    Err(Refusal::PermissionDenied(format!(
        "an institution may change only {}; ask the registry to change {}",
        allowed.join(", "),
        denied.join(", ")
    )))
}

impl ProfilePatch {
    /// The profile `current` becomes, checked against its category. Violations
    /// name fields of the Institution message.
    pub fn apply(&self, current: &Institution) -> Result<Profile, Violations> {
        let mut draft = ProfileDraft::from(current.profile.clone());
        for &field in &self.fields {
            draft.take(field, &self.values);
        }
        draft.finish(current.category)
    }
}

impl ProfileDraft {
    /// Replaces `field` with its value in `other`.
    fn take(&mut self, field: ProfileField, other: &ProfileDraft) {
        use ProfileField as F;
        match field {
            F::LegalName => self.legal_name.clone_from(&other.legal_name),
            F::Cnic => self.cnic.clone_from(&other.cnic),
            F::Ntn => self.ntn.clone_from(&other.ntn),
            F::SecpNumber => self.secp_number.clone_from(&other.secp_number),
            F::PsebNumber => self.pseb_number.clone_from(&other.pseb_number),
            F::PsebExpiry => self.pseb_expiry = other.pseb_expiry,
            F::SbpLicence => self.sbp_licence.clone_from(&other.sbp_licence),
            F::AccreditationRef => self.accreditation_ref.clone_from(&other.accreditation_ref),
            F::Country => self.country = other.country,
            F::ContactEmail => self.contact_email.clone_from(&other.contact_email),
            F::ContactPhone => self.contact_phone.clone_from(&other.contact_phone),
            F::Language => self.language = other.language,
        }
    }

    /// Applies the category's rules; field names in violations are the
    /// Institution message's.
    pub fn finish(self, category: Category) -> Result<Profile, Violations> {
        let mut v = Violations::default();
        let required = "is required";
        let not_applicable = format!("does not apply to category {}", category.as_str());

        if self.legal_name.is_none() {
            v.add("legal_name", required);
        }
        if self.contact_email.is_none() {
            v.add("contact_email", required);
        }
        if self.contact_phone.is_none() {
            v.add("contact_phone", required);
        }
        if category != Category::ForeignMission && self.cnic.is_none() {
            v.add("cnic", format!("is required for category {}", category.as_str()));
        }
        if category.is_company() && self.ntn.is_none() {
            v.add("ntn", format!("is required for category {}", category.as_str()));
        }
        if !category.is_company() && self.secp_number.is_some() {
            v.add("secp_number", not_applicable.clone());
        }
        match (&self.pseb_number, &self.pseb_expiry) {
            (Some(_), None) => v.add("pseb_expiry", "is required with pseb_number"),
            (None, Some(_)) => v.add("pseb_number", "is required with pseb_expiry"),
            (None, None) if category.needs_pseb() => {
                v.add("pseb_number", format!("is required for category {}", category.as_str()));
                v.add("pseb_expiry", format!("is required for category {}", category.as_str()));
            }
            (Some(_), Some(_)) if !(category.needs_pseb() || category == Category::Freelancer) => {
                v.add("pseb_number", not_applicable.clone());
            }
            _ => {}
        }
        match (category == Category::Bank, self.sbp_licence.is_some()) {
            (true, false) => v.add("sbp_licence", "is required for category BANK"),
            (false, true) => v.add("sbp_licence", not_applicable.clone()),
            _ => {}
        }
        let mission = category == Category::ForeignMission;
        for (field, present) in [
            ("accreditation_ref", self.accreditation_ref.is_some()),
            ("country", self.country.is_some()),
        ] {
            match (mission, present) {
                (true, false) => v.add(field, "is required for category FOREIGN_MISSION"),
                (false, true) => v.add(field, not_applicable.clone()),
                _ => {}
            }
        }
        let (Some(legal_name), Some(contact_email), Some(contact_phone)) =
            (self.legal_name, self.contact_email, self.contact_phone)
        else {
            return Err(v);
        };
        if !v.is_empty() {
            return Err(v);
        }
        let pseb = match (self.pseb_number, self.pseb_expiry) {
            (Some(number), Some(expiry)) => Some(Pseb { number, expiry }),
            _ => None,
        };
        Ok(Profile {
            legal_name,
            cnic: self.cnic,
            ntn: self.ntn,
            secp_number: self.secp_number,
            pseb,
            sbp_licence: self.sbp_licence,
            accreditation_ref: self.accreditation_ref,
            country: self.country,
            contact_email,
            contact_phone,
            // English unless the institution chose otherwise.
            language: self.language.unwrap_or(Language::English),
        })
    }
}

impl From<Profile> for ProfileDraft {
    fn from(p: Profile) -> Self {
        let (pseb_number, pseb_expiry) = match p.pseb {
            Some(Pseb { number, expiry }) => (Some(number), Some(expiry)),
            None => (None, None),
        };
        Self {
            legal_name: Some(p.legal_name),
            cnic: p.cnic,
            ntn: p.ntn,
            secp_number: p.secp_number,
            pseb_number,
            pseb_expiry,
            sbp_licence: p.sbp_licence,
            accreditation_ref: p.accreditation_ref,
            country: p.country,
            contact_email: Some(p.contact_email),
            contact_phone: Some(p.contact_phone),
            language: Some(p.language),
        }
    }
}

impl Profile {
    /// Field values as the audit trail records them.
    pub fn audit_values(&self) -> Vec<(&'static str, Value)> {
        fn opt<T>(v: &Option<T>, f: impl Fn(&T) -> String) -> Value {
            v.as_ref().map_or(Value::Null, |x| json!(f(x)))
        }
        vec![
            ("legal_name", json!(self.legal_name.as_str())),
            ("cnic", opt(&self.cnic, |c| c.as_str().to_owned())),
            ("ntn", opt(&self.ntn, |n| n.as_str().to_owned())),
            ("secp_number", opt(&self.secp_number, |d| d.as_str().to_owned())),
            ("pseb_number", opt(&self.pseb, |p| p.number.as_str().to_owned())),
            ("pseb_expiry", opt(&self.pseb, |p| p.expiry.to_string())),
            ("sbp_licence", opt(&self.sbp_licence, |d| d.as_str().to_owned())),
            (
                "accreditation_ref",
                opt(&self.accreditation_ref, |d| d.as_str().to_owned()),
            ),
            ("country", opt(&self.country, |c| c.as_str().to_owned())),
            ("contact_email", json!(self.contact_email.as_str())),
            ("contact_phone", json!(self.contact_phone.as_str())),
            ("language", json!(self.language.as_str())),
        ]
    }
}

/// What the audit trail records of an enrolment: every field, as created.
pub fn enrolment_changes(category: Category, profile: &Profile) -> Value {
    let mut values = vec![("category", json!(category.as_str()))];
    values.extend(profile.audit_values());
    diff(None, &values)
}

/// The profile an update leaves `current` with, and the changes the audit
/// trail records.
pub fn update(current: &Institution, patch: &ProfilePatch) -> Result<(Profile, Value), Refusal> {
    let profile = patch.apply(current).map_err(|v| v.nested("institution"))?;
    let changes = diff(Some(&current.profile.audit_values()), &profile.audit_values());
    Ok((profile, changes))
}

/// An enrolled institution as stored.
#[derive(Debug, Clone)]
pub struct Institution {
    pub id: Uuid,
    pub category: Category,
    pub profile: Profile,
    pub version: i64,
    /// Signed itself up in the console rather than enrolled by an administrator.
    pub self_registered: bool,
    pub create_time: OffsetDateTime,
    pub update_time: OffsetDateTime,
}
