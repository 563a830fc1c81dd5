//! The registration lifecycle (DOMAIN.md, "Lifecycle"): which state follows
//! which, decided here and nowhere else.

use super::registration::db_enum;

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

db_enum!(
    /// What a recorded write did to a registration.
    Action {
        Submitted => "SUBMITTED",
        Amended => "AMENDED",
        Withdrawn => "WITHDRAWN",
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
