//! Jobs, hosts and the events that tell their story (DESIGN §5).

use serde::{Deserialize, Serialize};

/// A job's id, assigned by the gateway's store, from 1.
pub type JobId = u64;

/// Milliseconds since the Unix epoch, UTC; serialised as RFC 3339 with milliseconds
/// (`2026-11-25T04:25:31.123Z`). Kept as an integer so the hot path never formats twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

/// Where a job is in its life. `lost`: its runner died or never came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Lost,
}

/// Where one host of a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostState {
    Pending,
    Running,
    Ok,
    Failed,
    Timeout,
    Unreachable,
    Cancelled,
    Skipped,
}

/// Which pipe of the host's process a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What happened, without the job/seq/ts envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EventBody {
    /// One line of a host's output (at most 64 KiB, no newline).
    Line {
        host: String,
        stream: Stream,
        text: String,
    },
    /// A host changed state.
    Host {
        host: String,
        state: HostState,
        exit_code: Option<i32>,
    },
    /// The job changed state.
    Job {
        state: JobState,
        reason: Option<String>,
    },
    /// Something the gateway tells watchers about the log itself, e.g. that the
    /// `max_log_bytes` cap was reached and further lines are counted, not stored.
    Notice { text: String },
}

/// An event as stored and served: `{"kind":…,"job":…,"seq":…,"ts":…, …}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub job: JobId,
    /// Per job, from 1, gapless; assigned by the gateway when it commits the event.
    pub seq: u64,
    pub ts: Timestamp,
    pub body: EventBody,
}

/// An event as a runner produces it, before the gateway gives it a `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerEvent {
    /// Per job, from 1, gapless, assigned by the runner: lets the gateway drop events it
    /// already committed when a runner resends after a reconnect.
    pub rseq: u64,
    pub ts: Timestamp,
    pub body: EventBody,
}
