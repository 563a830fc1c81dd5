//! EventService: the event feed, listed from a cursor or watched live.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::convert::timestamp;
use crate::auth::principal;
use crate::db::events::{Audience, Event};
use crate::domain::{Violations, refusal::Refusal, request::page_size, state::State};
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
        state: State::from_db(&e.state).map_or(pb::RegistrationState::Unspecified, super::convert::state_to_pb) as i32,
        reason_code: e
            .reason_code
            .and_then(|c| pb::ReasonCode::from_str_name(&format!("REASON_CODE_{c}")))
            .unwrap_or(pb::ReasonCode::Unspecified) as i32,
        days_left: e.days_left.unwrap_or_default(),
        occur_time: Some(timestamp(e.occur_time)),
        cursor,
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
