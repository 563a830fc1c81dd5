//! Keeps the kernel's sets equal to the held set. At start it adopts what
//! the kernel already holds and changes only what differs (a restart never
//! empties a set); deltas change only the regions they touch, in one
//! transaction; a reset replaces the sets' contents in one transaction;
//! and a periodic comparison repairs what was changed behind its back.
//! Nothing here ever flushes a set on an error: a failed change leaves the
//! last good contents, and the next pass repairs.

use std::collections::BTreeSet;
use std::fmt;

use ipnet::IpNet;

use super::kernel::{Kernel, NftError};
use super::layout::{Diff, Family, Layout, SetKind};
use crate::config::NftConfig;
use crate::follow::Follower;
use crate::health::OnStale;
use crate::set::{ActiveSet, Position};

/// Seconds an expiry read back from the kernel may differ from ours.
const EXPIRY_TOLERANCE: i64 = 30;

/// The kernel side of the agent.
pub struct Enforcer {
    kernel: Kernel,
    /// What the kernel should hold.
    layout: Layout,
    /// The follower's position `layout` is at.
    position: Position,
    /// A change failed: compare and repair at the next pass.
    damaged: bool,
    /// What the kernel holds instead of `layout` while out of contact for
    /// too long under `--on-stale open` or `closed`.
    fallback: Option<Layout>,
}

/// What a pass must do to the kernel: decided from the follower (under its
/// lock), then done without holding it, so the stream is never held up by
/// kernel work.
#[derive(Debug)]
pub enum Plan {
    Nothing,
    /// Deltas: these elements out and in; when the announcements among
    /// them were committed in the registry (Unix microseconds).
    Apply(Box<Diff>, Vec<i64>),
    /// A reset: the sets' contents replaced by the layout.
    Replace,
    /// After a failure: compare with the kernel and repair.
    Repair,
}

/// One set compared: counts and digests, never a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetReport {
    pub set: String,
    pub expected: (usize, String),
    pub kernel: (usize, String),
}

/// The comparison of all six sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub sets: Vec<SetReport>,
    /// Elements to take out or put in to make the kernel right.
    pub differences: usize,
}

impl Report {
    pub fn matches(&self) -> bool {
        self.differences == 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.sets {
            let mark = if s.expected == s.kernel { "ok" } else { "DIFFERS" };
            writeln!(
                f,
                "{:<24} expected {:>9} {}  kernel {:>9} {}  {mark}",
                s.set, s.expected.0, s.expected.1, s.kernel.0, s.kernel.1
            )?;
        }
        write!(f, "{} element(s) differ", self.differences)
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Enforcer {
    /// Opens the sets (creating them if missing) and makes them hold
    /// `held`, changing only what differs from what they hold now.
    pub fn start(config: &NftConfig, held: &ActiveSet) -> Result<Self, NftError> {
        let kernel = Kernel::open(config.target.clone(), config.netns.as_deref())?;
        let mut enforcer = Enforcer {
            kernel,
            layout: Layout::of(held),
            position: held.position.clone(),
            damaged: true,
            fallback: None,
        };
        enforcer.repair()?;
        Ok(enforcer)
    }

    /// For comparing only: reads the kernel, creates and changes nothing.
    pub fn attach(config: &NftConfig, held: &ActiveSet) -> Result<Self, NftError> {
        Ok(Enforcer {
            kernel: Kernel::connect(config.target.clone(), config.netns.as_deref())?,
            layout: Layout::of(held),
            position: held.position.clone(),
            damaged: false,
            fallback: None,
        })
    }

    /// What it takes to bring the kernel up to the follower: the changes
    /// since the last pass, or (after a reset, or when the journal no
    /// longer reaches back) the whole set. The layout moves to the
    /// follower's position now; [`Enforcer::execute`] changes the kernel.
    pub fn plan(&mut self, follower: &Follower) -> Plan {
        let held = &follower.held;
        if held.position == self.position && !self.damaged {
            return Plan::Nothing;
        }
        if self.damaged {
            self.layout = Layout::of(held);
            self.position = held.position.clone();
            return Plan::Repair;
        }
        match follower.changes_since(&self.position.session, self.position.serial) {
            Some(changes) => {
                let regions: BTreeSet<IpNet> = changes.iter().map(|c| held.region(c.entry.prefix)).collect();
                let mut diff = Diff::default();
                for region in widest(regions) {
                    diff.merge(self.layout.refresh(held, region));
                }
                self.position = held.position.clone();
                tracing::debug!(
                    changes = changes.len(),
                    elements = diff.len(),
                    "applying deltas to the sets"
                );
                let announced = changes.iter().filter_map(|c| c.announced_at).collect();
                Plan::Apply(Box::new(diff), announced)
            }
            None => {
                self.layout = Layout::of(held);
                self.position = held.position.clone();
                tracing::info!(elements = self.layout.len(), "replacing the sets' contents (a reset)");
                Plan::Replace
            }
        }
    }

    /// Changes the kernel as planned, each change one transaction. While a
    /// fallback holds the sets, the layout follows the stream but the
    /// kernel is left alone until the fallback ends.
    pub fn execute(&mut self, plan: Plan) -> Result<(), NftError> {
        if self.fallback.is_some() && !matches!(plan, Plan::Repair) {
            return Ok(());
        }
        let result = match plan {
            Plan::Nothing => return Ok(()),
            Plan::Repair => return self.repair().map(|_| ()),
            Plan::Apply(diff, _) => self.kernel.apply(&diff.remove, &diff.add, false, now()),
            Plan::Replace => self.kernel.apply(&Layout::default(), &self.layout, true, now()),
        };
        self.finish(result)
    }

    /// Whether the sets hold what `fallback` asks for already.
    pub fn has_fallback(&self, fallback: Option<OnStale>) -> bool {
        fallback_layout(fallback) == self.fallback
    }

    /// Under `--on-stale open` or `closed` (`Some`), replaces the sets'
    /// contents with every address or none, in one transaction; back in
    /// contact (`None`), with the held set.
    pub fn set_fallback(&mut self, fallback: Option<OnStale>) -> Result<(), NftError> {
        let wanted = fallback_layout(fallback);
        let result = self
            .kernel
            .apply(&Layout::default(), wanted.as_ref().unwrap_or(&self.layout), true, now());
        if result.is_ok() {
            match &wanted {
                Some(w) => tracing::warn!(
                    elements = w.len(),
                    policy = ?fallback,
                    "stale: the sets now hold the --on-stale fallback"
                ),
                None => tracing::info!(elements = self.layout.len(), "the sets hold the held set again"),
            }
            self.fallback = wanted;
        }
        self.finish(result)
    }

    /// Whether the sets were last brought to `position`.
    pub fn is_at(&self, position: &Position) -> bool {
        self.position == *position
    }

    /// Whether the kernel's last change succeeded.
    pub fn in_step(&self) -> bool {
        !self.damaged
    }

    /// Compares the kernel's sets with the expected set.
    pub fn verify(&mut self) -> Result<Report, NftError> {
        let (report, _) = self.compare()?;
        Ok(report)
    }

    /// Compares, and changes what differs (one transaction); if that is
    /// refused, replaces the sets' contents (one transaction). Answers how
    /// many elements differed.
    pub fn repair(&mut self) -> Result<usize, NftError> {
        if self.damaged {
            // Someone may have deleted the table or a set (`flush ruleset`
            // in a reloaded ruleset file): made again if missing.
            self.kernel.create()?;
        }
        let (report, diff) = self.compare()?;
        self.repair_diff(report, diff)
    }

    /// Something went wrong outside a change of ours (a listing failed):
    /// the next pass compares and repairs, making the sets again if
    /// they are gone.
    pub fn mark_damaged(&mut self) {
        self.damaged = true;
    }

    fn repair_diff(&mut self, report: Report, diff: Diff) -> Result<usize, NftError> {
        if report.matches() {
            self.damaged = false;
            return Ok(0);
        }
        tracing::warn!(
            differences = report.differences,
            "the kernel's sets differ from the expected set; repairing\n{report}"
        );
        let result = match self.kernel.apply(&diff.remove, &diff.add, false, now()) {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "repairing element by element was refused; replacing the sets' contents");
                let target = self.fallback.as_ref().unwrap_or(&self.layout);
                self.kernel.apply(&Layout::default(), target, true, now())
            }
        };
        self.finish(result).map(|()| report.differences)
    }

    fn finish(&mut self, result: Result<(), NftError>) -> Result<(), NftError> {
        match &result {
            Ok(()) => self.damaged = false,
            Err(e) => {
                self.damaged = true;
                tracing::error!(error = %e, "changing the kernel's sets failed; they keep their last contents until the next pass repairs them");
            }
        }
        result
    }

    /// Elements per set, as the kernel should hold them: (set name, count).
    pub fn sizes(&self) -> Vec<(String, usize)> {
        let target = self.kernel.target();
        let layout = self.fallback.as_ref().unwrap_or(&self.layout);
        SetKind::each()
            .map(|(f, k)| (target.set_name(k, f), layout.count(k, f)))
            .collect()
    }

    /// The ruleset's generation, as this enforcer's socket sees it.
    pub fn generation(&mut self) -> Result<u32, NftError> {
        self.kernel.generation()
    }

    /// [`Enforcer::repair`] from a listing read elsewhere (on another
    /// socket, while changes went on) at `generation`: compared and
    /// repaired only when no transaction happened since, so the listing is
    /// still what the kernel holds. `None`: the sets changed since; the
    /// listing is of no use.
    ///
    /// The listing is of one set (`family`, `kind`): one set at a time
    /// keeps a large gateway's listing small.
    pub fn repair_from(
        &mut self,
        kernel: Layout,
        generation: u32,
        family: Family,
        kind: SetKind,
    ) -> Result<Option<usize>, NftError> {
        if self.kernel.generation()? != generation || self.damaged {
            return Ok(None);
        }
        let (report, diff) = self.compare_with(kernel, |f, k| (f, k) == (family, kind));
        self.repair_diff(report, diff).map(Some)
    }

    /// All six sets compared, listed one at a time (a listing of all six
    /// at once would cost a large gateway tens of megabytes more).
    fn compare(&mut self) -> Result<(Report, Diff), NftError> {
        let mut report = Report {
            sets: Vec::new(),
            differences: 0,
        };
        let mut diff = Diff::default();
        for (family, kind) in SetKind::each() {
            let kernel = self.kernel.read_set(family, kind, now())?;
            let (one, d) = self.compare_with(kernel, |f, k| (f, k) == (family, kind));
            report.sets.extend(one.sets);
            report.differences += one.differences;
            diff.merge(d);
        }
        Ok((report, diff))
    }

    fn compare_with(&mut self, mut kernel: Layout, within: impl Fn(Family, SetKind) -> bool + Copy) -> (Report, Diff) {
        let now = now();
        // Compared in place, not copied (a million elements on a large
        // gateway): what lapsed is gone from the kernel and the layout alike.
        self.layout.prune_expired(now);
        if let Some(fallback) = &mut self.fallback {
            fallback.prune_expired(now);
        }
        let expected = self.fallback.as_ref().unwrap_or(&self.layout);
        kernel.align_expiries(expected, EXPIRY_TOLERANCE);
        let diff = kernel.diff_to_in(expected, within);
        let target = self.kernel.target();
        let sets = SetKind::each()
            .filter(|(f, k)| within(*f, *k))
            .map(|(f, k)| SetReport {
                set: target.set_name(k, f),
                expected: expected.summary(k, f),
                kernel: kernel.summary(k, f),
            })
            .collect();
        (
            Report {
                sets,
                differences: diff.len(),
            },
            diff,
        )
    }
}

/// What the sets hold instead of the held set under a stale policy.
fn fallback_layout(fallback: Option<OnStale>) -> Option<Layout> {
    match fallback {
        None | Some(OnStale::Hold) => None,
        Some(OnStale::Open) => Some(Layout::everything()),
        Some(OnStale::Closed) => Some(Layout::default()),
    }
}

/// The regions that are not inside another of them. In prefix order a
/// region comes after the one containing it, and nothing that is not
/// inside it comes between them (prefixes nest or are disjoint).
fn widest(regions: BTreeSet<IpNet>) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = Vec::new();
    for r in regions {
        if !out.last().is_some_and(|w| w.contains(&r)) {
            out.push(r);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_outermost_regions_are_recomputed() {
        let nets: BTreeSet<IpNet> = [
            "10.0.0.0/8",
            "10.1.0.0/16",
            "10.1.2.0/24",
            "11.0.0.0/24",
            "2001:db8::/32",
            "2001:db8:1::/48",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let kept: Vec<String> = widest(nets).iter().map(|n| n.to_string()).collect();
        assert_eq!(kept, ["10.0.0.0/8", "11.0.0.0/24", "2001:db8::/32"]);
    }
}
