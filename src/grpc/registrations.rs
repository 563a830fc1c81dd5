//! RegistrationService: institutions submit and maintain their registrations;
//! reviewers and administrators read them.

use sqlx::PgPool;
use time::OffsetDateTime;
use tonic::{Request, Response, Status};

use super::convert::{self, registration_to_pb};
use super::error::ApiError;
use super::institutions::next_token;
use super::{idempotency_key, own_institution, require_role};
use crate::auth::principal;
use crate::db::{StoreError, institutions, registrations as store};
use crate::domain::{
    Violations,
    principal::{Actor, Principal},
    registration::{AMENDABLE_FIELDS, SpecDraft},
    request::{page_size, parse_id, parse_id_cursor, parse_seq_cursor, render_seq_cursor},
    text::Reason,
};
use crate::pb::{self, registration_service_server::RegistrationService};

/// Roles that may read registrations (institutions only their own).
const READERS: &[&str] = &["admin", "reviewer", "institution"];

pub struct RegistrationApi {
    pool: PgPool,
}

impl RegistrationApi {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// The institution an applicant acts for; only institutions apply.
fn applicant(p: &Principal, what: &str) -> Result<uuid::Uuid, ApiError> {
    require_role(p, &["institution"], what)?;
    own_institution(p).ok_or_else(|| ApiError::PermissionDenied(format!("only institutions may {what}")))
}

fn actor(p: &Principal, request_id: &str) -> Actor {
    Actor::new(p, (!request_id.is_empty()).then(|| request_id.to_owned()))
}

#[tonic::async_trait]
impl RegistrationService for RegistrationApi {
    async fn submit_registration(
        &self,
        req: Request<pb::SubmitRegistrationRequest>,
    ) -> Result<Response<pb::Registration>, Status> {
        let p = principal(&req)?.clone();
        let own = applicant(&p, "submit registrations")?;
        let msg = req.into_inner();
        let mut v = Violations::default();
        let key = idempotency_key(
            &p,
            "SubmitRegistration",
            &msg.request_id,
            true,
            &msg,
            |m| m.request_id.clear(),
            &mut v,
        );
        let Some(reg) = msg.registration.as_ref() else {
            v.add("registration", "is required");
            return Err(ApiError::Invalid(v).into());
        };
        if !reg.institution_id.is_empty() {
            match parse_id(&reg.institution_id) {
                Ok(id) if id == own => {}
                Ok(_) => return Err(ApiError::Store(StoreError::NotFound("institution")).into()),
                Err(e) => v.add("registration.institution_id", e.0),
            }
        }
        // The category is immutable, so reading it outside the write is safe.
        let category = institutions::get(&self.pool, own, p.visibility())
            .await
            .map_err(ApiError::from)?
            .category;
        let mut draft = SpecDraft::default();
        let mut field_v = Violations::default();
        for field in convert::SPEC_FIELDS {
            convert::set_spec_field(&mut draft, field, reg, &mut field_v);
        }
        let spec = field_v
            .and(draft.finish(category, OffsetDateTime::now_utc()))
            .map_err(|e| e.nested("registration"));
        let spec = v.and(spec).map_err(ApiError::Invalid)?;
        let created = store::submit(&self.pool, own, &spec, &actor(&p, &msg.request_id), key.as_ref())
            .await
            .map_err(ApiError::from)?;
        tracing::info!(registration = %created.id, reference = %created.reference, "registration submitted");
        Ok(Response::new(registration_to_pb(created, 0)))
    }

    async fn get_registration(
        &self,
        req: Request<pb::GetRegistrationRequest>,
    ) -> Result<Response<pb::Registration>, Status> {
        let p = principal(&req)?.clone();
        require_role(&p, READERS, "read registrations")?;
        let id = parse_id(&req.get_ref().id).map_err(|e| ApiError::Invalid(Violations::one("id", e.0)))?;
        let found = store::get(&self.pool, id, p.visibility())
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(registration_to_pb(found, 0)))
    }

    async fn list_registrations(
        &self,
        req: Request<pb::ListRegistrationsRequest>,
    ) -> Result<Response<pb::ListRegistrationsResponse>, Status> {
        let p = principal(&req)?.clone();
        require_role(&p, READERS, "list registrations")?;
        let msg = req.into_inner();
        let mut v = Violations::default();
        let limit = v.check("page_size", page_size(msg.page_size));
        let after = v.check("page_token", parse_id_cursor(&msg.page_token));
        let mut filter = store::Filter::default();
        if !msg.institution_id.is_empty() {
            filter.institution_id = v.check("institution_id", parse_id(&msg.institution_id));
        }
        filter.state = convert::state_from_pb(msg.state);
        if filter.state.is_none() && msg.state != 0 {
            v.add("state", format!("{} is not a RegistrationState", msg.state));
        }
        filter.category = convert::category_from_pb(msg.category);
        if filter.category.is_none() && msg.category != 0 {
            v.add("category", format!("{} is not an InstitutionCategory", msg.category));
        }
        filter.kind = convert::kind_from_pb(msg.kind);
        if filter.kind.is_none() && msg.kind != 0 {
            v.add("kind", format!("{} is not a RegistrationKind", msg.kind));
        }
        match msg.expiring_within_days {
            0 => {}
            days @ 1..=3660 => {
                filter.expiring_before = Some(OffsetDateTime::now_utc() + time::Duration::days(days.into()))
            }
            _ => v.add("expiring_within_days", "must be between 1 and 3660"),
        }
        let (Some(limit), Some(after), true) = (limit, after, v.is_empty()) else {
            return Err(ApiError::Invalid(v).into());
        };
        let mut page = store::list(&self.pool, p.visibility(), filter, after, limit + 1)
            .await
            .map_err(ApiError::from)?;
        let next_page_token = next_token(&mut page, limit, |r| r.id);
        Ok(Response::new(pb::ListRegistrationsResponse {
            registrations: page.into_iter().map(|r| registration_to_pb(r, 0)).collect(),
            next_page_token,
        }))
    }

    async fn amend_registration(
        &self,
        req: Request<pb::AmendRegistrationRequest>,
    ) -> Result<Response<pb::Registration>, Status> {
        let p = principal(&req)?.clone();
        applicant(&p, "amend registrations")?;
        let msg = req.into_inner();
        let mut v = Violations::default();
        let key = idempotency_key(
            &p,
            "AmendRegistration",
            &msg.request_id,
            false,
            &msg,
            |m| m.request_id.clear(),
            &mut v,
        );
        let paths = convert::mask_paths(msg.update_mask.as_ref(), AMENDABLE_FIELDS, &mut v);
        let Some(reg) = msg.registration.as_ref() else {
            v.add("registration", "is required");
            return Err(ApiError::Invalid(v).into());
        };
        let id = v.check("registration.id", parse_id(&reg.id));
        let etag = convert::parse_etag(&reg.etag, "registration.etag", &mut v);
        let mut field_v = Violations::default();
        for path in &paths {
            convert::set_spec_field(&mut SpecDraft::default(), path, reg, &mut field_v);
        }
        v.extend(field_v.nested("registration"));
        let Some(id) = id.filter(|_| v.is_empty()) else {
            return Err(ApiError::Invalid(v).into());
        };
        let now = OffsetDateTime::now_utc();
        let amended = store::amend(
            &self.pool,
            id,
            p.visibility(),
            etag,
            &actor(&p, &msg.request_id),
            key.as_ref(),
            |base, category| {
                let mut draft = SpecDraft::from(base.clone());
                let mut v = Violations::default();
                for path in &paths {
                    convert::set_spec_field(&mut draft, path, reg, &mut v);
                }
                v.and(draft.finish(category, now)).map_err(|v| v.nested("registration"))
            },
        )
        .await
        .map_err(ApiError::from)?;
        Ok(Response::new(registration_to_pb(amended.0, amended.1)))
    }

    async fn withdraw_registration(
        &self,
        req: Request<pb::WithdrawRegistrationRequest>,
    ) -> Result<Response<pb::Registration>, Status> {
        let p = principal(&req)?.clone();
        applicant(&p, "withdraw registrations")?;
        let msg = req.into_inner();
        let mut v = Violations::default();
        let key = idempotency_key(
            &p,
            "WithdrawRegistration",
            &msg.request_id,
            false,
            &msg,
            |m| m.request_id.clear(),
            &mut v,
        );
        let id = v.check("id", parse_id(&msg.id));
        let etag = convert::parse_etag(&msg.etag, "etag", &mut v);
        let reason: Option<Reason> = convert::optional("reason", &msg.reason, &mut v);
        let Some(id) = id.filter(|_| v.is_empty()) else {
            return Err(ApiError::Invalid(v).into());
        };
        let withdrawn = store::withdraw(
            &self.pool,
            id,
            p.visibility(),
            etag,
            &actor(&p, &msg.request_id),
            key.as_ref(),
            reason.as_ref(),
        )
        .await
        .map_err(ApiError::from)?;
        Ok(Response::new(registration_to_pb(withdrawn.0, withdrawn.1)))
    }

    async fn renew_registration(
        &self,
        req: Request<pb::RenewRegistrationRequest>,
    ) -> Result<Response<pb::Registration>, Status> {
        let p = principal(&req)?.clone();
        applicant(&p, "renew registrations")?;
        let msg = req.into_inner();
        let mut v = Violations::default();
        let key = idempotency_key(
            &p,
            "RenewRegistration",
            &msg.request_id,
            false,
            &msg,
            |m| m.request_id.clear(),
            &mut v,
        );
        let id = v.check("id", parse_id(&msg.id));
        let etag = convert::parse_etag(&msg.etag, "etag", &mut v);
        let valid_until = match &msg.valid_until {
            Some(t) => v.check("valid_until", convert::from_timestamp(t)),
            None => {
                v.add("valid_until", "is required");
                None
            }
        };
        let (Some(id), Some(valid_until), true) = (id, valid_until, v.is_empty()) else {
            return Err(ApiError::Invalid(v).into());
        };
        let (renewed, serial) = store::renew(
            &self.pool,
            id,
            p.visibility(),
            etag,
            &actor(&p, &msg.request_id),
            key.as_ref(),
            valid_until,
        )
        .await
        .map_err(ApiError::from)?;
        Ok(Response::new(registration_to_pb(renewed, serial)))
    }

    async fn list_registration_events(
        &self,
        req: Request<pb::ListRegistrationEventsRequest>,
    ) -> Result<Response<pb::ListRegistrationEventsResponse>, Status> {
        let p = principal(&req)?.clone();
        require_role(&p, READERS, "read registration history")?;
        let msg = req.into_inner();
        let mut v = Violations::default();
        let id = v.check("id", parse_id(&msg.id));
        let limit = v.check("page_size", page_size(msg.page_size));
        let after = v.check("page_token", parse_seq_cursor(&msg.page_token));
        let (Some(id), Some(limit), Some(after)) = (id, limit, after) else {
            return Err(ApiError::Invalid(v).into());
        };
        let mut events = store::events(&self.pool, id, p.visibility(), after, limit + 1)
            .await
            .map_err(ApiError::from)?;
        let next_page_token = if events.len() as i64 > limit {
            events.truncate(limit as usize);
            events.last().map(|e| render_seq_cursor(e.sequence)).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListRegistrationEventsResponse {
            events: events.into_iter().map(convert::event_to_pb).collect(),
            next_page_token,
        }))
    }
}
