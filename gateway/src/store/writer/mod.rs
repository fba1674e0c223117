//! The writer thread, one for either engine: takes whatever is queued (up to
//! [`GROUP_EVENTS`] events across jobs), commits it in one transaction, then publishes each
//! job's batch in `seq` order. No timer delays a lone line, and nothing is published
//! before it is committed. A failed commit fails the jobs it carried and nothing of it is
//! published. The SQL is the [`Engine`]'s (`sqlite/write.rs`, `pg/write.rs`).

pub(super) mod engine;
mod failure;
mod op;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Instant;

use bytes::Bytes;
use shipwatch_protocol::{
    EventBody, JobId, JobState, Report, RunnerEvent, Timestamp, write_event_json,
};

use super::{Publisher, StoreError, StoreLimits};
use crate::model::{CommittedBatch, CommittedEvent};
pub(super) use engine::{Engine, JobRow};
pub(super) use failure::{Unrecorded, UnrecordedJobs};
pub(super) use op::Op;
use op::Outcome;

/// Events committed together at most (a group may exceed it by one op's events).
const GROUP_EVENTS: usize = 1_000;
/// How often recording a job's failure is retried while the disk stays full.
const RETRY_FAILURES: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a group is retried while the database cannot be reached (a PostgreSQL
/// restart), before its jobs fail as on any failed commit.
const RETRY_CONNECTION_FOR: std::time::Duration = std::time::Duration::from_secs(120);
/// The longest pause between two tries of a group while the database is away.
const RETRY_CONNECTION_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// A job's row as the writer keeps it while it changes it.
#[derive(Clone, Copy)]
struct JobMeta {
    row: JobRow,
    dirty: bool,
}

/// Starts the writer thread over `engine`; it runs until every sender is dropped.
pub(super) fn spawn<E: Engine>(
    engine: E,
    limits: StoreLimits,
    publish: Arc<dyn Publisher>,
    visible: UnrecordedJobs,
) -> Result<Sender<Op>, StoreError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut w = Writer {
        engine,
        limits,
        publish,
        jobs: HashMap::new(),
        fail_commits: false,
        marking_failed: false,
        unrecorded: HashMap::new(),
        visible,
        last_retry: Instant::now(),
        json: Vec::with_capacity(4096),
    };
    std::thread::Builder::new()
        .name(E::THREAD.into())
        .spawn(move || w.run(rx))
        .map_err(|source| StoreError::DataDir {
            path: format!("{} thread", E::THREAD).into(),
            source,
        })?;
    Ok(tx)
}

struct Writer<E> {
    engine: E,
    limits: StoreLimits,
    publish: Arc<dyn Publisher>,
    /// The rows of the jobs written: across groups where the engine keeps them
    /// ([`Engine::KEEPS_JOB_ROWS`]), else for one group.
    jobs: HashMap<JobId, JobMeta>,
    fail_commits: bool,
    /// Set while failing the jobs of a failed commit, so a second failure cannot recurse.
    marking_failed: bool,
    /// Jobs that lost events to a failed commit but whose failure could not be stored
    /// either (the disk is still full), with the reason. Nothing more is stored for them,
    /// so their log never gets a hole, and recording the failure is retried.
    unrecorded: HashMap<JobId, Unrecorded>,
    /// `unrecorded` as readers see it, updated when it changes.
    visible: UnrecordedJobs,
    last_retry: Instant,
    json: Vec<u8>,
}

/// One job's events of the current group, published after the commit.
struct Pending {
    job: JobId,
    events: Vec<CommittedEvent>,
}

#[derive(Default)]
struct Group {
    pending: Vec<Pending>,
    index: HashMap<JobId, usize>,
    changed: Vec<JobId>,
    /// One per op applied, in order.
    outcomes: Vec<Outcome>,
    /// A job was queued or ended: a shared queue's other gateways may have work.
    queue: bool,
}

impl<E: Engine> Writer<E> {
    fn run(&mut self, rx: Receiver<Op>) {
        // Ends when every Store handle is gone.
        loop {
            let wait = if self.unrecorded.is_empty() {
                self.engine.idle_after()
            } else {
                Some(RETRY_FAILURES)
            };
            let first = match wait {
                None => match rx.recv() {
                    Ok(op) => op,
                    Err(_) => break,
                },
                Some(wait) => match rx.recv_timeout(wait) {
                    Ok(op) => op,
                    Err(RecvTimeoutError::Timeout) => {
                        if self.unrecorded.is_empty() {
                            self.engine.idle();
                        } else {
                            self.record_failures();
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
            };
            let mut weight = first.weight();
            let mut ops = vec![first];
            while weight < GROUP_EVENTS {
                match rx.try_recv() {
                    Ok(op) => {
                        weight += op.weight();
                        ops.push(op);
                    }
                    Err(_) => break,
                }
            }
            // The test fault is no write: it must not fail with the group it arrives in.
            let (faults, ops): (Vec<Op>, Vec<Op>) = ops
                .into_iter()
                .partition(|op| matches!(op, Op::FailCommits { .. }));
            if !ops.is_empty() {
                self.group(ops);
            }
            for op in faults {
                if let Op::FailCommits { fail, reply } = op {
                    self.fail_commits = fail;
                    let _ = reply.send(Ok(()));
                }
            }
            if self.last_retry.elapsed() >= RETRY_FAILURES {
                self.record_failures();
            }
        }
        tracing::debug!(thread = E::THREAD, "store writer stopped");
    }

    fn group(&mut self, ops: Vec<Op>) {
        if !E::KEEPS_JOB_ROWS {
            self.jobs.clear();
        }
        let began = Instant::now();
        let weight: usize = ops.iter().map(Op::weight).sum();
        let mut g = Group::default();
        let mut result = self.transaction(&mut g, &ops);
        // The database went away (restarting): try the whole group again, from the
        // job rows as they are then, for a while, saying so once. Resent runner events
        // are skipped by their rseq if a commit whose answer was lost did go through.
        let mut pause = std::time::Duration::from_millis(50);
        while let Err(error) = &result
            && self.engine.lost_connection(error)
            && began.elapsed() < RETRY_CONNECTION_FOR
        {
            if pause.as_millis() == 50 {
                tracing::warn!(error = %Report(error), "store lost its database; retrying the commit");
            }
            self.engine.rollback();
            self.jobs.clear();
            self.engine.forget();
            std::thread::sleep(pause);
            pause = (pause * 2).min(RETRY_CONNECTION_MAX);
            g = Group::default();
            result = self.transaction(&mut g, &ops);
            if result.is_ok() {
                tracing::info!(
                    after_ms = began.elapsed().as_millis() as u64,
                    "store reached its database again; committed"
                );
            }
        }
        // The time a line waits in the store before anyone may see it.
        metrics::histogram!(crate::metrics::STORE_COMMIT_SECONDS).record(began.elapsed());
        metrics::histogram!(crate::metrics::STORE_COMMIT_OPS).record(weight as f64);
        match result {
            Ok(()) => self.after_commit(g, ops),
            Err(e) => {
                self.engine.rollback();
                self.after_failure(g, ops, e)
            }
        }
    }

    fn transaction(&mut self, g: &mut Group, ops: &[Op]) -> Result<(), StoreError> {
        // A test's stand-in for a full disk (`Store::fail_commits_for_test`).
        let fail = self.fail_commits;
        self.engine.begin()?;
        for op in ops {
            let outcome = self.apply(g, op)?;
            g.outcomes.push(outcome);
        }
        self.engine.write_staged()?;
        for (&id, m) in self.jobs.iter_mut().filter(|(_, m)| m.dirty) {
            self.engine.save_job_row(id, &m.row)?;
            m.dirty = false;
        }
        if fail {
            return Err(self.engine.injected_full());
        }
        let batches: Vec<(JobId, u64, u64)> = g
            .pending
            .iter()
            .filter_map(|p| Some((p.job, p.events.first()?.seq, p.events.last()?.seq)))
            .collect();
        self.engine.announce(&batches, &g.changed, g.queue)?;
        self.engine.commit()
    }

    /// Applies one op inside the group's transaction; `Err`: the group fails.
    fn apply(&mut self, g: &mut Group, op: &Op) -> Result<Outcome, StoreError> {
        Ok(match op {
            Op::Flush { .. } => Outcome::Unit,
            Op::FailCommits { fail, .. } => {
                self.fail_commits = *fail;
                Outcome::Unit
            }
            Op::CapPages { extra, .. } => {
                self.engine.cap_pages(*extra)?;
                Outcome::Unit
            }
            Op::Sweep { now, .. } => {
                let cutoff = now.as_millis() - i64::from(self.limits.retention_days) * 86_400_000;
                let ids = self.engine.sweep(cutoff)?;
                for id in &ids {
                    self.jobs.remove(id);
                }
                if !ids.is_empty() {
                    tracing::info!(jobs = ids.len(), "retention sweep deleted old jobs");
                }
                Outcome::Value(ids.len() as u64)
            }
            Op::Audit { record, .. } => {
                self.engine.audit(record)?;
                Outcome::Unit
            }
            Op::Session { write, .. } => {
                self.engine.session(write)?;
                Outcome::Unit
            }
            Op::Create {
                spec,
                params,
                started_by,
                ..
            } => {
                let id = self.engine.create(spec, params, started_by)?;
                g.changed.push(id);
                g.queue = true;
                Outcome::Job(id)
            }
            Op::Append { job, events, .. } => match self.writable(*job)? {
                Err(refused) => Outcome::Refused(refused),
                Ok(()) => Outcome::Value(self.append(g, *job, events)?),
            },
            Op::Gateway { job, body, .. } => match self.writable(*job)? {
                Err(refused) => Outcome::Refused(refused),
                Ok(()) => Outcome::Value(self.insert(g, *job, Timestamp::now(), body)?),
            },
        })
    }

    /// Refused (`Ok(Err(_))`) when the job is unknown, finished, or failed unrecorded;
    /// else its row is at hand in `self.jobs`.
    fn writable(&mut self, job: JobId) -> Result<Result<(), StoreError>, StoreError> {
        if self.unrecorded.contains_key(&job) {
            return Ok(Err(StoreError::Finished {
                job,
                state: JobState::Failed,
            }));
        }
        if !self.jobs.contains_key(&job) {
            let Some(row) = self.engine.job_row(job)? else {
                return Ok(Err(StoreError::NoSuchJob(job)));
            };
            self.jobs.insert(job, JobMeta { row, dirty: false });
        }
        Ok(match self.jobs.get(&job) {
            None => Err(StoreError::NoSuchJob(job)),
            Some(m) if m.row.state.is_terminal() => Err(StoreError::Finished {
                job,
                state: m.row.state,
            }),
            Some(_) => Ok(()),
        })
    }

    /// Stores a runner's events past the job's `rseq`, lines only while the job's log is
    /// within `max_log_bytes`; the highest `rseq` committed.
    fn append(
        &mut self,
        g: &mut Group,
        job: JobId,
        events: &[RunnerEvent],
    ) -> Result<u64, StoreError> {
        let max = self.limits.max_log_bytes;
        for ev in events {
            let Some(meta) = self.jobs.get_mut(&job) else {
                break;
            };
            if ev.rseq <= meta.row.last_rseq {
                continue;
            }
            meta.row.last_rseq = ev.rseq;
            meta.dirty = true;
            if let EventBody::Line { text, .. } = &ev.body {
                let len = text.len() as u64;
                let row = &mut meta.row;
                // Once one line is dropped, all later ones are: a shorter line that would
                // still fit must not leave a hole before it.
                if row.dropped > 0 || row.log_bytes + len > max {
                    row.dropped += 1;
                    if row.dropped == 1 {
                        let text = format!(
                            "this job's log reached max_log_bytes ({max} bytes): further lines \
                             are counted, not stored"
                        );
                        self.insert(g, job, ev.ts, &EventBody::Notice { text })?;
                    }
                    continue;
                }
                row.log_bytes += len;
            }
            self.insert(g, job, ev.ts, &ev.body)?;
        }
        Ok(self.jobs.get(&job).map_or(0, |m| m.row.last_rseq))
    }

    /// Gives one event the job's next `seq`, applies it to the hosts and jobs tables and
    /// stores it; its `seq`.
    fn insert(
        &mut self,
        g: &mut Group,
        job: JobId,
        ts: Timestamp,
        body: &EventBody,
    ) -> Result<u64, StoreError> {
        let Some(meta) = self.jobs.get_mut(&job) else {
            return Err(StoreError::NoSuchJob(job));
        };
        meta.row.last_seq += 1;
        meta.dirty = true;
        let seq = meta.row.last_seq;
        match body {
            EventBody::Host {
                host,
                state,
                exit_code,
            } => {
                self.engine
                    .host_changed(job, host, *state, *exit_code, ts)?;
                g.changed.push(job);
            }
            EventBody::Job { state, reason } => {
                meta.row.state = *state;
                self.engine
                    .job_changed(job, *state, reason.as_deref(), ts)?;
                g.changed.push(job);
                g.queue |= *state == JobState::Queued || state.is_terminal();
            }
            _ => {}
        }
        let i = *g.index.entry(job).or_insert_with(|| {
            g.pending.push(Pending {
                job,
                events: Vec::new(),
            });
            g.pending.len() - 1
        });
        let pending = &mut g.pending[i];
        // Consecutive events of one host share its name.
        let host: Option<Arc<str>> = body.host().map(|h| match pending.events.last() {
            Some(CommittedEvent { host: Some(l), .. }) if &**l == h => l.clone(),
            _ => Arc::from(h),
        });
        self.json.clear();
        write_event_json(&mut self.json, job, seq, ts, body.as_ref());
        let committed = CommittedEvent {
            seq,
            kind: super::kind_name(body.kind().as_str()),
            host,
            stream: body.stream(),
            json: Bytes::copy_from_slice(&self.json),
        };
        self.engine.stage_event(job, ts, body, &committed)?;
        pending.events.push(committed);
        Ok(seq)
    }

    fn after_commit(&mut self, g: Group, ops: Vec<Op>) {
        let bytes = g
            .pending
            .iter()
            .flat_map(|p| &p.events)
            .map(|e| e.json.len())
            .sum::<usize>();
        self.engine.committed(bytes);
        for p in g.pending {
            let state = self
                .jobs
                .get(&p.job)
                .map_or(JobState::Running, |m| m.row.state);
            self.publish
                .publish(Arc::new(committed_batch(p.job, p.events, state)));
        }
        let mut changed = g.changed;
        changed.dedup();
        for id in changed {
            match self.engine.read_job(id, false) {
                Ok(Some(view)) => self.publish.job_changed(&view),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(job = id, error = %Report(&error), "cannot read a changed job")
                }
            }
        }
        let engine = &mut self.engine;
        for (op, outcome) in ops.into_iter().zip(g.outcomes) {
            op.answer(Ok(outcome), |id| {
                engine
                    .read_job(id, true)
                    .and_then(|v| v.ok_or(StoreError::NoSuchJob(id)))
            });
        }
    }
}

/// One job's committed events as the fan-out takes them, with their frame made once.
pub(super) fn committed_batch(
    job: JobId,
    events: Vec<CommittedEvent>,
    job_state: JobState,
) -> CommittedBatch {
    let len: usize = events.iter().map(|e| e.json.len() + 1).sum();
    let mut frame = Vec::with_capacity(len + 1);
    frame.push(b'[');
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            frame.push(b',');
        }
        frame.extend_from_slice(&e.json);
    }
    frame.push(b']');
    CommittedBatch {
        job,
        events,
        frame: Bytes::from(frame),
        job_state,
    }
}
