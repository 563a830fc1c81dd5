//! Decisions on registrations, by the ISP (attestation) and the regulator's
//! reviewers, and the queues they take them from.

use std::collections::HashMap;

use time::OffsetDateTime;
use uuid::Uuid;

use super::registrations::Written;
use super::{Page, Registry, WriteContext};
use crate::db::{
    StoreError, institutions,
    registrations::{self as store, QueueCursor, QueueFilter},
};
use crate::domain::evidence;
use crate::domain::{
    identifiers::IspCode,
    institution::Category,
    principal::Visibility,
    refusal::check_etag,
    registration::Registration,
    request::Etag,
    state::State,
    workflow::{self, Ruling},
};
use crate::error::Result;

/// A registration as its ISP attests it, with the applicant's name.
#[derive(Debug)]
pub struct Attestation {
    pub registration: Registration,
    pub institution_name: String,
    pub category: Category,
}

impl Registry {
    /// Takes `decision` on a registration (or its pending revision). `by_isp`
    /// is the ISP an ISP principal acts for.
    #[tracing::instrument(skip_all, fields(registration = %id, event = ?decision.event))]
    pub async fn decide(
        &self,
        id: Uuid,
        etag: Etag,
        decision: &Ruling,
        by_isp: Option<&IspCode>,
        ctx: WriteContext,
    ) -> Result<Written> {
        self.writable()?;
        let vis = Visibility::All;
        let locked = store::lock(&self.pool, id, vis).await?;
        // Scope before state: what an ISP may not see does not exist for it,
        // whatever the key, etag or state would have said.
        if let Some(isp) = by_isp {
            workflow::check_isp_scope(&locked.current, decision, isp)?;
        }
        let mut w = match locked.claim(ctx.key.as_ref()).await? {
            store::Locked::Replay(current) => return Ok((current, 0)),
            store::Locked::Current(w) => w,
        };
        check_etag(Some(etag), w.current.version)?;
        let plan = workflow::decide(&w.current, decision, OffsetDateTime::now_utc())?;
        // Complete before decided: allowed by the rules, then by the evidence.
        if decision.event == crate::domain::lifecycle::Event::Approve {
            self.check_evidence(&w.current).await?;
        }
        w.execute(&plan, &ctx.actor).await?;
        w.reassess_fees(&self.fees, &ctx.actor).await?;
        let (registration, serial) = w.commit(vis).await?;
        tracing::info!(state = %registration.state, "decision recorded");
        Ok((registration, serial))
    }

    /// Refuses an approval until every document the registration (as it
    /// would be approved: its pending revision, if any) needs is verified,
    /// and the fee that application owes is paid.
    async fn check_evidence(&self, r: &Registration) -> Result<()> {
        let documents = crate::db::documents::list(&self.pool, r.institution_id, Some(r.id)).await?;
        let checklist = self.evidence_checklist(r, &documents).await?;
        let revision = r.pending_revision.as_ref().map(|v| v.id);
        let unpaid: Vec<evidence::UnpaidFee> = crate::db::fees::unpaid(&self.pool, r.id, revision)
            .await?
            .into_iter()
            .map(|c| evidence::UnpaidFee {
                psid: c.psid,
                amount_pkr: c.amount_pkr,
            })
            .collect();
        Ok(evidence::ready_to_approve(&checklist, &unpaid)?)
    }

    /// An ISP's attestation: a decision limited to what names its ISP.
    pub async fn attest(
        &self,
        isp: &IspCode,
        id: Uuid,
        etag: Etag,
        decision: &Ruling,
        ctx: WriteContext,
    ) -> Result<Attestation> {
        let (registration, _) = self.decide(id, etag, decision, Some(isp), ctx).await?;
        let mut named = self.with_names(vec![registration]).await?;
        named.pop().ok_or_else(|| StoreError::NotFound("institution").into())
    }

    /// Registrations (or revisions) waiting in `state`, oldest first.
    pub async fn queue(
        &self,
        state: State,
        filter: &QueueFilter,
        after: Option<QueueCursor>,
        limit: i64,
    ) -> Result<Page<(Registration, OffsetDateTime)>> {
        let fetched = store::queue(&self.pool, state, filter, after, limit + 1).await?;
        Ok(Page::of(fetched, limit))
    }

    /// What waits for `isp`'s attestation, oldest first, with the applicants' names.
    pub async fn pending_attestations(
        &self,
        isp: &IspCode,
        after: Option<QueueCursor>,
        limit: i64,
    ) -> Result<(Vec<Attestation>, Option<QueueCursor>)> {
        let filter = QueueFilter {
            isp: Some(isp.clone()),
            ..QueueFilter::default()
        };
        let page = self.queue(State::IspVerification, &filter, after, limit).await?;
        let resume = page.resume_after().map(|(r, at)| (*at, r.id));
        let named = self
            .with_names(page.items.into_iter().map(|(r, _)| r).collect())
            .await?;
        Ok((named, resume))
    }

    async fn with_names(&self, registrations: Vec<Registration>) -> Result<Vec<Attestation>> {
        let ids: Vec<Uuid> = registrations.iter().map(|r| r.institution_id).collect();
        let names: HashMap<Uuid, (String, Category)> = institutions::names(&self.pool, &ids)
            .await?
            .into_iter()
            .map(|(id, name, category)| (id, (name, category)))
            .collect();
        Ok(registrations
            .into_iter()
            .filter_map(|registration| {
                let (institution_name, category) = names.get(&registration.institution_id)?.clone();
                Some(Attestation {
                    registration,
                    institution_name,
                    category,
                })
            })
            .collect())
    }
}

impl Registry {
    /// Expires up to `limit` ACTIVE registrations whose validity ended (or
    /// whose institution's required PSEB registration lapsed before `today`),
    /// each with its record, in one transaction. Returns how many expired.
    pub async fn expire_due(
        &self,
        today: time::Date,
        limit: i64,
        actor: &crate::domain::principal::Actor,
    ) -> Result<usize> {
        self.writable()?;
        let mut batch = store::claim_expiring(&self.pool, today, limit).await?;
        let due = std::mem::take(&mut batch.due);
        for &(id, validity_ended) in &due {
            batch.expire(id, &workflow::expiry(validity_ended), actor).await?;
        }
        batch.commit().await?;
        Ok(due.len())
    }
}
