//! DocumentService: uploads streamed into the vault as they arrive,
//! downloads streamed out of it, lists with what is missing, deletions and
//! verdicts. The rules are `registry::documents`'.

use std::pin::Pin;

use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};

use super::convert::timestamp;
use crate::auth::principal;
use crate::db::documents::Document;
use crate::domain::evidence::{DocumentStatus, DocumentType};
use crate::domain::request::{RequestId, page_size, parse_id};
use crate::domain::{Invalid, Violations};
use crate::pb::{self, document_service_server::DocumentService, download_document_response, upload_document_request};
use crate::registry::documents::{Begun, Documents, Header, Owner};

pub struct DocumentApi {
    documents: Documents,
}

impl DocumentApi {
    pub fn new(documents: Documents) -> Self {
        Self { documents }
    }
}

fn type_to_pb(t: &str) -> i32 {
    pb::DocumentType::from_str_name(&format!("DOCUMENT_TYPE_{t}")).map_or(0, |t| t as i32)
}

fn status_to_pb(s: &str) -> i32 {
    pb::DocumentStatus::from_str_name(&format!("DOCUMENT_STATUS_{s}")).map_or(0, |s| s as i32)
}

pub fn document_to_pb(d: &Document) -> pb::Document {
    pb::Document {
        id: d.id.to_string(),
        registration_id: d.registration_id.map(|r| r.to_string()).unwrap_or_default(),
        institution_id: d.institution_id.to_string(),
        r#type: type_to_pb(&d.r#type),
        file_name: d.file_name.clone(),
        media_type: d.media_type.clone(),
        size_bytes: d.size_bytes,
        sha256: d.sha256.iter().map(|b| format!("{b:02x}")).collect(),
        status: status_to_pb(&d.status),
        status_reason: d.status_reason.clone().unwrap_or_default(),
        create_time: Some(timestamp(d.create_time)),
        decide_time: d.decide_time.map(timestamp),
        replaces: d.replaces.map(|r| r.to_string()).unwrap_or_default(),
    }
}

fn document_type(value: i32, v: &mut Violations, field: &str) -> Option<DocumentType> {
    let parsed = pb::DocumentType::try_from(value)
        .ok()
        .filter(|t| *t != pb::DocumentType::Unspecified)
        .and_then(|t| DocumentType::from_db(t.as_str_name().trim_start_matches("DOCUMENT_TYPE_")));
    if parsed.is_none() {
        v.add(field, "must be a document type (such as DOCUMENT_TYPE_CNIC_FRONT)");
    }
    parsed
}

/// The owner a header or list request names: a registration, or an
/// institution's own documents.
async fn owner(
    documents: &Documents,
    p: &crate::domain::principal::Principal,
    (registration, institution): (&str, &str),
    prefix: &str,
    v: &mut Violations,
) -> Result<Option<Owner>, Status> {
    if !registration.is_empty() {
        let Some(id) = v.check(&format!("{prefix}registration_id"), parse_id(registration)) else {
            return Ok(None);
        };
        return Ok(Some(documents.owner_of_registration(p, id).await?));
    }
    let id = v.check(
        &format!("{prefix}institution_id"),
        parse_id(institution).map_err(|_| Invalid::new("is required when registration_id is empty (a UUID)")),
    );
    Ok(id.map(|institution| Owner {
        institution,
        registration: None,
    }))
}

fn view_to_pb(view: crate::db::documents::View) -> pb::DocumentView {
    pb::DocumentView {
        document_id: view.document_id.to_string(),
        document_type: type_to_pb(&view.document_type),
        viewer: view.viewer,
        viewer_role: super::convert::role_to_pb(&view.viewer_role) as i32,
        purpose: view.purpose.unwrap_or_default(),
        view_time: Some(super::convert::timestamp(view.view_time)),
    }
}

/// A SHA-256 in hex.
fn parse_sha256(hex: &str) -> Result<[u8; 32], Invalid> {
    let bad = || Invalid::new("must be 64 hex digits (a SHA-256)");
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

type DownloadStream = Pin<Box<dyn Stream<Item = Result<pb::DownloadDocumentResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DocumentService for DocumentApi {
    async fn upload_document(
        &self,
        req: Request<Streaming<pb::UploadDocumentRequest>>,
    ) -> Result<Response<pb::Document>, Status> {
        let p = principal(&req)?.clone();
        let mut stream = req.into_inner();
        let first = stream
            .message()
            .await?
            .and_then(|m| m.part)
            .ok_or_else(|| Status::from(Violations::one("header", "the first message must be the header")))?;
        let upload_document_request::Part::Header(h) = first else {
            return Err(Violations::one("header", "the first message must be the header").into());
        };
        let mut v = Violations::default();
        let owner = owner(
            &self.documents,
            &p,
            (&h.registration_id, &h.institution_id),
            "header.",
            &mut v,
        )
        .await?;
        let r#type = document_type(h.r#type, &mut v, "header.type");
        let file_name = v.check("header.file_name", crate::domain::text::bounded_text(&h.file_name, 200));
        let request_id = v.check("header.request_id", h.request_id.parse::<RequestId>());
        let size = u64::try_from(h.size_bytes).ok().filter(|s| *s > 0);
        if size.is_none() {
            v.add("header.size_bytes", "is required: the content's length in bytes");
        }
        let sha256 = match h.sha256.as_str() {
            "" => Some(None),
            hex => v.check("header.sha256", parse_sha256(hex)).map(Some),
        };
        let (Some(owner), Some(r#type), Some(file_name), Some(request_id), Some(size), Some(sha256), true) =
            (owner, r#type, file_name, request_id, size, sha256, v.is_empty())
        else {
            return Err(v.into());
        };
        let header = Header {
            owner,
            r#type,
            file_name: &file_name,
            request_id,
            size,
            sha256,
        };
        let actor = p.actor(&h.request_id);
        let mut upload = match self.documents.begin_upload(&p, &header, actor).await? {
            Begun::Done(done) => return Ok(Response::new(document_to_pb(&done))),
            Begun::Upload(upload) => upload,
        };
        // A transport error (a cut connection) ends here: the upload is
        // dropped and its transaction rolled back.
        while let Some(message) = stream.message().await? {
            match message.part {
                Some(upload_document_request::Part::Content(bytes)) => upload.push(&bytes).await?,
                Some(upload_document_request::Part::Header(_)) => {
                    return Err(Violations::one("header", "is sent once, first").into());
                }
                None => {}
            }
        }
        let stored = upload.finish().await?;
        Ok(Response::new(document_to_pb(&stored)))
    }

    async fn list_documents(
        &self,
        req: Request<pb::ListDocumentsRequest>,
    ) -> Result<Response<pb::ListDocumentsResponse>, Status> {
        let p = principal(&req)?;
        let msg = req.get_ref();
        let mut v = Violations::default();
        let owner = owner(
            &self.documents,
            p,
            (&msg.registration_id, &msg.institution_id),
            "",
            &mut v,
        )
        .await?;
        let (Some(owner), true) = (owner, v.is_empty()) else {
            return Err(v.into());
        };
        let (documents, checklist) = self.documents.list(p, owner).await?;
        Ok(Response::new(pb::ListDocumentsResponse {
            documents: documents.iter().map(document_to_pb).collect(),
            checklist: checklist
                .into_iter()
                .map(|(need, gap)| pb::RequiredDocument {
                    types: need.0.iter().map(|t| type_to_pb(t.as_str())).collect(),
                    gap: gap.map(|g| g.as_str().to_owned()).unwrap_or_default(),
                })
                .collect(),
        }))
    }

    type DownloadDocumentStream = DownloadStream;

    async fn download_document(
        &self,
        req: Request<pb::DownloadDocumentRequest>,
    ) -> Result<Response<DownloadStream>, Status> {
        let p = principal(&req)?;
        let id = parse_id(&req.get_ref().id).map_err(|e| Violations::one("id", e.0))?;
        let (document, opener) = self.documents.open(p, id, &p.actor("")).await?;
        let header = pb::DownloadDocumentResponse {
            part: Some(download_document_response::Part::Document(document_to_pb(&document))),
        };
        let content = ReceiverStream::new(self.documents.content(&document, opener)).map(|opened| {
            opened
                .map(|content| pb::DownloadDocumentResponse {
                    part: Some(download_document_response::Part::Content(content)),
                })
                .map_err(Status::from)
        });
        let parts = tokio_stream::once(Ok(header)).chain(content);
        Ok(Response::new(Box::pin(parts)))
    }

    async fn delete_document(&self, req: Request<pb::DeleteDocumentRequest>) -> Result<Response<pb::Document>, Status> {
        let p = principal(&req)?;
        let id = parse_id(&req.get_ref().id).map_err(|e| Violations::one("id", e.0))?;
        let deleted = self.documents.delete(p, id, &p.actor("")).await?;
        Ok(Response::new(document_to_pb(&deleted)))
    }

    async fn list_document_views(
        &self,
        req: Request<pb::ListDocumentViewsRequest>,
    ) -> Result<Response<pb::ListDocumentViewsResponse>, Status> {
        let p = principal(&req)?;
        let msg = req.get_ref();
        let mut v = Violations::default();
        let owner = owner(
            &self.documents,
            p,
            (&msg.registration_id, &msg.institution_id),
            "",
            &mut v,
        )
        .await?;
        let limit = v.check("page_size", page_size(msg.page_size));
        let before = v.check("page_token", super::convert::parse_seq_cursor(&msg.page_token));
        let (Some(owner), Some(limit), Some(before), true) = (owner, limit, before, v.is_empty()) else {
            return Err(v.into());
        };
        let page = self.documents.views(p, owner, before, limit).await?;
        let next_page_token = page
            .resume_after()
            .map(|view| super::convert::render_seq_cursor(view.sequence))
            .unwrap_or_default();
        Ok(Response::new(pb::ListDocumentViewsResponse {
            views: page.items.into_iter().map(view_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn verify_document(&self, req: Request<pb::VerifyDocumentRequest>) -> Result<Response<pb::Document>, Status> {
        let p = principal(&req)?;
        let msg = req.get_ref();
        let mut v = Violations::default();
        let id = v.check("id", parse_id(&msg.id));
        let status = match pb::DocumentStatus::try_from(msg.status) {
            Ok(pb::DocumentStatus::Verified) => Some(DocumentStatus::Verified),
            Ok(pb::DocumentStatus::Rejected) => Some(DocumentStatus::Rejected),
            _ => {
                v.add("status", "must be DOCUMENT_STATUS_VERIFIED or DOCUMENT_STATUS_REJECTED");
                None
            }
        };
        let (Some(id), Some(status), true) = (id, status, v.is_empty()) else {
            return Err(v.into());
        };
        let decided = self.documents.decide(p, id, status, &msg.reason, &p.actor("")).await?;
        Ok(Response::new(document_to_pb(&decided)))
    }
}
