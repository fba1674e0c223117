//! The writer thread: takes whatever is queued (up to [`GROUP_EVENTS`] events across
//! jobs), commits it in one transaction, then publishes each job's batch in `seq` order.
//! No timer delays a lone line, and nothing is published before it is committed.

use super::checkpoint::{Checkpointer, WalLimit};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use shipwatch_protocol::Report;
use shipwatch_protocol::{
    EventBody, JobId, JobSpec, JobState, RunnerEvent, Timestamp, write_event_json,
};
use tokio::sync::oneshot;

use super::rows::Columns;
use super::{Publisher, StoreError, StoreLimits, read_job};
use crate::model::{CommittedBatch, CommittedEvent};

/// Events committed together at most (a group may exceed it by one op's events).
pub(super) const GROUP_EVENTS: usize = 1_000;
/// How often recording a job's failure is retried while the disk stays full.
pub(super) const RETRY_FAILURES: std::time::Duration = std::time::Duration::from_secs(1);

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A write the store asks of the writer.
pub(super) enum Op {
    Create {
        spec: Box<JobSpec>,
        params: std::collections::BTreeMap<String, String>,
        started_by: String,
        reply: Reply<shipwatch_protocol::api::JobView>,
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
        record: Box<super::AuditRecord>,
        reply: Reply<()>,
    },
    Session {
        write: super::SessionWrite,
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
    /// `PRAGMA max_page_count`: the database may grow by `extra` pages from now on, or
    /// without a limit (`None`). SQLite then fails as on a full disk (SQLITE_FULL).
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
    /// The op's reply, for a group that failed before reaching it.
    fn unanswered(self) -> Done {
        match self {
            Op::Create { reply, .. } => Done::Job(0, reply),
            Op::Append { reply, .. } | Op::Gateway { reply, .. } | Op::Sweep { reply, .. } => {
                Done::U64(0, reply)
            }
            Op::Audit { reply, .. }
            | Op::Session { reply, .. }
            | Op::FailCommits { reply, .. }
            | Op::CapPages { reply, .. }
            | Op::Flush { reply } => Done::Unit(reply),
        }
    }

    pub(super) fn weight(&self) -> usize {
        match self {
            Op::Append { events, .. } => events.len(),
            _ => 1,
        }
    }
}

/// What a job's row holds that every commit touches, cached between groups.
#[derive(Clone, Copy)]
struct JobMeta {
    last_seq: u64,
    last_rseq: u64,
    log_bytes: u64,
    dropped: u64,
    state: JobState,
    dirty: bool,
}

/// How to answer an op once its group's fate is known.
enum Done {
    Job(JobId, Reply<shipwatch_protocol::api::JobView>),
    U64(u64, Reply<u64>),
    Unit(Reply<()>),
    Failed(StoreError, Reply<u64>),
}

/// A job's failure the store could not record yet (the disk is still full). Readers show
/// it, so the job does not look running while nothing more of it can be stored.
#[derive(Debug, Clone)]
pub(super) struct Unrecorded {
    pub reason: String,
    /// When the failure happened; the recorded `ended_at` is when room returned.
    pub at: Timestamp,
}

/// The writer's unrecorded failures as readers see them.
pub(super) type UnrecordedJobs = Arc<std::sync::Mutex<HashMap<JobId, Unrecorded>>>;

/// About what SQLite's own auto-checkpoint (1,000 pages) amounts to in event text.
const CHECKPOINT_BYTES: usize = 2 * 1024 * 1024;

pub(super) fn spawn(
    conn: Connection,
    limits: StoreLimits,
    publish: Arc<dyn Publisher>,
    checkpoint: Checkpointer,
    wal: WalLimit,
    visible: UnrecordedJobs,
) -> Result<Sender<Op>, StoreError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut w = Writer {
        conn,
        checkpoint,
        since_checkpoint: 0,
        wal,
        limits,
        publish,
        jobs: HashMap::new(),
        fail_commits: false,
        marking_failed: false,
        unrecorded: HashMap::new(),
        visible,
        last_retry: std::time::Instant::now(),
        json: Vec::with_capacity(4096),
        host_ids: HashMap::new(),
    };
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || w.run(rx))
        .map_err(|source| StoreError::DataDir {
            path: "store-writer thread".into(),
            source,
        })?;
    Ok(tx)
}

struct Writer {
    conn: Connection,
    /// Asked for a checkpoint once about [`CHECKPOINT_BYTES`] have been committed.
    checkpoint: Checkpointer,
    since_checkpoint: usize,
    /// Keeps the WAL file small (checkpoint.rs).
    wal: WalLimit,
    limits: StoreLimits,
    publish: Arc<dyn Publisher>,
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
    last_retry: std::time::Instant,
    json: Vec<u8>,
    /// `host_names` as committed: name → number.
    host_ids: HashMap<Box<str>, i64>,
}

/// One job's events of the current group, published after the commit.
struct Pending {
    job: JobId,
    events: Vec<CommittedEvent>,
}

struct Group {
    pending: Vec<Pending>,
    index: HashMap<JobId, usize>,
    changed: Vec<JobId>,
    done: Vec<Done>,
}

impl Writer {
    fn run(&mut self, rx: Receiver<Op>) {
        // Ends when every Store handle is gone.
        loop {
            let wait = if self.unrecorded.is_empty() {
                self.wal.idle_after()
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
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        if self.unrecorded.is_empty() {
                            self.wal.idle(&self.conn);
                        } else {
                            self.record_failures();
                        }
                        continue;
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                },
            };
            let mut ops = vec![first];
            let mut weight = ops[0].weight();
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
        tracing::debug!("store writer stopped");
    }

    /// Tries again to store the failure of jobs whose failure could not be stored.
    fn record_failures(&mut self) {
        self.last_retry = std::time::Instant::now();
        if self.unrecorded.is_empty() {
            return;
        }
        let jobs = std::mem::take(&mut self.unrecorded);
        self.marking_failed = true;
        for (job, failure) in jobs {
            let (tx, _rx) = oneshot::channel();
            self.group(vec![Op::Gateway {
                job,
                body: EventBody::Job {
                    state: JobState::Failed,
                    reason: Some(failure.reason),
                },
                reply: tx,
            }]);
            // Still full: it is still the failure of then.
            if let Some(again) = self.unrecorded.get_mut(&job) {
                again.at = failure.at;
            }
        }
        self.marking_failed = false;
        self.show_unrecorded();
    }

    fn show_unrecorded(&self) {
        if let Ok(mut visible) = self.visible.lock() {
            visible.clone_from(&self.unrecorded);
        }
    }

    fn session(&mut self, write: super::SessionWrite) -> Result<(), rusqlite::Error> {
        use super::SessionWrite;
        match write {
            SessionWrite::Create {
                id_hash,
                user,
                now_ms,
                idle_before_ms,
                created_before_ms,
            } => {
                // Expired sessions go when a new one comes: the table stays the live ones.
                self.conn
                    .prepare_cached("DELETE FROM sessions WHERE seen_ms < ?1 OR created_ms < ?2")?
                    .execute(params![idle_before_ms, created_before_ms])?;
                self.conn
                    .prepare_cached(
                        "INSERT OR REPLACE INTO sessions (id_hash, user, created_ms, seen_ms) \
                         VALUES (?1, ?2, ?3, ?3)",
                    )?
                    .execute(params![&id_hash[..], user, now_ms])?;
            }
            SessionWrite::Touch { id_hash, seen_ms } => {
                self.conn
                    .prepare_cached("UPDATE sessions SET seen_ms = ?2 WHERE id_hash = ?1")?
                    .execute(params![&id_hash[..], seen_ms])?;
            }
            SessionWrite::Delete { id_hash } => {
                self.conn
                    .prepare_cached("DELETE FROM sessions WHERE id_hash = ?1")?
                    .execute(params![&id_hash[..]])?;
            }
            SessionWrite::DeleteUsers { users } => {
                let mut stmt = self
                    .conn
                    .prepare_cached("DELETE FROM sessions WHERE user = ?1")?;
                for user in users {
                    stmt.execute([user])?;
                }
            }
        }
        Ok(())
    }

    fn group(&mut self, ops: Vec<Op>) {
        let mut g = Group {
            pending: Vec::new(),
            index: HashMap::new(),
            changed: Vec::new(),
            done: Vec::with_capacity(ops.len()),
        };
        // Every job of the group, also those whose ops a failure leaves unprocessed: a
        // failed commit fails them all.
        let touched: Vec<JobId> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Append { job, .. } | Op::Gateway { job, .. } => Some(*job),
                _ => None,
            })
            .collect();
        let began = std::time::Instant::now();
        let weight: usize = ops.iter().map(Op::weight).sum();
        // A test's stand-in for a full disk (`Store::fail_commits_for_test`).
        let fail = self.fail_commits;
        let mut ops = ops.into_iter();
        let result = (|| -> Result<(), rusqlite::Error> {
            self.conn.execute_batch("BEGIN")?;
            for op in ops.by_ref() {
                self.apply(&mut g, op)?;
            }
            self.flush_meta()?;
            if fail {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                    Some("database or disk is full (injected by a test)".into()),
                ));
            }
            self.conn.execute_batch("COMMIT")
        })();
        // The time a line waits in the store before anyone may see it.
        metrics::histogram!(crate::metrics::STORE_COMMIT_SECONDS).record(began.elapsed());
        metrics::histogram!(crate::metrics::STORE_COMMIT_OPS).record(weight as f64);
        match result {
            Ok(()) => self.after_commit(g),
            Err(e) => {
                // Ops the failure left unprocessed hear it too, not that the writer is gone.
                g.done.extend(ops.map(Op::unanswered));
                if !self.conn.is_autocommit()
                    && let Err(error) = self.conn.execute_batch("ROLLBACK")
                {
                    tracing::error!(error = %Report(&error), "store rollback failed");
                }
                self.after_failure(g, touched, e)
            }
        }
    }

    /// Applies one op inside the group's transaction. Its reply joins `g.done` even when
    /// SQLite fails, so the caller hears that error, not that the writer is gone.
    fn apply(&mut self, g: &mut Group, op: Op) -> Result<(), rusqlite::Error> {
        match op {
            Op::Flush { reply } => g.done.push(Done::Unit(reply)),
            Op::FailCommits { fail, reply } => {
                self.fail_commits = fail;
                g.done.push(Done::Unit(reply));
            }
            Op::CapPages { extra, reply } => {
                g.done.push(Done::Unit(reply));
                let pages: u32 = self
                    .conn
                    .pragma_query_value(None, "page_count", |r| r.get(0))?;
                let cap = extra.map_or(u32::MAX - 1, |extra| pages.saturating_add(extra));
                self.conn.pragma_update(None, "max_page_count", cap)?;
            }
            Op::Sweep { now, reply } => match self.sweep(now) {
                Ok(n) => g.done.push(Done::U64(n, reply)),
                Err(e) => g.done.push(Done::Failed(e, reply)),
            },
            Op::Audit { record, reply } => {
                g.done.push(Done::Unit(reply));
                self.conn
                    .prepare_cached(
                        "INSERT INTO audit (ts, actor, action, job, detail, addr, outcome) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?
                    .execute(params![
                        Timestamp::now().to_string(),
                        record.actor,
                        record.action,
                        record.job.map(|j| j as i64),
                        record.detail,
                        record.addr,
                        record.outcome,
                    ])?;
            }
            Op::Session { write, reply } => {
                g.done.push(Done::Unit(reply));
                self.session(write)?;
            }
            Op::Create {
                spec,
                params,
                started_by,
                reply,
            } => match self.create(&spec, &params, &started_by) {
                Ok(id) => {
                    g.changed.push(id);
                    g.done.push(Done::Job(id, reply));
                }
                Err(e) => {
                    g.done.push(Done::Job(0, reply));
                    return Err(e);
                }
            },
            Op::Append { job, events, reply } => match self.append(g, job, events) {
                Ok(Ok(rseq)) => g.done.push(Done::U64(rseq, reply)),
                Ok(Err(e)) => g.done.push(Done::Failed(e, reply)),
                Err(e) => {
                    g.done.push(Done::U64(0, reply));
                    return Err(e);
                }
            },
            Op::Gateway { job, body, reply } => match self.gateway(g, job, body) {
                Ok(Ok(seq)) => g.done.push(Done::U64(seq, reply)),
                Ok(Err(e)) => g.done.push(Done::Failed(e, reply)),
                Err(e) => {
                    g.done.push(Done::U64(0, reply));
                    return Err(e);
                }
            },
        }
        Ok(())
    }

    fn after_commit(&mut self, g: Group) {
        self.wal.after_commit(&self.conn);
        self.since_checkpoint += g
            .pending
            .iter()
            .flat_map(|p| &p.events)
            .map(|e| e.json.len())
            .sum::<usize>();
        if self.since_checkpoint >= CHECKPOINT_BYTES {
            self.since_checkpoint = 0;
            self.checkpoint.nudge();
        }
        for p in g.pending {
            let state = self.jobs.get(&p.job).map_or(JobState::Running, |m| m.state);
            self.publish
                .publish(Arc::new(committed_batch(p.job, p.events, state)));
        }
        let mut changed = g.changed;
        changed.dedup();
        for id in changed {
            match read_job(&self.conn, id, false) {
                Ok(Some(view)) => self.publish.job_changed(&view),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(job = id, error = %Report(&error), "cannot read a changed job")
                }
            }
        }
        for d in g.done {
            match d {
                Done::Job(id, r) => {
                    let view = read_job(&self.conn, id, true)
                        .and_then(|v| v.ok_or(StoreError::NoSuchJob(id)));
                    let _ = r.send(view);
                }
                Done::U64(v, r) => drop(r.send(Ok(v))),
                Done::Unit(r) => drop(r.send(Ok(()))),
                Done::Failed(e, r) => drop(r.send(Err(e))),
            }
        }
    }

    /// Nothing of the group is stored: answer every op with the error, then try to fail
    /// each job that lost events so nobody waits on it forever.
    fn after_failure(&mut self, g: Group, mut touched: Vec<JobId>, error: rusqlite::Error) {
        tracing::error!(error = %Report(&error), "store commit failed; failing the jobs it carried");
        self.jobs.clear();
        // Names numbered in the rolled-back transaction are not numbered after all.
        self.host_ids.clear();
        let reason = format!("the gateway could not store its events: {error}");
        touched.sort_unstable();
        touched.dedup();
        if self.marking_failed {
            // Recording the failure failed too (the disk is still full): store nothing
            // more for these jobs and retry recording it later.
            let at = Timestamp::now();
            for job in touched {
                let reason = reason.clone();
                self.unrecorded.insert(job, Unrecorded { reason, at });
            }
        } else {
            // Marking them failed is a commit too (a small one, which may still fit). It
            // comes before the answers, so whoever got the error finds the job failed.
            self.marking_failed = true;
            for &job in &touched {
                let (tx, _rx) = oneshot::channel();
                self.group(vec![Op::Gateway {
                    job,
                    body: EventBody::Job {
                        state: JobState::Failed,
                        reason: Some(reason.clone()),
                    },
                    reply: tx,
                }]);
            }
            self.marking_failed = false;
            self.show_unrecorded();
            // Watchers of the job list learn of a failure the store could not record.
            for (job, failure) in touched
                .iter()
                .filter_map(|j| self.unrecorded.get(j).map(|f| (*j, f)))
            {
                if let Ok(Some(mut view)) = read_job(&self.conn, job, false) {
                    super::show_failure(&mut view, failure);
                    self.publish.job_changed(&view);
                }
            }
        }
        for d in g.done {
            let e = || StoreError::Sqlite(clone_error(&error));
            match d {
                Done::Job(_, r) => drop(r.send(Err(e()))),
                Done::U64(_, r) => drop(r.send(Err(e()))),
                Done::Unit(r) => drop(r.send(Err(e()))),
                Done::Failed(e2, r) => drop(r.send(Err(e2))),
            }
        }
    }

    fn meta(&mut self, job: JobId) -> Result<Option<&mut JobMeta>, rusqlite::Error> {
        if !self.jobs.contains_key(&job) {
            let row = self
                .conn
                .prepare_cached(
                    "SELECT last_seq, last_rseq, log_bytes, dropped_lines, state \
                     FROM jobs WHERE id = ?1",
                )?
                .query_row([job as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })
                .optional()?;
            let Some((seq, rseq, bytes, dropped, state)) = row else {
                return Ok(None);
            };
            let state = state.parse().unwrap_or(JobState::Failed);
            self.jobs.insert(
                job,
                JobMeta {
                    last_seq: seq as u64,
                    last_rseq: rseq as u64,
                    log_bytes: bytes as u64,
                    dropped: dropped as u64,
                    state,
                    dirty: false,
                },
            );
        }
        Ok(self.jobs.get_mut(&job))
    }

    fn flush_meta(&mut self) -> Result<(), rusqlite::Error> {
        let mut stmt = self.conn.prepare_cached(
            "UPDATE jobs SET last_seq = ?2, last_rseq = ?3, log_bytes = ?4, dropped_lines = ?5 \
             WHERE id = ?1",
        )?;
        for (id, m) in self.jobs.iter_mut().filter(|(_, m)| m.dirty) {
            stmt.execute(params![
                *id as i64,
                m.last_seq as i64,
                m.last_rseq as i64,
                m.log_bytes as i64,
                m.dropped as i64
            ])?;
            m.dirty = false;
        }
        Ok(())
    }

    fn create(
        &mut self,
        spec: &JobSpec,
        params: &std::collections::BTreeMap<String, String>,
        started_by: &str,
    ) -> Result<JobId, rusqlite::Error> {
        let spec_json = serde_json::to_string(spec).unwrap_or_default();
        let params_json = serde_json::to_string(params).unwrap_or_else(|_| "{}".into());
        self.conn
            .prepare_cached(
                "INSERT INTO jobs (task, spec, params, started_by, created_at, state) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 'queued')",
            )?
            .execute(params![
                spec.task,
                spec_json,
                params_json,
                started_by,
                Timestamp::now().to_string()
            ])?;
        let id = self.conn.last_insert_rowid() as JobId;
        let mut stmt = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO hosts (job, host, wave, state) VALUES (?1, ?2, ?3, 'pending')",
        )?;
        // Waves are numbered from 1, as users count them (DESIGN §6).
        for (wave, names) in (1i64..).zip(&spec.waves) {
            for name in names {
                stmt.execute(params![id as i64, name, wave])?;
            }
        }
        Ok(id)
    }

    /// `Ok(Err(_))`: the op is refused but the group goes on; `Err(_)`: SQLite failed.
    fn append(
        &mut self,
        g: &mut Group,
        job: JobId,
        events: Vec<RunnerEvent>,
    ) -> Result<Result<u64, StoreError>, rusqlite::Error> {
        if self.unrecorded.contains_key(&job) {
            return Ok(Err(StoreError::Finished {
                job,
                state: JobState::Failed,
            }));
        }
        let Some(meta) = self.meta(job)? else {
            return Ok(Err(StoreError::NoSuchJob(job)));
        };
        if meta.state.is_terminal() {
            return Ok(Err(StoreError::Finished {
                job,
                state: meta.state,
            }));
        }
        for ev in events {
            let Some(meta) = self.jobs.get_mut(&job) else {
                break;
            };
            if ev.rseq <= meta.last_rseq {
                continue;
            }
            meta.last_rseq = ev.rseq;
            meta.dirty = true;
            if let EventBody::Line { text, .. } = &ev.body {
                let len = text.len() as u64;
                // Once one line is dropped, all later ones are: a shorter line that would
                // still fit must not leave a hole before it.
                if meta.dropped > 0 || meta.log_bytes + len > self.limits.max_log_bytes {
                    meta.dropped += 1;
                    if meta.dropped == 1 {
                        let text = format!(
                            "this job's log reached max_log_bytes ({} bytes): further lines \
                             are counted, not stored",
                            self.limits.max_log_bytes
                        );
                        self.insert(g, job, ev.ts, EventBody::Notice { text })?;
                    }
                    continue;
                }
                meta.log_bytes += len;
            }
            self.insert(g, job, ev.ts, ev.body)?;
        }
        Ok(Ok(self.jobs.get(&job).map_or(0, |m| m.last_rseq)))
    }

    fn gateway(
        &mut self,
        g: &mut Group,
        job: JobId,
        body: EventBody,
    ) -> Result<Result<u64, StoreError>, rusqlite::Error> {
        if self.unrecorded.contains_key(&job) {
            return Ok(Err(StoreError::Finished {
                job,
                state: JobState::Failed,
            }));
        }
        let Some(meta) = self.meta(job)? else {
            return Ok(Err(StoreError::NoSuchJob(job)));
        };
        if meta.state.is_terminal() {
            return Ok(Err(StoreError::Finished {
                job,
                state: meta.state,
            }));
        }
        let seq = self.insert(g, job, Timestamp::now(), body)?;
        Ok(Ok(seq))
    }

    /// Stores one event with the next `seq` and applies it to the hosts and jobs tables.
    fn insert(
        &mut self,
        g: &mut Group,
        job: JobId,
        ts: Timestamp,
        body: EventBody,
    ) -> Result<u64, rusqlite::Error> {
        let host_id = match body.host() {
            Some(name) => Some(self.host_id(name)?),
            None => None,
        };
        let Some(meta) = self.jobs.get_mut(&job) else {
            return Err(rusqlite::Error::QueryReturnedNoRows);
        };
        meta.last_seq += 1;
        meta.dirty = true;
        let seq = meta.last_seq;
        let kind = super::kind_name(body.kind().as_str());
        let stream = body.stream();
        match &body {
            EventBody::Host {
                host,
                state,
                exit_code,
            } => {
                let at = ts.to_string();
                self.conn
                    .prepare_cached(
                        "UPDATE hosts SET state = ?3, exit_code = ?4, \
                         started_at = CASE WHEN ?3 = 'running' THEN ?5 ELSE started_at END, \
                         ended_at = CASE WHEN ?6 THEN ?5 ELSE ended_at END \
                         WHERE job = ?1 AND host = ?2",
                    )?
                    .execute(params![
                        job as i64,
                        host,
                        state.as_str(),
                        exit_code,
                        at,
                        state.is_terminal()
                    ])?;
                g.changed.push(job);
            }
            EventBody::Job { state, reason } => {
                meta.state = *state;
                let at = ts.to_string();
                self.conn
                    .prepare_cached(
                        "UPDATE jobs SET state = ?2, \
                         reason = CASE WHEN ?2 = 'running' THEN ?3 ELSE COALESCE(?3, reason) END, \
                         started_at = CASE WHEN ?2 = 'running' AND started_at IS NULL THEN ?4 \
                                      WHEN ?2 = 'queued' THEN NULL ELSE started_at END, \
                         ended_at = CASE WHEN ?5 THEN ?4 ELSE ended_at END, \
                         ended_ms = CASE WHEN ?5 THEN ?6 ELSE ended_ms END \
                         WHERE id = ?1",
                    )?
                    .execute(params![
                        job as i64,
                        state.as_str(),
                        reason,
                        at,
                        state.is_terminal(),
                        ts.as_millis()
                    ])?;
                if state.is_terminal() {
                    // Hosts that never finished cannot now: say so in the table.
                    self.conn
                        .prepare_cached(
                            "UPDATE hosts SET state = CASE state WHEN 'pending' THEN 'skipped' \
                             ELSE 'cancelled' END, ended_at = ?2 \
                             WHERE job = ?1 AND state IN ('pending', 'running')",
                        )?
                        .execute(params![job as i64, at])?;
                }
                g.changed.push(job);
            }
            _ => {}
        }
        let host: Option<Arc<str>> = body.host().map(|h| {
            let last = g
                .index
                .get(&job)
                .and_then(|&i| g.pending[i].events.last())
                .and_then(|e| e.host.clone());
            match last {
                Some(l) if &*l == h => l,
                _ => Arc::from(h),
            }
        });
        let columns = Columns::of(&body);
        self.conn
            .prepare_cached(
                "INSERT INTO events (job, seq, ts, kind, host, text, state, exit_code) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                job as i64,
                seq as i64,
                ts.as_millis(),
                columns.kind,
                host_id,
                columns.text,
                columns.state,
                columns.exit_code,
            ])?;
        self.json.clear();
        write_event_json(&mut self.json, job, seq, ts, body.as_ref());
        let committed = CommittedEvent {
            seq,
            kind,
            host,
            stream,
            json: Bytes::copy_from_slice(&self.json),
        };
        let i = *g.index.entry(job).or_insert_with(|| {
            g.pending.push(Pending {
                job,
                events: Vec::new(),
            });
            g.pending.len() - 1
        });
        g.pending[i].events.push(committed);
        Ok(seq)
    }

    /// The number `host_names` gives `name`, given now if it has none.
    fn host_id(&mut self, name: &str) -> Result<i64, rusqlite::Error> {
        if let Some(&id) = self.host_ids.get(name) {
            return Ok(id);
        }
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO host_names (name) VALUES (?1)")?
            .execute([name])?;
        let id = self
            .conn
            .prepare_cached("SELECT id FROM host_names WHERE name = ?1")?
            .query_row([name], |r| r.get(0))?;
        self.host_ids.insert(name.into(), id);
        Ok(id)
    }

    /// Runs inside the group's transaction.
    fn sweep(&mut self, now: Timestamp) -> Result<u64, StoreError> {
        let cutoff = now.as_millis() - i64::from(self.limits.retention_days) * 86_400_000;
        let tx = &self.conn;
        let ids: Vec<i64> = tx
            .prepare_cached("SELECT id FROM jobs WHERE ended_ms IS NOT NULL AND ended_ms < ?1")?
            .query_map([cutoff], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for id in &ids {
            tx.execute("DELETE FROM events WHERE job = ?1", [id])?;
            tx.execute("DELETE FROM hosts WHERE job = ?1", [id])?;
            tx.execute("DELETE FROM jobs WHERE id = ?1", [id])?;
            self.jobs.remove(&(*id as JobId));
        }
        if !ids.is_empty() {
            tracing::info!(jobs = ids.len(), "retention sweep deleted old jobs");
        }
        Ok(ids.len() as u64)
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

fn clone_error(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, msg) => {
            rusqlite::Error::SqliteFailure(*code, msg.clone())
        }
        other => rusqlite::Error::InvalidParameterName(other.to_string()),
    }
}
