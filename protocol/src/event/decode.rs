//! Reading events back: one hand-written visitor for both encodings ([`Event`]'s and
//! [`RunnerEvent`]'s), which takes the fields in any order, skips unknown ones and never
//! buffers the whole object, as serde's internally tagged enums would.

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::*;

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
