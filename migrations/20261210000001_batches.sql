-- BatchSubmitRegistrations: which registrations one batch submitted, in its
-- order, so that a retry with the batch's idempotency key (which names the
-- batch) answers the whole batch again.
CREATE TABLE registration_batches (
    batch_id        uuid NOT NULL,
    position        smallint NOT NULL CHECK (position BETWEEN 0 AND 99),
    registration_id uuid NOT NULL UNIQUE REFERENCES registrations (id) ON DELETE CASCADE,
    PRIMARY KEY (batch_id, position)
);
