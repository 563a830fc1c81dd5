//! RDAP (`GET /rdap/ip/...` on the gRPC port): RFC 9083 IP network objects
//! for a hit, RFC 9083 errors for a miss and a malformed query, IPv4 and
//! IPv6, prefixes, and the same tokens and scopes as `CheckAddress`.

use http_body_util::{BodyExt as _, Empty};
use serde_json::Value;
use sqlx::PgPool;
use vpn_registry::domain::principal::Role;
use vpn_registry::pb::InstitutionCategory as C;

use crate::helpers::*;

struct Answer {
    status: u16,
    content_type: String,
    www_authenticate: Option<String>,
    vary: Option<String>,
    body: Value,
    raw: String,
}

/// GET `path` from the app's gRPC port over HTTP/1.1, with a bearer token.
async fn get(app: &TestApp, path: &str, token: Option<&str>) -> Answer {
    get_as_host(app, path, token, &app.addr.to_string()).await
}

/// [`get`] with the `Host` header a client chose.
async fn get_as_host(app: &TestApp, path: &str, token: Option<&str>, host: &str) -> Answer {
    let stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    let mut request = hyper::Request::get(path).header("host", host);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = sender
        .send_request(request.body(Empty::<bytes::Bytes>::new()).unwrap())
        .await
        .unwrap();
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    let (status, content_type, www_authenticate) = (
        response.status().as_u16(),
        header("content-type").unwrap_or_default(),
        header("www-authenticate"),
    );
    let vary = header("vary");
    let raw = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    driver.abort();
    Answer {
        status,
        content_type,
        www_authenticate,
        vary,
        body: serde_json::from_str(&raw).unwrap_or(Value::Null),
        raw,
    }
}

/// The members RFC 9083 requires of an error response, and RDAP's type.
fn assert_rdap_error(a: &Answer, status: u16) {
    assert_eq!(a.status, status, "{}", a.raw);
    assert_eq!(a.content_type, "application/rdap+json");
    assert_eq!(a.body["errorCode"], status);
    assert!(a.body["title"].is_string(), "{}", a.raw);
    assert!(
        a.body["description"].as_array().is_some_and(|d| !d.is_empty()),
        "{}",
        a.raw
    );
    assert!(conformance(&a.body).contains(&"rdap_level_0".to_owned()));
}

fn conformance(body: &Value) -> Vec<String> {
    body["rdapConformance"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// The members of an RFC 9083 IP network object this registry serves.
fn assert_network(a: &Answer, reference: &str, start: &str, end: &str, version: &str, length: u8) {
    assert_eq!(a.status, 200, "{}", a.raw);
    assert_eq!(a.content_type, "application/rdap+json");
    let b = &a.body;
    assert_eq!(conformance(b), ["rdap_level_0", "cidr0"]);
    assert_eq!(b["objectClassName"], "ip network");
    assert_eq!(b["handle"], reference);
    assert_eq!(b["startAddress"], start);
    assert_eq!(b["endAddress"], end);
    assert_eq!(b["ipVersion"], version);
    let cidr = &b["cidr0_cidrs"][0];
    assert_eq!(cidr[format!("{version}prefix")], start);
    assert_eq!(cidr["length"], length);
    assert_eq!(b["status"], serde_json::json!(["active"]));
    let actions: Vec<&str> = b["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let date = e["eventDate"].as_str().unwrap();
            time::OffsetDateTime::parse(date, &time::format_description::well_known::Rfc3339).unwrap();
            e["eventAction"].as_str().unwrap()
        })
        .collect();
    assert!(
        actions.contains(&"registration") && actions.contains(&"last changed"),
        "{actions:?}"
    );
    assert!(b["notices"].as_array().is_some_and(|n| !n.is_empty()));
}

#[sqlx::test]
async fn rdap_answers_hits_misses_ipv6_prefixes_and_malformed_queries(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (bank, token) = app.enrol(C::Bank).await;
    let v4 = app.active(&token, &["8.8.8.0/24"]).await;
    let v6 = app.active(&token, &["2a00:1450::/48"]).await;
    let lookup = app.token(Role::Lookup).await;
    app.wait_until_known(&lookup).await;
    app.wait_until_applied().await;
    let lookup = Some(lookup.as_str());

    let hit = get(&app, "/rdap/ip/8.8.8.8", lookup).await;
    assert_network(&hit, &v4.reference, "8.8.8.0", "8.8.8.255", "v4", 24);
    assert_eq!(
        hit.body["links"][0]["href"],
        format!("http://{}/rdap/ip/8.8.8.8", app.addr)
    );
    for personal in [
        &bank.legal_name,
        &bank.contact_email,
        &bank.contact_phone,
        &bank.cnic,
        &bank.id,
    ] {
        assert!(
            personal.is_empty() || !hit.raw.contains(personal.as_str()),
            "{personal} in {}",
            hit.raw
        );
    }
    let v6_hit = get(&app, "/rdap/ip/2a00:1450::1", lookup).await;
    assert_network(
        &v6_hit,
        &v6.reference,
        "2a00:1450::",
        "2a00:1450:0:ffff:ffff:ffff:ffff:ffff",
        "v6",
        48,
    );

    // Prefix queries: the registration covering all of the prefix.
    let inside = get(&app, "/rdap/ip/8.8.8.128/25", lookup).await;
    assert_network(&inside, &v4.reference, "8.8.8.0", "8.8.8.255", "v4", 24);
    assert_rdap_error(&get(&app, "/rdap/ip/8.8.0.0/16", lookup).await, 404);

    let miss = get(&app, "/rdap/ip/1.1.1.1", lookup).await;
    assert_rdap_error(&miss, 404);
    for malformed in [
        "/rdap/ip/not-an-address",
        "/rdap/ip/8.8.8.1/24",
        "/rdap/ip/8.8.8.0/33",
        "/rdap/domain/example.pk",
    ] {
        assert_rdap_error(&get(&app, malformed, lookup).await, 400);
    }
}

#[sqlx::test]
async fn rdap_takes_the_tokens_and_scopes_of_check_address(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, bank) = app.enrol(C::Bank).await;
    let (_, other) = app.enrol(C::Company).await;
    let mine = app.active(&bank, &["8.8.8.0/24"]).await;
    let admin = app.admin().await;
    for token in [&bank, &other, &admin] {
        app.wait_until_known(token).await;
    }
    app.wait_until_applied().await;

    let anonymous = get(&app, "/rdap/ip/8.8.8.8", None).await;
    assert_rdap_error(&anonymous, 401);
    assert_eq!(anonymous.www_authenticate.as_deref(), Some("Bearer"));
    assert_rdap_error(&get(&app, "/rdap/ip/8.8.8.8", Some("not-a-token")).await, 401);
    let forbidden = get(&app, "/rdap/ip/8.8.8.8", Some(&admin)).await;
    assert_rdap_error(&forbidden, 403);
    assert!(forbidden.raw.contains("CheckAddress"), "{}", forbidden.raw);
    // An institution sees its own registrations only, as with CheckAddress.
    assert_network(
        &get(&app, "/rdap/ip/8.8.8.8", Some(&bank)).await,
        &mine.reference,
        "8.8.8.0",
        "8.8.8.255",
        "v4",
        24,
    );
    assert_rdap_error(&get(&app, "/rdap/ip/8.8.8.8", Some(&other)).await, 404);
}

#[sqlx::test]
async fn rdap_links_never_name_a_host_the_client_chose_and_vary_by_caller(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let (_, token) = app.enrol(C::Bank).await;
    app.active(&token, &["8.8.8.0/24"]).await;
    let lookup = app.token(Role::Lookup).await;
    app.wait_until_known(&lookup).await;
    app.wait_until_applied().await;
    let forged = get_as_host(&app, "/rdap/ip/8.8.8.8", Some(&lookup), "evil.example").await;
    assert_eq!(forged.status, 200, "{}", forged.raw);
    assert_eq!(
        forged.body["links"][0]["href"],
        format!("http://{}/rdap/ip/8.8.8.8", app.addr),
        "the listener's own address"
    );
    assert!(!forged.raw.contains("evil.example"));
    assert_eq!(forged.vary.as_deref(), Some("Authorization"));
    let denied = get(&app, "/rdap/ip/8.8.8.8", None).await;
    assert_eq!(denied.vary.as_deref(), Some("Authorization"), "refusals too");

    let public = TestApp::builder(pool)
        .options(|o| o.public_url = Some("https://registry.example.pk".into()))
        .start()
        .await;
    let lookup = public.token(Role::Lookup).await;
    let hit = get_as_host(&public, "/rdap/ip/8.8.8.8", Some(&lookup), "evil.example").await;
    assert_eq!(
        hit.body["links"][0]["href"],
        "https://registry.example.pk/rdap/ip/8.8.8.8"
    );
}
