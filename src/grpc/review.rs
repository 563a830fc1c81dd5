//! ReviewService: the regulator's decisions, reviewers only.

use sqlx::PgPool;
use time::OffsetDateTime;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::convert::{self, registration_to_pb};
use super::error::ApiError;
use super::{idempotency_key, require_role};
use crate::auth::principal;
use crate::db::review::{self as store, ApproveOptions, Decision};
use crate::domain::{
    Violations,
    lifecycle::Event,
    principal::{Actor, Principal},
    request::{Etag, page_size, parse_id},
    state::State,
    text::Reason,
};
use crate::pb::{self, review_service_server::ReviewService};

pub struct ReviewApi {
    pool: PgPool,
}

impl ReviewApi {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// The fields every decision request carries, parsed.
struct DecisionArgs {
    id: Uuid,
    etag: Etag,
    decision: Decision,
}

/// Parses id, etag, reason code and reason; all are required.
fn parse_decision(
    event: Event,
    id: &str,
    etag: &str,
    reason_code: i32,
    reason: &str,
    v: &mut Violations,
) -> Option<DecisionArgs> {
    let id = v.check("id", parse_id(id));
    let etag = if etag.is_empty() {
        v.add("etag", "is required: decisions are taken on a version");
        None
    } else {
        convert::parse_etag(etag, "etag", v)
    };
    let reason_code = convert::reason_code_from_pb(reason_code);
    if reason_code.is_none() {
        v.add("reason_code", "is required");
    }
    let reason: Option<Reason> = convert::required("reason", reason, v);
    Some(DecisionArgs {
        id: id?,
        etag: etag?,
        decision: Decision {
            event,
            reason_code,
            reason: Some(reason?),
            approve: ApproveOptions::default(),
        },
    })
}

impl ReviewApi {
    async fn decide<M: prost::Message + Clone>(
        &self,
        p: &Principal,
        operation: &'static str,
        msg: &M,
        request_id: &str,
        clear: impl FnOnce(&mut M),
        parse: impl FnOnce(&mut Violations) -> Option<DecisionArgs>,
    ) -> Result<Response<pb::Registration>, Status> {
        require_role(p, &["reviewer"], "take review decisions")?;
        let mut v = Violations::default();
        let key = idempotency_key(p, operation, request_id, false, msg, clear, &mut v);
        let args = parse(&mut v);
        let (Some(args), true) = (args, v.is_empty()) else {
            return Err(ApiError::Invalid(v).into());
        };
        let actor = Actor::new(p, (!request_id.is_empty()).then(|| request_id.to_owned()));
        let (registration, serial) = store::decide(
            &self.pool,
            args.id,
            None,
            args.etag,
            &actor,
            key.as_ref(),
            args.decision,
        )
        .await
        .map_err(ApiError::from)?;
        tracing::info!(registration = %registration.id, operation, state = %registration.state, "decision recorded");
        Ok(Response::new(registration_to_pb(registration, serial)))
    }
}

/// Decisions that take only the common fields: one inherent method each.
macro_rules! simple_decisions {
    ($($fn_name:ident($req:ty) => $event:expr, $op:literal;)+) => {
        impl ReviewApi {
            $(
                async fn $fn_name(&self, req: Request<$req>) -> Result<Response<pb::Registration>, Status> {
                    let p = principal(&req)?.clone();
                    let msg = req.into_inner();
                    self.decide(&p, $op, &msg, &msg.request_id, |m| m.request_id.clear(), |v| {
                        parse_decision($event, &msg.id, &msg.etag, msg.reason_code, &msg.reason, v)
                    })
                    .await
                }
            )+
        }
    };
}

simple_decisions! {
    reject(pb::RejectRegistrationRequest) => Event::Reject, "RejectRegistration";
    request_info(pb::RequestInformationRequest) => Event::RequestInformation, "RequestInformation";
    suspend(pb::SuspendRegistrationRequest) => Event::Suspend, "SuspendRegistration";
    reinstate(pb::ReinstateRegistrationRequest) => Event::Reinstate, "ReinstateRegistration";
    revoke(pb::RevokeRegistrationRequest) => Event::Revoke, "RevokeRegistration";
}

#[tonic::async_trait]
impl ReviewService for ReviewApi {
    async fn list_review_queue(
        &self,
        req: Request<pb::ListReviewQueueRequest>,
    ) -> Result<Response<pb::ListReviewQueueResponse>, Status> {
        let p = principal(&req)?.clone();
        require_role(&p, &["reviewer"], "read the review queue")?;
        let msg = req.into_inner();
        let mut v = Violations::default();
        let limit = v.check("page_size", page_size(msg.page_size));
        let after = v.check("page_token", parse_queue_cursor(&msg.page_token));
        let kind = convert::kind_from_pb(msg.kind);
        if kind.is_none() && msg.kind != 0 {
            v.add("kind", format!("{} is not a RegistrationKind", msg.kind));
        }
        let category = convert::category_from_pb(msg.category);
        if category.is_none() && msg.category != 0 {
            v.add("category", format!("{} is not an InstitutionCategory", msg.category));
        }
        let (Some(limit), Some(after), true) = (limit, after, v.is_empty()) else {
            return Err(ApiError::Invalid(v).into());
        };
        let mut page = store::queue(&self.pool, State::UnderReview, None, kind, category, after, limit + 1)
            .await
            .map_err(ApiError::from)?;
        let next_page_token = next_queue_token(&mut page, limit);
        Ok(Response::new(pb::ListReviewQueueResponse {
            registrations: page.into_iter().map(|(r, _)| registration_to_pb(r, 0)).collect(),
            next_page_token,
        }))
    }

    async fn approve_registration(
        &self,
        req: Request<pb::ApproveRegistrationRequest>,
    ) -> Result<Response<pb::Registration>, Status> {
        let p = principal(&req)?.clone();
        let msg = req.into_inner();
        self.decide(
            &p,
            "ApproveRegistration",
            &msg,
            &msg.request_id,
            |m| m.request_id.clear(),
            |v| {
                let valid_until: Option<OffsetDateTime> = msg
                    .valid_until
                    .as_ref()
                    .and_then(|t| v.check("valid_until", convert::from_timestamp(t)));
                let mut args = parse_decision(Event::Approve, &msg.id, &msg.etag, msg.reason_code, &msg.reason, v)?;
                args.decision.approve = ApproveOptions {
                    valid_until,
                    override_size_limits: msg.override_size_limits,
                };
                Some(args)
            },
        )
        .await
    }

    async fn reject_registration(
        &self,
        req: Request<pb::RejectRegistrationRequest>,
    ) -> Result<Response<pb::Registration>, Status> {
        self.reject(req).await
    }

    async fn request_information(
        &self,
        req: Request<pb::RequestInformationRequest>,
    ) -> Result<Response<pb::Registration>, Status> {
        self.request_info(req).await
    }

    async fn suspend_registration(
        &self,
        req: Request<pb::SuspendRegistrationRequest>,
    ) -> Result<Response<pb::Registration>, Status> {
        self.suspend(req).await
    }

    async fn reinstate_registration(
        &self,
        req: Request<pb::ReinstateRegistrationRequest>,
    ) -> Result<Response<pb::Registration>, Status> {
        self.reinstate(req).await
    }

    async fn revoke_registration(
        &self,
        req: Request<pb::RevokeRegistrationRequest>,
    ) -> Result<Response<pb::Registration>, Status> {
        self.revoke(req).await
    }
}

/// Queue page tokens: `q:<unix nanos>:<uuid>` of the last item.
pub(crate) fn parse_queue_cursor(token: &str) -> Result<Option<store::QueueCursor>, crate::domain::text::Invalid> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || crate::domain::text::Invalid::new("is not a page token from a previous response");
    let mut parts = token.strip_prefix("q:").ok_or_else(bad)?.splitn(2, ':');
    let nanos: i128 = parts.next().and_then(|n| n.parse().ok()).ok_or_else(bad)?;
    let id = parts.next().and_then(|i| Uuid::try_parse(i).ok()).ok_or_else(bad)?;
    let at = OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| bad())?;
    Ok(Some((at, id)))
}

/// Trims a queue page fetched with one extra item and renders the next token.
pub(crate) fn next_queue_token(
    page: &mut Vec<(crate::domain::registration::Registration, OffsetDateTime)>,
    limit: i64,
) -> String {
    if page.len() as i64 <= limit {
        return String::new();
    }
    page.truncate(limit as usize);
    page.last()
        .map(|(r, at)| format!("q:{}:{}", at.unix_timestamp_nanos(), r.id.simple()))
        .unwrap_or_default()
}
