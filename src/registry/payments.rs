//! Fees as people see them: an application's challans, and the collecting
//! banks' confirmations of payments and refunds.

use uuid::Uuid;

use super::Registry;
use crate::db::fees::{self, Challan};
use crate::db::payments::{self, Confirmation};
use crate::db::registrations as store;
use crate::domain::fees::Psid;
use crate::domain::principal::{Actor, Principal, Role, Visibility};
use crate::domain::refusal::Refusal;
use crate::error::Result;

impl Registry {
    /// A registration's challans, for whoever may see the registration.
    pub async fn challans(&self, vis: Visibility, registration: Uuid) -> Result<Vec<Challan>> {
        store::get(&self.pool, registration, vis).await?;
        Ok(fees::of_registration(&self.pool, registration).await?)
    }

    /// One challan: the payments systems (a bank's bill inquiry), staff,
    /// and the institution it was issued to.
    pub async fn challan(&self, p: &Principal, psid: &Psid) -> Result<Challan> {
        let challan = fees::get(&self.pool, psid).await?.ok_or(Refusal::NotFound("challan"))?;
        match p.role {
            Role::Institution(id) if id != challan.institution_id => Err(Refusal::NotFound("challan").into()),
            _ => Ok(challan),
        }
    }

    /// A collecting bank's confirmation that a challan was paid.
    pub async fn confirm_payment(&self, c: &Confirmation<'_>, actor: &Actor) -> Result<Challan> {
        self.writable()?;
        Ok(payments::confirm_payment(&self.pool, c, actor).await?)
    }

    /// A collecting bank's confirmation that a fee owed back was repaid.
    pub async fn confirm_refund(&self, c: &Confirmation<'_>, actor: &Actor) -> Result<Challan> {
        self.writable()?;
        Ok(payments::confirm_refund(&self.pool, c, actor).await?)
    }
}
