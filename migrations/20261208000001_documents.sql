-- Evidence (issue 22): the documents an application is decided on, encrypted
-- at rest. The key-encryption keys live in files outside the database: a
-- dump of these tables opens nothing.

CREATE TABLE documents (
    id              uuid PRIMARY KEY,
    institution_id  uuid NOT NULL REFERENCES institutions (id),
    -- A registration's document; NULL for one of the institution itself.
    registration_id uuid REFERENCES registrations (id),
    type            text NOT NULL,
    file_name       text NOT NULL CHECK (char_length(file_name) BETWEEN 1 AND 200),
    -- Decided by the content, never the name.
    media_type      text NOT NULL CHECK (media_type IN ('application/pdf', 'image/jpeg', 'image/png')),
    size_bytes      bigint NOT NULL CHECK (size_bytes > 0),
    sha256          bytea NOT NULL CHECK (octet_length(sha256) = 32),
    -- The data key, wrapped by the key-encryption key `key_id` (AES-256-GCM:
    -- nonce and sealed key), and the STREAM nonce prefix of the content.
    key_id          text NOT NULL,
    wrapped_key     bytea NOT NULL,
    nonce_prefix    bytea NOT NULL CHECK (octet_length(nonce_prefix) = 7),
    status          text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'VERIFIED', 'REJECTED')),
    status_reason   text,
    decide_time     timestamptz,
    -- The upload's idempotency key, per institution.
    request_id      text NOT NULL,
    -- The document this one replaced (an amendment or renewal's new version);
    -- the replaced one keeps its content and verdict for the history.
    replaces        uuid REFERENCES documents (id),
    supersede_time  timestamptz,
    -- Deleted by its owner before a decision (content destroyed with it).
    delete_time     timestamptz,
    create_time     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (institution_id, request_id)
);
CREATE INDEX documents_registration_idx ON documents (registration_id) WHERE registration_id IS NOT NULL;
CREATE INDEX documents_institution_idx ON documents (institution_id);

-- The sealed content, one row per segment (64 KiB of plaintext each), so
-- uploads and downloads stream in bounded memory.
CREATE TABLE document_segments (
    -- Checked at commit: an upload writes its segments as they arrive and
    -- its document row last, once the content is complete and typed.
    document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    seq         integer NOT NULL,
    sealed      bytea NOT NULL,
    PRIMARY KEY (document_id, seq)
);
ALTER TABLE document_segments ALTER COLUMN sealed SET STORAGE EXTERNAL;

ALTER TABLE audit_events DROP CONSTRAINT audit_events_subject_type_check;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_subject_type_check
    CHECK (subject_type IN ('institution', 'registration', 'token', 'isp', 'feed', 'user', 'document'));
