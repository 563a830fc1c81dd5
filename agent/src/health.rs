//! Whether the agent can vouch for what it enforces: in contact with an
//! upstream (or out of contact for less than `--max-stale`), holding a
//! set, the kernel's sets in step with it. `/readyz`, the stale alarm and
//! `--on-stale` all read this one place.
//!
//! The moment of last contact is kept in the state directory, so a restart
//! (or a crash loop) during an outage does not restart the stale clock:
//! stale data is never served forever because the agent kept restarting.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use crate::nft::enforce::now;
use crate::state::write_atomically;

/// The file in `--state-dir` holding the last contact, in Unix seconds.
pub const CONTACT_FILE: &str = "contact";

/// What the kernel's sets hold once the upstream has been out of reach for
/// `--max-stale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStale {
    /// The last good set, its entries still lapsing at their `valid_until`.
    #[default]
    Hold,
    /// Every address counts as registered: the gateway lets all traffic
    /// through rather than enforce a set it can no longer vouch for.
    Open,
    /// No address counts as registered: the sets are emptied.
    Closed,
}

/// Shared by the stream, the kernel thread and the HTTP endpoints.
#[derive(Debug)]
pub struct Health {
    state_dir: PathBuf,
    max_stale: i64,
    connected: AtomicBool,
    /// Unix seconds.
    last_contact: AtomicI64,
    /// Whether the agent holds a set at all (from state or the upstream).
    holds_set: AtomicBool,
    /// Whether the kernel's sets hold what they should (true without them).
    kernel_in_step: AtomicBool,
    /// When the kernel's thread last went round (Unix seconds; 0: no
    /// such thread): what the systemd watchdog checks.
    heartbeat: AtomicI64,
}

impl Health {
    /// The last contact as saved in `state_dir`, or now when none was.
    pub fn new(state_dir: &Path, max_stale: std::time::Duration, holds_set: bool, kernel: bool) -> Self {
        let saved = std::fs::read_to_string(state_dir.join(CONTACT_FILE))
            .ok()
            .and_then(|t| t.trim().parse().ok());
        Self {
            state_dir: state_dir.to_owned(),
            max_stale: max_stale.as_secs().try_into().unwrap_or(i64::MAX),
            connected: AtomicBool::new(false),
            last_contact: AtomicI64::new(saved.unwrap_or_else(now)),
            holds_set: AtomicBool::new(holds_set),
            kernel_in_step: AtomicBool::new(!kernel),
            heartbeat: AtomicI64::new(0),
        }
    }

    /// The kernel's thread went round.
    pub fn beat(&self) {
        self.heartbeat.store(now(), Ordering::Release);
    }

    /// Whether the agent is alive: its kernel thread (if any) went round
    /// within `limit` seconds. A stuck netlink call stops the watchdog's
    /// pings, and systemd restarts the agent.
    pub fn alive(&self, now: i64, limit: i64) -> bool {
        let beat = self.heartbeat.load(Ordering::Acquire);
        beat == 0 || now - beat <= limit
    }

    /// A stream is established (and kept alive by HTTP/2 pings while it
    /// lasts): in contact from now on.
    pub fn connected(&self) {
        self.connected.store(true, Ordering::Release);
        self.touch();
    }

    /// The stream broke: the clock starts now.
    pub fn disconnected(&self) {
        if self.connected.swap(false, Ordering::AcqRel) {
            self.touch();
        }
    }

    /// While connected, saves "now" as the last contact (called now and
    /// then, so a crash loses at most that much of the clock).
    pub fn touch(&self) {
        if !self.connected.load(Ordering::Acquire) {
            return;
        }
        let now = now();
        self.last_contact.store(now, Ordering::Release);
        if let Err(e) = write_atomically(&self.state_dir.join(CONTACT_FILE), format!("{now}\n").as_bytes()) {
            tracing::warn!(error = %e, "saving the time of last contact failed");
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Zero while connected.
    pub fn seconds_since_contact(&self, now: i64) -> i64 {
        if self.is_connected() {
            0
        } else {
            (now - self.last_contact.load(Ordering::Acquire)).max(0)
        }
    }

    /// Out of contact for longer than `--max-stale`: the alarm.
    pub fn stale(&self, now: i64) -> bool {
        self.seconds_since_contact(now) > self.max_stale
    }

    pub fn set_holds_set(&self) {
        self.holds_set.store(true, Ordering::Release);
    }

    pub fn set_kernel_in_step(&self, in_step: bool) {
        self.kernel_in_step.store(in_step, Ordering::Release);
    }

    /// Ready, or why not (what `/readyz` answers).
    pub fn readiness(&self, now: i64) -> Result<(), String> {
        if !self.holds_set.load(Ordering::Acquire) {
            return Err("no set yet: no saved state and no snapshot from an upstream".into());
        }
        if self.stale(now) {
            return Err(format!(
                "stale: no upstream for {} s (--max-stale {} s)",
                self.seconds_since_contact(now),
                self.max_stale
            ));
        }
        if !self.kernel_in_step.load(Ordering::Acquire) {
            return Err("the kernel's sets are not in step with the held set (the next pass repairs them)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stale_clock_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("agent-health-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(CONTACT_FILE), format!("{}\n", now() - 100)).unwrap();
        let health = Health::new(&dir, std::time::Duration::from_secs(60), true, false);
        assert!(health.stale(now()), "100 s out of contact, before this process started");
        assert!(health.readiness(now()).unwrap_err().starts_with("stale"));
        health.connected();
        assert!(!health.stale(now()));
        assert_eq!(health.readiness(now()), Ok(()));
        health.disconnected();
        let restarted = Health::new(&dir, std::time::Duration::from_secs(60), true, false);
        assert!(restarted.seconds_since_contact(now()) <= 1, "the contact was saved");
        assert!(restarted.stale(now() + 61));
        let empty = Health::new(&dir, std::time::Duration::from_secs(60), false, false);
        assert!(empty.readiness(now()).unwrap_err().contains("no set"));
    }
}
