//! The active set as the gateway holds it: one entry per (registration
//! reference, prefix), as the registry announces them, at a session and
//! serial of the registry's change feed.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, LazyLock};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::pb;

/// One registered prefix of one registration. Held a million times on a
/// large gateway: the reference is one shared allocation, the kind the
/// proto's enum rather than a string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub prefix: IpNet,
    #[serde(deserialize_with = "shared_str")]
    pub reference: Arc<str>,
    pub kind: Kind,
    /// Where the flows may go; empty: anywhere.
    pub peers: Vec<IpNet>,
    /// Unix seconds; entries lapse then even if the registry is unreachable.
    pub valid_until: Option<i64>,
}

impl Entry {
    /// An announced entry, or why it cannot be held (a prefix that does not parse).
    pub fn from_pb(e: &pb::ActiveEntry) -> Result<Self, String> {
        let parse = |p: &str| p.parse::<IpNet>().map_err(|_| format!("{p:?} is not a prefix"));
        Ok(Self {
            prefix: parse(&e.prefix)?,
            reference: e.reference.as_str().into(),
            kind: Kind(pb::RegistrationKind::try_from(e.kind).unwrap_or_default()),
            peers: e.peer_prefixes.iter().map(|p| parse(p)).collect::<Result<_, _>>()?,
            valid_until: e.valid_until.as_ref().map(|t| t.seconds),
        })
    }

    /// A stand-in with only the key, for looking up by key.
    fn probe(prefix: IpNet, reference: Arc<str>) -> Keyed {
        Keyed(Entry {
            prefix,
            reference,
            kind: Kind::default(),
            peers: Vec::new(),
            valid_until: None,
        })
    }
}

/// An entry as the set holds it: ordered and compared by its key
/// (prefix, reference) alone, so the key is not stored twice.
#[derive(Debug, Clone)]
struct Keyed(Entry);

impl Keyed {
    fn key(&self) -> (&IpNet, &str) {
        (&self.0.prefix, &self.0.reference)
    }
}

impl PartialEq for Keyed {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Keyed {}

impl PartialOrd for Keyed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Keyed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// The kind of registration: `VPN`, `CALL_CENTER_VOIP` or
/// `VIDEO_CONFERENCING` in files and state (empty for one this agent does
/// not know).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Kind(pub pb::RegistrationKind);

impl Kind {
    pub fn name(self) -> &'static str {
        match self.0 {
            pb::RegistrationKind::Unspecified => "",
            k => k.as_str_name().trim_start_matches("REGISTRATION_KIND_"),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<&str> for Kind {
    fn from(name: &str) -> Self {
        Kind(pb::RegistrationKind::from_str_name(&format!("REGISTRATION_KIND_{name}")).unwrap_or_default())
    }
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor(|s: &str| Kind::from(s)))
    }
}

/// Reads an `Arc<str>` with one allocation (serde's own goes through a
/// `String`, and a million freed strings leave the heap full of holes).
fn shared_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
    d.deserialize_str(StrVisitor(|s: &str| Arc::from(s)))
}

/// Makes a value from a string as the deserializer lends it.
struct StrVisitor<F>(F);

impl<T, F: FnOnce(&str) -> T> serde::de::Visitor<'_> for StrVisitor<F> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<T, E> {
        Ok((self.0)(s))
    }
}

/// The smallest reference, for range bounds.
static NO_REFERENCE: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(""));

/// Where the copy stands in the registry's feed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub session: String,
    pub serial: i64,
}

/// The entries at a position, in prefix order (so the entries inside a
/// prefix are one range: what the kernel sets are recomputed from).
#[derive(Debug, Clone, Default)]
pub struct ActiveSet {
    pub position: Position,
    entries: BTreeSet<Keyed>,
}

/// Equal when at the same position with the same entries, field by field.
impl PartialEq for ActiveSet {
    fn eq(&self, other: &Self) -> bool {
        self.position == other.position && self.entries().eq(other.entries())
    }
}

impl Eq for ActiveSet {}

impl ActiveSet {
    /// Built in bulk: full B-tree nodes (entry by entry in key order, as a
    /// snapshot or a state file comes, they would be about half full: some
    /// 30 MB at a million entries). Of entries with the same key, the last.
    pub fn new(position: Position, entries: impl IntoIterator<Item = Entry>) -> Self {
        Self {
            position,
            entries: entries.into_iter().map(Keyed).collect(),
        }
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().map(|k| &k.0)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Copies up to `n` entries after `after` (from the first with `None`)
    /// into `out`; the key to continue after, or `None` at the end. Lets a
    /// writer take a large set a chunk at a time, under short locks.
    pub fn copy_after(
        &self,
        after: Option<&(IpNet, Arc<str>)>,
        n: usize,
        out: &mut Vec<Entry>,
    ) -> Option<(IpNet, Arc<str>)> {
        use std::ops::Bound;
        let start = match after {
            Some((prefix, reference)) => Bound::Excluded(Entry::probe(*prefix, reference.clone())),
            None => Bound::Unbounded,
        };
        let before = out.len();
        out.extend(
            self.entries
                .range((start, Bound::Unbounded))
                .take(n)
                .map(|k| k.0.clone()),
        );
        let last = out.last().filter(|_| out.len() - before == n)?;
        Some((last.prefix, last.reference.clone()))
    }

    /// Announces (or re-announces, replacing) an entry.
    pub fn announce(&mut self, entry: Entry) {
        self.entries.replace(Keyed(entry));
    }

    /// Withdraws an entry; whether it was held.
    pub fn withdraw(&mut self, reference: &str, prefix: IpNet) -> bool {
        self.entries.remove(&Entry::probe(prefix, Arc::from(reference)))
    }

    /// The entries whose prefix lies inside `net` (itself included).
    pub fn within(&self, net: IpNet) -> impl Iterator<Item = &Entry> {
        let (first, last) = match net {
            IpNet::V4(n) => (
                IpNet::V4(ipnet::Ipv4Net::new_assert(n.network(), 0)),
                IpNet::V4(ipnet::Ipv4Net::new_assert(n.broadcast(), 32)),
            ),
            IpNet::V6(n) => (
                IpNet::V6(ipnet::Ipv6Net::new_assert(n.network(), 0)),
                IpNet::V6(ipnet::Ipv6Net::new_assert(n.broadcast(), 128)),
            ),
        };
        let len = net.prefix_len();
        self.entries
            .range(Entry::probe(first, NO_REFERENCE.clone())..)
            .map(|k| &k.0)
            .take_while(move |e| e.prefix <= last)
            .filter(move |e| e.prefix.prefix_len() >= len)
    }

    /// The widest held prefix that contains `net` (or `net` itself): the
    /// region a change to `net` can affect, since prefixes either nest or
    /// are disjoint.
    pub fn region(&self, net: IpNet) -> IpNet {
        let mut widest = net;
        for len in (0..net.prefix_len()).rev() {
            let Ok(wider) = IpNet::new(net.network(), len).map(|n| n.trunc()) else {
                continue;
            };
            if self.holds(wider) {
                widest = wider;
            }
        }
        widest
    }

    /// Whether some registration holds exactly `net`.
    pub fn holds(&self, net: IpNet) -> bool {
        self.entries
            .range(Entry::probe(net, NO_REFERENCE.clone())..)
            .next()
            .is_some_and(|k| k.0.prefix == net)
    }

    /// Every prefix once, however many registrations hold it (what a plain
    /// allow-list needs), in order.
    pub fn prefixes(&self) -> BTreeSet<IpNet> {
        self.entries().map(|e| e.prefix).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(reference: &str, prefix: &str) -> Entry {
        Entry {
            prefix: prefix.parse().unwrap(),
            reference: reference.into(),
            kind: "VPN".into(),
            peers: vec![],
            valid_until: None,
        }
    }

    #[test]
    fn built_in_bulk_the_last_of_the_same_key_stays() {
        let mut later = entry("VPN-1", "10.0.0.0/24");
        later.valid_until = Some(42);
        let set = ActiveSet::new(Position::default(), [entry("VPN-1", "10.0.0.0/24"), later.clone()]);
        assert_eq!(set.entries().collect::<Vec<_>>(), [&later]);
    }

    #[test]
    fn copying_in_chunks_yields_every_entry_once_in_order() {
        let mut set = ActiveSet::default();
        for i in 0..25u8 {
            set.announce(entry("VPN-1", &format!("10.0.{i}.0/24")));
            set.announce(entry("VPN-2", &format!("10.0.{i}.0/24")));
        }
        let (mut out, mut after) = (Vec::new(), None);
        loop {
            after = set.copy_after(after.as_ref(), 7, &mut out);
            if after.is_none() {
                break;
            }
        }
        assert_eq!(out, set.entries().cloned().collect::<Vec<_>>());
    }

    #[test]
    fn a_prefix_two_registrations_hold_stays_until_both_withdraw() {
        let mut set = ActiveSet::default();
        set.announce(entry("VPN-1", "203.0.113.0/24"));
        set.announce(entry("VPN-2", "203.0.113.0/24"));
        set.announce(entry("VPN-2", "198.51.100.7/32"));
        assert_eq!(set.len(), 3);
        assert_eq!(set.prefixes().len(), 2);
        assert!(set.withdraw("VPN-1", "203.0.113.0/24".parse().unwrap()));
        assert!(set.prefixes().contains(&"203.0.113.0/24".parse().unwrap()));
        assert!(set.withdraw("VPN-2", "203.0.113.0/24".parse().unwrap()));
        assert!(!set.prefixes().contains(&"203.0.113.0/24".parse().unwrap()));
        assert!(!set.withdraw("VPN-2", "203.0.113.0/24".parse().unwrap()), "once");
    }
}
