//! The role `serve` runs as cannot forge what it must never write: each
//! forgery measured against an earlier version, tried again as that role.

use sqlx::PgPool;
use vpn_registry::domain::principal::Role;
use vpn_registry::pb::InstitutionCategory as C;

use crate::helpers::*;

/// Runs `statement` as the runtime role; the SQLSTATE it failed with.
async fn refused(runtime: &PgPool, statement: &str) -> String {
    let err = sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(runtime)
        .await
        .expect_err(statement);
    err.as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned())
        .unwrap_or_else(|| panic!("{statement}: {err}"))
}

#[sqlx::test]
async fn the_runtime_role_cannot_forge_credentials_the_lifecycle_the_feed_or_history(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, bank) = app.enrol(C::Bank).await;
    let active = app.active(&bank, &["8.8.8.0/24"]).await;
    let pending = app.submit(&bank, &["9.9.9.0/24"]).await;
    let (revoked, _) = app
        .issue(Role::Reviewer, std::time::Duration::from_secs(3600), None)
        .await;
    sqlx::query("UPDATE api_tokens SET revoke_time = now() WHERE id = $1")
        .bind(revoked)
        .execute(&app.pool)
        .await
        .unwrap();
    let runtime = runtime_pool(&app.pool).await;
    let serial_before = app.last_serial().await;
    let forgeries = [
        // Minting a reviewer token, un-revoking one.
        "INSERT INTO api_tokens (id, token_hash, role, name, expire_time)
         VALUES (gen_random_uuid(), sha256('forged'), 'reviewer', 'forged', now() + interval '1 day')"
            .to_owned(),
        format!("UPDATE api_tokens SET token_hash = sha256('forged') WHERE id = '{revoked}'"),
        // Loosening the state machine the trigger trusts.
        "INSERT INTO lifecycle_transitions (from_state, to_state) VALUES ('REJECTED', 'ACTIVE')".to_owned(),
        "DELETE FROM lifecycle_transitions".to_owned(),
        // Rewriting the past, announcing what was never approved.
        "UPDATE active_history SET active_until = NULL".to_owned(),
        "DELETE FROM active_history".to_owned(),
        "UPDATE feed_state SET last_serial = last_serial + 1".to_owned(),
        format!(
            "INSERT INTO change_feed (serial, registration_id, institution_id, op, prefix, peer_prefixes, reference,
                                      kind, institution_category, valid_from, valid_until, isp)
             SELECT last_serial + 1, id, institution_id, 'ANNOUNCE', '9.9.9.0/24', '{{}}', reference, kind, 'BANK',
                    now(), now() + interval '1 year', isp
               FROM registrations, feed_state WHERE id = '{}'",
            pending.id
        ),
        format!(
            "INSERT INTO active_prefixes (registration_id, institution_id, prefix)
             SELECT id, institution_id, '9.9.9.0/24' FROM registrations WHERE id = '{}'",
            pending.id
        ),
        "DELETE FROM active_prefixes".to_owned(),
        // Rewriting the audit trail.
        "UPDATE audit_events SET reason = 'nothing happened'".to_owned(),
        "DELETE FROM audit_events".to_owned(),
        // The schema itself.
        "DROP TRIGGER registrations_sync_active_set ON registrations".to_owned(),
    ];
    for forgery in &forgeries {
        assert_eq!(refused(&runtime, forgery).await, "42501", "not refused: {forgery}");
    }
    // It manages institutions' and ISPs' keys, so it may revoke and expire
    // keys, but the operator's credentials are not even visible to it for
    // that (row-level security): un-revoking or prolonging one changes nothing.
    for statement in [
        format!("UPDATE api_tokens SET revoke_time = NULL WHERE id = '{revoked}'"),
        format!("UPDATE api_tokens SET expire_time = now() + interval '10 years' WHERE id = '{revoked}'"),
    ] {
        let touched = sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&runtime)
            .await
            .unwrap()
            .rows_affected();
        assert_eq!(touched, 0, "{statement}");
    }
    // What it must write, it can: a credential's last use, an institution's key.
    sqlx::query("SELECT api_tokens_record_use(ARRAY[$1], ARRAY[now()])")
        .bind(revoked)
        .execute(&runtime)
        .await
        .unwrap();
    let (institution, _) = app.enrol(C::ItCompany).await;
    sqlx::query(
        "INSERT INTO api_tokens (id, token_hash, role, institution_id, name, expire_time)
         VALUES (gen_random_uuid(), sha256('key'), 'institution', $1::uuid, 'key', now() + interval '1 day')",
    )
    .bind(&institution.id)
    .execute(&runtime)
    .await
    .unwrap();
    assert_eq!(app.last_serial().await, serial_before, "the feed is untouched");
    let lookup = app.token(Role::Lookup).await;
    assert!(!app.check_address(&lookup, "9.9.9.9", 0).await.registered);
    assert!(
        app.check_address(&lookup, "8.8.8.8", active.feed_serial)
            .await
            .registered
    );
    let revoked_still: bool = sqlx::query_scalar("SELECT revoke_time IS NOT NULL FROM api_tokens WHERE id = $1")
        .bind(revoked)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(revoked_still);
}
