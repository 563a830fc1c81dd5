//! Who is calling: the principal a bearer token stands for, and what its role
//! lets it see.

use uuid::Uuid;

use super::registration::IspCode;

/// The role a credential acts in, with the scope it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Admin,
    Reviewer,
    Isp(IspCode),
    Lookup,
    Institution(Uuid),
}

impl Role {
    /// The name stored in the database and the audit trail.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Reviewer => "reviewer",
            Self::Isp(_) => "isp",
            Self::Lookup => "lookup",
            Self::Institution(_) => "institution",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
}

/// Which institutions' records a query may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    All,
    Institution(Uuid),
}

impl Principal {
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

    /// The operator at the command line (token management).
    pub fn operator(request_id: Option<String>) -> Self {
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned());
        Self {
            principal_id: None,
            name: format!("cli:{user}"),
            role: "system",
            request_id,
        }
    }
}
