//! Calls in flight per principal, capped by role below the server's global
//! limit: one principal (a flood of calls that wait, say, for a serial that
//! never comes) can take its own share of the server, never all of it.

use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};

use crate::domain::principal::{RoleCaps, RoleKind};

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

    /// Counts a call of a principal of `role` whose count is `in_flight`;
    /// `Err` with the cap when the principal is at it.
    pub fn enter(&self, role: RoleKind, in_flight: &Arc<AtomicU32>) -> Result<InFlight, u32> {
        let before = in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = InFlight(in_flight.clone());
        match self.0.of(role) {
            Some(cap) if before >= cap => Err(cap),
            _ => Ok(guard),
        }
    }
}

/// One call in flight, counted until dropped (when its response is ready).
#[derive(Debug)]
pub struct InFlight(Arc<AtomicU32>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_principal_at_its_cap_is_refused_until_a_call_ends() {
        let caps = InFlightCaps::new(&[(RoleKind::Isp, 2)]);
        let mine = Arc::new(AtomicU32::new(0));
        let first = caps.enter(RoleKind::Isp, &mine).unwrap();
        let _second = caps.enter(RoleKind::Isp, &mine).unwrap();
        assert_eq!(caps.enter(RoleKind::Isp, &mine).unwrap_err(), 2);
        assert_eq!(mine.load(Ordering::Relaxed), 2, "a refused call is not counted");
        drop(first);
        assert!(caps.enter(RoleKind::Isp, &mine).is_ok());
        let other = Arc::new(AtomicU32::new(0));
        assert!(
            caps.enter(RoleKind::Isp, &other).is_ok(),
            "another principal has its own"
        );
    }

    #[test]
    fn zero_means_no_cap_of_the_roles_own() {
        let caps = InFlightCaps::new(&[(RoleKind::Lookup, 0)]);
        let mine = Arc::new(AtomicU32::new(0));
        let held: Vec<_> = (0..2_000)
            .map(|_| caps.enter(RoleKind::Lookup, &mine).unwrap())
            .collect();
        assert_eq!(held.len(), 2_000);
    }
}
