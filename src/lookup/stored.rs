//! Where the lookup tier meets storage: the change feed's rows
//! (`db::feed`) as entries and changes. Nothing else in `lookup/` knows the
//! row types.

use ipnet::IpNet;

use super::change::{Change, Op};
use super::entry::{Entry, EntryParts};
use crate::db::feed::{self, ActiveRow, FeedRow};

/// An active row as the index holds it.
pub fn entry(r: ActiveRow) -> (IpNet, Entry) {
    let entry = Entry::new(EntryParts {
        institution_id: r.institution_id,
        reference: r.reference.into(),
        kind: r.kind,
        category: r.category,
        peers: r.peers,
        valid_from: r.valid_from,
        valid_until: r.valid_until,
        isp: r.isp.into(),
        changed: r.changed,
    });
    (r.prefix, entry)
}

/// A feed row as watchers receive it.
pub fn change(r: FeedRow) -> Change {
    let (prefix, entry) = entry(r.entry);
    Change {
        serial: r.serial,
        op: match r.op {
            feed::Op::Announce => Op::Announce,
            feed::Op::Withdraw => Op::Withdraw,
        },
        prefix,
        entry,
    }
}
