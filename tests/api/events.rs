//! The event feed: scoped to its reader, paged by cursor, live when
//! watched, and never skipping an event whose transaction committed after
//! a later one's.

use std::time::Duration;

use sqlx::PgPool;
use tokio_stream::StreamExt as _;
use uuid::Uuid;
use vpn_registry::pb::{self, InstitutionCategory as C};

use crate::helpers::*;

async fn list(app: &TestApp, token: &str, after: &str) -> pb::ListInstitutionEventsResponse {
    app.event_feed(Some(token))
        .list_institution_events(pb::ListInstitutionEventsRequest {
            after: after.into(),
            page_size: 2,
        })
        .await
        .unwrap()
        .into_inner()
}

/// At least `n` events after the start, page by page, once the feed has
/// them (a writer in another database on this server can hold it back a
/// moment: the feed waits for every older transaction).
async fn at_least(app: &TestApp, token: &str, n: usize) -> Vec<pb::InstitutionEvent> {
    eventually("the events", Duration::from_secs(30), || async {
        let (events, _) = all(app, token, "").await;
        (events.len() >= n).then_some(events)
    })
    .await
}

/// Every event after `after`, page by page; and the cursor to poll with.
async fn all(app: &TestApp, token: &str, after: &str) -> (Vec<pb::InstitutionEvent>, String) {
    let (mut events, mut cursor) = (Vec::new(), after.to_owned());
    loop {
        let page = list(app, token, &cursor).await;
        let done = page.events.is_empty();
        events.extend(page.events);
        cursor = page.next_cursor;
        if done {
            return (events, cursor);
        }
    }
}

#[sqlx::test]
async fn each_reader_sees_its_own_events_in_order(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, bank) = app.enrol(C::Bank).await;
    let (_, company) = app.enrol(C::Company).await;
    let mine = app.active(&bank, &["8.8.8.0/24"]).await;
    let theirs = app.submit(&company, &["9.9.9.0/24"]).await;

    let events = at_least(&app, &bank, 3).await;
    let types: Vec<&str> = events.iter().map(|e| e.r#type.as_str()).collect();
    assert_eq!(
        types,
        [
            "registration.submitted",
            "registration.attested",
            "registration.approved"
        ]
    );
    assert!(
        events
            .iter()
            .all(|e| e.registration_id == mine.id && e.reference == mine.reference)
    );
    assert_eq!(events[2].state, pb::RegistrationState::Active as i32);
    assert_eq!(events[2].reason_code, pb::ReasonCode::Compliant as i32);

    let events = at_least(&app, &company, 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].registration_id, theirs.id);
    // The ISP desk: what asks it to attest, nothing else.
    let isp = app.isp_token().await.to_owned();
    let events = at_least(&app, &isp, 2).await;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.r#type == "registration.submitted"));
    // Staff: everything.
    let reviewer = app.reviewer_token().await.to_owned();
    assert_eq!(at_least(&app, &reviewer, 4).await.len(), 4);

    let err = app
        .event_feed(Some(&bank))
        .list_institution_events(pb::ListInstitutionEventsRequest {
            after: "after:abc".into(),
            page_size: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

#[sqlx::test]
async fn a_cursor_never_skips_an_event_committed_out_of_order(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let (institution, bank) = app.enrol(C::Bank).await;
    let r = app.submit(&bank, &["8.8.8.0/24"]).await;
    let reviewer = app.reviewer_token().await.to_owned();
    // Caught up with the submission (a writer in another database on this
    // server can hold the feed back a moment: it waits for every older
    // transaction).
    let cursor = eventually("the submission", Duration::from_secs(30), || async {
        let (events, cursor) = all(&app, &reviewer, "").await;
        (!events.is_empty()).then_some(cursor)
    })
    .await;

    // Two writers: the first takes its identity and transaction id first
    // and commits last.
    let insert = "INSERT INTO events (id, type, institution_id, registration_id, reference, state)
                  VALUES ($1, 'registration.attested', $2, $3, $4, 'UNDER_REVIEW')";
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
    let mut slow = pool.begin().await.unwrap();
    sqlx::query(insert)
        .bind(first)
        .bind(Uuid::parse_str(&institution.id).unwrap())
        .bind(Uuid::parse_str(&r.id).unwrap())
        .bind(&r.reference)
        .execute(&mut *slow)
        .await
        .unwrap();
    sqlx::query(insert)
        .bind(second)
        .bind(Uuid::parse_str(&institution.id).unwrap())
        .bind(Uuid::parse_str(&r.id).unwrap())
        .bind(&r.reference)
        .execute(&pool)
        .await
        .unwrap();
    // The second is committed, but reading it now would let a cursor pass
    // the first: the feed holds it back.
    let (meanwhile, held) = all(&app, &reviewer, &cursor).await;
    assert!(meanwhile.is_empty(), "{meanwhile:?}");
    assert_eq!(held, cursor);
    slow.commit().await.unwrap();
    // (Another database's writer on this server may hold the feed back a
    // moment longer: it waits for every transaction older than its own.)
    let events = eventually("both events", Duration::from_secs(30), || async {
        let (events, _) = all(&app, &reviewer, &held).await;
        (events.len() >= 2).then_some(events)
    })
    .await;
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids, [first.to_string(), second.to_string()]);
}

#[sqlx::test]
async fn a_watch_replays_from_its_cursor_then_follows_live(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, bank) = app.enrol(C::Bank).await;
    let r = app.submit(&bank, &["8.8.8.0/24"]).await;
    let mut stream = app
        .event_feed(Some(&bank))
        .watch_institution_events(pb::WatchInstitutionEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.r#type, "registration.submitted");
    app.approve(&r).await.unwrap();
    let mut live = Vec::new();
    while live.len() < 2 {
        let e = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("a live event")
            .unwrap()
            .unwrap();
        live.push(e.r#type);
    }
    assert_eq!(live, ["registration.attested", "registration.approved"]);

    // Resuming from the first event's cursor gives what followed it.
    let mut resumed = app
        .event_feed(Some(&bank))
        .watch_institution_events(pb::WatchInstitutionEventsRequest { after: first.cursor })
        .await
        .unwrap()
        .into_inner();
    let next = resumed.next().await.unwrap().unwrap();
    assert_eq!(next.r#type, "registration.attested");
}
