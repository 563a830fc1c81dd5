//! IspService: the licensed-ISP list (administrators) and attestation (ISPs).

use tonic::{Request, Response, Status};

use super::convert::{self, attestation_to_pb, isp_to_pb};
use crate::auth::principal;
use crate::domain::{
    Violations,
    identifiers::IspCode,
    lifecycle::Event,
    principal::Principal,
    request::{Etag, page_size, parse_id},
    state::ReasonCode,
    text::{LegalName, Reason},
    workflow::{ApproveOptions, Ruling},
};
use crate::pb::{self, isp_service_server::IspService};
use uuid::Uuid;

use crate::registry::{Registry, WriteContext};

/// What the attestation RPCs say when the caller is no ISP.
const ATTEST: &str = "attest registrations";

pub struct IspApi {
    registry: Registry,
}

impl IspApi {
    pub fn new(registry: Registry) -> Self {
        Self { registry }
    }
}

#[tonic::async_trait]
impl IspService for IspApi {
    async fn create_isp(&self, req: Request<pb::CreateIspRequest>) -> Result<Response<pb::Isp>, Status> {
        let actor = principal(&req)?.actor("");
        let isp = req.get_ref().isp.clone().unwrap_or_default();
        let mut v = Violations::default();
        let code: Option<IspCode> = convert::required("isp.code", &isp.code, &mut v);
        let name: Option<LegalName> = convert::required("isp.name", &isp.name, &mut v);
        let (Some(code), Some(name)) = (code, name) else {
            return Err(v.into());
        };
        let created = self.registry.add_isp(&code, &name, &actor).await?;
        Ok(Response::new(isp_to_pb(created)))
    }

    async fn list_isps(&self, req: Request<pb::ListIspsRequest>) -> Result<Response<pb::ListIspsResponse>, Status> {
        principal(&req)?;
        let msg = req.get_ref();
        let limit = page_size(msg.page_size).map_err(|e| Violations::one("page_size", e.0))?;
        let after = msg.page_token.strip_prefix("isp:");
        if !msg.page_token.is_empty() && after.is_none() {
            return Err(Violations::one("page_token", "is not a page token from a previous response").into());
        }
        let page = self.registry.isps(after, limit).await?;
        let next_page_token = page
            .resume_after()
            .map(|i| format!("isp:{}", i.code))
            .unwrap_or_default();
        Ok(Response::new(pb::ListIspsResponse {
            isps: page.items.into_iter().map(isp_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn list_pending_attestations(
        &self,
        req: Request<pb::ListPendingAttestationsRequest>,
    ) -> Result<Response<pb::ListPendingAttestationsResponse>, Status> {
        let isp = principal(&req)?.isp(ATTEST)?;
        let msg = req.get_ref();
        let mut v = Violations::default();
        let limit = v.check("page_size", page_size(msg.page_size));
        let after = v.check("page_token", convert::parse_queue_cursor(&msg.page_token));
        let (Some(limit), Some(after)) = (limit, after) else {
            return Err(v.into());
        };
        let (attestations, resume) = self.registry.pending_attestations(isp, after, limit).await?;
        Ok(Response::new(pb::ListPendingAttestationsResponse {
            attestations: attestations.into_iter().map(attestation_to_pb).collect(),
            next_page_token: convert::queue_page_token(resume.as_ref()),
        }))
    }

    async fn attest_registration(
        &self,
        req: Request<pb::AttestRegistrationRequest>,
    ) -> Result<Response<pb::Attestation>, Status> {
        let p = principal(&req)?;
        let isp = p.isp(ATTEST)?;
        let (id, etag, decision, ctx) = parse_attest(p, req.get_ref())?;
        let attestation = self.registry.attest(isp, id, etag, &decision, ctx).await?;
        Ok(Response::new(attestation_to_pb(attestation)))
    }
}

/// An AttestRegistration request: id, etag, the decision (a denial must say
/// why) and the write context.
fn parse_attest(
    p: &Principal,
    msg: &pb::AttestRegistrationRequest,
) -> Result<(Uuid, Etag, Ruling, WriteContext), Status> {
    let mut v = Violations::default();
    let ctx = convert::write_context(p, msg, false, &mut v);
    let id = v.check("id", parse_id(&msg.id));
    let etag = convert::required_etag(&msg.etag, "etag", "is required: attest the version you checked", &mut v);
    let reason: Option<Reason> = if msg.confirmed {
        convert::optional("reason", &msg.reason, &mut v)
    } else {
        convert::required("reason", &msg.reason, &mut v)
    };
    let (Some(id), Some(etag), true) = (id, etag, v.is_empty()) else {
        return Err(v.into());
    };
    let decision = Ruling {
        event: Event::Attest {
            confirmed: msg.confirmed,
        },
        reason_code: (!msg.confirmed).then_some(ReasonCode::IspNotConfirmed),
        reason,
        approve: ApproveOptions::default(),
    };
    Ok((id, etag, decision, ctx))
}
