//! Admission of change streams: a cap on how many one replica serves at
//! once, and counts of why the server ended or refused them (for metrics).

use std::sync::{
    Arc,
    atomic::{AtomicU64, AtomicUsize, Ordering},
};

/// Counts watchers, refuses more than a cap, and counts why streams ended.
#[derive(Clone)]
pub struct Watchers {
    shared: Arc<Counts>,
    max: usize,
}

#[derive(Default)]
struct Counts {
    open: AtomicUsize,
    /// Streams ended by the server or refused, by [`Dropped`] (its order).
    dropped: [AtomicU64; Dropped::ALL.len()],
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

/// One watcher's place under the cap, given back when its stream ends.
pub struct Slot(Arc<Counts>);

impl Slot {
    /// Counts why the server ended this watcher's stream.
    pub fn ended(&self, why: Dropped) {
        self.0.count(why);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Counts {
    fn count(&self, why: Dropped) {
        self.dropped[why as usize].fetch_add(1, Ordering::Relaxed);
    }
}

impl Watchers {
    pub fn new(max: usize) -> Self {
        Self {
            shared: Arc::default(),
            max,
        }
    }

    /// A place for one more watcher, if the cap allows.
    pub fn admit(&self) -> Option<Slot> {
        let before = self.shared.open.fetch_add(1, Ordering::Relaxed);
        let slot = Slot(self.shared.clone());
        if before >= self.max {
            self.shared.count(Dropped::OverCapacity);
            return None;
        }
        Some(slot)
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
