//! The writer's SQL on PostgreSQL, over a connection that may drop and is then made
//! again for the next group.
//!
//! Unlike SQLite's, nothing about a job survives its group: the job's row is locked and
//! read in each group that writes it ([`Engine::KEEPS_JOB_ROWS`]), since another gateway
//! may have written it since. Events go in with one multi-row insert per group.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use bytes::Bytes;
use postgres::Client;
use shipwatch_protocol::api::JobView;
use shipwatch_protocol::{EventBody, HostState, JobId, JobSpec, JobState, Report, Timestamp};

use super::read;
use crate::model::CommittedEvent;
use crate::store::writer::{Engine, JobRow};
use crate::store::{AuditRecord, SessionWrite, StoreError};

/// An event of the group, kept for the group's insert.
struct Staged {
    job: JobId,
    seq: u64,
    kind: &'static str,
    host: Option<Arc<str>>,
    stream: Option<&'static str>,
    ts: i64,
    json: Bytes,
}

/// The PostgreSQL side of the writer.
pub(in crate::store) struct PgWrites {
    /// `None` once the connection failed; the next group connects again.
    client: Option<Client>,
    config: postgres::Config,
    staged: Vec<Staged>,
    /// The server process of `client`: the listener ignores our own notifications.
    pid: Arc<AtomicI32>,
}

/// The channel commits are announced on; [`super::listen`] follows it.
pub(in crate::store) const CHANNEL: &str = "shipwatch";
/// A notification's payload stays under PostgreSQL's 8,000 bytes.
const PAYLOAD_MAX: usize = 7_000;

impl PgWrites {
    pub(in crate::store) fn new(
        mut client: Client,
        config: postgres::Config,
        pid: Arc<AtomicI32>,
    ) -> Result<Self, StoreError> {
        pid.store(backend_pid(&mut client)?, Ordering::Relaxed);
        Ok(PgWrites {
            client: Some(client),
            config,
            staged: Vec::new(),
            pid,
        })
    }

    /// The connection, made again if the last one failed.
    fn conn(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            let mut client = self.config.connect(postgres::NoTls)?;
            self.pid.store(backend_pid(&mut client)?, Ordering::Relaxed);
            tracing::info!("store connected to PostgreSQL again");
            self.client = Some(client);
        }
        self.client.as_mut().ok_or(StoreError::WriterGone)
    }
}

fn backend_pid(client: &mut Client) -> Result<i32, StoreError> {
    Ok(client.query_one("SELECT pg_backend_pid()", &[])?.get(0))
}

/// Whether a PostgreSQL error means the server could not be reached or went away.
pub(in crate::store) fn is_lost_connection(error: &postgres::Error) -> bool {
    use std::error::Error as _;
    if error.is_closed() {
        return true;
    }
    if let Some(code) = error.code() {
        // Class 08: connection exceptions; 57P01-03: shutting down, cannot connect now.
        let code = code.code();
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03");
    }
    let mut source = error.source();
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

impl Engine for PgWrites {
    const KEEPS_JOB_ROWS: bool = false;
    const THREAD: &'static str = "store-pg-writer";

    fn begin(&mut self) -> Result<(), StoreError> {
        self.staged.clear();
        Ok(self.conn()?.batch_execute("BEGIN")?)
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        Ok(self.conn()?.batch_execute("COMMIT")?)
    }

    fn rollback(&mut self) {
        self.staged.clear();
        if let Some(client) = self.client.as_mut()
            && !client.is_closed()
            && let Err(error) = client.batch_execute("ROLLBACK")
        {
            tracing::error!(error = %Report(&error), "store rollback failed");
        }
    }

    fn injected_full(&self) -> StoreError {
        StoreError::Commit("database or disk is full (injected by a test)".into())
    }

    fn repeat(&self, error: &StoreError) -> StoreError {
        StoreError::Commit(self.words(error))
    }

    fn words(&self, error: &StoreError) -> String {
        // The driver's own message is "db error"; the server's words are its source.
        Report(error).to_string()
    }

    fn job_row(&mut self, job: JobId) -> Result<Option<JobRow>, StoreError> {
        let row = self.conn()?.query_opt(
            "SELECT last_seq, last_rseq, log_bytes, dropped_lines, state \
             FROM jobs WHERE id = $1 FOR UPDATE",
            &[&(job as i64)],
        )?;
        Ok(row.map(|row| JobRow {
            last_seq: row.get::<_, i64>(0) as u64,
            last_rseq: row.get::<_, i64>(1) as u64,
            log_bytes: row.get::<_, i64>(2) as u64,
            dropped: row.get::<_, i64>(3) as u64,
            state: read::parse_state(row.get(4)),
        }))
    }

    fn save_job_row(&mut self, job: JobId, m: &JobRow) -> Result<(), StoreError> {
        self.conn()?.execute(
            "UPDATE jobs SET last_seq = $2, last_rseq = $3, log_bytes = $4, \
             dropped_lines = $5 WHERE id = $1",
            &[
                &(job as i64),
                &(m.last_seq as i64),
                &(m.last_rseq as i64),
                &(m.log_bytes as i64),
                &(m.dropped as i64),
            ],
        )?;
        Ok(())
    }

    fn read_job(&mut self, id: JobId, full: bool) -> Result<Option<JobView>, StoreError> {
        read::job(self.conn()?, id, full)
    }

    fn create(
        &mut self,
        spec: &JobSpec,
        params: &BTreeMap<String, String>,
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

    fn session(&mut self, write: &SessionWrite) -> Result<(), StoreError> {
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
                    &[idle_before_ms, created_before_ms],
                )?;
                c.execute(
                    "INSERT INTO sessions (id_hash, username, created_ms, seen_ms) \
                     VALUES ($1, $2, $3, $3) ON CONFLICT (id_hash) DO UPDATE SET \
                     username = EXCLUDED.username, created_ms = EXCLUDED.created_ms, \
                     seen_ms = EXCLUDED.seen_ms",
                    &[&&id_hash[..], user, now_ms],
                )?;
            }
            SessionWrite::Touch { id_hash, seen_ms } => {
                c.execute(
                    "UPDATE sessions SET seen_ms = $2 WHERE id_hash = $1",
                    &[&&id_hash[..], seen_ms],
                )?;
            }
            SessionWrite::Delete { id_hash } => {
                c.execute("DELETE FROM sessions WHERE id_hash = $1", &[&&id_hash[..]])?;
            }
            SessionWrite::DeleteUsers { users } => {
                c.execute("DELETE FROM sessions WHERE username = ANY($1)", &[users])?;
            }
        }
        Ok(())
    }

    fn sweep(&mut self, cutoff_ms: i64) -> Result<Vec<JobId>, StoreError> {
        let c = self.conn()?;
        let ids: Vec<i64> = c
            .query(
                "DELETE FROM jobs WHERE ended_ms IS NOT NULL AND ended_ms < $1 RETURNING id",
                &[&cutoff_ms],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !ids.is_empty() {
            c.execute("DELETE FROM events WHERE job = ANY($1)", &[&ids])?;
            c.execute("DELETE FROM hosts WHERE job = ANY($1)", &[&ids])?;
        }
        Ok(ids.into_iter().map(|id| id as JobId).collect())
    }

    /// SQLite's page cap has no PostgreSQL counterpart.
    fn cap_pages(&mut self, _extra: Option<u32>) -> Result<(), StoreError> {
        Ok(())
    }

    fn host_changed(
        &mut self,
        job: JobId,
        host: &str,
        state: HostState,
        exit_code: Option<i32>,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.conn()?.execute(
            "UPDATE hosts SET state = $3, exit_code = $4, \
             started_at = CASE WHEN $3 = 'running' THEN $5 ELSE started_at END, \
             ended_at = CASE WHEN $6 THEN $5 ELSE ended_at END \
             WHERE job = $1 AND host = $2",
            &[
                &(job as i64),
                &host,
                &state.as_str(),
                &exit_code,
                &at.to_string(),
                &state.is_terminal(),
            ],
        )?;
        Ok(())
    }

    fn job_changed(
        &mut self,
        job: JobId,
        state: JobState,
        reason: Option<&str>,
        ts: Timestamp,
    ) -> Result<(), StoreError> {
        let at = ts.to_string();
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
                &reason,
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
        Ok(())
    }

    fn stage_event(
        &mut self,
        job: JobId,
        ts: Timestamp,
        _body: &EventBody,
        event: &CommittedEvent,
    ) -> Result<(), StoreError> {
        self.staged.push(Staged {
            job,
            seq: event.seq,
            kind: event.kind,
            host: event.host.clone(),
            stream: event.stream.map(|s| s.as_str()),
            ts: ts.as_millis(),
            json: event.json.clone(),
        });
        Ok(())
    }

    fn announce(
        &mut self,
        batches: &[(JobId, u64, u64)],
        changed: &[JobId],
        queue: bool,
    ) -> Result<(), StoreError> {
        // Lines `e JOB FIRST LAST`, `j JOB`, `q`; sent on commit, in commit order.
        let mut payloads = vec![String::new()];
        let mut line = |text: std::fmt::Arguments<'_>| {
            let last = payloads.last_mut().expect("one payload at least");
            if last.len() > PAYLOAD_MAX {
                payloads.push(String::new());
            }
            let last = payloads.last_mut().expect("one payload at least");
            let _ = writeln!(last, "{text}");
        };
        for (job, first, last) in batches {
            line(format_args!("e {job} {first} {last}"));
        }
        let mut seen = Vec::with_capacity(changed.len());
        for job in changed {
            if !seen.contains(job) {
                seen.push(*job);
                line(format_args!("j {job}"));
            }
        }
        if queue {
            line(format_args!("q"));
        }
        let c = self.conn()?;
        for payload in payloads.iter().filter(|p| !p.is_empty()) {
            c.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, payload])?;
        }
        Ok(())
    }

    fn lost_connection(&self, error: &StoreError) -> bool {
        matches!(error, StoreError::Postgres(e) if is_lost_connection(e))
    }

    /// Every event of the group in one statement.
    fn write_staged(&mut self) -> Result<(), StoreError> {
        let staged = std::mem::take(&mut self.staged);
        if staged.is_empty() {
            return Ok(());
        }
        let n = staged.len();
        let mut jobs = Vec::with_capacity(n);
        let mut seqs = Vec::with_capacity(n);
        let mut kinds = Vec::with_capacity(n);
        let mut hosts = Vec::with_capacity(n);
        let mut streams = Vec::with_capacity(n);
        let mut times = Vec::with_capacity(n);
        let mut jsons: Vec<&[u8]> = Vec::with_capacity(n);
        for e in &staged {
            jobs.push(e.job as i64);
            seqs.push(e.seq as i64);
            kinds.push(e.kind);
            hosts.push(e.host.as_deref());
            streams.push(e.stream);
            times.push(e.ts);
            jsons.push(&e.json);
        }
        self.conn()?.execute(
            "INSERT INTO events (job, seq, kind, host, stream, ts, json) \
             SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], \
             $6::int8[], $7::bytea[])",
            &[&jobs, &seqs, &kinds, &hosts, &streams, &times, &jsons],
        )?;
        Ok(())
    }
}
