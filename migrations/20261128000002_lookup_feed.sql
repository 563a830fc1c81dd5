-- What the in-memory lookup replicas need from the change feed: the owning
-- institution (an institution may look up only its own addresses), a wake-up
-- notification per commit, an index for as-of (history) lookups, and a
-- notification when credentials change so servers can keep them in memory.

ALTER TABLE change_feed ADD COLUMN institution_id uuid;
UPDATE change_feed f SET institution_id = r.institution_id FROM registrations r WHERE r.id = f.registration_id;
ALTER TABLE change_feed ALTER COLUMN institution_id SET NOT NULL;

-- As-of lookups search the history by containing prefix (SP-GiST: see
-- shared/bench/postgres on GiST inet_ops degrading).
CREATE INDEX change_feed_prefix_idx ON change_feed USING spgist (prefix inet_ops);

CREATE OR REPLACE FUNCTION registrations_sync_active_set() RETURNS trigger LANGUAGE plpgsql AS $$
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
        INSERT INTO change_feed (serial, registration_id, institution_id, op, prefix, peer_prefixes, reference, kind,
                                 institution_category, valid_from, valid_until)
        SELECT base + p.n, OLD.id, OLD.institution_id, 'WITHDRAW', p.prefix, OLD.peer_prefixes, OLD.reference,
               OLD.kind, category, OLD.valid_from, OLD.valid_until
          FROM unnest(OLD.source_prefixes) WITH ORDINALITY AS p(prefix, n);
    END IF;
    IF announce > 0 THEN
        INSERT INTO active_prefixes (registration_id, institution_id, prefix)
        SELECT NEW.id, NEW.institution_id, p FROM unnest(NEW.source_prefixes) AS p;
        INSERT INTO change_feed (serial, registration_id, institution_id, op, prefix, peer_prefixes, reference, kind,
                                 institution_category, valid_from, valid_until)
        SELECT base + withdraw + p.n, NEW.id, NEW.institution_id, 'ANNOUNCE', p.prefix, NEW.peer_prefixes,
               NEW.reference, NEW.kind, category, NEW.valid_from, NEW.valid_until
          FROM unnest(NEW.source_prefixes) WITH ORDINALITY AS p(prefix, n);
    END IF;
    PERFORM set_config('vpnregistry.feed_serial', (base + withdraw + announce)::text, true);
    -- Delivered at commit; replicas then read the feed table (the source of truth).
    PERFORM pg_notify('vpnregistry_feed', (base + withdraw + announce)::text);
    RETURN NULL;
END
$$;

CREATE FUNCTION api_tokens_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('vpnregistry_tokens', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER api_tokens_notify
    AFTER INSERT OR UPDATE OR DELETE ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION api_tokens_notify();
