//! The event feed: whose events a principal reads, from a cursor.

use crate::db::events::{self, Audience, Event};
use crate::domain::principal::Role;
use crate::error::Result;

use super::{Page, Registry};

/// Whose events a principal reads: its institution's, its ISP's
/// attestation requests, or (staff) all; lookup services none.
pub fn feed_audience(role: &Role) -> Option<Audience> {
    match role {
        // Reviewers read every event, though they own no webhooks.
        Role::Reviewer => Some(Audience::All),
        _ => super::webhooks::audience(role),
    }
}

/// A position in the feed: after the event of this transaction and sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    pub xid: i64,
    pub seq: i64,
}

impl Cursor {
    pub fn of(e: &Event) -> Self {
        Self { xid: e.xid, seq: e.seq }
    }

    pub fn render(self) -> String {
        format!("e{}.{}", self.xid, self.seq)
    }

    /// Empty: the start of the feed.
    pub fn parse(s: &str) -> Option<Self> {
        if s.is_empty() {
            return Some(Self::default());
        }
        let (xid, seq) = s.strip_prefix('e')?.split_once('.')?;
        Some(Self {
            xid: xid.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl Registry {
    /// The outbox for administrators (the permission table admits no one else).
    pub async fn notifications(
        &self,
        status: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Page<crate::db::outbox::Listed>> {
        let fetched = crate::db::outbox::list(&self.pool, status, before.unwrap_or(i64::MAX), limit + 1).await?;
        Ok(Page::of(fetched, limit))
    }

    pub async fn events(&self, audience: &Audience, after: Cursor, limit: i64) -> Result<Vec<Event>> {
        Ok(events::list(&self.pool, audience, (after.xid, after.seq), limit).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back_what_they_render() {
        let c = Cursor { xid: 8812, seq: 40 };
        assert_eq!(Cursor::parse(&c.render()), Some(c));
        assert_eq!(Cursor::parse(""), Some(Cursor::default()));
        for bad in ["x", "e1", "e1.x", "after:abc"] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
    }
}
