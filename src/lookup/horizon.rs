//! How far the registry's change feed reaches: the write database's last
//! serial. A caller asking to wait for a serial this replica has not applied
//! yet learns at once when no write has been given that serial, instead of
//! holding a call for the whole wait.

use std::time::Duration;

use sqlx::PgPool;
use tokio::{sync::Mutex, time::Instant};

use crate::db::{StoreError, feed};
use crate::fence::Fence;

/// Reads of the write database at most this often: a flood of such calls
/// costs one small query per interval, whoever sends it.
const PACE: Duration = Duration::from_millis(5);

/// The write database's last serial, read on demand and shared, and
/// whether that database is trusted (`fence`).
pub struct Horizon {
    /// The write database (the primary).
    pool: PgPool,
    last: Mutex<Option<Reading>>,
    fence: Fence,
}

#[derive(Clone, Copy)]
struct Reading {
    started: Instant,
    serial: i64,
}

impl Horizon {
    pub fn new(pool: PgPool, fence: Fence) -> Self {
        Self {
            pool,
            last: Mutex::default(),
            fence,
        }
    }

    /// Why the write database cannot vouch for serials now, if it cannot.
    pub fn fenced(&self) -> Option<String> {
        self.fence.closed()
    }

    /// The write database's last serial, as read by a query that started
    /// after `asked`: a serial a write had answered with before the caller
    /// asked is within it. Callers arriving while a read is under way share
    /// the next one.
    pub async fn after(&self, asked: Instant) -> Result<i64, StoreError> {
        let mut last = self.last.lock().await;
        if let Some(reading) = *last {
            if reading.started >= asked {
                return Ok(reading.serial);
            }
            tokio::time::sleep_until(reading.started + PACE).await;
        }
        let started = Instant::now();
        let serial = feed::last_serial(&self.pool).await?;
        *last = Some(Reading { started, serial });
        Ok(serial)
    }
}
