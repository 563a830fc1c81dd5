//! ApiKeyService: an organisation's owners manage its bearer tokens (the
//! gate admits only key managers: `permissions::for_key_managers`).

use std::time::Duration;

use tonic::{Request, Response, Status};

use super::convert::{self, timestamp};
use crate::auth::principal;
use crate::db::tokens::Key;
use crate::domain::{
    Violations,
    request::{page_size, parse_id},
};
use crate::pb::{self, api_key_service_server::ApiKeyService};
use crate::registry::{
    Registry,
    api_keys::{DEFAULT_ROTATION_GRACE, Issued, MAX_KEY_LIFETIME, MAX_ROTATION_GRACE},
};

/// Longest key name.
const MAX_NAME_CHARS: usize = 100;

pub struct ApiKeyApi {
    registry: Registry,
}

impl ApiKeyApi {
    pub fn new(registry: Registry) -> Self {
        Self { registry }
    }
}

pub fn key_to_pb(k: Key, secret: Option<String>) -> pb::ApiKey {
    pb::ApiKey {
        id: k.id.to_string(),
        name: k.name,
        secret: secret.unwrap_or_default(),
        create_time: Some(timestamp(k.create_time)),
        expire_time: Some(timestamp(k.expire_time)),
        last_use_time: k.last_use_time.map(timestamp),
        revoke_time: k.revoke_time.map(timestamp),
        manages_keys: k.manages_keys,
        rotated_from: k.rotated_from.map(|r| r.to_string()).unwrap_or_default(),
    }
}

fn issued(i: Issued) -> pb::ApiKey {
    key_to_pb(i.key, Some(i.secret))
}

/// A duration field: positive, at most `max`; `default` when unset.
fn bounded(
    field: &str,
    d: Option<&prost_types::Duration>,
    default: Duration,
    max: Duration,
    v: &mut Violations,
) -> Option<Duration> {
    let Some(d) = d else {
        return Some(default);
    };
    match Duration::try_from(*d) {
        Ok(d) if d.is_zero() => {
            v.add(field, "must be positive");
            None
        }
        Ok(d) if d > max => {
            v.add(field, format!("must be at most {}", humantime::format_duration(max)));
            None
        }
        Ok(d) => Some(d),
        Err(_) => {
            v.add(field, "must be positive");
            None
        }
    }
}

#[tonic::async_trait]
impl ApiKeyService for ApiKeyApi {
    async fn create_api_key(&self, req: Request<pb::CreateApiKeyRequest>) -> Result<Response<pb::ApiKey>, Status> {
        let p = principal(&req)?;
        let msg = req.get_ref();
        let mut v = Violations::default();
        let key = msg.api_key.clone().unwrap_or_default();
        let name = match crate::domain::text::bounded_text(&key.name, MAX_NAME_CHARS) {
            Ok(name) => Some(name),
            Err(e) => {
                v.add("api_key.name", e.0);
                None
            }
        };
        let lifetime = bounded("ttl", msg.ttl.as_ref(), MAX_KEY_LIFETIME, MAX_KEY_LIFETIME, &mut v);
        let (Some(name), Some(lifetime), true) = (name, lifetime, v.is_empty()) else {
            return Err(v.into());
        };
        let made = self
            .registry
            .create_key(p, &name, lifetime, key.manages_keys, "")
            .await?;
        Ok(Response::new(issued(made)))
    }

    async fn list_api_keys(
        &self,
        req: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let p = principal(&req)?;
        let msg = req.get_ref();
        let mut v = Violations::default();
        let limit = v.check("page_size", page_size(msg.page_size));
        let before = v.check("page_token", convert::parse_id_cursor(&msg.page_token));
        let (Some(limit), Some(before)) = (limit, before) else {
            return Err(v.into());
        };
        let page = self.registry.keys(p, before, limit).await?;
        let next_page_token = convert::id_page_token(&page, |k| k.id);
        Ok(Response::new(pb::ListApiKeysResponse {
            api_keys: page.items.into_iter().map(|k| key_to_pb(k, None)).collect(),
            next_page_token,
        }))
    }

    async fn rotate_api_key(&self, req: Request<pb::RotateApiKeyRequest>) -> Result<Response<pb::ApiKey>, Status> {
        let p = principal(&req)?;
        let msg = req.get_ref();
        let mut v = Violations::default();
        let id = v.check("id", parse_id(&msg.id));
        let grace = bounded(
            "grace",
            msg.grace.as_ref(),
            DEFAULT_ROTATION_GRACE,
            MAX_ROTATION_GRACE,
            &mut v,
        );
        let (Some(id), Some(grace), true) = (id, grace, v.is_empty()) else {
            return Err(v.into());
        };
        Ok(Response::new(issued(self.registry.rotate_key(p, id, grace).await?)))
    }

    async fn revoke_api_key(&self, req: Request<pb::RevokeApiKeyRequest>) -> Result<Response<pb::ApiKey>, Status> {
        let p = principal(&req)?;
        let id = parse_id(&req.get_ref().id).map_err(|e| Violations::one("id", e.0))?;
        let revoked = self.registry.revoke_key(p, id).await?;
        Ok(Response::new(key_to_pb(revoked, None)))
    }
}
