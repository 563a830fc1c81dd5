//! The console as a browser uses it, for tests: one HTTP/1.1 request at a
//! time with a cookie and a form, people made directly in the database (as
//! an accepted invitation would make them), and signing them in.

use http_body_util::{BodyExt as _, Full};
use time::OffsetDateTime;
use uuid::Uuid;
use vpn_registry::{
    auth::{password::Passwords, token, totp},
    db::accounts,
    domain::{
        account::Membership,
        principal::{Actor, Role},
    },
};

use crate::helpers::*;

/// What the console answered.
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookie: Option<String>,
    /// `X-Content-Type-Options`.
    pub nosniff: Option<String>,
    pub body: String,
}

/// Percent-encodes a form value.
fn encode(v: &str) -> String {
    v.replace('%', "%25")
        .replace('&', "%26")
        .replace('+', "%2B")
        .replace(' ', "+")
        .replace('=', "%3D")
}

/// One request to the console (HTTP/1.1), with a cookie and a form.
pub async fn call(app: &TestApp, method: &str, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Page {
    let stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    let body: String = form
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", app.addr.to_string())
        .header("user-agent", "vpn-registry tests")
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
    let nosniff = header("x-content-type-options");
    let body = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    driver.abort();
    Page {
        status,
        location,
        set_cookie,
        nosniff,
        body,
    }
}

/// The `name=value` part of a `Set-Cookie`.
pub fn cookie_of(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// A session-less form at `path`: its token cookie (`name=value`) and the
/// form's copy.
pub async fn public_form(app: &TestApp, path: &str) -> (String, String) {
    let form = call(app, "GET", path, None, &[]).await;
    assert_eq!(form.status, 200, "{path}: {}", form.body);
    let cookie = form.set_cookie.expect("the form's cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    (cookie_of(&cookie), input(&form.body, "csrf"))
}

/// The text of the page's alert (an error paragraph or a form's summary of
/// what to correct; empty when there is none).
pub fn alert(html: &str) -> &str {
    let Some(at) = html.find("role=\"alert\"") else {
        return "";
    };
    let opened = html[..at].rfind('<').unwrap_or(at);
    let end = if html[opened..].starts_with("<div") {
        "</div>"
    } else {
        "</p>"
    };
    let rest = &html[at..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

/// The `value` of the first input named `name` in `html`.
pub fn input(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no {name} in {html}"));
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// The violation shown beside form field `field` (empty when none).
pub fn violation(html: &str, field: &str) -> String {
    let marker = format!("id=\"f-{field}-error\" aria-live=\"polite\">");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {field} field in {html}"));
    let rest = &html[at + marker.len()..];
    rest[..rest.find("</p>").unwrap()].to_owned()
}

/// A password the policy accepts.
pub const GOOD_PASSWORD: &str = "lantern orbit mango seventy";

/// Someone with an account.
pub struct Person {
    pub id: Uuid,
    pub email: String,
    pub password: String,
    /// The second factor's secret, where enrolled.
    pub totp: Option<Vec<u8>>,
}

impl Person {
    /// What the authenticator app shows now (empty without one).
    pub fn code(&self) -> String {
        let now = u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap();
        self.totp.as_ref().map(|s| totp::code_at(s, now)).unwrap_or_default()
    }
}

/// The membership a person of `role` (and its scope) has: an owner for an
/// institution.
fn membership(role: &Role) -> Membership {
    match role {
        Role::Institution(id) => Membership::Institution { id: *id, owner: true },
        Role::Isp(code) => Membership::Isp(code.clone()),
        Role::Reviewer => Membership::Reviewer,
        Role::Admin => Membership::Admin,
        Role::Lookup | Role::Payments => panic!("lookup and payments systems have no people"),
    }
}

impl TestApp {
    /// A person in `membership`, as an accepted invitation makes one, with
    /// a second factor enrolled where the role requires it (its last used
    /// step two steps back, so the current code works).
    pub async fn person_in(&self, membership: Membership) -> Person {
        let id = Uuid::now_v7();
        let email = format!("{}@example.pk", id.simple());
        let hash = Passwords::new().unwrap().hash(GOOD_PASSWORD).await.unwrap();
        let mut tx = self.pool.begin().await.unwrap();
        let new = accounts::NewUser {
            id,
            email: &email,
            email_key: &email,
            name: "Test Person",
            password_hash: &hash,
            membership: &membership,
        };
        accounts::insert_user(&mut tx, &new, &Actor::operator("test"))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let totp = if membership.requires_second_factor() {
            let secret = totp::new_secret();
            let step = OffsetDateTime::now_utc().unix_timestamp() / 30 - 2;
            accounts::enrol_totp(&self.pool, id, &secret, step, &[], None, &Actor::operator("test"))
                .await
                .unwrap();
            Some(secret)
        } else {
            None
        };
        Person {
            id,
            email,
            password: GOOD_PASSWORD.to_owned(),
            totp,
        }
    }

    /// A person of the role and scope `token` acts in.
    pub async fn person_like(&self, token: &str) -> Person {
        let (role, institution, isp): (String, Option<Uuid>, Option<String>) =
            sqlx::query_as("SELECT role, institution_id, isp_code FROM api_tokens WHERE token_hash = $1")
                .bind(&token::hash(token)[..])
                .fetch_one(&self.pool)
                .await
                .unwrap();
        let role = match (role.as_str(), institution, isp) {
            ("institution", Some(id), _) => Role::Institution(id),
            ("isp", _, Some(code)) => Role::Isp(code.parse().unwrap()),
            ("reviewer", ..) => Role::Reviewer,
            ("admin", ..) => Role::Admin,
            other => panic!("no person is like {other:?}"),
        };
        self.person_in(membership(&role)).await
    }
}

/// Posts the sign-in form for `email`, `password` and `code`; the answer.
pub async fn try_sign_in(app: &TestApp, email: &str, password: &str, code: &str) -> Page {
    let (cookie, csrf) = public_form(app, "/console/sign-in").await;
    let form = [
        ("email", email),
        ("password", password),
        ("code", code),
        ("csrf", csrf.as_str()),
    ];
    call(app, "POST", "/console/sign-in", Some(&cookie), &form).await
}

/// Signs `person` in; the session cookie to send back.
pub async fn sign_in_person(app: &TestApp, person: &Person) -> String {
    let page = try_sign_in(app, &person.email, &person.password, &person.code()).await;
    assert_eq!(page.status, 303, "{}", page.body);
    let cookie = page.set_cookie.expect("a session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    cookie_of(&cookie)
}

/// Signs in a person of the role and scope `token` acts in.
pub async fn sign_in(app: &TestApp, token: &str) -> String {
    let person = app.person_like(token).await;
    sign_in_person(app, &person).await
}
