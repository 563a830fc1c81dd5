//! RegistrationService: institutions submit and maintain their registrations;
//! reviewers and administrators read them.

use time::OffsetDateTime;
use tonic::{Request, Response, Status};

use super::convert::{self, registration_to_pb};
use crate::auth::principal;
use crate::db::registrations::Filter;
use uuid::Uuid;

use crate::domain::{
    Violations,
    principal::{Applicant, Principal},
    refusal::Refusal,
    registration::{Spec, SpecField, SpecPatch},
    request::{Etag, page_size, parse_id},
    text::Reason,
};
use crate::pb::{self, registration_service_server::RegistrationService};
use crate::registry::{Registry, WriteContext};

pub struct RegistrationApi {
    registry: Registry,
}

impl RegistrationApi {
    pub fn new(registry: Registry) -> Self {
        Self { registry }
    }
}

/// Most days ahead `expiring_within_days` may look.
const MAX_EXPIRING_WITHIN_DAYS: i32 = 3660;

#[tonic::async_trait]
impl RegistrationService for RegistrationApi {
    async fn submit_registration(
        &self,
        req: Request<pb::SubmitRegistrationRequest>,
    ) -> Result<Response<pb::Registration>, Status> {
        let p = principal(&req)?;
        let applicant = p.applicant("submit registrations")?;
        let (spec, ctx) = parse_submit(p, applicant, req.get_ref())?;
        let dry_run = ctx.dry_run;
        let created = registration_to_pb(self.registry.submit(applicant, spec, ctx).await?, 0);
        Ok(Response::new(if dry_run { unnamed(created) } else { created }))
    }

    async fn batch_submit_registrations(
        &self,
        req: Request<pb::BatchSubmitRegistrationsRequest>,
    ) -> Result<Response<pb::BatchSubmitRegistrationsResponse>, Status> {
        let p = principal(&req)?;
        let applicant = p.applicant("submit registrations")?;
        let (specs, ctx) = parse_batch(p, applicant, req.get_ref())?;
        let dry_run = ctx.dry_run;
        let created = self.registry.submit_batch(applicant, specs, ctx).await?;
        let registrations = created
            .into_iter()
            .map(|r| registration_to_pb(r, 0))
            .map(|r| if dry_run { unnamed(r) } else { r })
            .collect();
        Ok(Response::new(pb::BatchSubmitRegistrationsResponse { registrations }))
    }

    async fn get_registration(
        &self,
        req: Request<pb::GetRegistrationRequest>,
    ) -> Result<Response<pb::Registration>, Status> {
        let p = principal(&req)?;
        let id = parse_id(&req.get_ref().id).map_err(|e| Violations::one("id", e.0))?;
        let found = self.registry.registration(p.visibility(), id).await?;
        Ok(Response::new(registration_to_pb(found, 0)))
    }

    async fn list_registrations(
        &self,
        req: Request<pb::ListRegistrationsRequest>,
    ) -> Result<Response<pb::ListRegistrationsResponse>, Status> {
        let p = principal(&req)?;
        let msg = req.get_ref();
        let mut v = Violations::default();
        let limit = v.check("page_size", page_size(msg.page_size));
        let after = v.check("page_token", convert::parse_id_cursor(&msg.page_token));
        let filter = list_filter(msg, &mut v);
        let (Some(limit), Some(after), true) = (limit, after, v.is_empty()) else {
            return Err(v.into());
        };
        let page = self
            .registry
            .registrations(p.visibility(), filter, after, limit)
            .await?;
        let next_page_token = convert::id_page_token(&page, |r| r.id);
        Ok(Response::new(pb::ListRegistrationsResponse {
            registrations: page.items.into_iter().map(|r| registration_to_pb(r, 0)).collect(),
            next_page_token,
        }))
    }

    async fn amend_registration(
        &self,
        req: Request<pb::AmendRegistrationRequest>,
    ) -> Result<Response<pb::Registration>, Status> {
        let p = principal(&req)?;
        let applicant = p.applicant("amend registrations")?;
        let (id, etag, patch, ctx) = parse_amend(p, req.get_ref())?;
        let (amended, serial) = self.registry.amend(applicant, id, etag, patch, ctx).await?;
        Ok(Response::new(registration_to_pb(amended, serial)))
    }

    async fn withdraw_registration(
        &self,
        req: Request<pb::WithdrawRegistrationRequest>,
    ) -> Result<Response<pb::Registration>, Status> {
        let p = principal(&req)?;
        let applicant = p.applicant("withdraw registrations")?;
        let msg = req.get_ref();
        let mut v = Violations::default();
        let ctx = convert::write_context(p, msg, false, &mut v);
        let id = v.check("id", parse_id(&msg.id));
        let etag = convert::parse_etag(&msg.etag, "etag", &mut v);
        let reason: Option<Reason> = convert::optional("reason", &msg.reason, &mut v);
        let (Some(id), true) = (id, v.is_empty()) else {
            return Err(v.into());
        };
        let (withdrawn, serial) = self.registry.withdraw(applicant, id, etag, reason, ctx).await?;
        Ok(Response::new(registration_to_pb(withdrawn, serial)))
    }

    async fn renew_registration(
        &self,
        req: Request<pb::RenewRegistrationRequest>,
    ) -> Result<Response<pb::Registration>, Status> {
        let p = principal(&req)?;
        let applicant = p.applicant("renew registrations")?;
        let msg = req.get_ref();
        let mut v = Violations::default();
        let ctx = convert::write_context(p, msg, false, &mut v);
        let id = v.check("id", parse_id(&msg.id));
        let etag = convert::parse_etag(&msg.etag, "etag", &mut v);
        let valid_until = convert::required_timestamp("valid_until", msg.valid_until.as_ref(), &mut v);
        let (Some(id), Some(valid_until), true) = (id, valid_until, v.is_empty()) else {
            return Err(v.into());
        };
        let (renewed, serial) = self.registry.renew(applicant, id, etag, valid_until, ctx).await?;
        Ok(Response::new(registration_to_pb(renewed, serial)))
    }

    async fn list_registration_events(
        &self,
        req: Request<pb::ListRegistrationEventsRequest>,
    ) -> Result<Response<pb::ListRegistrationEventsResponse>, Status> {
        let p = principal(&req)?;
        let msg = req.get_ref();
        let mut v = Violations::default();
        let id = v.check("id", parse_id(&msg.id));
        let limit = v.check("page_size", page_size(msg.page_size));
        let after = v.check("page_token", convert::parse_seq_cursor(&msg.page_token));
        let (Some(id), Some(limit), Some(after)) = (id, limit, after) else {
            return Err(v.into());
        };
        let page = self
            .registry
            .registration_events(p.visibility(), id, after, limit)
            .await?;
        let next_page_token = page
            .resume_after()
            .map(|e| convert::render_seq_cursor(e.sequence))
            .unwrap_or_default();
        Ok(Response::new(pb::ListRegistrationEventsResponse {
            events: page.items.into_iter().map(convert::event_to_pb).collect(),
            next_page_token,
        }))
    }
}

/// The filters of a ListRegistrations request.
fn list_filter(msg: &pb::ListRegistrationsRequest, v: &mut Violations) -> Filter {
    let mut filter = Filter::default();
    if !msg.institution_id.is_empty() {
        filter.institution_id = v.check("institution_id", parse_id(&msg.institution_id));
    }
    filter.state = convert::enum_filter("state", msg.state, convert::state_from_pb, "a RegistrationState", v);
    filter.category = convert::category_filter(msg.category, v);
    filter.kind = convert::kind_filter(msg.kind, v);
    match msg.expiring_within_days {
        0 => {}
        days @ 1..=MAX_EXPIRING_WITHIN_DAYS => {
            filter.expiring_before = Some(OffsetDateTime::now_utc() + time::Duration::days(days.into()))
        }
        _ => v.add("expiring_within_days", "must be between 1 and 3660"),
    }
    filter
}

/// A SubmitRegistration request: the declaration, checked for `applicant`,
/// and the write context. Naming another institution answers NOT_FOUND.
fn parse_submit(
    p: &Principal,
    applicant: Applicant,
    msg: &pb::SubmitRegistrationRequest,
) -> Result<(Spec, WriteContext), Status> {
    let mut v = Violations::default();
    let ctx = convert::write_context(p, msg, true, &mut v);
    match parse_submission(applicant, msg) {
        Ok(spec) => Ok((v.and(Ok(spec))?, ctx)),
        Err(SubmissionError::Invalid(e)) => {
            v.extend(e);
            Err(v.into())
        }
        Err(SubmissionError::Refused(status)) => Err(status),
    }
}

/// Why a submission's registration does not parse.
enum SubmissionError {
    Invalid(Violations),
    /// It names another institution: as if it did not exist.
    Refused(Status),
}

/// The registration of a submission (the write context aside).
fn parse_submission(applicant: Applicant, msg: &pb::SubmitRegistrationRequest) -> Result<Spec, SubmissionError> {
    let mut v = Violations::default();
    let Some(reg) = msg.registration.as_ref() else {
        v.add("registration", "is required");
        return Err(SubmissionError::Invalid(v));
    };
    if !reg.institution_id.is_empty() {
        match parse_id(&reg.institution_id) {
            Ok(id) if id == applicant.institution_id => {}
            Ok(_) => return Err(SubmissionError::Refused(Refusal::NotFound("institution").into())),
            Err(e) => v.add("registration.institution_id", e.0),
        }
    }
    let spec =
        convert::new_spec(reg, applicant.category, OffsetDateTime::now_utc()).map_err(|e| e.nested("registration"));
    v.and(spec).map_err(SubmissionError::Invalid)
}

/// A dry run's answer: nothing was submitted, so nothing is named.
fn unnamed(mut r: pb::Registration) -> pb::Registration {
    r.id.clear();
    r.reference.clear();
    r.etag.clear();
    r
}

/// Most registrations one batch submits (AIP-233 batches are bounded).
const MAX_BATCH: usize = 100;

/// A BatchSubmitRegistrations request: each item parsed as a submission,
/// its violations named by its place (`requests[7].registration...`).
fn parse_batch(
    p: &Principal,
    applicant: Applicant,
    msg: &pb::BatchSubmitRegistrationsRequest,
) -> Result<(Vec<Spec>, WriteContext), Status> {
    let mut v = Violations::default();
    let ctx = convert::write_context(p, msg, true, &mut v);
    match msg.requests.len() {
        0 => v.add("requests", "must hold at least one submission"),
        n if n > MAX_BATCH => v.add(
            "requests",
            format!("holds {n} submissions; at most {MAX_BATCH} per batch"),
        ),
        _ => {}
    }
    let mut specs = Vec::with_capacity(msg.requests.len());
    for (i, item) in msg.requests.iter().enumerate().take(MAX_BATCH) {
        let at = format!("requests[{i}]");
        if !item.request_id.is_empty() {
            v.add(
                format!("{at}.request_id"),
                "must be empty: the batch's request_id applies",
            );
        }
        if item.validate_only {
            v.add(
                format!("{at}.validate_only"),
                "must be unset: the batch's validate_only applies",
            );
        }
        let item = pb::SubmitRegistrationRequest {
            request_id: String::new(),
            validate_only: false,
            registration: item.registration.clone(),
        };
        match parse_submission(applicant, &item) {
            Ok(spec) => specs.push(spec),
            Err(SubmissionError::Invalid(e)) => v.extend(e.nested(&at)),
            Err(SubmissionError::Refused(status)) => return Err(status),
        }
    }
    if !v.is_empty() {
        return Err(v.into());
    }
    Ok((specs, ctx))
}

/// An AmendRegistration request: id, etag, the patch and the write context.
fn parse_amend(
    p: &Principal,
    msg: &pb::AmendRegistrationRequest,
) -> Result<(Uuid, Option<Etag>, SpecPatch, WriteContext), Status> {
    let mut v = Violations::default();
    let ctx = convert::write_context(p, msg, false, &mut v);
    let fields = convert::mask_fields(
        msg.update_mask.as_ref(),
        SpecField::AMENDABLE,
        SpecField::as_str,
        &mut v,
    );
    let Some(reg) = msg.registration.as_ref() else {
        v.add("registration", "is required");
        return Err(v.into());
    };
    let id = v.check("registration.id", parse_id(&reg.id));
    let etag = convert::parse_etag(&reg.etag, "registration.etag", &mut v);
    let patch = convert::spec_patch(fields, reg)
        .map_err(|e| v.extend(e.nested("registration")))
        .ok();
    match (id, patch, v.is_empty()) {
        (Some(id), Some(patch), true) => Ok((id, etag, patch, ctx)),
        _ => Err(v.into()),
    }
}
