//! The registration lifecycle as one transition table: which event moves which
//! state where. `migrations/*_lifecycle.sql` holds the same pairs for the
//! database trigger; a test keeps the two identical.

use super::state::State;

/// Something that happens to a registration (or to its pending revision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The ISP confirmed (or denied) subscriber and addresses.
    Attest {
        confirmed: bool,
    },
    Approve,
    Reject,
    RequestInformation,
    /// The applicant changed the declaration; `reattest` when fields the ISP
    /// vouched for (addresses, ISP, subscriber) changed.
    Amend {
        reattest: bool,
    },
    Withdraw,
    Suspend,
    Reinstate,
    Revoke,
    Expire,
}

impl Event {
    /// How the event reads in messages ("cannot be approved").
    pub fn verb(self) -> &'static str {
        match self {
            Self::Attest { .. } => "attested",
            Self::Approve => "approved",
            Self::Reject => "rejected",
            Self::RequestInformation => "sent back for information",
            Self::Amend { .. } => "amended",
            Self::Withdraw => "withdrawn",
            Self::Suspend => "suspended",
            Self::Reinstate => "reinstated",
            Self::Revoke => "revoked",
            Self::Expire => "expired",
        }
    }

    /// Whether the event acts on a pending revision when there is one (the
    /// review of a change), rather than on the registration itself.
    pub fn reviews_revision(self) -> bool {
        matches!(
            self,
            Self::Attest { .. }
                | Self::Approve
                | Self::Reject
                | Self::RequestInformation
                | Self::Amend { .. }
                | Self::Withdraw
        )
    }
}

/// The state a new submission is stored in: it goes straight to the ISP.
pub const INITIAL: State = State::IspVerification;

/// Every legal change of state. Staying in a state is not a transition.
pub const TRANSITIONS: &[(State, State)] = &[
    (State::Submitted, State::IspVerification),
    (State::Submitted, State::Withdrawn),
    (State::IspVerification, State::UnderReview),
    (State::IspVerification, State::Rejected),
    (State::IspVerification, State::Withdrawn),
    (State::UnderReview, State::Active),
    (State::UnderReview, State::Rejected),
    (State::UnderReview, State::NeedsInfo),
    (State::UnderReview, State::IspVerification),
    (State::UnderReview, State::Withdrawn),
    (State::NeedsInfo, State::UnderReview),
    (State::NeedsInfo, State::IspVerification),
    (State::NeedsInfo, State::Withdrawn),
    (State::Active, State::Suspended),
    (State::Active, State::Revoked),
    (State::Active, State::Expired),
    (State::Suspended, State::Active),
    (State::Suspended, State::Revoked),
    (State::Expired, State::Active),
];

/// An event that the current state does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a registration in state {current} cannot be {}", event.verb())]
pub struct Illegal {
    pub current: State,
    pub event: Event,
}

/// The state `event` leads to from `current`, or why it may not happen.
/// (EXPIRED becomes ACTIVE only by approving a renewal revision, which the
/// store applies; it is not an event on the registration itself.)
pub fn next(current: State, event: Event) -> Result<State, Illegal> {
    use State::*;
    let to = match (current, event) {
        (IspVerification, Event::Attest { confirmed: true }) => UnderReview,
        (IspVerification, Event::Attest { confirmed: false }) => Rejected,
        (UnderReview, Event::Approve) => Active,
        (UnderReview, Event::Reject) => Rejected,
        (UnderReview, Event::RequestInformation) => NeedsInfo,
        (Submitted | IspVerification, Event::Amend { .. }) => current,
        (UnderReview | NeedsInfo, Event::Amend { reattest: true }) => IspVerification,
        (UnderReview | NeedsInfo, Event::Amend { reattest: false }) => UnderReview,
        (Submitted | IspVerification | UnderReview | NeedsInfo, Event::Withdraw) => Withdrawn,
        (Active, Event::Suspend) => Suspended,
        (Suspended, Event::Reinstate) => Active,
        (Active | Suspended, Event::Revoke) => Revoked,
        (Active, Event::Expire) => Expired,
        _ => return Err(Illegal { current, event }),
    };
    debug_assert!(to == current || TRANSITIONS.contains(&(current, to)));
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENTS: &[Event] = &[
        Event::Attest { confirmed: true },
        Event::Attest { confirmed: false },
        Event::Approve,
        Event::Reject,
        Event::RequestInformation,
        Event::Amend { reattest: true },
        Event::Amend { reattest: false },
        Event::Withdraw,
        Event::Suspend,
        Event::Reinstate,
        Event::Revoke,
        Event::Expire,
    ];

    #[test]
    fn every_event_leads_along_a_listed_transition_or_stays() {
        for &from in State::ALL {
            for &event in EVENTS {
                if let Ok(to) = next(from, event) {
                    assert!(
                        to == from || TRANSITIONS.contains(&(from, to)),
                        "{from} --{event:?}--> {to}"
                    );
                }
            }
        }
    }

    #[test]
    fn final_states_accept_no_event() {
        for state in [State::Rejected, State::Revoked, State::Withdrawn] {
            for &event in EVENTS {
                assert!(next(state, event).is_err(), "{state} accepted {event:?}");
            }
        }
    }

    #[test]
    fn the_documented_path_to_active() {
        let s = next(State::IspVerification, Event::Attest { confirmed: true }).unwrap();
        let s = next(s, Event::RequestInformation).unwrap();
        let s = next(s, Event::Amend { reattest: false }).unwrap();
        assert_eq!(next(s, Event::Approve).unwrap(), State::Active);
    }
}
