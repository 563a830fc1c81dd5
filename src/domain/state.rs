//! The registration lifecycle (DOMAIN.md, "Lifecycle"): which state follows
//! which, decided here and nowhere else.

use super::db_enum::db_enum;

db_enum!(
    /// Where a registration is in its lifecycle.
    State {
        Submitted => "SUBMITTED",
        IspVerification => "ISP_VERIFICATION",
        UnderReview => "UNDER_REVIEW",
        NeedsInfo => "NEEDS_INFO",
        Active => "ACTIVE",
        Rejected => "REJECTED",
        Suspended => "SUSPENDED",
        Revoked => "REVOKED",
        Expired => "EXPIRED",
        Withdrawn => "WITHDRAWN",
    }
);

impl State {
    /// Not yet decided: the applicant may still amend or withdraw.
    pub fn is_undecided(self) -> bool {
        matches!(
            self,
            Self::Submitted | Self::IspVerification | Self::UnderReview | Self::NeedsInfo
        )
    }
}

impl State {
    /// Decided and in (or just past) force: changes come as revisions.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Active | Self::Expired)
    }
}

db_enum!(
    /// What a recorded write did to a registration.
    Action {
        Submitted => "SUBMITTED",
        Amended => "AMENDED",
        Withdrawn => "WITHDRAWN",
        Attested => "ATTESTED",
        AttestationDenied => "ATTESTATION_DENIED",
        Approved => "APPROVED",
        Rejected => "REJECTED",
        InformationRequested => "INFORMATION_REQUESTED",
        Suspended => "SUSPENDED",
        Reinstated => "REINSTATED",
        Revoked => "REVOKED",
        Expired => "EXPIRED",
        RevisionProposed => "REVISION_PROPOSED",
        RenewalRequested => "RENEWAL_REQUESTED",
        RevisionDiscarded => "REVISION_DISCARDED",
    }
);

db_enum!(
    /// Why a decision was taken (the free-text reason gives the detail).
    ReasonCode {
        Compliant => "COMPLIANT",
        IncompleteInformation => "INCOMPLETE_INFORMATION",
        IspNotConfirmed => "ISP_NOT_CONFIRMED",
        InvalidDocuments => "INVALID_DOCUMENTS",
        PolicyViolation => "POLICY_VIOLATION",
        SecurityConcern => "SECURITY_CONCERN",
        LicenceExpired => "LICENCE_EXPIRED",
        InstitutionRequest => "INSTITUTION_REQUEST",
        ValidityEnded => "VALIDITY_ENDED",
        Other => "OTHER",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_states_before_a_decision_are_undecided() {
        let undecided: Vec<_> = State::ALL.iter().filter(|s| s.is_undecided()).collect();
        assert_eq!(
            undecided,
            [
                &State::Submitted,
                &State::IspVerification,
                &State::UnderReview,
                &State::NeedsInfo
            ]
        );
    }
}
