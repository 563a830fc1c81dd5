//! What the lookup tier holds and asks about, in its own types: an entry
//! (one active prefix of one registration, in the compact form the index
//! keeps), whose entries a caller may see, and a query's conditions. The
//! leaf of `lookup/`: every other module of the tier builds on it, and it
//! knows nothing of storage rows or the wire.

use std::{net::IpAddr, sync::Arc};

use ipnet::IpNet;
use smol_str::SmolStr;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{institution::Category, registration::Kind};

/// What lookups know about one active (prefix, registration) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub institution_id: Uuid,
    /// The registration's reference: unique and never changed, so it is the
    /// entry's identity at a prefix (and travels on the wire, which lets a
    /// fan-out replica apply withdrawals). Inline up to 23 bytes (every
    /// reference we issue), so no allocation.
    pub reference: SmolStr,
    pub kind: Kind,
    pub category: Category,
    /// None: any peer. (No allocation for the common case.)
    peers: Option<Arc<[IpNet]>>,
    /// Microseconds since the epoch (PostgreSQL's precision; half the size).
    valid_from_us: i64,
    /// Exclusive.
    valid_until_us: i64,
    /// The ISP the registration names (inline: ISP codes are short).
    pub isp: SmolStr,
    /// When this entry was last announced, in microseconds (RDAP's "last
    /// changed").
    changed_us: i64,
}

/// An entry's parts as its sources (the feed's rows, an upstream's
/// messages) give them; [`Entry::new`] packs them.
#[derive(Debug, Clone)]
pub struct EntryParts {
    pub institution_id: Uuid,
    pub reference: SmolStr,
    pub kind: Kind,
    pub category: Category,
    /// Empty: any peer.
    pub peers: Vec<IpNet>,
    pub valid_from: OffsetDateTime,
    /// Exclusive.
    pub valid_until: OffsetDateTime,
    pub isp: SmolStr,
    pub changed: OffsetDateTime,
}

/// Microseconds since the epoch.
fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

fn from_micros(us: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl Entry {
    pub fn new(p: EntryParts) -> Self {
        Self {
            institution_id: p.institution_id,
            reference: p.reference,
            kind: p.kind,
            category: p.category,
            peers: (!p.peers.is_empty()).then(|| p.peers.into()),
            valid_from_us: micros(p.valid_from),
            valid_until_us: micros(p.valid_until),
            isp: p.isp,
            changed_us: micros(p.changed),
        }
    }

    /// Inside its validity window at `at_us` (from inclusive, until
    /// exclusive), whether or not the expiry task has run.
    pub fn in_force(&self, at_us: i64) -> bool {
        self.valid_from_us <= at_us && at_us < self.valid_until_us
    }

    pub fn valid_from(&self) -> OffsetDateTime {
        from_micros(self.valid_from_us)
    }

    pub fn valid_until(&self) -> OffsetDateTime {
        from_micros(self.valid_until_us)
    }

    pub fn changed(&self) -> OffsetDateTime {
        from_micros(self.changed_us)
    }

    /// `valid_until` as (seconds, nanoseconds) since the epoch, without a
    /// calendar conversion: the hot path's timestamp.
    pub fn valid_until_parts(&self) -> (i64, i32) {
        let us = self.valid_until_us;
        (us.div_euclid(1_000_000), (us.rem_euclid(1_000_000) * 1000) as i32)
    }

    /// The peer prefixes (empty: any peer).
    pub fn peers(&self) -> &[IpNet] {
        self.peers.as_deref().unwrap_or_default()
    }

    /// Whether a flow towards `peer` is covered (no peer list: any peer).
    pub fn admits(&self, peer: Option<IpAddr>) -> bool {
        match peer {
            None => true,
            Some(peer) => self
                .peers
                .as_ref()
                .is_none_or(|ps| ps.iter().any(|p| p.contains(&peer))),
        }
    }
}

/// What a check found: the entry and the prefix it matched at.
#[derive(Debug, Clone)]
pub struct Match {
    pub prefix: IpNet,
    pub entry: Entry,
}

/// Whose registrations a caller may see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Scope {
    /// The regulator's services and reviewers: everything.
    #[default]
    All,
    /// An institution: its own registrations.
    Institution(Uuid),
    /// An ISP: the registrations that name it.
    Isp(SmolStr),
}

impl Scope {
    pub fn admits(&self, e: &Entry) -> bool {
        match self {
            Self::All => true,
            Self::Institution(own) => *own == e.institution_id,
            Self::Isp(own) => *own == e.isp,
        }
    }
}

/// One question asked of the index.
#[derive(Debug, Clone)]
pub struct Query {
    pub addr: IpAddr,
    /// For flow checks: the destination.
    pub peer: Option<IpAddr>,
    pub at: OffsetDateTime,
    pub scope: Scope,
}

impl Query {
    pub fn filter(&self) -> Filter {
        Filter::new(self.at, self.peer, self.scope.clone())
    }
}

/// A query's conditions on an entry, with the instant converted once (and
/// shared by every address of a batch).
#[derive(Debug, Clone)]
pub struct Filter {
    at_us: i64,
    peer: Option<IpAddr>,
    scope: Scope,
}

impl Filter {
    pub fn new(at: OffsetDateTime, peer: Option<IpAddr>, scope: Scope) -> Self {
        Self {
            at_us: micros(at),
            peer,
            scope,
        }
    }

    /// Whether `e` answers: in force, admitting the peer, visible to the caller.
    pub fn accepts(&self, e: &Entry) -> bool {
        e.in_force(self.at_us) && e.admits(self.peer) && self.scope.admits(e)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Registration `id`'s entry (institution `id`, ISP `ptcl`), in force
    /// from `from` until `until` seconds after the epoch, with `peers`.
    pub(crate) fn entry(id: u128, from: i64, until: i64, peers: &[&str]) -> Entry {
        let at = |s| OffsetDateTime::from_unix_timestamp(s).unwrap();
        Entry::new(EntryParts {
            institution_id: Uuid::from_u128(id),
            reference: reference(id).into(),
            kind: Kind::Vpn,
            category: Category::Bank,
            peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
            valid_from: at(from),
            valid_until: at(until),
            isp: "ptcl".into(),
            changed: OffsetDateTime::UNIX_EPOCH,
        })
    }

    pub(crate) fn reference(id: u128) -> String {
        format!("VPN-2026-{id:06}")
    }

    #[test]
    fn an_entry_is_in_force_from_its_start_until_before_its_end() {
        let e = entry(1, 10, 20, &[]);
        assert!(!e.in_force(9_999_999) && e.in_force(10_000_000) && e.in_force(19_999_999));
        assert!(!e.in_force(20_000_000), "valid_until is exclusive");
        assert_eq!(e.valid_until_parts(), (20, 0));
        assert_eq!(e.valid_from(), OffsetDateTime::from_unix_timestamp(10).unwrap());
    }

    #[test]
    fn a_scope_admits_its_own_entries_only() {
        let e = entry(7, 0, 1, &[]);
        assert!(Scope::All.admits(&e));
        assert!(Scope::Institution(Uuid::from_u128(7)).admits(&e));
        assert!(!Scope::Institution(Uuid::from_u128(8)).admits(&e));
        assert!(Scope::Isp("ptcl".into()).admits(&e) && !Scope::Isp("nayatel".into()).admits(&e));
    }

    #[test]
    fn without_peers_any_peer_is_admitted() {
        let peer = |s: &str| Some(s.parse().unwrap());
        assert!(entry(1, 0, 1, &[]).admits(peer("1.1.1.1")));
        let e = entry(1, 0, 1, &["185.60.216.0/24"]);
        assert!(e.admits(peer("185.60.216.35")) && !e.admits(peer("1.1.1.1")) && e.admits(None));
    }
}
