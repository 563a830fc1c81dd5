//! The registration workflow: what a command does to a registration, decided
//! from the registration as stored (read under its lock) and the validated
//! command. Each function is pure: it returns a [`Plan`] that the store
//! carries out in one transaction, or the [`Refusal`] the caller gets.

use time::OffsetDateTime;
use uuid::Uuid;

use super::audit::{Record, diff};
use super::identifiers::IspCode;
use super::institution::Category;
use super::lifecycle::{self, Event};
use super::prefix::PublicPrefix;
use super::refusal::Refusal;
use super::registration::{Registration, Revision, Spec, SpecPatch};
use super::state::{Action, ReasonCode, State};
use super::text::Reason;
use super::violations::Violations;

/// The writes one command makes, carried out in this order: the overlap
/// check, the revision, the registration, then the audit records.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Source prefixes that must not overlap another institution's active
    /// ones (the exclusion constraint would refuse them anyway; checking
    /// first names the applicant's prefix precisely).
    pub check_overlap: Option<Vec<PublicPrefix>>,
    pub revision: Option<RevisionWrite>,
    pub registration: RegistrationWrite,
    pub records: Vec<Record>,
}

/// A write to the registration's pending revision.
#[derive(Debug, Clone)]
pub enum RevisionWrite {
    /// A new revision (amendment or renewal), waiting for the ISP.
    Open {
        id: Uuid,
        spec: Spec,
        is_renewal: bool,
    },
    Update {
        id: Uuid,
        spec: Spec,
        state: State,
    },
}

/// A write to the registration itself; every write bumps its version.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant, reason = "one per command, never held in bulk")]
pub enum RegistrationWrite {
    Store {
        spec: Spec,
        state: State,
    },
    /// Only the version (the change was to the pending revision).
    Touch,
}

impl Plan {
    fn new(registration: RegistrationWrite) -> Self {
        Self {
            check_overlap: None,
            revision: None,
            registration,
            records: Vec::new(),
        }
    }
}

/// A new submission: the declaration, checked against the applicant's
/// category, and the record of its submission. It goes straight to the ISP.
pub fn submit(spec: &Spec) -> Record {
    Record {
        changes: diff(None, &spec.audit_values()),
        ..Record::transition(Action::Submitted, Some(State::Submitted), lifecycle::INITIAL)
    }
}

/// The pending revision commands act on: only a live (ACTIVE or EXPIRED)
/// registration's revision is in play.
fn live_revision(current: &Registration) -> Option<&Revision> {
    current.pending_revision.as_ref().filter(|_| current.state.is_live())
}

/// Whether `event` may happen now to a registration in `state` whose pending
/// revision, if any, is in `revision`, by the rules the plans here apply:
/// review events and withdrawals act on a live registration's revision, an
/// ACTIVE registration is amended through a new revision, everything else
/// moves the registration along the lifecycle. (Pages use it to offer only
/// what would be accepted; the plans remain the authority.)
pub fn allows(state: State, revision: Option<State>, event: Event) -> bool {
    match (event, revision.filter(|_| state.is_live())) {
        (Event::Amend { .. }, None) => state == State::Active || lifecycle::next(state, event).is_ok(),
        (event, Some(revision)) if event.reviews_revision() => lifecycle::next(revision, event).is_ok(),
        (event, _) => lifecycle::next(state, event).is_ok(),
    }
}

/// Changes what the applicant declared. An undecided registration changes in
/// place (and goes back to the ISP when attested fields changed); an ACTIVE
/// one gets (or updates) a pending revision while it stays in force.
pub fn amend(
    current: &Registration,
    category: Category,
    patch: &SpecPatch,
    now: OffsetDateTime,
) -> Result<Plan, Refusal> {
    let pending = live_revision(current);
    let base = pending.map_or(&current.spec, |r| &r.spec);
    let revision_allowed = current.state == State::Active || pending.is_some();
    if !current.state.is_undecided() && !revision_allowed {
        return Err(lifecycle::Illegal {
            current: current.state,
            event: Event::Amend { reattest: false },
        }
        .into());
    }
    let spec = patch.apply(base, category, now).map_err(|v| v.nested("registration"))?;
    let reattest = base.needs_reattestation(&spec);
    let changes = diff(Some(&base.audit_values()), &spec.audit_values());
    let check_overlap = Some(spec.source_prefixes.clone());
    let mut plan = if let Some(revision) = pending {
        let to = lifecycle::next(revision.state, Event::Amend { reattest })?;
        let mut plan = Plan::new(RegistrationWrite::Touch);
        plan.revision = Some(RevisionWrite::Update {
            id: revision.id,
            spec,
            state: to,
        });
        plan.records.push(Record {
            revision_id: Some(revision.id),
            changes,
            ..Record::transition(Action::Amended, Some(revision.state), to)
        });
        plan
    } else if current.state == State::Active {
        let id = Uuid::now_v7();
        let mut plan = Plan::new(RegistrationWrite::Touch);
        plan.revision = Some(RevisionWrite::Open {
            id,
            spec,
            is_renewal: false,
        });
        plan.records.push(Record {
            revision_id: Some(id),
            changes,
            ..Record::transition(Action::RevisionProposed, None, State::IspVerification)
        });
        plan
    } else {
        let to = lifecycle::next(current.state, Event::Amend { reattest })?;
        let mut plan = Plan::new(RegistrationWrite::Store { spec, state: to });
        plan.records.push(Record {
            changes,
            ..Record::transition(Action::Amended, Some(current.state), to)
        });
        plan
    };
    plan.check_overlap = check_overlap;
    Ok(plan)
}

/// Withdraws an undecided registration, or the pending revision of an
/// ACTIVE or EXPIRED one, at the applicant's request.
pub fn withdraw(current: &Registration, reason: Option<Reason>) -> Result<Plan, Refusal> {
    let mut plan = match live_revision(current) {
        Some(revision) => {
            let to = lifecycle::next(revision.state, Event::Withdraw)?;
            let mut plan = Plan::new(RegistrationWrite::Touch);
            plan.revision = Some(RevisionWrite::Update {
                id: revision.id,
                spec: revision.spec.clone(),
                state: to,
            });
            plan.records.push(Record {
                revision_id: Some(revision.id),
                ..Record::transition(Action::Withdrawn, Some(revision.state), to)
            });
            plan
        }
        None => {
            let to = lifecycle::next(current.state, Event::Withdraw)?;
            let mut plan = Plan::new(RegistrationWrite::Store {
                spec: current.spec.clone(),
                state: to,
            });
            plan.records
                .push(Record::transition(Action::Withdrawn, Some(current.state), to));
            plan
        }
    };
    plan.records[0].reason = reason;
    Ok(plan)
}

/// Why a registration in `state` (with a pending revision in `revision`)
/// cannot be renewed now; `None`: it can. Only an ACTIVE or EXPIRED one
/// without a change under way can.
pub fn renewal_refused(state: State, revision: Option<State>) -> Option<Refusal> {
    if !state.is_live() {
        return Some(Refusal::WrongState {
            current: state,
            action: "renewed",
        });
    }
    revision.map(|_| Refusal::RevisionPending)
}

/// Asks to extend an ACTIVE or EXPIRED registration to `valid_until`; the
/// renewal is a revision, attested and reviewed like a submission.
pub fn renew(current: &Registration, valid_until: OffsetDateTime, now: OffsetDateTime) -> Result<Plan, Refusal> {
    let revision = current.pending_revision.as_ref().map(|r| r.state);
    if let Some(refusal) = renewal_refused(current.state, revision) {
        return Err(refusal);
    }
    if valid_until <= current.spec.valid_until || valid_until <= now {
        return Err(Violations::one(
            "valid_until",
            "must be later than the current valid_until and in the future",
        )
        .into());
    }
    let mut spec = current.spec.clone();
    spec.valid_until = valid_until;
    let id = Uuid::now_v7();
    let mut plan = Plan::new(RegistrationWrite::Touch);
    plan.records.push(Record {
        revision_id: Some(id),
        changes: diff(Some(&current.spec.audit_values()), &spec.audit_values()),
        ..Record::transition(Action::RenewalRequested, None, State::IspVerification)
    });
    plan.revision = Some(RevisionWrite::Open {
        id,
        spec,
        is_renewal: true,
    });
    Ok(plan)
}

/// What a reviewer may adjust when approving.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApproveOptions {
    /// End validity earlier than requested.
    pub valid_until: Option<OffsetDateTime>,
    /// Accept justified prefixes beyond the default size limits.
    pub override_size_limits: bool,
}

/// A decision as taken, by a reviewer (one of `decision::Decision`) or an
/// ISP (its attestation): the event, why, and an approval's options.
#[derive(Debug, Clone)]
pub struct Ruling {
    pub event: Event,
    pub reason_code: Option<ReasonCode>,
    pub reason: Option<Reason>,
    pub approve: ApproveOptions,
}

impl Ruling {
    fn action(&self) -> Action {
        match self.event {
            Event::Attest { confirmed: true } => Action::Attested,
            Event::Attest { confirmed: false } => Action::AttestationDenied,
            Event::Approve => Action::Approved,
            Event::Reject => Action::Rejected,
            Event::RequestInformation => Action::InformationRequested,
            Event::Amend { .. } => Action::Amended,
            Event::Withdraw => Action::Withdrawn,
            Event::Suspend => Action::Suspended,
            Event::Reinstate => Action::Reinstated,
            Event::Revoke => Action::Revoked,
            Event::Expire => Action::Expired,
        }
    }
}

/// The registration or pending revision `decision` acts on.
fn decided_revision<'r>(current: &'r Registration, decision: &Ruling) -> Option<&'r Revision> {
    live_revision(current).filter(|_| decision.event.reviews_revision())
}

/// An ISP decides only on what names it: anything else does not exist for it.
pub fn check_isp_scope(current: &Registration, decision: &Ruling, isp: &IspCode) -> Result<(), Refusal> {
    let target = decided_revision(current, decision).map_or(&current.spec, |r| &r.spec);
    if &target.isp == isp {
        Ok(())
    } else {
        Err(Refusal::NotFound("registration"))
    }
}

/// Applies `decision` to a registration, or to its pending revision for
/// review decisions on an ACTIVE or EXPIRED registration.
pub fn decide(current: &Registration, decision: &Ruling, now: OffsetDateTime) -> Result<Plan, Refusal> {
    let revision = decided_revision(current, decision);
    let target = revision.map_or(&current.spec, |r| &r.spec);
    let from = revision.map_or(current.state, |r| r.state);
    let to = lifecycle::next(from, decision.event)?;
    let mut spec = target.clone();
    if decision.event == Event::Approve {
        apply_approval(&mut spec, decision.approve, now)?;
    }
    let record = Record {
        revision_id: revision.map(|r| r.id),
        reason_code: decision.reason_code,
        reason: decision.reason.clone(),
        changes: diff(Some(&target.audit_values()), &spec.audit_values()),
        ..Record::transition(decision.action(), Some(from), to)
    };
    let check_overlap = (to == State::Active).then(|| spec.source_prefixes.clone());
    let mut plan = match revision {
        // The reviewed revision replaces the version in force; an EXPIRED
        // registration comes back through its renewal.
        Some(revision) => {
            let mut plan = Plan::new(if to == State::Active {
                RegistrationWrite::Store {
                    spec: spec.clone(),
                    state: State::Active,
                }
            } else {
                RegistrationWrite::Touch
            });
            plan.revision = Some(RevisionWrite::Update {
                id: revision.id,
                spec,
                state: to,
            });
            plan
        }
        None => {
            let mut plan = Plan::new(RegistrationWrite::Store { spec, state: to });
            if decision.event == Event::Revoke
                && let Some(pending) = &current.pending_revision
            {
                plan.revision = Some(RevisionWrite::Update {
                    id: pending.id,
                    spec: pending.spec.clone(),
                    state: State::Withdrawn,
                });
                plan.records.push(Record {
                    revision_id: Some(pending.id),
                    reason: decision.reason.clone(),
                    ..Record::transition(Action::RevisionDiscarded, Some(pending.state), State::Withdrawn)
                });
            }
            plan
        }
    };
    plan.check_overlap = check_overlap;
    plan.records.push(record);
    Ok(plan)
}

/// Validity may only be shortened at approval, and large prefixes need the
/// reviewer's explicit override.
fn apply_approval(spec: &mut Spec, options: ApproveOptions, now: OffsetDateTime) -> Result<(), Refusal> {
    if let Some(until) = options.valid_until {
        if until > spec.valid_until {
            return Err(Violations::one("valid_until", "may shorten the requested validity, not extend it").into());
        }
        if until <= spec.valid_from || until <= now {
            return Err(Violations::one("valid_until", "must be in the future and after valid_from").into());
        }
        spec.valid_until = until;
    }
    if let Some(large) = spec.oversized_prefix()
        && !options.override_size_limits
    {
        return Err(Refusal::Precondition {
            kind: "PREFIX_SIZE",
            subject: large.to_string(),
            message: format!(
                "{large} is larger than the default limits; approve with override_size_limits to accept it"
            ),
        });
    }
    Ok(())
}

/// The record of an ACTIVE registration's expiry: its validity ended, or
/// (`validity_ended` false) its institution's required PSEB registration.
pub fn expiry(validity_ended: bool) -> Record {
    let (code, reason) = if validity_ended {
        (ReasonCode::ValidityEnded, "validity period ended")
    } else {
        (
            ReasonCode::LicenceExpired,
            "the institution's PSEB registration expired",
        )
    };
    Record {
        reason_code: Some(code),
        reason: reason.parse().ok(),
        ..Record::transition(Action::Expired, Some(State::Active), State::Expired)
    }
}

#[cfg(test)]
mod spec;
