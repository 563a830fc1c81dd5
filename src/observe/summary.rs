//! What busy replicas log instead of one line per lookup: every interval, the
//! number of lookups by status code and their latency quantiles, counted
//! lock-free in the buckets of the latency histogram.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::watch;

use super::metrics::{CODE_NAMES, LATENCY_BUCKETS};

/// Lookup calls since the last summary.
#[derive(Default)]
pub struct LookupSummary {
    by_code: [AtomicU64; 17],
    /// Calls per latency bucket; the last counts those above every bound.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    max_us: AtomicU64,
}

/// One interval's figures.
#[derive(Debug, PartialEq)]
pub struct Interval {
    pub calls: u64,
    pub by_code: Vec<(&'static str, u64)>,
    /// Upper bounds (seconds) of the buckets holding the 50th, 90th and
    /// 99th percentiles; infinite above the largest bound.
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: Duration,
}

impl LookupSummary {
    pub fn record(&self, code: i32, latency: Duration) {
        let code = usize::try_from(code).ok().filter(|&c| c < 17).unwrap_or(2);
        self.by_code[code].fetch_add(1, Relaxed);
        let seconds = latency.as_secs_f64();
        let bucket = LATENCY_BUCKETS.partition_point(|&bound| bound < seconds);
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.max_us
            .fetch_max(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    /// The figures since the last call, and a fresh start.
    pub fn take(&self) -> Interval {
        let by_code: Vec<(&'static str, u64)> = self
            .by_code
            .iter()
            .zip(CODE_NAMES)
            .map(|(n, name)| (name, n.swap(0, Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let buckets: Vec<u64> = self.buckets.iter().map(|b| b.swap(0, Relaxed)).collect();
        let calls: u64 = buckets.iter().sum();
        // 0 when there were no calls (no bucket reaches rank 1).
        let quantile = |q: f64| {
            let rank = (q * calls as f64).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, n) in buckets.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
                }
            }
            0.0
        };
        Interval {
            calls,
            by_code,
            p50: quantile(0.5),
            p90: quantile(0.9),
            p99: quantile(0.99),
            max: Duration::from_micros(self.max_us.swap(0, Relaxed)),
        }
    }

    /// Logs a summary every `every` (when there were lookups) until
    /// `stopping`, and what the last interval had when it stops.
    pub async fn log_every(&self, every: Duration, mut stopping: watch::Receiver<bool>) {
        loop {
            let stop = tokio::select! {
                () = tokio::time::sleep(every) => false,
                _ = stopping.changed() => true,
            };
            // The last interval too, when the server stops.
            self.log(every);
            if stop {
                return;
            }
        }
    }

    /// Logs what was summed up since the last time, if anything.
    fn log(&self, every: Duration) {
        let s = self.take();
        if s.calls == 0 {
            return;
        }
        let codes: Vec<String> = s.by_code.iter().map(|(c, n)| format!("{c}={n}")).collect();
        tracing::info!(
            target: "vpn_registry::access",
            interval_secs = every.as_secs_f64(),
            calls = s.calls,
            codes = %codes.join(","),
            p50_le_ms = s.p50 * 1e3,
            p90_le_ms = s.p90 * 1e3,
            p99_le_ms = s.p99 * 1e3,
            max_ms = s.max.as_secs_f64() * 1e3,
            "lookup summary"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_the_bounds_of_the_buckets_holding_them() {
        let s = LookupSummary::default();
        for _ in 0..98 {
            s.record(0, Duration::from_micros(30));
        }
        s.record(5, Duration::from_micros(700));
        s.record(0, Duration::from_secs(20));
        let i = s.take();
        assert_eq!(i.calls, 100);
        assert_eq!(i.by_code, vec![("OK", 99), ("NotFound", 1)]);
        assert_eq!((i.p50, i.p90), (0.000_05, 0.000_05));
        assert_eq!(i.p99, 0.001);
        assert_eq!(i.max, Duration::from_secs(20));
        let empty = s.take();
        assert_eq!((empty.calls, empty.p99), (0, 0.0), "taking starts a fresh interval");
    }
}
