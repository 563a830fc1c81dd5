-- Fees (issue 22): challans for IP whitelisting, paid at a collecting bank
-- against an 18-digit payment id (PSID), confirmed by the bank's system (the
-- new `payments` role).

ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('admin', 'reviewer', 'isp', 'lookup', 'institution', 'payments'));

-- Serials of the PSIDs we issue (the PSID adds our biller prefix and a check digit).
CREATE SEQUENCE challan_serial_seq;

-- One challan per assessment of an application: a registration's
-- submission (revision_id NULL) or one of its revisions (an amendment or a
-- renewal). At most one unpaid challan per application: re-assessing an
-- application cancels its unpaid one and issues what is still owed.
CREATE TABLE challans (
    psid             char(18) PRIMARY KEY CHECK (psid ~ '^[0-9]{18}$'),
    registration_id  uuid NOT NULL REFERENCES registrations (id),
    revision_id      uuid REFERENCES registration_revisions (id),
    institution_id   uuid NOT NULL REFERENCES institutions (id),
    addresses        bigint NOT NULL CHECK (addresses > 0),
    amount_pkr       bigint NOT NULL CHECK (amount_pkr > 0),
    -- UNPAID -> PAID (the bank confirmed) | CANCELLED (re-assessed, or the
    -- application ended first); PAID -> REFUND_DUE (the application was
    -- refused or withdrawn) -> REFUNDED (the bank paid it back).
    status           text NOT NULL DEFAULT 'UNPAID'
                     CHECK (status IN ('UNPAID', 'PAID', 'CANCELLED', 'REFUND_DUE', 'REFUNDED')),
    -- Set when the application it was paid for was approved: the fee is
    -- earned and no longer refundable.
    earn_time        timestamptz,
    transaction_reference text,
    refund_reference text,
    issue_time       timestamptz NOT NULL DEFAULT now(),
    pay_time         timestamptz,
    cancel_time      timestamptz,
    refund_time      timestamptz,
    CONSTRAINT challans_paid_has_reference CHECK (status IN ('UNPAID', 'CANCELLED') OR transaction_reference IS NOT NULL),
    CONSTRAINT challans_refunded_has_reference CHECK (status <> 'REFUNDED' OR refund_reference IS NOT NULL)
);
CREATE INDEX challans_registration_idx ON challans (registration_id);
CREATE UNIQUE INDEX challans_one_unpaid
    ON challans (registration_id, coalesce(revision_id, '00000000-0000-0000-0000-000000000000'))
    WHERE status = 'UNPAID';
-- A bank's transaction reference confirms one challan only.
CREATE UNIQUE INDEX challans_transaction_reference ON challans (transaction_reference)
    WHERE transaction_reference IS NOT NULL;

-- Every confirmation a payments system sent, accepted or refused (an unknown
-- PSID, a wrong amount): the reconciliation the regulator's finance team
-- runs against the banks' statements.
CREATE TABLE payment_attempts (
    sequence              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    psid                  text NOT NULL,
    amount_pkr            bigint,
    transaction_reference text NOT NULL,
    kind                  text NOT NULL CHECK (kind IN ('PAYMENT', 'REFUND')),
    outcome               text NOT NULL,
    principal_id          uuid,
    principal_name        text NOT NULL,
    create_time           timestamptz NOT NULL DEFAULT now()
);
