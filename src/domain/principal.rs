//! Who is calling: the principal a bearer token stands for, and what its role
//! lets it see.

use uuid::Uuid;

use super::db_enum::db_enum;
use super::identifiers::IspCode;
use super::institution::Category;
use super::refusal::Refusal;

/// The role a credential acts in, with the scope it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Admin,
    Reviewer,
    Isp(IspCode),
    Lookup,
    Institution(Uuid),
    /// A collecting bank's or payment aggregator's system: confirms payments.
    Payments,
}

db_enum!(
    /// A role without its scope: what permissions are written in terms of.
    RoleKind {
        Admin => "admin",
        Reviewer => "reviewer",
        Isp => "isp",
        Lookup => "lookup",
        Institution => "institution",
        Payments => "payments",
    }
);

/// A number per role (a cap on calls in flight, on change streams), with
/// defaults and overrides; 0 means none of the role's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleCaps([u32; RoleKind::ALL.len()]);

impl RoleCaps {
    /// `defaults`, then `overrides` on top.
    pub fn new(defaults: &[(RoleKind, u32)], overrides: &[(RoleKind, u32)]) -> Self {
        let mut caps = [0; RoleKind::ALL.len()];
        for &(role, cap) in defaults.iter().chain(overrides) {
            caps[role as usize] = cap;
        }
        Self(caps)
    }

    /// The cap of `role`, if it has one.
    pub fn of(&self, role: RoleKind) -> Option<u32> {
        Some(self.0[role as usize]).filter(|cap| *cap != 0)
    }
}

impl Role {
    pub fn kind(&self) -> RoleKind {
        match self {
            Self::Admin => RoleKind::Admin,
            Self::Reviewer => RoleKind::Reviewer,
            Self::Isp(_) => RoleKind::Isp,
            Self::Lookup => RoleKind::Lookup,
            Self::Institution(_) => RoleKind::Institution,
            Self::Payments => RoleKind::Payments,
        }
    }

    /// The name stored in the database and the audit trail.
    pub fn as_str(&self) -> &'static str {
        self.kind().as_str()
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    /// The category of an institution principal's institution (immutable,
    /// so it is loaded with the credential).
    pub institution_category: Option<Category>,
    /// May manage the organisation's API keys: an institution's owner, an
    /// ISP desk user, or a key made to manage keys.
    pub manages_keys: bool,
}

/// The institution an applicant (an institution principal) acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applicant {
    pub institution_id: Uuid,
    pub category: Category,
}

/// Which institutions' records a query may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    All,
    Institution(Uuid),
}

impl Principal {
    /// Refuses the call unless the principal acts in one of `allowed` roles.
    pub fn require(&self, allowed: &[RoleKind], what: &str) -> Result<(), Refusal> {
        let kind = self.role.kind();
        if allowed.contains(&kind) {
            return Ok(());
        }
        let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
        Err(Refusal::PermissionDenied(format!(
            "role {kind} may not {what} (allowed: {})",
            names.join(", ")
        )))
    }

    /// The institution this principal applies for; only institutions apply.
    pub fn applicant(&self, what: &str) -> Result<Applicant, Refusal> {
        self.require(&[RoleKind::Institution], what)?;
        match (&self.role, self.institution_category) {
            (Role::Institution(id), Some(category)) => Ok(Applicant {
                institution_id: *id,
                category,
            }),
            _ => Err(Refusal::PermissionDenied(format!("only institutions may {what}"))),
        }
    }

    /// The ISP an ISP principal acts for.
    pub fn isp(&self, what: &str) -> Result<&IspCode, Refusal> {
        self.require(&[RoleKind::Isp], what)?;
        match &self.role {
            Role::Isp(code) => Ok(code),
            _ => Err(Refusal::PermissionDenied(format!("only ISPs may {what}"))),
        }
    }

    /// The actor the audit trail records for a write by this principal.
    pub fn actor(&self, request_id: &str) -> Actor {
        Actor::new(self, (!request_id.is_empty()).then(|| request_id.to_owned()))
    }

    /// Institution principals see only their own records; staff see all.
    pub fn visibility(&self) -> Visibility {
        match self.role {
            Role::Institution(id) => Visibility::Institution(id),
            _ => Visibility::All,
        }
    }

    /// Key under which this caller's idempotency keys live: one institution's
    /// tokens share keys, other principals have their own.
    pub fn idempotency_scope(&self) -> String {
        match self.role {
            Role::Institution(id) => format!("institution:{id}"),
            _ => format!("principal:{}", self.id),
        }
    }
}

/// Who wrote something, as the audit trail records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub principal_id: Option<Uuid>,
    pub name: String,
    pub role: &'static str,
    pub request_id: Option<String>,
}

impl Actor {
    pub fn new(principal: &Principal, request_id: Option<String>) -> Self {
        Self {
            principal_id: Some(principal.id),
            name: principal.name.clone(),
            role: principal.role.as_str(),
            request_id,
        }
    }

    /// The service itself, acting on a schedule.
    pub fn system(task: &str) -> Self {
        Self {
            principal_id: None,
            name: task.to_owned(),
            role: "system",
            request_id: None,
        }
    }

    /// An operator at the command line (token management, reference data).
    pub fn operator(name: &str) -> Self {
        Self {
            principal_id: None,
            name: format!("cli:{name}"),
            role: "system",
            request_id: None,
        }
    }
}
