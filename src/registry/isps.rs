//! The licensed-ISP list (reference data).

use super::{Page, Registry};
use crate::db::isps as store;
use crate::domain::{identifiers::IspCode, principal::Actor, text::LegalName};
use crate::error::Result;

impl Registry {
    pub async fn add_isp(&self, code: &IspCode, name: &LegalName, actor: &Actor) -> Result<store::Isp> {
        self.writable()?;
        let created = store::create(&self.pool, code, name.as_str(), actor).await?;
        tracing::info!(isp = %created.code, "ISP added");
        Ok(created)
    }

    pub async fn isps(&self, after: Option<&str>, limit: i64) -> Result<Page<store::Isp>> {
        Ok(Page::of(store::list(&self.pool, after, limit + 1).await?, limit))
    }
}
