//! `--serve`: the current set over HTTP for tools that poll (as
//! Routinator serves its VRPs): `/` as plain CIDR lines, `/json` whole,
//! `/json-delta?session=S&serial=N` as what changed since (or, when that is
//! no longer known, everything, marked as a reset). Every answer carries
//! the ETag `"session-serial"`; a request with that ETag in
//! `If-None-Match` gets 304 and no body.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;

use crate::follow::{Follower, Shared, read};
use crate::output::{Format, render};

/// Answers HTTP/1.1 on `listener` with `handler` until the task is dropped
/// (`--serve` and `--metrics-listen` alike: small answers built in memory).
pub async fn accept<F>(listener: tokio::net::TcpListener, handler: F)
where
    F: Fn(&Request<hyper::body::Incoming>) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let answer = handler(&req);
                async move { Ok::<_, Infallible>(answer) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// `--serve`: the current set.
pub async fn serve(listener: tokio::net::TcpListener, shared: Shared) {
    accept(listener, move |req| answer(req, &shared)).await;
}

fn answer<B>(req: &Request<B>, shared: &Shared) -> Response<Full<Bytes>> {
    let follower = read(shared);
    let position = &follower.held.position;
    let etag = format!("\"{}-{}\"", position.session, position.serial);
    let unchanged = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let (content_type, body) = match req.uri().path() {
        "/" => ("text/plain; charset=utf-8", None),
        "/json" => ("application/json", None),
        "/json-delta" => (
            "application/json",
            Some(delta(req.uri().query().unwrap_or(""), &follower)),
        ),
        _ => return respond(StatusCode::NOT_FOUND, "text/plain", &etag, "not found\n".into()),
    };
    if unchanged {
        return respond(StatusCode::NOT_MODIFIED, content_type, &etag, String::new());
    }
    let body = body.unwrap_or_else(|| {
        let format = if content_type == "application/json" {
            Format::Json
        } else {
            Format::Plain
        };
        render(format, &follower.held)
    });
    respond(StatusCode::OK, content_type, &etag, body)
}

/// What changed since the query's session and serial, or everything.
fn delta(query: &str, follower: &Follower) -> String {
    let (mut session, mut serial) = (String::new(), -1);
    for (key, value) in query.split('&').filter_map(|kv| kv.split_once('=')) {
        match key {
            "session" => session = value.to_owned(),
            "serial" => serial = value.parse().unwrap_or(-1),
            _ => {}
        }
    }
    let position = &follower.held.position;
    let document = match follower.changes_since(&session, serial) {
        Some(changes) => {
            let (announced, withdrawn): (Vec<_>, Vec<_>) = changes.into_iter().partition(|c| c.announced);
            serde_json::json!({
                "reset": false, "session": position.session, "serial": position.serial,
                "announced": announced.into_iter().map(|c| c.entry).collect::<Vec<_>>(),
                "withdrawn": withdrawn.into_iter().map(|c| c.entry).collect::<Vec<_>>(),
            })
        }
        None => serde_json::json!({
            "reset": true, "session": position.session, "serial": position.serial,
            "announced": follower.held.entries().collect::<Vec<_>>(), "withdrawn": [],
        }),
    };
    let mut text = document.to_string();
    text.push('\n');
    text
}

fn respond(status: StatusCode, content_type: &'static str, etag: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = plain(status, content_type, body);
    let headers = response.headers_mut();
    if let Ok(etag) = header::HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, etag);
    }
    response
}

/// An answer with a body and its type, never cached.
pub fn plain(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache"));
    response
}
