//! Registrations and their pending revisions: every statement that reads or
//! writes `registrations` and `registration_revisions`. The lifecycle rules
//! come from `domain::lifecycle`; the change feed follows from the database
//! trigger on `registrations`.

use ipnet::IpNet;
use sqlx::{PgConnection, PgPool, Postgres, Row as _, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, audit, decode, idempotency, institutions, reparse};
use crate::domain::{
    Violations,
    institution::Category,
    lifecycle::{self, Event},
    prefix::PublicPrefix,
    principal::{Actor, Visibility},
    registration::{Kind, Protocol, Registration, Revision, Spec},
    request::Etag,
    state::{Action, ReasonCode, State},
    text::Reason,
};

/// The columns every registration query returns, in `Row`'s order, with the
/// pending revision (if any) joined as `v`. A macro so SQL stays `&'static str`.
macro_rules! columns {
    () => {
        "r.id, r.reference, r.institution_id, r.kind, r.protocol, r.source_prefixes, r.msisdn,
         r.peer_prefixes, r.isp, r.isp_subscriber_id, r.purpose, r.valid_from, r.valid_until,
         r.large_prefix_justification, r.state, r.state_time, r.version, r.create_time, r.update_time,
         v.id AS v_id, v.is_renewal AS v_is_renewal, v.protocol AS v_protocol,
         v.source_prefixes AS v_source_prefixes, v.msisdn AS v_msisdn, v.peer_prefixes AS v_peer_prefixes,
         v.isp AS v_isp, v.isp_subscriber_id AS v_isp_subscriber_id, v.purpose AS v_purpose,
         v.valid_from AS v_valid_from, v.valid_until AS v_valid_until,
         v.large_prefix_justification AS v_large_prefix_justification, v.state AS v_state,
         v.state_time AS v_state_time, v.create_time AS v_create_time"
    };
}
pub(crate) use columns;

/// `registrations r` with its undecided revision `v`.
macro_rules! from_clause {
    () => {
        " FROM registrations r
          LEFT JOIN registration_revisions v
                 ON v.registration_id = r.id AND v.state IN ('ISP_VERIFICATION', 'UNDER_REVIEW', 'NEEDS_INFO')"
    };
}
pub(crate) use from_clause;

#[derive(sqlx::FromRow)]
pub(crate) struct Row {
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
    large_prefix_justification: Option<String>,
    state: String,
    state_time: OffsetDateTime,
    version: i64,
    create_time: OffsetDateTime,
    update_time: OffsetDateTime,
    v_id: Option<Uuid>,
    v_is_renewal: Option<bool>,
    v_protocol: Option<String>,
    v_source_prefixes: Option<Vec<IpNet>>,
    v_msisdn: Option<String>,
    v_peer_prefixes: Option<Vec<IpNet>>,
    v_isp: Option<String>,
    v_isp_subscriber_id: Option<String>,
    v_purpose: Option<String>,
    v_valid_from: Option<OffsetDateTime>,
    v_valid_until: Option<OffsetDateTime>,
    v_large_prefix_justification: Option<String>,
    v_state: Option<String>,
    v_state_time: Option<OffsetDateTime>,
    v_create_time: Option<OffsetDateTime>,
}

fn prefixes(nets: Vec<IpNet>) -> Result<Vec<PublicPrefix>, StoreError> {
    nets.into_iter()
        .map(|n| PublicPrefix::try_from(n).map_err(|e| StoreError::Corrupt(e.to_string())))
        .collect()
}

/// Stored spec columns, shared by registrations and revisions.
struct SpecColumns {
    kind: Kind,
    protocol: Option<String>,
    source_prefixes: Vec<IpNet>,
    msisdn: Option<String>,
    peer_prefixes: Vec<IpNet>,
    isp: String,
    isp_subscriber_id: String,
    purpose: String,
    valid_from: OffsetDateTime,
    valid_until: OffsetDateTime,
    large_prefix_justification: Option<String>,
}

impl TryFrom<SpecColumns> for Spec {
    type Error = StoreError;
    fn try_from(c: SpecColumns) -> Result<Self, StoreError> {
        Ok(Spec {
            kind: c.kind,
            protocol: c
                .protocol
                .map(|p| decode(&p, Protocol::from_db, "protocol"))
                .transpose()?,
            source_prefixes: prefixes(c.source_prefixes)?,
            msisdn: c.msisdn.map(|m| reparse(&m, "msisdn")).transpose()?,
            peer_prefixes: prefixes(c.peer_prefixes)?,
            isp: reparse(&c.isp, "isp")?,
            isp_subscriber_id: reparse(&c.isp_subscriber_id, "isp_subscriber_id")?,
            purpose: reparse(&c.purpose, "purpose")?,
            valid_from: c.valid_from,
            valid_until: c.valid_until,
            large_prefix_justification: c
                .large_prefix_justification
                .map(|j| reparse(&j, "large_prefix_justification"))
                .transpose()?,
        })
    }
}

impl TryFrom<Row> for Registration {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Self, StoreError> {
        let kind = decode(&r.kind, Kind::from_db, "kind")?;
        let pending_revision = match (
            r.v_id,
            r.v_source_prefixes,
            r.v_peer_prefixes,
            r.v_isp,
            r.v_isp_subscriber_id,
        ) {
            (Some(id), Some(source_prefixes), Some(peer_prefixes), Some(isp), Some(isp_subscriber_id)) => {
                let missing = || StoreError::Corrupt(format!("revision {id} incomplete"));
                Some(Revision {
                    id,
                    is_renewal: r.v_is_renewal.ok_or_else(missing)?,
                    spec: SpecColumns {
                        kind,
                        protocol: r.v_protocol,
                        source_prefixes,
                        msisdn: r.v_msisdn,
                        peer_prefixes,
                        isp,
                        isp_subscriber_id,
                        purpose: r.v_purpose.ok_or_else(missing)?,
                        valid_from: r.v_valid_from.ok_or_else(missing)?,
                        valid_until: r.v_valid_until.ok_or_else(missing)?,
                        large_prefix_justification: r.v_large_prefix_justification,
                    }
                    .try_into()?,
                    state: decode(&r.v_state.ok_or_else(missing)?, State::from_db, "state")?,
                    state_time: r.v_state_time.ok_or_else(missing)?,
                    create_time: r.v_create_time.ok_or_else(missing)?,
                })
            }
            _ => None,
        };
        Ok(Registration {
            id: r.id,
            reference: r.reference,
            institution_id: r.institution_id,
            spec: SpecColumns {
                kind,
                protocol: r.protocol,
                source_prefixes: r.source_prefixes,
                msisdn: r.msisdn,
                peer_prefixes: r.peer_prefixes,
                isp: r.isp,
                isp_subscriber_id: r.isp_subscriber_id,
                purpose: r.purpose,
                valid_from: r.valid_from,
                valid_until: r.valid_until,
                large_prefix_justification: r.large_prefix_justification,
            }
            .try_into()?,
            state: decode(&r.state, State::from_db, "state")?,
            state_time: r.state_time,
            pending_revision,
            version: r.version,
            create_time: r.create_time,
            update_time: r.update_time,
        })
    }
}

/// Binds the spec columns in their usual order: protocol, source_prefixes,
/// msisdn, peer_prefixes, isp, isp_subscriber_id, purpose, valid_from,
/// valid_until, large_prefix_justification.
trait BindSpec {
    fn bind_spec(self, s: &Spec) -> Self;
}

impl BindSpec for sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments> {
    fn bind_spec(self, s: &Spec) -> Self {
        self.bind(s.protocol.map(Protocol::as_str))
            .bind(nets(&s.source_prefixes))
            .bind(s.msisdn.as_ref().map(|m| m.as_str().to_owned()))
            .bind(nets(&s.peer_prefixes))
            .bind(s.isp.as_str().to_owned())
            .bind(s.isp_subscriber_id.as_str().to_owned())
            .bind(s.purpose.as_str().to_owned())
            .bind(s.valid_from)
            .bind(s.valid_until)
            .bind(s.large_prefix_justification.as_ref().map(|j| j.as_str().to_owned()))
    }
}

pub(crate) fn nets(ps: &[PublicPrefix]) -> Vec<IpNet> {
    ps.iter().map(PublicPrefix::net).collect()
}

/// First overlap of the prefixes `$1` with another institution's (not `$2`)
/// active prefixes: (submitted prefix, active prefix).
pub const OVERLAP_SQL: &str = "WITH hits AS MATERIALIZED (
        SELECT s.p, a.prefix
          FROM unnest($1::cidr[]) AS s(p)
          JOIN active_prefixes a ON a.prefix && s.p
         WHERE a.institution_id <> $2
     )
     SELECT * FROM hits LIMIT 1";

/// Refuses source prefixes that overlap another institution's ACTIVE ones.
/// The exclusion constraint on `active_prefixes` enforces the rule whenever a
/// registration becomes active; this check gives the applicant an early,
/// precise answer. The other institution is not named.
///
/// The search sits in a materialised CTE so that the LIMIT cannot reach it:
/// with a LIMIT in the same query level, the (prepared, generic) plan
/// expects 1% of a million rows to match and prefers a sequential scan that
/// stops early, which really reads the whole table (120-260 ms at 1M active
/// prefixes instead of 0.1 ms through the SP-GiST index).
async fn check_overlap(conn: &mut PgConnection, institution_id: Uuid, spec: &Spec) -> Result<(), StoreError> {
    let hit: Option<(IpNet, IpNet)> = sqlx::query_as(OVERLAP_SQL)
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

/// The serial of the change feed this transaction wrote last, 0 if none.
async fn feed_serial(conn: &mut PgConnection) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar(
            "SELECT coalesce(nullif(current_setting('vpnregistry.feed_serial', true), ''), '0')::bigint",
        )
        .fetch_one(conn)
        .await?,
    )
}

/// Maps the constraints a registration write can hit: the exclusion
/// constraint to the overlap error (our prefix, never the other owner), the
/// ISP foreign keys to a field violation.
fn write_error(e: sqlx::Error) -> StoreError {
    match super::violated_constraint(&e) {
        Some("active_prefixes_no_overlap") => {
            let prefix = e
                .as_database_error()
                .and_then(|d| d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>())
                .and_then(|d| d.detail())
                .and_then(|detail| detail.split("=(").nth(1))
                .and_then(|rest| rest.split(',').next())
                .unwrap_or("a source prefix")
                .to_owned();
            StoreError::Overlap {
                prefix,
                active: "an active prefix".into(),
            }
        }
        // An unknown ISP: the foreign key answers, saving a query per write.
        Some("registrations_isp_fkey" | "registration_revisions_isp_fkey") => {
            Violations::one("registration.isp", "is not a licensed ISP").into()
        }
        _ => e.into(),
    }
}

/// Submits a registration for `institution_id`, or returns the one an
/// earlier call with the same idempotency key submitted. It goes straight to
/// the ISP for attestation.
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
    let state = lifecycle::INITIAL;
    let s = spec;
    let inserted = sqlx::query(
        "INSERT INTO registrations (id, reference, institution_id, kind, protocol, source_prefixes, msisdn,
                                    peer_prefixes, isp, isp_subscriber_id, purpose, valid_from, valid_until,
                                    large_prefix_justification, state)
         VALUES ($1, 'VPN-' || to_char(now() AT TIME ZONE 'Asia/Karachi', 'YYYY') || '-'
                     || lpad(nextval('registration_reference_seq')::text, 6, '0'),
                 $2, $3, $4, $5::cidr[], $6, $7::cidr[], $8, $9, $10, $11, $12, $13, $14)
         RETURNING reference, valid_from, valid_until, state_time, create_time",
    )
    .bind(id)
    .bind(institution_id)
    .bind(s.kind.as_str())
    .bind_spec(s)
    .bind(state.as_str())
    .fetch_one(&mut *tx)
    .await
    .map_err(write_error)?;
    // As stored (PostgreSQL keeps microseconds), so a replay reads the same.
    let mut stored = spec.clone();
    stored.valid_from = inserted.try_get("valid_from")?;
    stored.valid_until = inserted.try_get("valid_until")?;
    let (reference, state_time, create_time): (String, OffsetDateTime, OffsetDateTime) = (
        inserted.try_get("reference")?,
        inserted.try_get("state_time")?,
        inserted.try_get("create_time")?,
    );
    let entry = Audit {
        action: Action::Submitted,
        from: Some(State::Submitted),
        to: state,
        revision_id: None,
        reason_code: None,
        reason: None,
        changes: audit::diff(None, &spec.audit_values()),
    };
    entry.append(&mut tx, id, actor).await?;
    tx.commit().await?;
    Ok(Registration {
        id,
        reference,
        institution_id,
        spec: stored,
        state,
        state_time,
        pending_revision: None,
        version: 1,
        create_time,
        update_time: create_time,
    })
}

/// Reads one registration the caller may see.
pub async fn get(pool: &PgPool, id: Uuid, vis: Visibility) -> Result<Registration, StoreError> {
    let mut conn = pool.acquire().await?;
    fetch(&mut conn, id, vis, false).await
}

async fn fetch(conn: &mut PgConnection, id: Uuid, vis: Visibility, lock: bool) -> Result<Registration, StoreError> {
    let only = match vis {
        Visibility::All => None,
        Visibility::Institution(own) => Some(own),
    };
    let sql = if lock {
        concat!(
            "SELECT ",
            columns!(),
            from_clause!(),
            " WHERE r.id = $1 AND ($2::uuid IS NULL OR r.institution_id = $2)
                 FOR UPDATE OF r"
        )
    } else {
        concat!(
            "SELECT ",
            columns!(),
            from_clause!(),
            " WHERE r.id = $1 AND ($2::uuid IS NULL OR r.institution_id = $2)"
        )
    };
    let row: Option<Row> = sqlx::query_as(sql).bind(id).bind(only).fetch_optional(conn).await?;
    row.ok_or(StoreError::NotFound("registration"))?.try_into()
}

/// Filters for [`list`]; `None` means any.
#[derive(Debug, Default, Clone, Copy)]
pub struct Filter {
    pub institution_id: Option<Uuid>,
    pub state: Option<State>,
    pub category: Option<Category>,
    pub kind: Option<Kind>,
    /// Only ACTIVE registrations whose validity ends before this instant.
    pub expiring_before: Option<OffsetDateTime>,
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
    let rows: Vec<Row> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        from_clause!(),
        " WHERE ($1::uuid IS NULL OR r.institution_id = $1)
            AND ($2::text IS NULL OR r.state = $2)
            AND ($3::text IS NULL OR r.institution_id IN (SELECT id FROM institutions WHERE category = $3))
            AND ($4::text IS NULL OR r.kind = $4)
            AND ($5::timestamptz IS NULL OR (r.state = 'ACTIVE' AND r.valid_until < $5))
            AND ($6::uuid IS NULL OR r.id > $6)
          ORDER BY r.id
          LIMIT $7"
    ))
    .bind(institution_id)
    .bind(filter.state.map(State::as_str))
    .bind(filter.category.map(Category::as_str))
    .bind(filter.kind.map(Kind::as_str))
    .bind(filter.expiring_before)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

/// One audit event about a registration (or its revision).
pub(crate) struct Audit<'a> {
    pub action: Action,
    pub from: Option<State>,
    pub to: State,
    pub revision_id: Option<Uuid>,
    pub reason_code: Option<ReasonCode>,
    pub reason: Option<&'a Reason>,
    pub changes: serde_json::Value,
}

impl Audit<'_> {
    pub(crate) async fn append(self, conn: &mut PgConnection, id: Uuid, actor: &Actor) -> Result<(), StoreError> {
        audit::append(
            conn,
            audit::Entry {
                subject_type: "registration",
                subject_id: id,
                revision_id: self.revision_id,
                action: self.action.as_str(),
                actor,
                from_state: self.from.map(State::as_str),
                to_state: Some(self.to.as_str()),
                reason_code: self.reason_code.map(ReasonCode::as_str),
                reason: self.reason.map(Reason::as_str),
                changes: self.changes,
            },
        )
        .await
    }
}

/// A write in progress: the registration locked, the etag checked.
pub(crate) struct Write<'c> {
    pub tx: Transaction<'c, Postgres>,
    pub current: Registration,
}

/// Locks the registration, replays an idempotent retry (`Err` with the
/// registration as it is now), and checks the etag: the common start of every
/// write to an existing registration.
pub(crate) async fn begin_write<'c>(
    pool: &'c PgPool,
    id: Uuid,
    vis: Visibility,
    etag: Option<Etag>,
    key: Option<&idempotency::Key>,
) -> Result<Result<Write<'c>, Registration>, StoreError> {
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
    Ok(Ok(Write { tx, current }))
}

impl Write<'_> {
    /// Stores `spec` and `state` on the registration (the trigger keeps the
    /// active set and the change feed in step) and bumps its version.
    pub(crate) async fn store(&mut self, spec: &Spec, state: State) -> Result<(), StoreError> {
        let s = spec;
        sqlx::query(
            "UPDATE registrations
                SET protocol = $2, source_prefixes = $3::cidr[], msisdn = $4, peer_prefixes = $5::cidr[], isp = $6,
                    isp_subscriber_id = $7, purpose = $8, valid_from = $9, valid_until = $10,
                    large_prefix_justification = $11, state = $12,
                    state_time = CASE WHEN state = $12 THEN state_time ELSE now() END,
                    version = version + 1, update_time = now()
              WHERE id = $1",
        )
        .bind(self.current.id)
        .bind_spec(s)
        .bind(state.as_str())
        .execute(&mut *self.tx)
        .await
        .map_err(write_error)?;
        Ok(())
    }

    /// Bumps the version only (the change was to the pending revision).
    pub(crate) async fn touch(&mut self) -> Result<(), StoreError> {
        sqlx::query("UPDATE registrations SET version = version + 1, update_time = now() WHERE id = $1")
            .bind(self.current.id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Stores a pending revision's spec and state.
    pub(crate) async fn store_revision(
        &mut self,
        revision_id: Uuid,
        spec: &Spec,
        state: State,
    ) -> Result<(), StoreError> {
        let s = spec;
        sqlx::query(
            "UPDATE registration_revisions
                SET protocol = $2, source_prefixes = $3::cidr[], msisdn = $4, peer_prefixes = $5::cidr[], isp = $6,
                    isp_subscriber_id = $7, purpose = $8, valid_from = $9, valid_until = $10,
                    large_prefix_justification = $11, state = $12,
                    state_time = CASE WHEN state = $12 THEN state_time ELSE now() END
              WHERE id = $1",
        )
        .bind(revision_id)
        .bind_spec(s)
        .bind(state.as_str())
        .execute(&mut *self.tx)
        .await
        .map_err(write_error)?;
        Ok(())
    }

    /// Opens a revision (amendment or renewal) waiting for the ISP.
    async fn insert_revision(&mut self, spec: &Spec, is_renewal: bool) -> Result<Uuid, StoreError> {
        let id = Uuid::now_v7();
        let s = spec;
        sqlx::query(
            "INSERT INTO registration_revisions (id, registration_id, is_renewal, protocol, source_prefixes, msisdn,
                                                 peer_prefixes, isp, isp_subscriber_id, purpose, valid_from,
                                                 valid_until, large_prefix_justification, state)
             VALUES ($1, $2, $3, $4, $5::cidr[], $6, $7::cidr[], $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(id)
        .bind(self.current.id)
        .bind(is_renewal)
        .bind_spec(s)
        .bind(State::IspVerification.as_str())
        .execute(&mut *self.tx)
        .await
        .map_err(write_error)?;
        Ok(id)
    }

    pub(crate) async fn check_overlap(&mut self, spec: &Spec) -> Result<(), StoreError> {
        check_overlap(&mut self.tx, self.current.institution_id, spec).await
    }

    pub(crate) async fn audit(&mut self, entry: Audit<'_>, actor: &Actor) -> Result<(), StoreError> {
        entry.append(&mut self.tx, self.current.id, actor).await
    }

    /// Commits and returns the registration as stored, with the feed serial
    /// this write produced (0 when it did not touch the active set).
    pub(crate) async fn commit(mut self, vis: Visibility) -> Result<(Registration, i64), StoreError> {
        let serial = feed_serial(&mut self.tx).await?;
        let stored = fetch(&mut self.tx, self.current.id, vis, false).await?;
        self.tx.commit().await?;
        Ok((stored, serial))
    }
}

/// Changes what an applicant declared. An undecided registration changes in
/// place (and goes back to the ISP when attested fields changed); an ACTIVE
/// one gets (or updates) a pending revision while it stays in force.
pub async fn amend(
    pool: &PgPool,
    id: Uuid,
    vis: Visibility,
    etag: Option<Etag>,
    actor: &Actor,
    key: Option<&idempotency::Key>,
    change: impl FnOnce(&Spec, Category) -> Result<Spec, Violations>,
) -> Result<(Registration, i64), StoreError> {
    let mut w = match begin_write(pool, id, vis, etag, key).await? {
        Ok(w) => w,
        Err(replayed) => return Ok((replayed, 0)),
    };
    let current = w.current.clone();
    let category = institutions::fetch(&mut w.tx, current.institution_id, Visibility::All, false)
        .await?
        .category;
    let pending = current.pending_revision.as_ref().filter(|_| current.state.is_live());
    let base = pending.map_or(&current.spec, |r| &r.spec);
    let revision_allowed = current.state == State::Active || pending.is_some();
    if !current.state.is_undecided() && !revision_allowed {
        return Err(lifecycle::Illegal {
            current: current.state,
            event: Event::Amend { reattest: false },
        }
        .into());
    }
    let spec = change(base, category)?;
    w.check_overlap(&spec).await?;
    let reattest = base.needs_reattestation(&spec);
    let changes = audit::diff(Some(&base.audit_values()), &spec.audit_values());
    if let Some(revision) = pending {
        let to = lifecycle::next(revision.state, Event::Amend { reattest })?;
        w.store_revision(revision.id, &spec, to).await?;
        w.touch().await?;
        let entry = Audit {
            action: Action::Amended,
            from: Some(revision.state),
            to,
            revision_id: Some(revision.id),
            reason_code: None,
            reason: None,
            changes,
        };
        w.audit(entry, actor).await?;
    } else if current.state == State::Active {
        let revision_id = w.insert_revision(&spec, false).await?;
        w.touch().await?;
        let entry = Audit {
            action: Action::RevisionProposed,
            from: None,
            to: State::IspVerification,
            revision_id: Some(revision_id),
            reason_code: None,
            reason: None,
            changes,
        };
        w.audit(entry, actor).await?;
    } else {
        let to = lifecycle::next(current.state, Event::Amend { reattest })?;
        w.store(&spec, to).await?;
        let entry = Audit {
            action: Action::Amended,
            from: Some(current.state),
            to,
            revision_id: None,
            reason_code: None,
            reason: None,
            changes,
        };
        w.audit(entry, actor).await?;
    }
    w.commit(vis).await
}

/// Withdraws an undecided registration, or the pending revision of an ACTIVE
/// or EXPIRED one, at the applicant's request.
pub async fn withdraw(
    pool: &PgPool,
    id: Uuid,
    vis: Visibility,
    etag: Option<Etag>,
    actor: &Actor,
    key: Option<&idempotency::Key>,
    reason: Option<&Reason>,
) -> Result<(Registration, i64), StoreError> {
    let mut w = match begin_write(pool, id, vis, etag, key).await? {
        Ok(w) => w,
        Err(replayed) => return Ok((replayed, 0)),
    };
    let current = w.current.clone();
    let entry = match current.pending_revision.as_ref().filter(|_| current.state.is_live()) {
        Some(revision) => {
            let to = lifecycle::next(revision.state, Event::Withdraw)?;
            w.store_revision(revision.id, &revision.spec, to).await?;
            w.touch().await?;
            Audit {
                action: Action::Withdrawn,
                from: Some(revision.state),
                to,
                revision_id: Some(revision.id),
                reason_code: None,
                reason,
                changes: serde_json::json!([]),
            }
        }
        None => {
            let to = lifecycle::next(current.state, Event::Withdraw)?;
            w.store(&current.spec, to).await?;
            Audit {
                action: Action::Withdrawn,
                from: Some(current.state),
                to,
                revision_id: None,
                reason_code: None,
                reason,
                changes: serde_json::json!([]),
            }
        }
    };
    w.audit(entry, actor).await?;
    w.commit(vis).await
}

/// Asks to extend an ACTIVE or EXPIRED registration to `valid_until`; the
/// renewal is a revision, attested and reviewed like a submission.
pub async fn renew(
    pool: &PgPool,
    id: Uuid,
    vis: Visibility,
    etag: Option<Etag>,
    actor: &Actor,
    key: Option<&idempotency::Key>,
    valid_until: OffsetDateTime,
) -> Result<(Registration, i64), StoreError> {
    let mut w = match begin_write(pool, id, vis, etag, key).await? {
        Ok(w) => w,
        Err(replayed) => return Ok((replayed, 0)),
    };
    let current = w.current.clone();
    if !current.state.is_live() {
        return Err(StoreError::WrongState {
            current: current.state,
            action: "renewed",
        });
    }
    if current.pending_revision.is_some() {
        return Err(StoreError::RevisionPending);
    }
    if valid_until <= current.spec.valid_until || valid_until <= OffsetDateTime::now_utc() {
        return Err(Violations::one(
            "valid_until",
            "must be later than the current valid_until and in the future",
        )
        .into());
    }
    let mut spec = current.spec.clone();
    spec.valid_until = valid_until;
    let changes = audit::diff(Some(&current.spec.audit_values()), &spec.audit_values());
    let revision_id = w.insert_revision(&spec, true).await?;
    w.touch().await?;
    let entry = Audit {
        action: Action::RenewalRequested,
        from: None,
        to: State::IspVerification,
        revision_id: Some(revision_id),
        reason_code: None,
        reason: None,
        changes,
    };
    w.audit(entry, actor).await?;
    w.commit(vis).await
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
