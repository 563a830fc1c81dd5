-- Telling people what happened (issue 20): events and their notifications,
-- written in the same transaction as the change they report.

-- The language an institution's messages are written in.
ALTER TABLE institutions
    ADD COLUMN language text NOT NULL DEFAULT 'en' CHECK (language IN ('en', 'ur'));

-- What someone must hear about: one row per notifiable change of a
-- registration (and per reminder). Thin on purpose: who, what, which state,
-- why; never personal data. No foreign keys, on purpose: rows are written
-- only by statements that read the registration they copy from (so they
-- cannot name a missing one), registrations and institutions are never
-- deleted, and each key check would lock the referenced rows (the ISP's
-- above all, shared by every submission) on the write path.
CREATE TABLE events (
    -- Stable across redeliveries: receivers recognise duplicates by it.
    id              uuid PRIMARY KEY,
    -- Order within a transaction (the feed's index orders by xid, seq).
    seq             bigint GENERATED ALWAYS AS IDENTITY,
    -- The writing transaction: readers of the event feed never pass a
    -- transaction still running (see db::events), so a cursor never skips
    -- an event committed out of identity order.
    xid             xid8 NOT NULL DEFAULT pg_current_xact_id(),
    type            text NOT NULL,
    institution_id  uuid NOT NULL,
    isp             text,
    registration_id uuid NOT NULL,
    reference       text NOT NULL,
    state           text NOT NULL,
    reason_code     text,
    reason          text,
    -- Reminders: days left before valid_until.
    days_left       integer,
    -- Reminders are sent once per registration, validity and kind, however
    -- many servers look for them (a partial unique index below).
    once_key        text,
    occur_time      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_feed_idx ON events (xid, seq);
CREATE UNIQUE INDEX events_once_idx ON events (once_key) WHERE once_key IS NOT NULL;
-- Institutions are thousands, each reading its own: an index of its own.
-- ISP desks are a few dozen: they read the feed's index from their cursor
-- and filter (one index less on every submission's write).
CREATE INDEX events_institution_idx ON events (institution_id, xid, seq);

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
    -- An event's (written by the same statement; no key check, as above).
    event_id          uuid NOT NULL,
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
    -- A worker's lease: until then no other worker claims the row. Not
    -- indexed, so that claiming is a HOT update (no index writes).
    claimed_until     timestamptz,
    last_attempt_time timestamptz,
    -- An HTTP status or SMTP reply code of the last attempt.
    last_code         integer,
    last_error        text,
    done_time         timestamptz,
    create_time       timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 70);
CREATE INDEX notifications_due_idx ON notifications (next_attempt_time) WHERE status = 'PENDING';
CREATE INDEX notifications_order_idx ON notifications (recipient, registration_id, id) WHERE status = 'PENDING';
-- What the operator watches: dead letters are few and must be counted fast.
CREATE INDEX notifications_dead_idx ON notifications (channel) WHERE status = 'DEAD';
