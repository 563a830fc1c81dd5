//! EventService: the event feed, listed from a cursor or watched live.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::convert::{reason_code_name_to_pb, state_name_to_pb, timestamp};
use crate::auth::principal;
use crate::db::events::{Audience, Event};
use crate::domain::{Violations, refusal::Refusal, request::page_size};
use crate::pb::{self, event_service_server::EventService};
use crate::registry::{
    Registry,
    events::{Cursor, feed_audience},
};

/// How often a watch looks for new events when it has caught up.
const WATCH_POLL: Duration = Duration::from_millis(250);
/// Events read per query while a watch catches up.
const WATCH_BATCH: i64 = 200;

pub struct EventApi {
    registry: Registry,
}

impl EventApi {
    pub fn new(registry: Registry) -> Self {
        Self { registry }
    }
}

fn audience<T>(req: &Request<T>) -> Result<Audience, Status> {
    feed_audience(&principal(req)?.role)
        .ok_or_else(|| Refusal::PermissionDenied("this role reads no events".into()).into())
}

fn cursor(raw: &str) -> Result<Cursor, Status> {
    Cursor::parse(raw).ok_or_else(|| Violations::one("after", "is not a cursor from an earlier event").into())
}

fn event_to_pb(e: Event) -> pb::InstitutionEvent {
    let cursor = Cursor::of(&e).render();
    pb::InstitutionEvent {
        id: e.id.to_string(),
        r#type: e.event_type,
        institution_id: e.institution_id.to_string(),
        registration_id: e.registration_id.to_string(),
        reference: e.reference,
        state: state_name_to_pb(Some(&e.state)),
        reason_code: reason_code_name_to_pb(e.reason_code.as_deref()),
        days_left: e.days_left.unwrap_or_default(),
        occur_time: Some(timestamp(e.occur_time)),
        cursor,
    }
}

fn notification_to_pb(n: crate::db::outbox::Listed) -> pb::Notification {
    let pending = n.status == "PENDING";
    pb::Notification {
        id: n.id.to_string(),
        channel: n.channel,
        recipient: n.recipient,
        event_id: n.event_id.to_string(),
        event_type: n.event_type,
        registration_id: n.registration_id.map(|r| r.to_string()).unwrap_or_default(),
        reference: n.reference,
        status: n.status,
        attempts: n.attempts,
        last_code: n.last_code.unwrap_or_default(),
        last_error: n.last_error.unwrap_or_default(),
        next_attempt_time: pending.then(|| timestamp(n.next_attempt_time)),
        create_time: Some(timestamp(n.create_time)),
    }
}

#[tonic::async_trait]
impl EventService for EventApi {
    async fn list_institution_events(
        &self,
        req: Request<pb::ListInstitutionEventsRequest>,
    ) -> Result<Response<pb::ListInstitutionEventsResponse>, Status> {
        let audience = audience(&req)?;
        let msg = req.get_ref();
        let limit = page_size(msg.page_size).map_err(|e| Violations::one("page_size", e.0))?;
        let after = cursor(&msg.after)?;
        let events = self.registry.events(&audience, after, limit).await?;
        let next = events.last().map_or(after, Cursor::of);
        Ok(Response::new(pb::ListInstitutionEventsResponse {
            events: events.into_iter().map(event_to_pb).collect(),
            next_cursor: next.render(),
        }))
    }

    async fn list_notifications(
        &self,
        req: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        principal(&req)?;
        let msg = req.get_ref();
        let mut v = Violations::default();
        let limit = v.check("page_size", page_size(msg.page_size));
        let before = v.check("page_token", super::convert::parse_seq_cursor(&msg.page_token));
        let status = match msg.status.as_str() {
            "" => None,
            s @ ("PENDING" | "DELIVERED" | "KEPT" | "DEAD") => Some(s),
            _ => {
                v.add("status", "must be PENDING, DELIVERED, KEPT or DEAD");
                None
            }
        };
        let (Some(limit), Some(before), true) = (limit, before, v.is_empty()) else {
            return Err(v.into());
        };
        let page = self.registry.notifications(status, before, limit).await?;
        let next_page_token = page
            .resume_after()
            .map(|n| super::convert::render_seq_cursor(n.id))
            .unwrap_or_default();
        Ok(Response::new(pb::ListNotificationsResponse {
            notifications: page.items.into_iter().map(notification_to_pb).collect(),
            next_page_token,
        }))
    }

    type WatchInstitutionEventsStream = ReceiverStream<Result<pb::InstitutionEvent, Status>>;

    async fn watch_institution_events(
        &self,
        req: Request<pb::WatchInstitutionEventsRequest>,
    ) -> Result<Response<Self::WatchInstitutionEventsStream>, Status> {
        let audience = audience(&req)?;
        let mut after = cursor(&req.get_ref().after)?;
        let (tx, rx) = mpsc::channel(WATCH_BATCH as usize);
        let registry = self.registry.clone();
        tokio::spawn(async move {
            loop {
                let events = match registry.events(&audience, after, WATCH_BATCH).await {
                    Ok(events) => events,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                let caught_up = (events.len() as i64) < WATCH_BATCH;
                for e in events {
                    after = Cursor::of(&e);
                    if tx.send(Ok(event_to_pb(e))).await.is_err() {
                        return;
                    }
                }
                if caught_up {
                    tokio::select! {
                        () = tokio::time::sleep(WATCH_POLL) => {}
                        () = tx.closed() => return,
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
