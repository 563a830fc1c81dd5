//! InstitutionService: enrolment (administrators) and self-service upkeep.

use tonic::{Request, Response, Status};

use super::convert::{self, institution_to_pb};
use crate::auth::principal;
use uuid::Uuid;

use crate::domain::{
    Violations,
    institution::{ProfileField, ProfilePatch, check_self_service},
    principal::{Principal, Role},
    request::{Etag, page_size, parse_id},
};
use crate::pb::{self, institution_service_server::InstitutionService};
use crate::registry::{Registry, WriteContext};

pub struct InstitutionApi {
    registry: Registry,
}

impl InstitutionApi {
    pub fn new(registry: Registry) -> Self {
        Self { registry }
    }
}

#[tonic::async_trait]
impl InstitutionService for InstitutionApi {
    async fn create_institution(
        &self,
        req: Request<pb::CreateInstitutionRequest>,
    ) -> Result<Response<pb::Institution>, Status> {
        let p = principal(&req)?;
        let msg = req.get_ref();
        let mut v = Violations::default();
        let ctx = convert::write_context(p, msg, true, &mut v);
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
            return Err(v.into());
        };
        let dry_run = ctx.dry_run;
        let mut created = institution_to_pb(self.registry.enrol(category, profile, ctx).await?);
        if dry_run {
            // Nothing was enrolled: nothing to name.
            created.id.clear();
            created.etag.clear();
        }
        Ok(Response::new(created))
    }

    async fn get_institution(
        &self,
        req: Request<pb::GetInstitutionRequest>,
    ) -> Result<Response<pb::Institution>, Status> {
        let p = principal(&req)?;
        let id = parse_id(&req.get_ref().id).map_err(|e| Violations::one("id", e.0))?;
        let found = self.registry.institution(p.visibility(), id).await?;
        Ok(Response::new(institution_to_pb(found)))
    }

    async fn list_institutions(
        &self,
        req: Request<pb::ListInstitutionsRequest>,
    ) -> Result<Response<pb::ListInstitutionsResponse>, Status> {
        let p = principal(&req)?;
        let msg = req.get_ref();
        let mut v = Violations::default();
        let limit = v.check("page_size", page_size(msg.page_size));
        let after = v.check("page_token", convert::parse_id_cursor(&msg.page_token));
        let category = convert::category_filter(msg.category, &mut v);
        let (Some(limit), Some(after), true) = (limit, after, v.is_empty()) else {
            return Err(v.into());
        };
        let page = self
            .registry
            .institutions(p.visibility(), category, after, limit)
            .await?;
        let next_page_token = convert::id_page_token(&page, |i| i.id);
        Ok(Response::new(pb::ListInstitutionsResponse {
            institutions: page.items.into_iter().map(institution_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn update_institution(
        &self,
        req: Request<pb::UpdateInstitutionRequest>,
    ) -> Result<Response<pb::Institution>, Status> {
        let p = principal(&req)?;
        let (id, etag, patch, ctx) = parse_update(p, req.get_ref())?;
        let updated = self
            .registry
            .update_institution(p.visibility(), id, etag, patch, ctx)
            .await?;
        Ok(Response::new(institution_to_pb(updated)))
    }
}

/// An UpdateInstitution request: id, etag, the patch and the write context.
/// An institution naming fields only administrators may change is refused
/// before its values are looked at.
fn parse_update(
    p: &Principal,
    msg: &pb::UpdateInstitutionRequest,
) -> Result<(Uuid, Option<Etag>, ProfilePatch, WriteContext), Status> {
    let mut v = Violations::default();
    let ctx = convert::write_context(p, msg, false, &mut v);
    let fields = convert::mask_fields(
        msg.update_mask.as_ref(),
        ProfileField::ALL,
        ProfileField::as_str,
        &mut v,
    );
    if let Role::Institution(_) = p.role {
        check_self_service(&fields)?;
    }
    let Some(inst) = msg.institution.as_ref() else {
        v.add("institution", "is required");
        return Err(v.into());
    };
    let id = v.check("institution.id", parse_id(&inst.id));
    let etag = convert::parse_etag(&inst.etag, "institution.etag", &mut v);
    let patch = convert::profile_patch(fields, inst)
        .map_err(|e| v.extend(e.nested("institution")))
        .ok();
    match (id, patch, v.is_empty()) {
        (Some(id), Some(patch), true) => Ok((id, etag, patch, ctx)),
        _ => Err(v.into()),
    }
}
