//! Registrations: every statement that reads or writes the `registrations` table.

use ipnet::IpNet;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, audit, decode, idempotency, institutions, reparse};
use crate::domain::{
    Violations,
    institution::Category,
    prefix::PublicPrefix,
    principal::{Actor, Visibility},
    registration::{Kind, Protocol, Registration, Spec},
    request::Etag,
    state::{Action, State},
    text::Reason,
};

/// The columns every query returns, in `Row`'s order (a macro so that SQL
/// strings stay `&'static str`).
macro_rules! columns {
    () => {
        "r.id, r.reference, r.institution_id, r.kind, r.protocol, r.source_prefixes, r.msisdn,
    r.peer_prefixes, r.isp, r.isp_subscriber_id, r.purpose, r.valid_from, r.valid_until, r.state, r.version,
    r.create_time, r.update_time"
    };
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    reference: String,
    institution_id: Uuid,
    kind: String,
    protocol: Option<String>,
    source_prefixes: Vec<IpNet>,
    msisdn: Option<String>,
    peer_prefixes: Vec<IpNet>,
    isp: String,
    isp_subscriber_id: String,
    purpose: String,
    valid_from: OffsetDateTime,
    valid_until: OffsetDateTime,
    state: String,
    version: i64,
    create_time: OffsetDateTime,
    update_time: OffsetDateTime,
}

fn prefixes(nets: Vec<IpNet>) -> Result<Vec<PublicPrefix>, StoreError> {
    nets.into_iter()
        .map(|n| PublicPrefix::try_from(n).map_err(|e| StoreError::Corrupt(e.to_string())))
        .collect()
}

impl TryFrom<Row> for Registration {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Self, StoreError> {
        Ok(Registration {
            id: r.id,
            reference: r.reference,
            institution_id: r.institution_id,
            spec: Spec {
                kind: decode(&r.kind, Kind::from_db, "kind")?,
                protocol: r
                    .protocol
                    .map(|p| decode(&p, Protocol::from_db, "protocol"))
                    .transpose()?,
                source_prefixes: prefixes(r.source_prefixes)?,
                msisdn: r.msisdn.map(|m| reparse(&m, "msisdn")).transpose()?,
                peer_prefixes: prefixes(r.peer_prefixes)?,
                isp: reparse(&r.isp, "isp")?,
                isp_subscriber_id: reparse(&r.isp_subscriber_id, "isp_subscriber_id")?,
                purpose: reparse(&r.purpose, "purpose")?,
                valid_from: r.valid_from,
                valid_until: r.valid_until,
            },
            state: decode(&r.state, State::from_db, "state")?,
            version: r.version,
            create_time: r.create_time,
            update_time: r.update_time,
        })
    }
}

fn nets(ps: &[PublicPrefix]) -> Vec<IpNet> {
    ps.iter().map(PublicPrefix::net).collect()
}

/// Refuses source prefixes that overlap another institution's ACTIVE ones.
/// The exclusion constraint on `active_prefixes` enforces the rule whenever a
/// registration becomes active; this check gives the applicant an early,
/// precise answer. The other institution is not named.
async fn check_overlap(
    conn: &mut PgConnection,
    institution_id: Uuid,
    spec: &Spec,
) -> Result<(), StoreError> {
    let hit: Option<(IpNet, IpNet)> = sqlx::query_as(
        "SELECT s.p, a.prefix
           FROM unnest($1::cidr[]) AS s(p)
           JOIN active_prefixes a ON a.prefix && s.p
          WHERE a.institution_id <> $2
          LIMIT 1",
    )
    .bind(nets(&spec.source_prefixes))
    .bind(institution_id)
    .fetch_optional(conn)
    .await?;
    match hit {
        Some((prefix, active)) => Err(StoreError::Overlap {
            prefix: prefix.to_string(),
            active: active.to_string(),
        }),
        None => Ok(()),
    }
}

/// Submits a registration for `institution_id`, or returns the one an
/// earlier call with the same idempotency key submitted.
pub async fn submit(
    pool: &PgPool,
    institution_id: Uuid,
    spec: &Spec,
    actor: &Actor,
    key: Option<&idempotency::Key>,
) -> Result<Registration, StoreError> {
    let id = Uuid::now_v7();
    let vis = Visibility::Institution(institution_id);
    let mut tx = pool.begin().await?;
    if let Some(key) = key
        && let Some(original) = idempotency::claim(&mut tx, key, id).await?
    {
        tx.rollback().await?;
        return get(pool, original, vis).await;
    }
    check_overlap(&mut tx, institution_id, spec).await?;
    let state = State::Submitted;
    let s = spec;
    let row: Row = sqlx::query_as(concat!("INSERT INTO registrations AS r (id, reference, institution_id, kind, protocol, source_prefixes, msisdn,
                                         peer_prefixes, isp, isp_subscriber_id, purpose, valid_from, valid_until, state)
         VALUES ($1, 'VPN-' || to_char(now() AT TIME ZONE 'Asia/Karachi', 'YYYY') || '-'
                     || lpad(nextval('registration_reference_seq')::text, 6, '0'),
                 $2, $3, $4, $5::cidr[], $6, $7::cidr[], $8, $9, $10, $11, $12, $13)
         RETURNING ", columns!(), ""))
    .bind(id)
    .bind(institution_id)
    .bind(s.kind.as_str())
    .bind(s.protocol.map(Protocol::as_str))
    .bind(nets(&s.source_prefixes))
    .bind(s.msisdn.as_ref().map(|m| m.as_str()))
    .bind(nets(&s.peer_prefixes))
    .bind(s.isp.as_str())
    .bind(s.isp_subscriber_id.as_str())
    .bind(s.purpose.as_str())
    .bind(s.valid_from)
    .bind(s.valid_until)
    .bind(state.as_str())
    .fetch_one(&mut *tx)
    .await?;
    audit::append(
        &mut tx,
        audit::Entry {
            subject_type: "registration",
            subject_id: id,
            action: Action::Submitted.as_str(),
            actor,
            from_state: None,
            to_state: Some(state.as_str()),
            reason_code: None,
            reason: None,
            changes: audit::diff(None, &spec.audit_values()),
        },
    )
    .await?;
    tx.commit().await?;
    row.try_into()
}

/// Reads one registration the caller may see.
pub async fn get(pool: &PgPool, id: Uuid, vis: Visibility) -> Result<Registration, StoreError> {
    let mut conn = pool.acquire().await?;
    fetch(&mut conn, id, vis, false).await
}

async fn fetch(
    conn: &mut PgConnection,
    id: Uuid,
    vis: Visibility,
    lock: bool,
) -> Result<Registration, StoreError> {
    let only = match vis {
        Visibility::All => None,
        Visibility::Institution(own) => Some(own),
    };
    let sql = if lock {
        concat!(
            "SELECT ",
            columns!(),
            " FROM registrations r
          WHERE r.id = $1 AND ($2::uuid IS NULL OR r.institution_id = $2) FOR UPDATE"
        )
    } else {
        concat!(
            "SELECT ",
            columns!(),
            " FROM registrations r
          WHERE r.id = $1 AND ($2::uuid IS NULL OR r.institution_id = $2)"
        )
    };
    let row: Option<Row> = sqlx::query_as(sql)
        .bind(id)
        .bind(only)
        .fetch_optional(conn)
        .await?;
    row.ok_or(StoreError::NotFound("registration"))?.try_into()
}

/// Filters for [`list`]; `None` means any.
#[derive(Debug, Default, Clone, Copy)]
pub struct Filter {
    pub institution_id: Option<Uuid>,
    pub state: Option<State>,
    pub category: Option<Category>,
    pub kind: Option<Kind>,
}

/// One page of registrations the caller may see, oldest first.
pub async fn list(
    pool: &PgPool,
    vis: Visibility,
    filter: Filter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Registration>, StoreError> {
    let institution_id = match (vis, filter.institution_id) {
        (Visibility::All, requested) => requested,
        (Visibility::Institution(own), Some(requested)) if requested != own => {
            return Ok(Vec::new());
        }
        (Visibility::Institution(own), _) => Some(own),
    };
    let rows: Vec<Row> = sqlx::query_as(concat!("SELECT ", columns!(), " FROM registrations r
          WHERE ($1::uuid IS NULL OR r.institution_id = $1)
            AND ($2::text IS NULL OR r.state = $2)
            AND ($3::text IS NULL OR r.institution_id IN (SELECT id FROM institutions WHERE category = $3))
            AND ($4::text IS NULL OR r.kind = $4)
            AND ($5::uuid IS NULL OR r.id > $5)
          ORDER BY r.id
          LIMIT $6"))
    .bind(institution_id)
    .bind(filter.state.map(State::as_str))
    .bind(filter.category.map(Category::as_str))
    .bind(filter.kind.map(Kind::as_str))
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

/// Locks the registration, replays an idempotent retry, and checks the etag:
/// the common start of every write to an existing registration.
async fn begin_write<'c>(
    pool: &'c PgPool,
    id: Uuid,
    vis: Visibility,
    etag: Option<Etag>,
    key: Option<&idempotency::Key>,
) -> Result<Result<(sqlx::Transaction<'c, sqlx::Postgres>, Registration), Registration>, StoreError>
{
    let mut tx = pool.begin().await?;
    let current = fetch(&mut tx, id, vis, true).await?;
    if let Some(key) = key
        && idempotency::claim(&mut tx, key, id).await?.is_some()
    {
        return Ok(Err(current));
    }
    if let Some(Etag(v)) = etag
        && v != current.version
    {
        return Err(StoreError::StaleEtag {
            current: Etag::render(current.version),
        });
    }
    Ok(Ok((tx, current)))
}

/// Replaces the spec of an undecided registration with `change`'s result.
pub async fn amend(
    pool: &PgPool,
    id: Uuid,
    vis: Visibility,
    etag: Option<Etag>,
    actor: &Actor,
    key: Option<&idempotency::Key>,
    change: impl FnOnce(&Registration, Category) -> Result<Spec, Violations>,
) -> Result<Registration, StoreError> {
    let (mut tx, current) = match begin_write(pool, id, vis, etag, key).await? {
        Ok(started) => started,
        Err(replayed) => return Ok(replayed),
    };
    if !current.state.is_undecided() {
        return Err(StoreError::WrongState {
            current: current.state,
            action: "amended",
        });
    }
    let institution =
        institutions::fetch(&mut tx, current.institution_id, Visibility::All, false).await?;
    let spec = change(&current, institution.category)?;
    check_overlap(&mut tx, current.institution_id, &spec).await?;
    let changes = audit::diff(Some(&current.spec.audit_values()), &spec.audit_values());
    let s = &spec;
    let row: Row = sqlx::query_as(concat!("UPDATE registrations AS r
            SET protocol = $2, source_prefixes = $3::cidr[], msisdn = $4, peer_prefixes = $5::cidr[], isp = $6,
                isp_subscriber_id = $7, purpose = $8, valid_from = $9, valid_until = $10,
                version = version + 1, update_time = now()
          WHERE r.id = $1
         RETURNING ", columns!(), ""))
    .bind(id)
    .bind(s.protocol.map(Protocol::as_str))
    .bind(nets(&s.source_prefixes))
    .bind(s.msisdn.as_ref().map(|m| m.as_str()))
    .bind(nets(&s.peer_prefixes))
    .bind(s.isp.as_str())
    .bind(s.isp_subscriber_id.as_str())
    .bind(s.purpose.as_str())
    .bind(s.valid_from)
    .bind(s.valid_until)
    .fetch_one(&mut *tx)
    .await?;
    audit::append(
        &mut tx,
        audit::Entry {
            subject_type: "registration",
            subject_id: id,
            action: Action::Amended.as_str(),
            actor,
            from_state: Some(current.state.as_str()),
            to_state: Some(current.state.as_str()),
            reason_code: None,
            reason: None,
            changes,
        },
    )
    .await?;
    tx.commit().await?;
    row.try_into()
}

/// Withdraws an undecided registration at the applicant's request.
pub async fn withdraw(
    pool: &PgPool,
    id: Uuid,
    vis: Visibility,
    etag: Option<Etag>,
    actor: &Actor,
    key: Option<&idempotency::Key>,
    reason: Option<&Reason>,
) -> Result<Registration, StoreError> {
    let (mut tx, current) = match begin_write(pool, id, vis, etag, key).await? {
        Ok(started) => started,
        Err(replayed) => return Ok(replayed),
    };
    if !current.state.is_undecided() {
        return Err(StoreError::WrongState {
            current: current.state,
            action: "withdrawn",
        });
    }
    let to = State::Withdrawn;
    let row: Row = sqlx::query_as(concat!(
        "UPDATE registrations AS r SET state = $2, version = version + 1, update_time = now()
          WHERE r.id = $1
         RETURNING ",
        columns!(),
        ""
    ))
    .bind(id)
    .bind(to.as_str())
    .fetch_one(&mut *tx)
    .await?;
    audit::append(
        &mut tx,
        audit::Entry {
            subject_type: "registration",
            subject_id: id,
            action: Action::Withdrawn.as_str(),
            actor,
            from_state: Some(current.state.as_str()),
            to_state: Some(to.as_str()),
            reason_code: None,
            reason: reason.map(Reason::as_str),
            changes: serde_json::json!([]),
        },
    )
    .await?;
    tx.commit().await?;
    row.try_into()
}

/// One page of a registration's history, if the caller may see it.
pub async fn events(
    pool: &PgPool,
    id: Uuid,
    vis: Visibility,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<audit::Event>, StoreError> {
    let mut conn = pool.acquire().await?;
    fetch(&mut conn, id, vis, false).await?;
    audit::list(&mut conn, id, after, limit).await
}
