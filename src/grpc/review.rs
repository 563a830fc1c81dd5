//! ReviewService: the regulator's decisions, reviewers only.

use tonic::{Request, Response, Status};

use super::convert::{self, WriteRequest, registration_to_pb};
use crate::auth::principal;
use crate::db::registrations::QueueFilter;
use crate::domain::{
    Violations,
    lifecycle::Event,
    request::{page_size, parse_id},
    state::State,
    text::Reason,
    workflow::{ApproveOptions, Decision},
};
use crate::pb::{self, review_service_server::ReviewService};
use crate::registry::Registry;

pub struct ReviewApi {
    registry: Registry,
}

impl ReviewApi {
    pub fn new(registry: Registry) -> Self {
        Self { registry }
    }
}

/// A decision request: each RPC has its own message (buf's naming rules),
/// all carrying the same fields.
trait DecisionRequest: WriteRequest {
    const EVENT: Event;
    /// id, etag, reason code, reason.
    fn fields(&self) -> (&str, &str, i32, &str);
}

macro_rules! decision_requests {
    ($($req:ty => $event:expr;)+) => {$(
        impl DecisionRequest for $req {
            const EVENT: Event = $event;
            fn fields(&self) -> (&str, &str, i32, &str) {
                (&self.id, &self.etag, self.reason_code, &self.reason)
            }
        }
    )+};
}

decision_requests! {
    pb::ApproveRegistrationRequest => Event::Approve;
    pb::RejectRegistrationRequest => Event::Reject;
    pb::RequestInformationRequest => Event::RequestInformation;
    pb::SuspendRegistrationRequest => Event::Suspend;
    pb::ReinstateRegistrationRequest => Event::Reinstate;
    pb::RevokeRegistrationRequest => Event::Revoke;
}

impl ReviewApi {
    /// Parses a decision (with what `approve` adds for approvals), takes it,
    /// and answers with the registration.
    async fn decide<M: DecisionRequest>(
        &self,
        req: Request<M>,
        approve: impl FnOnce(&M, &mut Violations) -> ApproveOptions,
    ) -> Result<Response<pb::Registration>, Status> {
        let p = principal(&req)?;
        let msg = req.get_ref();
        let (id, etag, reason_code, reason) = msg.fields();
        let mut v = Violations::default();
        let ctx = convert::write_context(p, msg, false, &mut v);
        let approve = approve(msg, &mut v);
        let id = v.check("id", parse_id(id));
        let etag = convert::required_etag(etag, "etag", "is required: decisions are taken on a version", &mut v);
        let reason_code = convert::reason_code_from_pb(reason_code);
        if reason_code.is_none() {
            v.add("reason_code", "is required");
        }
        let reason: Option<Reason> = convert::required("reason", reason, &mut v);
        let (Some(id), Some(etag), Some(reason), true) = (id, etag, reason, v.is_empty()) else {
            return Err(v.into());
        };
        let decision = Decision {
            event: M::EVENT,
            reason_code,
            reason: Some(reason),
            approve,
        };
        let (registration, serial) = self.registry.decide(id, etag, &decision, None, ctx).await?;
        Ok(Response::new(registration_to_pb(registration, serial)))
    }
}

fn no_options<M>(_: &M, _: &mut Violations) -> ApproveOptions {
    ApproveOptions::default()
}

#[tonic::async_trait]
impl ReviewService for ReviewApi {
    async fn list_review_queue(
        &self,
        req: Request<pb::ListReviewQueueRequest>,
    ) -> Result<Response<pb::ListReviewQueueResponse>, Status> {
        let msg = req.get_ref();
        let mut v = Violations::default();
        let limit = v.check("page_size", page_size(msg.page_size));
        let after = v.check("page_token", convert::parse_queue_cursor(&msg.page_token));
        let filter = QueueFilter {
            isp: convert::optional("isp", &msg.isp, &mut v),
            kind: convert::kind_filter(msg.kind, &mut v),
            category: convert::category_filter(msg.category, &mut v),
            queued_before: msg
                .queued_before
                .as_ref()
                .and_then(|t| v.check("queued_before", convert::from_timestamp(t))),
        };
        let (Some(limit), Some(after), true) = (limit, after, v.is_empty()) else {
            return Err(v.into());
        };
        let page = self.registry.queue(State::UnderReview, &filter, after, limit).await?;
        let next_page_token = convert::queue_page_token(page.resume_after());
        Ok(Response::new(pb::ListReviewQueueResponse {
            registrations: page.items.into_iter().map(|(r, _)| registration_to_pb(r, 0)).collect(),
            next_page_token,
        }))
    }

    async fn approve_registration(
        &self,
        req: Request<pb::ApproveRegistrationRequest>,
    ) -> Result<Response<pb::Registration>, Status> {
        self.decide(req, |msg, v| ApproveOptions {
            valid_until: msg
                .valid_until
                .as_ref()
                .and_then(|t| v.check("valid_until", convert::from_timestamp(t))),
            override_size_limits: msg.override_size_limits,
        })
        .await
    }

    async fn reject_registration(
        &self,
        req: Request<pb::RejectRegistrationRequest>,
    ) -> Result<Response<pb::Registration>, Status> {
        self.decide(req, no_options).await
    }

    async fn request_information(
        &self,
        req: Request<pb::RequestInformationRequest>,
    ) -> Result<Response<pb::Registration>, Status> {
        self.decide(req, no_options).await
    }

    async fn suspend_registration(
        &self,
        req: Request<pb::SuspendRegistrationRequest>,
    ) -> Result<Response<pb::Registration>, Status> {
        self.decide(req, no_options).await
    }

    async fn reinstate_registration(
        &self,
        req: Request<pb::ReinstateRegistrationRequest>,
    ) -> Result<Response<pb::Registration>, Status> {
        self.decide(req, no_options).await
    }

    async fn revoke_registration(
        &self,
        req: Request<pb::RevokeRegistrationRequest>,
    ) -> Result<Response<pb::Registration>, Status> {
        self.decide(req, no_options).await
    }
}
