-- Telling people what happened (issue 20): events and their notifications,
-- written in the same transaction as the change they report.

-- The language an institution's messages are written in.
ALTER TABLE institutions
    ADD COLUMN language text NOT NULL DEFAULT 'en' CHECK (language IN ('en', 'ur'));

-- What someone must hear about: one row per notifiable change of a
-- registration (and per reminder). Thin on purpose: who, what, which state,
-- why; never personal data.
CREATE TABLE events (
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Stable across redeliveries: receivers recognise duplicates by it.
    id              uuid NOT NULL UNIQUE,
    -- The writing transaction: readers of the event feed never pass a
    -- transaction still running (see db::events), so a cursor never skips
    -- an event committed out of identity order.
    xid             xid8 NOT NULL DEFAULT pg_current_xact_id(),
    type            text NOT NULL,
    institution_id  uuid NOT NULL REFERENCES institutions (id),
    isp             text REFERENCES isps (code),
    registration_id uuid NOT NULL REFERENCES registrations (id),
    reference       text NOT NULL,
    state           text NOT NULL,
    reason_code     text,
    reason          text,
    -- Reminders: days left before valid_until.
    days_left       integer,
    -- Reminders are sent once per registration, validity and kind, however
    -- many servers look for them.
    once_key        text UNIQUE,
    occur_time      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_feed_idx ON events (xid, seq);
CREATE INDEX events_institution_idx ON events (institution_id, xid, seq);
CREATE INDEX events_isp_idx ON events (isp, xid, seq);

CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();

-- The outbox: one row per event and recipient, claimed by delivery workers
-- with SKIP LOCKED and retried with backoff until delivered or dead.
CREATE TABLE notifications (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id          uuid NOT NULL REFERENCES events (id),
    channel           text NOT NULL CHECK (channel IN ('email', 'webhook')),
    -- An e-mail address, or a webhook endpoint's id.
    recipient         text NOT NULL,
    -- Delivered in order per recipient and registration.
    registration_id   uuid NOT NULL,
    -- PENDING: to deliver; DELIVERED; KEPT: no mail server configured, kept
    -- for administrators; DEAD: given up (dead-lettered).
    status            text NOT NULL DEFAULT 'PENDING'
                      CHECK (status IN ('PENDING', 'DELIVERED', 'KEPT', 'DEAD')),
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_time timestamptz NOT NULL DEFAULT now(),
    last_attempt_time timestamptz,
    -- An HTTP status or SMTP reply code of the last attempt.
    last_code         integer,
    last_error        text,
    done_time         timestamptz,
    create_time       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_due_idx ON notifications (next_attempt_time) WHERE status = 'PENDING';
CREATE INDEX notifications_order_idx ON notifications (recipient, registration_id, id) WHERE status = 'PENDING';
CREATE INDEX notifications_event_idx ON notifications (event_id);
-- What the operator watches: dead letters are few and must be counted fast.
CREATE INDEX notifications_dead_idx ON notifications (channel) WHERE status = 'DEAD';
