//! Console sessions: a signed-in browser holds an opaque session id in a
//! cookie (HttpOnly, SameSite=Strict, no expiry: the browser session; under
//! TLS a `__Host-` cookie, which a sibling host cannot set). The session
//! itself is a row in PostgreSQL holding only the id's hash (see
//! `db::sessions`), so every replica honours it and a restart keeps it; it
//! ends on sign-out, after 30 idle minutes, twelve hours after sign-in, or
//! when the user changes password or second factor elsewhere.
//!
//! Forms posted before a session exists (sign-in, sign-up, resets,
//! invitations) carry a random token that must equal the one in a cookie
//! (double submit): a page on another site can neither read nor send that
//! cookie, and any replica can check it.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, header};

use crate::accounts::{Accounts, CurrentUser, Failure, random_secret};
use crate::domain::account::User;
use crate::domain::principal::{Principal, RoleKind};

/// One signed-in browser.
#[derive(Clone)]
pub struct Session {
    pub user: User,
    /// What the gate admits the user's actions as.
    pub principal: Arc<Principal>,
    pub role: RoleKind,
    /// Who signed in, shown in the header.
    pub name: String,
    /// Required in every form this session posts (against cross-site posts).
    pub csrf: String,
    /// The stored hash of this session's id (it is "this session" in lists).
    pub hash: [u8; 32],
}

impl Session {
    fn of(current: CurrentUser) -> Self {
        let principal = Arc::new(current.user.principal(current.category));
        Self {
            role: current.user.kind(),
            name: format!("{} <{}>", current.user.name, current.user.email),
            user: current.user,
            principal,
            csrf: current.csrf,
            hash: current.session_hash,
        }
    }

    /// Whether the user may manage the organisation's keys (and, for an
    /// institution, its members).
    pub fn manages_keys(&self) -> bool {
        self.principal.manages_keys
    }
}

/// The console's sessions, and the cookies naming them.
pub struct Sessions {
    pub accounts: Accounts,
    /// Served over TLS: `Secure`, `__Host-` cookies.
    tls: bool,
}

impl Sessions {
    pub fn new(accounts: Accounts, tls: bool) -> Self {
        Self { accounts, tls }
    }

    /// The session a request's cookie names, if it is still open.
    pub async fn find(&self, headers: &HeaderMap) -> Result<Option<Session>, Failure> {
        let Some(id) = named_cookie(headers, self.session_cookie()) else {
            return Ok(None);
        };
        Ok(self.accounts.current(&id).await?.map(Session::of))
    }

    /// A token for a form posted without a session (goes in the form and
    /// its cookie).
    pub fn issue_form_token(&self) -> String {
        random_secret()
    }

    /// Whether a session-less form's `posted` token equals its cookie's.
    pub fn check_form_token(&self, headers: &HeaderMap, posted: &str) -> bool {
        named_cookie(headers, self.form_cookie()).is_some_and(|cookie| {
            !posted.is_empty() && crate::auth::token::secrets_equal(cookie.as_bytes(), posted.as_bytes())
        })
    }

    /// The session cookie's name (`__Host-` under TLS).
    fn session_cookie(&self) -> &'static str {
        if self.tls {
            "__Host-vpnr_console"
        } else {
            "vpnr_console"
        }
    }

    fn form_cookie(&self) -> &'static str {
        if self.tls { "__Host-vpnr_form" } else { "vpnr_form" }
    }

    /// Attributes every cookie of ours carries: under TLS `Secure` and the
    /// whole host (`__Host-` requires `Path=/`), else the console's path.
    fn attributes(&self) -> &'static str {
        if self.tls {
            "; Path=/; HttpOnly; SameSite=Strict; Secure"
        } else {
            "; Path=/console; HttpOnly; SameSite=Strict"
        }
    }

    /// The `Set-Cookie` value for a session-less form's `token`.
    pub fn set_form_cookie(&self, token: &str) -> HeaderValue {
        let value = format!("{}={token}{}", self.form_cookie(), self.attributes());
        HeaderValue::try_from(value).expect("hex ids make a valid header")
    }

    /// The `Set-Cookie` value for session `id`.
    pub fn set_cookie(&self, id: &str) -> HeaderValue {
        let value = format!("{}={id}{}", self.session_cookie(), self.attributes());
        HeaderValue::try_from(value).expect("hex ids make a valid header")
    }

    /// The `Set-Cookie` value that drops the session cookie.
    pub fn clear_cookie(&self) -> HeaderValue {
        let value = format!("{}=; Max-Age=0{}", self.session_cookie(), self.attributes());
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

    fn sessions(tls: bool) -> Sessions {
        let pool = sqlx::PgPool::connect_lazy("postgres://unused").unwrap();
        let passwords = crate::auth::password::Passwords::new().unwrap();
        Sessions::new(Accounts::new(pool, passwords), tls)
    }

    #[tokio::test]
    async fn a_form_token_must_equal_its_cookie() {
        let sessions = sessions(true);
        let token = sessions.issue_form_token();
        let headers = cookie(sessions.set_form_cookie(&token));
        assert!(sessions.check_form_token(&headers, &token));
        assert!(!sessions.check_form_token(&headers, "chosen-by-an-attacker"));
        assert!(!sessions.check_form_token(&HeaderMap::new(), &token), "no cookie");
        assert!(!sessions.check_form_token(&cookie(sessions.set_form_cookie("")), ""));
        assert!(
            sessions
                .set_cookie("x")
                .to_str()
                .unwrap()
                .starts_with("__Host-vpnr_console=x; Path=/;")
        );
    }
}
