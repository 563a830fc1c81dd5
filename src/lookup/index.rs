//! The in-memory longest-prefix-match index of the active set: one prefix
//! trie per address family (prefix-trie) whose values are slots in one slab
//! of entries, chained when several registrations declare the same prefix.
//! Small trie values and inline references keep a million prefixes in well
//! under the memory budget and make lookups touch fewer cache lines.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

use super::entry::{Entry, Filter, Query};

/// End of a chain of slots.
const NONE: u32 = u32::MAX;

/// An entry and the next slot declaring the same prefix.
struct Slot {
    /// Kept beside the entry so that a copy can take slots in chunks.
    prefix: IpNet,
    entry: Entry,
    next: u32,
}

/// The active set, searchable by longest prefix.
///
/// Host routes (/32, /128) sit in hash maps in front of the tries: they are
/// the most specific match possible, so a hit there that is in force ends
/// the search with one probe instead of a walk down the trie (half of the
/// registered prefixes are single addresses).
#[derive(Default)]
pub struct Index {
    /// Prefix -> first slot of its chain.
    v4: PrefixMap<Ipv4Net, u32>,
    v6: PrefixMap<Ipv6Net, u32>,
    v4_hosts: hashbrown::HashMap<Ipv4Addr, u32>,
    v6_hosts: hashbrown::HashMap<Ipv6Addr, u32>,
    slots: slab::Slab<Slot>,
    /// Entries under an IPv6 prefix (the rest are IPv4).
    v6_entries: usize,
}

impl Index {
    /// Number of (prefix, registration) entries.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Entries under IPv4 and under IPv6 prefixes.
    pub fn len_by_family(&self) -> (usize, usize) {
        (self.slots.len() - self.v6_entries, self.v6_entries)
    }

    /// The chain starting at `head`.
    fn chain(&self, head: u32) -> impl Iterator<Item = (u32, &Entry)> {
        std::iter::successors((head != NONE).then_some(head), |&i| {
            let next = self.slots[i as usize].next;
            (next != NONE).then_some(next)
        })
        .map(|i| (i, &self.slots[i as usize].entry))
    }

    /// The first slot declaring `prefix`, or NONE.
    fn head(&self, prefix: IpNet) -> u32 {
        match prefix {
            IpNet::V4(p) if p.prefix_len() == 32 => self.v4_hosts.get(&p.addr()),
            IpNet::V6(p) if p.prefix_len() == 128 => self.v6_hosts.get(&p.addr()),
            IpNet::V4(p) => self.v4.get(&p),
            IpNet::V6(p) => self.v6.get(&p),
        }
        .copied()
        .unwrap_or(NONE)
    }

    /// Points `prefix` at `head`; NONE forgets the prefix.
    fn set_head(&mut self, prefix: IpNet, head: u32) {
        match (prefix, head) {
            (IpNet::V4(p), NONE) if p.prefix_len() == 32 => {
                self.v4_hosts.remove(&p.addr());
            }
            (IpNet::V6(p), NONE) if p.prefix_len() == 128 => {
                self.v6_hosts.remove(&p.addr());
            }
            (IpNet::V4(p), NONE) => {
                self.v4.remove(&p);
            }
            (IpNet::V6(p), NONE) => {
                self.v6.remove(&p);
            }
            (IpNet::V4(p), _) if p.prefix_len() == 32 => {
                self.v4_hosts.insert(p.addr(), head);
            }
            (IpNet::V6(p), _) if p.prefix_len() == 128 => {
                self.v6_hosts.insert(p.addr(), head);
            }
            (IpNet::V4(p), _) => {
                self.v4.insert(p, head);
            }
            (IpNet::V6(p), _) => {
                self.v6.insert(p, head);
            }
        }
    }

    /// Adds (or replaces) the entry of `entry.reference` at `prefix`.
    pub fn insert(&mut self, prefix: IpNet, entry: Entry) {
        let head = self.head(prefix);
        let existing = self
            .chain(head)
            .find(|(_, e)| e.reference == entry.reference)
            .map(|(i, _)| i);
        if let Some(i) = existing {
            self.slots[i as usize].entry = entry;
            return;
        }
        let slot = self.slots.insert(Slot {
            prefix,
            entry,
            next: head,
        });
        self.v6_entries += usize::from(matches!(prefix, IpNet::V6(_)));
        let slot = u32::try_from(slot).expect("fewer than 4 billion active entries");
        self.set_head(prefix, slot);
    }

    /// Removes the entry of registration `reference` at `prefix`; false if absent.
    pub fn remove(&mut self, prefix: IpNet, reference: &str) -> bool {
        let head = self.head(prefix);
        let mut before = NONE;
        let mut found = NONE;
        for (i, e) in self.chain(head) {
            if e.reference == reference {
                found = i;
                break;
            }
            before = i;
        }
        if found == NONE {
            return false;
        }
        let next = self.slots.remove(found as usize).next;
        self.v6_entries -= usize::from(matches!(prefix, IpNet::V6(_)));
        if before == NONE {
            self.set_head(prefix, next);
        } else {
            self.slots[before as usize].next = next;
        }
        true
    }

    /// The most specific entry that answers `q`.
    pub fn lookup(&self, q: &Query) -> Option<(IpNet, &Entry)> {
        self.find(q.addr, &q.filter())
    }

    /// The most specific entry for `addr` that `f` accepts.
    pub fn find(&self, addr: IpAddr, f: &Filter) -> Option<(IpNet, &Entry)> {
        let host = match addr {
            IpAddr::V4(a) => self.v4_hosts.get(&a),
            IpAddr::V6(a) => self.v6_hosts.get(&a),
        };
        if let Some(e) = host.and_then(|&head| self.chain(head).find(|(_, e)| f.accepts(e))) {
            return Some((IpNet::from(addr), e.1));
        }
        match addr {
            IpAddr::V4(a) => self.search(&self.v4, Ipv4Net::from(a), f),
            IpAddr::V6(a) => self.search(&self.v6, Ipv6Net::from(a), f),
        }
    }

    /// The most specific entry `f` accepts whose prefix covers all of `net`
    /// (RDAP's prefix queries); a host prefix is an address.
    pub fn find_covering(&self, net: IpNet, f: &Filter) -> Option<(IpNet, &Entry)> {
        match net.trunc() {
            n if n.prefix_len() == n.max_prefix_len() => self.find(n.addr(), f),
            IpNet::V4(n) => self.search(&self.v4, n, f),
            IpNet::V6(n) => self.search(&self.v6, n, f),
        }
    }

    /// Slots below this number are all there are (for [`Index::copy_slots`]).
    pub fn slot_bound(&self) -> usize {
        self.slots.capacity()
    }

    /// Appends the entries of slots `from..from + count` to `out`; returns
    /// where to continue. Lets a copy take the index a chunk at a time,
    /// releasing the lock in between (see `lookup::copy`).
    pub fn copy_slots(&self, from: usize, count: usize, out: &mut Vec<(IpNet, Entry)>) -> usize {
        let to = from.saturating_add(count);
        out.extend(
            (from..to)
                .filter_map(|i| self.slots.get(i))
                .map(|s| (s.prefix, s.entry.clone())),
        );
        to
    }

    /// Every entry.
    pub fn iter(&self) -> impl Iterator<Item = (IpNet, &Entry)> {
        let v4 = self.v4.iter().map(|(p, &head)| (IpNet::V4(p), head));
        let v6 = self.v6.iter().map(|(p, &head)| (IpNet::V6(p), head));
        let v4_hosts = self
            .v4_hosts
            .iter()
            .map(|(&a, &head)| (IpNet::from(IpAddr::V4(a)), head));
        let v6_hosts = self
            .v6_hosts
            .iter()
            .map(|(&a, &head)| (IpNet::from(IpAddr::V6(a)), head));
        v4.chain(v6)
            .chain(v4_hosts)
            .chain(v6_hosts)
            .flat_map(move |(p, head)| self.chain(head).map(move |(_, e)| (p, e)))
    }

    /// Longest match first (the common case), then the covering prefixes
    /// from the most specific up, for when the longest match is out of force.
    fn search<'a, P>(&'a self, map: &'a PrefixMap<P, u32>, host: P, f: &Filter) -> Option<(IpNet, &'a Entry)>
    where
        P: prefix_trie::Prefix + Copy + Into<IpNet>,
    {
        let (lpm, &head) = map.get_lpm(&host)?;
        if let Some((_, e)) = self.chain(head).find(|(_, e)| f.accepts(e)) {
            return Some((lpm.into(), e));
        }
        let mut covering: Vec<(P, u32)> = map.cover(&host).map(|(p, &head)| (p, head)).collect();
        covering.pop();
        covering
            .into_iter()
            .rev()
            .find_map(|(p, head)| self.chain(head).find(|(_, e)| f.accepts(e)).map(|(_, e)| (p.into(), e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lookup::entry::{
        Scope,
        tests::{entry, reference},
    };
    use time::OffsetDateTime;

    fn q(addr: &str, at: i64) -> Query {
        Query {
            addr: addr.parse().unwrap(),
            peer: None,
            at: OffsetDateTime::from_unix_timestamp(at).unwrap(),
            scope: Scope::All,
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
                .map(|(p, e)| (p.to_string(), e.institution_id.as_u128()))
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
        assert!(index.remove(p, &reference(1)));
        assert!(!index.remove(p, &reference(1)));
        assert!(index.is_empty() && index.lookup(&q("2a00:1450::1", 1)).is_none());
    }

    #[test]
    fn registrations_sharing_a_prefix_are_chained() {
        let mut index = Index::default();
        let p: IpNet = "10.1.0.0/16".parse().unwrap();
        for id in 1..=3 {
            index.insert(p, entry(id, 0, 100, &[]));
        }
        index.insert(p, entry(2, 0, 200, &[]));
        assert_eq!(index.len(), 3, "re-announcing replaces, not adds");
        let ids = |index: &Index| {
            let mut ids: Vec<u128> = index.iter().map(|(_, e)| e.institution_id.as_u128()).collect();
            ids.sort();
            ids
        };
        assert_eq!(ids(&index), [1, 2, 3]);
        assert!(index.remove(p, &reference(2)), "middle of the chain");
        assert_eq!(ids(&index), [1, 3]);
        assert!(index.remove(p, &reference(3)), "head of the chain");
        assert_eq!(ids(&index), [1]);
        assert!(index.lookup(&q("10.1.2.3", 150)).is_none(), "1 ends at 100");
        assert!(index.lookup(&q("10.1.2.3", 50)).is_some());
        assert!(index.remove(p, &reference(1)));
        assert!(index.is_empty() && index.lookup(&q("10.1.2.3", 50)).is_none());
        index.insert(p, entry(4, 0, 100, &[]));
        assert_eq!(ids(&index), [4], "the prefix is reusable after its chain emptied");
    }

    #[test]
    fn a_prefix_is_answered_by_the_most_specific_entry_covering_all_of_it() {
        let mut index = Index::default();
        index.insert("8.8.0.0/16".parse().unwrap(), entry(1, 0, 100, &[]));
        index.insert("8.8.8.0/24".parse().unwrap(), entry(2, 0, 100, &[]));
        index.insert("8.8.8.8/32".parse().unwrap(), entry(3, 0, 100, &[]));
        let f = Filter::new(OffsetDateTime::from_unix_timestamp(10).unwrap(), None, Scope::All);
        let covering = |net: &str| {
            index
                .find_covering(net.parse().unwrap(), &f)
                .map(|(p, e)| (p.to_string(), e.institution_id.as_u128()))
        };
        assert_eq!(covering("8.8.8.0/24"), Some(("8.8.8.0/24".into(), 2)));
        assert_eq!(covering("8.8.8.0/25"), Some(("8.8.8.0/24".into(), 2)));
        assert_eq!(
            covering("8.8.0.0/20"),
            Some(("8.8.0.0/16".into(), 1)),
            "the /24 covers part only"
        );
        assert_eq!(covering("8.8.8.8/32"), Some(("8.8.8.8/32".into(), 3)));
        assert_eq!(covering("8.0.0.0/8"), None);
        assert_eq!(covering("9.9.9.0/24"), None);
    }

    #[test]
    fn host_routes_answer_first_and_fall_back_to_covering_prefixes() {
        let mut index = Index::default();
        index.insert("8.8.8.0/24".parse().unwrap(), entry(1, 0, 100, &[]));
        index.insert("8.8.8.8/32".parse().unwrap(), entry(2, 0, 50, &[]));
        index.insert("2001:db8::/48".parse().unwrap(), entry(3, 0, 100, &[]));
        index.insert("2001:db8::1/128".parse().unwrap(), entry(4, 0, 100, &["10.0.0.0/8"]));
        let hit = |index: &Index, addr: &str, at, peer: Option<&str>| {
            let mut query = q(addr, at);
            query.peer = peer.map(|p| p.parse().unwrap());
            index
                .lookup(&query)
                .map(|(p, e)| (p.to_string(), e.institution_id.as_u128()))
        };
        assert_eq!(hit(&index, "8.8.8.8", 10, None), Some(("8.8.8.8/32".into(), 2)));
        assert_eq!(
            hit(&index, "8.8.8.8", 60, None),
            Some(("8.8.8.0/24".into(), 1)),
            "host out of force"
        );
        assert_eq!(hit(&index, "8.8.8.9", 10, None), Some(("8.8.8.0/24".into(), 1)));
        assert_eq!(
            hit(&index, "2001:db8::1", 10, Some("10.1.1.1")),
            Some(("2001:db8::1/128".into(), 4))
        );
        assert_eq!(
            hit(&index, "2001:db8::1", 10, Some("192.0.2.1")),
            Some(("2001:db8::/48".into(), 3)),
            "the host's peers do not admit the flow"
        );
        assert_eq!(index.len(), 4);
        assert_eq!(index.iter().count(), 4);
        assert!(index.remove("8.8.8.8/32".parse().unwrap(), &reference(2)));
        assert_eq!(hit(&index, "8.8.8.8", 10, None), Some(("8.8.8.0/24".into(), 1)));
        assert!(!index.remove("8.8.8.8/32".parse().unwrap(), &reference(2)));
    }
}
