//! Evidence in the console: a registration's document checklist and fees,
//! shown to its applicant (with an upload field per document still needed)
//! and to reviewers (each document viewable in the browser, with verify and
//! reject buttons). Uploads stream the file's bytes as the request body (the
//! page's script sends them with progress, after checking the type);
//! documents are served inline, typed as stored, under a policy that lets
//! the browser show a PDF or an image and nothing else.

use axum::{
    body::Body,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use maud::{Markup, html};
use serde::Deserialize;
use tokio_stream::StreamExt;
use uuid::Uuid;

use super::{Console, Id, Refused, Visitor, page};
use crate::domain::evidence::{DocumentType, Gap};
use crate::domain::request::RequestId;
use crate::pb::{self, document_service_server::DocumentService, payment_service_server::PaymentService};
use crate::registry::documents::{Begun, Header};

const LIST: &str = "/vpnregistry.v1.DocumentService/ListDocuments";
const UPLOAD: &str = "/vpnregistry.v1.DocumentService/UploadDocument";
const DOWNLOAD: &str = "/vpnregistry.v1.DocumentService/DownloadDocument";
const VERIFY: &str = "/vpnregistry.v1.DocumentService/VerifyDocument";
const CHALLANS: &str = "/vpnregistry.v1.PaymentService/ListChallans";

/// What a document is served under: the browser may show it, run nothing
/// from it, and frame it nowhere.
const DOCUMENT_POLICY: &str = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'";

/// A registration's evidence as the console shows it.
pub(super) struct Evidence {
    documents: pb::ListDocumentsResponse,
    challans: Vec<pb::Challan>,
}

impl Evidence {
    /// The documents, checklist and challans of registration `id`.
    pub(super) async fn load(c: &Console, v: &Visitor, id: &str) -> Result<Self, Refused> {
        let msg = pb::ListDocumentsRequest {
            registration_id: id.to_owned(),
            institution_id: String::new(),
        };
        let documents = c.call(v, LIST, msg, |req| c.documents.list_documents(req)).await?;
        let msg = pb::ListChallansRequest {
            registration_id: id.to_owned(),
        };
        let challans = c
            .call(v, CHALLANS, msg, |req| c.payments.list_challans(req))
            .await?
            .challans;
        Ok(Self { documents, challans })
    }

    /// What stands between the application and an approval, in words.
    pub(super) fn gaps(&self) -> Vec<String> {
        let documents = self.documents.checklist.iter().filter_map(|need| {
            let gap = Gap::from_db(&need.gap)?;
            let what = match gap {
                Gap::Missing => "missing",
                Gap::Pending => "not verified yet",
                Gap::Rejected => "rejected",
            };
            Some(format!("{}: {what}", labels(&need.types)))
        });
        let fees = self
            .challans
            .iter()
            .filter(|c| c.status == pb::ChallanStatus::Unpaid as i32)
            .map(|c| format!("fee of PKR {} unpaid (challan {})", c.amount_pkr, c.payment_id));
        documents.chain(fees).collect()
    }

    /// The checklist, the documents and the fees; `uploads` (the session's
    /// CSRF token) adds an upload field per requirement not met (the
    /// applicant, while the application is open), `verdicts` (likewise) the
    /// reviewer's buttons.
    pub(super) fn panel(&self, registration: &str, uploads: Option<&str>, verdicts: Option<&str>) -> Markup {
        html! {
            h2 { "Documents" }
            table {
                thead { tr { th { "Required" } th { "Status" } } }
                tbody {
                    @for need in &self.documents.checklist {
                        tr {
                            td { (labels(&need.types)) }
                            td {
                                (gap_words(&need.gap))
                                @if let (Some(csrf), Some(Gap::Missing | Gap::Rejected)) = (uploads, Gap::from_db(&need.gap)) {
                                    (upload_field(registration, &need.types, csrf))
                                }
                            }
                        }
                    }
                }
            }
            @if uploads.is_some() {
                noscript { p { "Uploading needs JavaScript in this browser; the API's UploadDocument works without it." } }
            }
            @if !self.documents.documents.is_empty() {
                table {
                    thead { tr { th { "File" } th { "Type" } th { "Size" } th { "Uploaded" } th { "Status" } @if verdicts.is_some() { th { "Verdict" } } } }
                    tbody {
                        @for d in &self.documents.documents {
                            tr {
                                td { a href={ "/console/documents/" (d.id) } target="_blank" rel="noopener" { (d.file_name) } }
                                td { (type_label(d.r#type)) br; small { (d.media_type) } }
                                td { (d.size_bytes / 1024) " KiB" }
                                td { (page::pkt_of(d.create_time.as_ref())) }
                                td {
                                    (page::words(pb::DocumentStatus::try_from(d.status).map_or("", |s| s.as_str_name()), "DOCUMENT_STATUS_"))
                                    @if !d.status_reason.is_empty() { ": " (d.status_reason) }
                                }
                                @if let Some(csrf) = verdicts {
                                    td { @if d.status == pb::DocumentStatus::Pending as i32 { (verdict_form(registration, &d.id, csrf)) } }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Fees" }
            @if self.challans.is_empty() {
                p { "No fee is owed." }
            } @else {
                table {
                    thead { tr { th { "Payment id (PSID)" } th { "Amount" } th { "Addresses" } th { "Status" } } }
                    tbody {
                        @for c in &self.challans {
                            tr {
                                td { code { (c.payment_id) } }
                                td { "PKR " (c.amount_pkr) }
                                td { (c.addresses) }
                                td { (page::words(pb::ChallanStatus::try_from(c.status).map_or("", |s| s.as_str_name()), "CHALLAN_STATUS_")) }
                            }
                        }
                    }
                }
                p { small { "Pay an unpaid challan at any bank branch or app with its payment id; the bank confirms the payment to the registry." } }
            }
        }
    }
}

fn type_of(t: i32) -> Option<DocumentType> {
    let name = pb::DocumentType::try_from(t).ok()?.as_str_name();
    DocumentType::from_db(name.trim_start_matches("DOCUMENT_TYPE_"))
}

fn type_label(t: i32) -> &'static str {
    type_of(t).map_or("Unknown", DocumentType::label)
}

fn labels(types: &[i32]) -> String {
    types.iter().map(|t| type_label(*t)).collect::<Vec<_>>().join(" or ")
}

fn gap_words(gap: &str) -> &'static str {
    match Gap::from_db(gap) {
        None => "Verified",
        Some(Gap::Missing) => "Missing",
        Some(Gap::Pending) => "Waiting for verification",
        Some(Gap::Rejected) => "Rejected: upload a new version",
    }
}

/// A file field for one requirement (its alternatives to choose from); the
/// page's script checks the type and sends it with progress.
fn upload_field(registration: &str, types: &[i32], csrf: &str) -> Markup {
    html! {
        form class="upload" data-registration=(registration) data-csrf=(csrf) {
            @if types.len() > 1 {
                label { "Which one "
                    select name="type" {
                        @for t in types { @if let Some(d) = type_of(*t) { option value=(d.as_str()) { (d.label()) } } }
                    }
                }
            } @else if let Some(d) = types.first().and_then(|t| type_of(*t)) {
                input type="hidden" name="type" value=(d.as_str());
            }
            label { "File (PDF, JPEG or PNG) "
                input type="file" name="file" accept=".pdf,.jpg,.jpeg,.png,application/pdf,image/jpeg,image/png" required;
            }
            button type="submit" { "Upload" }
            progress value="0" max="100" hidden {}
            span class="error" role="alert" {}
        }
    }
}

fn verdict_form(registration: &str, document: &str, csrf: &str) -> Markup {
    html! {
        form method="post" action={ "/console/documents/" (document) "/verdict" } {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="registration" value=(registration);
            button type="submit" name="status" value="VERIFIED" { "Verify" }
            label { "Reason to reject " input type="text" name="reason" maxlength="500"; }
            button type="submit" name="status" value="REJECTED" { "Reject" }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct UploadQuery {
    registration: String,
    r#type: String,
    name: String,
}

/// The answer to an upload the page's script reads: a status and, on a
/// refusal, what to say.
fn answered(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "message": message }))).into_response()
}

/// `POST /console/documents/upload`: the file's bytes as the body (its
/// length declared by `Content-Length`), streamed into the upload.
pub(super) async fn upload(
    State(c): State<Console>,
    v: Visitor,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let header_text = |name: &str| headers.get(name).and_then(|h| h.to_str().ok()).unwrap_or_default();
    if header_text("x-csrf-token") != v.session.csrf {
        return answered(
            StatusCode::FORBIDDEN,
            "this upload was not sent by your console page; reload it",
        );
    }
    if let Err(page) = c.admit(&v, UPLOAD) {
        return *page;
    }
    let size = header_text("content-length").parse::<u64>().unwrap_or(0);
    let (Ok(registration), Some(r#type), Ok(request_id)) = (
        Uuid::try_parse(&q.registration),
        DocumentType::from_db(&q.r#type),
        header_text("x-request-id").parse::<RequestId>(),
    ) else {
        return answered(
            StatusCode::BAD_REQUEST,
            "the upload names no registration, document type or request id",
        );
    };
    let p = v.session.principal.clone();
    let owner = match c.document_store.owner_of_registration(&p, registration).await {
        Ok(owner) => owner,
        Err(e) => return refusal(e),
    };
    let file_name: String = q.name.chars().take(200).collect();
    let header = Header {
        owner,
        r#type,
        file_name: &file_name,
        request_id,
        size,
        sha256: None,
    };
    let mut upload = match c.document_store.begin_upload(&p, &header, p.actor("")).await {
        Ok(Begun::Done(_)) => return answered(StatusCode::OK, "uploaded"),
        Ok(Begun::Upload(upload)) => upload,
        Err(e) => return refusal(e),
    };
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let pushed = match chunk {
            Ok(bytes) => upload.push(&bytes).await,
            Err(_) => return answered(StatusCode::BAD_REQUEST, "the upload was cut; nothing was stored"),
        };
        if let Err(e) = pushed {
            return refusal(e);
        }
    }
    match upload.finish().await {
        Ok(_) => answered(StatusCode::OK, "uploaded"),
        Err(e) => refusal(e),
    }
}

/// A refused upload, in the words of the API's status.
fn refusal(e: crate::error::Error) -> Response {
    let status = tonic::Status::from(e);
    let mut message = status.message().to_owned();
    if let Some(bad) = tonic_types::StatusExt::get_details_bad_request(&status) {
        let details: Vec<String> = bad.field_violations.iter().map(|f| f.description.clone()).collect();
        if !details.is_empty() {
            message = format!("The file {}", details.join("; "));
        }
    }
    answered(page::http_status(status.code()), &message)
}

/// `GET /console/documents/{id}`: the document in the browser, inline,
/// typed as stored (never sniffed), under a policy that runs nothing; the
/// read is audited as a download is.
pub(super) async fn view(State(c): State<Console>, v: Visitor, Path(Id { id }): Path<Id>) -> Response {
    if let Err(page) = c.admit(&v, DOWNLOAD) {
        return *page;
    }
    let Ok(id) = Uuid::try_parse(&id) else {
        return page::not_found();
    };
    let p = v.session.principal.clone();
    let (document, opener) = match c.document_store.open(&p, id, &p.actor("")).await {
        Ok(opened) => opened,
        Err(e) => return page::failed("Document", &tonic::Status::from(e), &v.session),
    };
    let content = tokio_stream::wrappers::ReceiverStream::new(c.document_store.content(&document, opener));
    let mut response =
        Body::from_stream(content.map(|opened| opened.map_err(|e| std::io::Error::other(e.to_string()))))
            .into_response();
    let headers = response.headers_mut();
    if let Ok(media_type) = HeaderValue::from_str(&document.media_type) {
        headers.insert(header::CONTENT_TYPE, media_type);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(document.size_bytes));
    headers.insert(header::CONTENT_DISPOSITION, disposition(&document.file_name));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DOCUMENT_POLICY),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// `inline` with the file's name: ASCII letters, digits and `.-_` kept,
/// anything else `_` (RFC 6266; no quoting or encoding to get wrong).
fn disposition(file_name: &str) -> HeaderValue {
    let safe: String = file_name
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || ".-_".contains(ch) {
                ch
            } else {
                '_'
            }
        })
        .collect();
    HeaderValue::from_str(&format!("inline; filename=\"{safe}\"")).unwrap_or(HeaderValue::from_static("inline"))
}

#[derive(Deserialize)]
pub(super) struct VerdictForm {
    csrf: String,
    registration: String,
    status: String,
    #[serde(default)]
    reason: String,
}

/// `POST /console/documents/{id}/verdict`: a reviewer verifies or rejects.
pub(super) async fn verdict(
    State(c): State<Console>,
    v: Visitor,
    Path(Id { id }): Path<Id>,
    axum::Form(f): axum::Form<VerdictForm>,
) -> Response {
    if let Err(refusal) = v.check_csrf(&f.csrf) {
        return *refusal;
    }
    let status = pb::DocumentStatus::from_str_name(&format!("DOCUMENT_STATUS_{}", f.status)).map_or(0, |s| s as i32);
    let msg = pb::VerifyDocumentRequest {
        id,
        status,
        reason: f.reason,
    };
    match c.call(&v, VERIFY, msg, |req| c.documents.verify_document(req)).await {
        Ok(_) => Redirect::to(&format!("/console/review/{}", f.registration)).into_response(),
        Err(refused) => refused.page("Document", &v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_name_cannot_escape_its_header() {
        assert_eq!(disposition("cnic front.pdf"), "inline; filename=\"cnic_front.pdf\"");
        assert_eq!(
            disposition("a\"; filename=evil.html\r\nX: y"),
            "inline; filename=\"a___filename_evil.html__X__y\""
        );
        assert_eq!(disposition("شناختی.pdf"), "inline; filename=\"______.pdf\"");
    }
}
