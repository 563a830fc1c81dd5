//! Self-service API keys: an organisation's owners make, rotate and revoke
//! the bearer tokens its systems use. Keys are the operator's credentials
//! (`api_tokens`), scoped to the owner's organisation; the in-memory
//! credential set follows the table's notifications, so a revoked key stops
//! on every replica within a second.

use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

use super::{Page, Registry};
use crate::auth::token;
use crate::db::{StoreError, events::Audience, tokens};
use crate::domain::principal::{Principal, Role};
use crate::domain::refusal::Refusal;
use crate::error::Result;

/// The longest a self-service key lives.
pub const MAX_KEY_LIFETIME: Duration = Duration::from_secs(365 * 86_400);
/// The longest an old secret keeps working after a rotation.
pub const MAX_ROTATION_GRACE: Duration = Duration::from_secs(7 * 86_400);
/// How long an old secret keeps working unless asked otherwise.
pub const DEFAULT_ROTATION_GRACE: Duration = Duration::from_secs(3600);

/// Whose keys a principal manages: its own organisation's.
pub fn key_owner(p: &Principal) -> std::result::Result<Audience, Refusal> {
    match &p.role {
        Role::Institution(id) => Ok(Audience::Institution(*id)),
        Role::Isp(code) => Ok(Audience::Isp(code.as_str().to_owned())),
        _ => Err(Refusal::PermissionDenied(
            "only institutions and ISPs manage keys here; the regulator's own use the operator's CLI".into(),
        )),
    }
}

fn fresh_token() -> Result<(String, [u8; 32])> {
    token::generate().map_err(|e| StoreError::Corrupt(format!("no randomness for a key: {e}")).into())
}

/// A key made or rotated: its record and its secret (shown once).
pub struct Issued {
    pub key: tokens::Key,
    pub secret: String,
}

impl Registry {
    /// Makes a key for `by`'s organisation, acting in its role and scope.
    pub async fn create_key(
        &self,
        by: &Principal,
        name: &str,
        lifetime: Duration,
        manages_keys: bool,
        request_id: &str,
    ) -> Result<Issued> {
        self.writable()?;
        let owner = key_owner(by)?;
        let (secret, hash) = fresh_token()?;
        let id = Uuid::now_v7();
        let new = tokens::NewToken {
            id,
            role: &by.role,
            name,
            hash,
            expire_time: OffsetDateTime::now_utc() + lifetime,
            cert_sha256: None,
            manages_keys,
        };
        tokens::insert(&self.pool, &new, &by.actor(request_id)).await?;
        let key = tokens::key(&self.pool, &owner, id).await?;
        Ok(Issued { key, secret })
    }

    pub async fn keys(&self, by: &Principal, before: Option<Uuid>, limit: i64) -> Result<Page<tokens::Key>> {
        let owner = key_owner(by)?;
        let fetched = tokens::keys(&self.pool, &owner, before.unwrap_or(Uuid::max()), limit + 1).await?;
        Ok(Page::of(fetched, limit))
    }

    /// A new secret for one of the organisation's keys; the old one works
    /// for `grace` more.
    pub async fn rotate_key(&self, by: &Principal, id: Uuid, grace: Duration) -> Result<Issued> {
        self.writable()?;
        let owner = key_owner(by)?;
        let (secret, hash) = fresh_token()?;
        let new_id = Uuid::now_v7();
        let grace_until = OffsetDateTime::now_utc() + grace;
        if !tokens::rotate(&self.pool, &owner, id, new_id, hash, grace_until, &by.actor("")).await? {
            return Err(Refusal::NotFound("active api key").into());
        }
        let key = tokens::key(&self.pool, &owner, new_id).await?;
        Ok(Issued { key, secret })
    }

    pub async fn revoke_key(&self, by: &Principal, id: Uuid) -> Result<tokens::Key> {
        self.writable()?;
        let owner = key_owner(by)?;
        if !tokens::revoke(&self.pool, &owner, id, &by.actor("")).await? {
            return Err(Refusal::NotFound("active api key").into());
        }
        Ok(tokens::key(&self.pool, &owner, id).await?)
    }
}
