//! Registration rows (with the pending revision joined) as domain values.

use ipnet::IpNet;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::{StoreError, decode, reparse};
use crate::domain::{
    prefix::PublicPrefix,
    registration::{Kind, Protocol, Registration, Revision, Spec},
    state::State,
};

#[derive(sqlx::FromRow)]
pub(crate) struct Row {
    id: Uuid,
    reference: String,
    institution_id: Uuid,
    #[sqlx(flatten)]
    spec: SpecColumns,
    state: String,
    state_time: OffsetDateTime,
    version: i64,
    create_time: OffsetDateTime,
    update_time: OffsetDateTime,
    v_id: Option<Uuid>,
    v_is_renewal: Option<bool>,
    v_protocol: Option<String>,
    v_source_prefixes: Option<Vec<IpNet>>,
    v_msisdn: Option<String>,
    v_peer_prefixes: Option<Vec<IpNet>>,
    v_isp: Option<String>,
    v_isp_subscriber_id: Option<String>,
    v_purpose: Option<String>,
    v_valid_from: Option<OffsetDateTime>,
    v_valid_until: Option<OffsetDateTime>,
    v_large_prefix_justification: Option<String>,
    v_state: Option<String>,
    v_state_time: Option<OffsetDateTime>,
    v_create_time: Option<OffsetDateTime>,
}

fn prefixes(nets: Vec<IpNet>) -> Result<Vec<PublicPrefix>, StoreError> {
    nets.into_iter()
        .map(|n| PublicPrefix::try_from(n).map_err(|e| StoreError::Corrupt(e.to_string())))
        .collect()
}

/// Stored spec columns, shared by registrations and revisions (a revision
/// has its registration's kind).
#[derive(sqlx::FromRow)]
struct SpecColumns {
    kind: String,
    protocol: Option<String>,
    source_prefixes: Vec<IpNet>,
    msisdn: Option<String>,
    peer_prefixes: Vec<IpNet>,
    isp: String,
    isp_subscriber_id: String,
    purpose: String,
    valid_from: OffsetDateTime,
    valid_until: OffsetDateTime,
    large_prefix_justification: Option<String>,
}

impl TryFrom<SpecColumns> for Spec {
    type Error = StoreError;
    fn try_from(c: SpecColumns) -> Result<Self, StoreError> {
        Ok(Spec {
            kind: decode(&c.kind, Kind::from_db, "kind")?,
            protocol: c
                .protocol
                .map(|p| decode(&p, Protocol::from_db, "protocol"))
                .transpose()?,
            source_prefixes: prefixes(c.source_prefixes)?,
            msisdn: c.msisdn.map(|m| reparse(&m, "msisdn")).transpose()?,
            peer_prefixes: prefixes(c.peer_prefixes)?,
            isp: reparse(&c.isp, "isp")?,
            isp_subscriber_id: reparse(&c.isp_subscriber_id, "isp_subscriber_id")?,
            purpose: reparse(&c.purpose, "purpose")?,
            valid_from: c.valid_from,
            valid_until: c.valid_until,
            large_prefix_justification: c
                .large_prefix_justification
                .map(|j| reparse(&j, "large_prefix_justification"))
                .transpose()?,
        })
    }
}

impl TryFrom<Row> for Registration {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Self, StoreError> {
        let pending_revision = match (
            r.v_id,
            r.v_source_prefixes,
            r.v_peer_prefixes,
            r.v_isp,
            r.v_isp_subscriber_id,
        ) {
            (Some(id), Some(source_prefixes), Some(peer_prefixes), Some(isp), Some(isp_subscriber_id)) => {
                let missing = || StoreError::Corrupt(format!("revision {id} incomplete"));
                Some(Revision {
                    id,
                    is_renewal: r.v_is_renewal.ok_or_else(missing)?,
                    spec: SpecColumns {
                        kind: r.spec.kind.clone(),
                        protocol: r.v_protocol,
                        source_prefixes,
                        msisdn: r.v_msisdn,
                        peer_prefixes,
                        isp,
                        isp_subscriber_id,
                        purpose: r.v_purpose.ok_or_else(missing)?,
                        valid_from: r.v_valid_from.ok_or_else(missing)?,
                        valid_until: r.v_valid_until.ok_or_else(missing)?,
                        large_prefix_justification: r.v_large_prefix_justification,
                    }
                    .try_into()?,
                    state: decode(&r.v_state.ok_or_else(missing)?, State::from_db, "state")?,
                    state_time: r.v_state_time.ok_or_else(missing)?,
                    create_time: r.v_create_time.ok_or_else(missing)?,
                })
            }
            _ => None,
        };
        Ok(Registration {
            id: r.id,
            reference: r.reference,
            institution_id: r.institution_id,
            spec: r.spec.try_into()?,
            state: decode(&r.state, State::from_db, "state")?,
            state_time: r.state_time,
            pending_revision,
            version: r.version,
            create_time: r.create_time,
            update_time: r.update_time,
        })
    }
}
