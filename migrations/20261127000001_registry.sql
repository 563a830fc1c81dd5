-- The registry's base schema: institutions, API credentials, registrations,
-- the audit trail and idempotency keys. Enumerations are stored as text with
-- CHECK constraints so that a SQL session can never write a value the service
-- does not know, and so that psql output stays readable for the operator.

-- btree_gist lets one GiST exclusion constraint combine `inet &&` with
-- `uuid <>` (overlapping prefixes of *different* institutions).
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE institutions (
    id                uuid PRIMARY KEY,
    category          text NOT NULL CHECK (category IN (
                          'BANK', 'FOREIGN_MISSION', 'IT_COMPANY', 'CALL_CENTER_BPO',
                          'COMPANY', 'GOVERNMENT', 'FREELANCER')),
    legal_name        text NOT NULL CHECK (char_length(legal_name) BETWEEN 1 AND 200),
    -- Identifiers are stored normalised (see src/domain/identifiers.rs).
    cnic              text CHECK (cnic ~ '^[1-7][0-9]{12}$'),
    ntn               text CHECK (ntn ~ '^([0-9]{7}(-[0-9])?|[1-7][0-9]{12})$'),
    secp_number       text,
    pseb_number       text,
    pseb_expiry       date,
    sbp_licence       text,
    accreditation_ref text,
    country           text CHECK (country ~ '^[A-Z]{2}$'),
    contact_email     text NOT NULL,
    contact_phone     text NOT NULL CHECK (contact_phone ~ '^\+[1-9][0-9]{6,14}$'),
    -- Optimistic concurrency: the etag is derived from this counter.
    version           bigint NOT NULL DEFAULT 1,
    create_time       timestamptz NOT NULL DEFAULT now(),
    update_time       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT institutions_cnic_required
        CHECK (category = 'FOREIGN_MISSION' OR cnic IS NOT NULL),
    CONSTRAINT institutions_ntn_required
        CHECK (category NOT IN ('BANK', 'IT_COMPANY', 'CALL_CENTER_BPO', 'COMPANY') OR ntn IS NOT NULL),
    CONSTRAINT institutions_pseb_pair
        CHECK ((pseb_number IS NULL) = (pseb_expiry IS NULL)),
    CONSTRAINT institutions_pseb_required
        CHECK (category NOT IN ('IT_COMPANY', 'CALL_CENTER_BPO') OR pseb_number IS NOT NULL),
    CONSTRAINT institutions_sbp_required
        CHECK (category <> 'BANK' OR sbp_licence IS NOT NULL),
    CONSTRAINT institutions_mission_required
        CHECK (category <> 'FOREIGN_MISSION' OR (accreditation_ref IS NOT NULL AND country IS NOT NULL))
);
CREATE INDEX institutions_category_idx ON institutions (category, id);

-- Bearer credentials. Only the SHA-256 of a token is kept; the token itself
-- is printed once by `vpn-registry token issue`.
CREATE TABLE api_tokens (
    id             uuid PRIMARY KEY,
    token_hash     bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    role           text NOT NULL CHECK (role IN ('admin', 'reviewer', 'isp', 'lookup', 'institution')),
    institution_id uuid REFERENCES institutions (id),
    isp_code       text,
    name           text NOT NULL,
    create_time    timestamptz NOT NULL DEFAULT now(),
    revoke_time    timestamptz,
    CONSTRAINT api_tokens_institution_scope CHECK ((role = 'institution') = (institution_id IS NOT NULL)),
    CONSTRAINT api_tokens_isp_scope CHECK ((role = 'isp') = (isp_code IS NOT NULL))
);

-- Human references (VPN-2026-000123) number registrations across years;
-- gaps after a rolled-back submission are harmless.
CREATE SEQUENCE registration_reference_seq;

CREATE TABLE registrations (
    id                uuid PRIMARY KEY,
    reference         text NOT NULL UNIQUE,
    institution_id    uuid NOT NULL REFERENCES institutions (id),
    kind              text NOT NULL CHECK (kind IN ('VPN', 'CALL_CENTER_VOIP', 'VIDEO_CONFERENCING')),
    protocol          text CHECK (protocol IN ('IPSEC_IKEV2', 'OPENVPN', 'WIREGUARD', 'SSL_TLS', 'L2TP', 'OTHER')),
    source_prefixes   cidr[] NOT NULL DEFAULT '{}',
    msisdn            text CHECK (msisdn ~ '^\+923[0-9]{9}$'),
    peer_prefixes     cidr[] NOT NULL DEFAULT '{}',
    isp               text NOT NULL,
    isp_subscriber_id text NOT NULL,
    purpose           text NOT NULL CHECK (char_length(purpose) BETWEEN 1 AND 1000),
    valid_from        timestamptz NOT NULL,
    valid_until       timestamptz NOT NULL,
    state             text NOT NULL CHECK (state IN (
                          'SUBMITTED', 'ISP_VERIFICATION', 'UNDER_REVIEW', 'NEEDS_INFO', 'ACTIVE',
                          'REJECTED', 'SUSPENDED', 'REVOKED', 'EXPIRED', 'WITHDRAWN')),
    version           bigint NOT NULL DEFAULT 1,
    create_time       timestamptz NOT NULL DEFAULT now(),
    update_time       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT registrations_validity CHECK (valid_until > valid_from),
    CONSTRAINT registrations_has_source CHECK (cardinality(source_prefixes) > 0 OR msisdn IS NOT NULL),
    CONSTRAINT registrations_protocol_only_vpn CHECK ((kind = 'VPN') = (protocol IS NOT NULL))
);
CREATE INDEX registrations_institution_idx ON registrations (institution_id, id);
CREATE INDEX registrations_state_idx ON registrations (state, id);

-- Source prefixes of ACTIVE registrations, one row each. The exclusion
-- constraint is the last line of defence for the registry's central rule: two
-- different institutions never hold overlapping active prefixes, whatever
-- code path (or psql session) writes here.
CREATE TABLE active_prefixes (
    registration_id uuid NOT NULL REFERENCES registrations (id),
    institution_id  uuid NOT NULL REFERENCES institutions (id),
    prefix          cidr NOT NULL,
    PRIMARY KEY (registration_id, prefix),
    CONSTRAINT active_prefixes_no_overlap
        EXCLUDE USING gist (prefix inet_ops WITH &&, institution_id WITH <>)
);
-- The friendly pre-check at submission searches by prefix alone; SP-GiST
-- stays fast where GiST inet_ops degrades (shared/bench/postgres).
CREATE INDEX active_prefixes_prefix_idx ON active_prefixes USING spgist (prefix inet_ops);

-- The append-only history of every write. `changes` holds
-- [{"field": ..., "before": ..., "after": ...}] for the fields that changed.
CREATE TABLE audit_events (
    sequence           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject_type       text NOT NULL CHECK (subject_type IN ('institution', 'registration', 'token')),
    subject_id         uuid NOT NULL,
    action             text NOT NULL,
    actor_principal_id uuid,
    actor_name         text NOT NULL,
    actor_role         text NOT NULL,
    request_id         text,
    from_state         text,
    to_state           text,
    reason_code        text,
    reason             text,
    changes            jsonb NOT NULL DEFAULT '[]',
    create_time        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_events_subject_idx ON audit_events (subject_id, sequence);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- Idempotency keys: a retried create/submit with the same key returns what
-- the first call created. The primary key serialises racing duplicates (the
-- second INSERT waits for the first transaction and then sees its row).
CREATE TABLE idempotency_keys (
    scope        text NOT NULL,
    request_id   text NOT NULL,
    operation    text NOT NULL,
    request_hash bytea NOT NULL,
    resource_id  uuid NOT NULL,
    create_time  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, request_id)
);
