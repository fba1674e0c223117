//! The PostgreSQL writer thread: the SQLite writer's contract (one transaction per group
//! of queued ops, a gapless `seq` per job, publish only after the commit, a failed commit
//! fails the jobs it carried and nothing of it is published) over a connection that may
//! drop and is then made again for the next group.
//!
//! Unlike SQLite's, nothing about a job survives its group: the job's row is locked and
//! read in each group that writes it, since another gateway may have written it since.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Instant;

use bytes::Bytes;
use postgres::Client;
use shipwatch_protocol::api::JobView;
use shipwatch_protocol::{
    Event, EventBody, JobId, JobSpec, JobState, Report, RunnerEvent, Timestamp,
};
use tokio::sync::oneshot;

use super::read;
use crate::model::CommittedEvent;
use crate::store::writer::{
    GROUP_EVENTS, Op, RETRY_FAILURES, Unrecorded, UnrecordedJobs, committed_batch,
};
use crate::store::{AuditRecord, Publisher, SessionWrite, StoreError, StoreLimits, kind_name};

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A job's row as this group found it (locked) and changes it.
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
    Job(JobId, Reply<JobView>),
    U64(u64, Reply<u64>),
    Unit(Reply<()>),
    Failed(StoreError, Reply<u64>),
}

/// One job's events of the group: published after the commit, inserted before it.
struct Pending {
    job: JobId,
    events: Vec<CommittedEvent>,
    /// Each event's time in ms, beside `events`.
    ts: Vec<i64>,
}

#[derive(Default)]
struct Group {
    jobs: HashMap<JobId, JobMeta>,
    pending: Vec<Pending>,
    index: HashMap<JobId, usize>,
    changed: Vec<JobId>,
    done: Vec<Done>,
}

pub(in crate::store) fn spawn(
    client: Client,
    config: postgres::Config,
    limits: StoreLimits,
    publish: Arc<dyn Publisher>,
    visible: UnrecordedJobs,
) -> Result<Sender<Op>, StoreError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut w = Writer {
        client: Some(client),
        config,
        limits,
        publish,
        fail_commits: false,
        marking_failed: false,
        unrecorded: HashMap::new(),
        visible,
        last_retry: Instant::now(),
        json: Vec::with_capacity(4096),
    };
    std::thread::Builder::new()
        .name("store-pg-writer".into())
        .spawn(move || w.run(rx))
        .map_err(|source| StoreError::DataDir {
            path: "store-pg-writer thread".into(),
            source,
        })?;
    Ok(tx)
}

struct Writer {
    /// `None` once the connection failed; the next group connects again.
    client: Option<Client>,
    config: postgres::Config,
    limits: StoreLimits,
    publish: Arc<dyn Publisher>,
    fail_commits: bool,
    /// Set while failing the jobs of a failed commit, so a second failure cannot recurse.
    marking_failed: bool,
    /// Jobs whose failure could not be stored yet; retried, and shown by readers.
    unrecorded: HashMap<JobId, Unrecorded>,
    visible: UnrecordedJobs,
    last_retry: Instant,
    json: Vec<u8>,
}

impl Writer {
    fn run(&mut self, rx: Receiver<Op>) {
        loop {
            let first = if self.unrecorded.is_empty() {
                match rx.recv() {
                    Ok(op) => op,
                    Err(_) => break,
                }
            } else {
                match rx.recv_timeout(RETRY_FAILURES) {
                    Ok(op) => op,
                    Err(RecvTimeoutError::Timeout) => {
                        self.record_failures();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
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
        tracing::debug!("store writer stopped (PostgreSQL)");
    }

    /// The connection, made again if the last one failed.
    fn conn(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            let client = self.config.connect(postgres::NoTls)?;
            tracing::info!("store connected to PostgreSQL again");
            self.client = Some(client);
        }
        self.client.as_mut().ok_or(StoreError::WriterGone)
    }

    fn record_failures(&mut self) {
        self.last_retry = Instant::now();
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

    fn group(&mut self, ops: Vec<Op>) {
        let mut g = Group::default();
        let touched: Vec<JobId> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Append { job, .. } | Op::Gateway { job, .. } => Some(*job),
                _ => None,
            })
            .collect();
        let began = Instant::now();
        let weight: usize = ops.iter().map(Op::weight).sum();
        let fail = self.fail_commits;
        let mut ops = ops.into_iter();
        let result = (|| -> Result<(), StoreError> {
            self.conn()?.batch_execute("BEGIN")?;
            for op in ops.by_ref() {
                self.apply(&mut g, op)?;
            }
            self.insert_events(&g)?;
            self.flush_meta(&mut g)?;
            if fail {
                return Err(StoreError::Commit(
                    "database or disk is full (injected by a test)".into(),
                ));
            }
            self.conn()?.batch_execute("COMMIT")?;
            Ok(())
        })();
        metrics::histogram!(crate::metrics::STORE_COMMIT_SECONDS).record(began.elapsed());
        metrics::histogram!(crate::metrics::STORE_COMMIT_OPS).record(weight as f64);
        match result {
            Ok(()) => self.after_commit(g),
            Err(e) => {
                g.done.extend(ops.map(unanswered));
                if let Some(client) = self.client.as_mut()
                    && !client.is_closed()
                    && let Err(error) = client.batch_execute("ROLLBACK")
                {
                    tracing::error!(error = %Report(&error), "store rollback failed");
                }
                self.after_failure(g, touched, e);
            }
        }
    }

    fn apply(&mut self, g: &mut Group, op: Op) -> Result<(), StoreError> {
        match op {
            Op::Flush { reply } => g.done.push(Done::Unit(reply)),
            Op::FailCommits { fail, reply } => {
                self.fail_commits = fail;
                g.done.push(Done::Unit(reply));
            }
            // SQLite's page cap has no PostgreSQL counterpart: a test-only no-op here.
            Op::CapPages { reply, .. } => g.done.push(Done::Unit(reply)),
            Op::Sweep { now, reply } => {
                let n = self.sweep(now)?;
                g.done.push(Done::U64(n, reply));
            }
            Op::Audit { record, reply } => {
                g.done.push(Done::Unit(reply));
                self.audit(&record)?;
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

    fn audit(&mut self, record: &AuditRecord) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO audit (ts, actor, action, job, detail, addr, outcome) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &Timestamp::now().to_string(),
                &record.actor,
                &record.action,
                &record.job.map(|j| j as i64),
                &record.detail,
                &record.addr,
                &record.outcome,
            ],
        )?;
        Ok(())
    }

    fn session(&mut self, write: SessionWrite) -> Result<(), StoreError> {
        let c = self.conn()?;
        match write {
            SessionWrite::Create {
                id_hash,
                user,
                now_ms,
                idle_before_ms,
                created_before_ms,
            } => {
                c.execute(
                    "DELETE FROM sessions WHERE seen_ms < $1 OR created_ms < $2",
                    &[&idle_before_ms, &created_before_ms],
                )?;
                c.execute(
                    "INSERT INTO sessions (id_hash, username, created_ms, seen_ms) \
                     VALUES ($1, $2, $3, $3) ON CONFLICT (id_hash) DO UPDATE SET \
                     username = EXCLUDED.username, created_ms = EXCLUDED.created_ms, \
                     seen_ms = EXCLUDED.seen_ms",
                    &[&&id_hash[..], &user, &now_ms],
                )?;
            }
            SessionWrite::Touch { id_hash, seen_ms } => {
                c.execute(
                    "UPDATE sessions SET seen_ms = $2 WHERE id_hash = $1",
                    &[&&id_hash[..], &seen_ms],
                )?;
            }
            SessionWrite::Delete { id_hash } => {
                c.execute("DELETE FROM sessions WHERE id_hash = $1", &[&&id_hash[..]])?;
            }
            SessionWrite::DeleteUsers { users } => {
                c.execute("DELETE FROM sessions WHERE username = ANY($1)", &[&users])?;
            }
        }
        Ok(())
    }

    fn create(
        &mut self,
        spec: &JobSpec,
        params: &std::collections::BTreeMap<String, String>,
        started_by: &str,
    ) -> Result<JobId, StoreError> {
        let spec_json = serde_json::to_string(spec).unwrap_or_default();
        let params_json = serde_json::to_string(params).unwrap_or_else(|_| "{}".into());
        let c = self.conn()?;
        let id: i64 = c
            .query_one(
                "INSERT INTO jobs (task, spec, params, started_by, created_at, state) \
                 VALUES ($1, $2, $3, $4, $5, 'queued') RETURNING id",
                &[
                    &spec.task,
                    &spec_json,
                    &params_json,
                    &started_by,
                    &Timestamp::now().to_string(),
                ],
            )?
            .get(0);
        let (mut names, mut waves, mut ords) = (Vec::new(), Vec::new(), Vec::new());
        // Waves are numbered from 1, as users count them (DESIGN §6).
        for (wave, hosts) in (1i32..).zip(&spec.waves) {
            for name in hosts {
                names.push(name.as_str());
                waves.push(wave);
                ords.push(ords.len() as i32);
            }
        }
        c.execute(
            "INSERT INTO hosts (job, host, wave, ord, state) \
             SELECT $1, h, w, o, 'pending' FROM unnest($2::text[], $3::int4[], $4::int4[]) \
             AS t(h, w, o) ON CONFLICT DO NOTHING",
            &[&id, &names, &waves, &ords],
        )?;
        Ok(id as JobId)
    }

    /// The job's row, locked for this group; `None` when there is no such job.
    fn meta<'g>(
        &mut self,
        g: &'g mut Group,
        job: JobId,
    ) -> Result<Option<&'g mut JobMeta>, StoreError> {
        if let std::collections::hash_map::Entry::Vacant(slot) = g.jobs.entry(job) {
            let row = self.conn()?.query_opt(
                "SELECT last_seq, last_rseq, log_bytes, dropped_lines, state \
                 FROM jobs WHERE id = $1 FOR UPDATE",
                &[&(job as i64)],
            )?;
            let Some(row) = row else {
                return Ok(None);
            };
            slot.insert(JobMeta {
                last_seq: row.get::<_, i64>(0) as u64,
                last_rseq: row.get::<_, i64>(1) as u64,
                log_bytes: row.get::<_, i64>(2) as u64,
                dropped: row.get::<_, i64>(3) as u64,
                state: read::parse_state(row.get(4)),
                dirty: false,
            });
        }
        Ok(g.jobs.get_mut(&job))
    }

    /// Refused (`Ok(Err(_))`) when the job is unknown, finished, or failed unrecorded.
    fn writable(
        &mut self,
        g: &mut Group,
        job: JobId,
    ) -> Result<Result<(), StoreError>, StoreError> {
        if self.unrecorded.contains_key(&job) {
            return Ok(Err(StoreError::Finished {
                job,
                state: JobState::Failed,
            }));
        }
        Ok(match self.meta(g, job)? {
            None => Err(StoreError::NoSuchJob(job)),
            Some(meta) if meta.state.is_terminal() => Err(StoreError::Finished {
                job,
                state: meta.state,
            }),
            Some(_) => Ok(()),
        })
    }

    fn append(
        &mut self,
        g: &mut Group,
        job: JobId,
        events: Vec<RunnerEvent>,
    ) -> Result<Result<u64, StoreError>, StoreError> {
        if let Err(refused) = self.writable(g, job)? {
            return Ok(Err(refused));
        }
        let max = self.limits.max_log_bytes;
        for ev in events {
            let Some(meta) = g.jobs.get_mut(&job) else {
                break;
            };
            if ev.rseq <= meta.last_rseq {
                continue;
            }
            meta.last_rseq = ev.rseq;
            meta.dirty = true;
            if let EventBody::Line { text, .. } = &ev.body {
                let len = text.len() as u64;
                // Once one line is dropped all later ones are, so no hole opens before one.
                if meta.dropped > 0 || meta.log_bytes + len > max {
                    meta.dropped += 1;
                    if meta.dropped == 1 {
                        let text = format!(
                            "this job's log reached max_log_bytes ({max} bytes): further lines \
                             are counted, not stored"
                        );
                        self.insert(g, job, ev.ts, EventBody::Notice { text })?;
                    }
                    continue;
                }
                meta.log_bytes += len;
            }
            self.insert(g, job, ev.ts, ev.body)?;
        }
        Ok(Ok(g.jobs.get(&job).map_or(0, |m| m.last_rseq)))
    }

    fn gateway(
        &mut self,
        g: &mut Group,
        job: JobId,
        body: EventBody,
    ) -> Result<Result<u64, StoreError>, StoreError> {
        if let Err(refused) = self.writable(g, job)? {
            return Ok(Err(refused));
        }
        Ok(Ok(self.insert(g, job, Timestamp::now(), body)?))
    }

    /// Gives one event the job's next `seq`, applies it to the hosts and jobs rows, and
    /// queues it for the group's insert.
    fn insert(
        &mut self,
        g: &mut Group,
        job: JobId,
        ts: Timestamp,
        body: EventBody,
    ) -> Result<u64, StoreError> {
        let Some(meta) = g.jobs.get_mut(&job) else {
            return Err(StoreError::NoSuchJob(job));
        };
        meta.last_seq += 1;
        meta.dirty = true;
        let seq = meta.last_seq;
        if let EventBody::Job { state, .. } = &body {
            meta.state = *state;
        }
        let at = ts.to_string();
        match &body {
            EventBody::Host {
                host,
                state,
                exit_code,
            } => {
                self.conn()?.execute(
                    "UPDATE hosts SET state = $3, exit_code = $4, \
                     started_at = CASE WHEN $3 = 'running' THEN $5 ELSE started_at END, \
                     ended_at = CASE WHEN $6 THEN $5 ELSE ended_at END \
                     WHERE job = $1 AND host = $2",
                    &[
                        &(job as i64),
                        host,
                        &state.as_str(),
                        exit_code,
                        &at,
                        &state.is_terminal(),
                    ],
                )?;
                g.changed.push(job);
            }
            EventBody::Job { state, reason } => {
                let c = self.conn()?;
                c.execute(
                    "UPDATE jobs SET state = $2, \
                     reason = CASE WHEN $2 = 'running' THEN $3 ELSE COALESCE($3, reason) END, \
                     started_at = CASE WHEN $2 = 'running' AND started_at IS NULL THEN $4 \
                                  WHEN $2 = 'queued' THEN NULL ELSE started_at END, \
                     claimed_by = CASE WHEN $2 = 'queued' THEN NULL ELSE claimed_by END, \
                     ended_at = CASE WHEN $5 THEN $4 ELSE ended_at END, \
                     ended_ms = CASE WHEN $5 THEN $6 ELSE ended_ms END \
                     WHERE id = $1",
                    &[
                        &(job as i64),
                        &state.as_str(),
                        reason,
                        &at,
                        &state.is_terminal(),
                        &ts.as_millis(),
                    ],
                )?;
                if state.is_terminal() {
                    // Hosts that never finished cannot now: say so in the table.
                    c.execute(
                        "UPDATE hosts SET state = CASE state WHEN 'pending' THEN 'skipped' \
                         ELSE 'cancelled' END, ended_at = $2 \
                         WHERE job = $1 AND state IN ('pending', 'running')",
                        &[&(job as i64), &at],
                    )?;
                }
                g.changed.push(job);
            }
            _ => {}
        }
        let kind = kind_name(body.kind().as_str());
        let stream = body.stream();
        let i = *g.index.entry(job).or_insert_with(|| {
            g.pending.push(Pending {
                job,
                events: Vec::new(),
                ts: Vec::new(),
            });
            g.pending.len() - 1
        });
        let pending = &mut g.pending[i];
        let host: Option<Arc<str>> = body.host().map(|h| match pending.events.last() {
            Some(CommittedEvent { host: Some(l), .. }) if &**l == h => l.clone(),
            _ => Arc::from(h),
        });
        let millis = ts.as_millis();
        let event = Event { job, seq, ts, body };
        self.json.clear();
        event.write_json(&mut self.json);
        pending.events.push(CommittedEvent {
            seq,
            kind,
            host,
            stream,
            json: Bytes::copy_from_slice(&self.json),
        });
        pending.ts.push(millis);
        Ok(seq)
    }

    /// Every event of the group in one statement.
    fn insert_events(&mut self, g: &Group) -> Result<(), StoreError> {
        let n: usize = g.pending.iter().map(|p| p.events.len()).sum();
        if n == 0 {
            return Ok(());
        }
        let mut jobs = Vec::with_capacity(n);
        let mut seqs = Vec::with_capacity(n);
        let mut kinds = Vec::with_capacity(n);
        let mut hosts = Vec::with_capacity(n);
        let mut streams = Vec::with_capacity(n);
        let mut times = Vec::with_capacity(n);
        let mut jsons: Vec<&[u8]> = Vec::with_capacity(n);
        for p in &g.pending {
            for (e, ts) in p.events.iter().zip(&p.ts) {
                jobs.push(p.job as i64);
                seqs.push(e.seq as i64);
                kinds.push(e.kind);
                hosts.push(e.host.as_deref());
                streams.push(e.stream.map(|s| s.as_str()));
                times.push(*ts);
                jsons.push(&e.json);
            }
        }
        self.conn()?.execute(
            "INSERT INTO events (job, seq, kind, host, stream, ts, json) \
             SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], \
             $6::int8[], $7::bytea[])",
            &[&jobs, &seqs, &kinds, &hosts, &streams, &times, &jsons],
        )?;
        Ok(())
    }

    fn flush_meta(&mut self, g: &mut Group) -> Result<(), StoreError> {
        let c = self.conn()?;
        for (id, m) in g.jobs.iter_mut().filter(|(_, m)| m.dirty) {
            c.execute(
                "UPDATE jobs SET last_seq = $2, last_rseq = $3, log_bytes = $4, \
                 dropped_lines = $5 WHERE id = $1",
                &[
                    &(*id as i64),
                    &(m.last_seq as i64),
                    &(m.last_rseq as i64),
                    &(m.log_bytes as i64),
                    &(m.dropped as i64),
                ],
            )?;
            m.dirty = false;
        }
        Ok(())
    }

    fn sweep(&mut self, now: Timestamp) -> Result<u64, StoreError> {
        let cutoff = now.as_millis() - i64::from(self.limits.retention_days) * 86_400_000;
        let c = self.conn()?;
        let ids: Vec<i64> = c
            .query(
                "DELETE FROM jobs WHERE ended_ms IS NOT NULL AND ended_ms < $1 RETURNING id",
                &[&cutoff],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !ids.is_empty() {
            c.execute("DELETE FROM events WHERE job = ANY($1)", &[&ids])?;
            c.execute("DELETE FROM hosts WHERE job = ANY($1)", &[&ids])?;
            tracing::info!(jobs = ids.len(), "retention sweep deleted old jobs");
        }
        Ok(ids.len() as u64)
    }

    fn after_commit(&mut self, g: Group) {
        for p in g.pending {
            let state = g.jobs.get(&p.job).map_or(JobState::Running, |m| m.state);
            self.publish
                .publish(Arc::new(committed_batch(p.job, p.events, state)));
        }
        let mut changed = g.changed;
        changed.dedup();
        for id in changed {
            match self.conn().and_then(|c| read::job(c, id, false)) {
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
                    let view = self
                        .conn()
                        .and_then(|c| read::job(c, id, true))
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
    fn after_failure(&mut self, g: Group, mut touched: Vec<JobId>, error: StoreError) {
        tracing::error!(error = %Report(&error), "store commit failed; failing the jobs it carried");
        let said = Report(&error).to_string();
        let reason = format!("the gateway could not store its events: {said}");
        touched.sort_unstable();
        touched.dedup();
        if self.marking_failed {
            let at = Timestamp::now();
            for job in touched {
                let reason = reason.clone();
                self.unrecorded.insert(job, Unrecorded { reason, at });
            }
        } else {
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
            let unrecorded: Vec<(JobId, Unrecorded)> = touched
                .iter()
                .filter_map(|j| self.unrecorded.get(j).map(|f| (*j, f.clone())))
                .collect();
            for (job, failure) in unrecorded {
                if let Ok(Some(mut view)) = self.conn().and_then(|c| read::job(c, job, false)) {
                    crate::store::show_failure(&mut view, &failure);
                    self.publish.job_changed(&view);
                }
            }
        }
        for d in g.done {
            let e = || StoreError::Commit(said.clone());
            match d {
                Done::Job(_, r) => drop(r.send(Err(e()))),
                Done::U64(_, r) => drop(r.send(Err(e()))),
                Done::Unit(r) => drop(r.send(Err(e()))),
                Done::Failed(e2, r) => drop(r.send(Err(e2))),
            }
        }
    }
}

/// The op's reply, for a group that failed before reaching it.
fn unanswered(op: Op) -> Done {
    match op {
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
