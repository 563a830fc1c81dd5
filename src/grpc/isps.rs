//! IspService: the licensed-ISP list (administrators) and attestation (ISPs).

use std::collections::HashMap;

use sqlx::PgPool;
use tonic::{Request, Response, Status};

use super::convert::{self, attestation_to_pb, isp_to_pb};
use super::error::ApiError;
use super::review::{next_queue_token, parse_queue_cursor};
use super::{idempotency_key, require_role};
use crate::auth::principal;
use crate::db::{
    isps as store,
    review::{self, ApproveOptions, Decision},
};
use crate::domain::{
    Violations,
    lifecycle::Event,
    principal::{Actor, Role},
    registration::IspCode,
    request::page_size,
    state::{ReasonCode, State},
    text::{LegalName, Reason},
};
use crate::pb::{self, isp_service_server::IspService};

pub struct IspApi {
    pool: PgPool,
}

impl IspApi {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// The ISP an ISP principal acts for.
fn own_isp(p: &crate::domain::principal::Principal) -> Result<&IspCode, ApiError> {
    match &p.role {
        Role::Isp(code) => Ok(code),
        other => Err(ApiError::PermissionDenied(format!(
            "role {} may not attest registrations (allowed: isp)",
            other.as_str()
        ))),
    }
}

#[tonic::async_trait]
impl IspService for IspApi {
    async fn create_isp(&self, req: Request<pb::CreateIspRequest>) -> Result<Response<pb::Isp>, Status> {
        let p = principal(&req)?.clone();
        require_role(&p, &["admin"], "manage ISPs")?;
        let isp = req.into_inner().isp.unwrap_or_default();
        let mut v = Violations::default();
        let code: Option<IspCode> = convert::required("isp.code", &isp.code, &mut v);
        let name: Option<LegalName> = convert::required("isp.name", &isp.name, &mut v);
        let (Some(code), Some(name)) = (code, name) else {
            return Err(ApiError::Invalid(v).into());
        };
        let created = store::create(&self.pool, &code, name.as_str())
            .await
            .map_err(ApiError::from)?;
        tracing::info!(isp = %created.code, "ISP added");
        Ok(Response::new(isp_to_pb(created)))
    }

    async fn list_isps(&self, req: Request<pb::ListIspsRequest>) -> Result<Response<pb::ListIspsResponse>, Status> {
        principal(&req)?;
        let msg = req.into_inner();
        let limit = page_size(msg.page_size).map_err(|e| ApiError::Invalid(Violations::one("page_size", e.0)))?;
        let after = msg.page_token.strip_prefix("isp:");
        if !msg.page_token.is_empty() && after.is_none() {
            return Err(ApiError::Invalid(Violations::one(
                "page_token",
                "is not a page token from a previous response",
            ))
            .into());
        }
        let mut page = store::list(&self.pool, after, limit + 1)
            .await
            .map_err(ApiError::from)?;
        let next_page_token = if page.len() as i64 > limit {
            page.truncate(limit as usize);
            page.last().map(|i| format!("isp:{}", i.code)).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListIspsResponse {
            isps: page.into_iter().map(isp_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn list_pending_attestations(
        &self,
        req: Request<pb::ListPendingAttestationsRequest>,
    ) -> Result<Response<pb::ListPendingAttestationsResponse>, Status> {
        let p = principal(&req)?.clone();
        let isp = own_isp(&p)?.clone();
        let msg = req.into_inner();
        let mut v = Violations::default();
        let limit = v.check("page_size", page_size(msg.page_size));
        let after = v.check("page_token", parse_queue_cursor(&msg.page_token));
        let (Some(limit), Some(after)) = (limit, after) else {
            return Err(ApiError::Invalid(v).into());
        };
        let mut page = review::queue(
            &self.pool,
            State::IspVerification,
            Some(&isp),
            None,
            None,
            after,
            limit + 1,
        )
        .await
        .map_err(ApiError::from)?;
        let next_page_token = next_queue_token(&mut page, limit);
        let ids: Vec<_> = page.iter().map(|(r, _)| r.institution_id).collect();
        let names: HashMap<_, _> = review::institution_names(&self.pool, &ids)
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .map(|(id, name, category)| (id, (name, category)))
            .collect();
        let attestations = page
            .into_iter()
            .filter_map(|(r, _)| {
                let (name, category) = names.get(&r.institution_id)?.clone();
                Some(attestation_to_pb(r, name, category))
            })
            .collect();
        Ok(Response::new(pb::ListPendingAttestationsResponse {
            attestations,
            next_page_token,
        }))
    }

    async fn attest_registration(
        &self,
        req: Request<pb::AttestRegistrationRequest>,
    ) -> Result<Response<pb::Attestation>, Status> {
        let p = principal(&req)?.clone();
        let isp = own_isp(&p)?.clone();
        let msg = req.into_inner();
        let mut v = Violations::default();
        let key = idempotency_key(
            &p,
            "AttestRegistration",
            &msg.request_id,
            false,
            &msg,
            |m| m.request_id.clear(),
            &mut v,
        );
        let id = v.check("id", crate::domain::request::parse_id(&msg.id));
        let etag = if msg.etag.is_empty() {
            v.add("etag", "is required: attest the version you checked");
            None
        } else {
            convert::parse_etag(&msg.etag, "etag", &mut v)
        };
        let reason: Option<Reason> = if msg.confirmed {
            convert::optional("reason", &msg.reason, &mut v)
        } else {
            convert::required("reason", &msg.reason, &mut v)
        };
        let (Some(id), Some(etag), true) = (id, etag, v.is_empty()) else {
            return Err(ApiError::Invalid(v).into());
        };
        let decision = Decision {
            event: Event::Attest {
                confirmed: msg.confirmed,
            },
            reason_code: (!msg.confirmed).then_some(ReasonCode::IspNotConfirmed),
            reason,
            approve: ApproveOptions::default(),
        };
        let actor = Actor::new(&p, (!msg.request_id.is_empty()).then(|| msg.request_id.clone()));
        let (registration, _) = review::decide(&self.pool, id, Some(&isp), etag, &actor, key.as_ref(), decision)
            .await
            .map_err(ApiError::from)?;
        let (name, category) = review::institution_names(&self.pool, &[registration.institution_id])
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .next()
            .map(|(_, name, category)| (name, category))
            .ok_or(ApiError::Store(crate::db::StoreError::NotFound("institution")))?;
        Ok(Response::new(attestation_to_pb(registration, name, category)))
    }
}
