//! Webhook endpoints: who owns what, which event types an owner may ask
//! for, secrets and their rotation, deliveries and redelivery.

use std::time::Duration;

use uuid::Uuid;

use super::{Page, Registry};
use crate::db::{
    events::Audience,
    webhooks::{self, Delivery, Webhook},
};
use crate::domain::{Violations, event::EventType, principal::Role};
use crate::error::Result;

/// How long the previous secret keeps signing after a rotation.
pub const ROTATION_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Whose endpoints a principal sees (administrators: all; others none).
pub fn audience(role: &Role) -> Option<Audience> {
    match role {
        Role::Admin => Some(Audience::All),
        Role::Institution(id) => Some(Audience::Institution(*id)),
        Role::Isp(code) => Some(Audience::Isp(code.as_str().to_owned())),
        Role::Reviewer | Role::Lookup | Role::Payments => None,
    }
}

/// The event types `audience` may subscribe to: an institution hears about
/// its registrations, an ISP desk about what asks it to attest. `wanted`
/// empty: all of them. An unknown or foreign type is a field violation.
pub fn event_types(audience: &Audience, wanted: &[String]) -> std::result::Result<Vec<&'static str>, Violations> {
    let allowed: Vec<EventType> = EventType::ALL
        .iter()
        .copied()
        .filter(|t| !matches!(audience, Audience::Isp(_)) || t.asks_isp())
        .collect();
    if wanted.is_empty() {
        return Ok(allowed.iter().map(|t| t.as_str()).collect());
    }
    let mut v = Violations::default();
    let mut types = Vec::new();
    for (i, name) in wanted.iter().enumerate() {
        match EventType::from_db(name) {
            Some(t) if allowed.contains(&t) => {
                if !types.contains(&t.as_str()) {
                    types.push(t.as_str());
                }
            }
            Some(_) => v.add(
                format!("webhook.event_types[{i}]"),
                format!("{name} is not an event this caller receives"),
            ),
            None => v.add(
                format!("webhook.event_types[{i}]"),
                format!("{name:?} is not an event type (such as registration.approved)"),
            ),
        }
    }
    if v.is_empty() { Ok(types) } else { Err(v) }
}

/// A fresh signing secret (the system's randomness failing is no caller's fault).
fn new_secret() -> Result<String> {
    crate::notify::webhook::new_secret()
        .map_err(|e| crate::db::StoreError::Corrupt(format!("no randomness: {e}")).into())
}

impl Registry {
    pub async fn create_webhook(&self, owner: &Audience, url: &str, types: &[&str]) -> Result<Webhook> {
        self.writable()?;
        let secret = new_secret()?;
        Ok(webhooks::insert(&self.pool, owner, url, types, &secret).await?)
    }

    pub async fn webhooks(&self, audience: &Audience, after: Option<Uuid>, limit: i64) -> Result<Page<Webhook>> {
        let fetched = webhooks::list(&self.pool, audience, after.unwrap_or(Uuid::nil()), limit + 1).await?;
        Ok(Page::of(fetched, limit))
    }

    pub async fn webhook(&self, audience: &Audience, id: Uuid) -> Result<Webhook> {
        Ok(webhooks::get(&self.pool, audience, id).await?)
    }

    pub async fn delete_webhook(&self, audience: &Audience, id: Uuid) -> Result<()> {
        self.writable()?;
        Ok(webhooks::delete(&self.pool, audience, id).await?)
    }

    pub async fn rotate_webhook_secret(&self, audience: &Audience, id: Uuid) -> Result<Webhook> {
        self.writable()?;
        let secret = new_secret()?;
        Ok(webhooks::rotate(&self.pool, audience, id, &secret, ROTATION_GRACE).await?)
    }

    pub async fn webhook_deliveries(
        &self,
        audience: &Audience,
        webhook: Uuid,
        status: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Page<Delivery>> {
        webhooks::get(&self.pool, audience, webhook).await?;
        let fetched = webhooks::deliveries(&self.pool, webhook, status, before.unwrap_or(i64::MAX), limit + 1).await?;
        Ok(Page::of(fetched, limit))
    }

    /// Redelivers delivery `id` if `audience` sees its endpoint.
    pub async fn redeliver_webhook(&self, audience: &Audience, id: i64) -> Result<Delivery> {
        self.writable()?;
        let webhook = webhooks::delivery_webhook(&self.pool, id).await?;
        webhooks::get(&self.pool, audience, webhook).await?;
        Ok(webhooks::redeliver(&self.pool, id).await?)
    }
}
