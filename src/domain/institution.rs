//! Institutions: who may hold registrations, and which identifiers each
//! category must supply (DOMAIN.md, "Institutions and identifiers").

use serde_json::{Value, json};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::identifiers::{Cnic, Country, Email, Ntn, Phone};
use super::text::{DocumentRef, LegalName};
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
}

/// Profile fields an institution may change about itself; the rest are the
/// administrators' (identity documents are not self-service).
pub const SELF_SERVICE_FIELDS: &[&str] = &["contact_email", "contact_phone", "pseb_number", "pseb_expiry"];

/// Every profile field an update mask may name.
pub const PROFILE_FIELDS: &[&str] = &[
    "legal_name",
    "cnic",
    "ntn",
    "secp_number",
    "pseb_number",
    "pseb_expiry",
    "sbp_licence",
    "accreditation_ref",
    "country",
    "contact_email",
    "contact_phone",
];

impl ProfileDraft {
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
        ]
    }
}

/// An enrolled institution as stored.
#[derive(Debug, Clone)]
pub struct Institution {
    pub id: Uuid,
    pub category: Category,
    pub profile: Profile,
    pub version: i64,
    pub create_time: OffsetDateTime,
    pub update_time: OffsetDateTime,
}
