//! InstitutionService: enrolment (administrators) and self-service upkeep.

use sqlx::PgPool;
use tonic::{Request, Response, Status};

use super::convert::{self, institution_to_pb};
use super::error::ApiError;
use super::{idempotency_key, require_role};
use crate::auth::principal;
use crate::db::institutions as store;
use crate::domain::{
    Violations,
    institution::{PROFILE_FIELDS, ProfileDraft, SELF_SERVICE_FIELDS},
    principal::{Actor, Role},
    request::{page_size, parse_id, parse_id_cursor, render_id_cursor},
};
use crate::pb::{self, institution_service_server::InstitutionService};

/// Roles that may read institutions (institutions only their own).
const READERS: &[&str] = &["admin", "reviewer", "institution"];

pub struct InstitutionApi {
    pool: PgPool,
}

impl InstitutionApi {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[tonic::async_trait]
impl InstitutionService for InstitutionApi {
    async fn create_institution(
        &self,
        req: Request<pb::CreateInstitutionRequest>,
    ) -> Result<Response<pb::Institution>, Status> {
        let p = principal(&req)?.clone();
        require_role(&p, &["admin"], "enrol institutions")?;
        let msg = req.into_inner();
        let mut v = Violations::default();
        let key = idempotency_key(
            &p,
            "CreateInstitution",
            &msg.request_id,
            true,
            &msg,
            |m| m.request_id.clear(),
            &mut v,
        );
        let parsed = match &msg.institution {
            Some(i) => convert::new_institution(i)
                .map_err(|e| v.extend(e.nested("institution")))
                .ok(),
            None => {
                v.add("institution", "is required");
                None
            }
        };
        let (Some((category, profile)), true) = (parsed, v.is_empty()) else {
            return Err(ApiError::Invalid(v).into());
        };
        let actor = Actor::new(&p, Some(msg.request_id.clone()));
        let created = store::create(&self.pool, category, &profile, &actor, key.as_ref())
            .await
            .map_err(ApiError::from)?;
        tracing::info!(institution = %created.id, "institution enrolled");
        Ok(Response::new(institution_to_pb(created)))
    }

    async fn get_institution(
        &self,
        req: Request<pb::GetInstitutionRequest>,
    ) -> Result<Response<pb::Institution>, Status> {
        let p = principal(&req)?.clone();
        require_role(&p, READERS, "read institutions")?;
        let id = parse_id(&req.get_ref().id).map_err(|e| ApiError::Invalid(Violations::one("id", e.0)))?;
        let found = store::get(&self.pool, id, p.visibility())
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(institution_to_pb(found)))
    }

    async fn list_institutions(
        &self,
        req: Request<pb::ListInstitutionsRequest>,
    ) -> Result<Response<pb::ListInstitutionsResponse>, Status> {
        let p = principal(&req)?.clone();
        require_role(&p, READERS, "list institutions")?;
        let msg = req.into_inner();
        let mut v = Violations::default();
        let limit = v.check("page_size", page_size(msg.page_size));
        let after = v.check("page_token", parse_id_cursor(&msg.page_token));
        let category = convert::category_from_pb(msg.category);
        if category.is_none() && msg.category != 0 {
            v.add("category", format!("{} is not an InstitutionCategory", msg.category));
        }
        let (Some(limit), Some(after)) = (limit, after) else {
            return Err(ApiError::Invalid(v).into());
        };
        if !v.is_empty() {
            return Err(ApiError::Invalid(v).into());
        }
        let mut page = store::list(&self.pool, p.visibility(), category, after, limit + 1)
            .await
            .map_err(ApiError::from)?;
        let next_page_token = next_token(&mut page, limit, |i| i.id);
        Ok(Response::new(pb::ListInstitutionsResponse {
            institutions: page.into_iter().map(institution_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn update_institution(
        &self,
        req: Request<pb::UpdateInstitutionRequest>,
    ) -> Result<Response<pb::Institution>, Status> {
        let p = principal(&req)?.clone();
        require_role(&p, &["admin", "institution"], "update institutions")?;
        let msg = req.into_inner();
        let mut v = Violations::default();
        let key = idempotency_key(
            &p,
            "UpdateInstitution",
            &msg.request_id,
            false,
            &msg,
            |m| m.request_id.clear(),
            &mut v,
        );
        let paths = convert::mask_paths(msg.update_mask.as_ref(), PROFILE_FIELDS, &mut v);
        if let Role::Institution(_) = p.role {
            let denied: Vec<&str> = paths
                .iter()
                .copied()
                .filter(|f| !SELF_SERVICE_FIELDS.contains(f))
                .collect();
            if !denied.is_empty() {
                return Err(ApiError::PermissionDenied(format!(
                    "an institution may change only {}; ask the registry to change {}",
                    SELF_SERVICE_FIELDS.join(", "),
                    denied.join(", ")
                ))
                .into());
            }
        }
        let Some(inst) = msg.institution.as_ref() else {
            v.add("institution", "is required");
            return Err(ApiError::Invalid(v).into());
        };
        let id = v.check("institution.id", parse_id(&inst.id));
        let etag = convert::parse_etag(&inst.etag, "institution.etag", &mut v);
        // Parse the new values before any row is locked, so bad input fails
        // fast; they are parsed again onto the locked current profile.
        let mut field_v = Violations::default();
        for path in &paths {
            convert::set_profile_field(&mut ProfileDraft::default(), path, inst, &mut field_v);
        }
        v.extend(field_v.nested("institution"));
        let Some(id) = id.filter(|_| v.is_empty()) else {
            return Err(ApiError::Invalid(v).into());
        };
        let actor = Actor::new(&p, (!msg.request_id.is_empty()).then(|| msg.request_id.clone()));
        let updated = store::update(&self.pool, id, p.visibility(), etag, &actor, key.as_ref(), |current| {
            let mut draft = ProfileDraft::from(current.profile.clone());
            let mut v = Violations::default();
            for path in &paths {
                convert::set_profile_field(&mut draft, path, inst, &mut v);
            }
            v.and(draft.finish(current.category))
                .map_err(|v| v.nested("institution"))
        })
        .await
        .map_err(ApiError::from)?;
        Ok(Response::new(institution_to_pb(updated)))
    }
}

/// Trims a page fetched with one extra row and returns the next page token.
pub(crate) fn next_token<T>(page: &mut Vec<T>, limit: i64, id: impl Fn(&T) -> uuid::Uuid) -> String {
    if page.len() as i64 > limit {
        page.truncate(limit as usize);
        page.last().map(|last| render_id_cursor(id(last))).unwrap_or_default()
    } else {
        String::new()
    }
}
