//! The `token` subcommands: credential management for operators with
//! database access. Output goes to stdout so scripts can capture it.

use std::io::Write;

use anyhow::bail;
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::token;
use crate::config::{IssueArgs, RoleArg};
use crate::db::{StoreError, isps, tokens};
use crate::domain::principal::{Actor, Role};
use crate::domain::registration::IspCode;
use crate::domain::text::LegalName;

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
    };
    let name = args.name.clone().unwrap_or_else(|| role.as_str().to_owned());
    let (secret, hash) = token::generate().map_err(|e| anyhow::anyhow!("no randomness for a token: {e}"))?;
    let id = Uuid::now_v7();
    match tokens::insert(pool, id, &role, &name, &hash, &Actor::operator(None)).await {
        Ok(()) => Ok(secret),
        Err(StoreError::NotFound("isp")) => bail!(
            "no such ISP: {:?} (add it with `vpn-registry isp add`)",
            args.isp.as_deref().unwrap_or_default()
        ),
        Err(StoreError::NotFound(what)) => bail!("no such {what}: {:?}", args.institution),
        Err(e) => Err(e.into()),
    }
}

/// Revokes a token; an unknown or already revoked id is an error.
pub async fn revoke(pool: &PgPool, id: Uuid) -> anyhow::Result<()> {
    if !tokens::revoke(pool, id, &Actor::operator(None)).await? {
        bail!("no active token with id {id}");
    }
    Ok(())
}

/// Writes the token table (no secrets) to `out`.
pub async fn list(pool: &PgPool, out: &mut impl Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "{:<36}  {:<11}  {:<36}  {:<20}  {:<25}  REVOKED",
        "ID", "ROLE", "SCOPE", "NAME", "CREATED"
    )?;
    for t in tokens::list(pool).await? {
        let scope = t
            .institution_id
            .map(|i| i.to_string())
            .or(t.isp_code.clone())
            .unwrap_or_else(|| "-".to_owned());
        let revoked = t.revoke_time.map_or_else(|| "-".to_owned(), |r| r.to_string());
        writeln!(
            out,
            "{:<36}  {:<11}  {:<36}  {:<20}  {:<25}  {revoked}",
            t.id,
            t.role,
            scope,
            t.name,
            t.create_time.to_string()
        )?;
    }
    Ok(())
}

/// Adds a licensed ISP.
pub async fn add_isp(pool: &PgPool, code: &str, name: &str) -> anyhow::Result<()> {
    let code: IspCode = code.parse().map_err(|e| anyhow::anyhow!("ISP code: {e}"))?;
    let name: LegalName = name.parse().map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    isps::create(pool, &code, name.as_str()).await?;
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
