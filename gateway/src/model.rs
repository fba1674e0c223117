//! The shapes the store, the fan-out and the HTTP layer pass between them; what the API
//! returns is in [`shipwatch_protocol::api`].

use std::sync::Arc;

use bytes::Bytes;
use shipwatch_protocol::{EventBody, JobId, JobState, Stream};

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

/// An event the gateway itself makes (job lost, cancelled while queued, log cap notice).
pub type GatewayEvent = EventBody;
