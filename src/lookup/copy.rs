//! A copy of the active set for change streams, taken without stopping
//! lookups or the feed follower: the index is copied a chunk of slots at a
//! time, the lock released in between, while changes go on being applied.
//! The copy is then mixed (each entry as it was at some serial during the
//! copy) and is settled by replaying the changes applied meanwhile: each
//! (prefix, registration) takes the state of its last change, so the result
//! is the active set at the last serial replayed.

use std::collections::HashMap;

use ipnet::IpNet;
use uuid::Uuid;

use super::change::{Change, Op};
use super::entry::Entry;

/// The active set at one serial, shared read-only by every watcher starting
/// while it is recent: built once (not per watcher), freed when the last
/// watcher reading it is done. Streams send it as their snapshot.
pub struct ActiveSetCopy {
    pub session: Uuid,
    pub serial: i64,
    pub entries: Vec<(IpNet, Entry)>,
}

/// `copy`, taken while `changes` (all those applied since the copy began, in
/// serial order) were being applied, as the active set after the last of them.
pub fn settle(copy: Vec<(IpNet, Entry)>, changes: &[Change]) -> Vec<(IpNet, Entry)> {
    let mut last: HashMap<(IpNet, &str), Option<&Entry>> = HashMap::new();
    for c in changes {
        last.insert(
            (c.prefix, &c.entry.reference),
            (c.op == Op::Announce).then_some(&c.entry),
        );
    }
    let mut settled: Vec<(IpNet, Entry)> = copy
        .into_iter()
        .filter(|(p, e)| !last.contains_key(&(*p, e.reference.as_str())))
        .collect();
    settled.extend(
        last.into_iter()
            .filter_map(|((prefix, _), entry)| entry.map(|e| (prefix, e.clone()))),
    );
    settled
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lookup::entry::tests::entry as entry_until;
    use crate::lookup::index::Index;
    use proptest::prelude::*;

    /// Registration `registration`'s entry; versions differ in validity.
    fn entry(registration: u8, version: u8) -> Entry {
        entry_until(
            u128::from(registration),
            0,
            100 * 365 * 86_400 + i64::from(version),
            &[],
        )
    }

    fn sorted(mut v: Vec<(IpNet, Entry)>) -> Vec<(IpNet, String)> {
        let mut out: Vec<(IpNet, String)> = v
            .drain(..)
            .map(|(p, e)| (p, format!("{} {}", e.reference, e.valid_until())))
            .collect();
        out.sort();
        out
    }

    proptest! {
        /// Whatever the interleaving of chunks and changes, the settled copy
        /// equals the index after the last change.
        #[test]
        fn a_copy_taken_during_changes_settles_to_the_final_index(
            initial in proptest::collection::vec((0u8..40, 0u8..6, any::<u8>()), 0..60),
            ops in proptest::collection::vec((any::<bool>(), 0u8..40, 0u8..6, any::<u8>()), 0..80),
            chunk in 1usize..16,
        ) {
            let prefix = |n: u8| -> IpNet { format!("10.{n}.0.0/16").parse().unwrap() };
            let mut index = Index::default();
            for (p, r, v) in initial {
                index.insert(prefix(p), entry(r, v));
            }
            // Copy a chunk, apply a few changes, copy the next chunk, ...
            let mut copy = Vec::new();
            let mut changes = Vec::new();
            let (mut next, bound) = (0, index.slot_bound());
            let mut ops = ops.into_iter();
            let mut serial = 0;
            while next < bound {
                next = index.copy_slots(next, chunk, &mut copy);
                for (announce, p, r, v) in ops.by_ref().take(3) {
                    serial += 1;
                    let e = entry(r, v);
                    if announce {
                        index.insert(prefix(p), e.clone());
                    } else {
                        index.remove(prefix(p), &e.reference);
                    }
                    let op = if announce { Op::Announce } else { Op::Withdraw };
                    changes.push(Change { serial, op, prefix: prefix(p), entry: e });
                }
            }
            let expected: Vec<(IpNet, Entry)> = index.iter().map(|(p, e)| (p, e.clone())).collect();
            prop_assert_eq!(sorted(settle(copy, &changes)), sorted(expected));
        }
    }
}
