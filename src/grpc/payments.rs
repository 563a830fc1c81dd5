//! PaymentService: challans as applicants and staff read them, and the
//! collecting banks' confirmations (role `payments`, by the permission table).

use tonic::{Request, Response, Status};

use super::convert::timestamp;
use crate::auth::principal;
use crate::db::{fees::Challan, payments::Confirmation};
use crate::domain::{
    Violations,
    fees::{ChallanStatus, Psid},
    request::parse_id,
    text::bounded_text,
};
use crate::pb::{self, payment_service_server::PaymentService};
use crate::registry::Registry;

/// Longest transaction reference a bank may send.
const MAX_REFERENCE_CHARS: usize = 64;

pub struct PaymentApi {
    registry: Registry,
}

impl PaymentApi {
    pub fn new(registry: Registry) -> Self {
        Self { registry }
    }
}

fn status_to_pb(s: &str) -> i32 {
    (match ChallanStatus::from_db(s) {
        Some(ChallanStatus::Unpaid) => pb::ChallanStatus::Unpaid,
        Some(ChallanStatus::Paid) => pb::ChallanStatus::Paid,
        Some(ChallanStatus::Cancelled) => pb::ChallanStatus::Cancelled,
        Some(ChallanStatus::RefundDue) => pb::ChallanStatus::RefundDue,
        Some(ChallanStatus::Refunded) => pb::ChallanStatus::Refunded,
        None => pb::ChallanStatus::Unspecified,
    }) as i32
}

pub fn challan_to_pb(c: Challan) -> pb::Challan {
    pb::Challan {
        status: status_to_pb(&c.status),
        payment_id: c.psid,
        registration_id: c.registration_id.to_string(),
        revision_id: c.revision_id.map(|r| r.to_string()).unwrap_or_default(),
        institution_id: c.institution_id.to_string(),
        addresses: c.addresses,
        amount_pkr: c.amount_pkr,
        transaction_reference: c.transaction_reference.unwrap_or_default(),
        refund_reference: c.refund_reference.unwrap_or_default(),
        issue_time: Some(timestamp(c.issue_time)),
        pay_time: c.pay_time.map(timestamp),
        cancel_time: c.cancel_time.map(timestamp),
        refund_time: c.refund_time.map(timestamp),
    }
}

/// The payment id and transaction reference of a confirmation.
fn confirmation_fields(payment_id: &str, reference: &str, v: &mut Violations) -> Option<(Psid, String)> {
    let psid = v.check("payment_id", payment_id.parse::<Psid>());
    let reference = v.check("transaction_reference", bounded_text(reference, MAX_REFERENCE_CHARS));
    Some((psid?, reference?))
}

#[tonic::async_trait]
impl PaymentService for PaymentApi {
    async fn list_challans(
        &self,
        req: Request<pb::ListChallansRequest>,
    ) -> Result<Response<pb::ListChallansResponse>, Status> {
        let p = principal(&req)?;
        let id = parse_id(&req.get_ref().registration_id).map_err(|e| Violations::one("registration_id", e.0))?;
        let challans = self.registry.challans(p.visibility(), id).await?;
        Ok(Response::new(pb::ListChallansResponse {
            challans: challans.into_iter().map(challan_to_pb).collect(),
        }))
    }

    async fn get_challan(&self, req: Request<pb::GetChallanRequest>) -> Result<Response<pb::Challan>, Status> {
        let p = principal(&req)?;
        let psid: Psid = req
            .get_ref()
            .payment_id
            .parse()
            .map_err(|e: crate::domain::Invalid| Violations::one("payment_id", e.0))?;
        Ok(Response::new(challan_to_pb(self.registry.challan(p, &psid).await?)))
    }

    async fn confirm_payment(&self, req: Request<pb::ConfirmPaymentRequest>) -> Result<Response<pb::Challan>, Status> {
        let p = principal(&req)?;
        let msg = req.get_ref();
        let mut v = Violations::default();
        let fields = confirmation_fields(&msg.payment_id, &msg.transaction_reference, &mut v);
        if msg.amount_pkr <= 0 {
            v.add("amount_pkr", "must be the amount collected, in whole rupees");
        }
        let (Some((psid, reference)), true) = (fields, v.is_empty()) else {
            return Err(v.into());
        };
        let confirmation = Confirmation {
            psid: psid.as_str(),
            amount_pkr: Some(msg.amount_pkr),
            reference: &reference,
        };
        let paid = self.registry.confirm_payment(&confirmation, &p.actor("")).await?;
        Ok(Response::new(challan_to_pb(paid)))
    }

    async fn confirm_refund(&self, req: Request<pb::ConfirmRefundRequest>) -> Result<Response<pb::Challan>, Status> {
        let p = principal(&req)?;
        let msg = req.get_ref();
        let mut v = Violations::default();
        let fields = confirmation_fields(&msg.payment_id, &msg.transaction_reference, &mut v);
        let (Some((psid, reference)), true) = (fields, v.is_empty()) else {
            return Err(v.into());
        };
        let confirmation = Confirmation {
            psid: psid.as_str(),
            amount_pkr: None,
            reference: &reference,
        };
        let refunded = self.registry.confirm_refund(&confirmation, &p.actor("")).await?;
        Ok(Response::new(challan_to_pb(refunded)))
    }
}
