//! The writes the store asks of the writer, and how each is answered once its group's
//! fate is known.

use std::collections::BTreeMap;

use shipwatch_protocol::api::JobView;
use shipwatch_protocol::{EventBody, JobId, JobSpec, RunnerEvent, Timestamp};
use tokio::sync::oneshot;

use crate::store::{AuditRecord, SessionWrite, StoreError};

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A write the store asks of the writer.
pub(in crate::store) enum Op {
    Create {
        spec: Box<JobSpec>,
        params: BTreeMap<String, String>,
        started_by: String,
        reply: Reply<JobView>,
    },
    Append {
        job: JobId,
        events: Vec<RunnerEvent>,
        reply: Reply<u64>,
    },
    Gateway {
        job: JobId,
        body: EventBody,
        reply: Reply<u64>,
    },
    Audit {
        record: Box<AuditRecord>,
        reply: Reply<()>,
    },
    Session {
        write: SessionWrite,
        reply: Reply<()>,
    },
    Sweep {
        now: Timestamp,
        reply: Reply<u64>,
    },
    FailCommits {
        fail: bool,
        reply: Reply<()>,
    },
    /// The database may grow by `extra` pages from now on, or without a limit (`None`);
    /// SQLite then fails as on a full disk (SQLITE_FULL). Tests only.
    CapPages {
        extra: Option<u32>,
        reply: Reply<()>,
    },
    /// Answered once everything queued before it is committed.
    Flush {
        reply: Reply<()>,
    },
}

impl Op {
    pub(super) fn weight(&self) -> usize {
        match self {
            Op::Append { events, .. } => events.len(),
            _ => 1,
        }
    }

    /// The job whose events the op writes: a failed commit fails it.
    pub(super) fn job(&self) -> Option<JobId> {
        match self {
            Op::Append { job, .. } | Op::Gateway { job, .. } => Some(*job),
            _ => None,
        }
    }

    /// Answers the op with what its group made of it.
    pub(super) fn answer(
        self,
        outcome: Result<Outcome, StoreError>,
        read: impl FnOnce(JobId) -> Result<JobView, StoreError>,
    ) {
        let value = |o: Result<Outcome, StoreError>| match o? {
            Outcome::Value(v) => Ok(v),
            Outcome::Refused(e) => Err(e),
            Outcome::Unit | Outcome::Job(_) => Ok(0),
        };
        let unit = |o: Result<Outcome, StoreError>| match o? {
            Outcome::Refused(e) => Err(e),
            _ => Ok(()),
        };
        // A receiver that went away no longer needs the answer.
        match self {
            Op::Create { reply, .. } => {
                let view = match outcome {
                    Ok(Outcome::Job(id)) => read(id),
                    Ok(Outcome::Refused(e)) | Err(e) => Err(e),
                    Ok(_) => Err(StoreError::WriterGone),
                };
                let _ = reply.send(view);
            }
            Op::Append { reply, .. } | Op::Gateway { reply, .. } | Op::Sweep { reply, .. } => {
                let _ = reply.send(value(outcome));
            }
            Op::Audit { reply, .. }
            | Op::Session { reply, .. }
            | Op::FailCommits { reply, .. }
            | Op::CapPages { reply, .. }
            | Op::Flush { reply } => {
                let _ = reply.send(unit(outcome));
            }
        }
    }
}

/// What an op came to inside its group.
pub(in crate::store) enum Outcome {
    /// A job made.
    Job(JobId),
    /// The highest `rseq` or the `seq` committed, or how many jobs a sweep deleted.
    Value(u64),
    Unit,
    /// Refused without failing the group (a finished job, an unknown one).
    Refused(StoreError),
}
