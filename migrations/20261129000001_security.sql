-- Secure by default (issue 8).
--
-- Credentials expire, can be rotated with a grace period, and can be bound to
-- a client certificate (RFC 8705 style: the SHA-256 of its DER). Last use is
-- written back in batches by the servers, never per call.
ALTER TABLE api_tokens
    ADD COLUMN expire_time   timestamptz,
    ADD COLUMN cert_sha256   bytea CHECK (octet_length(cert_sha256) = 32),
    ADD COLUMN last_use_time timestamptz,
    ADD COLUMN rotated_from  uuid REFERENCES api_tokens (id);
UPDATE api_tokens
   SET expire_time = create_time + CASE role WHEN 'admin' THEN interval '30 days' ELSE interval '365 days' END;
ALTER TABLE api_tokens ALTER COLUMN expire_time SET NOT NULL;

-- Operators' actions on reference data and the feed are audited too: adding
-- an ISP (subject: the nil UUID, the code in the changes) and starting a new
-- feed session (subject: the new session id).
ALTER TABLE audit_events DROP CONSTRAINT audit_events_subject_type_check;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_subject_type_check
    CHECK (subject_type IN ('institution', 'registration', 'token', 'isp', 'feed'));

-- An ISP's lookups and change stream cover only the registrations that name
-- it, so the feed records the ISP of each entry. (Rows written before this
-- migration get the registration's current ISP.)
ALTER TABLE change_feed ADD COLUMN isp text;
UPDATE change_feed f SET isp = r.isp FROM registrations r WHERE r.id = f.registration_id;
ALTER TABLE change_feed ALTER COLUMN isp SET NOT NULL;

-- The same trigger as before, now also writing the ISP, and treating a change
-- of ISP on an active registration (an approved revision) as a change of the
-- entry: ISP-scoped watchers see it leave one ISP's set and enter another's.
CREATE OR REPLACE FUNCTION registrations_sync_active_set() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was_active boolean := TG_OP = 'UPDATE' AND OLD.state = 'ACTIVE';
    is_active  boolean := NEW.state = 'ACTIVE';
    changed    boolean := TG_OP = 'UPDATE' AND (
                              OLD.source_prefixes IS DISTINCT FROM NEW.source_prefixes
                           OR OLD.peer_prefixes IS DISTINCT FROM NEW.peer_prefixes
                           OR OLD.valid_from IS DISTINCT FROM NEW.valid_from
                           OR OLD.valid_until IS DISTINCT FROM NEW.valid_until
                           OR OLD.isp IS DISTINCT FROM NEW.isp);
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
        INSERT INTO change_feed (serial, registration_id, institution_id, op, prefix, peer_prefixes, reference, kind,
                                 institution_category, valid_from, valid_until, isp)
        SELECT base + p.n, OLD.id, OLD.institution_id, 'WITHDRAW', p.prefix, OLD.peer_prefixes, OLD.reference,
               OLD.kind, category, OLD.valid_from, OLD.valid_until, OLD.isp
          FROM unnest(OLD.source_prefixes) WITH ORDINALITY AS p(prefix, n);
    END IF;
    IF announce > 0 THEN
        INSERT INTO active_prefixes (registration_id, institution_id, prefix)
        SELECT NEW.id, NEW.institution_id, p FROM unnest(NEW.source_prefixes) AS p;
        INSERT INTO change_feed (serial, registration_id, institution_id, op, prefix, peer_prefixes, reference, kind,
                                 institution_category, valid_from, valid_until, isp)
        SELECT base + withdraw + p.n, NEW.id, NEW.institution_id, 'ANNOUNCE', p.prefix, NEW.peer_prefixes,
               NEW.reference, NEW.kind, category, NEW.valid_from, NEW.valid_until, NEW.isp
          FROM unnest(NEW.source_prefixes) WITH ORDINALITY AS p(prefix, n);
    END IF;
    PERFORM set_config('vpnregistry.feed_serial', (base + withdraw + announce)::text, true);
    -- Delivered at commit; replicas then read the feed table (the source of truth).
    PERFORM pg_notify('vpnregistry_feed', (base + withdraw + announce)::text);
    RETURN NULL;
END
$$;
