//! Admission of change streams: a cap on how many one replica serves at
//! once and on how many one principal holds (by role, so that one client
//! cannot take every place), and counts of why the server ended or refused
//! them (for metrics).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use uuid::Uuid;

use crate::domain::principal::{RoleCaps, RoleKind};
use crate::sync::lock;

/// Change streams one principal of a role may hold unless configured: the
/// regulator's services feed fan-out replicas and internal systems, an ISP a
/// few gateways.
pub const DEFAULT_PER_PRINCIPAL: &[(RoleKind, u32)] =
    &[(RoleKind::Lookup, 64), (RoleKind::Isp, 16), (RoleKind::Reviewer, 8)];

/// Counts watchers, refuses more than the caps, and counts why streams ended.
#[derive(Clone)]
pub struct Watchers {
    shared: Arc<Counts>,
    max: usize,
    per_principal: RoleCaps,
}

#[derive(Default)]
struct Counts {
    open: AtomicUsize,
    /// Streams open per principal.
    by_principal: Mutex<HashMap<Uuid, u32>>,
    /// Streams ended by the server or refused, by [`Dropped`] (its order).
    dropped: [AtomicU64; Dropped::ALL.len()],
}

/// Why a stream was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The replica serves this many already.
    Replica(usize),
    /// The principal holds its role's cap of this many.
    Principal(u32),
}

/// Why the server ended or refused a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    TooSlow,
    ShuttingDown,
    NewSession,
    Pruned,
    Error,
    OverCapacity,
}

impl Dropped {
    pub const ALL: [Self; 6] = [
        Self::TooSlow,
        Self::ShuttingDown,
        Self::NewSession,
        Self::Pruned,
        Self::Error,
        Self::OverCapacity,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooSlow => "too_slow",
            Self::ShuttingDown => "shutting_down",
            Self::NewSession => "new_session",
            Self::Pruned => "pruned",
            Self::Error => "error",
            Self::OverCapacity => "over_capacity",
        }
    }
}

/// One watcher's place under the caps, given back when its stream ends.
pub struct Slot {
    counts: Arc<Counts>,
    principal: Uuid,
}

impl Slot {
    /// Counts why the server ended this watcher's stream.
    pub fn ended(&self, why: Dropped) {
        self.counts.count(why);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counts.open.fetch_sub(1, Ordering::Relaxed);
        let mut by_principal = lock(&self.counts.by_principal);
        if let Some(n) = by_principal.get_mut(&self.principal) {
            *n -= 1;
            if *n == 0 {
                by_principal.remove(&self.principal);
            }
        }
    }
}

impl Counts {
    fn count(&self, why: Dropped) {
        self.dropped[why as usize].fetch_add(1, Ordering::Relaxed);
    }
}

impl Watchers {
    /// At most `max` streams, and per principal its role's cap
    /// (`DEFAULT_PER_PRINCIPAL` with `overrides` on top; 0 = none).
    pub fn new(max: usize, overrides: &[(RoleKind, u32)]) -> Self {
        Self {
            shared: Arc::default(),
            max,
            per_principal: RoleCaps::new(DEFAULT_PER_PRINCIPAL, overrides),
        }
    }

    /// A place for one more stream of `principal`, if the caps allow.
    pub fn admit(&self, principal: Uuid, role: RoleKind) -> Result<Slot, Full> {
        let refuse = |full| {
            self.shared.count(Dropped::OverCapacity);
            Err(full)
        };
        let mut by_principal = lock(&self.shared.by_principal);
        let held = by_principal.get(&principal).copied().unwrap_or(0);
        if let Some(cap) = self.per_principal.of(role).filter(|cap| held >= *cap) {
            return refuse(Full::Principal(cap));
        }
        let before = self.shared.open.fetch_add(1, Ordering::Relaxed);
        if before >= self.max {
            self.shared.open.fetch_sub(1, Ordering::Relaxed);
            return refuse(Full::Replica(before));
        }
        *by_principal.entry(principal).or_default() += 1;
        Ok(Slot {
            counts: self.shared.clone(),
            principal,
        })
    }

    /// Watchers streaming now.
    pub fn open(&self) -> usize {
        self.shared.open.load(Ordering::Relaxed)
    }

    /// Streams ended by the server or refused so far, by reason.
    pub fn dropped(&self) -> impl Iterator<Item = (Dropped, u64)> + '_ {
        Dropped::ALL
            .into_iter()
            .zip(&self.shared.dropped)
            .map(|(why, n)| (why, n.load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_principal_at_its_cap_leaves_room_for_others_and_gets_its_place_back() {
        let watchers = Watchers::new(3, &[(RoleKind::Isp, 2)]);
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let first = watchers.admit(a, RoleKind::Isp).unwrap();
        let _second = watchers.admit(a, RoleKind::Isp).unwrap();
        assert_eq!(watchers.admit(a, RoleKind::Isp).err(), Some(Full::Principal(2)));
        let _other = watchers.admit(b, RoleKind::Isp).unwrap();
        assert_eq!(watchers.admit(b, RoleKind::Lookup).err(), Some(Full::Replica(3)));
        drop(first);
        let _again = watchers.admit(a, RoleKind::Isp).expect("its place back");
        assert_eq!(watchers.open(), 3);
        let refused = watchers
            .dropped()
            .find(|(why, _)| *why == Dropped::OverCapacity)
            .unwrap()
            .1;
        assert_eq!(refused, 2);
    }
}
