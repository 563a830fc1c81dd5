//! Operator commands with database access: credentials, ISPs, development
//! certificates. Output goes to stdout so scripts can capture it; every
//! change is audited under the operator's name.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::token;
use crate::db::{StoreError, events::Audience, isps, tokens};
use crate::domain::account::Membership;
use crate::domain::identifiers::IspCode;
use crate::domain::principal::{Actor, Role};
use crate::domain::text::LegalName;
use crate::flags::{DevCertsArgs, InviteArgs, IssueArgs, RoleArg, UserRoleArg};
use crate::tls;

/// How long tokens live unless `--expires-in` says otherwise.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(365 * 86_400);
/// Administrators' tokens live shorter: they can enrol institutions.
pub const DEFAULT_ADMIN_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 86_400);

/// Issues a token and returns it; only its hash is stored.
pub async fn issue(pool: &PgPool, args: &IssueArgs) -> anyhow::Result<String> {
    let role = match (args.role, args.institution, args.isp.as_deref()) {
        (RoleArg::Institution, Some(id), None) => Role::Institution(id),
        (RoleArg::Institution, None, _) => bail!("--role institution needs --institution ID"),
        (RoleArg::Isp, None, Some(code)) => Role::Isp(code.parse().map_err(|e| anyhow::anyhow!("--isp: {e}"))?),
        (RoleArg::Isp, _, None) => bail!("--role isp needs --isp CODE"),
        (_, Some(_), _) => bail!("--institution applies only to --role institution"),
        (_, _, Some(_)) => bail!("--isp applies only to --role isp"),
        (RoleArg::Admin, None, None) => Role::Admin,
        (RoleArg::Reviewer, None, None) => Role::Reviewer,
        (RoleArg::Lookup, None, None) => Role::Lookup,
        (RoleArg::Payments, None, None) => Role::Payments,
    };
    let name = args.name.clone().unwrap_or_else(|| role.as_str().to_owned());
    let lifetime = args.expires_in.unwrap_or(match role {
        Role::Admin => DEFAULT_ADMIN_TOKEN_LIFETIME,
        _ => DEFAULT_TOKEN_LIFETIME,
    });
    let cert_sha256 = args
        .bind_cert
        .as_deref()
        .map(tls::certificate_file_sha256)
        .transpose()
        .context("--bind-cert")?;
    let (secret, hash) = token::generate().map_err(|e| anyhow::anyhow!("no randomness for a token: {e}"))?;
    let new = tokens::NewToken {
        id: Uuid::now_v7(),
        role: &role,
        name: &name,
        hash,
        expire_time: OffsetDateTime::now_utc() + lifetime,
        cert_sha256,
        manages_keys: args.manages_keys,
    };
    match tokens::insert(pool, &new, &Actor::operator(&args.operator.name())).await {
        Ok(()) => Ok(secret),
        Err(StoreError::NotFound("isp")) => bail!(
            "no such ISP: {:?} (add it with `vpn-registry isp add`)",
            args.isp.as_deref().unwrap_or_default()
        ),
        Err(StoreError::NotFound(what)) => bail!("no such {what}: {:?}", args.institution),
        Err(e) => Err(e.into()),
    }
}

/// Invites a person (see `vpn-registry user invite`); the link.
pub async fn invite(pool: &PgPool, args: &InviteArgs) -> anyhow::Result<String> {
    let membership = match (args.role, args.institution, args.isp.as_deref()) {
        (UserRoleArg::Owner | UserRoleArg::Member, Some(id), None) => Membership::Institution {
            id,
            owner: args.role == UserRoleArg::Owner,
        },
        (UserRoleArg::Owner | UserRoleArg::Member, None, _) => bail!("--role owner and member need --institution ID"),
        (UserRoleArg::Isp, None, Some(code)) => {
            Membership::Isp(code.parse().map_err(|e| anyhow::anyhow!("--isp: {e}"))?)
        }
        (UserRoleArg::Isp, _, None) => bail!("--role isp needs --isp CODE"),
        (_, Some(_), _) => bail!("--institution applies only to --role owner or member"),
        (_, _, Some(_)) => bail!("--isp applies only to --role isp"),
        (UserRoleArg::Admin, None, None) => Membership::Admin,
        (UserRoleArg::Reviewer, None, None) => Membership::Reviewer,
    };
    let organisation = match &membership {
        Membership::Institution { id, .. } => {
            let found = crate::db::institutions::get(pool, *id, crate::domain::principal::Visibility::All).await;
            match found {
                Ok(i) => i.profile.legal_name.as_str().to_owned(),
                Err(StoreError::NotFound(_)) => bail!("no such institution: {id}"),
                Err(e) => return Err(e.into()),
            }
        }
        Membership::Isp(code) => format!("the ISP desk of {}", code.as_str()),
        Membership::Reviewer | Membership::Admin => "the regulator".to_owned(),
    };
    let passwords = crate::auth::password::Passwords::new()?;
    let accounts = crate::accounts::Accounts::new(pool.clone(), passwords);
    let invitee = crate::accounts::Invitee {
        email: &args.email,
        membership,
        organisation: &organisation,
    };
    match accounts
        .invite(&invitee, &args.public_url, &Actor::operator(&args.operator.name()))
        .await
    {
        Ok(link) => Ok(link),
        Err(crate::accounts::LinkError::Invalid(v)) => bail!("{v}"),
        Err(crate::accounts::LinkError::Taken) => bail!("{} already has an account", args.email),
        Err(e) => Err(e.into()),
    }
}

/// Re-wraps every data key wrapped by the key in `from` with the key in
/// `to`, in one transaction (audited); how many.
pub async fn rotate_document_key(
    pool: &PgPool,
    from: &std::path::Path,
    to: &std::path::Path,
    operator: &str,
) -> anyhow::Result<u64> {
    let old = crate::vault::Keyring::load(&[from.to_owned()])?;
    let both = crate::vault::Keyring::load(&[to.to_owned(), from.to_owned()])?;
    let rewrapped = crate::db::documents::rewrap(
        pool,
        old.current_id(),
        |wrapped| {
            let data_key = both.unwrap(old.current_id(), wrapped)?;
            Ok(both.wrap(&data_key))
        },
        &Actor::operator(operator),
    )
    .await?;
    Ok(rewrapped)
}

/// Replaces a token with a new secret, returned; the old one keeps working
/// for `grace`.
pub async fn rotate(pool: &PgPool, id: Uuid, grace: Duration, operator: &str) -> anyhow::Result<String> {
    let (secret, hash) = token::generate().map_err(|e| anyhow::anyhow!("no randomness for a token: {e}"))?;
    let grace_until = OffsetDateTime::now_utc() + grace;
    if !tokens::rotate(
        pool,
        &Audience::All,
        id,
        Uuid::now_v7(),
        hash,
        grace_until,
        &Actor::operator(operator),
    )
    .await?
    {
        bail!("no active token with id {id}");
    }
    Ok(secret)
}

/// Revokes a token; an unknown or already revoked id is an error.
pub async fn revoke(pool: &PgPool, id: Uuid, operator: &str) -> anyhow::Result<()> {
    if !tokens::revoke(pool, &Audience::All, id, &Actor::operator(operator)).await? {
        bail!("no active token with id {id}");
    }
    Ok(())
}

fn when(t: Option<OffsetDateTime>) -> String {
    t.map_or_else(|| "-".to_owned(), |t| t.replace_nanosecond(0).unwrap_or(t).to_string())
}

/// Writes the token table (no secrets) to `out`.
pub async fn list(pool: &PgPool, out: &mut impl Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "{:<36}  {:<11}  {:<36}  {:<20}  {:<5}  {:<29}  {:<29}  REVOKED",
        "ID", "ROLE", "SCOPE", "NAME", "BOUND", "EXPIRES", "LAST USED"
    )?;
    for t in tokens::list(pool).await? {
        let scope = t
            .institution_id
            .map(|i| i.to_string())
            .or(t.isp_code.clone())
            .unwrap_or_else(|| "-".to_owned());
        writeln!(
            out,
            "{:<36}  {:<11}  {:<36}  {:<20}  {:<5}  {:<29}  {:<29}  {}",
            t.id,
            t.role,
            scope,
            t.name,
            if t.bound { "yes" } else { "no" },
            when(Some(t.expire_time)),
            when(t.last_use_time),
            when(t.revoke_time),
        )?;
    }
    Ok(())
}

/// Adds a licensed ISP.
pub async fn add_isp(pool: &PgPool, code: &str, name: &str, operator: &str) -> anyhow::Result<()> {
    let code: IspCode = code.parse().map_err(|e| anyhow::anyhow!("ISP code: {e}"))?;
    let name: LegalName = name.parse().map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    isps::create(pool, &code, name.as_str(), &Actor::operator(operator)).await?;
    Ok(())
}

/// Writes the ISP list to `out`.
pub async fn list_isps(pool: &PgPool, out: &mut impl Write) -> anyhow::Result<()> {
    writeln!(out, "{:<32}  NAME", "CODE")?;
    let mut after: Option<String> = None;
    loop {
        let page = isps::list(pool, after.as_deref(), 500).await?;
        for isp in &page {
            writeln!(out, "{:<32}  {}", isp.code, isp.name)?;
        }
        match page.last() {
            Some(last) if page.len() == 500 => after = Some(last.code.clone()),
            _ => return Ok(()),
        }
    }
}

/// Writes a development CA and a server and a client certificate it signed.
pub fn dev_certs(args: &DevCertsArgs) -> anyhow::Result<()> {
    let set = tls::DevCertificates::generate(&args.hosts)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    set.write_to(&args.out)
        .with_context(|| format!("writing into {}", args.out.display()))?;
    Ok(())
}

/// Asks the local server's /readyz (or /livez): `Err` says why it is not healthy.
pub async fn healthcheck(args: &crate::flags::HealthcheckArgs) -> anyhow::Result<()> {
    let mut addr = args.metrics_listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let path = if args.live { "/livez" } else { "/readyz" };
    let (status, body) = tokio::time::timeout(args.timeout, crate::observe::http::fetch(addr, path))
        .await
        .with_context(|| format!("no answer from {addr} within {:?}", args.timeout))?
        .with_context(|| format!("asking http://{addr}{path}"))?;
    if status != 200 {
        bail!("{path} answered {status}: {}", body.trim());
    }
    Ok(())
}
