-- The runtime role cannot forge what it must never write (issue 19).
--
-- `serve` runs as a role that may write the registry's own records
-- (institutions, registrations, revisions, ISPs, idempotency keys) and append
-- audit events, and nothing else: `vpn-registry migrate` grants exactly that
-- (db::grant_runtime). What follows from a registration's state (the active
-- set, the change feed, its serial counter and the history of active
-- intervals) is written only by these triggers, which now run as their owner,
-- the schema owner; the runtime role itself holds no write privilege on those
-- tables. Credentials and the lifecycle table are written only by operators
-- (the schema owner's commands); the runtime role may record a credential's
-- last use and nothing else of it.

ALTER FUNCTION registrations_sync_active_set() SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION change_feed_record_history() SECURITY DEFINER SET search_path = public, pg_temp;
-- Reads the lifecycle table on behalf of whoever changes a state; as its
-- owner it does not depend on what that caller may read.
ALTER FUNCTION check_state_transition() SECURITY DEFINER SET search_path = public, pg_temp;

REVOKE ALL ON FUNCTION registrations_sync_active_set() FROM PUBLIC;
REVOKE ALL ON FUNCTION change_feed_record_history() FROM PUBLIC;
REVOKE ALL ON FUNCTION check_state_transition() FROM PUBLIC;
