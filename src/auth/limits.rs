//! Rate limits (governor's GCRA): per principal by role, with a burst of one
//! second's worth, and on failed authentication per peer address.

use std::{
    collections::HashMap,
    net::IpAddr,
    num::NonZeroU32,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};
use uuid::Uuid;

use crate::domain::principal::RoleKind;

/// Calls per second per principal unless configured: generous for the
/// machines that look up at line rate, modest for people and back offices.
pub const DEFAULT_RATES: &[(RoleKind, u32)] = &[
    (RoleKind::Lookup, 200_000),
    (RoleKind::Isp, 50_000),
    (RoleKind::Reviewer, 200),
    (RoleKind::Admin, 100),
    (RoleKind::Institution, 50),
];

/// Failed authentications per second per peer address (burst the same).
pub const DEFAULT_FAILED_AUTH_RATE: u32 = 20;

/// The limits of one server.
pub struct RateLimits {
    per_role: HashMap<RoleKind, DefaultKeyedRateLimiter<Uuid>>,
    failures: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    /// Calls refused over a rate limit, by role (in `RoleKind::ALL` order).
    limited: [AtomicU64; RoleKind::ALL.len()],
    /// Calls refused for their credentials.
    auth_failures: AtomicU64,
}

fn per_second(n: NonZeroU32) -> Quota {
    Quota::per_second(n).allow_burst(n)
}

impl RateLimits {
    /// `rates` overrides the defaults per role; a rate of 0 means unlimited.
    pub fn new(rates: &[(RoleKind, u32)], failed_auth_per_second: u32) -> Self {
        let mut effective: HashMap<RoleKind, u32> = DEFAULT_RATES.iter().copied().collect();
        effective.extend(rates.iter().copied());
        let per_role = effective
            .into_iter()
            .filter_map(|(role, rate)| Some((role, RateLimiter::keyed(per_second(NonZeroU32::new(rate)?)))))
            .collect();
        let failures = RateLimiter::keyed(per_second(
            NonZeroU32::new(failed_auth_per_second).unwrap_or(NonZeroU32::MIN),
        ));
        Self {
            per_role,
            failures,
            clock: DefaultClock::default(),
            limited: Default::default(),
            auth_failures: AtomicU64::new(0),
        }
    }

    /// Counts one call of `principal`; `Err` with the wait when over its limit.
    pub fn admit(&self, role: RoleKind, principal: Uuid) -> Result<(), Duration> {
        match self.per_role.get(&role) {
            Some(limiter) => limiter
                .check_key(&principal)
                .map_err(|not_until| not_until.wait_time_from(self.clock.now())),
            None => Ok(()),
        }
    }

    /// Counts one failed authentication from `addr`; `Err` with the wait
    /// when it has failed too often.
    pub fn failed_authentication(&self, addr: IpAddr) -> Result<(), Duration> {
        self.failures
            .check_key(&addr)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    pub fn count_limited(&self, role: RoleKind) {
        if let Some(i) = RoleKind::ALL.iter().position(|r| *r == role) {
            self.limited[i].fetch_add(1, Relaxed);
        }
    }

    pub fn count_auth_failure(&self) {
        self.auth_failures.fetch_add(1, Relaxed);
    }

    /// Calls refused over a rate limit so far, per role.
    pub fn limited(&self) -> impl Iterator<Item = (RoleKind, u64)> + '_ {
        RoleKind::ALL
            .iter()
            .zip(&self.limited)
            .map(|(r, n)| (*r, n.load(Relaxed)))
    }

    /// Calls refused for their credentials so far.
    pub fn auth_failures(&self) -> u64 {
        self.auth_failures.load(Relaxed)
    }

    /// Forgets keys whose limits have fully recovered (bounds the memory an
    /// attacker cycling addresses can make us hold).
    pub fn forget_idle(&self) {
        for limiter in self.per_role.values() {
            limiter.retain_recent();
        }
        self.failures.retain_recent();
    }
}

/// Parses `ROLE=PER_SECOND` (`--rate-limit lookup=100000`).
pub fn parse_rate(s: &str) -> Result<(RoleKind, u32), String> {
    parse_per_role(s, "PER_SECOND", "calls per second")
}

/// Parses `ROLE=N` (an in-flight or watcher cap); 0 means none of the role's own.
pub fn parse_cap(s: &str) -> Result<(RoleKind, u32), String> {
    parse_per_role(s, "N", "calls")
}

fn parse_per_role(s: &str, placeholder: &str, unit: &str) -> Result<(RoleKind, u32), String> {
    let (role, rate) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected ROLE={placeholder}"))?;
    let role = RoleKind::from_db(role.trim()).ok_or_else(|| {
        let names: Vec<&str> = RoleKind::ALL.iter().map(|r| r.as_str()).collect();
        format!("{role:?} is not a role ({})", names.join(", "))
    })?;
    let rate = rate
        .trim()
        .parse()
        .map_err(|_| format!("{rate:?} is not a whole number of {unit}"))?;
    Ok((role, rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_principal_over_its_rate_waits_while_another_is_unaffected() {
        let limits = RateLimits::new(&[(RoleKind::Institution, 3)], 5);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        for _ in 0..3 {
            assert!(limits.admit(RoleKind::Institution, a).is_ok());
        }
        let wait = limits.admit(RoleKind::Institution, a).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(limits.admit(RoleKind::Institution, b).is_ok());
    }

    #[test]
    fn zero_means_unlimited_and_rates_parse() {
        let limits = RateLimits::new(&[(RoleKind::Lookup, 0)], 5);
        for _ in 0..1_000 {
            assert!(limits.admit(RoleKind::Lookup, Uuid::nil()).is_ok());
        }
        assert_eq!(parse_rate("isp=5000"), Ok((RoleKind::Isp, 5000)));
        assert!(parse_rate("root=1").is_err());
        assert!(parse_rate("isp").is_err());
    }
}
