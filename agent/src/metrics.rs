//! The agent's Prometheus metrics. One registry per agent (not a process
//! global), so several agents in one process (the tests) keep theirs apart.
//! Counters and histograms are fed where things happen; gauges that only
//! describe the present (serial, contact, readiness) are read when scraped.

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::health::Health;
use crate::nft::enforce::now;

/// Labels of a per-set gauge: `set="registered_hosts4"`.
type SetLabel = Vec<(&'static str, String)>;

/// Everything the agent reports, under `vpn_registry_agent_`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    serial: Gauge,
    entries: Gauge,
    connected: Gauge,
    seconds_since_contact: Gauge,
    stale: Gauge,
    ready: Gauge,
    /// Registry commit of an announcement -> the agent holding it.
    pub upstream_lag: Histogram,
    /// Registry commit of an announcement -> the element in the kernel.
    pub commit_to_kernel: Histogram,
    /// One kernel transaction (deltas, a replacement or a repair).
    pub apply_duration: Histogram,
    pub apply_failures: Counter,
    pub resets: Counter,
    pub stream_breaks: Counter,
    elements: Family<SetLabel, Gauge>,
    holding: Family<Vec<(&'static str, &'static str)>, Gauge>,
    /// Elements that differed at the last comparison with the kernel.
    pub verify_differences: Gauge,
    pub verify_runs: Counter,
    /// Listings of the sets that changes overtook (read again later).
    pub verify_overtaken: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("vpn_registry_agent");
        // 1 ms to about 65 s.
        let latency = || Histogram::new(exponential_buckets(0.001, 2.0, 17));
        let m = Self {
            serial: Gauge::default(),
            entries: Gauge::default(),
            connected: Gauge::default(),
            seconds_since_contact: Gauge::default(),
            stale: Gauge::default(),
            ready: Gauge::default(),
            upstream_lag: latency(),
            commit_to_kernel: latency(),
            apply_duration: latency(),
            apply_failures: Counter::default(),
            resets: Counter::default(),
            stream_breaks: Counter::default(),
            elements: Family::default(),
            holding: Family::default(),
            verify_differences: Gauge::default(),
            verify_runs: Counter::default(),
            verify_overtaken: Counter::default(),
            registry: Registry::default(),
        };
        registry.register("serial", "The feed serial of the held set", m.serial.clone());
        registry.register("entries", "Entries held (registration, prefix)", m.entries.clone());
        registry.register(
            "upstream_connected",
            "1 while a change stream is established",
            m.connected.clone(),
        );
        registry.register(
            "seconds_since_last_contact",
            "Seconds since an upstream was last in contact (0 while connected)",
            m.seconds_since_contact.clone(),
        );
        registry.register(
            "stale",
            "1 when out of contact for longer than --max-stale (the alarm)",
            m.stale.clone(),
        );
        registry.register("ready", "1 when /readyz answers 200", m.ready.clone());
        registry.register(
            "upstream_lag_seconds",
            "From an announcement's commit in the registry to the agent holding it",
            m.upstream_lag.clone(),
        );
        registry.register(
            "commit_to_kernel_seconds",
            "From an announcement's commit in the registry to its element in the kernel's set",
            m.commit_to_kernel.clone(),
        );
        registry.register(
            "apply_duration_seconds",
            "One transaction on the kernel's sets",
            m.apply_duration.clone(),
        );
        registry.register(
            "apply_failures",
            "Kernel transactions refused (the sets keep their last contents)",
            m.apply_failures.clone(),
        );
        registry.register(
            "resets",
            "Resets from the upstream (each followed by a full snapshot)",
            m.resets.clone(),
        );
        registry.register("stream_breaks", "Change streams lost", m.stream_breaks.clone());
        registry.register("set_elements", "Elements per kernel set", m.elements.clone());
        registry.register(
            "sets_holding",
            "What the kernel's sets hold (1 for the one in force): the registry's set, the last good one (stale, --on-stale hold), everything (open) or nothing (closed)",
            m.holding.clone(),
        );
        registry.register(
            "verify_differences",
            "Elements that differed at the last comparison of the kernel's sets",
            m.verify_differences.clone(),
        );
        registry.register(
            "verify_runs",
            "Comparisons of the kernel's sets with the expected set",
            m.verify_runs.clone(),
        );
        registry.register(
            "verify_overtaken",
            "Listings of the kernel's sets that changes overtook (listed again 10 s later)",
            m.verify_overtaken.clone(),
        );
        Self { registry, ..m }
    }

    /// After a kernel pass: what each set should now hold.
    pub fn set_elements(&self, sizes: &[(String, usize)]) {
        for (set, count) in sizes {
            self.elements
                .get_or_create(&vec![("set", set.clone())])
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
    }

    /// What the kernel's sets hold now: `registry`, `last_good`,
    /// `everything` or `nothing`.
    pub fn set_holding(&self, what: &'static str) {
        for other in ["registry", "last_good", "everything", "nothing"] {
            self.holding
                .get_or_create(&vec![("what", other)])
                .set((other == what).into());
        }
    }

    /// The text Prometheus scrapes, the present read from `health` and the
    /// held set's serial and size.
    pub fn render(&self, health: &Health, serial: i64, entries: usize) -> String {
        let now = now();
        self.serial.set(serial);
        self.entries.set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.connected.set(health.is_connected().into());
        self.seconds_since_contact.set(health.seconds_since_contact(now));
        self.stale.set(health.stale(now).into());
        self.ready.set(health.readiness(now).is_ok().into());
        let mut text = String::new();
        // Writing into a String does not fail.
        let _ = prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

/// Seconds from `at_us` (Unix microseconds) to now.
pub fn seconds_since(at_us: i64) -> f64 {
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    (now_us - at_us).max(0) as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_every_metric_the_issue_asks_for() {
        let m = Metrics::new();
        m.set_elements(&[("registered_hosts4".into(), 3)]);
        m.resets.inc();
        let dir = std::env::temp_dir();
        let health = Health::new(&dir, std::time::Duration::from_secs(86400), true, false);
        let text = m.render(&health, 42, 7);
        for line in [
            "vpn_registry_agent_serial 42",
            "vpn_registry_agent_entries 7",
            "vpn_registry_agent_set_elements{set=\"registered_hosts4\"} 3",
            "vpn_registry_agent_resets_total 1",
            "vpn_registry_agent_upstream_connected 0",
            "vpn_registry_agent_stale 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        for name in [
            "seconds_since_last_contact",
            "upstream_lag_seconds_bucket",
            "commit_to_kernel_seconds_bucket",
            "apply_duration_seconds_bucket",
            "verify_differences",
        ] {
            assert!(
                text.contains(&format!("vpn_registry_agent_{name}")),
                "{name} in\n{text}"
            );
        }
    }
}
