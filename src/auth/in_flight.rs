//! Calls in flight per principal, capped by role below the server's global
//! limit: one principal (a flood of calls that wait, say, for a serial that
//! never comes) can take its own share of the server, never all of it.

use std::sync::{Arc, atomic::Ordering};

use super::credentials::Credential;
use crate::domain::principal::{Principal, RoleCaps, RoleKind};

/// Calls one principal of a role may have in flight unless configured: the
/// regulator's lookup services and ISPs run many at once, people and back
/// offices a few. All below the server's default global limit (1,024).
pub const DEFAULT_IN_FLIGHT: &[(RoleKind, u32)] = &[
    (RoleKind::Lookup, 512),
    (RoleKind::Isp, 256),
    (RoleKind::Reviewer, 64),
    (RoleKind::Admin, 32),
    (RoleKind::Institution, 32),
];

/// The caps of one server, by role.
#[derive(Debug, Clone)]
pub struct InFlightCaps(RoleCaps);

impl InFlightCaps {
    /// `overrides` replace the defaults per role; 0 means no cap of the
    /// role's own (the global limit still holds).
    pub fn new(overrides: &[(RoleKind, u32)]) -> Self {
        Self(RoleCaps::new(DEFAULT_IN_FLIGHT, overrides))
    }

    /// Counts a call of `credential`'s principal; `Err` with the cap when
    /// the principal is at it.
    pub fn enter(&self, credential: Arc<Credential>) -> Result<Admitted, u32> {
        let before = credential.in_flight.fetch_add(1, Ordering::Relaxed);
        let admitted = Admitted(credential);
        match self.0.of(admitted.principal().role.kind()) {
            Some(cap) if before >= cap => Err(cap),
            _ => Ok(admitted),
        }
    }
}

/// An admitted call's principal, counted in flight until dropped. The auth
/// layer puts it in the request's extensions, so the count ends with the
/// request (when the handler is done with it); handlers read the principal
/// from it (`auth::principal`).
pub struct Admitted(Arc<Credential>);

impl Admitted {
    pub fn principal(&self) -> &Arc<Principal> {
        &self.0.principal
    }
}

/// A copy (request extensions must be clonable) counts as one more holder,
/// so that every drop is matched.
impl Clone for Admitted {
    fn clone(&self) -> Self {
        self.0.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(self.0.clone())
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::principal::Role;

    fn credential(id: u128, role: Role) -> Arc<Credential> {
        Arc::new(Credential::for_tests(Principal {
            id: uuid::Uuid::from_u128(id),
            name: "test".into(),
            role,
            institution_category: None,
            manages_keys: false,
        }))
    }

    #[test]
    fn a_principal_at_its_cap_is_refused_until_a_call_ends() {
        let caps = InFlightCaps::new(&[(RoleKind::Isp, 2)]);
        let isp = || Role::Isp("ptcl".parse().unwrap());
        let mine = credential(1, isp());
        let first = caps.enter(mine.clone()).unwrap();
        let _second = caps.enter(mine.clone()).unwrap();
        assert_eq!(caps.enter(mine.clone()).err(), Some(2));
        assert_eq!(
            mine.in_flight.load(Ordering::Relaxed),
            2,
            "a refused call is not counted"
        );
        drop(first);
        assert!(caps.enter(mine).is_ok());
        assert!(
            caps.enter(credential(2, isp())).is_ok(),
            "another principal has its own"
        );
    }

    #[test]
    fn zero_means_no_cap_of_the_roles_own() {
        let caps = InFlightCaps::new(&[(RoleKind::Lookup, 0)]);
        let mine = credential(1, Role::Lookup);
        let held: Vec<_> = (0..2_000).map(|_| caps.enter(mine.clone()).unwrap()).collect();
        assert_eq!(held.len(), 2_000);
    }
}
