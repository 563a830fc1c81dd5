//! Signing in: e-mail, password and (where enrolled) a second factor, with
//! the same answer and the same work for an unknown address as for a wrong
//! password; failures slow the address down (`domain::account::sign_in_wait`).

use std::net::IpAddr;
use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

use super::{Accounts, Failure, random_secret, secret_hash};
use crate::auth::totp;
use crate::db::{accounts, sessions};
use crate::domain::account::{FAILURES_FORGOTTEN_AFTER, User, sign_in_wait};
use crate::domain::institution::Category;
use crate::domain::principal::Actor;

/// A sign-in form as posted.
pub struct Attempt<'a> {
    pub email: &'a str,
    pub password: &'a str,
    /// A TOTP code or a recovery code; empty when none was given.
    pub code: &'a str,
    pub peer: Option<IpAddr>,
    pub user_agent: &'a str,
}

/// Why a sign-in was refused. `Wrong` covers an unknown address, a wrong
/// password and a wrong or missing second factor alike.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("the e-mail address, password or code is wrong")]
    Wrong,
    #[error("too many failed attempts for this address; try again in {} s", .0.as_secs().max(1))]
    Throttled(Duration),
    #[error(transparent)]
    Failed(#[from] Failure),
}

/// A started session: the id for the cookie (only its hash is stored).
pub struct SignedIn {
    pub session_id: String,
    pub user: User,
}

/// The signed-in user behind a session cookie.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub user: User,
    pub category: Option<Category>,
    pub csrf: String,
    pub session_hash: [u8; 32],
}

/// The actor the audit trail records for a user's own action.
pub fn actor_of(user: &User) -> Actor {
    Actor {
        principal_id: Some(user.id),
        name: user.email.clone(),
        role: user.membership.role().as_str(),
        request_id: None,
    }
}

/// The actor of an attempt nobody is known for.
fn anonymous(email: &str) -> Actor {
    Actor {
        principal_id: None,
        name: email.to_owned(),
        role: "anonymous",
        request_id: None,
    }
}

/// The unique key of an address as typed: its normal form when it parses,
/// else the lower-cased input (which matches no account).
pub(crate) fn key_of(email: &str) -> String {
    match email.parse::<crate::domain::identifiers::Email>() {
        Ok(e) => crate::domain::account::email_key(&e),
        Err(_) => email.trim().to_lowercase(),
    }
}

fn unix_now() -> u64 {
    u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or_default()
}

impl Accounts {
    /// Checks an attempt and starts a session.
    pub async fn sign_in(&self, a: &Attempt<'_>) -> Result<SignedIn, SignInError> {
        let key = key_of(a.email);
        if let Some((failures, last)) = accounts::failures(&self.pool, &key).await.map_err(Failure::from)? {
            let since = (OffsetDateTime::now_utc() - last).unsigned_abs();
            if let Some(wait) = sign_in_wait(failures, since) {
                return Err(SignInError::Throttled(wait));
            }
        }
        let stored = accounts::by_email(&self.pool, &key).await.map_err(Failure::from)?;
        // The same work whether or not there is an account (see auth::password).
        let matched = self
            .passwords
            .verify(a.password, stored.as_ref().map(|s| s.password_hash.as_str()))
            .await
            .map_err(Failure::from)?;
        let (Some(stored), true) = (stored, matched) else {
            return Err(self.failed(&key, None, "password").await);
        };
        let method = match &stored.totp_secret {
            None => "password",
            Some(secret) => match self
                .second_factor(&stored.user, secret, stored.totp_last_step, a.code)
                .await?
            {
                Some(method) => method,
                None => return Err(self.failed(&key, Some(stored.user.id), "second factor").await),
            },
        };
        let session_id = random_secret();
        let new = sessions::NewSession {
            id_hash: secret_hash(&session_id),
            user: stored.user.id,
            email_key: &key,
            csrf: &random_secret(),
            user_agent: &a.user_agent.chars().take(200).collect::<String>(),
            address: a.peer,
            method,
        };
        sessions::start(&self.pool, &new, &actor_of(&stored.user))
            .await
            .map_err(Failure::from)?;
        Ok(SignedIn {
            session_id,
            user: stored.user,
        })
    }

    /// Checks a TOTP code (each step's once) or a recovery code; how the
    /// user passed, or `None`.
    async fn second_factor(
        &self,
        user: &User,
        secret: &[u8],
        last_step: Option<i64>,
        code: &str,
    ) -> Result<Option<&'static str>, Failure> {
        let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        if digits.len() == 6 {
            let Some(step) = totp::check(secret, &digits, unix_now(), last_step) else {
                return Ok(None);
            };
            // A concurrent sign-in with the same code loses here.
            let fresh = accounts::use_totp_step(&self.pool, user.id, step).await?;
            return Ok(fresh.then_some("password and one-time code"));
        }
        if digits.is_empty() {
            return Ok(None);
        }
        let used =
            accounts::use_recovery_code(&self.pool, user.id, &totp::recovery_hash(code), &actor_of(user)).await?;
        Ok(used.then_some("password and recovery code"))
    }

    /// Records a failure; the refusal to answer.
    async fn failed(&self, key: &str, user: Option<Uuid>, what: &str) -> SignInError {
        let actor = anonymous(key);
        match accounts::record_failure(&self.pool, key, user, what, FAILURES_FORGOTTEN_AFTER, &actor).await {
            Ok(()) => SignInError::Wrong,
            Err(e) => SignInError::Failed(e.into()),
        }
    }

    /// The user of an open session, if the cookie names one.
    pub async fn current(&self, session_id: &str) -> Result<Option<CurrentUser>, Failure> {
        let session_hash = secret_hash(session_id);
        let Some(open) = sessions::find(&self.pool, &session_hash).await? else {
            return Ok(None);
        };
        let Some(stored) = accounts::by_id(&self.pool, open.user_id).await? else {
            return Ok(None);
        };
        Ok(Some(CurrentUser {
            user: stored.user,
            category: stored.category,
            csrf: open.csrf,
            session_hash,
        }))
    }

    /// Ends the session (sign-out).
    pub async fn sign_out(&self, current: &CurrentUser) -> Result<(), Failure> {
        let actor = actor_of(&current.user);
        sessions::end(&self.pool, &current.session_hash, |_| actor).await?;
        Ok(())
    }

    /// Changes the password of a signed-in user who proved the current
    /// one; ends the user's other sessions.
    pub async fn change_password(
        &self,
        current: &CurrentUser,
        old: &str,
        new: &crate::domain::account::Password,
    ) -> Result<bool, Failure> {
        let Some(stored) = accounts::by_id(&self.pool, current.user.id).await? else {
            return Ok(false);
        };
        if !self.passwords.verify(old, Some(&stored.password_hash)).await? {
            return Ok(false);
        }
        let hash = self.passwords.hash(new.as_str()).await?;
        let mut tx = self.pool.begin().await?;
        let actor = actor_of(&current.user);
        accounts::set_password(
            &mut tx,
            current.user.id,
            &hash,
            Some(&current.session_hash),
            "PASSWORD_CHANGED",
            &actor,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Enrols a second factor once the user proved it with a first code:
    /// the recovery codes to show once, or `None` for a wrong code. Ends
    /// the user's other sessions.
    pub async fn enrol_second_factor(
        &self,
        current: &CurrentUser,
        secret: &[u8],
        code: &str,
    ) -> Result<Option<Vec<String>>, Failure> {
        let Some(step) = totp::check(secret, code, unix_now(), None) else {
            return Ok(None);
        };
        let codes = totp::recovery_codes();
        let hashes: Vec<[u8; 32]> = codes.iter().map(|(_, h)| *h).collect();
        let actor = actor_of(&current.user);
        accounts::enrol_totp(
            &self.pool,
            current.user.id,
            secret,
            step,
            &hashes,
            Some(&current.session_hash),
            &actor,
        )
        .await?;
        Ok(Some(codes.into_iter().map(|(c, _)| c).collect()))
    }
}
