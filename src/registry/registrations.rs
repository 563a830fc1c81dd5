//! What applicants do with their registrations, and what everyone may read.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{Page, Registry, WriteContext};
use crate::db::{audit, registrations as store};
use crate::domain::{
    principal::{Applicant, Visibility},
    refusal::check_etag,
    registration::{Registration, Spec, SpecPatch},
    request::Etag,
    text::Reason,
    workflow::{self, Plan},
};
use crate::error::{Error, Result};

/// A registration as a write left it, with the feed serial the write
/// committed at (0 when the active set did not change).
pub type Written = (Registration, i64);

impl Registry {
    /// Submits a registration for the applicant (or returns the one an
    /// earlier call with the same idempotency key submitted).
    #[tracing::instrument(skip_all, fields(institution = %applicant.institution_id))]
    pub async fn submit(&self, applicant: Applicant, spec: Spec, ctx: WriteContext) -> Result<Registration> {
        self.writable()?;
        let record = workflow::submit(&spec);
        let created = store::insert(&self.pool, applicant.institution_id, &spec, &record, &ctx, &self.fees).await?;
        if ctx.dry_run {
            tracing::info!("registration checked (validate_only): nothing written");
        } else {
            tracing::info!(registration = %created.id, reference = %created.reference, "registration submitted");
        }
        Ok(created)
    }

    /// Submits a batch of registrations for the applicant, all or none (or
    /// returns the ones an earlier call with the batch's key submitted).
    #[tracing::instrument(skip_all, fields(institution = %applicant.institution_id, items = specs.len()))]
    pub async fn submit_batch(
        &self,
        applicant: Applicant,
        specs: Vec<Spec>,
        ctx: WriteContext,
    ) -> Result<Vec<Registration>> {
        self.writable()?;
        let items: Vec<_> = specs
            .into_iter()
            .map(|spec| {
                let record = workflow::submit(&spec);
                (spec, record)
            })
            .collect();
        let created = store::insert_batch(&self.pool, applicant.institution_id, &items, &ctx, &self.fees).await?;
        if ctx.dry_run {
            tracing::info!("batch checked (validate_only): nothing written");
        } else {
            tracing::info!(registrations = created.len(), "batch submitted");
        }
        Ok(created)
    }

    pub async fn registration(&self, vis: Visibility, id: Uuid) -> Result<Registration> {
        Ok(store::get(&self.pool, id, vis).await?)
    }

    pub async fn registrations(
        &self,
        vis: Visibility,
        filter: store::Filter,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Page<Registration>> {
        let fetched = store::list(&self.pool, vis, filter, after, limit + 1).await?;
        Ok(Page::of(fetched, limit))
    }

    pub async fn registration_events(
        &self,
        vis: Visibility,
        id: Uuid,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Page<audit::Event>> {
        let fetched = store::events(&self.pool, id, vis, after, limit + 1).await?;
        Ok(Page::of(fetched, limit))
    }

    #[tracing::instrument(skip_all, fields(registration = %id))]
    pub async fn amend(
        &self,
        applicant: Applicant,
        id: Uuid,
        etag: Option<Etag>,
        patch: SpecPatch,
        ctx: WriteContext,
    ) -> Result<Written> {
        let now = OffsetDateTime::now_utc();
        self.write(applicant, id, etag, ctx, |current| {
            workflow::amend(current, applicant.category, &patch, now)
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(registration = %id))]
    pub async fn withdraw(
        &self,
        applicant: Applicant,
        id: Uuid,
        etag: Option<Etag>,
        reason: Option<Reason>,
        ctx: WriteContext,
    ) -> Result<Written> {
        self.write(applicant, id, etag, ctx, |current| workflow::withdraw(current, reason))
            .await
    }

    #[tracing::instrument(skip_all, fields(registration = %id))]
    pub async fn renew(
        &self,
        applicant: Applicant,
        id: Uuid,
        etag: Option<Etag>,
        valid_until: OffsetDateTime,
        ctx: WriteContext,
    ) -> Result<Written> {
        let now = OffsetDateTime::now_utc();
        self.write(applicant, id, etag, ctx, |current| {
            workflow::renew(current, valid_until, now)
        })
        .await
    }

    /// An applicant's write to one of its registrations: lock it, answer a
    /// retry, check the etag, plan, carry the plan out, commit.
    async fn write(
        &self,
        applicant: Applicant,
        id: Uuid,
        etag: Option<Etag>,
        ctx: WriteContext,
        plan: impl FnOnce(&Registration) -> Result<Plan, crate::domain::refusal::Refusal>,
    ) -> Result<Written> {
        self.writable()?;
        let vis = Visibility::Institution(applicant.institution_id);
        let locked = store::lock(&self.pool, id, vis).await?;
        let mut w = match locked.claim(ctx.key.as_ref()).await? {
            store::Locked::Replay(current) => return Ok((current, 0)),
            store::Locked::Current(w) => w,
        };
        check_etag(etag, w.current.version)?;
        let plan = plan(&w.current)?;
        w.execute(&plan, &ctx.actor).await?;
        w.reassess_fees(&self.fees, &ctx.actor).await?;
        let written = if ctx.dry_run {
            w.roll_back(vis).await
        } else {
            w.commit(vis).await
        };
        written.map_err(Error::from)
    }
}
