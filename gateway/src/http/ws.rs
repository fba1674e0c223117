//! `/ws/jobs/{id}` (one job's events: replay, then live) and `/ws/jobs` (job changes).

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use futures_util::SinkExt;
use serde::Deserialize;
use shipwatch_protocol::{JobId, Stream};
use tokio::sync::broadcast;

use super::{ApiError, HttpState, Principal};
use crate::fanout::{Outgoing, close};
use crate::model::EventFilter;

/// Read buffer per socket: the default 128 KiB is zero-filled on every read and made idle
/// sockets cost 135 KB each.
const READ_BUFFER: usize = 4096;

/// `after`, `streams`, `hosts`, `kinds` as DESIGN §6.
#[derive(Deserialize)]
pub(super) struct WatchQuery {
    after: Option<u64>,
    streams: Option<String>,
    hosts: Option<String>,
    kinds: Option<String>,
}

fn list(s: Option<String>) -> Option<Vec<String>> {
    s.map(|s| {
        s.split(',')
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    })
}

fn upgrade(ws: WebSocketUpgrade) -> WebSocketUpgrade {
    // Frames are written whole and flushed once per drained batch.
    ws.read_buffer_size(READ_BUFFER).write_buffer_size(0)
}

/// A `/ws/jobs/{id}` request's query: `after` (0 when absent) and the event filter, or
/// the 400 naming the field at fault.
pub fn parse_watch_query(uri: &Uri) -> Result<(u64, EventFilter), ApiError> {
    let Query(q) = Query::<WatchQuery>::try_from_uri(uri)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let streams = match list(q.streams) {
        None => None,
        Some(v) => Some(
            v.iter()
                .map(|s| s.parse::<Stream>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    ApiError::on_field(StatusCode::BAD_REQUEST, "streams", e.to_string())
                })?,
        ),
    };
    if let Some(kinds) = list(q.kinds.clone()) {
        if let Some(bad) = kinds
            .iter()
            .find(|k| !matches!(k.as_str(), "line" | "host" | "job" | "notice"))
        {
            return Err(ApiError::on_field(
                StatusCode::BAD_REQUEST,
                "kinds",
                format!("unknown kind {bad:?}: line, host, job or notice"),
            ));
        }
    }
    let filter = EventFilter {
        kinds: list(q.kinds),
        hosts: list(q.hosts),
        streams,
    };
    Ok((q.after.unwrap_or(0), filter))
}

pub(super) async fn job(
    State(http): State<HttpState>,
    who: Principal,
    Path(id): Path<JobId>,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let (after, filter) = parse_watch_query(&uri)?;
    if http.gateway.store.job(id).await?.is_none() {
        return Err(ApiError::not_found(id));
    }
    // Register before the upgrade completes, so nothing committed from here is missed.
    let watch = http
        .fanout
        .watch(http.gateway.store.clone(), id, after, filter);
    let revoked = who.revoked;
    Ok(upgrade(ws).on_upgrade(move |socket| serve_job(socket, watch, revoked)))
}

/// Close code for a watcher whose credentials ended (logout, or removed by a reload).
const REVOKED: u16 = 1008;
const REVOKED_REASON: &str = "credentials ended; log in again";

async fn serve_job(
    mut socket: WebSocket,
    mut watch: crate::fanout::Watch,
    revoked: tokio_util::sync::CancellationToken,
) {
    loop {
        let out = tokio::select! {
            out = watch.next() => out,
            () = revoked.cancelled() => Some(Outgoing::Close(REVOKED, REVOKED_REASON)),
            // A client that closes or errors ends the watch; anything else it sends is ignored.
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
        };
        // Write what the watch has ready without flushing each frame, then flush once: a
        // burst costs one flush per watcher, not one per batch. Each frame is a refcount
        // on text checked once for every watcher (no per-watcher UTF-8 check or copy).
        let mut out = out;
        loop {
            match out {
                Some(Outgoing::Frame(text)) => {
                    if socket.feed(Message::Text(text)).await.is_err() {
                        return;
                    }
                }
                Some(Outgoing::Close(code, reason)) => {
                    let _ = socket
                        .send(Message::Close(Some(CloseFrame {
                            code,
                            reason: reason.into(),
                        })))
                        .await;
                    return;
                }
                None => return,
            }
            out = watch.try_next();
            if out.is_none() {
                break;
            }
        }
        if socket.flush().await.is_err() {
            return;
        }
    }
}

pub(super) async fn jobs(
    State(http): State<HttpState>,
    who: Principal,
    ws: WebSocketUpgrade,
) -> Response {
    let rx = http.fanout.watch_jobs();
    let shutdown = http.fanout.shutdown().clone();
    let revoked = who.revoked;
    upgrade(ws).on_upgrade(move |socket| serve_jobs(socket, rx, shutdown, revoked))
}

async fn serve_jobs(
    mut socket: WebSocket,
    mut rx: broadcast::Receiver<bytes::Bytes>,
    shutdown: tokio_util::sync::CancellationToken,
    revoked: tokio_util::sync::CancellationToken,
) {
    loop {
        let (code, reason) = tokio::select! {
            () = shutdown.cancelled() => (close::GOING_AWAY, "gateway shutting down"),
            () = revoked.cancelled() => (REVOKED, REVOKED_REASON),
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
            change = rx.recv() => match change {
                Ok(bytes) => {
                    let Ok(text) = Utf8Bytes::try_from(bytes) else { continue };
                    if socket.send(Message::Text(text)).await.is_err() {
                        return;
                    }
                    continue;
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    (close::LAGGING, "fell behind; reload the job list")
                }
                Err(broadcast::error::RecvError::Closed) => (close::GOING_AWAY, "gateway shutting down"),
            },
        };
        let _ = socket
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
        return;
    }
}
