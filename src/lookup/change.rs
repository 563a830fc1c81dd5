//! Changes to the active set as the lookup tier passes them around: one
//! change (announce or withdraw an entry at a serial), the batches the
//! replica applies and hands to every watcher, and what watchers are told.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ipnet::IpNet;
use uuid::Uuid;

use super::entry::{Entry, Scope};
use crate::sync::lock;

/// Whether a change adds or removes its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Announce,
    Withdraw,
}

/// One applied change, as watchers receive it.
#[derive(Debug, Clone)]
pub struct Change {
    pub serial: i64,
    pub op: Op,
    pub prefix: IpNet,
    pub entry: Entry,
}

/// What one watcher is shown: the entries its scope admits, and with
/// `scoping` each entry's ISP and institution too (for fan-out replicas).
/// Watchers with the same view are sent the same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub scope: Scope,
    pub scoping: bool,
}

/// Changes applied together, in serial order, as every watcher receives
/// them.
pub struct Batch {
    pub changes: Vec<Change>,
    /// The batch as the transport encodes it, per view that asked: encoded
    /// by the first watcher of a view to send it, shared by the rest.
    encoded: Mutex<Vec<(View, Bytes)>>,
}

impl Batch {
    pub fn new(changes: Vec<Change>) -> Self {
        Self {
            changes,
            encoded: Mutex::default(),
        }
    }

    /// The last serial of the batch.
    pub fn last_serial(&self) -> Option<i64> {
        self.changes.last().map(|c| c.serial)
    }

    /// The encoding of this batch for `view`, made by `encode` the first
    /// time (watchers of the same view asking meanwhile wait for it rather
    /// than encode it again).
    pub fn encoded(&self, view: &View, encode: impl FnOnce() -> Bytes) -> Bytes {
        let mut cache = lock(&self.encoded);
        if let Some((_, bytes)) = cache.iter().find(|(v, _)| v == view) {
            return bytes.clone();
        }
        let bytes = encode();
        cache.push((view.clone(), bytes.clone()));
        bytes
    }
}

/// What watchers are told after each catch-up.
#[derive(Clone)]
pub enum Applied {
    /// These changes, in serial order.
    Changes(Arc<Batch>),
    /// The source started a new session and the replica reloaded: serials of
    /// the old session mean nothing any more.
    NewSession(Uuid),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_encoded_once_per_view() {
        let batch = Batch::new(Vec::new());
        let mut encodings = 0;
        let mut encode = |scope: Scope, scoping: bool, bytes: &'static [u8]| {
            batch.encoded(&View { scope, scoping }, || {
                encodings += 1;
                Bytes::from_static(bytes)
            })
        };
        assert_eq!(encode(Scope::All, false, b"all"), &b"all"[..]);
        assert_eq!(
            encode(Scope::All, false, b"again"),
            &b"all"[..],
            "shared, not encoded again"
        );
        assert_eq!(
            encode(Scope::All, true, b"scoping"),
            &b"scoping"[..],
            "another view has its own"
        );
        let ptcl = Scope::Isp("ptcl".into());
        assert_eq!(encode(ptcl.clone(), false, b"ptcl"), &b"ptcl"[..]);
        assert_eq!(encode(ptcl, false, b"again"), &b"ptcl"[..]);
        assert_eq!(encodings, 3);
    }
}
