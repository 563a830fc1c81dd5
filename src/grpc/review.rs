//! ReviewService: the regulator's decisions, reviewers only. Which decision
//! each RPC takes, and everything about it, is `domain::decision`; here each
//! decision's message is bound to it once (`decision_messages!`).

use prost::Message as _;
use tonic::{Request, Response, Status};

use super::convert::{self, WriteRequest, registration_to_pb};
use crate::auth::principal;
use crate::db::registrations::QueueFilter;
use crate::domain::{
    Violations,
    decision::Decision,
    request::{page_size, parse_id},
    state::State,
    text::Reason,
    workflow::{ApproveOptions, Ruling},
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

/// What every decision's request carries (each RPC has its own message,
/// by buf's naming rules); approval adds its options.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecisionFields {
    pub id: String,
    pub etag: String,
    pub reason_code: i32,
    pub reason: String,
    pub request_id: String,
    /// Approval only: end validity earlier than requested.
    pub valid_until: Option<prost_types::Timestamp>,
    /// Approval only: accept justified prefixes beyond the size limits.
    pub override_size_limits: bool,
}

/// The message of a decision's RPC, and the decision it takes.
pub trait DecisionMessage: WriteRequest {
    const DECISION: Decision;
    fn fields(&self) -> DecisionFields;
    fn from_fields(f: DecisionFields) -> Self;
}

/// Binds each decision to its RPC's message (with the fields beyond the
/// common ones it carries: the approval's options), and generates the two
/// places a decision known only at run time meets its message:
/// [`ReviewApi::take`] and [`encode`].
macro_rules! decision_messages {
    ($($decision:ident => $msg:ty { $($extra:ident),* },)+) => {
        $(
            impl DecisionMessage for $msg {
                const DECISION: Decision = Decision::$decision;
                #[allow(clippy::needless_update, reason = "the approval's message sets every field")]
                fn fields(&self) -> DecisionFields {
                    DecisionFields {
                        id: self.id.clone(),
                        etag: self.etag.clone(),
                        reason_code: self.reason_code,
                        reason: self.reason.clone(),
                        request_id: self.request_id.clone(),
                        $($extra: self.$extra.clone(),)*
                        ..DecisionFields::default()
                    }
                }
                fn from_fields(f: DecisionFields) -> Self {
                    Self {
                        id: f.id,
                        etag: f.etag,
                        reason_code: f.reason_code,
                        reason: f.reason,
                        request_id: f.request_id,
                        $($extra: f.$extra,)*
                    }
                }
            }
        )+

        impl ReviewApi {
            /// Takes `decision` as its RPC would (the console's way in).
            pub async fn take(
                &self,
                decision: Decision,
                req: Request<DecisionFields>,
            ) -> Result<Response<pb::Registration>, Status> {
                match decision {
                    $(Decision::$decision => self.decide(req.map(<$msg>::from_fields)).await,)+
                }
            }
        }

        /// The encoded request of `decision`'s RPC (for clients that pick
        /// the decision at run time, such as the tests).
        pub fn encode(decision: Decision, f: DecisionFields) -> Vec<u8> {
            match decision {
                $(Decision::$decision => <$msg>::from_fields(f).encode_to_vec(),)+
            }
        }
    };
}

decision_messages! {
    Approve => pb::ApproveRegistrationRequest { valid_until, override_size_limits },
    RequestInformation => pb::RequestInformationRequest {},
    Reject => pb::RejectRegistrationRequest {},
    Suspend => pb::SuspendRegistrationRequest {},
    Reinstate => pb::ReinstateRegistrationRequest {},
    Revoke => pb::RevokeRegistrationRequest {},
}

impl ReviewApi {
    /// Parses a decision request, takes the decision, and answers with the
    /// registration.
    async fn decide<M: DecisionMessage>(&self, req: Request<M>) -> Result<Response<pb::Registration>, Status> {
        let p = principal(&req)?;
        let msg = req.get_ref();
        let mut v = Violations::default();
        let ctx = convert::write_context(p, msg, false, &mut v);
        let ruling = ruling(M::DECISION, &msg.fields(), &mut v);
        let (Some((id, etag, ruling)), true) = (ruling, v.is_empty()) else {
            return Err(v.into());
        };
        let (registration, serial) = self.registry.decide(id, etag, &ruling, None, ctx).await?;
        Ok(Response::new(registration_to_pb(registration, serial)))
    }
}

/// The registration, version and ruling a decision request names, with
/// every problem in `v`: a reason code that does not justify `decision` is
/// one of them.
fn ruling(
    decision: Decision,
    f: &DecisionFields,
    v: &mut Violations,
) -> Option<(uuid::Uuid, crate::domain::request::Etag, Ruling)> {
    let id = v.check("id", parse_id(&f.id));
    let etag = convert::required_etag(&f.etag, "etag", "is required: decisions are taken on a version", v);
    let reason_code = convert::reason_code_from_pb(f.reason_code);
    match reason_code {
        None => v.add("reason_code", "is required"),
        Some(code) if !decision.justified_by(code) => v.add("reason_code", decision.unjustified(code)),
        Some(_) => {}
    }
    let reason: Option<Reason> = convert::required("reason", &f.reason, v);
    let approve = ApproveOptions {
        valid_until: f
            .valid_until
            .as_ref()
            .and_then(|t| v.check("valid_until", convert::from_timestamp(t))),
        override_size_limits: f.override_size_limits,
    };
    let ruling = Ruling {
        event: decision.about().event,
        reason_code,
        reason: Some(reason?),
        approve,
    };
    Some((id?, etag?, ruling))
}

impl ReviewApi {
    /// The review queue, oldest first, with its filters.
    async fn queue(
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
}

/// The service: the queue, and each decision's RPC taking it.
macro_rules! review_service {
    ($($rpc:ident($msg:ty);)+) => {
        #[tonic::async_trait]
        impl ReviewService for ReviewApi {
            async fn list_review_queue(
                &self,
                req: Request<pb::ListReviewQueueRequest>,
            ) -> Result<Response<pb::ListReviewQueueResponse>, Status> {
                self.queue(req).await
            }

            $(async fn $rpc(&self, req: Request<$msg>) -> Result<Response<pb::Registration>, Status> {
                self.decide(req).await
            })+
        }
    };
}

review_service! {
    approve_registration(pb::ApproveRegistrationRequest);
    reject_registration(pb::RejectRegistrationRequest);
    request_information(pb::RequestInformationRequest);
    suspend_registration(pb::SuspendRegistrationRequest);
    reinstate_registration(pb::ReinstateRegistrationRequest);
    revoke_registration(pb::RevokeRegistrationRequest);
}
