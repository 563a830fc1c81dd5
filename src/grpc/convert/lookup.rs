//! Lookups and the change stream on the wire.

use std::{fmt::Write as _, net::IpAddr, time::Duration};

use ipnet::IpNet;

use super::{category_from_pb, category_to_pb, from_timestamp, kind_from_pb, kind_to_pb, timestamp};
use crate::domain::{Invalid, Violations, text::echo};
use crate::lookup::{
    MAX_BATCH, Scope, Terms,
    change::{Change, Op, View},
    entry::{Entry, EntryParts},
    stream::WatchEvent,
};
use crate::pb;

/// Parses an address as a lookup client sends it.
pub fn addr(field: &str, raw: &str, v: &mut Violations) -> Option<IpAddr> {
    let parsed = raw.trim().parse().ok();
    if parsed.is_none() {
        v.add(field, format!("{} is not an IPv4 or IPv6 address", echo(raw)));
    }
    parsed
}

/// The terms every check carries: `at`, `min_serial` and the caller's
/// deadline (`grpc-timeout`, so a min_serial wait answers before the client
/// gives up).
pub fn terms(
    at: Option<&prost_types::Timestamp>,
    min_serial: i64,
    metadata: &tonic::metadata::MetadataMap,
    scope: Scope,
    v: &mut Violations,
) -> Terms {
    Terms {
        at: at.and_then(|t| v.check("at", from_timestamp(t))),
        scope,
        min_serial,
        deadline: deadline(metadata),
    }
}

fn deadline(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let raw = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (value, unit) = raw.split_at(raw.len().checked_sub(1)?);
    let value: u64 = value.parse().ok()?;
    let full = match unit {
        "H" => Duration::from_secs(value * 3600),
        "M" => Duration::from_secs(value * 60),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    };
    // Leave the answer time to travel.
    Some(full.mul_f64(0.8))
}

/// A check's answer; `serial` is 0 inside a batch (the batch carries it).
pub fn check_result(found: Option<(IpNet, &Entry)>, serial: i64) -> pb::CheckResult {
    match found {
        Some((prefix, e)) => {
            let (seconds, nanos) = e.valid_until_parts();
            // The longest prefix text ("ffff:...:ffff/128") fits, so no regrowth.
            let mut matched_prefix = String::with_capacity(43);
            let _ = write!(matched_prefix, "{prefix}");
            pb::CheckResult {
                registered: true,
                // Not to_string(): that goes through the formatting machinery.
                reference: String::from(e.reference.as_str()),
                kind: kind_to_pb(e.kind) as i32,
                institution_category: category_to_pb(e.category) as i32,
                matched_prefix,
                valid_until: Some(prost_types::Timestamp { seconds, nanos }),
                serial,
            }
        }
        None => pb::CheckResult {
            serial,
            ..Default::default()
        },
    }
}

/// An entry on the wire; `scoping` adds what a fan-out replica needs to
/// scope its own callers (the ISP and the institution).
fn active_entry(prefix: IpNet, e: &Entry, scoping: bool) -> pb::ActiveEntry {
    pb::ActiveEntry {
        prefix: prefix.to_string(),
        peer_prefixes: e.peers().iter().map(ToString::to_string).collect(),
        reference: String::from(e.reference.as_str()),
        kind: kind_to_pb(e.kind) as i32,
        institution_category: category_to_pb(e.category) as i32,
        valid_from: Some(timestamp(e.valid_from())),
        valid_until: Some(timestamp(e.valid_until())),
        last_changed: Some(timestamp(e.changed())),
        isp_code: if scoping { e.isp.to_string() } else { String::new() },
        institution_id: if scoping {
            e.institution_id.to_string()
        } else {
            String::new()
        },
    }
}

fn delta(c: &Change, scoping: bool) -> pb::Delta {
    pb::Delta {
        serial: c.serial,
        operation: match c.op {
            Op::Announce => pb::ChangeOperation::Announce,
            Op::Withdraw => pb::ChangeOperation::Withdraw,
        } as i32,
        entry: Some(active_entry(c.prefix, &c.entry, scoping)),
    }
}

/// An entry as an upstream replica streams it, for a fan-out replica's
/// index. The upstream is trusted (it was given our lookup token and
/// address), but a malformed entry is refused rather than guessed at.
pub fn entry_from_pb(e: &pb::ActiveEntry) -> Result<(IpNet, Entry), Invalid> {
    let field = |name: &str, what: &str| Invalid::new(format!("{name} {what}"));
    let prefix = e.prefix.parse().map_err(|_| field("prefix", "is not a prefix"))?;
    let valid_from = from_timestamp(e.valid_from.as_ref().ok_or_else(|| field("valid_from", "is missing"))?)?;
    let entry = Entry::new(EntryParts {
        institution_id: e.institution_id.parse().map_err(|_| {
            field(
                "institution_id",
                "is not a UUID (is the upstream token a lookup token?)",
            )
        })?,
        reference: e.reference.as_str().into(),
        kind: kind_from_pb(e.kind).ok_or_else(|| field("kind", "is unknown"))?,
        category: category_from_pb(e.institution_category)
            .ok_or_else(|| field("institution_category", "is unknown"))?,
        peers: e
            .peer_prefixes
            .iter()
            .map(|p| p.parse())
            .collect::<Result<_, _>>()
            .map_err(|_| field("peer_prefixes", "holds a non-prefix"))?,
        valid_from,
        valid_until: from_timestamp(
            e.valid_until
                .as_ref()
                .ok_or_else(|| field("valid_until", "is missing"))?,
        )?,
        isp: e.isp_code.as_str().into(),
        // An upstream of a version before last_changed: its validity start.
        changed: match &e.last_changed {
            Some(t) => from_timestamp(t)?,
            None => valid_from,
        },
    });
    Ok((prefix, entry))
}

/// A change as an upstream replica streams it.
pub fn change_from_pb(d: &pb::Delta) -> Result<Change, Invalid> {
    let op = match pb::ChangeOperation::try_from(d.operation) {
        Ok(pb::ChangeOperation::Announce) => Op::Announce,
        Ok(pb::ChangeOperation::Withdraw) => Op::Withdraw,
        _ => return Err(Invalid::new("operation is unknown")),
    };
    let (prefix, entry) = entry_from_pb(d.entry.as_ref().ok_or_else(|| Invalid::new("entry is missing"))?)?;
    Ok(Change {
        serial: d.serial,
        op,
        prefix,
        entry,
    })
}

/// One message of a change stream, with only the entries the view's scope
/// admits; a chunk or batch none of whose entries it admits is not sent.
pub fn watch_event_to_pb(e: WatchEvent, view: &View) -> Option<pb::WatchChangesResponse> {
    use pb::watch_changes_response::Event;
    let (scope, scoping) = (&view.scope, view.scoping);
    let event = match e {
        WatchEvent::Reset { session, serial } => Event::Reset(pb::Reset {
            session_id: session.to_string(),
            serial,
        }),
        WatchEvent::SnapshotChunk { copy, range } => {
            let entries: Vec<pb::ActiveEntry> = copy.entries[range]
                .iter()
                .filter(|(_, e)| scope.admits(e))
                .map(|(p, e)| active_entry(*p, e, scoping))
                .collect();
            if entries.is_empty() {
                return None;
            }
            Event::Snapshot(pb::SnapshotChunk { entries })
        }
        WatchEvent::SnapshotEnd { serial } => Event::SnapshotEnd(pb::SnapshotEnd { serial }),
        WatchEvent::Deltas { batch, after } => {
            let deltas = || -> Vec<pb::Delta> {
                batch
                    .changes
                    .iter()
                    .filter(|c| c.serial > after && scope.admits(&c.entry))
                    .map(|c| delta(c, scoping))
                    .collect()
            };
            if batch.changes.first().is_some_and(|c| c.serial > after) {
                // The whole batch, as every live watcher of this view gets
                // it: encoded once, shared.
                let body = batch.encoded(view, || pb::DeltaBatch::encode_body(&deltas()));
                if body.is_empty() {
                    return None;
                }
                Event::Deltas(pb::DeltaBatch::pre_encoded(body))
            } else {
                let deltas = deltas();
                if deltas.is_empty() {
                    return None;
                }
                Event::Deltas(pb::DeltaBatch::new(deltas))
            }
        }
    };
    Some(pb::WatchChangesResponse { event: Some(event) })
}

/// A CheckAddresses request: its addresses (at most MAX_BATCH) and terms.
pub fn batch(
    msg: &pb::CheckAddressesRequest,
    metadata: &tonic::metadata::MetadataMap,
    scope: Scope,
) -> Result<(Vec<IpAddr>, Terms), Violations> {
    let mut v = Violations::default();
    if msg.addresses.len() > MAX_BATCH {
        let got = msg.addresses.len();
        v.add(
            "addresses",
            format!("at most {MAX_BATCH} addresses per call (got {got}); split the batch"),
        );
        return Err(v);
    }
    let terms = terms(msg.at.as_ref(), msg.min_serial, metadata, scope, &mut v);
    let addrs = addrs(&msg.addresses, &mut v);
    v.into_result(|| (addrs, terms))
}

/// Parses a batch of addresses, naming each bad one by its position.
fn addrs(raw: &[String], v: &mut Violations) -> Vec<IpAddr> {
    let mut parsed = Vec::with_capacity(raw.len());
    for (i, a) in raw.iter().enumerate() {
        match a.trim().parse() {
            Ok(a) => parsed.push(a),
            // The position names the entry; not echoing it keeps a
            // hundred of these within what clients accept as metadata.
            Err(_) => v.add(format!("addresses[{i}]"), "is not an IPv4 or IPv6 address"),
        }
    }
    parsed
}
