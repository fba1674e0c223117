//! The shapes the store, the fan-out and the HTTP layer pass between them; what the API
//! returns is in [`shipwatch_protocol::api`].

use std::sync::Arc;

use bytes::Bytes;
use shipwatch_protocol::{EventBody, JobId, JobState, Stream, Timestamp};

/// One committed event with what watchers filter on, and its JSON text made once.
#[derive(Debug, Clone)]
pub struct CommittedEvent {
    pub seq: u64,
    /// `line`, `host`, `job` or `notice`.
    pub kind: &'static str,
    pub host: Option<Arc<str>>,
    pub stream: Option<Stream>,
    /// The event's JSON object exactly as every watcher and the log endpoint receive it.
    pub json: Bytes,
}

/// Events of one job committed together, in `seq` order, as the fan-out receives them.
#[derive(Debug, Clone)]
pub struct CommittedBatch {
    pub job: JobId,
    pub events: Vec<CommittedEvent>,
    /// `[e1,e2,…]`: the whole batch as one WebSocket text frame, for watchers whose filters
    /// take every event (built once, shared by all of them).
    pub frame: Bytes,
    /// The job's state after this batch, so watchers know when to close with 1000.
    pub job_state: JobState,
}

/// What a watcher or a log request asked for; `None` means everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub kinds: Option<Vec<String>>,
    pub hosts: Option<Vec<String>>,
    pub streams: Option<Vec<Stream>>,
}

impl EventFilter {
    /// Whether an event of `kind` (from `host`, on `stream`) passes: job and notice
    /// events, which have no host, concern every host.
    pub fn takes(&self, kind: &str, host: Option<&str>, stream: Option<Stream>) -> bool {
        if let Some(kinds) = &self.kinds
            && !kinds.iter().any(|k| k == kind)
        {
            return false;
        }
        if let (Some(hosts), Some(h)) = (&self.hosts, host)
            && !hosts.iter().any(|x| x == h)
        {
            return false;
        }
        if let (Some(streams), Some(s)) = (&self.streams, stream)
            && !streams.contains(&s)
        {
            return false;
        }
        true
    }
}

/// One stored event as [`crate::store::Store::scan_events`] hands it over: a line as its
/// columns, borrowed from the row (no JSON made for it), any other event as committed.
#[derive(Debug)]
pub enum RowRef<'r> {
    Line {
        seq: u64,
        ts: Timestamp,
        host: &'r str,
        stream: Stream,
        text: &'r str,
    },
    Event(&'r CommittedEvent),
}

/// An event the gateway itself makes (job lost, cancelled while queued, log cap notice).
pub type GatewayEvent = EventBody;
