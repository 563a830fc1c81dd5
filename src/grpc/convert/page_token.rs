//! Page tokens: where a keyset-paged list resumes, rendered for the wire
//! and parsed back (a token not from us is INVALID_ARGUMENT). Opaque to
//! clients; their form may change.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::registrations::QueueCursor;
use crate::domain::Invalid;
use crate::registry::Page;

/// Where a keyset-paged list resumes: after this id (ids are time-ordered UUIDv7).
pub fn parse_id_cursor(token: &str) -> Result<Option<Uuid>, Invalid> {
    if token.is_empty() {
        return Ok(None);
    }
    token
        .strip_prefix("after:")
        .and_then(|s| Uuid::try_parse(s).ok())
        .map(Some)
        .ok_or_else(|| Invalid::new("is not a page token from a previous response"))
}

pub fn render_id_cursor(last: Uuid) -> String {
    format!("after:{}", last.simple())
}

/// Where a history list resumes: after this sequence number.
pub fn parse_seq_cursor(token: &str) -> Result<Option<i64>, Invalid> {
    if token.is_empty() {
        return Ok(None);
    }
    token
        .strip_prefix("seq:")
        .and_then(|s| s.parse::<i64>().ok())
        .map(Some)
        .ok_or_else(|| Invalid::new("is not a page token from a previous response"))
}

pub fn render_seq_cursor(last: i64) -> String {
    format!("seq:{last}")
}

/// The next page token of a page keyed by UUID (empty on the last page).
pub fn id_page_token<T>(page: &Page<T>, id: impl Fn(&T) -> uuid::Uuid) -> String {
    page.resume_after()
        .map(|last| render_id_cursor(id(last)))
        .unwrap_or_default()
}

/// Queue page tokens: `q:<unix nanos>:<uuid>` of the last item.
pub fn parse_queue_cursor(token: &str) -> Result<Option<QueueCursor>, Invalid> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || Invalid::new("is not a page token from a previous response");
    let mut parts = token.strip_prefix("q:").ok_or_else(bad)?.splitn(2, ':');
    let nanos: i128 = parts.next().and_then(|n| n.parse().ok()).ok_or_else(bad)?;
    let id = parts
        .next()
        .and_then(|i| uuid::Uuid::try_parse(i).ok())
        .ok_or_else(bad)?;
    let at = OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| bad())?;
    Ok(Some((at, id)))
}

/// The token of the queue page after `last` (empty on the last page).
pub fn queue_page_token<R: QueueItem>(last: Option<&R>) -> String {
    last.map(|item| {
        let (at, id) = item.cursor();
        format!("q:{}:{}", at.unix_timestamp_nanos(), id.simple())
    })
    .unwrap_or_default()
}

/// Something a queue page token can point after.
pub trait QueueItem {
    fn cursor(&self) -> QueueCursor;
}

impl QueueItem for (crate::domain::registration::Registration, OffsetDateTime) {
    fn cursor(&self) -> QueueCursor {
        (self.1, self.0.id)
    }
}

impl QueueItem for QueueCursor {
    fn cursor(&self) -> QueueCursor {
        *self
    }
}
