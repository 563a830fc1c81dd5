//! DocumentService: uploads typed by content, sealed at rest, streamed both
//! ways; who sees what; verdicts; key rotation.

use sqlx::PgPool;
use tonic::Code;
use uuid::Uuid;
use vpn_registry::pb::{self, DocumentType as T, InstitutionCategory as C};

use crate::helpers::*;

/// A PDF of `len` bytes with `marker` inside.
pub(crate) fn pdf(len: usize, marker: &[u8]) -> Vec<u8> {
    let mut content = b"%PDF-1.7\n".to_vec();
    content.extend_from_slice(marker);
    content.resize(len.max(content.len()), b'.');
    content
}

pub(crate) fn header(registration: &str, t: T, file_name: &str, request_id: &str) -> pb::UploadDocumentRequest {
    pb::UploadDocumentRequest {
        part: Some(pb::upload_document_request::Part::Header(pb::DocumentHeader {
            registration_id: registration.into(),
            institution_id: String::new(),
            r#type: t as i32,
            file_name: file_name.into(),
            request_id: request_id.into(),
            size_bytes: 0,
            sha256: String::new(),
        })),
    }
}

/// `header` declaring `size` bytes of content.
pub(crate) fn sized(mut header: pb::UploadDocumentRequest, size: i64) -> pb::UploadDocumentRequest {
    if let Some(pb::upload_document_request::Part::Header(h)) = &mut header.part {
        h.size_bytes = size;
    }
    header
}

/// Uploads `content` in 256 KiB chunks after the header (which declares
/// the content's length).
pub(crate) async fn upload(
    app: &TestApp,
    token: &str,
    header: pb::UploadDocumentRequest,
    content: &[u8],
) -> Result<pb::Document, tonic::Status> {
    let mut parts = vec![sized(header, content.len() as i64)];
    parts.extend(content.chunks(256 * 1024).map(|c| pb::UploadDocumentRequest {
        part: Some(pb::upload_document_request::Part::Content(c.to_vec())),
    }));
    app.documents(Some(token))
        .upload_document(tokio_stream::iter(parts))
        .await
        .map(tonic::Response::into_inner)
}

async fn download(app: &TestApp, token: &str, id: &str) -> Result<(pb::Document, Vec<u8>), tonic::Status> {
    let mut stream = app
        .documents(Some(token))
        .download_document(pb::DownloadDocumentRequest { id: id.into() })
        .await?
        .into_inner();
    let mut document = None;
    let mut content = Vec::new();
    while let Some(part) = stream.message().await? {
        match part.part {
            Some(pb::download_document_response::Part::Document(d)) => document = Some(d),
            Some(pb::download_document_response::Part::Content(c)) => content.extend(c),
            None => {}
        }
    }
    Ok((document.expect("the document first"), content))
}

/// A freelancer's registration with its employer's letter uploaded, and
/// another institution.
struct Letter {
    token: String,
    other: String,
    r: pb::Registration,
    made: pb::Document,
}

impl Letter {
    async fn upload(app: &TestApp) -> Self {
        let (_, token) = app.enrol(C::Freelancer).await;
        let (_, other) = app.enrol(C::Company).await;
        let r = app.submit(&token, &["8.8.8.0/24"]).await;
        let made = upload(
            app,
            &token,
            header(&r.id, T::EmployerLetter, "letter.pdf", &Uuid::new_v4().to_string()),
            &pdf(1000, b""),
        )
        .await
        .unwrap();
        Self { token, other, r, made }
    }
}

async fn stored(app: &TestApp) -> (i64, i64) {
    let documents: i64 = sqlx::query_scalar("SELECT count(*) FROM documents")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let segments: i64 = sqlx::query_scalar("SELECT count(*) FROM document_segments")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    (documents, segments)
}

#[sqlx::test]
async fn a_document_is_typed_by_its_content_sealed_at_rest_and_read_back_whole(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Company).await;
    let r = app.submit(&token, &["8.8.8.0/24"]).await;
    let marker = b"MARKER-CNIC-35202-1234567-1";
    let content = pdf(3 * 64 * 1024 + 100, marker);
    let request_id = Uuid::new_v4().to_string();
    let made = upload(
        &app,
        &token,
        header(&r.id, T::CnicFront, "cnic.png", &request_id),
        &content,
    )
    .await
    .unwrap();
    assert_eq!(made.media_type, "application/pdf", "the content decides, not the name");
    assert_eq!(made.size_bytes, content.len() as i64);
    assert_eq!(made.status, pb::DocumentStatus::Pending as i32);
    // A retry with the same request id is the same document.
    let again = upload(
        &app,
        &token,
        header(&r.id, T::CnicFront, "cnic.png", &request_id),
        &content,
    )
    .await
    .unwrap();
    assert_eq!(again.id, made.id);
    assert_eq!(stored(&app).await.0, 1);

    // The marker is nowhere in the database's tables.
    let found: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT FROM document_segments WHERE position($1 in sealed) > 0)
             OR EXISTS (SELECT FROM documents d WHERE position($1 in convert_to(d::text, 'UTF8')) > 0)",
    )
    .bind(&marker[..])
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(!found, "the content is sealed at rest");

    let (document, read) = download(&app, &token, &made.id).await.unwrap();
    assert_eq!(read, content);
    assert_eq!(document.sha256.len(), 64);
    let reviewer = app.reviewer_token().await.to_owned();
    let (_, as_reviewer) = download(&app, &reviewer, &made.id).await.unwrap();
    assert_eq!(as_reviewer, content);
    let views: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE subject_type = 'document' AND action = 'VIEWED'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(views, 2, "every read is audited");

    let listed = app
        .documents(Some(&token))
        .list_documents(pb::ListDocumentsRequest {
            registration_id: r.id.clone(),
            institution_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.documents.len(), 1);
    let gaps: Vec<&str> = listed.checklist.iter().map(|c| c.gap.as_str()).collect();
    assert_eq!(
        gaps,
        ["PENDING", "MISSING", "MISSING"],
        "CNIC front uploaded, back and incorporation missing"
    );

    // The reviewer's verdict: a rejection needs a reason.
    let mut review = app.documents(Some(&reviewer));
    let no_reason = review
        .verify_document(pb::VerifyDocumentRequest {
            id: made.id.clone(),
            status: pb::DocumentStatus::Rejected as i32,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&no_reason), ["reason"]);
    let verified = review
        .verify_document(pb::VerifyDocumentRequest {
            id: made.id.clone(),
            status: pb::DocumentStatus::Verified as i32,
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verified.status, pb::DocumentStatus::Verified as i32);
    let applicant_verifies = app
        .documents(Some(&token))
        .verify_document(pb::VerifyDocumentRequest {
            id: made.id.clone(),
            status: pb::DocumentStatus::Verified as i32,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(applicant_verifies.code(), Code::PermissionDenied);
}

#[sqlx::test]
async fn oversized_empty_and_foreign_content_is_refused_and_leaves_nothing(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Company).await;
    let r = app.submit(&token, &["8.8.8.0/24"]).await;
    let ten = pdf(10 * 1024 * 1024, b"");
    let accepted = upload(
        &app,
        &token,
        header(&r.id, T::TaxpayerProof, "tax.pdf", &Uuid::new_v4().to_string()),
        &ten,
    )
    .await
    .unwrap();
    assert_eq!(accepted.size_bytes, 10 * 1024 * 1024);
    let before = stored(&app).await;
    let eleven = pdf(11 * 1024 * 1024, b"");
    let refused = upload(
        &app,
        &token,
        header(&r.id, T::CnicBack, "big.pdf", &Uuid::new_v4().to_string()),
        &eleven,
    )
    .await
    .unwrap_err();
    assert_eq!(
        (refused.code(), violated_fields(&refused)),
        (Code::InvalidArgument, vec!["header.size_bytes".to_owned()])
    );
    // Declared short, sent long: refused as soon as it runs past.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let short = sized(
        header(&r.id, T::CnicBack, "short.pdf", &Uuid::new_v4().to_string()),
        1000,
    );
    tx.send(short).await.unwrap();
    tx.send(pb::UploadDocumentRequest {
        part: Some(pb::upload_document_request::Part::Content(pdf(2000, b""))),
    })
    .await
    .unwrap();
    drop(tx);
    let long = app
        .documents(Some(&token))
        .upload_document(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&long), ["content"]);
    let mut elf = b"\x7fELF\x02\x01\x01\0".to_vec();
    elf.resize(4096, 0);
    let exe = upload(
        &app,
        &token,
        header(&r.id, T::CnicBack, "cnic.pdf", &Uuid::new_v4().to_string()),
        &elf,
    )
    .await
    .unwrap_err();
    assert!(
        exe.message().contains("only PDF, JPEG and PNG") || format!("{exe:?}").contains("elf"),
        "{exe:?}"
    );
    let html = upload(
        &app,
        &token,
        header(&r.id, T::CnicBack, "cnic.pdf", &Uuid::new_v4().to_string()),
        b"<!DOCTYPE html><html><script>alert(1)</script></html>",
    )
    .await
    .unwrap_err();
    assert!(format!("{html:?}").contains("text/html"), "{html:?}");
    let empty = upload(
        &app,
        &token,
        header(&r.id, T::CnicBack, "cnic.pdf", &Uuid::new_v4().to_string()),
        b"",
    )
    .await
    .unwrap_err();
    assert_eq!(
        violated_fields(&empty),
        ["header.size_bytes"],
        "an empty document is refused"
    );
    assert_eq!(stored(&app).await, before, "nothing of the refused uploads is left");

    // A connection cut mid-upload leaves nothing either.
    // (The header declares more than is ever sent: however the connection
    // ends, the short upload is refused.)
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let cut = sized(
        header(&r.id, T::CnicBack, "cut.pdf", &Uuid::new_v4().to_string()),
        400_000,
    );
    tx.send(cut).await.unwrap();
    tx.send(pb::UploadDocumentRequest {
        part: Some(pb::upload_document_request::Part::Content(pdf(200_000, b""))),
    })
    .await
    .unwrap();
    let channel = app.new_connection();
    let mut client =
        pb::document_service_client::DocumentServiceClient::with_interceptor(channel, bearer(Some(&token)));
    let call = tokio::spawn(async move {
        client
            .upload_document(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    call.abort();
    drop(tx);
    eventually(
        "the cut upload is rolled back",
        std::time::Duration::from_secs(5),
        || async { (stored(&app).await == before).then_some(()) },
    )
    .await;
}

#[sqlx::test]
async fn documents_are_their_institutions_and_reviewers_and_nobody_elses(pool: PgPool) {
    let app = spawn_app(pool).await;
    let Letter { token, other, r, made } = Letter::upload(&app).await;
    let theirs = download(&app, &other, &made.id).await.unwrap_err();
    assert_eq!(theirs.code(), Code::NotFound);
    let listed = app
        .documents(Some(&other))
        .list_documents(pb::ListDocumentsRequest {
            registration_id: r.id.clone(),
            institution_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(listed.code(), Code::NotFound);
    let into_theirs = upload(
        &app,
        &other,
        header(&r.id, T::CnicFront, "x.pdf", &Uuid::new_v4().to_string()),
        &pdf(100, b""),
    )
    .await
    .unwrap_err();
    assert_eq!(into_theirs.code(), Code::NotFound);
    let isp = app.isp_token().await.to_owned();
    let lookup = app.token(vpn_registry::domain::principal::Role::Lookup).await;
    for t in [&isp, &lookup] {
        let refused = download(&app, t, &made.id).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied);
    }
    // Deleted by its owner before a decision: the content goes.
    let deleted = app
        .documents(Some(&token))
        .delete_document(pb::DeleteDocumentRequest { id: made.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.id, made.id);
    assert_eq!(stored(&app).await.1, 0, "the sealed content is destroyed");
    let gone = download(&app, &token, &made.id).await.unwrap_err();
    assert_eq!(gone.code(), Code::FailedPrecondition);
}

/// A server over the same database with only `keys` to open documents.
async fn server_with_keys(pool: PgPool, keys: &[std::path::PathBuf]) -> TestApp {
    let keyring = std::sync::Arc::new(vpn_registry::vault::Keyring::load(keys).unwrap());
    TestApp::builder(pool)
        .options(|o| o.document_keys = Some(keyring))
        .start()
        .await
}

#[sqlx::test]
async fn a_rotated_key_keeps_every_document_readable_and_another_key_reads_none(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let (_, token) = app.enrol(C::Company).await;
    let r = app.submit(&token, &["8.8.8.0/24"]).await;
    let content = pdf(200_000, b"rotation");
    let made = upload(
        &app,
        &token,
        header(&r.id, T::CnicFront, "cnic.pdf", &Uuid::new_v4().to_string()),
        &content,
    )
    .await
    .unwrap();
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("rotation-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let (new, stranger) = (dir.join("new.key"), dir.join("stranger.key"));
    let url = crate::cli::database_url(&app.pool);
    for out in [&new, &stranger] {
        let made = crate::cli::run(&["document-key", "generate", "--out", out.to_str().unwrap()], &url);
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    }
    let old = test_key_file().to_str().unwrap().to_owned();
    let rotated = crate::cli::run(
        &["document-key", "rotate", "--from", &old, "--to", new.to_str().unwrap()],
        &url,
    );
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    assert_eq!(String::from_utf8_lossy(&rotated.stdout).trim(), "1");

    let after = server_with_keys(pool.clone(), &[new]).await;
    let (_, read) = download(&after, &token, &made.id).await.unwrap();
    assert_eq!(read, content, "readable under the new key; content untouched");
    let wrong = server_with_keys(pool, &[stranger]).await;
    let refused = download(&wrong, &token, &made.id).await.unwrap_err();
    assert_ne!(refused.code(), Code::Ok);
    assert!(
        refused.message().contains("no configured document key") || refused.code() == Code::Internal,
        "{refused:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[sqlx::test]
async fn approval_waits_for_every_required_document_verified_and_names_each_gap(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Freelancer).await;
    let r = app.submit(&token, &["8.8.8.0/24"]).await;
    app.attest(&r, true).await.unwrap();
    let attested = app.get(&r.id).await;
    let front = upload(
        &app,
        &token,
        header(&r.id, T::CnicFront, "front.jpg", &Uuid::new_v4().to_string()),
        &pdf(500, b""),
    )
    .await
    .unwrap();
    let reviewer = app.reviewer_token().await.to_owned();
    let approve = |on: pb::Registration| {
        let (app, reviewer) = (&app, &reviewer);
        async move {
            let d = vpn_registry::domain::decision::Decision::Approve;
            app.decide_as_is(reviewer, d, &on, pb::ReasonCode::Compliant, "In order")
                .await
        }
    };
    let refused = approve(attested.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        precondition_gaps(&refused),
        [
            ("DOCUMENT_UNVERIFIED".to_owned(), "documents/CNIC_FRONT".to_owned()),
            ("DOCUMENT_MISSING".to_owned(), "documents/CNIC_BACK".to_owned()),
            ("DOCUMENT_MISSING".to_owned(), "documents/EMPLOYER_LETTER".to_owned()),
        ]
    );
    let mut made = vec![front];
    for (t, name) in [(T::CnicBack, "back.pdf"), (T::EmployerLetter, "letter.pdf")] {
        made.push(
            upload(
                &app,
                &token,
                header(&r.id, t, name, &Uuid::new_v4().to_string()),
                &pdf(500, b""),
            )
            .await
            .unwrap(),
        );
    }
    for d in &made {
        app.documents(Some(&reviewer))
            .verify_document(pb::VerifyDocumentRequest {
                id: d.id.clone(),
                status: pb::DocumentStatus::Verified as i32,
                reason: String::new(),
            })
            .await
            .unwrap();
    }
    let approved = approve(attested).await.expect("complete: approved");
    assert_eq!(approved.state, pb::RegistrationState::Active as i32);
}

#[sqlx::test]
async fn a_rejected_document_sends_the_registration_back_and_a_new_version_replaces_it(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Freelancer).await;
    let r = app.submit(&token, &["8.8.8.0/24"]).await;
    app.attest(&r, true).await.unwrap();
    assert_eq!(app.get(&r.id).await.state, pb::RegistrationState::UnderReview as i32);
    let first = upload(
        &app,
        &token,
        header(&r.id, T::CnicFront, "front.pdf", &Uuid::new_v4().to_string()),
        &pdf(500, b""),
    )
    .await
    .unwrap();
    let reviewer = app.reviewer_token().await.to_owned();
    app.documents(Some(&reviewer))
        .verify_document(pb::VerifyDocumentRequest {
            id: first.id.clone(),
            status: pb::DocumentStatus::Rejected as i32,
            reason: "The photo is blurred".into(),
        })
        .await
        .unwrap();
    let back = app.get(&r.id).await;
    assert_eq!(
        back.state,
        pb::RegistrationState::NeedsInfo as i32,
        "sent back to the applicant"
    );
    let asked = app.events(&r.id).await.pop().unwrap();
    assert_eq!(asked.reason_code, pb::ReasonCode::InvalidDocuments as i32);
    assert!(
        asked.reason.contains("CNIC (front) rejected: The photo is blurred"),
        "{asked:?}"
    );

    let second = upload(
        &app,
        &token,
        header(&r.id, T::CnicFront, "front-2.pdf", &Uuid::new_v4().to_string()),
        &pdf(600, b""),
    )
    .await
    .unwrap();
    assert_eq!(second.replaces, first.id, "the history keeps which version was judged");
    let listed = app
        .documents(Some(&token))
        .list_documents(pb::ListDocumentsRequest {
            registration_id: r.id.clone(),
            institution_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = listed.documents.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, [second.id.as_str()], "the current version only");
    assert_eq!(listed.checklist[0].gap, "PENDING");
}

#[sqlx::test]
async fn the_institution_sees_who_read_its_documents(pool: PgPool) {
    let app = spawn_app(pool).await;
    let Letter { token, other, r, made } = Letter::upload(&app).await;
    let reviewer = app.reviewer_token().await.to_owned();
    download(&app, &reviewer, &made.id).await.unwrap();
    download(&app, &token, &made.id).await.unwrap();
    let views = |token: String, page_token: String| {
        let (app, id) = (&app, r.id.clone());
        async move {
            app.documents(Some(&token))
                .list_document_views(pb::ListDocumentViewsRequest {
                    registration_id: id,
                    page_size: 1,
                    page_token,
                    ..Default::default()
                })
                .await
        }
    };
    let first = views(token.clone(), String::new()).await.unwrap().into_inner();
    assert_eq!(first.views.len(), 1);
    assert_eq!(first.views[0].viewer_role, pb::Role::Institution as i32, "newest first");
    let second = views(token.clone(), first.next_page_token).await.unwrap().into_inner();
    let by_reviewer = &second.views[0];
    assert_eq!(
        (by_reviewer.document_id.as_str(), by_reviewer.viewer_role),
        (made.id.as_str(), pb::Role::Reviewer as i32)
    );
    assert_eq!(
        by_reviewer.purpose,
        format!("review of registration {}", r.id),
        "why: the open review"
    );
    assert!(second.next_page_token.is_empty());
    let theirs = views(other, String::new()).await.unwrap_err();
    assert_eq!(theirs.code(), Code::NotFound);
}

#[sqlx::test]
async fn documents_of_registrations_ended_past_retention_are_destroyed(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Freelancer).await;
    let mut made = Vec::new();
    for prefix in ["8.8.8.0/24", "8.8.9.0/24", "8.8.10.0/24"] {
        let r = app.submit(&token, &[prefix]).await;
        let d = upload(
            &app,
            &token,
            header(&r.id, T::EmployerLetter, "letter.pdf", &Uuid::new_v4().to_string()),
            &pdf(200_000, b""),
        )
        .await
        .unwrap();
        made.push((r, d));
    }
    // Two withdrawn, one of them four years ago; one still pending.
    for (r, _) in &made[..2] {
        app.registrations(Some(&token))
            .withdraw_registration(pb::WithdrawRegistrationRequest {
                id: r.id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    sqlx::query("UPDATE registrations SET state_time = now() - interval '4 years' WHERE id = $1")
        .bind(made[0].0.id.parse::<Uuid>().unwrap())
        .execute(&app.pool)
        .await
        .unwrap();
    let three_years = vpn_registry::flags::duration(vpn_registry::flags::DEFAULT_DOCUMENT_RETENTION).unwrap();
    let destroyed = vpn_registry::tasks::prune::destroy_documents(&app.pool, three_years)
        .await
        .unwrap();
    assert_eq!(destroyed, 1);
    let (key, segments): (Vec<u8>, i64) = sqlx::query_as(
        "SELECT wrapped_key, (SELECT count(*) FROM document_segments WHERE document_id = d.id)
           FROM documents d WHERE id = $1",
    )
    .bind(made[0].1.id.parse::<Uuid>().unwrap())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((key.len(), segments), (0, 0), "content and data key destroyed");
    let gone = download(&app, &token, &made[0].1.id).await.unwrap_err();
    assert_eq!(gone.code(), Code::FailedPrecondition);
    for (_, kept) in &made[1..] {
        download(&app, &token, &kept.id).await.expect("inside retention: kept");
    }
    let trail: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE subject_id = $1 AND action IN ('UPLOADED', 'DESTROYED')",
    )
    .bind(made[0].1.id.parse::<Uuid>().unwrap())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(trail, 2, "the record of its existence stays");
    assert_eq!(
        vpn_registry::tasks::prune::destroy_documents(&app.pool, three_years)
            .await
            .unwrap(),
        0
    );
}
