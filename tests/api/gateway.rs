//! A gateway's copy of the active set, built from WatchChanges as a
//! gateway would, and the active set as the database holds it, to compare.

use std::collections::BTreeSet;

use sqlx::PgPool;
use vpn_registry::pb;

/// A gateway's copy of the active set, built from WatchChanges.
#[derive(Default)]
pub struct Copy {
    pub session: String,
    pub serial: i64,
    pub entries: BTreeSet<(String, String)>,
    pub in_snapshot: bool,
}

impl Copy {
    pub fn apply(&mut self, msg: pb::WatchChangesResponse) {
        use pb::watch_changes_response::Event;
        match msg.event.unwrap() {
            Event::Reset(r) => {
                self.entries.clear();
                self.session = r.session_id;
                self.in_snapshot = true;
                self.serial = r.serial;
            }
            Event::Snapshot(chunk) => {
                assert!(self.in_snapshot);
                for e in chunk.entries {
                    self.entries.insert((e.reference, e.prefix));
                }
            }
            Event::SnapshotEnd(end) => {
                self.in_snapshot = false;
                assert_eq!(end.serial, self.serial);
            }
            Event::Deltas(batch) => {
                for d in batch.deltas {
                    assert!(
                        d.serial > self.serial,
                        "serials increase: {} after {}",
                        d.serial,
                        self.serial
                    );
                    self.serial = d.serial;
                    let e = d.entry.unwrap();
                    let key = (e.reference, e.prefix);
                    if d.operation == pb::ChangeOperation::Announce as i32 {
                        assert!(self.entries.insert(key), "announced twice");
                    } else {
                        assert!(self.entries.remove(&key), "withdrew an unknown entry");
                    }
                }
            }
        }
    }

    /// Reads the stream until the copy reaches `serial`.
    pub async fn follow(&mut self, stream: &mut tonic::Streaming<pb::WatchChangesResponse>, serial: i64) {
        while self.serial < serial || self.in_snapshot {
            let msg = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
                .await
                .expect("the stream keeps up")
                .unwrap()
                .unwrap();
            self.apply(msg);
        }
    }
}

pub async fn db_active_set(pool: &PgPool) -> BTreeSet<(String, String)> {
    sqlx::query_as(
        "SELECT r.reference, a.prefix::text FROM active_prefixes a JOIN registrations r ON r.id = a.registration_id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

impl Copy {
    /// Applies what arrives until the stream ends with a status.
    pub async fn until_ended(&mut self, stream: &mut tonic::Streaming<pb::WatchChangesResponse>) -> tonic::Status {
        loop {
            match tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
                .await
                .expect("the watcher is told to start over")
            {
                Ok(Some(msg)) => self.apply(msg),
                Ok(None) => panic!("the stream ended without a status"),
                Err(status) => return status,
            }
        }
    }
}
