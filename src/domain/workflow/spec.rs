//! The workflow as a specification, checked without PostgreSQL: for every
//! registration state, every pending revision it could have (none, or one
//! waiting for the ISP, under review, or sent back for information) and
//! every command, what the planners do. [`ALLOWED`] lists every row that
//! yields a plan, with the plan's shape; every other combination must be
//! refused. The sweep runs over `State::ALL`, so a new state is covered the
//! day it is added (it is refused everything until rows say otherwise).

use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::*;
use crate::domain::decision::Decision;
use crate::domain::registration::{SpecDraft, SpecField};

use State::*;

/// Something an applicant, the ISP or a reviewer asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    /// Change the purpose (nothing the ISP vouched for).
    AmendPurpose,
    /// Change the source prefixes (the ISP must attest again).
    AmendPrefixes,
    Withdraw,
    Renew,
    Attest {
        confirmed: bool,
    },
    Decide(Decision),
}

/// Every command, in the table's order.
fn commands() -> Vec<Command> {
    let mut all = vec![
        Command::AmendPurpose,
        Command::AmendPrefixes,
        Command::Withdraw,
        Command::Renew,
        Command::Attest { confirmed: true },
        Command::Attest { confirmed: false },
    ];
    all.extend(Decision::ALL.map(Command::Decide));
    all
}

/// What a plan writes to the registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reg {
    /// Stored in this state.
    Stored(State),
    /// Only its version bumped (the change was to the revision).
    Touched,
}

/// What a plan writes to the pending revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rev {
    /// A new one, waiting for the ISP.
    Opened,
    Updated(State),
}

/// A plan, as far as the lifecycle goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape(Reg, Option<Rev>);

/// The registration moves to `s` (or stays in it).
const fn moves(s: State) -> Shape {
    Shape(Reg::Stored(s), None)
}

/// The pending revision moves to `s`; the version in force stays.
const fn revision(s: State) -> Shape {
    Shape(Reg::Touched, Some(Rev::Updated(s)))
}

/// A new revision opens; the version in force stays.
const OPENS: Shape = Shape(Reg::Touched, Some(Rev::Opened));
/// The approved revision replaces the version in force.
const SWAPS: Shape = Shape(Reg::Stored(Active), Some(Rev::Updated(Active)));
/// Revoked, and the pending revision discarded with it.
const REVOKES_AND_DISCARDS: Shape = Shape(Reg::Stored(Revoked), Some(Rev::Updated(Withdrawn)));

use Command::*;
use Decision::{Approve, Reinstate, Reject, RequestInformation, Revoke, Suspend};

const UNDER_REVIEW: Option<State> = Some(UnderReview);
const WITH_ISP: Option<State> = Some(IspVerification);
const NEEDS_INFO: Option<State> = Some(NeedsInfo);

/// Every (registration state, pending revision, command) that yields a
/// plan. Only an ACTIVE, EXPIRED or SUSPENDED registration can hold a
/// pending revision (a suspension leaves it waiting); for every other
/// state the revision-less rows stand for all (checked below).
const ALLOWED: &[(State, Option<State>, Command, Shape)] = &[
    // Before a decision: changed in place, withdrawn, attested, decided.
    (Submitted, None, AmendPurpose, moves(Submitted)),
    (Submitted, None, AmendPrefixes, moves(Submitted)),
    (Submitted, None, Withdraw, moves(Withdrawn)),
    (IspVerification, None, AmendPurpose, moves(IspVerification)),
    (IspVerification, None, AmendPrefixes, moves(IspVerification)),
    (IspVerification, None, Withdraw, moves(Withdrawn)),
    (IspVerification, None, Attest { confirmed: true }, moves(UnderReview)),
    (IspVerification, None, Attest { confirmed: false }, moves(Rejected)),
    (UnderReview, None, AmendPurpose, moves(UnderReview)),
    (UnderReview, None, AmendPrefixes, moves(IspVerification)),
    (UnderReview, None, Withdraw, moves(Withdrawn)),
    (UnderReview, None, Decide(Approve), moves(Active)),
    (UnderReview, None, Decide(Reject), moves(Rejected)),
    (UnderReview, None, Decide(RequestInformation), moves(NeedsInfo)),
    (NeedsInfo, None, AmendPurpose, moves(UnderReview)),
    (NeedsInfo, None, AmendPrefixes, moves(IspVerification)),
    (NeedsInfo, None, Withdraw, moves(Withdrawn)),
    // In force: changes and renewals as revisions; suspended, revoked.
    (Active, None, AmendPurpose, OPENS),
    (Active, None, AmendPrefixes, OPENS),
    (Active, None, Renew, OPENS),
    (Active, None, Decide(Suspend), moves(Suspended)),
    (Active, None, Decide(Revoke), moves(Revoked)),
    (Suspended, None, Decide(Reinstate), moves(Active)),
    (Suspended, None, Decide(Revoke), moves(Revoked)),
    (Expired, None, Renew, OPENS),
    // In force with a revision waiting for the ISP.
    (Active, WITH_ISP, AmendPurpose, revision(IspVerification)),
    (Active, WITH_ISP, AmendPrefixes, revision(IspVerification)),
    (Active, WITH_ISP, Withdraw, revision(Withdrawn)),
    (Active, WITH_ISP, Attest { confirmed: true }, revision(UnderReview)),
    (Active, WITH_ISP, Attest { confirmed: false }, revision(Rejected)),
    (Active, WITH_ISP, Decide(Suspend), moves(Suspended)),
    (Active, WITH_ISP, Decide(Revoke), REVOKES_AND_DISCARDS),
    // ... under review.
    (Active, UNDER_REVIEW, AmendPurpose, revision(UnderReview)),
    (Active, UNDER_REVIEW, AmendPrefixes, revision(IspVerification)),
    (Active, UNDER_REVIEW, Withdraw, revision(Withdrawn)),
    (Active, UNDER_REVIEW, Decide(Approve), SWAPS),
    (Active, UNDER_REVIEW, Decide(Reject), revision(Rejected)),
    (Active, UNDER_REVIEW, Decide(RequestInformation), revision(NeedsInfo)),
    (Active, UNDER_REVIEW, Decide(Suspend), moves(Suspended)),
    (Active, UNDER_REVIEW, Decide(Revoke), REVOKES_AND_DISCARDS),
    // ... sent back for information.
    (Active, NEEDS_INFO, AmendPurpose, revision(UnderReview)),
    (Active, NEEDS_INFO, AmendPrefixes, revision(IspVerification)),
    (Active, NEEDS_INFO, Withdraw, revision(Withdrawn)),
    (Active, NEEDS_INFO, Decide(Suspend), moves(Suspended)),
    (Active, NEEDS_INFO, Decide(Revoke), REVOKES_AND_DISCARDS),
    // Suspended with a change under way: it waits; a revocation discards it.
    (Suspended, WITH_ISP, Decide(Reinstate), moves(Active)),
    (Suspended, WITH_ISP, Decide(Revoke), REVOKES_AND_DISCARDS),
    (Suspended, UNDER_REVIEW, Decide(Reinstate), moves(Active)),
    (Suspended, UNDER_REVIEW, Decide(Revoke), REVOKES_AND_DISCARDS),
    (Suspended, NEEDS_INFO, Decide(Reinstate), moves(Active)),
    (Suspended, NEEDS_INFO, Decide(Revoke), REVOKES_AND_DISCARDS),
    // Expired, with a renewal (or amendment) under way: only the revision moves.
    (Expired, WITH_ISP, AmendPurpose, revision(IspVerification)),
    (Expired, WITH_ISP, AmendPrefixes, revision(IspVerification)),
    (Expired, WITH_ISP, Withdraw, revision(Withdrawn)),
    (Expired, WITH_ISP, Attest { confirmed: true }, revision(UnderReview)),
    (Expired, WITH_ISP, Attest { confirmed: false }, revision(Rejected)),
    (Expired, UNDER_REVIEW, AmendPurpose, revision(UnderReview)),
    (Expired, UNDER_REVIEW, AmendPrefixes, revision(IspVerification)),
    (Expired, UNDER_REVIEW, Withdraw, revision(Withdrawn)),
    (Expired, UNDER_REVIEW, Decide(Approve), SWAPS),
    (Expired, UNDER_REVIEW, Decide(Reject), revision(Rejected)),
    (Expired, UNDER_REVIEW, Decide(RequestInformation), revision(NeedsInfo)),
    (Expired, NEEDS_INFO, AmendPurpose, revision(UnderReview)),
    (Expired, NEEDS_INFO, AmendPrefixes, revision(IspVerification)),
    (Expired, NEEDS_INFO, Withdraw, revision(Withdrawn)),
];

/// The revisions a registration may have pending, for the sweep.
const REVISIONS: [Option<State>; 4] = [None, WITH_ISP, UNDER_REVIEW, NEEDS_INFO];

fn now() -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + Duration::days(20_000)
}

fn spec(prefix: &str, purpose: &str) -> Spec {
    Spec {
        kind: crate::domain::registration::Kind::Vpn,
        protocol: Some(crate::domain::registration::Protocol::WireGuard),
        source_prefixes: vec![prefix.parse().unwrap()],
        msisdn: None,
        peer_prefixes: Vec::new(),
        isp: "ptcl".parse().unwrap(),
        isp_subscriber_id: "SUB-1".parse().unwrap(),
        purpose: purpose.parse().unwrap(),
        valid_from: now() - Duration::days(10),
        valid_until: now() + Duration::days(100),
        large_prefix_justification: None,
    }
}

/// A registration in `state`, with a pending revision in `revision`.
fn registration(state: State, revision: Option<State>) -> Registration {
    Registration {
        id: Uuid::from_u128(1),
        reference: "VPN-2026-000001".into(),
        institution_id: Uuid::from_u128(2),
        spec: spec("8.8.8.0/24", "Branch office"),
        state,
        state_time: now(),
        pending_revision: revision.map(|state| Revision {
            id: Uuid::from_u128(3),
            is_renewal: false,
            spec: spec("8.8.8.0/24", "Branch office, amended"),
            state,
            state_time: now(),
            create_time: now(),
        }),
        version: 7,
        create_time: now(),
        update_time: now(),
    }
}

/// What `command` plans for `current`, or its refusal.
fn plan(current: &Registration, command: Command) -> Result<Plan, Refusal> {
    let patch = |field: SpecField, values: SpecDraft| SpecPatch {
        fields: vec![field],
        values,
    };
    let ruling = |event| Ruling {
        event,
        reason_code: None,
        reason: None,
        approve: ApproveOptions::default(),
    };
    match command {
        AmendPurpose => {
            let values = SpecDraft {
                purpose: Some("Another purpose".parse().unwrap()),
                ..SpecDraft::default()
            };
            amend(current, Category::Company, &patch(SpecField::Purpose, values), now())
        }
        AmendPrefixes => {
            let values = SpecDraft {
                source_prefixes: vec!["8.8.9.0/24".parse().unwrap()],
                ..SpecDraft::default()
            };
            amend(
                current,
                Category::Company,
                &patch(SpecField::SourcePrefixes, values),
                now(),
            )
        }
        Withdraw => withdraw(current, None),
        Renew => renew(current, current.spec.valid_until + Duration::days(365), now()),
        Attest { confirmed } => decide(current, &ruling(Event::Attest { confirmed }), now()),
        Decide(d) => decide(current, &ruling(d.about().event), now()),
    }
}

fn shape(plan: &Plan) -> Shape {
    let reg = match &plan.registration {
        RegistrationWrite::Store { state, .. } => Reg::Stored(*state),
        RegistrationWrite::Touch => Reg::Touched,
    };
    let rev = plan.revision.as_ref().map(|r| match r {
        RevisionWrite::Open { .. } => Rev::Opened,
        RevisionWrite::Update { state, .. } => Rev::Updated(*state),
    });
    Shape(reg, rev)
}

/// Whether a registration in `state` can hold a pending revision.
fn may_hold_revision(state: State) -> bool {
    matches!(state, Active | Expired | Suspended)
}

/// The row for this combination, if the table has one (a revision beside a
/// registration that cannot hold one reads as no revision).
fn expected(state: State, revision: Option<State>, command: Command) -> Option<Shape> {
    let revision = revision.filter(|_| may_hold_revision(state));
    ALLOWED
        .iter()
        .find(|(s, r, c, _)| (*s, *r, *c) == (state, revision, command))
        .map(|(.., shape)| *shape)
}

#[test]
fn every_state_revision_and_command_plans_as_the_table_says_or_is_refused() {
    let mut planned = 0;
    for &state in State::ALL {
        for revision in REVISIONS {
            for command in commands() {
                let current = registration(state, revision);
                let got = plan(&current, command);
                let row = (state, revision, command);
                match (expected(state, revision, command), got) {
                    (Some(want), Ok(plan)) => {
                        assert_eq!(shape(&plan), want, "{row:?}");
                        planned += 1;
                    }
                    (Some(want), Err(refusal)) => panic!("{row:?}: refused ({refusal}), the table says {want:?}"),
                    (None, Ok(plan)) => panic!("{row:?}: planned {:?}, the table has no such row", shape(&plan)),
                    (None, Err(refusal)) => assert!(
                        matches!(refusal, Refusal::WrongState { .. } | Refusal::RevisionPending),
                        "{row:?}: refused for the state, not {refusal:?}"
                    ),
                }
            }
        }
    }
    let standing_for_all = ALLOWED.iter().filter(|(s, ..)| !may_hold_revision(*s)).count();
    assert_eq!(
        planned,
        ALLOWED.len() + standing_for_all * (REVISIONS.len() - 1),
        "every row of the table was reached"
    );
}

#[test]
fn every_plan_records_what_it_did_from_where_to_where() {
    for &(state, revision, command, shape) in ALLOWED {
        let plan = plan(&registration(state, revision), command).unwrap();
        let record = plan.records.last().expect("a plan records what it did");
        let action = match (command, shape) {
            (AmendPurpose | AmendPrefixes, OPENS) => Action::RevisionProposed,
            (Renew, _) => Action::RenewalRequested,
            (AmendPurpose | AmendPrefixes, _) => Action::Amended,
            (Withdraw, _) => Action::Withdrawn,
            (Attest { confirmed: true }, _) => Action::Attested,
            (Attest { confirmed: false }, _) => Action::AttestationDenied,
            (Decide(d), _) => Ruling {
                event: d.about().event,
                reason_code: None,
                reason: None,
                approve: ApproveOptions::default(),
            }
            .action(),
        };
        let row = (state, revision, command);
        assert_eq!(record.action, action, "{row:?}");
        let (from, to) = match shape {
            Shape(_, Some(Rev::Opened)) => (None, IspVerification),
            Shape(_, Some(Rev::Updated(to))) if revision.is_some() && command != Decide(Revoke) => (revision, to),
            Shape(Reg::Stored(to), _) => (Some(state), to),
            other => panic!("{row:?}: {other:?}"),
        };
        assert_eq!((record.from, record.to), (from, to), "{row:?}");
        assert_eq!(
            record.revision_id.is_some(),
            shape.1.is_some() && command != Decide(Revoke),
            "{row:?}: the record names the revision it acted on"
        );
        let checks_overlap = matches!(command, AmendPurpose | AmendPrefixes) || to == Active;
        assert_eq!(plan.check_overlap.is_some(), checks_overlap, "{row:?}");
    }
}

#[test]
fn revoking_discards_the_pending_revision_on_the_record() {
    let plan = plan(&registration(Active, UNDER_REVIEW), Decide(Revoke)).unwrap();
    let actions: Vec<Action> = plan.records.iter().map(|r| r.action).collect();
    assert_eq!(actions, [Action::RevisionDiscarded, Action::Revoked]);
}

#[test]
fn pages_are_offered_exactly_what_the_plans_accept() {
    for &state in State::ALL {
        for revision in REVISIONS {
            for command in commands() {
                let event = match command {
                    AmendPurpose => Event::Amend { reattest: false },
                    AmendPrefixes => Event::Amend { reattest: true },
                    Withdraw => Event::Withdraw,
                    Attest { confirmed } => Event::Attest { confirmed },
                    Decide(d) => d.about().event,
                    // Renewal is offered by renewal_refused, below.
                    Renew => continue,
                };
                let accepted = expected(state, revision, command).is_some();
                let revision = revision.filter(|_| state.is_live());
                assert_eq!(
                    allows(state, revision, event),
                    accepted,
                    "{state} {revision:?} {command:?}"
                );
            }
            let renewable = expected(state, revision, Renew).is_some();
            assert_eq!(
                renewal_refused(state, revision).is_none(),
                renewable,
                "renew {state} {revision:?}"
            );
        }
    }
}

#[test]
fn approval_only_shortens_validity_and_large_prefixes_need_the_override() {
    let under_review = registration(UnderReview, None);
    let approve = |valid_until: Option<OffsetDateTime>, override_size_limits| Ruling {
        event: Event::Approve,
        reason_code: None,
        reason: None,
        approve: ApproveOptions {
            valid_until,
            override_size_limits,
        },
    };
    let longer = Some(under_review.spec.valid_until + Duration::days(1));
    let refused = decide(&under_review, &approve(longer, false), now()).unwrap_err();
    assert!(matches!(refused, Refusal::Invalid(_)), "{refused:?}");
    let shorter = under_review.spec.valid_until - Duration::days(30);
    let plan = decide(&under_review, &approve(Some(shorter), false), now()).unwrap();
    assert!(matches!(plan.registration, RegistrationWrite::Store { ref spec, .. } if spec.valid_until == shorter));

    let mut large = under_review;
    large.spec.source_prefixes = vec!["8.8.0.0/16".parse().unwrap()];
    let refused = decide(&large, &approve(None, false), now()).unwrap_err();
    assert!(
        matches!(
            refused,
            Refusal::Precondition {
                kind: "PREFIX_SIZE",
                ..
            }
        ),
        "{refused:?}"
    );
    assert!(decide(&large, &approve(None, true), now()).is_ok());
}
