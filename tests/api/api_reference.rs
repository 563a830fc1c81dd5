//! `/api/`: the reference integrators read, the OpenAPI document (which
//! @redocly/cli must accept, listing every unary RPC of the descriptor set),
//! the descriptor set and the .proto files, without signing in.

use prost::Message as _;
use sqlx::PgPool;

use crate::connect_clients::integrator_tools;
use crate::helpers::*;

/// GETs `path` from the server's port with curl: (status, content type, body).
async fn get(app: &TestApp, path: &str) -> (u16, String, Vec<u8>) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code} %{content_type}"])
        .arg(format!("http://{}{path}", app.addr))
        .output()
        .await
        .unwrap();
    let mut body = out.stdout;
    let split = body.iter().rposition(|b| *b == b'\n').unwrap();
    let tail = String::from_utf8(body.split_off(split)).unwrap();
    let (status, content_type) = tail.trim().split_once(' ').unwrap_or((tail.trim(), ""));
    (status.parse().unwrap(), content_type.to_owned(), body)
}

/// Every unary RPC of the descriptor set, read independently of the server's
/// own table.
fn unary_rpcs() -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(vpn_registry::pb::FILE_DESCRIPTOR_SET).unwrap();
    let mut paths = Vec::new();
    for file in set.file.iter().filter(|f| f.package() == "vpnregistry.v1") {
        for service in &file.service {
            for method in service
                .method
                .iter()
                .filter(|m| !m.client_streaming() && !m.server_streaming())
            {
                paths.push(format!("/{}.{}/{}", file.package(), service.name(), method.name()));
            }
        }
    }
    paths.sort();
    paths
}

#[sqlx::test]
async fn the_openapi_document_lists_every_unary_rpc_and_passes_redocly(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (status, content_type, body) = get(&app, "/api/openapi.json").await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut paths: Vec<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    paths.sort();
    assert_eq!(paths, unary_rpcs());
    assert!(paths.contains(&"/vpnregistry.v1.RegistrationService/BatchSubmitRegistrations".to_owned()));
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");

    let file =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("openapi-{}.json", std::process::id()));
    std::fs::write(&file, &body).unwrap();
    let tools = integrator_tools();
    let lint = tokio::process::Command::new(tools.join("node"))
        .arg(tools.join("node_modules/@redocly/cli/bin/cli.js"))
        .args(["lint", "--format", "json"])
        .arg(&file)
        .output()
        .await
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    assert!(lint.status.success(), "redocly refused the document:\n{report}");
    let result: serde_json::Value = serde_json::from_slice(&lint.stdout).unwrap_or_else(|e| panic!("{e}: {report}"));
    assert_eq!(result["totals"]["errors"], 0, "{report}");
    assert_eq!(result["totals"]["warnings"], 0, "{report}");
    let _ = std::fs::remove_file(file);
}

#[sqlx::test]
async fn the_reference_page_and_downloads_need_no_token_and_nothing_from_elsewhere(pool: PgPool) {
    let app = spawn_app(pool).await;
    for path in ["/api/", "/api"] {
        let (status, content_type, body) = get(&app, path).await;
        assert_eq!(
            (status, content_type.as_str()),
            (200, "text/html; charset=utf-8"),
            "{path}"
        );
        let page = String::from_utf8(body).unwrap();
        for rpc in unary_rpcs() {
            assert!(page.contains(&format!("POST {rpc}")), "{rpc} is missing from the page");
        }
        assert!(
            page.contains("Required idempotency key"),
            "the proto comments are missing"
        );
        assert!(!page.contains("<script"), "the page runs a script");
        assert!(!page.contains("src=\"http"), "the page loads something from elsewhere");
    }

    let (status, _, body) = get(&app, "/api/vpnregistry.binpb").await;
    assert_eq!(status, 200);
    assert_eq!(body, vpn_registry::pb::FILE_DESCRIPTOR_SET);
    let path = "vpnregistry/v1/registration_service.proto";
    let (status, content_type, body) = get(&app, &format!("/api/proto/{path}")).await;
    assert_eq!((status, content_type.as_str()), (200, "text/plain; charset=utf-8"));
    let on_disk = std::fs::read(format!("{}/proto/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    assert_eq!(body, on_disk);
    let (status, _, _) = get(&app, "/api/proto/../Cargo.toml").await;
    assert_eq!(status, 404);
}
