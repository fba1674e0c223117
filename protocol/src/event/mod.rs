//! Jobs, hosts and the events that tell their story (DESIGN §5).
//!
//! Two encodings of an event exist, on purpose:
//! - [`Event`], as stored and served to watchers:
//!   `{"kind":"line","job":42,"seq":7,"ts":"2026-11-25T04:25:31.123Z","host":…,"stream":…,"text":…}`,
//!   with `ts` as RFC 3339 UTC text with exactly three fractional digits.
//! - [`RunnerEvent`], on the runner→gateway wire: `{"kind":"line","rseq":7,"ts":1795580731123,…}`,
//!   with `ts` as integer milliseconds since the epoch (cheaper to write and read).
//!
//! Both are (de)serialised by hand so the field order is fixed (kind, then the envelope,
//! then the body) and decoding needs no buffering of the whole object, which serde's
//! internally tagged enums would do. Writing is here; reading back is `decode`; the
//! [`Timestamp`] both carry has its own module.

mod decode;

use std::fmt;
use std::str::FromStr;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

pub use crate::timestamp::{Timestamp, TimestampError};

/// A job's id, assigned by the gateway's store, from 1.
pub type JobId = u64;

/// A name that is not one of a fixed set (a state, a stream, an event kind).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{got}`, expected one of: {expected}")]
pub struct UnknownName {
    /// What was being named, e.g. "stream".
    pub what: &'static str,
    pub got: String,
    pub expected: &'static str,
}

/// Gives a fieldless enum `as_str`, `Display` and `FromStr` with the names its serde
/// encoding uses, so query strings, SQLite columns and JSON agree.
macro_rules! names {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The name used in JSON, query strings and the store.
            pub const fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(UnknownName {
                        what: $what,
                        got: s.to_string(),
                        expected: concat!($($name, " "),+).trim_ascii_end(),
                    }),
                }
            }
        }
    };
}

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

names!(JobState, "job state", {
    Queued => "queued", Running => "running", Succeeded => "succeeded",
    Failed => "failed", Cancelled => "cancelled", Lost => "lost",
});

impl JobState {
    /// The job will not change state again.
    pub const fn is_terminal(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
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

names!(HostState, "host state", {
    Pending => "pending", Running => "running", Ok => "ok", Failed => "failed",
    Timeout => "timeout", Unreachable => "unreachable", Cancelled => "cancelled",
    Skipped => "skipped",
});

impl HostState {
    /// The host will not change state again.
    pub const fn is_terminal(self) -> bool {
        !matches!(self, HostState::Pending | HostState::Running)
    }

    /// Counts toward the task's `max_failures` (failed, unreachable, timeout).
    pub const fn is_failure(self) -> bool {
        matches!(
            self,
            HostState::Failed | HostState::Unreachable | HostState::Timeout
        )
    }
}

/// Which pipe of the host's process a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

names!(Stream, "stream", { Stdout => "stdout", Stderr => "stderr" });

/// The `kind` of an event, for filters (`kinds=line,host`) without looking at the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Line,
    Host,
    Job,
    Notice,
}

names!(EventKind, "event kind", {
    Line => "line", Host => "host", Job => "job", Notice => "notice",
});

/// What happened, without the job/seq/ts envelope.
///
/// Alone it serialises as `{"kind":"line","host":…,"stream":…,"text":…}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventBody {
    /// One line of a host's output (at most 64 KiB, no newline).
    Line {
        host: String,
        stream: Stream,
        text: String,
    },
    /// A host changed state; `exit_code` is `null` when unknown (killed, never started).
    Host {
        host: String,
        state: HostState,
        exit_code: Option<i32>,
    },
    /// The job changed state; `reason` is `null` when there is nothing to explain.
    Job {
        state: JobState,
        reason: Option<String>,
    },
    /// Something the gateway tells watchers about the log itself, e.g. that the
    /// `max_log_bytes` cap was reached and further lines are counted, not stored.
    Notice { text: String },
}

impl EventBody {
    /// Which kind of event this is.
    pub const fn kind(&self) -> EventKind {
        match self {
            EventBody::Line { .. } => EventKind::Line,
            EventBody::Host { .. } => EventKind::Host,
            EventBody::Job { .. } => EventKind::Job,
            EventBody::Notice { .. } => EventKind::Notice,
        }
    }

    /// The host a line or host event is about; `None` for job and notice events.
    pub fn host(&self) -> Option<&str> {
        match self {
            EventBody::Line { host, .. } | EventBody::Host { host, .. } => Some(host),
            EventBody::Job { .. } | EventBody::Notice { .. } => None,
        }
    }

    /// The stream of a line event; `None` for every other kind.
    pub const fn stream(&self) -> Option<Stream> {
        match self {
            EventBody::Line { stream, .. } => Some(*stream),
            _ => None,
        }
    }

    /// The body borrowed, for writing its JSON.
    pub fn as_ref(&self) -> BodyRef<'_> {
        match self {
            EventBody::Line { host, stream, text } => BodyRef::Line {
                host,
                stream: *stream,
                text,
            },
            EventBody::Host {
                host,
                state,
                exit_code,
            } => BodyRef::Host {
                host,
                state: *state,
                exit_code: *exit_code,
            },
            EventBody::Job { state, reason } => BodyRef::Job {
                state: *state,
                reason: reason.as_deref(),
            },
            EventBody::Notice { text } => BodyRef::Notice { text },
        }
    }

    const fn field_count(&self) -> usize {
        match self {
            EventBody::Line { .. } | EventBody::Host { .. } => 3,
            EventBody::Job { .. } => 2,
            EventBody::Notice { .. } => 1,
        }
    }

    fn serialize_fields<S: SerializeStruct>(&self, s: &mut S) -> Result<(), S::Error> {
        self.as_ref().serialize_fields(s)
    }
}

/// An [`EventBody`] whose text borrows from elsewhere (a row the store reads), so its
/// JSON is written without first copying the text into an owned body. Same encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRef<'a> {
    Line {
        host: &'a str,
        stream: Stream,
        text: &'a str,
    },
    Host {
        host: &'a str,
        state: HostState,
        exit_code: Option<i32>,
    },
    Job {
        state: JobState,
        reason: Option<&'a str>,
    },
    Notice {
        text: &'a str,
    },
}

impl BodyRef<'_> {
    const fn kind(&self) -> EventKind {
        match self {
            BodyRef::Line { .. } => EventKind::Line,
            BodyRef::Host { .. } => EventKind::Host,
            BodyRef::Job { .. } => EventKind::Job,
            BodyRef::Notice { .. } => EventKind::Notice,
        }
    }

    /// Number of JSON fields the body adds after `kind`.
    const fn field_count(&self) -> usize {
        match self {
            BodyRef::Line { .. } | BodyRef::Host { .. } => 3,
            BodyRef::Job { .. } => 2,
            BodyRef::Notice { .. } => 1,
        }
    }

    fn serialize_fields<S: SerializeStruct>(&self, s: &mut S) -> Result<(), S::Error> {
        match self {
            BodyRef::Line { host, stream, text } => {
                s.serialize_field("host", host)?;
                s.serialize_field("stream", stream)?;
                s.serialize_field("text", text)
            }
            BodyRef::Host {
                host,
                state,
                exit_code,
            } => {
                s.serialize_field("host", host)?;
                s.serialize_field("state", state)?;
                s.serialize_field("exit_code", exit_code)
            }
            BodyRef::Job { state, reason } => {
                s.serialize_field("state", state)?;
                s.serialize_field("reason", reason)
            }
            BodyRef::Notice { text } => s.serialize_field("text", text),
        }
    }
}

/// Appends the JSON object of the event `job`/`seq`/`ts`/`body` to `out`, exactly as
/// [`Event::write_json`] writes it.
pub fn write_event_json(out: &mut Vec<u8>, job: JobId, seq: u64, ts: Timestamp, body: BodyRef<'_>) {
    let event = EventRef { job, seq, ts, body };
    // Writing into a Vec cannot fail, and every field has an infallible Serialize.
    if let Err(e) = serde_json::to_writer(&mut *out, &event) {
        unreachable!("serialising an event into memory failed: {e}");
    }
}

/// The envelope of [`Event`] around a borrowed body.
struct EventRef<'a> {
    job: JobId,
    seq: u64,
    ts: Timestamp,
    body: BodyRef<'a>,
}

impl Serialize for EventRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Event", 4 + self.body.field_count())?;
        s.serialize_field("kind", &self.body.kind())?;
        s.serialize_field("job", &self.job)?;
        s.serialize_field("seq", &self.seq)?;
        s.serialize_field("ts", &self.ts)?;
        self.body.serialize_fields(&mut s)?;
        s.end()
    }
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

impl Event {
    /// Appends this event's JSON object (DESIGN §5) to `out`: the one serialisation the
    /// gateway makes per event, shared by the store, the log endpoint and every watcher.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail, and every field has an infallible Serialize.
        if let Err(e) = serde_json::to_writer(&mut *out, self) {
            unreachable!("serialising an event into memory failed: {e}");
        }
    }

    /// This event's JSON object as bytes.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        self.write_json(&mut out);
        out
    }
}

/// An event as a runner produces it, before the gateway gives it a `seq`.
///
/// On the wire: `{"kind":…,"rseq":…,"ts":<integer ms>, …body}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerEvent {
    /// Per job, from 1, gapless, assigned by the runner: lets the gateway drop events it
    /// already committed when a runner resends after a reconnect.
    pub rseq: u64,
    pub ts: Timestamp,
    pub body: EventBody,
}

impl Serialize for EventBody {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("EventBody", 1 + self.field_count())?;
        s.serialize_field("kind", &self.kind())?;
        self.serialize_fields(&mut s)?;
        s.end()
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        EventRef {
            job: self.job,
            seq: self.seq,
            ts: self.ts,
            body: self.body.as_ref(),
        }
        .serialize(serializer)
    }
}

impl Serialize for RunnerEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("RunnerEvent", 3 + self.body.field_count())?;
        s.serialize_field("kind", &self.body.kind())?;
        s.serialize_field("rseq", &self.rseq)?;
        s.serialize_field("ts", &self.ts.0)?;
        self.body.serialize_fields(&mut s)?;
        s.end()
    }
}
