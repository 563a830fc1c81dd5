//! The collecting banks' confirmations of payments and refunds: a challan
//! paid once under one transaction reference (a retry answers the same),
//! and every confirmation kept, accepted or refused, for reconciliation.

use serde_json::json;
use sqlx::{PgConnection, PgPool};

use super::StoreError;
use super::fees::{COLUMNS, Challan, Event};
use crate::domain::Violations;
use crate::domain::principal::Actor;
use crate::domain::refusal::Refusal;

/// What a collecting bank's system confirms.
#[derive(Debug, Clone)]
pub struct Confirmation<'a> {
    pub psid: &'a str,
    /// The amount it collected (payments; refunds repay the challan's).
    pub amount_pkr: Option<i64>,
    /// Its own reference for the transaction.
    pub reference: &'a str,
}

/// Records a payment of a challan: paid once, under one transaction
/// reference; a retry with the same reference answers the same. Every
/// attempt, accepted or refused, is recorded.
pub async fn confirm_payment(pool: &PgPool, c: &Confirmation<'_>, actor: &Actor) -> Result<Challan, StoreError> {
    let outcome = pay(pool, c, actor).await;
    record_attempt(pool, c, "PAYMENT", &outcome, actor).await?;
    outcome
}

async fn pay(pool: &PgPool, c: &Confirmation<'_>, actor: &Actor) -> Result<Challan, StoreError> {
    let mut tx = pool.begin().await?;
    let challan = lock(&mut tx, c.psid).await?;
    let paid_here = challan.transaction_reference.as_deref() == Some(c.reference);
    match challan.status.as_str() {
        "UNPAID" => {}
        "PAID" | "REFUND_DUE" | "REFUNDED" if paid_here => return Ok(challan),
        "PAID" | "REFUND_DUE" | "REFUNDED" => {
            return Err(refused(
                "CHALLAN_PAID",
                c.psid,
                "the challan was already paid under another transaction",
            ));
        }
        _ => {
            return Err(refused(
                "CHALLAN_CANCELLED",
                c.psid,
                "the challan was cancelled: the application changed or ended; the applicant has a new one if a fee is still owed",
            ));
        }
    }
    if c.amount_pkr != Some(challan.amount_pkr) {
        return Err(StoreError::Refused(Refusal::Invalid(Violations::one(
            "amount_pkr",
            format!("must be {}, the challan's amount", challan.amount_pkr),
        ))));
    }
    sqlx::query("UPDATE challans SET status = 'PAID', pay_time = now(), transaction_reference = $2 WHERE psid = $1")
        .bind(c.psid)
        .bind(c.reference)
        .execute(&mut *tx)
        .await
        .map_err(reused_reference)?;
    recorded(tx, &challan, c, ("UNPAID", "PAID", "FEE_PAID"), actor).await
}

/// Records that a fee owed back was repaid; a retry with the same reference
/// answers the same.
pub async fn confirm_refund(pool: &PgPool, c: &Confirmation<'_>, actor: &Actor) -> Result<Challan, StoreError> {
    let outcome = refund(pool, c, actor).await;
    record_attempt(pool, c, "REFUND", &outcome, actor).await?;
    outcome
}

async fn refund(pool: &PgPool, c: &Confirmation<'_>, actor: &Actor) -> Result<Challan, StoreError> {
    let mut tx = pool.begin().await?;
    let challan = lock(&mut tx, c.psid).await?;
    match challan.status.as_str() {
        "REFUND_DUE" => {}
        "REFUNDED" if challan.refund_reference.as_deref() == Some(c.reference) => return Ok(challan),
        _ => {
            return Err(refused(
                "NO_REFUND_DUE",
                c.psid,
                &format!("no refund is owed on this challan (it is {})", challan.status),
            ));
        }
    }
    sqlx::query("UPDATE challans SET status = 'REFUNDED', refund_time = now(), refund_reference = $2 WHERE psid = $1")
        .bind(c.psid)
        .bind(c.reference)
        .execute(&mut *tx)
        .await?;
    recorded(tx, &challan, c, ("REFUND_DUE", "REFUNDED", "FEE_REFUNDED"), actor).await
}

/// Appends the registration event of a confirmation that moved `challan`
/// (from, to, action) and commits; the challan as it is now.
async fn recorded(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    challan: &Challan,
    c: &Confirmation<'_>,
    (from, to, action): (&str, &str, &'static str),
    actor: &Actor,
) -> Result<Challan, StoreError> {
    let reason = format!(
        "PKR {} (challan {}), transaction {}",
        challan.amount_pkr, c.psid, c.reference
    );
    let changes = json!([{ "field": "challan.status", "before": from, "after": to }]);
    let entry = Event {
        registration: challan.registration_id,
        revision: challan.revision_id,
        action,
        reason: &reason,
    };
    entry.append(&mut tx, changes, actor).await?;
    let now = lock(&mut tx, c.psid).await?;
    tx.commit().await?;
    Ok(now)
}

async fn lock(conn: &mut PgConnection, psid: &str) -> Result<Challan, StoreError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM challans WHERE psid = $1 FOR UPDATE"
    )))
    .bind(psid)
    .fetch_optional(conn)
    .await?
    .ok_or(StoreError::NotFound("challan"))
}

fn refused(kind: &'static str, psid: &str, message: &str) -> StoreError {
    StoreError::Refused(Refusal::Precondition {
        kind,
        subject: format!("challans/{psid}"),
        message: message.to_owned(),
    })
}

/// A transaction reference that already confirmed another challan.
fn reused_reference(e: sqlx::Error) -> StoreError {
    match super::violated_constraint(&e) {
        Some("challans_transaction_reference") => {
            StoreError::AlreadyExists("transaction_reference already confirmed another challan".into())
        }
        _ => e.into(),
    }
}

/// Keeps what a payments system sent and what we answered.
async fn record_attempt(
    pool: &PgPool,
    c: &Confirmation<'_>,
    kind: &str,
    outcome: &Result<Challan, StoreError>,
    actor: &Actor,
) -> Result<(), StoreError> {
    let outcome = match outcome {
        Ok(_) => "ACCEPTED".to_owned(),
        Err(StoreError::NotFound(_)) => "UNKNOWN_PSID".to_owned(),
        Err(StoreError::Refused(Refusal::Invalid(_))) => "WRONG_AMOUNT".to_owned(),
        Err(StoreError::Refused(Refusal::Precondition { kind, .. })) => (*kind).to_owned(),
        Err(StoreError::AlreadyExists(_)) => "REFERENCE_REUSED".to_owned(),
        Err(_) => return Ok(()),
    };
    metrics::counter!("vpn_registry_payment_confirmations_total", "kind" => kind.to_owned(), "outcome" => outcome.clone())
        .increment(1);
    sqlx::query(
        "INSERT INTO payment_attempts (psid, amount_pkr, transaction_reference, kind, outcome, principal_id, principal_name)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(c.psid)
    .bind(c.amount_pkr)
    .bind(c.reference)
    .bind(kind)
    .bind(outcome)
    .bind(actor.principal_id)
    .bind(&actor.name)
    .execute(pool)
    .await?;
    Ok(())
}
