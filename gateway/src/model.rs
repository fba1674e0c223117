//! The shapes the store, the fan-out and the HTTP layer pass between them.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use shipwatch_protocol::{EventBody, HostState, JobId, JobSpec, JobState, Stream};

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

/// A job as the API returns it (DESIGN §6); `hosts` is empty in lists.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub id: JobId,
    pub task: String,
    pub state: JobState,
    pub params: BTreeMap<String, String>,
    pub started_by: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub reason: Option<String>,
    pub counts: Counts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<HostView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<JobSpec>,
}

/// How many of a job's hosts are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub pending: u32,
    pub running: u32,
    pub ok: u32,
    pub failed: u32,
    pub timeout: u32,
    pub unreachable: u32,
    pub cancelled: u32,
    pub skipped: u32,
}

/// One host of a job as the API returns it.
#[derive(Debug, Clone, Serialize)]
pub struct HostView {
    pub host: String,
    pub state: HostState,
    pub exit_code: Option<i32>,
    pub wave: u32,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
}

/// An event the gateway itself makes (job lost, cancelled while queued, log cap notice).
pub type GatewayEvent = EventBody;
