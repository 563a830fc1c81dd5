//! An upload in progress: typed on its first bytes, hashed, sealed and
//! stored a message's worth of segments at a time, in one transaction that
//! a refusal or a cut connection rolls back whole.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::db::{StoreError, documents as store};
use crate::domain::Violations;
use crate::domain::evidence::{self, DocumentType, MediaType, Owner};
use crate::domain::principal::Actor;
use crate::domain::refusal::Refusal;
use crate::error::Result;
use crate::vault::{NONCE_PREFIX_LEN, Sealer};

/// Bytes the content type is decided on (all of a shorter document).
pub const SNIFF_BYTES: usize = 64;

/// An upload's start: already done (a retry), or to be fed.
pub enum Begun {
    Done(Box<store::Document>),
    Upload(Box<Upload>),
}

/// An upload in progress: content is typed on its first bytes, hashed,
/// sealed and stored segment by segment; dropped unfinished, it leaves
/// nothing.
pub struct Upload {
    /// What the header said the content is: its length and maybe its hash.
    pub(super) declared: (u64, Option<[u8; 32]>),
    pub(super) db: store::Upload,
    pub(super) id: Uuid,
    pub(super) owner: Owner,
    pub(super) r#type: DocumentType,
    pub(super) file_name: String,
    pub(super) request_id: String,
    pub(super) key_id: String,
    pub(super) wrapped_key: Vec<u8>,
    pub(super) prefix: [u8; NONCE_PREFIX_LEN],
    pub(super) sealer: Sealer,
    pub(super) head: Vec<u8>,
    pub(super) media_type: Option<MediaType>,
    pub(super) size: u64,
    pub(super) sha: Sha256,
    pub(super) max_bytes: u64,
    pub(super) actor: Actor,
    pub(super) pool: sqlx::PgPool,
}

impl Upload {
    /// Takes the next piece of content.
    pub async fn push(&mut self, content: &[u8]) -> Result<()> {
        self.size += content.len() as u64;
        if self.size > self.declared.0 {
            return Err(Violations::one(
                "content",
                format!("runs past the {} bytes the header declared", self.declared.0),
            )
            .into());
        }
        if self.size > self.max_bytes {
            return Err(
                Violations::one("content", format!("a document may be at most {} bytes", self.max_bytes)).into(),
            );
        }
        self.sha.update(content);
        if self.media_type.is_none() {
            self.head.extend_from_slice(content);
            if self.head.len() < SNIFF_BYTES {
                return Ok(());
            }
            self.type_head()?;
            let head = std::mem::take(&mut self.head);
            return self.seal(&head).await;
        }
        self.seal(content).await
    }

    fn type_head(&mut self) -> Result<()> {
        let media_type = evidence::sniff(&self.head).map_err(|why| Violations::one("content", why))?;
        self.media_type = Some(media_type);
        Ok(())
    }

    /// Seals what `content` completes and stores it in one statement (a
    /// message's worth of segments: one round trip, not one per segment).
    async fn seal(&mut self, content: &[u8]) -> Result<()> {
        let sealed = self.sealer.push(content);
        if !sealed.is_empty() {
            self.db.segments(&sealed).await?;
        }
        Ok(())
    }

    /// Ends the upload: an empty one is refused; the rest stored at once.
    pub async fn finish(mut self) -> Result<store::Document> {
        if self.size == 0 {
            return Err(Violations::one("content", "is empty: send the document's bytes after the header").into());
        }
        if self.size != self.declared.0 {
            return Err(Violations::one(
                "content",
                format!(
                    "ended after {} of the {} bytes the header declared (a cut upload is not stored)",
                    self.size, self.declared.0
                ),
            )
            .into());
        }
        if self.media_type.is_none() {
            self.type_head()?;
            let head = std::mem::take(&mut self.head);
            self.seal(&head).await?;
        }
        let last = self.sealer.finish();
        self.db.segments(&[last]).await?;
        let new = store::NewDocument {
            id: self.id,
            institution_id: self.owner.institution,
            registration_id: self.owner.registration,
            r#type: self.r#type,
            file_name: &self.file_name,
            request_id: &self.request_id,
            key_id: &self.key_id,
            wrapped_key: &self.wrapped_key,
            nonce_prefix: &self.prefix,
        };
        let sha: [u8; 32] = self.sha.finalize().into();
        if self.declared.1.is_some_and(|declared| declared != sha) {
            return Err(Violations::one("header.sha256", "does not match the content received").into());
        }
        let media_type = self.media_type.expect("typed above");
        let size = i64::try_from(self.size).unwrap_or(i64::MAX);
        let id = self.id;
        match self.db.finish(&new, media_type, size, &sha, &self.actor).await {
            Ok(()) => {}
            // The same request, finished first by another attempt.
            Err(StoreError::AlreadyExists(_)) => {
                return store::by_request(&self.pool, new.institution_id, new.request_id)
                    .await?
                    .ok_or_else(|| Refusal::NotFound("document").into());
            }
            Err(e) => return Err(e.into()),
        }
        store::get(&self.pool, id)
            .await?
            .ok_or_else(|| Refusal::NotFound("document").into())
    }
}
