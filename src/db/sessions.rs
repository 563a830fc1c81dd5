//! Console sessions, shared by every replica: a row per signed-in browser,
//! keyed by the SHA-256 of the id its cookie holds. Sign-in, sign-out and
//! revocation are audited under the user.

use std::net::IpAddr;

use serde_json::json;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, accounts, audit};

/// Sessions one user holds at most (browsers, devices): a new sign-in ends
/// the user's oldest beyond these, never anyone else's.
pub const MAX_PER_USER: i64 = 8;
use crate::domain::account::{SESSION_IDLE, SESSION_LIFETIME};
use crate::domain::principal::Actor;

/// A session to start.
pub struct NewSession<'a> {
    pub id_hash: [u8; 32],
    pub user: Uuid,
    pub email_key: &'a str,
    pub csrf: &'a str,
    pub user_agent: &'a str,
    pub address: Option<IpAddr>,
    /// How the user signed in (password, password and TOTP, recovery code).
    pub method: &'a str,
}

/// Starts a session after a successful sign-in: forgets the address's
/// failures, ends the user's expired sessions, audits the sign-in.
pub async fn start(pool: &PgPool, s: &NewSession<'_>, actor: &Actor) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "DELETE FROM console_sessions WHERE user_id = $1
            AND (last_seen_time < now() - make_interval(secs => $2) OR create_time < now() - make_interval(secs => $3))",
    )
    .bind(s.user)
    .bind(SESSION_IDLE.as_secs_f64())
    .bind(SESSION_LIFETIME.as_secs_f64())
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO console_sessions (id_hash, user_id, csrf, user_agent, address) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&s.id_hash[..])
    .bind(s.user)
    .bind(s.csrf)
    .bind(s.user_agent)
    .bind(s.address.map(ipnet::IpNet::from))
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "DELETE FROM console_sessions WHERE id_hash IN (
             SELECT id_hash FROM console_sessions WHERE user_id = $1 ORDER BY create_time DESC, id_hash OFFSET $2)",
    )
    .bind(s.user)
    .bind(MAX_PER_USER)
    .execute(&mut *tx)
    .await?;
    accounts::clear_failures(&mut tx, s.email_key).await?;
    let changes = json!([{ "field": "method", "before": null, "after": s.method },
                         { "field": "address", "before": null, "after": s.address.map(|a| a.to_string()) },
                         { "field": "user_agent", "before": null, "after": s.user_agent }]);
    audit::append(
        &mut tx,
        audit::Entry::about("user", s.user, "SIGNED_IN", actor, changes),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// An open session: whose, and its CSRF token.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Open {
    pub user_id: Uuid,
    pub csrf: String,
}

/// The session with this id hash if it is still open (neither idle too
/// long nor too old), marking it seen (at most once a minute: a write per
/// page would be a write per click).
pub async fn find(pool: &PgPool, id_hash: &[u8; 32]) -> Result<Option<Open>, StoreError> {
    Ok(sqlx::query_as(
        "UPDATE console_sessions
            SET last_seen_time = CASE WHEN last_seen_time < now() - interval '1 minute' THEN now()
                                      ELSE last_seen_time END
          WHERE id_hash = $1
            AND last_seen_time >= now() - make_interval(secs => $2)
            AND create_time >= now() - make_interval(secs => $3)
          RETURNING user_id, csrf",
    )
    .bind(&id_hash[..])
    .bind(SESSION_IDLE.as_secs_f64())
    .bind(SESSION_LIFETIME.as_secs_f64())
    .fetch_optional(pool)
    .await?)
}

/// Ends a session (sign-out); audited when there was one.
pub async fn end(pool: &PgPool, id_hash: &[u8; 32], actor_of: impl FnOnce(Uuid) -> Actor) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    let ended: Option<Uuid> = sqlx::query_scalar("DELETE FROM console_sessions WHERE id_hash = $1 RETURNING user_id")
        .bind(&id_hash[..])
        .fetch_optional(&mut *tx)
        .await?;
    if let Some(user) = ended {
        let actor = actor_of(user);
        audit::append(
            &mut tx,
            audit::Entry::about("user", user, "SIGNED_OUT", &actor, json!([])),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// One of a user's sessions as "signed in on ..." lists it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Listed {
    /// The first 16 hex digits of the id's hash: names the session in a
    /// form without revealing anything that signs in.
    pub handle: String,
    pub create_time: OffsetDateTime,
    pub last_seen_time: OffsetDateTime,
    pub user_agent: String,
    pub address: Option<ipnet::IpNet>,
}

/// A user's open sessions, newest first.
pub async fn list(pool: &PgPool, user: Uuid) -> Result<Vec<Listed>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT substr(encode(id_hash, 'hex'), 1, 16) AS handle, create_time, last_seen_time, user_agent, address
           FROM console_sessions
          WHERE user_id = $1
            AND last_seen_time >= now() - make_interval(secs => $2)
            AND create_time >= now() - make_interval(secs => $3)
          ORDER BY create_time DESC",
    )
    .bind(user)
    .bind(SESSION_IDLE.as_secs_f64())
    .bind(SESSION_LIFETIME.as_secs_f64())
    .fetch_all(pool)
    .await?)
}

/// Ends one of `user`'s sessions by its handle; false when there is none.
pub async fn revoke(pool: &PgPool, user: Uuid, handle: &str, actor: &Actor) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let revoked = sqlx::query(
        "DELETE FROM console_sessions
          WHERE user_id = $1 AND substr(encode(id_hash, 'hex'), 1, 16) = $2 AND length($2) = 16",
    )
    .bind(user)
    .bind(handle)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    if revoked {
        let changes = json!([{ "field": "session", "before": handle, "after": null }]);
        audit::append(
            &mut tx,
            audit::Entry::about("user", user, "SESSION_REVOKED", actor, changes),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(revoked)
}

/// Forgets sessions past their idle or absolute limit (housekeeping; an
/// expired session is refused whether or not it was deleted).
pub async fn prune(pool: &PgPool) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "DELETE FROM console_sessions
          WHERE last_seen_time < now() - make_interval(secs => $1) OR create_time < now() - make_interval(secs => $2)",
    )
    .bind(SESSION_IDLE.as_secs_f64())
    .bind(SESSION_LIFETIME.as_secs_f64())
    .execute(pool)
    .await?
    .rows_affected())
}
