//! The recent changes a fan-out replica keeps in memory: it has no feed
//! table to read them from, yet its watchers resume from a serial like any
//! other replica's (as an RTR cache keeps a window of deltas). A resume from
//! before the window gets a reset and a snapshot instead.

use std::collections::VecDeque;

use super::change::Change;

pub struct Journal {
    changes: VecDeque<Change>,
    capacity: usize,
    /// Changes up to this serial are no longer held.
    forgotten_through: i64,
}

impl Journal {
    /// Holds at most `capacity` changes, starting after `serial`.
    pub fn new(capacity: usize, serial: i64) -> Self {
        Self {
            changes: VecDeque::new(),
            capacity: capacity.max(1),
            forgotten_through: serial,
        }
    }

    /// Starts over after `serial` (a new active set was installed).
    pub fn restart(&mut self, serial: i64) {
        self.changes.clear();
        self.forgotten_through = serial;
    }

    /// Keeps `batch`, dropping the oldest changes beyond the capacity.
    pub fn extend(&mut self, batch: &[Change]) {
        self.changes.extend(batch.iter().cloned());
        while self.changes.len() > self.capacity {
            if let Some(old) = self.changes.pop_front() {
                self.forgotten_through = old.serial;
            }
        }
    }

    /// Changes up to this serial can no longer be replayed.
    pub fn forgotten_through(&self) -> i64 {
        self.forgotten_through
    }

    /// At most `limit` changes after `serial`, in order; `None` when some of
    /// them are no longer held.
    pub fn after(&self, serial: i64, limit: usize) -> Option<Vec<Change>> {
        if serial < self.forgotten_through {
            return None;
        }
        let start = self.changes.partition_point(|c| c.serial <= serial);
        Some(self.changes.range(start..).take(limit).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lookup::{change::Op, entry::tests::entry};

    fn change(serial: i64) -> Change {
        Change {
            serial,
            op: Op::Announce,
            prefix: "10.0.0.0/8".parse().unwrap(),
            entry: entry(serial as u128, 0, 86_400, &[]),
        }
    }

    fn serials(changes: Option<Vec<Change>>) -> Option<Vec<i64>> {
        changes.map(|cs| cs.iter().map(|c| c.serial).collect())
    }

    #[test]
    fn replays_what_it_holds_and_refuses_what_it_dropped() {
        let mut journal = Journal::new(3, 10);
        assert_eq!(serials(journal.after(10, 100)), Some(vec![]), "nothing yet");
        assert_eq!(serials(journal.after(9, 100)), None, "before the start");
        journal.extend(&[change(11), change(12)]);
        journal.extend(&[change(14)]);
        assert_eq!(serials(journal.after(10, 100)), Some(vec![11, 12, 14]));
        assert_eq!(serials(journal.after(12, 100)), Some(vec![14]));
        assert_eq!(serials(journal.after(10, 2)), Some(vec![11, 12]), "limited");
        journal.extend(&[change(15)]);
        assert_eq!(journal.forgotten_through(), 11);
        assert_eq!(serials(journal.after(10, 100)), None, "11 was dropped");
        assert_eq!(serials(journal.after(11, 100)), Some(vec![12, 14, 15]));
        journal.restart(20);
        assert_eq!(serials(journal.after(15, 100)), None);
        assert_eq!(serials(journal.after(20, 100)), Some(vec![]));
    }
}
