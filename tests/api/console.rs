//! The web console over real HTTP on the gRPC port: sign-in keeps the token
//! on the server, the ISP desk lists and attests through the same gate and
//! handlers as the RPCs, refusals are shown plainly.

use http_body_util::{BodyExt as _, Full};
use sqlx::PgPool;
use vpn_registry::pb::{self, InstitutionCategory as C};

use crate::helpers::*;

struct Page {
    status: u16,
    location: Option<String>,
    set_cookie: Option<String>,
    body: String,
}

/// One request to the console (HTTP/1.1), with a session cookie and a form.
async fn call(app: &TestApp, method: &str, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Page {
    let stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    let body: String = form
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.replace('%', "%25")
                    .replace('&', "%26")
                    .replace(' ', "+")
                    .replace('=', "%3D")
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", app.addr.to_string())
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        request = request.header("cookie", c);
    }
    let response = sender
        .send_request(request.body(Full::new(bytes::Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    let (status, location, set_cookie) = (response.status().as_u16(), header("location"), header("set-cookie"));
    let body = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    driver.abort();
    Page {
        status,
        location,
        set_cookie,
        body,
    }
}

/// Signs in with `token`; the cookie to send back.
async fn sign_in(app: &TestApp, token: &str) -> String {
    let page = call(app, "POST", "/console/sign-in", None, &[("token", token)]).await;
    assert_eq!(page.status, 303, "{}", page.body);
    let cookie = page.set_cookie.expect("a session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(token), "the token stays on the server");
    cookie.split(';').next().unwrap().to_owned()
}

/// The text of the page's error paragraph (empty when there is none).
fn alert(html: &str) -> &str {
    let Some(at) = html.find("class=\"error\" role=\"alert\">") else {
        return "";
    };
    let rest = &html[at..];
    &rest[..rest.find("</p>").unwrap_or(rest.len())]
}

/// The `value` of the first input named `name` in `html`.
fn input(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no {name} in {html}"));
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_owned()
}

#[sqlx::test]
async fn the_isp_desk_signs_in_lists_and_attests_through_the_api(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (bank, applicant) = app.enrol(C::Bank).await;
    let submitted = app.submit(&applicant, &["8.8.8.0/24"]).await;
    let isp = app.isp_token().await.to_owned();
    app.wait_until_known(&isp).await;

    let start = call(&app, "GET", "/console/sign-in", None, &[]).await;
    assert_eq!(start.status, 200, "{}", start.body);
    assert!(
        start.body.contains("name=\"token\"") && start.body.contains("<label for=\"token\">"),
        "{}",
        start.body
    );
    let wrong = call(&app, "POST", "/console/sign-in", None, &[("token", "not-a-token")]).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("Not signed in"), "{}", wrong.body);

    let cookie = sign_in(&app, &isp).await;
    let desk = call(&app, "GET", "/console/isp", Some(&cookie), &[]).await;
    assert_eq!(desk.status, 200, "{}", desk.body);
    assert!(desk.body.contains(&submitted.reference) && desk.body.contains(&bank.legal_name));
    assert!(desk.body.contains("PKT"), "dates in Pakistan time");
    assert!(!desk.body.contains(&isp), "the token is never sent back");
    let (etag, csrf) = (input(&desk.body, "etag"), input(&desk.body, "csrf"));
    let attest = |csrf: String, etag: String, decision: &'static str, reason: &'static str| {
        let (app, cookie, id) = (&app, cookie.clone(), submitted.id.clone());
        async move {
            let form = [
                ("id", id.as_str()),
                ("etag", etag.as_str()),
                ("reference", "VPN-x"),
                ("csrf", csrf.as_str()),
                ("decision", decision),
                ("reason", reason),
            ];
            call(app, "POST", "/console/isp/attest", Some(&cookie), &form).await
        }
    };

    let forged = attest("forged".into(), etag.clone(), "confirm", "").await;
    assert_eq!(forged.status, 403, "a form not from the page is refused");
    let no_reason = attest(csrf.clone(), etag.clone(), "deny", "").await;
    assert!(
        alert(&no_reason.body).contains("reason"),
        "the API's violation is shown: {}",
        no_reason.body
    );
    let malformed = attest(csrf.clone(), "W/\"stale\"".into(), "confirm", "").await;
    assert!(alert(&malformed.body).contains("etag"), "{}", malformed.body);
    let confirmed = attest(csrf.clone(), etag.clone(), "confirm", "").await;
    assert_eq!(confirmed.status, 303, "{}", confirmed.body);
    let back = confirmed.location.unwrap();
    assert!(back.contains(&submitted.reference), "{back}");
    // A second desk user still holding the page: the registration changed.
    let stale = attest(csrf.clone(), etag, "confirm", "").await;
    assert!(
        alert(&stale.body).contains("changed since this page was loaded"),
        "{}",
        stale.body
    );
    let after = call(&app, "GET", &back, Some(&cookie), &[]).await;
    assert!(
        after.body.contains(&format!("{} confirmed.", submitted.reference)),
        "{}",
        after.body
    );
    assert_eq!(
        app.get(&submitted.id).await.state,
        pb::RegistrationState::UnderReview as i32
    );
    let crafted = call(
        &app,
        "GET",
        "/console/isp?done=Call+0300+now&confirmed=true",
        Some(&cookie),
        &[],
    )
    .await;
    assert!(!crafted.body.contains("Call 0300"), "only references are said back");
    let history = app.events(&submitted.id).await;
    assert!(
        history
            .iter()
            .any(|e| e.actor.as_ref().is_some_and(|a| a.role == pb::Role::Isp as i32)),
        "audited as the ISP: {history:?}"
    );

    // Another role's token: the same permission table refuses the desk.
    let institution_cookie = sign_in(&app, &applicant).await;
    let refused = call(&app, "GET", "/console/isp", Some(&institution_cookie), &[]).await;
    assert_eq!(refused.status, 403, "{}", refused.body);

    // Signing out ends the session on the server.
    let out = call(&app, "POST", "/console/sign-out", Some(&cookie), &[("csrf", &csrf)]).await;
    assert_eq!(out.status, 303);
    assert!(out.set_cookie.unwrap().contains("Max-Age=0"));
    let gone = call(&app, "GET", "/console/isp", Some(&cookie), &[]).await;
    assert_eq!((gone.status, gone.location.as_deref()), (303, Some("/console/sign-in")));
}
