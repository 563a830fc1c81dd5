//! Taking turns at CPU-heavy work without a queue, for snapshot encoding:
//! a stream whose client stopped reading is never polled again, so whatever
//! it holds must run out by itself.

use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::sync::lock;

/// One piece of work at a time across tasks, as a lease rather than a lock:
/// the holder takes a scheduler turn before working (pacing snapshots, so
/// lookups get the workers in between), and waiters are woken together when
/// it is done. A stream whose client stopped reading is not polled again:
/// its lease runs out by itself (a semaphore permit would be kept, or handed
/// to it while queued, for ever).
#[derive(Default)]
pub struct OneAtATime {
    /// The current lease: its number and when it runs out.
    lease: std::sync::Mutex<Option<(u64, Instant)>>,
    leases: std::sync::atomic::AtomicU64,
    freed: Notify,
}

/// Longer than a chunk's encoding and a scheduler turn under load.
const LEASE: Duration = Duration::from_millis(10);

impl OneAtATime {
    pub async fn take<T>(&self, work: impl FnOnce() -> T) -> T {
        let mine = loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before looking, so a release in between wakes us.
            freed.as_mut().enable();
            let taken = {
                let mut lease = lock(&self.lease);
                let now = Instant::now();
                match *lease {
                    Some((_, ends)) if ends > now => Err(ends),
                    _ => {
                        let id = self.leases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        *lease = Some((id, now + LEASE));
                        Ok(id)
                    }
                }
            };
            match taken {
                Ok(id) => break id,
                Err(ends) => {
                    tokio::select! {
                        () = &mut freed => {}
                        () = tokio::time::sleep_until(ends.into()) => {}
                    }
                }
            }
        };
        tokio::task::yield_now().await;
        let out = work();
        {
            let mut lease = lock(&self.lease);
            if lease.is_some_and(|(id, _)| id == mine) {
                *lease = None;
            }
        }
        self.freed.notify_waiters();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_turn_taken_by_a_task_never_polled_again_runs_out() {
        let turn = OneAtATime::default();
        // Takes the lease, then waits for its scheduler turn and is never
        // polled again (as a stream whose client stopped reading).
        let mut stalled = Box::pin(turn.take(|| 1));
        std::future::poll_fn(|cx| {
            assert!(stalled.as_mut().poll(cx).is_pending());
            std::task::Poll::Ready(())
        })
        .await;
        let next = tokio::time::timeout(Duration::from_secs(1), turn.take(|| 2)).await;
        assert_eq!(next.ok(), Some(2), "the lease ran out");
        assert_eq!(turn.take(|| 3).await, 3);
    }
}
