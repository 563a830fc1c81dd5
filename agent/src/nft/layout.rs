//! What the kernel's sets must hold for an active set: the part of the
//! agent no crate writes for us.
//!
//! The kernel refuses overlapping intervals, but registrations overlap: two
//! registrations may hold the same prefix, or one a /24 inside another's
//! /16, each with its own `valid_until`. So the sets hold disjoint pieces,
//! each allowed until the latest `valid_until` of the entries covering it:
//! after the earlier registration lapses, the kernel still lets the later
//! one's addresses through. Host routes go to hash sets, other prefixes to
//! interval sets, flows (source . peer) to concatenated interval sets.
//!
//! Prefixes either nest or are disjoint, so a change to a prefix can only
//! alter the pieces inside the widest held prefix around it (its region):
//! [`Layout::refresh`] recomputes that region alone, which keeps a change
//! cheap in a set of a million entries. The property tests compare the
//! pieces with a per-address model and the incremental path with a
//! recomputation from scratch.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use crate::set::{ActiveSet, Entry};

/// Unix seconds after which an element lapses; `None`: never.
pub type Expiry = Option<i64>;

/// The later of two expiries (never is the latest).
pub fn later(a: Expiry, b: Expiry) -> Expiry {
    Some(a?.max(b?))
}

/// IPv4 or IPv6: the sets come in pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const BOTH: [Family; 2] = [Family::V4, Family::V6];

    pub fn index(self) -> usize {
        self as usize
    }

    /// The highest address.
    pub fn max(self) -> u128 {
        match self {
            Family::V4 => u32::MAX as u128,
            Family::V6 => u128::MAX,
        }
    }

    /// Bytes per address.
    pub fn width(self) -> usize {
        match self {
            Family::V4 => 4,
            Family::V6 => 16,
        }
    }
}

/// A prefix as its first and last address.
pub fn span(net: IpNet) -> (Family, u128, u128) {
    match net {
        IpNet::V4(n) => (
            Family::V4,
            u32::from(n.network()) as u128,
            u32::from(n.broadcast()) as u128,
        ),
        IpNet::V6(n) => (Family::V6, u128::from(n.network()), u128::from(n.broadcast())),
    }
}

/// A range `lo..=hi` allowed until its expiry.
type Segment = (u128, u128, Expiry);

/// A flow element: sources `src_lo..=src_hi` towards peers `peer_lo..=peer_hi`.
pub type Rect = (u128, u128, u128, u128);

/// The elements of the six sets (index: [`Family::index`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// Host addresses (hash sets).
    pub hosts: [BTreeMap<u128, Expiry>; 2],
    /// Disjoint ranges, first address -> (last address, expiry) (interval sets).
    pub nets: [BTreeMap<u128, (u128, Expiry)>; 2],
    /// Disjoint rectangles (concatenated interval sets).
    pub flows: [BTreeMap<Rect, Expiry>; 2],
}

/// Elements to take out and put in, per set, as one kernel transaction.
/// An element whose expiry changed is in both: taken out, put back with
/// its new timeout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    pub remove: Layout,
    pub add: Layout,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }

    /// Elements taken out or put in.
    pub fn len(&self) -> usize {
        self.remove.len() + self.add.len()
    }

    /// Adds the diff of another region (regions are disjoint).
    pub fn merge(&mut self, other: Diff) {
        self.remove.extend(other.remove);
        self.add.extend(other.add);
    }
}

/// The three kinds of set, per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetKind {
    Hosts,
    Nets,
    Flows,
}

impl SetKind {
    pub const ALL: [SetKind; 3] = [SetKind::Hosts, SetKind::Nets, SetKind::Flows];

    /// The six sets, IPv4 first.
    pub fn each() -> impl Iterator<Item = (Family, SetKind)> {
        Family::BOTH.into_iter().flat_map(|f| SetKind::ALL.map(|k| (f, k)))
    }
}

impl Layout {
    /// Every address and every pair registered, with no timeout: what
    /// `--on-stale open` puts in the sets.
    pub fn everything() -> Self {
        let mut layout = Layout::default();
        for family in Family::BOTH {
            let (i, max) = (family.index(), family.max());
            layout.nets[i].insert(0, (max, None));
            layout.flows[i].insert((0, max, 0, max), None);
        }
        layout
    }

    /// The sets for every entry of `set`.
    pub fn of(set: &ActiveSet) -> Self {
        let mut layout = Layout::default();
        for (family, region) in regions(set.entries()) {
            layout.insert(family, pieces(family, &region));
        }
        layout
    }

    /// After the entries of `prefix` changed in `set`: recomputes the
    /// pieces of its region, and answers what the kernel must change.
    pub fn refresh(&mut self, set: &ActiveSet, prefix: IpNet) -> Diff {
        let region = set.region(prefix);
        let (family, lo, hi) = span(region);
        // Withdrawing a wide prefix leaves the narrower ones inside it as
        // regions of their own: pieces never span two regions.
        let mut fresh = Pieces::default();
        for (_, entries) in regions(set.within(region)) {
            let p = pieces(family, &entries);
            fresh.hosts.extend(p.hosts);
            fresh.nets.extend(p.nets);
            fresh.flows.extend(p.flows);
        }
        let old = self.take(family, lo, hi);
        self.insert(family, fresh.clone());
        Layout::between(family, old, fresh)
    }

    /// What turns `self` into `target` (for a reconciliation with the kernel).
    pub fn diff_to(&self, target: &Layout) -> Diff {
        self.diff_to_in(target, |_, _| true)
    }

    /// [`Layout::diff_to`] in the sets `within` names only.
    pub fn diff_to_in(&self, target: &Layout, within: impl Fn(Family, SetKind) -> bool) -> Diff {
        let mut diff = Diff::default();
        for family in Family::BOTH {
            let i = family.index();
            let (remove, add) = (&mut diff.remove, &mut diff.add);
            if within(family, SetKind::Hosts) {
                changes(
                    &self.hosts[i],
                    &target.hosts[i],
                    &mut remove.hosts[i],
                    &mut add.hosts[i],
                );
            }
            if within(family, SetKind::Nets) {
                changes(&self.nets[i], &target.nets[i], &mut remove.nets[i], &mut add.nets[i]);
            }
            if within(family, SetKind::Flows) {
                changes(
                    &self.flows[i],
                    &target.flows[i],
                    &mut remove.flows[i],
                    &mut add.flows[i],
                );
            }
        }
        diff
    }

    /// Applies a diff (what the kernel does with it; the model the
    /// property tests replay diffs on).
    #[cfg(test)]
    pub fn apply(&mut self, diff: &Diff) {
        for i in 0..2 {
            for k in diff.remove.hosts[i].keys() {
                self.hosts[i].remove(k);
            }
            for k in diff.remove.nets[i].keys() {
                self.nets[i].remove(k);
            }
            for k in diff.remove.flows[i].keys() {
                self.flows[i].remove(k);
            }
            self.hosts[i].extend(diff.add.hosts[i].iter().map(|(k, v)| (*k, *v)));
            self.nets[i].extend(diff.add.nets[i].iter().map(|(k, v)| (*k, *v)));
            self.flows[i].extend(diff.add.flows[i].iter().map(|(k, v)| (*k, *v)));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn extend(&mut self, other: Layout) {
        for (i, (h, (n, f))) in other
            .hosts
            .into_iter()
            .zip(other.nets.into_iter().zip(other.flows))
            .enumerate()
        {
            self.hosts[i].extend(h);
            self.nets[i].extend(n);
            self.flows[i].extend(f);
        }
    }

    /// Drops the elements that lapsed by `now`: the kernel has dropped
    /// them too (a renewal recomputes its region and puts them back).
    pub fn prune_expired(&mut self, now: i64) {
        let live = |e: &Expiry| e.is_none_or(|t| t > now);
        for i in 0..2 {
            self.hosts[i].retain(|_, e| live(e));
            self.nets[i].retain(|_, (_, e)| live(e));
            self.flows[i].retain(|_, e| live(e));
        }
    }

    /// Takes `expected`'s expiry for elements whose expiry read back from
    /// the kernel is within `tolerance` seconds of it (the kernel answers
    /// in remaining milliseconds, so a read-back expiry is approximate).
    pub fn align_expiries(&mut self, expected: &Layout, tolerance: i64) {
        let close = |a: &mut Expiry, b: Expiry| {
            if let (Some(x), Some(y)) = (*a, b)
                && (x - y).abs() <= tolerance
            {
                *a = b;
            }
        };
        for i in 0..2 {
            for (k, e) in self.hosts[i].iter_mut() {
                if let Some(want) = expected.hosts[i].get(k) {
                    close(e, *want);
                }
            }
            for (k, (h, e)) in self.nets[i].iter_mut() {
                if let Some((wh, want)) = expected.nets[i].get(k)
                    && wh == h
                {
                    close(e, *want);
                }
            }
            for (k, e) in self.flows[i].iter_mut() {
                if let Some(want) = expected.flows[i].get(k) {
                    close(e, *want);
                }
            }
        }
    }

    /// Elements in one set.
    pub fn count(&self, kind: SetKind, family: Family) -> usize {
        let i = family.index();
        match kind {
            SetKind::Hosts => self.hosts[i].len(),
            SetKind::Nets => self.nets[i].len(),
            SetKind::Flows => self.flows[i].len(),
        }
    }

    /// Elements in one set, and a digest of them (keys and whether they
    /// expire): what `verify` compares without listing a large set.
    pub fn summary(&self, kind: SetKind, family: Family) -> (usize, String) {
        use sha2::{Digest, Sha256};
        let i = family.index();
        let mut h = Sha256::new();
        let mut n = 0;
        let mut add = |parts: &[u128], e: &Expiry| {
            for p in parts {
                h.update(p.to_be_bytes());
            }
            h.update([e.is_some() as u8]);
            n += 1;
        };
        match kind {
            SetKind::Hosts => self.hosts[i].iter().for_each(|(k, e)| add(&[*k], e)),
            SetKind::Nets => self.nets[i].iter().for_each(|(k, (hi, e))| add(&[*k, *hi], e)),
            SetKind::Flows => self.flows[i]
                .iter()
                .for_each(|((a, b, c, d), e)| add(&[*a, *b, *c, *d], e)),
        }
        let digest = h.finalize();
        (n, digest.iter().take(8).map(|b| format!("{b:02x}")).collect())
    }

    /// Elements in all six sets.
    pub fn len(&self) -> usize {
        (0..2)
            .map(|i| self.hosts[i].len() + self.nets[i].len() + self.flows[i].len())
            .sum()
    }

    fn insert(&mut self, family: Family, p: Pieces) {
        let i = family.index();
        self.hosts[i].extend(p.hosts);
        self.nets[i].extend(p.nets.into_iter().map(|(lo, hi, e)| (lo, (hi, e))));
        self.flows[i].extend(p.flows);
    }

    /// Takes out (and answers) every element inside `lo..=hi`.
    fn take(&mut self, family: Family, lo: u128, hi: u128) -> Pieces {
        let i = family.index();
        let hosts: Vec<u128> = self.hosts[i].range(lo..=hi).map(|(k, _)| *k).collect();
        let nets: Vec<u128> = self.nets[i].range(lo..=hi).map(|(k, _)| *k).collect();
        let flows: Vec<Rect> = self.flows[i]
            .range((lo, 0, 0, 0)..=(hi, u128::MAX, u128::MAX, u128::MAX))
            .map(|(k, _)| *k)
            .collect();
        Pieces {
            hosts: hosts
                .into_iter()
                .filter_map(|k| self.hosts[i].remove_entry(&k))
                .collect(),
            nets: nets
                .into_iter()
                .filter_map(|k| self.nets[i].remove(&k).map(|(h, e)| (k, h, e)))
                .collect(),
            flows: flows
                .into_iter()
                .filter_map(|k| self.flows[i].remove_entry(&k))
                .collect(),
        }
    }

    /// What turns one region's `old` pieces into its `new` ones.
    fn between(family: Family, old: Pieces, new: Pieces) -> Diff {
        let (mut before, mut after) = (Layout::default(), Layout::default());
        before.insert(family, old);
        after.insert(family, new);
        before.diff_to(&after)
    }
}

/// Elements that differ between `old` and `new`, by key and value.
fn changes<K: Ord + Copy, V: PartialEq + Copy>(
    old: &BTreeMap<K, V>,
    new: &BTreeMap<K, V>,
    remove: &mut BTreeMap<K, V>,
    add: &mut BTreeMap<K, V>,
) {
    for (k, v) in old {
        if new.get(k) != Some(v) {
            remove.insert(*k, *v);
        }
    }
    for (k, v) in new {
        if old.get(k) != Some(v) {
            add.insert(*k, *v);
        }
    }
}

/// The elements of one family inside one region.
#[derive(Debug, Default, Clone)]
struct Pieces {
    hosts: Vec<(u128, Expiry)>,
    nets: Vec<(u128, u128, Expiry)>,
    flows: Vec<(Rect, Expiry)>,
}

/// Entries (in prefix order) grouped by region: a prefix and everything
/// inside it.
fn regions<'a>(entries: impl Iterator<Item = &'a Entry>) -> Vec<(Family, Vec<&'a Entry>)> {
    let mut out: Vec<(Family, Vec<&'a Entry>)> = Vec::new();
    let mut current: Option<(Family, u128, u128)> = None;
    for entry in entries {
        let (family, lo, hi) = span(entry.prefix);
        match current {
            Some((f, rlo, rhi)) if f == family && lo >= rlo && hi <= rhi => {}
            _ => {
                current = Some((family, lo, hi));
                out.push((family, Vec::new()));
            }
        }
        if let Some((_, region)) = out.last_mut() {
            region.push(entry);
        }
    }
    out
}

/// The pieces of one region's entries.
fn pieces(family: Family, entries: &[&Entry]) -> Pieces {
    let mut hosts: BTreeMap<u128, Expiry> = BTreeMap::new();
    let mut ranges = Vec::new();
    let mut rects = Vec::new();
    for entry in entries {
        let (f, lo, hi) = span(entry.prefix);
        debug_assert_eq!(f, family);
        if entry.peers.is_empty() {
            if lo == hi {
                let held = hosts.entry(lo).or_insert(entry.valid_until);
                *held = later(*held, entry.valid_until);
            } else {
                ranges.push((lo, hi, entry.valid_until));
            }
        } else {
            for peer in &entry.peers {
                let (pf, plo, phi) = span(*peer);
                // A flow between families cannot happen; the registry refuses them.
                if pf == family {
                    rects.push((lo, hi, plo, phi, entry.valid_until));
                }
            }
        }
    }
    Pieces {
        hosts: hosts.into_iter().collect(),
        nets: segments(family, &ranges),
        flows: rectangles(family, &rects),
    }
}

/// Orders expiries for "latest" (never is the latest of all).
fn rank(e: Expiry) -> i64 {
    e.unwrap_or(i64::MAX)
}

fn unrank(r: i64) -> Expiry {
    (r != i64::MAX).then_some(r)
}

/// Disjoint pieces covering the ranges, each until the latest expiry of
/// the ranges covering it; neighbours with the same expiry joined.
fn segments(family: Family, ranges: &[(u128, u128, Expiry)]) -> Vec<(u128, u128, Expiry)> {
    // (position, +1/-1, rank): ranges open at lo and close after hi.
    let mut events: Vec<(u128, bool, i64)> = Vec::with_capacity(ranges.len() * 2);
    for &(lo, hi, e) in ranges {
        events.push((lo, true, rank(e)));
        if hi < family.max() {
            events.push((hi + 1, false, rank(e)));
        }
    }
    events.sort_unstable();
    let mut active: BTreeMap<i64, u32> = BTreeMap::new();
    let mut out: Vec<(u128, u128, Expiry)> = Vec::new();
    let mut i = 0;
    while i < events.len() {
        let at = events[i].0;
        while i < events.len() && events[i].0 == at {
            let (_, open, r) = events[i];
            if open {
                *active.entry(r).or_default() += 1;
            } else if let Some(n) = active.get_mut(&r) {
                *n -= 1;
                if *n == 0 {
                    active.remove(&r);
                }
            }
            i += 1;
        }
        let Some((&r, _)) = active.last_key_value() else {
            continue;
        };
        let end = events.get(i).map_or(family.max(), |next| next.0 - 1);
        let e = unrank(r);
        match out.last_mut() {
            Some(last) if last.1 + 1 == at && last.2 == e => last.1 = end,
            _ => out.push((at, end, e)),
        }
    }
    out
}

/// Disjoint rectangles covering the flows: the sources cut where any flow's
/// sources begin or end; in each cut, the peers of the flows covering it
/// as [`segments`]; neighbouring cuts with the same peers joined.
fn rectangles(family: Family, flows: &[(u128, u128, u128, u128, Expiry)]) -> Vec<(Rect, Expiry)> {
    let mut events: Vec<(u128, bool, usize)> = Vec::with_capacity(flows.len() * 2);
    for (n, &(lo, hi, ..)) in flows.iter().enumerate() {
        events.push((lo, true, n));
        if hi < family.max() {
            events.push((hi + 1, false, n));
        }
    }
    events.sort_unstable();
    let mut active: BTreeSet<usize> = BTreeSet::new();
    // (source lo, source hi, peer pieces)
    let mut cuts: Vec<(u128, u128, Vec<Segment>)> = Vec::new();
    let mut i = 0;
    while i < events.len() {
        let at = events[i].0;
        while i < events.len() && events[i].0 == at {
            let (_, open, n) = events[i];
            if open {
                active.insert(n);
            } else {
                active.remove(&n);
            }
            i += 1;
        }
        if active.is_empty() {
            continue;
        }
        let end = events.get(i).map_or(family.max(), |next| next.0 - 1);
        let peers: Vec<(u128, u128, Expiry)> = active.iter().map(|&n| (flows[n].2, flows[n].3, flows[n].4)).collect();
        let peers = segments(family, &peers);
        match cuts.last_mut() {
            Some(last) if last.1 + 1 == at && last.2 == peers => last.1 = end,
            _ => cuts.push((at, end, peers)),
        }
    }
    cuts.into_iter()
        .flat_map(|(lo, hi, peers)| peers.into_iter().map(move |(plo, phi, e)| ((lo, hi, plo, phi), e)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::set::Position;
    use proptest::prelude::*;

    fn entry(reference: &str, prefix: &str, peers: &[&str], valid_until: Expiry) -> Entry {
        Entry {
            prefix: prefix.parse().unwrap(),
            reference: reference.into(),
            kind: "VPN".into(),
            peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
            valid_until,
        }
    }

    #[test]
    fn a_nested_prefix_outlives_the_wider_one_it_sits_in() {
        let set = ActiveSet::new(
            Position::default(),
            [
                entry("VPN-1", "10.0.0.0/16", &[], Some(100)),
                entry("VPN-2", "10.0.1.0/24", &[], Some(200)),
                entry("VPN-3", "10.0.1.0/24", &[], Some(150)),
                entry("VPN-3", "10.0.9.9/32", &[], None),
            ],
        );
        let layout = Layout::of(&set);
        let v4 = |s: &str| u32::from(s.parse::<std::net::Ipv4Addr>().unwrap()) as u128;
        let nets: Vec<_> = layout.nets[0].iter().map(|(l, (h, e))| (*l, *h, *e)).collect();
        assert_eq!(
            nets,
            [
                (v4("10.0.0.0"), v4("10.0.0.255"), Some(100)),
                (v4("10.0.1.0"), v4("10.0.1.255"), Some(200)),
                (v4("10.0.2.0"), v4("10.0.255.255"), Some(100)),
            ]
        );
        assert_eq!(
            layout.hosts[0].get(&v4("10.0.9.9")),
            Some(&None),
            "hosts go to the hash set"
        );
    }

    #[test]
    fn a_range_reaching_the_last_address_ends_there() {
        let set = ActiveSet::new(Position::default(), [entry("VPN-1", "255.255.255.0/24", &[], None)]);
        let layout = Layout::of(&set);
        assert_eq!(layout.nets[0].get(&0xffff_ff00), Some(&(0xffff_ffff, None)));
    }

    // The property tests work in 10.0.0.0/26 and 2001:db8::/122 so that
    // random prefixes overlap often and every address can be checked.
    fn arb_entry() -> impl Strategy<Value = Entry> {
        let prefix = (any::<bool>(), 0u8..64, 26u8..=32);
        let peers = proptest::collection::vec((0u8..64, 27u8..=32), 0..3);
        let expiry = prop_oneof![Just(None), (1i64..4).prop_map(|n| Some(n * 100))];
        (0u8..4, prefix, peers, expiry).prop_map(|(r, (v6, addr, len), peers, valid_until)| {
            let net = |addr: u8, len: u8| -> IpNet {
                if v6 {
                    let a = std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | addr as u128);
                    IpNet::new(a.into(), len + 96).unwrap().trunc()
                } else {
                    let a = std::net::Ipv4Addr::new(10, 0, 0, addr);
                    IpNet::new(a.into(), len).unwrap().trunc()
                }
            };
            Entry {
                prefix: net(addr, len),
                reference: format!("VPN-{r}").into(),
                kind: "VPN".into(),
                peers: peers.into_iter().map(|(a, l)| net(a, l)).collect(),
                valid_until,
            }
        })
    }

    /// Per address (and peer): the latest expiry of the entries covering it,
    /// from the entries directly; and what the layout says, checking that
    /// at most one element of each set matches.
    fn check_against_model(set: &ActiveSet, layout: &Layout) -> Result<(), TestCaseError> {
        for (family, base) in [(Family::V4, 0x0a00_0000u128), (Family::V6, 0x2001_0db8_u128 << 96)] {
            let i = family.index();
            let covers = |net: IpNet, a: u128| {
                let (f, lo, hi) = span(net);
                f == family && lo <= a && a <= hi
            };
            for a in base..base + 64 {
                let want = set
                    .entries()
                    .filter(|e| e.peers.is_empty() && covers(e.prefix, a))
                    .map(|e| e.valid_until)
                    .reduce(later);
                let host = layout.hosts[i].get(&a).copied();
                let nets: Vec<Expiry> = layout.nets[i]
                    .iter()
                    .filter(|(l, (h, _))| **l <= a && a <= *h)
                    .map(|(_, (_, e))| *e)
                    .collect();
                prop_assert!(nets.len() <= 1, "overlapping ranges at {a:#x}: {:?}", layout.nets[i]);
                let got = host.into_iter().chain(nets).reduce(later);
                prop_assert_eq!(got, want, "address {:#x}", a);
                for p in base..base + 64 {
                    let want = set
                        .entries()
                        .filter(|e| covers(e.prefix, a) && e.peers.iter().any(|q| covers(*q, p)))
                        .map(|e| e.valid_until)
                        .reduce(later);
                    let got: Vec<Expiry> = layout.flows[i]
                        .iter()
                        .filter(|((sl, sh, pl, ph), _)| *sl <= a && a <= *sh && *pl <= p && p <= *ph)
                        .map(|(_, e)| *e)
                        .collect();
                    prop_assert!(got.len() <= 1, "overlapping flows at {a:#x} . {p:#x}");
                    prop_assert_eq!(got.first().copied(), want, "flow {:#x} . {:#x}", a, p);
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn the_sets_hold_exactly_what_the_entries_allow(entries in proptest::collection::vec(arb_entry(), 0..12)) {
            let set = ActiveSet::new(Position::default(), entries);
            check_against_model(&set, &Layout::of(&set))?;
        }

        #[test]
        fn changes_applied_one_region_at_a_time_match_a_recomputation(
            first in proptest::collection::vec(arb_entry(), 0..10),
            steps in proptest::collection::vec((any::<bool>(), arb_entry()), 1..12),
        ) {
            let mut set = ActiveSet::new(Position::default(), first);
            let mut layout = Layout::of(&set);
            // What the kernel holds: the first layout, then each diff.
            let mut kernel = layout.clone();
            for (announce, entry) in steps {
                let prefix = entry.prefix;
                if announce {
                    set.announce(entry);
                } else {
                    set.withdraw(&entry.reference, prefix);
                }
                let diff = layout.refresh(&set, prefix);
                kernel.apply(&diff);
                prop_assert_eq!(&kernel, &layout);
            }
            prop_assert_eq!(&layout, &Layout::of(&set));
            check_against_model(&set, &layout)?;
            let diff = Layout::default().diff_to(&layout);
            let mut empty = Layout::default();
            empty.apply(&diff);
            prop_assert_eq!(&empty, &layout, "a diff from nothing rebuilds everything");
        }
    }
}
