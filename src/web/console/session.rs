//! Console sessions: a signed-in browser holds an opaque session id in a
//! cookie (HttpOnly, SameSite=Strict, no expiry: the browser session); the
//! token stays here, never sent back to the browser, never in a URL or in
//! the browser's storage. Sessions end on sign-out or after an idle hour.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::http::{HeaderMap, HeaderValue, header};

use crate::domain::principal::RoleKind;
use crate::sync::lock;

/// The console's cookie (scoped to the console's paths).
pub const COOKIE: &str = "vpnr_console";
/// A session unused this long is forgotten.
const IDLE: Duration = Duration::from_secs(3600);
/// Sessions held at most (a flood of sign-ins cannot grow memory for ever).
const MAX_SESSIONS: usize = 10_000;

/// One signed-in browser.
#[derive(Clone)]
pub struct Session {
    pub token: String,
    pub role: RoleKind,
    /// Who signed in (the credential's name), shown in the header.
    pub name: String,
    /// Required in every form this session posts (against cross-site posts).
    pub csrf: String,
    last_used: Instant,
}

#[derive(Default)]
pub struct Sessions {
    held: Mutex<HashMap<String, Session>>,
}

/// A random 256-bit id, hex.
pub fn random_id() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    /// Starts a session for `token`, held by `name` acting as `role`; its id.
    pub fn start(&self, token: String, role: RoleKind, name: String) -> String {
        let mut held = lock(&self.held);
        let now = Instant::now();
        held.retain(|_, s| now.duration_since(s.last_used) < IDLE);
        if held.len() >= MAX_SESSIONS
            && let Some(oldest) = held.iter().min_by_key(|(_, s)| s.last_used).map(|(id, _)| id.clone())
        {
            held.remove(&oldest);
        }
        let id = random_id();
        held.insert(
            id.clone(),
            Session {
                token,
                role,
                name,
                csrf: random_id(),
                last_used: now,
            },
        );
        id
    }

    /// The session a request's cookie names, if it is still open.
    pub fn find(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers)?;
        let mut held = lock(&self.held);
        let session = held.get_mut(&id)?;
        if session.last_used.elapsed() >= IDLE {
            held.remove(&id);
            return None;
        }
        session.last_used = Instant::now();
        Some(session.clone())
    }

    pub fn end(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers) {
            lock(&self.held).remove(&id);
        }
    }
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    named_cookie(headers, COOKIE)
}

/// The sign-in form's cookie: the form carries the same value, so a page on
/// another site cannot sign this browser in with a token of its choosing
/// (login CSRF: it can neither read nor, SameSite=Strict, send the cookie).
pub const SIGN_IN_COOKIE: &str = "vpnr_sign_in";

/// The sign-in form's value, from its cookie.
pub fn sign_in_nonce(headers: &HeaderMap) -> Option<String> {
    named_cookie(headers, SIGN_IN_COOKIE)
}

/// The `Set-Cookie` value for a sign-in form's `nonce`.
pub fn set_sign_in_cookie(nonce: &str, tls: bool) -> HeaderValue {
    let secure = if tls { "; Secure" } else { "" };
    HeaderValue::try_from(format!(
        "{SIGN_IN_COOKIE}={nonce}; Path=/console/sign-in; HttpOnly; SameSite=Strict{secure}"
    ))
    .expect("hex ids make a valid header")
}

fn named_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_owned())
}

/// The `Set-Cookie` value for session `id` (`Secure` when served over TLS).
pub fn set_cookie(id: &str, tls: bool) -> HeaderValue {
    let secure = if tls { "; Secure" } else { "" };
    HeaderValue::try_from(format!(
        "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict{secure}"
    ))
    .expect("hex ids make a valid header")
}

/// The `Set-Cookie` value that drops the session cookie.
pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("vpnr_console=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0")
}
