//! The Connect protocol on the gRPC port, as an integrator meets it with
//! curl: JSON and protobuf, HTTP/1.1 and HTTP/2, the same answers and the
//! same errors (with their details) as gRPC.

use prost::Message as _;
use serde_json::{Value, json};
use sqlx::PgPool;
use vpn_registry::pb::{self, InstitutionCategory as C};

use crate::helpers::*;

/// An HTTP answer as curl saw it.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// POSTs `body` to `/{method}` with curl (`args` add to its command line).
pub async fn curl(app: &TestApp, method: &str, token: Option<&str>, body: &[u8], args: &[&str]) -> Answer {
    use tokio::io::AsyncWriteExt as _;
    let url = format!("http://{}/{method}", app.addr);
    let mut command = tokio::process::Command::new("curl");
    command.args(["-sS", "-D", "-", "-o", "-", "--data-binary", "@-", "-H", "expect:"]);
    command.args(args);
    if let Some(token) = token {
        command.args(["-H", &format!("authorization: Bearer {token}")]);
    }
    if !args.iter().any(|a| a.to_ascii_lowercase().starts_with("content-type")) {
        command.args(["-H", "content-type: application/json"]);
    }
    command.arg(url);
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = command.spawn().expect("curl runs");
    let mut stdin = child.stdin.take().unwrap();
    let body = body.to_vec();
    // Written alongside reading: a refused body is not read to its end.
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let output = child.wait_with_output().await.unwrap();
    let _ = writer.await;
    assert!(
        !output.stdout.is_empty(),
        "curl {args:?} got no answer ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    parse(&output.stdout)
}

/// POSTs `body` as Connect JSON over HTTP/2 (prior knowledge) with hyper.
async fn post_over_http2(app: &TestApp, method: &str, token: &str, body: Vec<u8>) -> Answer {
    use http_body_util::BodyExt as _;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let request = hyper::Request::post(format!("http://{}/{method}", app.addr))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
    Answer { status, headers, body }
}

/// curl's `-D - -o -` output: header blocks (1xx ones skipped), then the body.
fn parse(out: &[u8]) -> Answer {
    let mut rest = out;
    loop {
        let end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no header block in {:?}", String::from_utf8_lossy(out)));
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        rest = &rest[end + 4..];
        let mut lines = head.lines();
        let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        if status < 200 {
            continue;
        }
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        return Answer {
            status,
            headers,
            body: rest.to_vec(),
        };
    }
}

pub fn submission_json(request_id: &str, prefix: &str) -> Value {
    json!({
        "requestId": request_id,
        "registration": {
            "kind": "REGISTRATION_KIND_VPN",
            "protocol": "VPN_PROTOCOL_WIREGUARD",
            "sourcePrefixes": [prefix],
            "peerPrefixes": ["185.60.216.0/24"],
            "isp": "ptcl",
            "ispSubscriberId": "PTCL-778812",
            "purpose": "Branch-to-head-office VPN",
            "validUntil": "2030-12-31T00:00:00Z"
        }
    })
}

/// What two answers for two submissions share: everything but what names
/// or dates one of them.
pub fn comparable(mut r: pb::Registration) -> pb::Registration {
    r.id.clear();
    r.reference.clear();
    r.etag.clear();
    r.valid_from = None;
    r.state_time = None;
    r.create_time = None;
    r.update_time = None;
    r.source_prefixes.clear();
    r
}

const SUBMIT: &str = "vpnregistry.v1.RegistrationService/SubmitRegistration";

/// A JSON message as the protobuf one it maps to.
fn from_json<M: prost::Message + Default>(json: &Value, message: &str) -> M {
    let pool = vpn_registry::protocols::schema::pool();
    let descriptor = pool.get_message_by_name(message).unwrap();
    let bytes =
        vpn_registry::protocols::schema::json_to_proto(&descriptor, &serde_json::to_vec(json).unwrap()).unwrap();
    M::decode(&*bytes).unwrap()
}

pub fn submission(request_id: &str, prefix: &str) -> pb::SubmitRegistrationRequest {
    from_json(
        &submission_json(request_id, prefix),
        "vpnregistry.v1.SubmitRegistrationRequest",
    )
}

#[sqlx::test]
async fn a_registration_submitted_with_curl_is_the_one_grpc_submits(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Company).await;

    let over_grpc = app.submit_as(&token, submission("grpc-1", "81.2.69.0/24")).await;

    // Connect JSON over HTTP/1.1, as curl sends it.
    let json = serde_json::to_vec(&submission_json("json-1", "81.2.70.0/24")).unwrap();
    let answer = curl(&app, SUBMIT, Some(&token), &json, &["--http1.1"]).await;
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let over_json = answer.json();
    assert_eq!(over_json["state"], "REGISTRATION_STATE_ISP_VERIFICATION");
    assert_eq!(over_json["sourcePrefixes"], json!(["81.2.70.0/24"]));
    let over_json: pb::Registration = from_json(&over_json, "vpnregistry.v1.Registration");

    // Connect's protobuf encoding over HTTP/2 without TLS.
    let request = submission("proto-1", "81.2.71.0/24").encode_to_vec();
    let args = ["--http2-prior-knowledge", "-H", "content-type: application/proto"];
    let answer = curl(&app, SUBMIT, Some(&token), &request, &args).await;
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.header("content-type"), Some("application/proto"));
    let over_proto = pb::Registration::decode(&*answer.body).unwrap();

    assert_eq!(comparable(over_json), comparable(over_grpc.clone()));
    assert_eq!(comparable(over_proto), comparable(over_grpc));
}

#[sqlx::test]
async fn errors_carry_their_details_and_connect_http_statuses(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Company).await;
    let path = SUBMIT;

    let mut bad = submission_json("bad-1", "10.1.2.0/24");
    bad["registration"]["sourcePrefixes"] = json!(["10.1.2.0/24", "not-a-prefix"]);
    let answer = curl(&app, path, Some(&token), &serde_json::to_vec(&bad).unwrap(), &[]).await;
    assert_eq!(answer.status, 400);
    let error = answer.json();
    assert_eq!(error["code"], "invalid_argument");
    let detail = &error["details"][0];
    assert_eq!(detail["type"], "google.rpc.BadRequest");
    let fields: Vec<&str> = detail["debug"]["fieldViolations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"registration.source_prefixes[0]"), "{fields:?}");
    assert!(fields.contains(&"registration.source_prefixes[1]"), "{fields:?}");
    // The same details over gRPC.
    let mut request = submission("bad-2", "10.1.2.0/24");
    request.registration.as_mut().unwrap().source_prefixes = vec!["10.1.2.0/24".into(), "not-a-prefix".into()];
    let status = app
        .registrations(Some(&token))
        .submit_registration(request)
        .await
        .unwrap_err();
    let grpc_fields = violated_fields(&status);
    let mut connect_fields: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
    connect_fields.sort();
    let mut grpc_sorted = grpc_fields.clone();
    grpc_sorted.sort();
    assert_eq!(connect_fields, grpc_sorted);

    // Without a token: 401, as gRPC's UNAUTHENTICATED.
    let answer = curl(&app, path, None, b"{}", &[]).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.json()["code"], "unauthenticated");
    // A streaming method is not a Connect unary call.
    let lookup = app.token(vpn_registry::domain::principal::Role::Lookup).await;
    let watch = "vpnregistry.v1.LookupService/WatchChanges";
    let answer = curl(&app, watch, Some(&lookup), b"{}", &[]).await;
    assert_eq!(answer.status, 501);
    assert!(answer.json()["message"].as_str().unwrap().contains("gRPC-Web"));
    // A method that does not exist: as gRPC answers it.
    let answer = curl(
        &app,
        "vpnregistry.v1.RegistrationService/Nothing",
        Some(&token),
        b"{}",
        &[],
    )
    .await;
    assert_eq!(answer.json()["code"], "unimplemented");
}

#[sqlx::test]
async fn malformed_bodies_get_the_documented_errors_never_a_500(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let (_, token) = app.enrol(C::Company).await;
    let before = crate::dry_runs::snapshot(&pool).await;
    let expect = |answer: &Answer, status: u16, code: &str, mentions: &str| {
        let body = String::from_utf8_lossy(&answer.body);
        assert_eq!(answer.status, status, "{body}");
        let error = answer.json();
        assert_eq!(error["code"], code, "{body}");
        assert!(error["message"].as_str().unwrap().contains(mentions), "{body}");
    };

    let mut unknown = submission_json("u-1", "81.2.69.0/24");
    unknown["registration"]["sourcePrefixs"] = json!(["81.2.70.0/24"]);
    let answer = curl(&app, SUBMIT, Some(&token), &serde_json::to_vec(&unknown).unwrap(), &[]).await;
    expect(&answer, 400, "invalid_argument", "sourcePrefixs");

    let mut wrong = submission_json("w-1", "81.2.69.0/24");
    wrong["registration"]["sourcePrefixes"] = json!(7);
    let answer = curl(&app, SUBMIT, Some(&token), &serde_json::to_vec(&wrong).unwrap(), &[]).await;
    expect(&answer, 400, "invalid_argument", "line 1");

    let mut bad_utf8 = serde_json::to_vec(&submission_json("b-1", "81.2.69.0/24")).unwrap();
    let at = bad_utf8.windows(6).position(|w| w == b"Branch").unwrap();
    bad_utf8[at] = 0xff;
    let answer = curl(&app, SUBMIT, Some(&token), &bad_utf8, &[]).await;
    expect(&answer, 400, "invalid_argument", "line 1");

    let answer = curl(&app, SUBMIT, Some(&token), b"{\"requestId\": ", &[]).await;
    expect(&answer, 400, "invalid_argument", "EOF");

    // Malformed protobuf.
    let args = ["-H", "content-type: application/proto"];
    let answer = curl(&app, SUBMIT, Some(&token), b"\xff\xff\xff", &args).await;
    expect(&answer, 400, "invalid_argument", "protobuf");

    // 100 MiB: refused from its declared length, unread, over HTTP/1.1
    // (curl) and HTTP/2 (hyper: Debian's curl counts the stream reset that
    // ends an unread upload as a failure, even after the whole answer).
    let huge = vec![b' '; 100 * 1024 * 1024];
    let answer = curl(&app, SUBMIT, Some(&token), &huge, &["--http1.1"]).await;
    expect(&answer, 400, "out_of_range", "larger than");
    let answer = post_over_http2(&app, SUBMIT, &token, huge).await;
    expect(&answer, 400, "out_of_range", "larger than");

    // Not Connect at all: a content type no protocol here speaks.
    let args = ["-H", "content-type: text/plain"];
    let answer = curl(&app, SUBMIT, Some(&token), b"hello", &args).await;
    assert!(answer.status < 500, "{} {:?}", answer.status, answer.headers);
    // A compressed body (not offered), and a protocol version not known.
    let args = ["-H", "content-encoding: br"];
    expect(
        &curl(&app, SUBMIT, Some(&token), b"{}", &args).await,
        501,
        "unimplemented",
        "br",
    );
    let args = ["-H", "connect-protocol-version: 2"];
    expect(
        &curl(&app, SUBMIT, Some(&token), b"{}", &args).await,
        400,
        "invalid_argument",
        "version",
    );

    assert_eq!(crate::dry_runs::snapshot(&pool).await, before, "a malformed call wrote");
}

#[sqlx::test]
async fn a_rate_limited_json_call_is_told_when_to_retry(pool: PgPool) {
    use vpn_registry::domain::principal::{Role, RoleKind};
    let app = TestApp::builder(pool)
        .options(|o| o.rate_limits = vec![(RoleKind::Lookup, 5)])
        .start()
        .await;
    let token = app.token(Role::Lookup).await;
    let path = "vpnregistry.v1.LookupService/CheckAddress";
    let mut limited = None;
    for _ in 0..20 {
        let answer = curl(&app, path, Some(&token), br#"{"address": "8.8.8.8"}"#, &[]).await;
        if answer.status != 200 {
            limited = Some(answer);
            break;
        }
        assert_eq!(
            answer.json()["registered"],
            Value::Null,
            "a miss leaves `registered` out (false)"
        );
    }
    let answer = limited.expect("the principal hits its limit");
    assert_eq!(answer.status, 429, "{}", String::from_utf8_lossy(&answer.body));
    let wait: u64 = answer.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    let error = answer.json();
    assert_eq!(error["code"], "resource_exhausted");
    assert_eq!(error["details"][0]["type"], "google.rpc.RetryInfo");
    assert!(
        error["details"][0]["debug"]["retryDelay"]
            .as_str()
            .unwrap()
            .ends_with('s')
    );
}
