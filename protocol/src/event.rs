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
//! internally tagged enums would do.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

/// Every field any event encoding has; unknown ones are skipped.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    Kind,
    Job,
    Seq,
    Rseq,
    Ts,
    Host,
    Stream,
    Text,
    State,
    ExitCode,
    Reason,
    #[serde(other)]
    Other,
}

/// A `state` value before `kind` says whether it is a host's or a job's.
#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum AnyState {
    Queued,
    Pending,
    Running,
    Succeeded,
    Ok,
    Failed,
    Timeout,
    Unreachable,
    Cancelled,
    Skipped,
    Lost,
}

impl AnyState {
    fn host(self) -> Option<HostState> {
        Some(match self {
            AnyState::Pending => HostState::Pending,
            AnyState::Running => HostState::Running,
            AnyState::Ok => HostState::Ok,
            AnyState::Failed => HostState::Failed,
            AnyState::Timeout => HostState::Timeout,
            AnyState::Unreachable => HostState::Unreachable,
            AnyState::Cancelled => HostState::Cancelled,
            AnyState::Skipped => HostState::Skipped,
            AnyState::Queued | AnyState::Succeeded | AnyState::Lost => return None,
        })
    }

    fn job(self) -> Option<JobState> {
        Some(match self {
            AnyState::Queued => JobState::Queued,
            AnyState::Running => JobState::Running,
            AnyState::Succeeded => JobState::Succeeded,
            AnyState::Failed => JobState::Failed,
            AnyState::Cancelled => JobState::Cancelled,
            AnyState::Lost => JobState::Lost,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            AnyState::Queued => "queued",
            AnyState::Pending => "pending",
            AnyState::Running => "running",
            AnyState::Succeeded => "succeeded",
            AnyState::Ok => "ok",
            AnyState::Failed => "failed",
            AnyState::Timeout => "timeout",
            AnyState::Unreachable => "unreachable",
            AnyState::Cancelled => "cancelled",
            AnyState::Skipped => "skipped",
            AnyState::Lost => "lost",
        }
    }
}

/// The fields of one event object, in whatever order they came.
#[derive(Default)]
struct Fields {
    kind: Option<EventKind>,
    job: Option<JobId>,
    seq: Option<u64>,
    rseq: Option<u64>,
    ts: Option<Timestamp>,
    host: Option<String>,
    stream: Option<Stream>,
    text: Option<String>,
    state: Option<AnyState>,
    exit_code: Option<i32>,
    reason: Option<String>,
}

fn required<T, E: de::Error>(v: Option<T>, name: &'static str) -> Result<T, E> {
    v.ok_or_else(|| E::missing_field(name))
}

impl Fields {
    fn body<E: de::Error>(&mut self) -> Result<EventBody, E> {
        let kind = required(self.kind, "kind")?;
        Ok(match kind {
            EventKind::Line => EventBody::Line {
                host: required(self.host.take(), "host")?,
                stream: required(self.stream, "stream")?,
                text: required(self.text.take(), "text")?,
            },
            EventKind::Host => {
                let state = required(self.state, "state")?;
                EventBody::Host {
                    host: required(self.host.take(), "host")?,
                    state: state
                        .host()
                        .ok_or_else(|| E::unknown_variant(state.name(), &HOST_STATE_NAMES))?,
                    exit_code: self.exit_code,
                }
            }
            EventKind::Job => {
                let state = required(self.state, "state")?;
                EventBody::Job {
                    state: state
                        .job()
                        .ok_or_else(|| E::unknown_variant(state.name(), &JOB_STATE_NAMES))?,
                    reason: self.reason.take(),
                }
            }
            EventKind::Notice => EventBody::Notice {
                text: required(self.text.take(), "text")?,
            },
        })
    }
}

const HOST_STATE_NAMES: [&str; 8] = [
    "pending",
    "running",
    "ok",
    "failed",
    "timeout",
    "unreachable",
    "cancelled",
    "skipped",
];
const JOB_STATE_NAMES: [&str; 6] = [
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "lost",
];

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut f = Fields::default();
        while let Some(key) = map.next_key::<Field>()? {
            match key {
                Field::Kind => f.kind = Some(map.next_value()?),
                Field::Job => f.job = Some(map.next_value()?),
                Field::Seq => f.seq = Some(map.next_value()?),
                Field::Rseq => f.rseq = Some(map.next_value()?),
                Field::Ts => f.ts = Some(map.next_value()?),
                Field::Host => f.host = Some(map.next_value()?),
                Field::Stream => f.stream = Some(map.next_value()?),
                Field::Text => f.text = Some(map.next_value()?),
                Field::State => f.state = Some(map.next_value()?),
                Field::ExitCode => f.exit_code = map.next_value()?,
                Field::Reason => f.reason = map.next_value()?,
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(f)
    }
}

impl<'de> Deserialize<'de> for EventBody {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)?.body()
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut f = deserializer.deserialize_map(FieldsVisitor)?;
        Ok(Event {
            job: required(f.job, "job")?,
            seq: required(f.seq, "seq")?,
            ts: required(f.ts, "ts")?,
            body: f.body()?,
        })
    }
}

impl<'de> Deserialize<'de> for RunnerEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut f = deserializer.deserialize_map(FieldsVisitor)?;
        Ok(RunnerEvent {
            rseq: required(f.rseq, "rseq")?,
            ts: required(f.ts, "ts")?,
            body: f.body()?,
        })
    }
}

/// Milliseconds since the Unix epoch, UTC. Kept as an integer so the hot path never
/// formats twice.
///
/// Serialises as RFC 3339 UTC with exactly three fractional digits
/// (`2026-11-25T04:25:31.123Z`, what [`Event`] and the HTTP API carry); deserialises from
/// that, from any RFC 3339 offset, or from integer milliseconds (what [`RunnerEvent`]
/// carries on the wire). Years are clamped to 0000..=9999 when formatting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

/// Length of `YYYY-MM-DDTHH:MM:SS.mmmZ`.
const RFC3339_LEN: usize = 24;
const MS_PER_DAY: i64 = 86_400_000;
/// 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z.
const MIN_MS: i64 = -62_167_219_200_000;
const MAX_MS: i64 = 253_402_300_799_999;

/// Text that is not an RFC 3339 timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an RFC 3339 timestamp like 2026-11-25T04:25:31.123Z")]
pub struct TimestampError(pub String);

impl Timestamp {
    /// The current time; the epoch if the clock is before it.
    pub fn now() -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Timestamp(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Formats into `buf` without allocating and returns the text.
    pub fn format_rfc3339(self, buf: &mut [u8; RFC3339_LEN]) -> &str {
        let ms = self.0.clamp(MIN_MS, MAX_MS);
        let days = ms.div_euclid(MS_PER_DAY);
        let in_day = ms.rem_euclid(MS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        let (secs, milli) = (in_day / 1000, in_day % 1000);
        let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
        let digits = |out: &mut [u8], mut v: i64| {
            for b in out.iter_mut().rev() {
                *b = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        *buf = *b"0000-00-00T00:00:00.000Z";
        digits(&mut buf[0..4], y);
        digits(&mut buf[5..7], m);
        digits(&mut buf[8..10], d);
        digits(&mut buf[11..13], hh);
        digits(&mut buf[14..16], mm);
        digits(&mut buf[17..19], ss);
        digits(&mut buf[20..23], milli);
        // Only ASCII digits and separators were written.
        std::str::from_utf8(buf).unwrap_or_default()
    }

    /// Parses RFC 3339 (`Z` or any `±HH:MM` offset, any number of fractional digits;
    /// beyond milliseconds they are truncated).
    pub fn parse_rfc3339(s: &str) -> Result<Timestamp, TimestampError> {
        parse_rfc3339(s.as_bytes()).ok_or_else(|| TimestampError(s.to_string()))
    }
}

fn parse_rfc3339(b: &[u8]) -> Option<Timestamp> {
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        part.iter().try_fold(0i64, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let sep = |i: usize, want: &[u8]| b.get(i).is_some_and(|c| want.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 {
        return None;
    }
    // A leap second reads as the last millisecond of its minute.
    let (s, leap) = match s {
        0..=59 => (s, false),
        60 => (59, true),
        _ => return None,
    };
    let mut i = 19;
    let mut milli = 0;
    if sep(i, b".") {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 3 {
                milli = milli * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        match i - start {
            0 => return None,
            1 => milli *= 100,
            2 => milli *= 10,
            _ => {}
        }
    }
    if leap {
        milli = 999;
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if b.len() == i + 1 => 0,
        sign @ (b'+' | b'-') if b.len() == i + 6 && sep(i + 3, b":") => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 60 + om;
            if *sign == b'-' { -off } else { off }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset_min * 60;
    Some(Timestamp(secs * 1000 + milli))
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.format_rfc3339(&mut [0; RFC3339_LEN]))
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, TimestampError> {
        Timestamp::parse_rfc3339(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.format_rfc3339(&mut [0; RFC3339_LEN]))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TsVisitor;
        impl Visitor<'_> for TsVisitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp or integer milliseconds since the epoch")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
                i64::try_from(v)
                    .map(Timestamp)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse_rfc3339(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(TsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp(1_795_580_731_123).to_string(),
            "2026-11-25T04:25:31.123Z"
        );
        assert_eq!(Timestamp(-1).to_string(), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            Timestamp(951_782_400_000).to_string(),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(Timestamp(i64::MAX).to_string(), "9999-12-31T23:59:59.999Z");
        assert_eq!(Timestamp(i64::MIN).to_string(), "0000-01-01T00:00:00.000Z");
    }

    #[test]
    fn parses_offsets_and_fractions() {
        let t = |s: &str| Timestamp::parse_rfc3339(s).map(|t| t.0);
        assert_eq!(t("2026-11-25T04:25:31.123Z"), Ok(1_795_580_731_123));
        assert_eq!(t("2026-11-25T05:25:31.123+01:00"), Ok(1_795_580_731_123));
        assert_eq!(
            t("2026-11-24T23:25:31.1234567-05:00"),
            Ok(1_795_580_731_123)
        );
        assert_eq!(t("2026-11-25t04:25:31z"), Ok(1_795_580_731_000));
        assert_eq!(t("2026-11-25T04:25:31.1Z"), Ok(1_795_580_731_100));
        assert_eq!(t("2016-12-31T23:59:60Z"), Ok(1_483_228_799_999));
        for bad in [
            "",
            "2026-11-25",
            "2026-11-25T04:25:31",
            "2026-02-30T00:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T04:25:31.Z",
            "2026-11-25T04:25:31Z ",
            "2026-11-25T04:25:31+0100",
            "２026-11-25T04:25:31Z",
        ] {
            assert!(t(bad).is_err(), "{bad:?} parsed");
        }
    }
}
