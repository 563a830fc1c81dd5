//! WebhookService: institutions' and ISP desks' endpoints, their secrets
//! and deliveries; administrators see all (and own none).

use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::convert::{self, timestamp};
use crate::auth::principal;
use crate::db::{events::Audience, webhooks as stored};
use crate::domain::{
    Violations,
    refusal::Refusal,
    request::{page_size, parse_id},
};
use crate::notify::webhook::{Answer, Sender, check_url};
use crate::pb::{self, webhook_service_server::WebhookService};
use crate::registry::{
    Registry,
    webhooks::{audience, event_types},
};

pub struct WebhookApi {
    registry: Registry,
    sender: Sender,
    allow_private: bool,
}

impl WebhookApi {
    pub fn new(registry: Registry, allow_private: bool) -> Self {
        Self {
            registry,
            sender: Sender::new(allow_private),
            allow_private,
        }
    }
}

/// Whose endpoints the caller sees.
fn seen_by<T>(req: &Request<T>) -> Result<Audience, Status> {
    let p = principal(req)?;
    audience(&p.role).ok_or_else(|| Refusal::PermissionDenied("no webhooks for this role".into()).into())
}

/// The caller as an owner: administrators own no endpoint.
fn owner<T>(req: &Request<T>) -> Result<Audience, Status> {
    match seen_by(req)? {
        Audience::All => Err(Refusal::PermissionDenied(
            "administrators see every webhook but own none; an institution or ISP desk registers its own".into(),
        )
        .into()),
        owner => Ok(owner),
    }
}

fn id_field(field: &str, raw: &str) -> Result<Uuid, Status> {
    parse_id(raw).map_err(|e| Violations::one(field, e.0).into())
}

fn webhook_to_pb(w: stored::Webhook, with_secret: bool) -> pb::Webhook {
    pb::Webhook {
        id: w.id.to_string(),
        url: w.url,
        event_types: w.event_types,
        secret: if with_secret { w.secret } else { String::new() },
        disable_time: w.disable_time.map(timestamp),
        disable_reason: w.disable_reason.unwrap_or_default(),
        previous_secret_expire_time: w
            .previous_secret_expire_time
            .filter(|t| *t > time::OffsetDateTime::now_utc())
            .map(timestamp),
        create_time: Some(timestamp(w.create_time)),
    }
}

fn delivery_to_pb(d: stored::Delivery) -> pb::WebhookDelivery {
    let pending = d.status == "PENDING";
    pb::WebhookDelivery {
        id: d.id.to_string(),
        webhook_id: d.webhook_id,
        event_id: d.event_id.to_string(),
        event_type: d.event_type,
        registration_id: d.registration_id.to_string(),
        reference: d.reference,
        status: d.status,
        attempts: d.attempts,
        last_status_code: d.last_code.unwrap_or_default(),
        last_error: d.last_error.unwrap_or_default(),
        last_attempt_time: d.last_attempt_time.map(timestamp),
        next_attempt_time: pending.then(|| timestamp(d.next_attempt_time)),
        create_time: Some(timestamp(d.create_time)),
    }
}

#[tonic::async_trait]
impl WebhookService for WebhookApi {
    async fn create_webhook(&self, req: Request<pb::CreateWebhookRequest>) -> Result<Response<pb::Webhook>, Status> {
        let owner = owner(&req)?;
        let webhook = req.get_ref().webhook.clone().unwrap_or_default();
        let mut v = Violations::default();
        if let Err(why) = check_url(&webhook.url, self.allow_private) {
            v.add("webhook.url", why);
        }
        let types = match event_types(&owner, &webhook.event_types) {
            Ok(types) => types,
            Err(more) => {
                v.extend(more);
                Vec::new()
            }
        };
        if !v.is_empty() {
            return Err(v.into());
        }
        let created = self.registry.create_webhook(&owner, &webhook.url, &types).await?;
        Ok(Response::new(webhook_to_pb(created, true)))
    }

    async fn list_webhooks(
        &self,
        req: Request<pb::ListWebhooksRequest>,
    ) -> Result<Response<pb::ListWebhooksResponse>, Status> {
        let audience = seen_by(&req)?;
        let msg = req.get_ref();
        let mut v = Violations::default();
        let limit = v.check("page_size", page_size(msg.page_size));
        let after = v.check("page_token", convert::parse_id_cursor(&msg.page_token));
        let (Some(limit), Some(after)) = (limit, after) else {
            return Err(v.into());
        };
        let page = self.registry.webhooks(&audience, after, limit).await?;
        let next_page_token = convert::id_page_token(&page, |w| w.id);
        Ok(Response::new(pb::ListWebhooksResponse {
            webhooks: page.items.into_iter().map(|w| webhook_to_pb(w, false)).collect(),
            next_page_token,
        }))
    }

    async fn delete_webhook(
        &self,
        req: Request<pb::DeleteWebhookRequest>,
    ) -> Result<Response<pb::DeleteWebhookResponse>, Status> {
        let audience = seen_by(&req)?;
        let id = id_field("id", &req.get_ref().id)?;
        self.registry.delete_webhook(&audience, id).await?;
        Ok(Response::new(pb::DeleteWebhookResponse {}))
    }

    async fn rotate_webhook_secret(
        &self,
        req: Request<pb::RotateWebhookSecretRequest>,
    ) -> Result<Response<pb::Webhook>, Status> {
        let owner = owner(&req)?;
        let id = id_field("id", &req.get_ref().id)?;
        let rotated = self.registry.rotate_webhook_secret(&owner, id).await?;
        Ok(Response::new(webhook_to_pb(rotated, true)))
    }

    async fn test_webhook(
        &self,
        req: Request<pb::TestWebhookRequest>,
    ) -> Result<Response<pb::TestWebhookResponse>, Status> {
        let owner = owner(&req)?;
        let id = id_field("id", &req.get_ref().id)?;
        let w = self.registry.webhook(&owner, id).await?;
        let ping_id = format!("ping_{}", Uuid::now_v7().simple());
        let body = serde_json::json!({
            "type": "webhook.ping",
            "timestamp": time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            "data": { "webhook_id": w.id },
        });
        let mut secrets = vec![w.secret.as_str()];
        if w.previous_secret_expire_time
            .is_some_and(|t| t > time::OffsetDateTime::now_utc())
        {
            secrets.extend(w.previous_secret.as_deref());
        }
        let answer = self
            .sender
            .post(&w.url, &secrets, &ping_id, bytes::Bytes::from(body.to_string()))
            .await;
        let (status_code, error) = match answer {
            Answer::Status { code, .. } if (200..300).contains(&code) => (i32::from(code), String::new()),
            Answer::Status { code, .. } => (i32::from(code), format!("the endpoint answered {code}")),
            Answer::Unreachable(why) => (0, why),
        };
        Ok(Response::new(pb::TestWebhookResponse {
            status_code,
            error,
            webhook_id: ping_id,
        }))
    }

    async fn list_webhook_deliveries(
        &self,
        req: Request<pb::ListWebhookDeliveriesRequest>,
    ) -> Result<Response<pb::ListWebhookDeliveriesResponse>, Status> {
        let audience = seen_by(&req)?;
        let msg = req.get_ref();
        let mut v = Violations::default();
        let webhook = v.check("webhook_id", parse_id(&msg.webhook_id));
        let limit = v.check("page_size", page_size(msg.page_size));
        let before = v.check("page_token", convert::parse_seq_cursor(&msg.page_token));
        let status = match msg.status.as_str() {
            "" => None,
            s @ ("PENDING" | "DELIVERED" | "DEAD") => Some(s),
            _ => {
                v.add("status", "must be PENDING, DELIVERED or DEAD");
                None
            }
        };
        let (Some(webhook), Some(limit), Some(before)) = (webhook, limit, before) else {
            return Err(v.into());
        };
        if !v.is_empty() {
            return Err(v.into());
        }
        let page = self
            .registry
            .webhook_deliveries(&audience, webhook, status, before, limit)
            .await?;
        let next_page_token = page
            .resume_after()
            .map(|d| convert::render_seq_cursor(d.id))
            .unwrap_or_default();
        Ok(Response::new(pb::ListWebhookDeliveriesResponse {
            deliveries: page.items.into_iter().map(delivery_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn redeliver_webhook(
        &self,
        req: Request<pb::RedeliverWebhookRequest>,
    ) -> Result<Response<pb::WebhookDelivery>, Status> {
        let audience = seen_by(&req)?;
        let id: i64 = req
            .get_ref()
            .delivery_id
            .parse()
            .map_err(|_| Violations::one("delivery_id", "is not a delivery id from ListWebhookDeliveries"))?;
        let delivery = self.registry.redeliver_webhook(&audience, id).await?;
        Ok(Response::new(delivery_to_pb(delivery)))
    }
}
