-- Bounded history. Until now the change feed was both what replicas and
-- gateways resume from and the history that as-of (`at`) lookups read, so
-- nothing could ever be pruned. The two are split:
--   * `active_history`: one row per interval during which a (registration,
--     prefix) entry was active, kept for --history-retention (400 days);
--   * `change_feed`: kept for --feed-retention (7 days); a replica or
--     watcher behind what was pruned reloads or gets a reset and a snapshot.

CREATE TABLE active_history (
    registration_id      uuid NOT NULL REFERENCES registrations (id),
    prefix               cidr NOT NULL,
    institution_id       uuid NOT NULL,
    peer_prefixes        cidr[] NOT NULL,
    reference            text NOT NULL,
    kind                 text NOT NULL,
    institution_category text NOT NULL,
    valid_from           timestamptz NOT NULL,
    valid_until          timestamptz NOT NULL,
    isp                  text NOT NULL,
    -- The feed serial of the announcement that began the interval.
    announce_serial      bigint NOT NULL,
    -- Commit times of the announcement and of the next feed row for the same
    -- (registration, prefix), which ended it; NULL while active.
    active_from          timestamptz NOT NULL,
    active_until         timestamptz,
    PRIMARY KEY (registration_id, prefix, announce_serial),
    CHECK (active_until IS NULL OR active_until >= active_from)
);
-- As-of lookups search by containing prefix (SP-GiST: see shared/bench/postgres).
CREATE INDEX active_history_prefix_idx ON active_history USING spgist (prefix inet_ops);
-- Closing the open interval of a (registration, prefix) on its next feed row.
CREATE UNIQUE INDEX active_history_open_idx ON active_history (registration_id, prefix) WHERE active_until IS NULL;
-- Pruning by age.
CREATE INDEX active_history_until_idx ON active_history (active_until) WHERE active_until IS NOT NULL;
CREATE INDEX change_feed_commit_time_idx ON change_feed (commit_time);

-- Every feed row already written, as intervals: an announcement lasts until
-- the next row for its (registration, prefix).
INSERT INTO active_history (registration_id, prefix, institution_id, peer_prefixes, reference, kind,
                            institution_category, valid_from, valid_until, isp, announce_serial, active_from,
                            active_until)
SELECT registration_id, prefix, institution_id, peer_prefixes, reference, kind, institution_category,
       valid_from, valid_until, isp, serial, commit_time, next_commit_time
  FROM (SELECT f.*, lead(commit_time) OVER (PARTITION BY registration_id, prefix ORDER BY serial) AS next_commit_time
          FROM change_feed f) rows
 WHERE op = 'ANNOUNCE';

-- From now on the history follows every feed row as it is written.
CREATE FUNCTION change_feed_record_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE active_history SET active_until = NEW.commit_time
     WHERE registration_id = NEW.registration_id AND prefix = NEW.prefix AND active_until IS NULL;
    IF NEW.op = 'ANNOUNCE' THEN
        INSERT INTO active_history (registration_id, prefix, institution_id, peer_prefixes, reference, kind,
                                    institution_category, valid_from, valid_until, isp, announce_serial,
                                    active_from)
        VALUES (NEW.registration_id, NEW.prefix, NEW.institution_id, NEW.peer_prefixes, NEW.reference, NEW.kind,
                NEW.institution_category, NEW.valid_from, NEW.valid_until, NEW.isp, NEW.serial, NEW.commit_time);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER change_feed_record_history
    AFTER INSERT ON change_feed
    FOR EACH ROW EXECUTE FUNCTION change_feed_record_history();

-- What has been pruned: feed rows up to `feed_pruned_through` are gone (a
-- replica or watcher behind it cannot catch up from the feed), and history
-- before `history_since` may be incomplete (as-of lookups before it are
-- refused rather than answered wrongly).
ALTER TABLE feed_state
    ADD COLUMN feed_pruned_through bigint NOT NULL DEFAULT 0,
    ADD COLUMN history_since timestamptz NOT NULL DEFAULT '-infinity';

-- Pruning, for the runtime role, which may not delete feed rows itself (the
-- feed is append-only for it): feed rows older than `feed_keep` and history
-- intervals that ended before `history_keep`. Several servers may call it at
-- once: one prunes, the others return at once. Returns the rows removed.
CREATE FUNCTION prune_history(feed_keep interval, history_keep interval,
                              OUT feed_rows bigint, OUT history_rows bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    through bigint;
BEGIN
    feed_rows := 0;
    history_rows := 0;
    IF NOT pg_try_advisory_xact_lock(hashtext('vpnregistry_prune_history')) THEN
        RETURN;
    END IF;
    SELECT max(serial) INTO through FROM change_feed WHERE commit_time < now() - feed_keep;
    IF through IS NOT NULL THEN
        DELETE FROM change_feed WHERE serial <= through;
        GET DIAGNOSTICS feed_rows = ROW_COUNT;
        UPDATE feed_state SET feed_pruned_through = greatest(feed_pruned_through, through);
    END IF;
    DELETE FROM active_history WHERE active_until < now() - history_keep;
    GET DIAGNOSTICS history_rows = ROW_COUNT;
    IF history_rows > 0 THEN
        UPDATE feed_state SET history_since = greatest(history_since, now() - history_keep);
    END IF;
END
$$;
REVOKE ALL ON FUNCTION prune_history(interval, interval) FROM PUBLIC;
