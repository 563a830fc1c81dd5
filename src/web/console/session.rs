//! Console sessions: a signed-in browser holds an opaque session id in a
//! cookie (HttpOnly, SameSite=Strict, no expiry: the browser session; under
//! TLS a `__Host-` cookie, which a sibling host cannot set); the token stays
//! here, never sent back to the browser, never in a URL or in the browser's
//! storage. Sessions end on sign-out, after an idle hour, or twelve hours
//! after sign-in whatever their use. One principal holds a few at most (its
//! own oldest goes first, never someone else's). The sign-in form carries a
//! nonce this server issued, once.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::http::{HeaderMap, HeaderValue, header};
use uuid::Uuid;

use crate::domain::principal::RoleKind;
use crate::sync::lock;

/// A session unused this long is forgotten.
const IDLE: Duration = Duration::from_secs(3600);
/// A session this old ends, however used.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions held at most (a flood of sign-ins cannot grow memory for ever).
const MAX_SESSIONS: usize = 10_000;
/// Sessions one principal may hold (browsers, colleagues sharing a token).
pub const MAX_PER_PRINCIPAL: usize = 8;
/// Sign-in forms issued and not yet used, at most; older ones lapse first.
const MAX_NONCES: usize = 10_000;
/// A sign-in form this old is refused.
const NONCE_LIFETIME: Duration = Duration::from_secs(3600);

/// One signed-in browser.
#[derive(Clone)]
pub struct Session {
    pub token: String,
    pub role: RoleKind,
    /// Whose session it is (the credential's id).
    pub principal: Uuid,
    /// Who signed in (the credential's name), shown in the header.
    pub name: String,
    /// Required in every form this session posts (against cross-site posts).
    pub csrf: String,
    started: Instant,
    last_used: Instant,
}

impl Session {
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.last_used) >= IDLE || now.duration_since(self.started) >= LIFETIME
    }
}

/// Why a session could not be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the console holds as many sessions as it may; try again later")]
pub struct Full;

/// The console's sessions and sign-in forms, and the cookies naming them.
pub struct Sessions {
    held: Mutex<HashMap<String, Session>>,
    nonces: Mutex<HashMap<String, Instant>>,
    /// Served over TLS: `Secure`, `__Host-` cookies.
    tls: bool,
}

/// A random 256-bit id, hex.
pub fn random_id() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    pub fn new(tls: bool) -> Self {
        Self {
            held: Mutex::default(),
            nonces: Mutex::default(),
            tls,
        }
    }

    /// Starts a session for `token`, held by `principal` (`name`) acting as
    /// `role`; its id. The principal's own oldest session ends if it holds
    /// [`MAX_PER_PRINCIPAL`].
    pub fn start(&self, token: String, role: RoleKind, principal: Uuid, name: String) -> Result<String, Full> {
        let mut held = lock(&self.held);
        let now = Instant::now();
        held.retain(|_, s| !s.expired(now));
        let mine: Vec<(&String, Instant)> = held
            .iter()
            .filter(|(_, s)| s.principal == principal)
            .map(|(id, s)| (id, s.started))
            .collect();
        if mine.len() >= MAX_PER_PRINCIPAL
            && let Some(oldest) = mine
                .iter()
                .min_by_key(|(_, started)| *started)
                .map(|(id, _)| (*id).clone())
        {
            held.remove(&oldest);
        }
        if held.len() >= MAX_SESSIONS {
            return Err(Full);
        }
        let id = random_id();
        held.insert(
            id.clone(),
            Session {
                token,
                role,
                principal,
                name,
                csrf: random_id(),
                started: now,
                last_used: now,
            },
        );
        Ok(id)
    }

    /// The session a request's cookie names, if it is still open.
    pub fn find(&self, headers: &HeaderMap) -> Option<Session> {
        let id = named_cookie(headers, self.session_cookie())?;
        let mut held = lock(&self.held);
        let session = held.get_mut(&id)?;
        let now = Instant::now();
        if session.expired(now) {
            held.remove(&id);
            return None;
        }
        session.last_used = now;
        Some(session.clone())
    }

    pub fn end(&self, headers: &HeaderMap) {
        if let Some(id) = named_cookie(headers, self.session_cookie()) {
            lock(&self.held).remove(&id);
        }
    }

    /// A nonce for a new sign-in form (goes in the form and its cookie).
    pub fn issue_nonce(&self) -> String {
        let mut nonces = lock(&self.nonces);
        let now = Instant::now();
        nonces.retain(|_, issued| now.duration_since(*issued) < NONCE_LIFETIME);
        if nonces.len() >= MAX_NONCES
            && let Some(oldest) = nonces.iter().min_by_key(|(_, at)| **at).map(|(n, _)| n.clone())
        {
            nonces.remove(&oldest);
        }
        let nonce = random_id();
        nonces.insert(nonce.clone(), now);
        nonce
    }

    /// Whether a sign-in form's `posted` nonce is one this server issued,
    /// not used yet and still recent, and its cookie says the same (a page
    /// on another site can neither read nor send that cookie). Used up.
    pub fn redeem_nonce(&self, headers: &HeaderMap, posted: &str) -> bool {
        if named_cookie(headers, self.sign_in_cookie()).is_none_or(|cookie| cookie != posted) {
            return false;
        }
        lock(&self.nonces)
            .remove(posted)
            .is_some_and(|issued| issued.elapsed() < NONCE_LIFETIME)
    }

    /// The session cookie's name (`__Host-` under TLS).
    fn session_cookie(&self) -> &'static str {
        if self.tls {
            "__Host-vpnr_console"
        } else {
            "vpnr_console"
        }
    }

    fn sign_in_cookie(&self) -> &'static str {
        if self.tls {
            "__Host-vpnr_sign_in"
        } else {
            "vpnr_sign_in"
        }
    }

    /// Attributes every cookie of ours carries: under TLS `Secure` and the
    /// whole host (`__Host-` requires `Path=/`), else the console's path.
    fn attributes(&self, path: &str) -> String {
        if self.tls {
            "; Path=/; HttpOnly; SameSite=Strict; Secure".to_owned()
        } else {
            format!("; Path={path}; HttpOnly; SameSite=Strict")
        }
    }

    /// The `Set-Cookie` value for a sign-in form's `nonce`.
    pub fn set_sign_in_cookie(&self, nonce: &str) -> HeaderValue {
        let value = format!(
            "{}={nonce}{}",
            self.sign_in_cookie(),
            self.attributes("/console/sign-in")
        );
        HeaderValue::try_from(value).expect("hex ids make a valid header")
    }

    /// The `Set-Cookie` value for session `id`.
    pub fn set_cookie(&self, id: &str) -> HeaderValue {
        let value = format!("{}={id}{}", self.session_cookie(), self.attributes("/console"));
        HeaderValue::try_from(value).expect("hex ids make a valid header")
    }

    /// The `Set-Cookie` value that drops the session cookie.
    pub fn clear_cookie(&self) -> HeaderValue {
        let value = format!("{}={}; Max-Age=0", self.session_cookie(), self.attributes("/console"));
        HeaderValue::try_from(value).expect("a valid header")
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cookie(value: HeaderValue) -> HeaderMap {
        let pair = value.to_str().unwrap().split(';').next().unwrap().to_owned();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, pair.parse().unwrap());
        headers
    }

    #[test]
    fn a_principal_at_its_cap_loses_its_own_oldest_session_never_anothers() {
        let sessions = Sessions::new(false);
        let (mine, theirs) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let start = |p| sessions.start("t".into(), RoleKind::Reviewer, p, "n".into()).unwrap();
        let their_session = start(theirs);
        let my_first = start(mine);
        for _ in 1..MAX_PER_PRINCIPAL {
            start(mine);
        }
        start(mine);
        assert!(
            sessions.find(&cookie(sessions.set_cookie(&my_first))).is_none(),
            "my oldest went"
        );
        assert!(sessions.find(&cookie(sessions.set_cookie(&their_session))).is_some());
        let mine_held = lock(&sessions.held).values().filter(|s| s.principal == mine).count();
        assert_eq!(mine_held, MAX_PER_PRINCIPAL);
    }

    #[test]
    fn only_an_issued_nonce_is_redeemed_and_only_once() {
        let sessions = Sessions::new(true);
        let nonce = sessions.issue_nonce();
        let headers = cookie(sessions.set_sign_in_cookie(&nonce));
        assert!(!sessions.redeem_nonce(&headers, "chosen-by-an-attacker"));
        assert!(sessions.redeem_nonce(&headers, &nonce));
        assert!(!sessions.redeem_nonce(&headers, &nonce), "used up");
        let forged = cookie(sessions.set_sign_in_cookie("forged"));
        assert!(!sessions.redeem_nonce(&forged, "forged"), "never issued");
        assert!(
            sessions
                .set_cookie("x")
                .to_str()
                .unwrap()
                .starts_with("__Host-vpnr_console=x; Path=/;")
        );
    }
}
