-- The registration lifecycle: licensed ISPs, legal state transitions (mirroring
-- src/domain/lifecycle.rs), pending revisions of active registrations, and the
-- change feed that lookups replicate.

-- Licensed ISPs (reference data managed by administrators).
CREATE TABLE isps (
    code        text PRIMARY KEY CHECK (code ~ '^[a-z0-9][a-z0-9-]{1,31}$'),
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    create_time timestamptz NOT NULL DEFAULT now()
);
-- Registrations and ISP tokens written before this migration keep working.
INSERT INTO isps (code, name)
SELECT code, code FROM (SELECT isp AS code FROM registrations
                        UNION SELECT isp_code FROM api_tokens WHERE isp_code IS NOT NULL) known
ON CONFLICT DO NOTHING;
ALTER TABLE registrations ADD CONSTRAINT registrations_isp_fkey FOREIGN KEY (isp) REFERENCES isps (code);
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_isp_fkey FOREIGN KEY (isp_code) REFERENCES isps (code);

-- When the registration entered its current state: the review queue and the
-- attestation list are served oldest first by this.
ALTER TABLE registrations ADD COLUMN state_time timestamptz NOT NULL DEFAULT now();
-- A reviewer may approve prefixes larger than the default limits only when the
-- applicant justified them.
ALTER TABLE registrations ADD COLUMN large_prefix_justification text
    CHECK (char_length(large_prefix_justification) BETWEEN 1 AND 1000);
CREATE INDEX registrations_queue_idx ON registrations (state, state_time, id);
CREATE INDEX registrations_expiry_idx ON registrations (valid_until) WHERE state = 'ACTIVE';

-- Every legal (from, to) pair. The trigger below refuses any other change of
-- state, whatever SQL writes it; src/domain/lifecycle.rs holds the same list
-- and a test compares the two.
CREATE TABLE lifecycle_transitions (
    from_state text NOT NULL,
    to_state   text NOT NULL,
    PRIMARY KEY (from_state, to_state)
);
INSERT INTO lifecycle_transitions (from_state, to_state) VALUES
    ('SUBMITTED', 'ISP_VERIFICATION'),
    ('SUBMITTED', 'WITHDRAWN'),
    ('ISP_VERIFICATION', 'UNDER_REVIEW'),
    ('ISP_VERIFICATION', 'REJECTED'),
    ('ISP_VERIFICATION', 'WITHDRAWN'),
    ('UNDER_REVIEW', 'ACTIVE'),
    ('UNDER_REVIEW', 'REJECTED'),
    ('UNDER_REVIEW', 'NEEDS_INFO'),
    ('UNDER_REVIEW', 'ISP_VERIFICATION'),
    ('UNDER_REVIEW', 'WITHDRAWN'),
    ('NEEDS_INFO', 'UNDER_REVIEW'),
    ('NEEDS_INFO', 'ISP_VERIFICATION'),
    ('NEEDS_INFO', 'WITHDRAWN'),
    ('ACTIVE', 'SUSPENDED'),
    ('ACTIVE', 'REVOKED'),
    ('ACTIVE', 'EXPIRED'),
    ('SUSPENDED', 'ACTIVE'),
    ('SUSPENDED', 'REVOKED'),
    ('EXPIRED', 'ACTIVE');

CREATE FUNCTION check_state_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.state NOT IN ('SUBMITTED', 'ISP_VERIFICATION') THEN
            RAISE EXCEPTION 'a % must start in SUBMITTED or ISP_VERIFICATION, not %', TG_TABLE_NAME, NEW.state
                USING ERRCODE = 'check_violation', CONSTRAINT = 'legal_state_transition';
        END IF;
    ELSIF NEW.state IS DISTINCT FROM OLD.state AND NOT EXISTS (
        SELECT 1 FROM lifecycle_transitions WHERE from_state = OLD.state AND to_state = NEW.state
    ) THEN
        RAISE EXCEPTION 'illegal transition % -> % on %', OLD.state, NEW.state, TG_TABLE_NAME
            USING ERRCODE = 'check_violation', CONSTRAINT = 'legal_state_transition';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER registrations_legal_transition
    BEFORE INSERT OR UPDATE OF state ON registrations
    FOR EACH ROW EXECUTE FUNCTION check_state_transition();

-- A change proposed for an ACTIVE (or, for a renewal, EXPIRED) registration.
-- It is attested and reviewed like a submission while the approved version
-- stays in force; approval copies it onto the registration in one
-- transaction. Decided revisions stay as history.
CREATE TABLE registration_revisions (
    id                uuid PRIMARY KEY,
    registration_id   uuid NOT NULL REFERENCES registrations (id),
    is_renewal        boolean NOT NULL,
    protocol          text CHECK (protocol IN ('IPSEC_IKEV2', 'OPENVPN', 'WIREGUARD', 'SSL_TLS', 'L2TP', 'OTHER')),
    source_prefixes   cidr[] NOT NULL DEFAULT '{}',
    msisdn            text CHECK (msisdn ~ '^\+923[0-9]{9}$'),
    peer_prefixes     cidr[] NOT NULL DEFAULT '{}',
    isp               text NOT NULL REFERENCES isps (code),
    isp_subscriber_id text NOT NULL,
    purpose           text NOT NULL CHECK (char_length(purpose) BETWEEN 1 AND 1000),
    valid_from        timestamptz NOT NULL,
    valid_until       timestamptz NOT NULL,
    large_prefix_justification text,
    state             text NOT NULL CHECK (state IN (
                          'ISP_VERIFICATION', 'UNDER_REVIEW', 'NEEDS_INFO', 'ACTIVE', 'REJECTED', 'WITHDRAWN')),
    state_time        timestamptz NOT NULL DEFAULT now(),
    create_time       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT registration_revisions_validity CHECK (valid_until > valid_from),
    CONSTRAINT registration_revisions_has_source CHECK (cardinality(source_prefixes) > 0 OR msisdn IS NOT NULL)
);
-- At most one undecided revision per registration.
CREATE UNIQUE INDEX registration_revisions_one_pending
    ON registration_revisions (registration_id) WHERE state IN ('ISP_VERIFICATION', 'UNDER_REVIEW', 'NEEDS_INFO');
CREATE INDEX registration_revisions_queue_idx ON registration_revisions (state, state_time, id);
CREATE TRIGGER registration_revisions_legal_transition
    BEFORE INSERT OR UPDATE OF state ON registration_revisions
    FOR EACH ROW EXECUTE FUNCTION check_state_transition();

ALTER TABLE audit_events ADD COLUMN revision_id uuid;

-- The change feed. `feed_state` is a single row: incrementing its counter
-- takes a row lock held to commit, so serials are handed out in commit order
-- and a rolled-back transaction leaves no gap. Readers therefore never see
-- serial n+1 committed before n.
CREATE TABLE feed_state (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    session_id  uuid NOT NULL,
    last_serial bigint NOT NULL DEFAULT 0
);
INSERT INTO feed_state (session_id) VALUES (gen_random_uuid());

-- One row per announced or withdrawn source prefix. Together the rows are
-- also the history that as-of lookups answer from.
CREATE TABLE change_feed (
    serial               bigint PRIMARY KEY,
    registration_id      uuid NOT NULL REFERENCES registrations (id),
    op                   text NOT NULL CHECK (op IN ('ANNOUNCE', 'WITHDRAW')),
    prefix               cidr NOT NULL,
    peer_prefixes        cidr[] NOT NULL,
    reference            text NOT NULL,
    kind                 text NOT NULL,
    institution_category text NOT NULL,
    valid_from           timestamptz NOT NULL,
    valid_until          timestamptz NOT NULL,
    commit_time          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX change_feed_registration_idx ON change_feed (registration_id, serial);

-- Keeps `active_prefixes` and the change feed in step with the registrations
-- table: whenever a registration enters or leaves ACTIVE, or its prefixes,
-- peers or validity change while ACTIVE, the old entries are withdrawn and the
-- new ones announced, in the same transaction. No code path can forget it.
-- The serial of the last row written is left in the transaction-local setting
-- vpnregistry.feed_serial for the service to return (read-your-writes).
CREATE FUNCTION registrations_sync_active_set() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was_active boolean := TG_OP = 'UPDATE' AND OLD.state = 'ACTIVE';
    is_active  boolean := NEW.state = 'ACTIVE';
    changed    boolean := TG_OP = 'UPDATE' AND (
                              OLD.source_prefixes IS DISTINCT FROM NEW.source_prefixes
                           OR OLD.peer_prefixes IS DISTINCT FROM NEW.peer_prefixes
                           OR OLD.valid_from IS DISTINCT FROM NEW.valid_from
                           OR OLD.valid_until IS DISTINCT FROM NEW.valid_until);
    withdraw   int := 0;
    announce   int := 0;
    base       bigint;
    category   text;
BEGIN
    IF was_active AND (NOT is_active OR changed) THEN
        withdraw := cardinality(OLD.source_prefixes);
    END IF;
    IF is_active AND (NOT was_active OR changed) THEN
        announce := cardinality(NEW.source_prefixes);
    END IF;
    IF withdraw + announce = 0 THEN
        RETURN NULL;
    END IF;

    UPDATE feed_state SET last_serial = last_serial + withdraw + announce
        RETURNING last_serial - withdraw - announce INTO base;
    SELECT i.category INTO category FROM institutions i WHERE i.id = NEW.institution_id;

    IF withdraw > 0 THEN
        DELETE FROM active_prefixes WHERE registration_id = OLD.id;
        INSERT INTO change_feed (serial, registration_id, op, prefix, peer_prefixes, reference, kind,
                                 institution_category, valid_from, valid_until)
        SELECT base + p.n, OLD.id, 'WITHDRAW', p.prefix, OLD.peer_prefixes, OLD.reference, OLD.kind,
               category, OLD.valid_from, OLD.valid_until
          FROM unnest(OLD.source_prefixes) WITH ORDINALITY AS p(prefix, n);
    END IF;
    IF announce > 0 THEN
        INSERT INTO active_prefixes (registration_id, institution_id, prefix)
        SELECT NEW.id, NEW.institution_id, p FROM unnest(NEW.source_prefixes) AS p;
        INSERT INTO change_feed (serial, registration_id, op, prefix, peer_prefixes, reference, kind,
                                 institution_category, valid_from, valid_until)
        SELECT base + withdraw + p.n, NEW.id, 'ANNOUNCE', p.prefix, NEW.peer_prefixes, NEW.reference, NEW.kind,
               category, NEW.valid_from, NEW.valid_until
          FROM unnest(NEW.source_prefixes) WITH ORDINALITY AS p(prefix, n);
    END IF;
    PERFORM set_config('vpnregistry.feed_serial', (base + withdraw + announce)::text, true);
    RETURN NULL;
END
$$;
CREATE TRIGGER registrations_sync_active_set
    AFTER INSERT OR UPDATE ON registrations
    FOR EACH ROW EXECUTE FUNCTION registrations_sync_active_set();
