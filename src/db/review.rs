//! Decisions on registrations (ISP attestation, review, suspension, expiry)
//! and the queues they are taken from.

use sqlx::PgPool;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::registrations::{Audit, Row, Write, begin_write, columns, from_clause};
use super::{StoreError, idempotency};
use crate::domain::{
    Violations,
    institution::Category,
    lifecycle::{self, Event},
    principal::{Actor, Visibility},
    registration::{IspCode, Kind, Registration},
    request::Etag,
    state::{Action, ReasonCode, State},
    text::Reason,
};

/// What a reviewer may adjust when approving.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApproveOptions {
    /// End validity earlier than requested.
    pub valid_until: Option<OffsetDateTime>,
    /// Accept justified prefixes beyond the default size limits.
    pub override_size_limits: bool,
}

/// A decision as taken by a reviewer, an ISP or the expiry task.
#[derive(Debug, Clone)]
pub struct Decision {
    pub event: Event,
    pub reason_code: Option<ReasonCode>,
    pub reason: Option<Reason>,
    pub approve: ApproveOptions,
}

impl Decision {
    fn action(&self) -> Action {
        match self.event {
            Event::Attest { confirmed: true } => Action::Attested,
            Event::Attest { confirmed: false } => Action::AttestationDenied,
            Event::Approve => Action::Approved,
            Event::Reject => Action::Rejected,
            Event::RequestInformation => Action::InformationRequested,
            Event::Amend { .. } => Action::Amended,
            Event::Withdraw => Action::Withdrawn,
            Event::Suspend => Action::Suspended,
            Event::Reinstate => Action::Reinstated,
            Event::Revoke => Action::Revoked,
            Event::Expire => Action::Expired,
        }
    }
}

/// Applies `decision` to a registration (or to its pending revision, for
/// review decisions on an ACTIVE or EXPIRED registration). `isp` restricts an
/// ISP principal to what names its own ISP. Returns the registration and the
/// feed serial the decision committed at (0 if the active set did not change).
pub async fn decide(
    pool: &PgPool,
    id: Uuid,
    isp: Option<&IspCode>,
    etag: Etag,
    actor: &Actor,
    key: Option<&idempotency::Key>,
    decision: Decision,
) -> Result<(Registration, i64), StoreError> {
    let vis = Visibility::All;
    let mut w = match begin_write(pool, id, vis, Some(etag), key).await? {
        Ok(w) => w,
        Err(replayed) => return Ok((replayed, 0)),
    };
    let current = w.current.clone();
    let revision = current
        .pending_revision
        .as_ref()
        .filter(|_| current.state.is_live() && decision.event.reviews_revision());
    let target_spec = revision.map_or(&current.spec, |r| &r.spec);
    if let Some(own) = isp
        && own != &target_spec.isp
    {
        return Err(StoreError::NotFound("registration"));
    }
    let from = revision.map_or(current.state, |r| r.state);
    let to = lifecycle::next(from, decision.event)?;
    let mut spec = target_spec.clone();
    if decision.event == Event::Approve {
        apply_approval(&mut spec, decision.approve)?;
    }
    let changes = crate::db::audit::diff(Some(&target_spec.audit_values()), &spec.audit_values());
    match revision {
        Some(revision) => {
            w.store_revision(revision.id, &spec, to).await?;
            if to == State::Active {
                // The reviewed revision replaces the version in force; an
                // EXPIRED registration comes back through its renewal.
                w.check_overlap(&spec).await?;
                w.store(&spec, State::Active).await?;
            } else {
                w.touch().await?;
            }
        }
        None => {
            if to == State::Active {
                w.check_overlap(&spec).await?;
            }
            if decision.event == Event::Revoke {
                discard_revision(&mut w, actor, decision.reason.as_ref()).await?;
            }
            w.store(&spec, to).await?;
        }
    }
    let entry = Audit {
        action: decision.action(),
        from: Some(from),
        to,
        revision_id: revision.map(|r| r.id),
        reason_code: decision.reason_code,
        reason: decision.reason.as_ref(),
        changes,
    };
    w.audit(entry, actor).await?;
    w.commit(vis).await
}

/// Validity may only be shortened at approval, and large prefixes need the
/// reviewer's explicit override.
fn apply_approval(spec: &mut crate::domain::registration::Spec, options: ApproveOptions) -> Result<(), StoreError> {
    if let Some(until) = options.valid_until {
        if until > spec.valid_until {
            return Err(Violations::one("valid_until", "may shorten the requested validity, not extend it").into());
        }
        if until <= spec.valid_from || until <= OffsetDateTime::now_utc() {
            return Err(Violations::one("valid_until", "must be in the future and after valid_from").into());
        }
        spec.valid_until = until;
    }
    if let Some(large) = spec.oversized_prefix()
        && !options.override_size_limits
    {
        return Err(StoreError::Precondition {
            kind: "PREFIX_SIZE",
            subject: large.to_string(),
            message: format!(
                "{large} is larger than the default limits; approve with override_size_limits to accept it"
            ),
        });
    }
    Ok(())
}

/// Drops the pending revision of a registration about to be revoked.
async fn discard_revision(w: &mut Write<'_>, actor: &Actor, reason: Option<&Reason>) -> Result<(), StoreError> {
    let Some(revision) = w.current.pending_revision.clone() else {
        return Ok(());
    };
    w.store_revision(revision.id, &revision.spec, State::Withdrawn).await?;
    let entry = Audit {
        action: Action::RevisionDiscarded,
        from: Some(revision.state),
        to: State::Withdrawn,
        revision_id: Some(revision.id),
        reason_code: None,
        reason,
        changes: serde_json::json!([]),
    };
    w.audit(entry, actor).await
}

/// Where a queue resumes: after this (time, id).
pub type QueueCursor = (OffsetDateTime, Uuid);

/// Registrations (or revisions) in `state`, oldest first by the time they
/// entered it, optionally only those naming `isp`.
pub async fn queue(
    pool: &PgPool,
    state: State,
    isp: Option<&IspCode>,
    kind: Option<Kind>,
    category: Option<Category>,
    after: Option<QueueCursor>,
    limit: i64,
) -> Result<Vec<(Registration, OffsetDateTime)>, StoreError> {
    #[derive(sqlx::FromRow)]
    struct QueueRow {
        #[sqlx(flatten)]
        row: Row,
        queued_at: OffsetDateTime,
    }
    let rows: Vec<QueueRow> = sqlx::query_as(concat!(
        "SELECT * FROM (SELECT ",
        columns!(),
        ", CASE WHEN v.state = $1 THEN v.state_time ELSE r.state_time END AS queued_at",
        from_clause!(),
        " WHERE (r.state = $1 OR v.state = $1)
            AND ($2::text IS NULL OR CASE WHEN v.state = $1 THEN v.isp ELSE r.isp END = $2)
            AND ($3::text IS NULL OR r.kind = $3)
            AND ($4::text IS NULL OR r.institution_id IN (SELECT id FROM institutions WHERE category = $4))
         ) q
          WHERE ($5::timestamptz IS NULL OR (q.queued_at, q.id) > ($5, $6))
          ORDER BY q.queued_at, q.id
          LIMIT $7"
    ))
    .bind(state.as_str())
    .bind(isp.map(IspCode::as_str))
    .bind(kind.map(Kind::as_str))
    .bind(category.map(Category::as_str))
    .bind(after.map(|(t, _)| t))
    .bind(after.map(|(_, id)| id))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|q| Ok((Registration::try_from(q.row)?, q.queued_at)))
        .collect()
}

/// The institution names and categories for a page of attestations.
pub async fn institution_names(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<(Uuid, String, Category)>, StoreError> {
    let rows: Vec<(Uuid, String, String)> =
        sqlx::query_as("SELECT id, legal_name, category FROM institutions WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(pool)
            .await?;
    rows.into_iter()
        .map(|(id, name, category)| Ok((id, name, super::decode(&category, Category::from_db, "category")?)))
        .collect()
}

/// Moves up to `limit` ACTIVE registrations whose validity ended, or whose
/// institution's required PSEB registration expired before `today`, to
/// EXPIRED, each with its audit event. Safe with several workers: rows are
/// claimed with SKIP LOCKED and re-checked under the lock. Returns how many
/// expired.
pub async fn expire_due(pool: &PgPool, today: Date, limit: i64, actor: &Actor) -> Result<usize, StoreError> {
    let mut tx = pool.begin().await?;
    let due: Vec<(Uuid, bool)> = sqlx::query_as(
        "SELECT r.id, r.valid_until <= now() AS validity_ended
           FROM registrations r JOIN institutions i ON i.id = r.institution_id
          WHERE r.state = 'ACTIVE'
            AND (r.valid_until <= now()
                 OR (i.category IN ('IT_COMPANY', 'CALL_CENTER_BPO') AND i.pseb_expiry < $1))
          ORDER BY r.valid_until
          LIMIT $2
          FOR UPDATE OF r SKIP LOCKED",
    )
    .bind(today)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    for (id, validity_ended) in &due {
        sqlx::query(
            "UPDATE registrations SET state = 'EXPIRED', state_time = now(), version = version + 1, update_time = now()
              WHERE id = $1 AND state = 'ACTIVE'",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let (code, reason) = if *validity_ended {
            (ReasonCode::ValidityEnded, "validity period ended")
        } else {
            (
                ReasonCode::LicenceExpired,
                "the institution's PSEB registration expired",
            )
        };
        let reason: Reason = reason
            .parse()
            .map_err(|e: crate::domain::text::Invalid| StoreError::Corrupt(e.0))?;
        let entry = Audit {
            action: Action::Expired,
            from: Some(State::Active),
            to: State::Expired,
            revision_id: None,
            reason_code: Some(code),
            reason: Some(&reason),
            changes: serde_json::json!([]),
        };
        entry.append(&mut tx, *id, actor).await?;
    }
    tx.commit().await?;
    Ok(due.len())
}
