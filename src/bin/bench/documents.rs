//! Document uploads through the API (typed, hashed, sealed in segments,
//! audited) against inserting the same bytes into PostgreSQL directly.

use super::*;

/// The size of every document the section uploads.
const DOCUMENT_BYTES: usize = 1 << 20;
/// The chunk size a client streams in.
const CHUNK_BYTES: usize = 256 * 1024;

/// A 1 MiB PDF: typed by its first bytes, the rest random, as the
/// compressed streams of a real scan are (filler would let PostgreSQL's
/// compression flatter the direct insert: ours stores ciphertext).
fn document() -> Arc<Vec<u8>> {
    let mut content = b"%PDF-1.7\n".to_vec();
    let mut rng = fastrand::Rng::with_seed(22);
    content.extend((content.len()..DOCUMENT_BYTES).map(|_| rng.u8(..)));
    Arc::new(content)
}

/// Uploads 1 MiB documents through the API at concurrency `c`, as one
/// institution's own papers: documents per second.
pub(crate) async fn uploads(pool: &PgPool, server: SocketAddr, c: usize, duration: Duration) -> anyhow::Result<f64> {
    let institution: uuid::Uuid = sqlx::query_scalar("SELECT id FROM institutions ORDER BY id LIMIT 1")
        .fetch_one(pool)
        .await?;
    let token = issue(pool, Role::Institution(institution)).await?;
    await_credential(server, &token).await?;
    let client = DocumentServiceClient::new(channel(server).await?).max_decoding_message_size(4 << 20);
    let content = document();
    let token = Arc::new(token);
    let rate = drive(c, duration, move |_, _| {
        let mut client = client.clone();
        let mut parts = vec![pb::UploadDocumentRequest {
            part: Some(pb::upload_document_request::Part::Header(pb::DocumentHeader {
                institution_id: institution.to_string(),
                r#type: pb::DocumentType::IncorporationLetter as i32,
                file_name: "bench.pdf".into(),
                request_id: uuid::Uuid::new_v4().to_string(),
                size_bytes: DOCUMENT_BYTES as i64,
                ..Default::default()
            })),
        }];
        parts.extend(content.chunks(CHUNK_BYTES).map(|chunk| pb::UploadDocumentRequest {
            part: Some(pb::upload_document_request::Part::Content(chunk.to_vec())),
        }));
        let req = authed(tokio_stream::iter(parts), Some(&token));
        async move {
            client.upload_document(req).await?;
            Ok(())
        }
    })
    .await?;
    Ok(rate.rate)
}

/// The same bytes inserted straight into PostgreSQL, one row each (no
/// typing, hashing, sealing or audit): rows per second.
pub(crate) async fn raw_inserts(pool: &PgPool, c: usize, duration: Duration) -> anyhow::Result<f64> {
    sqlx::query("CREATE TABLE IF NOT EXISTS bench_document_bytes (id uuid PRIMARY KEY, content bytea NOT NULL)")
        .execute(pool)
        .await?;
    let pool = pool.clone();
    let content = document();
    let rate = drive(c, duration, move |_, _| {
        let (pool, content) = (pool.clone(), content.clone());
        async move {
            sqlx::query("INSERT INTO bench_document_bytes (id, content) VALUES ($1, $2)")
                .bind(uuid::Uuid::now_v7())
                .bind(&content[..])
                .execute(&pool)
                .await?;
            Ok(())
        }
    })
    .await?;
    Ok(rate.rate)
}
