//! People: users, their recovery codes, failed sign-ins, and the
//! organisation's members. Every change is audited in the
//! transaction that makes it (subject `user`).

use std::time::Duration;

use serde_json::json;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, audit, decode, reparse};
use crate::domain::account::{Membership, User};
use crate::domain::institution::Category;
use crate::domain::principal::Actor;
use crate::domain::refusal::Refusal;

/// A user as stored, with what signing in checks.
pub struct StoredUser {
    pub user: User,
    pub password_hash: String,
    pub totp_secret: Option<Vec<u8>>,
    pub totp_last_step: Option<i64>,
    /// The institution's category, for an institution's user.
    pub category: Option<Category>,
}

macro_rules! user_columns {
    () => {
        "u.id, u.email, u.name, u.password_hash, u.role, u.institution_id, u.isp_code, u.owner, u.totp_secret,
         u.totp_last_step, i.category
    FROM users u LEFT JOIN institutions i ON i.id = u.institution_id"
    };
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    email: String,
    name: String,
    password_hash: String,
    role: String,
    institution_id: Option<Uuid>,
    isp_code: Option<String>,
    owner: bool,
    totp_secret: Option<Vec<u8>>,
    totp_last_step: Option<i64>,
    category: Option<String>,
}

/// A user's membership from its stored columns.
fn membership(
    id: Uuid,
    role: &str,
    institution: Option<Uuid>,
    isp: Option<&str>,
    owner: bool,
) -> Result<Membership, StoreError> {
    Ok(match (role, institution, isp) {
        ("institution", Some(id), _) => Membership::Institution { id, owner },
        ("isp", _, Some(code)) => Membership::Isp(reparse(code, "isp code")?),
        ("reviewer", ..) => Membership::Reviewer,
        ("admin", ..) => Membership::Admin,
        _ => return Err(StoreError::Corrupt(format!("user {id} has role {role:?}"))),
    })
}

impl TryFrom<UserRow> for StoredUser {
    type Error = StoreError;
    fn try_from(r: UserRow) -> Result<Self, StoreError> {
        let membership = membership(r.id, &r.role, r.institution_id, r.isp_code.as_deref(), r.owner)?;
        Ok(Self {
            user: User {
                id: r.id,
                email: r.email,
                name: r.name,
                membership,
                totp_enrolled: r.totp_secret.is_some(),
            },
            password_hash: r.password_hash,
            totp_secret: r.totp_secret,
            totp_last_step: r.totp_last_step,
            category: r
                .category
                .map(|c| decode(&c, Category::from_db, "category"))
                .transpose()?,
        })
    }
}

/// The active (not removed) user with this e-mail key.
pub async fn by_email(pool: &PgPool, email_key: &str) -> Result<Option<StoredUser>, StoreError> {
    let row: Option<UserRow> = sqlx::query_as(concat!(
        "SELECT ",
        user_columns!(),
        " WHERE u.email_key = $1 AND u.remove_time IS NULL"
    ))
    .bind(email_key)
    .fetch_optional(pool)
    .await?;
    row.map(TryInto::try_into).transpose()
}

/// The active user with this id.
pub async fn by_id(pool: &PgPool, id: Uuid) -> Result<Option<StoredUser>, StoreError> {
    let row: Option<UserRow> = sqlx::query_as(concat!(
        "SELECT ",
        user_columns!(),
        " WHERE u.id = $1 AND u.remove_time IS NULL"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.map(TryInto::try_into).transpose()
}

/// Whether any account (active or removed) holds this e-mail key.
pub async fn email_taken(conn: &mut PgConnection, email_key: &str) -> Result<bool, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT FROM users WHERE email_key = $1)")
            .bind(email_key)
            .fetch_one(conn)
            .await?,
    )
}

/// A user to create.
pub struct NewUser<'a> {
    pub id: Uuid,
    pub email: &'a str,
    pub email_key: &'a str,
    pub name: &'a str,
    pub password_hash: &'a str,
    pub membership: &'a Membership,
}

/// Creates a user (its address verified by the link that brought it here)
/// and audits it; ALREADY_EXISTS when the address has an account.
pub async fn insert_user(tx: &mut PgConnection, u: &NewUser<'_>, actor: &Actor) -> Result<(), StoreError> {
    let (institution, isp, owner) = match u.membership {
        Membership::Institution { id, owner } => (Some(*id), None, *owner),
        Membership::Isp(code) => (None, Some(code.as_str()), false),
        Membership::Reviewer | Membership::Admin => (None, None, false),
    };
    sqlx::query(
        "INSERT INTO users (id, email, email_key, name, password_hash, role, institution_id, isp_code, owner)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(u.id)
    .bind(u.email)
    .bind(u.email_key)
    .bind(u.name)
    .bind(u.password_hash)
    .bind(u.membership.role().as_str())
    .bind(institution)
    .bind(isp)
    .bind(owner)
    .execute(&mut *tx)
    .await
    .map_err(|e| match super::violated_constraint(&e) {
        Some("users_email_key_key") => {
            StoreError::AlreadyExists("an account with this e-mail address already exists".into())
        }
        Some("users_isp_code_fkey") => StoreError::NotFound("isp"),
        Some("users_institution_id_fkey") => StoreError::NotFound("institution"),
        _ => e.into(),
    })?;
    let changes = json!([{ "field": "email", "before": null, "after": u.email },
                         { "field": "role", "before": null, "after": u.membership.label() },
                         { "field": "institution_id", "before": null, "after": institution },
                         { "field": "isp", "before": null, "after": isp }]);
    audit::append(tx, audit::Entry::about("user", u.id, "CREATED", actor, changes)).await
}

/// Recent failed sign-ins of an address: how many, and when the last was.
pub async fn failures(pool: &PgPool, email_key: &str) -> Result<Option<(i32, OffsetDateTime)>, StoreError> {
    Ok(
        sqlx::query_as("SELECT failures, last_failure_time FROM sign_in_failures WHERE email_key = $1")
            .bind(email_key)
            .fetch_optional(pool)
            .await?,
    )
}

/// Counts a failed sign-in of an address (an account's or not: the row is
/// the same either way) and audits it; a failure older than
/// `forgotten_after` starts the count again.
pub async fn record_failure(
    pool: &PgPool,
    email_key: &str,
    user: Option<Uuid>,
    why: &str,
    forgotten_after: Duration,
    actor: &Actor,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO sign_in_failures (email_key, failures, last_failure_time) VALUES ($1, 1, now())
         ON CONFLICT (email_key) DO UPDATE
            SET failures = CASE WHEN sign_in_failures.last_failure_time < now() - make_interval(secs => $2)
                                THEN 1 ELSE sign_in_failures.failures + 1 END,
                last_failure_time = now()",
    )
    .bind(email_key)
    .bind(forgotten_after.as_secs_f64())
    .execute(&mut *tx)
    .await?;
    let changes = json!([{ "field": "email", "before": null, "after": email_key },
                         { "field": "failure", "before": null, "after": why }]);
    audit::append(
        &mut tx,
        audit::Entry::about("user", user.unwrap_or(Uuid::nil()), "SIGN_IN_FAILED", actor, changes),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Forgets an address's failed sign-ins (it signed in, or reset its password).
pub async fn clear_failures(conn: &mut PgConnection, email_key: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM sign_in_failures WHERE email_key = $1")
        .bind(email_key)
        .execute(conn)
        .await?;
    Ok(())
}

/// Ends every console session of `user` but `keep` (the hash of the one
/// making the change, if any).
pub async fn end_sessions(conn: &mut PgConnection, user: Uuid, keep: Option<&[u8; 32]>) -> Result<u64, StoreError> {
    Ok(
        sqlx::query("DELETE FROM console_sessions WHERE user_id = $1 AND ($2::bytea IS NULL OR id_hash <> $2)")
            .bind(user)
            .bind(keep.map(|h| &h[..]))
            .execute(conn)
            .await?
            .rows_affected(),
    )
}

/// Sets a user's password (`action`: changed by the user, or reset through
/// a link), ending the user's other sessions; audited.
pub async fn set_password(
    tx: &mut PgConnection,
    user: Uuid,
    password_hash: &str,
    keep: Option<&[u8; 32]>,
    action: &str,
    actor: &Actor,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET password_hash = $2, password_change_time = now() WHERE id = $1")
        .bind(user)
        .bind(password_hash)
        .execute(&mut *tx)
        .await?;
    let ended = end_sessions(tx, user, keep).await?;
    let changes = json!([{ "field": "other_sessions_ended", "before": null, "after": ended }]);
    audit::append(tx, audit::Entry::about("user", user, action, actor, changes)).await
}

/// Enrols (or replaces) a user's second factor with its recovery codes,
/// ending the user's other sessions; audited.
pub async fn enrol_totp(
    pool: &PgPool,
    user: Uuid,
    secret: &[u8],
    step: i64,
    recovery: &[[u8; 32]],
    keep: Option<&[u8; 32]>,
    actor: &Actor,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE users SET totp_secret = $2, totp_last_step = $3 WHERE id = $1")
        .bind(user)
        .bind(secret)
        .bind(step)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user)
        .execute(&mut *tx)
        .await?;
    let hashes: Vec<&[u8]> = recovery.iter().map(|h| &h[..]).collect();
    sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) SELECT $1, unnest($2::bytea[])")
        .bind(user)
        .bind(hashes)
        .execute(&mut *tx)
        .await?;
    let ended = end_sessions(&mut tx, user, keep).await?;
    let changes = json!([{ "field": "recovery_codes", "before": null, "after": recovery.len() },
                         { "field": "other_sessions_ended", "before": null, "after": ended }]);
    audit::append(
        &mut tx,
        audit::Entry::about("user", user, "SECOND_FACTOR_ENROLLED", actor, changes),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Records that the code of `step` was used; false when that step (or a
/// later one) was used already (the code is refused).
pub async fn use_totp_step(pool: &PgPool, user: Uuid, step: i64) -> Result<bool, StoreError> {
    Ok(sqlx::query(
        "UPDATE users SET totp_last_step = $2 WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
    )
    .bind(user)
    .bind(step)
    .execute(pool)
    .await?
    .rows_affected()
        == 1)
}

/// Uses a recovery code up; false when it is not one of the user's unused codes.
pub async fn use_recovery_code(pool: &PgPool, user: Uuid, hash: &[u8; 32], actor: &Actor) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let used = sqlx::query(
        "UPDATE recovery_codes SET use_time = now() WHERE user_id = $1 AND code_hash = $2 AND use_time IS NULL",
    )
    .bind(user)
    .bind(&hash[..])
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if used {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM recovery_codes WHERE user_id = $1 AND use_time IS NULL")
                .bind(user)
                .fetch_one(&mut *tx)
                .await?;
        let changes = json!([{ "field": "recovery_codes_left", "before": null, "after": left }]);
        audit::append(
            &mut tx,
            audit::Entry::about("user", user, "RECOVERY_CODE_USED", actor, changes),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(used)
}

/// One person of an organisation, as its members page lists them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Member {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub owner: bool,
    pub second_factor: bool,
    pub create_time: OffsetDateTime,
}

/// The active members of an institution (`institution`) or an ISP desk
/// (`isp`), owners first.
pub async fn members(pool: &PgPool, institution: Option<Uuid>, isp: Option<&str>) -> Result<Vec<Member>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, email, name, owner, totp_secret IS NOT NULL AS second_factor, create_time FROM users
          WHERE remove_time IS NULL AND (institution_id = $1 OR isp_code = $2)
          ORDER BY owner DESC, name, id",
    )
    .bind(institution)
    .bind(isp)
    .fetch_all(pool)
    .await?)
}

/// Regulator staff and ISP desk users, by role and name.
pub async fn staff(pool: &PgPool) -> Result<Vec<(Member, String, Option<String>)>, StoreError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        member: Member,
        role: String,
        isp_code: Option<String>,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, email, name, owner, totp_secret IS NOT NULL AS second_factor, create_time, role, isp_code
           FROM users WHERE remove_time IS NULL AND role <> 'institution'
          ORDER BY role, isp_code NULLS FIRST, name, id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.member, r.role, r.isp_code)).collect())
}

/// Makes a member an owner or an owner a member (`owner`), or removes them
/// (`None`), under the institution's lock: the institution always keeps an
/// owner. Removing ends the person's sessions. Audited.
pub async fn change_member(
    pool: &PgPool,
    institution: Uuid,
    user: Uuid,
    owner: Option<bool>,
    actor: &Actor,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT FROM institutions WHERE id = $1 FOR UPDATE")
        .bind(institution)
        .execute(&mut *tx)
        .await?;
    let was: Option<bool> =
        sqlx::query_scalar("SELECT owner FROM users WHERE id = $1 AND institution_id = $2 AND remove_time IS NULL")
            .bind(user)
            .bind(institution)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(was_owner) = was else {
        return Err(StoreError::NotFound("member"));
    };
    let stays_owner = owner.unwrap_or(false);
    if was_owner && !stays_owner {
        let other_owners: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM users WHERE institution_id = $1 AND owner AND remove_time IS NULL AND id <> $2",
        )
        .bind(institution)
        .bind(user)
        .fetch_one(&mut *tx)
        .await?;
        if other_owners == 0 {
            return Err(StoreError::Refused(Refusal::Precondition {
                kind: "LAST_OWNER",
                subject: format!("users/{user}"),
                message: "an institution keeps at least one owner: make another member an owner first".into(),
            }));
        }
    }
    let (action, changes) = match owner {
        Some(owner) => {
            sqlx::query("UPDATE users SET owner = $2 WHERE id = $1")
                .bind(user)
                .bind(owner)
                .execute(&mut *tx)
                .await?;
            let role = |o: bool| if o { "owner" } else { "member" };
            (
                "ROLE_CHANGED",
                json!([{ "field": "role", "before": role(was_owner), "after": role(owner) }]),
            )
        }
        None => {
            // The address is freed: the person may be invited again later.
            sqlx::query(
                "UPDATE users SET remove_time = now(), owner = false, email_key = 'removed:' || id || ':' || email_key
                  WHERE id = $1",
            )
            .bind(user)
            .execute(&mut *tx)
            .await?;
            end_sessions(&mut tx, user, None).await?;
            ("REMOVED", json!([]))
        }
    };
    audit::append(&mut tx, audit::Entry::about("user", user, action, actor, changes)).await?;
    tx.commit().await?;
    Ok(())
}

/// Forgets failed sign-ins older than `failures_forgotten_after` (the
/// audit trail keeps their story). Returns the rows removed.
pub async fn prune_failures(pool: &PgPool, failures_forgotten_after: Duration) -> Result<u64, StoreError> {
    let failures =
        sqlx::query("DELETE FROM sign_in_failures WHERE last_failure_time < now() - make_interval(secs => $1)")
            .bind(failures_forgotten_after.as_secs_f64())
            .execute(pool)
            .await?
            .rows_affected();
    Ok(failures)
}
