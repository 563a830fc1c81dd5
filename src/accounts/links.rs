//! What e-mailed single-use links do: verify a self-registration (and then
//! create the institution with its first owner), accept an invitation,
//! reset a password. A link's secret is random, kept only as a hash, and
//! used up in the transaction that does what it allows.

use base64::Engine as _;
use prost::Message as _;
use serde_json::{Value, json};
use uuid::Uuid;

use super::sign_in::{actor_of, key_of};
use super::{Accounts, Failure, random_secret, secret_hash};
use crate::db::{StoreError, accounts, institutions, links};
use crate::domain::account::{LinkPurpose, Membership, Password, User, email_key};
use crate::domain::identifiers::Email;
use crate::domain::institution::{self, Category};
use crate::domain::principal::Actor;
use crate::domain::{Violations, text::PersonName};
use crate::grpc::convert;
use crate::pb;

/// Serialises sign-ups' "is this CNIC, NTN or address taken?" with their
/// inserts (no unique index can: older institutions may share identifiers).
const SIGN_UP_LOCK: i64 = 0x5650_5253_4947_4e55; // "VPRSIGNU"

/// Why a link could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{0}")]
    Invalid(Violations),
    /// The CNIC, NTN or e-mail address is registered already (which one,
    /// and by whom, is not said).
    #[error("this e-mail address, CNIC or NTN is already registered")]
    Taken,
    #[error("this link is unknown, already used or expired")]
    Dead,
    #[error(transparent)]
    Failed(#[from] Failure),
}

impl From<StoreError> for LinkError {
    fn from(e: StoreError) -> Self {
        match e {
            // An account made meanwhile for the same address.
            StoreError::AlreadyExists(_) => Self::Taken,
            e => Self::Failed(e.into()),
        }
    }
}

impl From<sqlx::Error> for LinkError {
    fn from(e: sqlx::Error) -> Self {
        Self::Failed(e.into())
    }
}

/// A self-registration as the sign-up form sent it.
pub struct SignUp<'a> {
    /// As CreateInstitution would take it: validated the same way.
    pub institution: &'a pb::Institution,
    pub name: &'a str,
    pub email: &'a str,
    pub password: &'a str,
}

/// The categories that sign themselves up; banks, foreign missions and
/// government bodies are enrolled by an administrator.
pub const SELF_REGISTERED: &[Category] = &[
    Category::ItCompany,
    Category::CallCenterBpo,
    Category::Company,
    Category::Freelancer,
];

/// Who an invitation is for.
pub struct Invitee<'a> {
    pub email: &'a str,
    pub membership: Membership,
    /// Shown in the e-mail: who invites, to what.
    pub organisation: &'a str,
}

/// The account e-mail for a link (see `notify::mail::compose_account`).
fn message(purpose: LinkPurpose, link: &str, name: &str, organisation: &str, language: &str) -> Value {
    json!({ "kind": purpose.as_str(), "link": link, "name": name, "organisation": organisation, "language": language })
}

/// A text field of a link's payload (empty when missing).
fn text(payload: &Value, name: &str) -> String {
    payload.get(name).and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// A new link's secret and its URL under `base_url`.
fn new_link(purpose: LinkPurpose, base_url: &str) -> (String, String) {
    let secret = random_secret();
    let url = format!("{}{}?token={secret}", base_url.trim_end_matches('/'), purpose.path());
    (secret, url)
}

fn parse_person(name: &str, email: &str, v: &mut Violations) -> Option<(PersonName, Email)> {
    let name = name.parse::<PersonName>().map_err(|e| v.add("name", e.0)).ok();
    let email = email.parse::<Email>().map_err(|e| v.add("email", e.0)).ok();
    name.zip(email)
}

fn parse_password(password: &str, context: &[&str], v: &mut Violations) -> Option<Password> {
    Password::parse(password, context)
        .map_err(|e| v.add("password", e.0))
        .ok()
}

/// The institution a sign-up asks for, validated as CreateInstitution does.
fn sign_up_institution(i: &pb::Institution, v: &mut Violations) -> Option<(Category, institution::Profile)> {
    match convert::new_institution(i) {
        Ok((category, _)) if !SELF_REGISTERED.contains(&category) => {
            v.add(
                "institution.category",
                "banks, foreign missions and government bodies are enrolled by the regulator; ask it for an invitation",
            );
            None
        }
        Ok(parsed) => Some(parsed),
        Err(e) => {
            v.extend(e.nested("institution"));
            None
        }
    }
}

impl Accounts {
    /// Checks a self-registration and e-mails its verification link;
    /// nothing is created until the link is followed.
    pub async fn sign_up(&self, s: &SignUp<'_>, base_url: &str) -> Result<(), LinkError> {
        let mut v = Violations::default();
        let institution = sign_up_institution(s.institution, &mut v);
        let person = parse_person(s.name, s.email, &mut v);
        let password = parse_password(s.password, &[s.email, s.name, &s.institution.legal_name], &mut v);
        let (Some((_, profile)), Some((name, email)), Some(password), true) =
            (institution, person, password, v.is_empty())
        else {
            return Err(LinkError::Invalid(v));
        };
        let key = email_key(&email);
        let mut conn = self.pool.acquire().await?;
        let cnic = profile.cnic.as_ref().map(|c| c.as_str());
        let ntn = profile.ntn.as_ref().map(|n| n.as_str());
        if accounts::email_taken(&mut conn, &key).await?
            || institutions::identifiers_taken(&mut conn, cnic, ntn).await?
        {
            return Err(LinkError::Taken);
        }
        drop(conn);
        let password_hash = self.passwords.hash(password.as_str()).await.map_err(Failure::from)?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(s.institution.encode_to_vec());
        let (secret, url) = new_link(LinkPurpose::SignUp, base_url);
        let language = profile.language.as_str();
        let link = links::NewLink {
            hash: secret_hash(&secret),
            purpose: LinkPurpose::SignUp,
            email_key: &key,
            user: None,
            payload: json!({ "name": name.as_str(), "email": email.as_str(), "password_hash": password_hash,
                             "institution": encoded }),
        };
        let mail = message(
            LinkPurpose::SignUp,
            &url,
            name.as_str(),
            profile.legal_name.as_str(),
            language,
        );
        let mut tx = self.pool.begin().await?;
        links::insert_link(&mut tx, &link, email.as_str(), &mail).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Follows a sign-up's link: creates the institution (marked
    /// self-registered) and its owner, once. The identifiers are checked
    /// again: another sign-up may have taken them meanwhile.
    pub async fn verify_sign_up(&self, secret: &str) -> Result<User, LinkError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SIGN_UP_LOCK)
            .execute(&mut *tx)
            .await?;
        let Some(link) = links::take_link(&mut tx, &secret_hash(secret), LinkPurpose::SignUp).await? else {
            return Err(LinkError::Dead);
        };
        let field = |name: &str| text(&link.payload, name);
        let institution = base64::engine::general_purpose::STANDARD
            .decode(field("institution"))
            .ok()
            .and_then(|bytes| pb::Institution::decode(bytes.as_slice()).ok())
            .ok_or_else(|| StoreError::Corrupt("a sign-up link's institution".into()))?;
        let mut v = Violations::default();
        let Some((category, profile)) = sign_up_institution(&institution, &mut v) else {
            return Err(LinkError::Invalid(v));
        };
        let cnic = profile.cnic.as_ref().map(|c| c.as_str());
        let ntn = profile.ntn.as_ref().map(|n| n.as_str());
        if accounts::email_taken(&mut tx, &link.email_key).await?
            || institutions::identifiers_taken(&mut tx, cnic, ntn).await?
        {
            return Err(LinkError::Taken);
        }
        let (id, user_id) = (Uuid::now_v7(), Uuid::now_v7());
        let email = field("email");
        let actor = Actor {
            principal_id: Some(user_id),
            name: email.clone(),
            role: "institution",
            request_id: None,
        };
        let changes = institution::enrolment_changes(category, &profile);
        institutions::insert(&mut tx, id, category, &profile, true, changes, &actor).await?;
        let membership = Membership::Institution { id, owner: true };
        let name = field("name");
        let user = accounts::NewUser {
            id: user_id,
            email: &email,
            email_key: &link.email_key,
            name: &name,
            password_hash: &field("password_hash"),
            membership: &membership,
        };
        accounts::insert_user(&mut tx, &user, &actor).await?;
        tx.commit().await?;
        Ok(User {
            id: user_id,
            email,
            name,
            membership,
            totp_enrolled: false,
        })
    }

    /// Invites a person to an organisation (by an owner, an administrator
    /// or an operator at the command line): e-mails a link valid for 7 days,
    /// and returns it (the operator's CLI prints it, for a first
    /// administrator where no mail server is configured yet).
    pub async fn invite(&self, invitee: &Invitee<'_>, base_url: &str, actor: &Actor) -> Result<String, LinkError> {
        let email = invitee
            .email
            .parse::<Email>()
            .map_err(|e| LinkError::Invalid(Violations::one("email", e.0)))?;
        let key = email_key(&email);
        let mut tx = self.pool.begin().await?;
        if accounts::email_taken(&mut tx, &key).await? {
            return Err(LinkError::Taken);
        }
        let (role, institution, isp, owner) = match &invitee.membership {
            Membership::Institution { id, owner } => ("institution", Some(*id), None, *owner),
            Membership::Isp(code) => ("isp", None, Some(code.as_str().to_owned()), false),
            Membership::Reviewer => ("reviewer", None, None, false),
            Membership::Admin => ("admin", None, None, false),
        };
        let (secret, url) = new_link(LinkPurpose::Invitation, base_url);
        let link = links::NewLink {
            hash: secret_hash(&secret),
            purpose: LinkPurpose::Invitation,
            email_key: &key,
            user: None,
            payload: json!({ "email": email.as_str(), "role": role, "institution_id": institution, "isp": isp,
                             "owner": owner, "organisation": invitee.organisation }),
        };
        let mail = message(LinkPurpose::Invitation, &url, "", invitee.organisation, "en");
        links::insert_link(&mut tx, &link, email.as_str(), &mail).await?;
        let changes = json!([{ "field": "email", "before": null, "after": email.as_str() },
                             { "field": "role", "before": null, "after": invitee.membership.label() },
                             { "field": "organisation", "before": null, "after": invitee.organisation }]);
        let (subject_type, subject) = match institution {
            Some(id) => ("institution", id),
            None => ("user", Uuid::nil()),
        };
        crate::db::audit::append(
            &mut tx,
            crate::db::audit::Entry::about(subject_type, subject, "INVITED", actor, changes),
        )
        .await?;
        tx.commit().await?;
        Ok(url)
    }

    /// What an invitation link offers (for the page that accepts it).
    pub async fn invitation(&self, secret: &str) -> Result<(String, String), LinkError> {
        let link = links::peek_link(&self.pool, &secret_hash(secret), LinkPurpose::Invitation)
            .await?
            .ok_or(LinkError::Dead)?;
        let field = |name: &str| text(&link.payload, name);
        Ok((field("email"), field("organisation")))
    }

    /// Accepts an invitation: creates the account, once.
    pub async fn accept_invitation(&self, secret: &str, name: &str, password: &str) -> Result<User, LinkError> {
        let (email, organisation) = self.invitation(secret).await?;
        let mut v = Violations::default();
        let person = parse_person(name, &email, &mut v);
        let password = parse_password(password, &[&email, name, &organisation], &mut v);
        let (Some((name, email)), Some(password), true) = (person, password, v.is_empty()) else {
            return Err(LinkError::Invalid(v));
        };
        let password_hash = self.passwords.hash(password.as_str()).await.map_err(Failure::from)?;
        let mut tx = self.pool.begin().await?;
        let Some(link) = links::take_link(&mut tx, &secret_hash(secret), LinkPurpose::Invitation).await? else {
            return Err(LinkError::Dead);
        };
        let p = &link.payload;
        let optional = |name: &str| p.get(name).and_then(Value::as_str).map(str::to_owned);
        let membership = match optional("role").as_deref() {
            Some("institution") => Membership::Institution {
                id: optional("institution_id")
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| StoreError::Corrupt("an invitation's institution".into()))?,
                owner: p.get("owner").and_then(Value::as_bool).unwrap_or(false),
            },
            Some("isp") => Membership::Isp(
                optional("isp")
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| StoreError::Corrupt("an invitation's ISP".into()))?,
            ),
            Some("reviewer") => Membership::Reviewer,
            Some("admin") => Membership::Admin,
            other => return Err(StoreError::Corrupt(format!("an invitation's role {other:?}")).into()),
        };
        let id = Uuid::now_v7();
        let user = User {
            id,
            email: email.as_str().to_owned(),
            name: name.as_str().to_owned(),
            membership,
            totp_enrolled: false,
        };
        let new = accounts::NewUser {
            id,
            email: email.as_str(),
            email_key: &link.email_key,
            name: name.as_str(),
            password_hash: &password_hash,
            membership: &user.membership,
        };
        accounts::insert_user(&mut tx, &new, &actor_of(&user)).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// E-mails a password reset link if the address has an account; the
    /// caller answers the same either way.
    pub async fn request_reset(&self, email: &str, base_url: &str) -> Result<(), LinkError> {
        let key = key_of(email);
        let Some(stored) = accounts::by_email(&self.pool, &key).await? else {
            return Ok(());
        };
        let (secret, url) = new_link(LinkPurpose::PasswordReset, base_url);
        let link = links::NewLink {
            hash: secret_hash(&secret),
            purpose: LinkPurpose::PasswordReset,
            email_key: &key,
            user: Some(stored.user.id),
            payload: json!({}),
        };
        let mail = message(LinkPurpose::PasswordReset, &url, &stored.user.name, "", "en");
        let mut tx = self.pool.begin().await?;
        links::insert_link(&mut tx, &link, &stored.user.email, &mail).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether a reset link still works (for the page that uses it).
    pub async fn reset_works(&self, secret: &str) -> Result<bool, LinkError> {
        Ok(
            links::peek_link(&self.pool, &secret_hash(secret), LinkPurpose::PasswordReset)
                .await?
                .is_some(),
        )
    }

    /// Sets a new password through a reset link, once; ends every session
    /// of the user and forgets the address's failed sign-ins.
    pub async fn reset_password(&self, secret: &str, password: &str) -> Result<(), LinkError> {
        let link = links::peek_link(&self.pool, &secret_hash(secret), LinkPurpose::PasswordReset)
            .await?
            .ok_or(LinkError::Dead)?;
        let user = match link.user_id {
            Some(id) => accounts::by_id(&self.pool, id).await?.ok_or(LinkError::Dead)?,
            None => return Err(LinkError::Dead),
        };
        let password = Password::parse(password, &[&user.user.email, &user.user.name])
            .map_err(|e| LinkError::Invalid(Violations::one("password", e.0)))?;
        let hash = self.passwords.hash(password.as_str()).await.map_err(Failure::from)?;
        let mut tx = self.pool.begin().await?;
        if links::take_link(&mut tx, &secret_hash(secret), LinkPurpose::PasswordReset)
            .await?
            .is_none()
        {
            return Err(LinkError::Dead);
        }
        accounts::set_password(
            &mut tx,
            user.user.id,
            &hash,
            None,
            "PASSWORD_RESET",
            &actor_of(&user.user),
        )
        .await?;
        accounts::clear_failures(&mut tx, &link.email_key).await?;
        tx.commit().await?;
        Ok(())
    }
}
