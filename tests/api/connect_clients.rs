//! The official Connect clients an integrator would pick (Node's
//! @connectrpc/connect-node over code from @bufbuild/protoc-gen-es, and
//! Python's connectrpc over the descriptor set the registry offers), in JSON
//! and binary, HTTP/1.1 and HTTP/2: the same registration as gRPC submits,
//! and the same refusal with the same details.

use base64::Engine as _;
use prost::Message as _;
use serde_json::Value;
use sqlx::PgPool;
use vpn_registry::pb::{self, InstitutionCategory as C};

use crate::connect::{comparable, submission, submission_json};
use crate::helpers::*;

/// The directory scripts/integrator-tools fills (installing on first use,
/// once per test process).
pub fn integrator_tools() -> std::path::PathBuf {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let out = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/integrator-tools"))
            .output()
            .expect("scripts/integrator-tools runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().into()
    })
    .clone()
}

/// One client and how it is asked to speak.
#[derive(Debug, Clone, Copy)]
enum Client {
    Node { binary: bool, http2: bool },
    Python { binary: bool },
}

/// Runs `client` for one call of `procedure` with `request` (JSON).
async fn call(client: Client, app: &TestApp, token: &str, procedure: &str, request: &Value) -> Value {
    use tokio::io::AsyncWriteExt as _;
    let base = format!("http://{}", app.addr);
    let format = |binary: bool| if binary { "binary" } else { "json" };
    let mut command = match client {
        Client::Node { binary, http2 } => {
            let dir = integrator_tools();
            let script = dir.join("connect_client.mjs");
            std::fs::copy(
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/connect_client.mjs"),
                &script,
            )
            .unwrap();
            let mut c = tokio::process::Command::new(dir.join("node"));
            c.arg(script).args([
                base.as_str(),
                token,
                procedure,
                format(binary),
                if http2 { "2" } else { "1.1" },
            ]);
            c
        }
        Client::Python { binary } => {
            let mut c = tokio::process::Command::new(crate::notifications::python());
            c.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/connect_client.py"))
                .args([base.as_str(), token, procedure, format(binary)]);
            c
        }
    };
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(request.to_string().as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{client:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{client:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn base64(value: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(value.as_str().unwrap())
        .unwrap()
}

const CLIENTS: [Client; 5] = [
    Client::Node {
        binary: false,
        http2: false,
    },
    Client::Node {
        binary: true,
        http2: false,
    },
    Client::Node {
        binary: false,
        http2: true,
    },
    Client::Python { binary: false },
    Client::Python { binary: true },
];

#[sqlx::test]
async fn the_official_connect_clients_submit_and_are_refused_as_grpc_callers_are(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Company).await;
    let procedure = "vpnregistry.v1.RegistrationService/SubmitRegistration";
    let over_grpc = app.submit_as(&token, submission("grpc-1", "81.2.69.0/24")).await;

    let mut bad = submission("grpc-bad", "10.1.2.0/24");
    bad.registration
        .as_mut()
        .unwrap()
        .source_prefixes
        .push("not-a-prefix".into());
    let refused = app
        .registrations(Some(&token))
        .submit_registration(bad)
        .await
        .unwrap_err();
    let refused_details = tonic_types::pb::Status::decode(refused.details()).unwrap().details;

    for (i, client) in CLIENTS.into_iter().enumerate() {
        let prefix = format!("81.2.{}.0/24", 70 + i);
        let answer = call(
            client,
            &app,
            &token,
            procedure,
            &submission_json(&format!("c-{i}"), &prefix),
        )
        .await;
        let ok = &answer["ok"];
        assert!(ok.is_object(), "{client:?}: {answer}");
        let registration = pb::Registration::decode(&*base64(&ok["binary"])).unwrap();
        assert_eq!(
            registration.source_prefixes,
            std::slice::from_ref(&prefix),
            "{client:?}"
        );
        assert_eq!(ok["json"]["sourcePrefixes"][0], prefix.as_str(), "{client:?}");
        assert_eq!(comparable(registration), comparable(over_grpc.clone()), "{client:?}");

        let mut request = submission_json(&format!("bad-{i}"), "10.1.2.0/24");
        request["registration"]["sourcePrefixes"] = serde_json::json!(["10.1.2.0/24", "not-a-prefix"]);
        let answer = call(client, &app, &token, procedure, &request).await;
        let error = &answer["error"];
        assert!(error.is_object(), "{client:?}: {answer}");
        // Node gives the code's number, Python its name.
        assert!(
            error["code"] == 3 || error["code"] == "invalid_argument",
            "{client:?}: {error}"
        );
        assert_eq!(error["message"], refused.message(), "{client:?}");
        let details = error["details"].as_array().unwrap();
        assert_eq!(details.len(), refused_details.len(), "{client:?}");
        for (got, want) in details.iter().zip(&refused_details) {
            assert_eq!(got["type"], want.type_url.trim_start_matches("type.googleapis.com/"));
            assert_eq!(base64(&got["value"]), want.value, "{client:?}: the detail's bytes");
        }
    }
}
