//! Institutions: every statement that reads or writes the `institutions` table.

use crate::domain::institution::Language;
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::{StoreError, WriteContext, audit, decode, idempotency, reparse};
use crate::domain::{
    institution::{Category, Institution, Profile, Pseb},
    principal::{Actor, Visibility},
};

/// The columns every query returns, in `Row`'s order (a macro so that SQL
/// strings stay `&'static str`).
macro_rules! columns {
    () => {
        "id, category, legal_name, cnic, ntn, secp_number, pseb_number, pseb_expiry,
    sbp_licence, accreditation_ref, country, contact_email, contact_phone, language, version, self_registered,
    create_time, update_time"
    };
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    category: String,
    legal_name: String,
    cnic: Option<String>,
    ntn: Option<String>,
    secp_number: Option<String>,
    pseb_number: Option<String>,
    pseb_expiry: Option<Date>,
    sbp_licence: Option<String>,
    accreditation_ref: Option<String>,
    country: Option<String>,
    contact_email: String,
    contact_phone: String,
    language: String,
    version: i64,
    self_registered: bool,
    create_time: OffsetDateTime,
    update_time: OffsetDateTime,
}

fn opt<T: std::str::FromStr>(v: Option<String>, what: &str) -> Result<Option<T>, StoreError>
where
    T::Err: std::fmt::Display,
{
    v.map(|s| reparse(&s, what)).transpose()
}

impl TryFrom<Row> for Institution {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Self, StoreError> {
        let pseb = match (r.pseb_number, r.pseb_expiry) {
            (Some(n), Some(expiry)) => Some(Pseb {
                number: reparse(&n, "pseb_number")?,
                expiry,
            }),
            _ => None,
        };
        Ok(Institution {
            id: r.id,
            category: decode(&r.category, Category::from_db, "category")?,
            profile: Profile {
                legal_name: reparse(&r.legal_name, "legal_name")?,
                cnic: opt(r.cnic, "cnic")?,
                ntn: opt(r.ntn, "ntn")?,
                secp_number: opt(r.secp_number, "secp_number")?,
                pseb,
                sbp_licence: opt(r.sbp_licence, "sbp_licence")?,
                accreditation_ref: opt(r.accreditation_ref, "accreditation_ref")?,
                country: opt(r.country, "country")?,
                contact_email: reparse(&r.contact_email, "contact_email")?,
                contact_phone: reparse(&r.contact_phone, "contact_phone")?,
                language: decode(&r.language, Language::from_db, "language")?,
            },
            version: r.version,
            create_time: r.create_time,
            update_time: r.update_time,
            self_registered: r.self_registered,
        })
    }
}

/// Enrols an institution, or returns the one an earlier call with the same
/// idempotency key enrolled.
pub async fn create(
    pool: &PgPool,
    category: Category,
    profile: &Profile,
    changes: Value,
    ctx: &WriteContext,
) -> Result<Institution, StoreError> {
    let id = Uuid::now_v7();
    let mut tx = pool.begin().await?;
    if let Some(key) = &ctx.key
        && let Some(original) = idempotency::claim(&mut tx, key, id).await?
    {
        tx.rollback().await?;
        return get(pool, original, Visibility::All).await;
    }
    let created = insert(&mut tx, id, category, profile, false, changes, &ctx.actor).await?;
    ctx.end(tx).await?;
    Ok(created)
}

/// Inserts an institution and audits its enrolment, in `tx`.
pub async fn insert(
    tx: &mut PgConnection,
    id: Uuid,
    category: Category,
    profile: &Profile,
    self_registered: bool,
    changes: Value,
    actor: &Actor,
) -> Result<Institution, StoreError> {
    let row: Row = sqlx::query_as(concat!(
        "INSERT INTO institutions (id, category, legal_name, cnic, ntn, secp_number, pseb_number, pseb_expiry,
                                   sbp_licence, accreditation_ref, country, contact_email, contact_phone,
                                   language, self_registered)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
         RETURNING ",
        columns!(),
        ""
    ))
    .bind(id)
    .bind(category.as_str())
    .bind_profile(profile)
    .bind(self_registered)
    .fetch_one(&mut *tx)
    .await?;
    audit::append(tx, audit::Entry::about("institution", id, "CREATED", actor, changes)).await?;
    row.try_into()
}

/// Whether an institution already holds `cnic` or `ntn` (a sign-up is
/// refused then, without saying which).
pub async fn identifiers_taken(
    conn: &mut PgConnection,
    cnic: Option<&str>,
    ntn: Option<&str>,
) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT FROM institutions WHERE cnic = $1 OR ntn = $2 OR cnic = $2 OR ntn = $1)",
    )
    .bind(cnic)
    .bind(ntn)
    .fetch_one(conn)
    .await?)
}

/// Binds the profile columns in their usual order: legal_name, cnic, ntn,
/// secp_number, pseb_number, pseb_expiry, sbp_licence, accreditation_ref,
/// country, contact_email, contact_phone, language.
trait BindProfile {
    fn bind_profile(self, p: &Profile) -> Self;
}

impl<'q, O> BindProfile for sqlx::query::QueryAs<'q, Postgres, O, sqlx::postgres::PgArguments> {
    fn bind_profile(self, p: &Profile) -> Self {
        let (pseb_number, pseb_expiry) = match &p.pseb {
            Some(Pseb { number, expiry }) => (Some(number.as_str().to_owned()), Some(*expiry)),
            None => (None, None),
        };
        self.bind(p.legal_name.as_str().to_owned())
            .bind(p.cnic.as_ref().map(|c| c.as_str().to_owned()))
            .bind(p.ntn.as_ref().map(|n| n.as_str().to_owned()))
            .bind(p.secp_number.as_ref().map(|d| d.as_str().to_owned()))
            .bind(pseb_number)
            .bind(pseb_expiry)
            .bind(p.sbp_licence.as_ref().map(|d| d.as_str().to_owned()))
            .bind(p.accreditation_ref.as_ref().map(|d| d.as_str().to_owned()))
            .bind(p.country.map(|c| c.as_str().to_owned()))
            .bind(p.contact_email.as_str().to_owned())
            .bind(p.contact_phone.as_str().to_owned())
            .bind(p.language.as_str())
    }
}

/// Reads one institution the caller may see.
pub async fn get(pool: &PgPool, id: Uuid, vis: Visibility) -> Result<Institution, StoreError> {
    let mut conn = pool.acquire().await?;
    fetch(&mut conn, id, vis, false).await
}

/// Reads (and with `lock`, locks for update) one institution the caller may see.
pub(crate) async fn fetch(
    conn: &mut PgConnection,
    id: Uuid,
    vis: Visibility,
    lock: bool,
) -> Result<Institution, StoreError> {
    if let Visibility::Institution(own) = vis
        && own != id
    {
        return Err(StoreError::NotFound("institution"));
    }
    let sql = if lock {
        concat!("SELECT ", columns!(), " FROM institutions WHERE id = $1 FOR UPDATE")
    } else {
        concat!("SELECT ", columns!(), " FROM institutions WHERE id = $1")
    };
    let row: Option<Row> = sqlx::query_as(sql).bind(id).fetch_optional(conn).await?;
    row.ok_or(StoreError::NotFound("institution"))?.try_into()
}

/// One page of institutions the caller may see, oldest first.
pub async fn list(
    pool: &PgPool,
    vis: Visibility,
    category: Option<Category>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Institution>, StoreError> {
    let only = match vis {
        Visibility::All => None,
        Visibility::Institution(id) => Some(id),
    };
    let rows: Vec<Row> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM institutions
          WHERE ($1::uuid IS NULL OR id = $1)
            AND ($2::text IS NULL OR category = $2)
            AND ($3::uuid IS NULL OR id > $3)
          ORDER BY id
          LIMIT $4"
    ))
    .bind(only)
    .bind(category.map(Category::as_str))
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

/// An institution locked for an update, or the answer to a retry.
pub enum Locked<'c> {
    /// An idempotent retry: the institution as it is now.
    Replay(Institution),
    Current(Write<'c>),
}

/// Locks the institution the caller may see and claims the idempotency key.
pub async fn lock<'c>(
    pool: &'c PgPool,
    id: Uuid,
    vis: Visibility,
    key: Option<&idempotency::Key>,
) -> Result<Locked<'c>, StoreError> {
    let mut tx = pool.begin().await?;
    let current = fetch(&mut tx, id, vis, true).await?;
    if let Some(key) = key
        && idempotency::claim(&mut tx, key, id).await?.is_some()
    {
        tx.rollback().await?;
        return Ok(Locked::Replay(get(pool, id, vis).await?));
    }
    Ok(Locked::Current(Write { tx, current }))
}

/// An update in progress: the institution locked, as it was read.
pub struct Write<'c> {
    tx: Transaction<'c, Postgres>,
    pub current: Institution,
}

impl Write<'_> {
    /// Stores `profile` with the audit event listing `changes`, and commits
    /// (a dry run: answers what would be stored, with the current version,
    /// and keeps nothing).
    pub async fn store(
        mut self,
        profile: &Profile,
        changes: Value,
        ctx: &WriteContext,
    ) -> Result<Institution, StoreError> {
        let actor = &ctx.actor;
        let id = self.current.id;
        let row: Row = sqlx::query_as(concat!(
            "UPDATE institutions
                SET legal_name = $2, cnic = $3, ntn = $4, secp_number = $5, pseb_number = $6, pseb_expiry = $7,
                    sbp_licence = $8, accreditation_ref = $9, country = $10, contact_email = $11,
                    contact_phone = $12, language = $13, version = version + 1, update_time = now()
              WHERE id = $1
             RETURNING ",
            columns!(),
            ""
        ))
        .bind(id)
        .bind_profile(profile)
        .fetch_one(&mut *self.tx)
        .await?;
        audit::append(
            &mut self.tx,
            audit::Entry::about("institution", id, "UPDATED", actor, changes),
        )
        .await?;
        ctx.end(self.tx).await?;
        let mut stored: Institution = row.try_into()?;
        if ctx.dry_run {
            stored.version = self.current.version;
        }
        Ok(stored)
    }
}

/// The names and categories of institutions, for a page of attestations.
pub async fn names(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<(Uuid, String, Category)>, StoreError> {
    let rows: Vec<(Uuid, String, String)> =
        sqlx::query_as("SELECT id, legal_name, category FROM institutions WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(pool)
            .await?;
    rows.into_iter()
        .map(|(id, name, category)| Ok((id, name, decode(&category, Category::from_db, "category")?)))
        .collect()
}
