-- Retention (issue 22): a document's content and data key are destroyed when
-- its owner deletes it, or when its registration ended (withdrawn, rejected,
-- revoked, expired) longer ago than --document-retention. The record of its
-- existence, and the audit trail, stay.
ALTER TABLE documents ADD COLUMN destroy_time timestamptz;
ALTER TABLE documents ADD CONSTRAINT documents_destroyed_has_no_key
    CHECK (destroy_time IS NULL OR octet_length(wrapped_key) = 0);
-- What the retention pass looks for.
CREATE INDEX registrations_ended_idx ON registrations (state_time)
    WHERE state IN ('WITHDRAWN', 'REJECTED', 'REVOKED', 'EXPIRED');
