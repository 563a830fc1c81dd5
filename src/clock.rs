//! The wall clock as the server reads it for what it decides in memory (a
//! token's expiry), with an offset that tests move forward instead of
//! sleeping until a token expires. Production never moves it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// The real time, plus however far it was advanced (shared by clones).
#[derive(Debug, Clone, Default)]
pub struct Clock {
    ahead_us: Arc<AtomicI64>,
}

impl Clock {
    /// Microseconds since the epoch.
    pub fn now_us(&self) -> i64 {
        self.read().1
    }

    /// The real time and this clock's, in microseconds since the epoch,
    /// from one reading (for what must not move with the test clock, such
    /// as how long ago credentials were refreshed).
    pub fn read(&self) -> (i64, i64) {
        // SystemTime rather than OffsetDateTime: every call reads this, and
        // it needs no calendar.
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let real = i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX);
        (real, real + self.ahead_us.load(Ordering::Relaxed))
    }

    /// Moves this clock (and its clones) `by` into the future.
    pub fn advance(&self, by: Duration) {
        let us = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.ahead_us.fetch_add(us, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_advanced_clock_and_its_clones_run_ahead_by_that_much() {
        let clock = Clock::default();
        let clone = clock.clone();
        let before = clock.now_us();
        clock.advance(Duration::from_secs(3600));
        let after = clone.now_us();
        assert!(
            (3_600_000_000..3_601_000_000).contains(&(after - before)),
            "{}",
            after - before
        );
    }
}
