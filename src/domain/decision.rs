//! The regulator's review decisions, each defined once: the lifecycle event
//! it is, the reason codes that may justify it, its words for people, and
//! the API method that takes it. Which states allow it is the workflow's
//! rule ([`Decision::open_on`]). The gRPC handlers, the permission table,
//! the console and the tests all read this table; a new decision is one
//! more row here (and its message in the API).

use super::lifecycle::Event;
use super::state::{ReasonCode, State};
use super::workflow;

/// A decision a reviewer takes on a registration (or its pending revision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    Approve,
    RequestInformation,
    Reject,
    Suspend,
    Reinstate,
    Revoke,
}

/// Everything the registry says about one decision.
#[derive(Debug, Clone, Copy)]
pub struct About {
    pub event: Event,
    /// Its name in forms and links (`request_information`).
    pub name: &'static str,
    /// Its button (`Request information`).
    pub label: &'static str,
    /// What it did, as a notice says it (`information requested`).
    pub done: &'static str,
    /// The RPC that takes it (`/package.Service/Method`).
    pub rpc: &'static str,
    /// The reason codes that may justify it, most usual first.
    pub reasons: &'static [ReasonCode],
}

use ReasonCode as R;

impl Decision {
    /// In the order a reviewer's page offers them.
    pub const ALL: [Self; 6] = [
        Self::Approve,
        Self::RequestInformation,
        Self::Reject,
        Self::Suspend,
        Self::Reinstate,
        Self::Revoke,
    ];

    /// The table.
    pub const fn about(self) -> About {
        match self {
            Self::Approve => About {
                event: Event::Approve,
                name: "approve",
                label: "Approve",
                done: "approved",
                rpc: "/vpnregistry.v1.ReviewService/ApproveRegistration",
                reasons: &[R::Compliant, R::Other],
            },
            Self::RequestInformation => About {
                event: Event::RequestInformation,
                name: "request_information",
                label: "Request information",
                done: "information requested",
                rpc: "/vpnregistry.v1.ReviewService/RequestInformation",
                reasons: &[
                    R::IncompleteInformation,
                    R::InvalidDocuments,
                    R::IspNotConfirmed,
                    R::Other,
                ],
            },
            Self::Reject => About {
                event: Event::Reject,
                name: "reject",
                label: "Reject",
                done: "rejected",
                rpc: "/vpnregistry.v1.ReviewService/RejectRegistration",
                reasons: &[
                    R::PolicyViolation,
                    R::IncompleteInformation,
                    R::InvalidDocuments,
                    R::IspNotConfirmed,
                    R::SecurityConcern,
                    R::LicenceExpired,
                    R::InstitutionRequest,
                    R::Other,
                ],
            },
            Self::Suspend => About {
                event: Event::Suspend,
                name: "suspend",
                label: "Suspend",
                done: "suspended",
                rpc: "/vpnregistry.v1.ReviewService/SuspendRegistration",
                reasons: &[
                    R::SecurityConcern,
                    R::PolicyViolation,
                    R::InvalidDocuments,
                    R::LicenceExpired,
                    R::InstitutionRequest,
                    R::Other,
                ],
            },
            Self::Reinstate => About {
                event: Event::Reinstate,
                name: "reinstate",
                label: "Reinstate",
                done: "reinstated",
                rpc: "/vpnregistry.v1.ReviewService/ReinstateRegistration",
                reasons: &[R::Compliant, R::InstitutionRequest, R::Other],
            },
            Self::Revoke => About {
                event: Event::Revoke,
                name: "revoke",
                label: "Revoke",
                done: "revoked",
                rpc: "/vpnregistry.v1.ReviewService/RevokeRegistration",
                reasons: &[
                    R::PolicyViolation,
                    R::SecurityConcern,
                    R::InvalidDocuments,
                    R::LicenceExpired,
                    R::InstitutionRequest,
                    R::Other,
                ],
            },
        }
    }

    /// The decision a form or link names.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.about().name == name)
    }

    /// The decision an RPC path takes.
    pub fn by_rpc(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.about().rpc == path)
    }

    /// Whether `code` may justify this decision.
    pub fn justified_by(self, code: ReasonCode) -> bool {
        self.about().reasons.contains(&code)
    }

    /// Why `code` may not justify this decision (a field violation).
    pub fn unjustified(self, code: ReasonCode) -> String {
        let allowed: Vec<&str> = self.about().reasons.iter().map(|r| r.as_str()).collect();
        format!(
            "{code} does not justify a decision to {}; use one of {}",
            self.about().name,
            allowed.join(", ")
        )
    }

    /// Whether a registration in `state` whose pending revision, if any, is
    /// in `revision` may take this decision now (the workflow's rules; the
    /// plans remain the authority).
    pub fn open_on(self, state: State, revision: Option<State>) -> bool {
        workflow::allows(state, revision, self.about().event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_decision_has_its_own_event_name_rpc_and_a_reason() {
        for (i, a) in Decision::ALL.iter().enumerate() {
            for b in &Decision::ALL[i + 1..] {
                let (x, y) = (a.about(), b.about());
                assert!(
                    x.event != y.event && x.name != y.name && x.rpc != y.rpc,
                    "{a:?} and {b:?}"
                );
            }
            let about = a.about();
            assert!(!about.reasons.is_empty() && about.reasons.contains(&ReasonCode::Other));
            assert_eq!(Decision::named(about.name), Some(*a));
            assert_eq!(Decision::by_rpc(about.rpc), Some(*a));
            assert!(!about.reasons.contains(&ReasonCode::ValidityEnded), "expiry only");
        }
    }

    #[test]
    fn a_reason_code_justifies_only_the_decisions_it_fits() {
        assert!(Decision::Approve.justified_by(ReasonCode::Compliant));
        assert!(!Decision::Approve.justified_by(ReasonCode::SecurityConcern));
        assert!(!Decision::Reject.justified_by(ReasonCode::Compliant));
        assert!(Decision::Revoke.justified_by(ReasonCode::PolicyViolation));
        assert!(
            Decision::Reject
                .unjustified(ReasonCode::Compliant)
                .contains("POLICY_VIOLATION")
        );
    }

    #[test]
    fn what_is_open_follows_the_lifecycle() {
        let open = |state, revision| -> Vec<Decision> {
            Decision::ALL
                .into_iter()
                .filter(|d| d.open_on(state, revision))
                .collect()
        };
        use Decision::*;
        assert_eq!(open(State::UnderReview, None), [Approve, RequestInformation, Reject]);
        assert_eq!(open(State::Active, None), [Suspend, Revoke]);
        assert_eq!(open(State::Suspended, None), [Reinstate, Revoke]);
        assert_eq!(
            open(State::Active, Some(State::UnderReview)),
            [Approve, RequestInformation, Reject, Suspend, Revoke]
        );
        assert_eq!(open(State::Rejected, None), []);
    }
}
