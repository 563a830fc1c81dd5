//! The lookup facade that handlers call: who may look up what, the
//! `min_serial` wait, and the route of each question (now or later: the
//! in-memory index; the past: history in PostgreSQL).

use std::{net::IpAddr, sync::Arc, time::Duration};

use ipnet::IpNet;
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

use super::change::View;
use super::entry::{Entry, Filter, Match, Query, Scope};
use super::error::LookupError;
use super::history::{self, is_past};
use super::horizon::Horizon;
use super::replica::{Replica, ReplicaSlot};
use super::stream::{self, Backfill, Watch};
use super::watchers::{Dropped, Full, Watchers};
use crate::domain::{
    principal::{Principal, Role},
    refusal::Refusal,
};

/// Most addresses one CheckAddresses call may carry.
pub const MAX_BATCH: usize = 100_000;
/// How long a call waits for its `min_serial` at most.
const MIN_SERIAL_WAIT: Duration = Duration::from_secs(5);

/// What every check carries besides its addresses.
#[derive(Debug, Clone)]
pub struct Terms {
    /// The instant asked about; `None` is now.
    pub at: Option<OffsetDateTime>,
    /// Whose registrations the caller may see.
    pub scope: Scope,
    /// Wait until this replica has applied this serial (read your writes).
    pub min_serial: i64,
    /// The caller's remaining time: a wait ends before it does.
    pub deadline: Option<Duration>,
}

/// Who may look up what: the regulator's lookup services and reviewers
/// everything, an ISP the registrations that name it, an institution its
/// own addresses, administrators and payments systems nothing.
pub fn scope(p: &Principal) -> Result<Scope, Refusal> {
    match &p.role {
        Role::Lookup | Role::Reviewer => Ok(Scope::All),
        Role::Isp(code) => Ok(Scope::Isp(code.as_str().into())),
        Role::Institution(id) => Ok(Scope::Institution(*id)),
        Role::Admin | Role::Payments => Err(Refusal::PermissionDenied(format!(
            "role {} may not use lookups",
            p.role.as_str()
        ))),
    }
}

/// The lookups of this process.
#[derive(Clone)]
pub struct Lookups {
    /// Where history and resuming watchers read (PostgreSQL, or for a
    /// fan-out replica its journal: its gRPC handlers ask the upstream
    /// about the past).
    backfill: Backfill,
    replica: ReplicaSlot,
    /// How far the write database's feed reaches.
    horizon: Arc<Horizon>,
    watchers: Watchers,
    stopping: watch::Receiver<bool>,
}

impl Lookups {
    /// Change streams admitted by `watchers`.
    pub fn new(
        backfill: Backfill,
        replica: ReplicaSlot,
        horizon: Horizon,
        watchers: Watchers,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        Self {
            backfill,
            replica,
            horizon: Arc::new(horizon),
            watchers,
            stopping,
        }
    }

    /// Change streams open now.
    pub fn watchers(&self) -> usize {
        self.watchers.open()
    }

    /// Change streams ended by the server or refused so far, by reason.
    pub fn dropped_watchers(&self) -> Vec<(Dropped, u64)> {
        self.watchers.dropped().collect()
    }

    /// The replica, once loaded.
    pub fn loaded(&self) -> Option<Arc<Replica>> {
        self.replica.get().cloned()
    }

    fn history(&self) -> Result<&PgPool, LookupError> {
        match &self.backfill {
            Backfill::Feed(pool) => Ok(pool),
            Backfill::Journal => Err(LookupError::NoHistory),
        }
    }

    fn replica(&self) -> Result<Arc<Replica>, LookupError> {
        self.replica.get().cloned().ok_or(LookupError::Loading)
    }

    /// The replica once it has applied `min_serial` (if asked), waiting at
    /// most MIN_SERIAL_WAIT or the caller's deadline; refused at once when
    /// the write database has handed out no such serial (when it cannot be
    /// asked, the wait decides).
    async fn ready(&self, terms: &Terms) -> Result<Arc<Replica>, LookupError> {
        let replica = self.replica()?;
        if terms.min_serial > 0
            && let Some(why) = self.horizon.fenced()
        {
            return Err(LookupError::Fenced(why));
        }
        if terms.min_serial > replica.serial() {
            let asked = tokio::time::Instant::now();
            match self.horizon.after(asked).await {
                Ok(last) if terms.min_serial > last => {
                    return Err(LookupError::BeyondFeed {
                        wanted: terms.min_serial,
                        last,
                    });
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "the feed's last serial could not be read; waiting instead"),
            }
        }
        let wait = terms.deadline.map_or(MIN_SERIAL_WAIT, |d| d.min(MIN_SERIAL_WAIT));
        if terms.min_serial > 0 && !replica.wait_for(terms.min_serial, wait).await {
            return Err(LookupError::Behind {
                applied: replica.serial(),
                wanted: terms.min_serial,
            });
        }
        Ok(replica)
    }

    /// The most specific entry for `addr` (and `peer`, for a flow) on the
    /// terms given, with the serial it was answered at.
    pub async fn check(
        &self,
        addr: IpAddr,
        peer: Option<IpAddr>,
        terms: &Terms,
    ) -> Result<(Option<Match>, i64), LookupError> {
        let replica = self.ready(terms).await?;
        match terms.at.filter(|at| is_past(*at)) {
            Some(at) => {
                let serial = replica.serial();
                let filter = Filter::new(at, peer, terms.scope.clone());
                let mut found = history::check_batch(self.history()?, &[addr], &filter, at).await?;
                Ok((found.pop().flatten(), serial))
            }
            None => Ok(replica.check(&Query {
                addr,
                peer,
                at: terms.at.unwrap_or_else(OffsetDateTime::now_utc),
                scope: terms.scope.clone(),
            })),
        }
    }

    /// The registration in force now that covers all of `net` (RDAP), as
    /// `scope` may see it.
    pub fn covering(&self, net: IpNet, scope: Scope) -> Result<(Option<Match>, i64), LookupError> {
        let filter = Filter::new(OffsetDateTime::now_utc(), None, scope);
        Ok(self.replica()?.check_covering(net, &filter))
    }

    /// Answers every address, calling `out` with its position and answer
    /// (in no particular order). Returns the serial the batch was answered at.
    pub async fn check_batch(
        &self,
        addrs: &[IpAddr],
        terms: &Terms,
        mut out: impl FnMut(usize, Option<(IpNet, &Entry)>),
    ) -> Result<i64, LookupError> {
        let replica = self.ready(terms).await?;
        let at = terms.at.unwrap_or_else(OffsetDateTime::now_utc);
        let filter = Filter::new(at, None, terms.scope.clone());
        if !terms.at.is_some_and(is_past) {
            return Ok(replica.check_batch(addrs, &filter, out));
        }
        let serial = replica.serial();
        let found = history::check_batch(self.history()?, addrs, &filter, at).await?;
        for (i, m) in found.iter().enumerate() {
            out(i, m.as_ref().map(|m| (m.prefix, &m.entry)));
        }
        Ok(serial)
    }

    /// Starts a change stream for `p`: resumed from `since` in `session`
    /// when this replica can, else from a snapshot; with `scoping`, entries
    /// carry their ISP and institution (the regulator's roles only: a
    /// fan-out replica asks for them).
    pub fn watch(&self, p: &Principal, session: Option<Uuid>, since: i64, scoping: bool) -> Result<Watch, LookupError> {
        let scope = scope(p)?;
        match scope {
            Scope::Institution(_) => {
                return Err(Refusal::PermissionDenied("institutions may not watch the active set".into()).into());
            }
            Scope::Isp(_) if scoping => {
                return Err(Refusal::PermissionDenied(
                    "include_scoping is for the lookup and reviewer roles (fan-out replicas)".into(),
                )
                .into());
            }
            _ => {}
        }
        let replica = self.replica()?;
        let slot = self.watchers.admit(p.id, p.role.kind()).map_err(|full| match full {
            Full::Replica(open) => LookupError::TooManyWatchers(open),
            Full::Principal(cap) => LookupError::TooManyWatchersOfPrincipal(cap),
        })?;
        Ok(stream::start(
            self.backfill.clone(),
            replica,
            session.map(|s| (s, since)),
            View { scope, scoping },
            slot,
            self.stopping.clone(),
        ))
    }
}
