//! Enrolment and upkeep of institutions.

use uuid::Uuid;

use super::{Page, Registry, WriteContext};
use crate::db::institutions as store;
use crate::domain::{
    institution::{self, Category, Institution, Profile, ProfilePatch},
    principal::Visibility,
    refusal::check_etag,
    request::Etag,
};
use crate::error::Result;

impl Registry {
    /// Enrols an institution (or returns the one an earlier call with the
    /// same idempotency key enrolled).
    #[tracing::instrument(skip_all, fields(category = category.as_str()))]
    pub async fn enrol(&self, category: Category, profile: Profile, ctx: WriteContext) -> Result<Institution> {
        self.writable()?;
        let changes = institution::enrolment_changes(category, &profile);
        let created = store::create(&self.pool, category, &profile, changes, &ctx).await?;
        if ctx.dry_run {
            tracing::info!("enrolment checked (validate_only): nothing written");
        } else {
            tracing::info!(institution = %created.id, "institution enrolled");
        }
        Ok(created)
    }

    pub async fn institution(&self, vis: Visibility, id: Uuid) -> Result<Institution> {
        Ok(store::get(&self.pool, id, vis).await?)
    }

    pub async fn institutions(
        &self,
        vis: Visibility,
        category: Option<Category>,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Page<Institution>> {
        let fetched = store::list(&self.pool, vis, category, after, limit + 1).await?;
        Ok(Page::of(fetched, limit))
    }

    /// Applies `patch` to the institution's profile under its lock.
    #[tracing::instrument(skip_all, fields(institution = %id))]
    pub async fn update_institution(
        &self,
        vis: Visibility,
        id: Uuid,
        etag: Option<Etag>,
        patch: ProfilePatch,
        ctx: WriteContext,
    ) -> Result<Institution> {
        self.writable()?;
        let w = match store::lock(&self.pool, id, vis, ctx.key.as_ref()).await? {
            store::Locked::Replay(current) => return Ok(current),
            store::Locked::Current(w) => w,
        };
        check_etag(etag, w.current.version)?;
        let (profile, changes) = institution::update(&w.current, &patch)?;
        Ok(w.store(&profile, changes, &ctx).await?)
    }
}
