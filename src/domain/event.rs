//! What people are told about: the events a registration's recorded changes
//! produce, and who hears each. Decided here, from the audit record, so that
//! the outbox, e-mail, webhooks and the event feed agree on one list.

use super::audit::Record;
use super::db_enum::db_enum;
use super::state::Action;

db_enum!(
    /// An event someone must hear about; the names are the webhook and feed
    /// event types (Standard Webhooks style: `group.event`).
    EventType {
        Submitted => "registration.submitted",
        Attested => "registration.attested",
        AttestationDenied => "registration.attestation_denied",
        InformationRequested => "registration.information_requested",
        Approved => "registration.approved",
        Rejected => "registration.rejected",
        Suspended => "registration.suspended",
        Reinstated => "registration.reinstated",
        Revoked => "registration.revoked",
        Expired => "registration.expired",
        RenewalRequested => "registration.renewal_requested",
        RenewalApproved => "registration.renewal_approved",
        RenewalRejected => "registration.renewal_rejected",
        RevisionProposed => "registration.revision_proposed",
        RevisionApproved => "registration.revision_approved",
        RevisionRejected => "registration.revision_rejected",
        ExpiryReminder => "registration.expiry_reminder",
    }
);

/// Days before `valid_until` at which an ACTIVE registration's institution
/// is reminded, largest first: each is sent once, the tightest that applies.
pub const REMINDER_DAYS: [i32; 3] = [30, 7, 1];

impl EventType {
    /// The event a recorded change produces, if anyone must hear of it.
    /// `renewal` says whether the pending revision the record concerns (if
    /// any) renews the registration. Amendments before a decision,
    /// withdrawals and discarded revisions are the applicant's own doing:
    /// nobody else needs telling.
    pub fn of(record: &Record, renewal: bool) -> Option<Self> {
        let revision = record.revision_id.is_some();
        Some(match record.action {
            Action::Submitted => Self::Submitted,
            Action::Attested => Self::Attested,
            Action::AttestationDenied => Self::AttestationDenied,
            Action::InformationRequested => Self::InformationRequested,
            Action::Approved if !revision => Self::Approved,
            Action::Approved if renewal => Self::RenewalApproved,
            Action::Approved => Self::RevisionApproved,
            Action::Rejected if !revision => Self::Rejected,
            Action::Rejected if renewal => Self::RenewalRejected,
            Action::Rejected => Self::RevisionRejected,
            Action::Suspended => Self::Suspended,
            Action::Reinstated => Self::Reinstated,
            Action::Revoked => Self::Revoked,
            Action::Expired => Self::Expired,
            Action::RenewalRequested => Self::RenewalRequested,
            Action::RevisionProposed => Self::RevisionProposed,
            Action::Amended | Action::Withdrawn | Action::RevisionDiscarded => return None,
        })
    }

    /// Events that ask the registration's ISP to attest: its desk hears them
    /// too (webhooks and feed).
    pub fn asks_isp(self) -> bool {
        matches!(self, Self::Submitted | Self::RenewalRequested | Self::RevisionProposed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::state::State;

    #[test]
    fn every_decision_on_a_revision_names_what_was_decided() {
        let mut record = Record::transition(Action::Approved, Some(State::UnderReview), State::Active);
        assert_eq!(EventType::of(&record, false), Some(EventType::Approved));
        record.revision_id = Some(uuid::Uuid::nil());
        assert_eq!(EventType::of(&record, true), Some(EventType::RenewalApproved));
        assert_eq!(EventType::of(&record, false), Some(EventType::RevisionApproved));
        record.action = Action::Rejected;
        assert_eq!(EventType::of(&record, true), Some(EventType::RenewalRejected));
    }

    #[test]
    fn the_applicants_own_edits_tell_nobody() {
        for action in [Action::Amended, Action::Withdrawn, Action::RevisionDiscarded] {
            let record = Record::transition(action, Some(State::Submitted), State::Submitted);
            assert_eq!(EventType::of(&record, false), None);
        }
    }
}
