-- People (issue 21): accounts with passwords and second factors, console
-- sessions shared by every replica, e-mailed single-use links, and
-- self-service API keys.

-- Institutions that signed themselves up (reviewers see the mark).
ALTER TABLE institutions ADD COLUMN self_registered boolean NOT NULL DEFAULT false;
-- A sign-up is refused when its CNIC or NTN is already registered.
CREATE INDEX institutions_cnic_idx ON institutions (cnic) WHERE cnic IS NOT NULL;
CREATE INDEX institutions_ntn_idx ON institutions (ntn) WHERE ntn IS NOT NULL;

-- One person, one organisation, one role. Rows exist only for verified
-- addresses: a sign-up or an invitation waits in account_links until its
-- e-mailed link is followed.
CREATE TABLE users (
    id                   uuid PRIMARY KEY,
    -- As typed, for display and mail; `email_key` (lower case) is unique.
    email                text NOT NULL,
    email_key            text NOT NULL UNIQUE,
    name                 text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    -- argon2id, PHC string format (algorithm, parameters and salt included).
    password_hash        text NOT NULL,
    role                 text NOT NULL CHECK (role IN ('admin', 'reviewer', 'isp', 'institution')),
    institution_id       uuid REFERENCES institutions (id),
    isp_code             text REFERENCES isps (code),
    -- An institution's owner manages its members and API keys.
    owner                boolean NOT NULL DEFAULT false,
    -- RFC 6238 secret; set when enrolment is confirmed with a first code.
    totp_secret          bytea,
    -- The last time step whose code was accepted: a code is never used twice.
    totp_last_step       bigint,
    password_change_time timestamptz NOT NULL DEFAULT now(),
    -- Removed from the organisation: signs in no more.
    remove_time          timestamptz,
    create_time          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_scope CHECK (
        (role = 'institution') = (institution_id IS NOT NULL)
        AND (role = 'isp') = (isp_code IS NOT NULL)
        AND (owner IS FALSE OR role = 'institution'))
);
CREATE INDEX users_institution_idx ON users (institution_id) WHERE institution_id IS NOT NULL;
CREATE INDEX users_isp_idx ON users (isp_code) WHERE isp_code IS NOT NULL;

-- Ten per enrolment, each usable once; only SHA-256 hashes are kept.
CREATE TABLE recovery_codes (
    user_id   uuid NOT NULL REFERENCES users (id),
    code_hash bytea NOT NULL CHECK (octet_length(code_hash) = 32),
    use_time  timestamptz,
    PRIMARY KEY (user_id, code_hash)
);

-- Console sessions: only the SHA-256 of the id the cookie holds, so that a
-- read of this table signs nobody in. Every replica reads the same rows.
CREATE TABLE console_sessions (
    id_hash        bytea PRIMARY KEY CHECK (octet_length(id_hash) = 32),
    user_id        uuid NOT NULL REFERENCES users (id),
    -- Required in every form the session posts (against cross-site posts).
    csrf           text NOT NULL,
    create_time    timestamptz NOT NULL DEFAULT now(),
    last_seen_time timestamptz NOT NULL DEFAULT now(),
    -- What the user sees in "signed in on ...".
    user_agent     text NOT NULL DEFAULT '',
    address        inet
) WITH (fillfactor = 80);
CREATE INDEX console_sessions_user_idx ON console_sessions (user_id);

-- E-mailed single-use links: verifying a sign-up, accepting an invitation,
-- resetting a password. Only the SHA-256 of the link's secret is kept.
CREATE TABLE account_links (
    token_hash  bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    purpose     text NOT NULL CHECK (purpose IN ('SIGN_UP', 'INVITATION', 'PASSWORD_RESET')),
    email_key   text NOT NULL,
    -- A reset's account.
    user_id     uuid REFERENCES users (id),
    -- What following the link creates: a sign-up's person, password hash
    -- and institution (as CreateInstitution's message, validated again on
    -- use); an invitation's role and organisation.
    payload     jsonb NOT NULL DEFAULT '{}',
    expire_time timestamptz NOT NULL,
    use_time    timestamptz,
    create_time timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX account_links_email_idx ON account_links (email_key);

-- Failed sign-ins per e-mail address (known or not, so that the delay
-- itself tells nobody whether an account exists): each failure past a few
-- doubles the wait before the next attempt is heard.
CREATE TABLE sign_in_failures (
    email_key         text PRIMARY KEY,
    failures          integer NOT NULL,
    last_failure_time timestamptz NOT NULL
);

-- Whether a key may itself manage its organisation's keys (who made a key
-- is in the audit trail).
ALTER TABLE api_tokens ADD COLUMN manages_keys boolean NOT NULL DEFAULT false;
CREATE INDEX api_tokens_institution_idx ON api_tokens (institution_id) WHERE institution_id IS NOT NULL;
CREATE INDEX api_tokens_isp_idx ON api_tokens (isp_code) WHERE isp_code IS NOT NULL;

-- The runtime role now issues, rotates and revokes keys, but only an
-- institution's or an ISP's: an administrator's or reviewer's credential is
-- still the operator's alone (row-level security binds the runtime role, not
-- the schema owner). Last-use times, which every credential has, are written
-- through a function instead of an UPDATE grant.
ALTER TABLE api_tokens ENABLE ROW LEVEL SECURITY;
CREATE POLICY api_tokens_read ON api_tokens FOR SELECT USING (true);
CREATE POLICY api_tokens_issue ON api_tokens FOR INSERT
    WITH CHECK (role IN ('institution', 'isp'));
CREATE POLICY api_tokens_change ON api_tokens FOR UPDATE
    USING (role IN ('institution', 'isp')) WITH CHECK (role IN ('institution', 'isp'));

CREATE FUNCTION api_tokens_record_use(ids uuid[], times timestamptz[]) RETURNS void
    LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE api_tokens t SET last_use_time = u.at
      FROM unnest(ids, times) AS u(id, at)
     WHERE t.id = u.id AND (t.last_use_time IS NULL OR t.last_use_time < u.at)
$$;
REVOKE ALL ON FUNCTION api_tokens_record_use(uuid[], timestamptz[]) FROM PUBLIC;

ALTER TABLE audit_events DROP CONSTRAINT audit_events_subject_type_check;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_subject_type_check
    CHECK (subject_type IN ('institution', 'registration', 'token', 'isp', 'feed', 'user'));

-- Account e-mails go through the outbox too: a row without an event,
-- carrying its message (a link's secret) until it is delivered, then
-- cleared.
ALTER TABLE notifications ALTER COLUMN registration_id DROP NOT NULL;
ALTER TABLE notifications ADD COLUMN message jsonb;
