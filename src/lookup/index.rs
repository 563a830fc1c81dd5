//! The in-memory longest-prefix-match index of the active set: one prefix
//! trie per address family (prefix-trie), each prefix holding the entries of
//! the registrations that declare it.

use std::{net::IpAddr, sync::Arc};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::feed::ActiveRow;
use crate::domain::{institution::Category, registration::Kind};

/// What lookups know about one active (prefix, registration) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub registration_id: Uuid,
    pub institution_id: Uuid,
    pub reference: Arc<str>,
    pub kind: Kind,
    pub category: Category,
    /// None: any peer. (No allocation for the common case.)
    peers: Option<Arc<[IpNet]>>,
    /// Microseconds since the epoch (PostgreSQL's precision; half the size).
    valid_from_us: i64,
    /// Exclusive.
    valid_until_us: i64,
}

/// Microseconds since the epoch.
fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

fn from_micros(us: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl Entry {
    /// Inside its validity window at `at` (from inclusive, until exclusive),
    /// whether or not the expiry task has run.
    pub fn in_force(&self, at: OffsetDateTime) -> bool {
        let at = micros(at);
        self.valid_from_us <= at && at < self.valid_until_us
    }

    pub fn valid_from(&self) -> OffsetDateTime {
        from_micros(self.valid_from_us)
    }

    pub fn valid_until(&self) -> OffsetDateTime {
        from_micros(self.valid_until_us)
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

impl From<ActiveRow> for (IpNet, Entry) {
    fn from(r: ActiveRow) -> Self {
        (
            r.prefix,
            Entry {
                registration_id: r.registration_id,
                institution_id: r.institution_id,
                reference: r.reference.into(),
                kind: r.kind,
                category: r.category,
                peers: (!r.peers.is_empty()).then(|| r.peers.into()),
                valid_from_us: micros(r.valid_from),
                valid_until_us: micros(r.valid_until),
            },
        )
    }
}

/// One question asked of the index.
#[derive(Debug, Clone, Copy)]
pub struct Query {
    pub addr: IpAddr,
    /// For flow checks: the destination.
    pub peer: Option<IpAddr>,
    pub at: OffsetDateTime,
    /// Institution principals see only their own registrations.
    pub only_institution: Option<Uuid>,
}

impl Query {
    fn accepts(&self, e: &Entry) -> bool {
        e.in_force(self.at) && e.admits(self.peer) && self.only_institution.is_none_or(|own| own == e.institution_id)
    }
}

/// The first acceptable entry among candidates ordered most specific first.
pub fn best<'a>(candidates: impl IntoIterator<Item = (IpNet, &'a Entry)>, q: &Query) -> Option<(IpNet, &'a Entry)> {
    candidates.into_iter().find(|(_, e)| q.accepts(e))
}

/// The active set, searchable by longest prefix.
#[derive(Default)]
pub struct Index {
    v4: PrefixMap<Ipv4Net, Vec<Entry>>,
    v6: PrefixMap<Ipv6Net, Vec<Entry>>,
    entries: usize,
}

impl Index {
    /// Number of (prefix, registration) entries.
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Adds (or replaces) the entry of `entry.registration_id` at `prefix`.
    pub fn insert(&mut self, prefix: IpNet, entry: Entry) {
        let slot = match prefix {
            IpNet::V4(p) => self.v4.entry(p).or_default(),
            IpNet::V6(p) => self.v6.entry(p).or_default(),
        };
        match slot.iter_mut().find(|e| e.registration_id == entry.registration_id) {
            Some(existing) => *existing = entry,
            None => {
                slot.push(entry);
                self.entries += 1;
            }
        }
    }

    /// Removes the entry of `registration_id` at `prefix`; false if absent.
    pub fn remove(&mut self, prefix: IpNet, registration_id: Uuid) -> bool {
        fn take<P: prefix_trie::Prefix>(map: &mut PrefixMap<P, Vec<Entry>>, p: &P, id: Uuid) -> bool {
            let Some(slot) = map.get_mut(p) else { return false };
            let before = slot.len();
            slot.retain(|e| e.registration_id != id);
            let removed = slot.len() < before;
            if slot.is_empty() {
                map.remove(p);
            }
            removed
        }
        let removed = match prefix {
            IpNet::V4(p) => take(&mut self.v4, &p, registration_id),
            IpNet::V6(p) => take(&mut self.v6, &p, registration_id),
        };
        if removed {
            self.entries -= 1;
        }
        removed
    }

    /// The most specific entry that answers `q`.
    pub fn lookup(&self, q: &Query) -> Option<(IpNet, &Entry)> {
        match q.addr {
            IpAddr::V4(a) => search(&self.v4, Ipv4Net::from(a), q),
            IpAddr::V6(a) => search(&self.v6, Ipv6Net::from(a), q),
        }
    }

    /// Every entry, for snapshots.
    pub fn iter(&self) -> impl Iterator<Item = (IpNet, &Entry)> {
        let v4 = self
            .v4
            .iter()
            .flat_map(|(p, es)| es.iter().map(move |e| (IpNet::V4(p), e)));
        let v6 = self
            .v6
            .iter()
            .flat_map(|(p, es)| es.iter().map(move |e| (IpNet::V6(p), e)));
        v4.chain(v6)
    }
}

/// Longest match first (the common case), then the covering prefixes from
/// the most specific up, for when the longest match is out of force.
fn search<'a, P>(map: &'a PrefixMap<P, Vec<Entry>>, host: P, q: &Query) -> Option<(IpNet, &'a Entry)>
where
    P: prefix_trie::Prefix + Copy + Into<IpNet>,
{
    let (lpm, entries) = map.get_lpm(&host)?;
    if let Some(e) = entries.iter().find(|e| q.accepts(e)) {
        return Some((lpm.into(), e));
    }
    let mut covering: Vec<(P, &Vec<Entry>)> = map.cover(&host).collect();
    covering.pop();
    best(
        covering
            .into_iter()
            .rev()
            .flat_map(|(p, es)| es.iter().map(move |e| (p.into(), e))),
        q,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u128, from: i64, until: i64, peers: &[&str]) -> Entry {
        Entry {
            registration_id: Uuid::from_u128(id),
            institution_id: Uuid::from_u128(id),
            reference: format!("VPN-2026-{id:06}").into(),
            kind: Kind::Vpn,
            category: Category::Bank,
            peers: (!peers.is_empty()).then(|| peers.iter().map(|p| p.parse().unwrap()).collect::<Vec<_>>().into()),
            valid_from_us: from * 1_000_000,
            valid_until_us: until * 1_000_000,
        }
    }

    fn q(addr: &str, at: i64) -> Query {
        Query {
            addr: addr.parse().unwrap(),
            peer: None,
            at: OffsetDateTime::from_unix_timestamp(at).unwrap(),
            only_institution: None,
        }
    }

    #[test]
    fn the_most_specific_prefix_in_force_wins() {
        let mut index = Index::default();
        index.insert("8.8.0.0/16".parse().unwrap(), entry(1, 0, 100, &[]));
        index.insert("8.8.8.0/24".parse().unwrap(), entry(2, 0, 50, &[]));
        let hit = |addr, at| {
            index
                .lookup(&q(addr, at))
                .map(|(p, e)| (p.to_string(), e.registration_id.as_u128()))
        };
        assert_eq!(hit("8.8.8.8", 10), Some(("8.8.8.0/24".into(), 2)));
        assert_eq!(
            hit("8.8.8.8", 60),
            Some(("8.8.0.0/16".into(), 1)),
            "the /24 is out of force, the /16 is not"
        );
        assert_eq!(hit("8.8.9.9", 10), Some(("8.8.0.0/16".into(), 1)));
        assert_eq!(hit("8.8.8.8", 100), None, "valid_until is exclusive");
        assert_eq!(hit("9.9.9.9", 10), None);
    }

    #[test]
    fn removal_and_peers() {
        let mut index = Index::default();
        let p: IpNet = "2a00:1450::/48".parse().unwrap();
        index.insert(p, entry(1, 0, 100, &["185.60.216.0/24"]));
        let mut flow = q("2a00:1450::1", 1);
        flow.peer = Some("185.60.216.35".parse().unwrap());
        assert!(index.lookup(&flow).is_some());
        flow.peer = Some("1.1.1.1".parse().unwrap());
        assert!(index.lookup(&flow).is_none());
        assert_eq!(index.len(), 1);
        assert!(index.remove(p, Uuid::from_u128(1)));
        assert!(!index.remove(p, Uuid::from_u128(1)));
        assert!(index.is_empty() && index.lookup(&q("2a00:1450::1", 1)).is_none());
    }
}
