//! Documents: who may upload, read, delete and judge which, uploads sealed
//! as they stream in (never held whole), and what an application still
//! lacks. Owners are the institution (its registrations' documents and its
//! own); reviewers read and judge every one; administrators read an
//! institution's own documents; nobody else sees any (their calls find
//! nothing).

use std::sync::Arc;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::Registry;
use super::upload::SNIFF_BYTES;
pub use super::upload::{Begun, Upload};
use crate::db::{StoreError, documents as store};
pub use crate::domain::evidence::Owner;
use crate::domain::evidence::{self, DocumentStatus, DocumentType, Gap, Requirement};
use crate::domain::principal::{Actor, Principal, Role, Visibility};
use crate::domain::refusal::Refusal;
use crate::domain::state::State;
use crate::domain::{Violations, request::RequestId};
use crate::error::{Error, Result};
use crate::vault::{Keyring, NONCE_PREFIX_LEN, Opener, Sealer, new_document_key};

/// The documents of this server: the registry's rules, the key files, the
/// size limit.
#[derive(Clone)]
pub struct Documents {
    registry: Registry,
    keys: Option<Arc<Keyring>>,
    max_bytes: u64,
}

/// What an upload says it is.
pub struct Header<'a> {
    pub owner: Owner,
    pub r#type: DocumentType,
    pub file_name: &'a str,
    pub request_id: RequestId,
    /// The length the content must have.
    pub size: u64,
    /// The SHA-256 it must have, if the client said.
    pub sha256: Option<[u8; 32]>,
}

/// How a caller stands to a document's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Owner,
    Reviewer,
    Admin,
}

fn not_found() -> Error {
    Refusal::NotFound("document").into()
}

impl Documents {
    pub fn new(registry: Registry, keys: Option<Arc<Keyring>>, max_bytes: u64) -> Self {
        Self {
            registry,
            keys,
            max_bytes,
        }
    }

    fn keys(&self) -> Result<&Keyring> {
        self.keys.as_deref().ok_or_else(|| {
            Refusal::Precondition {
                kind: "NO_DOCUMENT_KEY",
                subject: "documents".into(),
                message: "this server has no document key (--document-key-file): documents are unavailable".into(),
            }
            .into()
        })
    }

    /// How `p` stands to `owner`'s documents, checking the owner exists in
    /// `p`'s sight; ISPs and lookup services have no access at all.
    async fn access(&self, p: &Principal, owner: Owner) -> Result<Access> {
        let access = match &p.role {
            Role::Institution(id) if *id == owner.institution => Access::Owner,
            Role::Reviewer => Access::Reviewer,
            Role::Admin if owner.registration.is_none() => Access::Admin,
            Role::Isp(_) | Role::Lookup | Role::Payments => {
                return Err(Refusal::PermissionDenied(
                    "documents are not shown to ISPs, lookup services or payments systems".into(),
                )
                .into());
            }
            _ => return Err(not_found()),
        };
        if let Some(registration) = owner.registration {
            let vis = match access {
                Access::Owner => Visibility::Institution(owner.institution),
                _ => Visibility::All,
            };
            let r = self.registry.registration(vis, registration).await?;
            if r.institution_id != owner.institution {
                return Err(not_found());
            }
        } else {
            self.registry.institution(Visibility::All, owner.institution).await?;
        }
        Ok(access)
    }

    /// The owner of a registration's documents, as `p` sees it.
    pub async fn owner_of_registration(&self, p: &Principal, registration: Uuid) -> Result<Owner> {
        let r = self.registry.registration(p.visibility(), registration).await?;
        Ok(Owner {
            institution: r.institution_id,
            registration: Some(registration),
        })
    }

    /// Starts an upload: the document already stored under this request id,
    /// or an upload to feed.
    pub async fn begin_upload(&self, p: &Principal, h: &Header<'_>, actor: Actor) -> Result<Begun> {
        if self.access(p, h.owner).await? != Access::Owner {
            return Err(Refusal::PermissionDenied("only the institution uploads its documents".into()).into());
        }
        if let Some(registration) = h.owner.registration {
            let r = self.registry.registration(p.visibility(), registration).await?;
            if matches!(r.state, State::Withdrawn | State::Rejected | State::Revoked) {
                return Err(Refusal::WrongState {
                    current: r.state,
                    action: "given documents",
                }
                .into());
            }
        }
        let keys = self.keys()?;
        let pool = self.registry.pool();
        if let Some(done) = store::by_request(pool, h.owner.institution, h.request_id.as_str()).await? {
            return Ok(Begun::Done(Box::new(done)));
        }
        let (data_key, prefix) = new_document_key();
        let (key_id, wrapped_key) = keys.wrap(&data_key);
        if h.size > self.max_bytes {
            return Err(Violations::one(
                "header.size_bytes",
                format!("a document may be at most {} bytes", self.max_bytes),
            )
            .into());
        }
        let id = Uuid::now_v7();
        Ok(Begun::Upload(Box::new(Upload {
            declared: (h.size, h.sha256),
            db: store::Upload::begin(pool, id).await?,
            id,
            owner: h.owner,
            r#type: h.r#type,
            file_name: h.file_name.to_owned(),
            request_id: h.request_id.as_str().to_owned(),
            key_id,
            wrapped_key,
            prefix,
            sealer: Sealer::new(&data_key, &prefix),
            head: Vec::with_capacity(SNIFF_BYTES),
            media_type: None,
            size: 0,
            sha: Sha256::new(),
            max_bytes: self.max_bytes,
            actor,
            pool: pool.clone(),
        })))
    }

    /// The documents of `owner` as `p` may see them, with the checklist of
    /// a registration.
    pub async fn list(
        &self,
        p: &Principal,
        owner: Owner,
    ) -> Result<(Vec<store::Document>, Vec<(Requirement, Option<Gap>)>)> {
        self.access(p, owner).await?;
        let pool = self.registry.pool();
        let documents = store::list(pool, owner.institution, owner.registration).await?;
        let checklist = match owner.registration {
            Some(id) => {
                let r = self.registry.registration(Visibility::All, id).await?;
                self.registry.evidence_checklist(&r, &documents).await?
            }
            None => Vec::new(),
        };
        Ok((documents, checklist))
    }

    /// Who read `owner`'s documents, newest first (a page of `limit`,
    /// before audit sequence `before`).
    pub async fn views(
        &self,
        p: &Principal,
        owner: Owner,
        before: Option<i64>,
        limit: i64,
    ) -> Result<super::Page<store::View>> {
        self.access(p, owner).await?;
        let fetched = store::views(
            self.registry.pool(),
            owner.institution,
            owner.registration,
            before,
            limit + 1,
        )
        .await?;
        Ok(super::Page::of(fetched, limit))
    }

    /// A document `p` may see.
    async fn visible(&self, p: &Principal, id: Uuid) -> Result<(store::Document, Access)> {
        let d = store::get(self.registry.pool(), id).await?.ok_or_else(not_found)?;
        let owner = Owner {
            institution: d.institution_id,
            registration: d.registration_id,
        };
        let access = self.access(p, owner).await.map_err(|e| match e {
            Error::Refused(Refusal::NotFound(_)) => not_found(),
            e => e,
        })?;
        Ok((d, access))
    }

    /// Opens a document for reading: its record and what decrypts it; the
    /// read is audited with why (the owner's own, a review).
    pub async fn open(&self, p: &Principal, id: Uuid, actor: &Actor) -> Result<(store::Document, Opener)> {
        let (d, access) = self.visible(p, id).await?;
        if d.delete_time.is_some() {
            return Err(Refusal::Precondition {
                kind: "DOCUMENT_DELETED",
                subject: format!("documents/{id}"),
                message: "this document was deleted; its content is destroyed".into(),
            }
            .into());
        }
        if d.destroy_time.is_some() {
            return Err(Refusal::Precondition {
                kind: "DOCUMENT_DESTROYED",
                subject: format!("documents/{id}"),
                message: "its registration ended longer ago than the retention period: the content is destroyed".into(),
            }
            .into());
        }
        let data_key = self
            .keys()?
            .unwrap(&d.key_id, &d.wrapped_key)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let prefix: [u8; NONCE_PREFIX_LEN] = d
            .nonce_prefix
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt(format!("document {id}'s nonce prefix")))?;
        let why = match (access, d.registration_id) {
            (Access::Owner, _) => "the institution's own document".to_owned(),
            (Access::Reviewer, Some(r)) => format!("review of registration {r}"),
            (Access::Reviewer, None) => "review of the institution's documents".to_owned(),
            (Access::Admin, _) => "administration of the institution".to_owned(),
        };
        store::record_view(self.registry.pool(), id, &why, actor).await?;
        Ok((d, Opener::new(&data_key, &prefix)))
    }

    /// The content of an opened document, decrypted a segment at a time
    /// (two in flight at most), read by a task of its own; a segment that
    /// does not open ends the stream with the error.
    pub fn content(
        &self,
        document: &store::Document,
        mut opener: Opener,
    ) -> tokio::sync::mpsc::Receiver<Result<Vec<u8>>> {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let pool = self.registry.pool().clone();
        let (id, segments) = (document.id, i32::try_from(document.segments).unwrap_or(0));
        tokio::spawn(async move {
            for seq in 0..segments {
                let opened = match store::segment(&pool, id, seq).await {
                    Ok(sealed) => opener
                        .open(&sealed, seq + 1 == segments)
                        .map_err(|e| StoreError::Corrupt(format!("document {id} segment {seq}: {e}")).into()),
                    Err(e) => Err(e.into()),
                };
                let failed = opened.is_err();
                if tx.send(opened).await.is_err() || failed {
                    return;
                }
            }
        });
        rx
    }

    /// Deletes a document: its owner, before the registration is decided.
    pub async fn delete(&self, p: &Principal, id: Uuid, actor: &Actor) -> Result<store::Document> {
        let (d, access) = self.visible(p, id).await?;
        if access != Access::Owner {
            return Err(Refusal::PermissionDenied("only the institution deletes its documents".into()).into());
        }
        if d.delete_time.is_some() {
            return Err(not_found());
        }
        if let Some(registration) = d.registration_id {
            let r = self.registry.registration(p.visibility(), registration).await?;
            if !r.state.is_undecided() {
                return Err(Refusal::WrongState {
                    current: r.state,
                    action: "changed in its documents (upload a new version instead)",
                }
                .into());
            }
        }
        store::delete(self.registry.pool(), id, actor).await?;
        store::get(self.registry.pool(), id).await?.ok_or_else(not_found)
    }

    /// A reviewer's verdict; a rejection needs a reason.
    pub async fn decide(
        &self,
        p: &Principal,
        id: Uuid,
        status: DocumentStatus,
        reason: &str,
        actor: &Actor,
    ) -> Result<store::Document> {
        p.require(&[crate::domain::principal::RoleKind::Reviewer], "judge documents")?;
        let (d, _) = self.visible(p, id).await?;
        if d.delete_time.is_some() || d.segments == 0 {
            return Err(not_found());
        }
        let reason = reason.trim();
        if status == DocumentStatus::Rejected && reason.is_empty() {
            return Err(Violations::one("reason", "is required to reject a document").into());
        }
        let reason = (!reason.is_empty()).then_some(reason);
        store::decide(self.registry.pool(), id, status, reason, actor).await?;
        if let (DocumentStatus::Rejected, Some(registration), Some(reason)) = (status, d.registration_id, reason) {
            self.send_back(registration, &d, reason, actor).await?;
        }
        store::get(self.registry.pool(), id).await?.ok_or_else(not_found)
    }

    /// A rejected document sends a registration under review back to its
    /// applicant, as a request for information with the reason (a
    /// registration not under review keeps its state: the rejected document
    /// still stands in the way of an approval).
    async fn send_back(&self, registration: Uuid, d: &store::Document, reason: &str, actor: &Actor) -> Result<()> {
        let r = self.registry.registration(Visibility::All, registration).await?;
        let under_review = r.state == State::UnderReview
            || r.pending_revision
                .as_ref()
                .is_some_and(|p| p.state == State::UnderReview);
        if !under_review {
            return Ok(());
        }
        let label = DocumentType::from_db(&d.r#type).map_or(d.r#type.as_str(), |t| t.label());
        let said: String = format!("{label} rejected: {reason}").chars().take(1000).collect();
        let ruling = crate::domain::workflow::Ruling {
            event: crate::domain::lifecycle::Event::RequestInformation,
            reason_code: Some(crate::domain::state::ReasonCode::InvalidDocuments),
            reason: Some(
                said.parse()
                    .map_err(|e: crate::domain::Invalid| Violations::one("reason", e.0))?,
            ),
            approve: Default::default(),
        };
        let ctx = super::WriteContext {
            actor: actor.clone(),
            key: None,
            dry_run: false,
        };
        self.registry
            .decide(
                registration,
                crate::domain::request::Etag(r.version),
                &ruling,
                None,
                ctx,
            )
            .await?;
        Ok(())
    }
}

impl Registry {
    /// What `r` (as an approval would judge it: its pending revision's kind,
    /// if any) still lacks, given its current `documents`.
    pub(super) async fn evidence_checklist(
        &self,
        r: &crate::domain::registration::Registration,
        documents: &[store::Document],
    ) -> Result<Vec<(Requirement, Option<Gap>)>> {
        let kind = r.pending_revision.as_ref().map_or(r.spec.kind, |p| p.spec.kind);
        let institution = self.institution(Visibility::All, r.institution_id).await?;
        let held: Vec<(DocumentType, DocumentStatus)> = documents
            .iter()
            .filter_map(|d| Some((DocumentType::from_db(&d.r#type)?, DocumentStatus::from_db(&d.status)?)))
            .collect();
        Ok(evidence::checklist(
            &evidence::required(institution.category, kind),
            &held,
        ))
    }
}
