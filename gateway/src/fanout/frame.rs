//! Frames: `[e1,e2,…]` text made from events' JSON, and what a filter takes.

use axum::extract::ws::Utf8Bytes;
use bytes::{BufMut, Bytes, BytesMut};
use shipwatch_protocol::{Report, Stream};

use crate::model::{CommittedEvent, EventFilter};

/// Whether `filter` takes `e`; events without a host or stream pass those filters (a job
/// event concerns every host).
pub fn takes(filter: &EventFilter, e: &CommittedEvent) -> bool {
    takes_fields(filter, e.kind, e.host.as_deref(), e.stream)
}

/// [`takes`] on an event's kind, host and stream.
pub(super) fn takes_fields(
    filter: &EventFilter,
    kind: &str,
    host: Option<&str>,
    stream: Option<Stream>,
) -> bool {
    if let Some(kinds) = &filter.kinds
        && !kinds.iter().any(|k| k == kind)
    {
        return false;
    }
    if let (Some(hosts), Some(h)) = (&filter.hosts, host)
        && !hosts.iter().any(|x| x.as_str() == h)
    {
        return false;
    }
    if let (Some(streams), Some(s)) = (&filter.streams, stream)
        && !streams.contains(&s)
    {
        return false;
    }
    true
}

/// A frame as text: the store writes JSON from `serde_json`, always UTF-8; anything else
/// would be a bug, sent with U+FFFD rather than dropped.
pub(super) fn text(frame: Bytes) -> Utf8Bytes {
    // A clone is a refcount, kept for the lossy path.
    match Utf8Bytes::try_from(frame.clone()) {
        Ok(text) => text,
        Err(error) => {
            tracing::error!(error = %Report(&error), "a frame is not UTF-8");
            Utf8Bytes::from(String::from_utf8_lossy(&frame).into_owned())
        }
    }
}

/// `[e1,e2,…]` from the events' JSON, or `None` when there are none.
pub fn frame_of<'a>(events: impl Iterator<Item = &'a CommittedEvent>) -> Option<Utf8Bytes> {
    frame_of_json(events.map(|e| &e.json[..]))
}

/// `[j1,j2,…]` from JSON objects, or `None` when there are none.
pub(super) fn frame_of_json<'a>(objects: impl Iterator<Item = &'a [u8]>) -> Option<Utf8Bytes> {
    let mut buf = BytesMut::new();
    for json in objects {
        buf.put_u8(if buf.is_empty() { b'[' } else { b',' });
        buf.extend_from_slice(json);
    }
    if buf.is_empty() {
        return None;
    }
    buf.put_u8(b']');
    Some(text(buf.freeze()))
}
