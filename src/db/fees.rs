//! Challans: the fee each application owes, re-assessed inside the
//! transaction of every write to its registration, and settled when the
//! application is decided. Every change to a challan is a registration
//! event. (Banks' confirmations are `db::payments`.)

use ipnet::IpNet;
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, audit};
use crate::domain::fees::{self, Application, ChallanStatus, FeeSchedule, Owed, Psid};
use crate::domain::principal::Actor;
use crate::domain::registration::Kind;

/// A challan as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Challan {
    pub psid: String,
    pub registration_id: Uuid,
    pub revision_id: Option<Uuid>,
    pub institution_id: Uuid,
    pub addresses: i64,
    pub amount_pkr: i64,
    pub status: String,
    pub transaction_reference: Option<String>,
    pub refund_reference: Option<String>,
    pub issue_time: OffsetDateTime,
    pub pay_time: Option<OffsetDateTime>,
    pub cancel_time: Option<OffsetDateTime>,
    pub refund_time: Option<OffsetDateTime>,
    pub earn_time: Option<OffsetDateTime>,
}

pub(super) const COLUMNS: &str = "psid, registration_id, revision_id, institution_id, addresses, amount_pkr, status,
    transaction_reference, refund_reference, issue_time, pay_time, cancel_time, refund_time, earn_time";

/// The states in which a registration's addresses count as whitelisted
/// (active) or asked for (pending).
const COUNTED_STATES: &str = "('ACTIVE', 'SUBMITTED', 'ISP_VERIFICATION', 'UNDER_REVIEW', 'NEEDS_INFO')";
const UNDECIDED: &str = "('SUBMITTED', 'ISP_VERIFICATION', 'UNDER_REVIEW', 'NEEDS_INFO')";

/// A registration's challans, oldest first.
pub async fn of_registration(pool: &PgPool, registration: Uuid) -> Result<Vec<Challan>, StoreError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM challans WHERE registration_id = $1 ORDER BY issue_time, psid"
    )))
    .bind(registration)
    .fetch_all(pool)
    .await?)
}

/// One challan by PSID.
pub async fn get(pool: &PgPool, psid: &Psid) -> Result<Option<Challan>, StoreError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM challans WHERE psid = $1"
    )))
    .bind(psid.as_str())
    .fetch_optional(pool)
    .await?)
}

/// The unpaid challans of the application an approval would decide: the
/// registration's pending revision, or the registration itself.
pub async fn unpaid(pool: &PgPool, registration: Uuid, revision: Option<Uuid>) -> Result<Vec<Challan>, StoreError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM challans
          WHERE registration_id = $1 AND revision_id IS NOT DISTINCT FROM $2 AND status = 'UNPAID'"
    )))
    .bind(registration)
    .bind(revision)
    .fetch_all(pool)
    .await?)
}

/// Brings the fees of `registration` in line with the write just made in
/// this transaction: settles challans whose application was decided
/// (earned when approved; cancelled or owed back when refused or
/// withdrawn), then assesses the application still open, if any.
pub async fn reassess(
    conn: &mut PgConnection,
    schedule: &FeeSchedule,
    registration: Uuid,
    actor: &Actor,
) -> Result<(), StoreError> {
    settle_decided(conn, registration, actor).await?;
    let Some(open) = open_application(conn, registration).await? else {
        return Ok(());
    };
    let Some(rule) = schedule.rule(open.kind) else {
        return Ok(());
    };
    // One assessment at a time per institution: its count is the input.
    sqlx::query("SELECT 1 FROM institutions WHERE id = $1 FOR UPDATE")
        .bind(open.institution_id)
        .execute(&mut *conn)
        .await?;
    let kinds: Vec<&str> = rule.kinds.iter().map(|k| k.as_str()).collect();
    let sets: Vec<Vec<IpNet>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT coalesce(v.source_prefixes, r.source_prefixes)
           FROM registrations r
           LEFT JOIN registration_revisions v ON v.registration_id = r.id AND v.state IN {UNDECIDED}
          WHERE r.institution_id = $1 AND r.kind = ANY($2) AND r.state IN {COUNTED_STATES}"
    )))
    .bind(open.institution_id)
    .bind(&kinds)
    .fetch_all(&mut *conn)
    .await?;
    let mine: Vec<Challan> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM challans
          WHERE registration_id = $1 AND revision_id IS NOT DISTINCT FROM $2 AND status IN ('UNPAID', 'PAID')
          FOR UPDATE"
    )))
    .bind(registration)
    .bind(open.revision_id)
    .fetch_all(&mut *conn)
    .await?;
    let paid: i64 = mine.iter().filter(|c| c.status == "PAID").map(|c| c.addresses).sum();
    let owed = schedule.assess(&Application {
        kind: open.kind,
        chargeable: open.chargeable,
        institution_total: sets.iter().map(|s| fees::count(s)).sum(),
        paid: u64::try_from(paid).unwrap_or(0),
    });
    let unpaid = mine.iter().find(|c| c.status == "UNPAID");
    let unchanged = |c: &Challan, o: &Owed| c.addresses as u64 == o.addresses && c.amount_pkr as u64 == o.amount_pkr;
    match (unpaid, owed) {
        (Some(c), Some(o)) if unchanged(c, &o) => Ok(()),
        (unpaid, owed) => {
            if let Some(c) = unpaid {
                let why = "re-assessed: the application changed";
                set_status(conn, c, ChallanStatus::Cancelled, Some(why), actor).await?;
            }
            if let Some(o) = owed {
                issue(conn, schedule, &open, o, actor).await?;
            }
            Ok(())
        }
    }
}

/// The application of a registration still open for a decision.
struct Open {
    registration_id: Uuid,
    institution_id: Uuid,
    kind: Kind,
    revision_id: Option<Uuid>,
    /// What it is charged for: a submission's or renewal's whole set, an
    /// amendment's added addresses.
    chargeable: u64,
}

async fn open_application(conn: &mut PgConnection, registration: Uuid) -> Result<Option<Open>, StoreError> {
    type Row = (
        Uuid,
        String,
        String,
        Vec<IpNet>,
        Option<Uuid>,
        Option<bool>,
        Option<Vec<IpNet>>,
    );
    let (institution_id, kind, state, current, revision, is_renewal, revised): Row =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT r.institution_id, r.kind, r.state, r.source_prefixes, v.id, v.is_renewal, v.source_prefixes
               FROM registrations r
               LEFT JOIN registration_revisions v ON v.registration_id = r.id AND v.state IN {UNDECIDED}
              WHERE r.id = $1"
        )))
        .bind(registration)
        .fetch_one(&mut *conn)
        .await?;
    let kind = super::decode(&kind, Kind::from_db, "kind")?;
    let state = super::decode(&state, crate::domain::state::State::from_db, "state")?;
    let (revision_id, chargeable) = match (revision, is_renewal, revised) {
        _ if state.is_undecided() => (None, fees::count(&current)),
        (Some(id), Some(true), Some(set)) => (Some(id), fees::count(&set)),
        (Some(id), _, Some(set)) => (Some(id), fees::added(&current, &set)),
        _ => return Ok(None),
    };
    Ok(Some(Open {
        registration_id: registration,
        institution_id,
        kind,
        revision_id,
        chargeable,
    }))
}

/// A challan of an application that was decided, and how.
#[derive(sqlx::FromRow)]
struct Decided {
    #[sqlx(flatten)]
    challan: Challan,
    approved: bool,
}

/// Settles the open challans of applications that were decided: a paid fee
/// of an approved application is earned (an unpaid one withdrawn); one of a
/// refused or withdrawn application is owed back (an unpaid one withdrawn).
async fn settle_decided(conn: &mut PgConnection, registration: Uuid, actor: &Actor) -> Result<(), StoreError> {
    let decided: Vec<Decided> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT c.psid, c.registration_id, c.revision_id, c.institution_id, c.addresses, c.amount_pkr, c.status,
                c.transaction_reference, c.refund_reference, c.issue_time, c.pay_time, c.cancel_time,
                c.refund_time, c.earn_time,
                CASE WHEN c.revision_id IS NULL THEN r.state NOT IN ('REJECTED', 'WITHDRAWN')
                     ELSE v.state = 'ACTIVE' END AS approved
           FROM challans c
           JOIN registrations r ON r.id = c.registration_id
           LEFT JOIN registration_revisions v ON v.id = c.revision_id
          WHERE c.registration_id = $1 AND c.status IN ('UNPAID', 'PAID') AND c.earn_time IS NULL
            AND CASE WHEN c.revision_id IS NULL THEN r.state NOT IN {UNDECIDED}
                     ELSE v.state NOT IN {UNDECIDED} END
          FOR UPDATE OF c"
    )))
    .bind(registration)
    .fetch_all(&mut *conn)
    .await?;
    for Decided { challan, approved } in decided {
        match (challan.status.as_str(), approved) {
            ("PAID", true) => {
                sqlx::query("UPDATE challans SET earn_time = now() WHERE psid = $1")
                    .bind(&challan.psid)
                    .execute(&mut *conn)
                    .await?;
            }
            ("PAID", false) => {
                let why = "the application was refused or withdrawn";
                set_status(conn, &challan, ChallanStatus::RefundDue, Some(why), actor).await?;
            }
            (_, approved) => {
                let why = if approved {
                    "the application was approved without it"
                } else {
                    "the application was refused or withdrawn"
                };
                set_status(conn, &challan, ChallanStatus::Cancelled, Some(why), actor).await?;
            }
        }
    }
    Ok(())
}

/// Issues a challan for what `open` owes, with its event.
async fn issue(
    conn: &mut PgConnection,
    schedule: &FeeSchedule,
    open: &Open,
    owed: Owed,
    actor: &Actor,
) -> Result<(), StoreError> {
    let serial: i64 = sqlx::query_scalar("SELECT nextval('challan_serial_seq')")
        .fetch_one(&mut *conn)
        .await?;
    let psid = Psid::issue(&schedule.psid_prefix, serial as u64);
    sqlx::query(
        "INSERT INTO challans (psid, registration_id, revision_id, institution_id, addresses, amount_pkr)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(psid.as_str())
    .bind(open.registration_id)
    .bind(open.revision_id)
    .bind(open.institution_id)
    .bind(owed.addresses as i64)
    .bind(owed.amount_pkr as i64)
    .execute(&mut *conn)
    .await?;
    let changes = json!([{ "field": "challan", "before": null, "after": {
        "psid": psid.as_str(), "amount_pkr": owed.amount_pkr, "addresses": owed.addresses, "status": "UNPAID" } }]);
    let reason = format!(
        "PKR {} for {} address{} (challan {psid})",
        owed.amount_pkr,
        owed.addresses,
        if owed.addresses == 1 { "" } else { "es" }
    );
    let entry = Event {
        registration: open.registration_id,
        revision: open.revision_id,
        action: "FEE_ASSESSED",
        reason: &reason,
    };
    entry.append(conn, changes, actor).await
}

/// Moves `c` to `to` (a cancellation or a refund owed), with its event.
async fn set_status(
    conn: &mut PgConnection,
    c: &Challan,
    to: ChallanStatus,
    why: Option<&str>,
    actor: &Actor,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE challans SET status = $2,
                cancel_time = CASE WHEN $2 = 'CANCELLED' THEN now() ELSE cancel_time END
          WHERE psid = $1",
    )
    .bind(&c.psid)
    .bind(to.as_str())
    .execute(&mut *conn)
    .await?;
    let action = match to {
        ChallanStatus::Cancelled => "FEE_CANCELLED",
        ChallanStatus::RefundDue => "FEE_REFUND_DUE",
        ChallanStatus::Paid => "FEE_PAID",
        ChallanStatus::Refunded => "FEE_REFUNDED",
        ChallanStatus::Unpaid => "FEE_ASSESSED",
    };
    let reason = format!(
        "PKR {} (challan {}): {}",
        c.amount_pkr,
        c.psid,
        why.unwrap_or(to.as_str())
    );
    let changes = json!([{ "field": "challan.status", "before": c.status, "after": to.as_str() }]);
    let entry = Event {
        registration: c.registration_id,
        revision: c.revision_id,
        action,
        reason: &reason,
    };
    entry.append(conn, changes, actor).await
}

/// A fee event in a registration's history.
pub(super) struct Event<'a> {
    pub(super) registration: Uuid,
    pub(super) revision: Option<Uuid>,
    pub(super) action: &'static str,
    pub(super) reason: &'a str,
}

impl Event<'_> {
    pub(super) async fn append(
        self,
        conn: &mut PgConnection,
        changes: serde_json::Value,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        let entry = audit::Entry {
            revision_id: self.revision,
            reason: Some(self.reason),
            ..audit::Entry::about("registration", self.registration, self.action, actor, changes)
        };
        audit::append(conn, entry).await
    }
}
