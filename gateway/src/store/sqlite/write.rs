//! The writer's SQL on the embedded SQLite file: one connection, owned by the writer
//! thread, with the WAL kept small and checkpoints nudged as commits add up.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use shipwatch_protocol::api::JobView;
use shipwatch_protocol::{EventBody, HostState, JobId, JobSpec, JobState, Report, Timestamp};

use super::checkpoint::{Checkpointer, WalLimit};
use super::read;
use super::rows::Columns;
use crate::model::CommittedEvent;
use crate::store::writer::{Engine, JobRow};
use crate::store::{AuditRecord, SessionWrite, StoreError};

/// About what SQLite's own auto-checkpoint (1,000 pages) amounts to in event text.
const CHECKPOINT_BYTES: usize = 2 * 1024 * 1024;

/// The SQLite side of the writer: its connection and what it keeps between groups.
pub(in crate::store) struct SqliteWrites {
    conn: Connection,
    /// Asked for a checkpoint once about [`CHECKPOINT_BYTES`] have been committed.
    checkpoint: Checkpointer,
    since_checkpoint: usize,
    /// Keeps the WAL file small (checkpoint.rs).
    wal: WalLimit,
    /// `host_names` as committed: name → number.
    host_ids: HashMap<Box<str>, i64>,
}

impl SqliteWrites {
    pub(super) fn new(conn: Connection, checkpoint: Checkpointer, wal: WalLimit) -> Self {
        SqliteWrites {
            conn,
            checkpoint,
            since_checkpoint: 0,
            wal,
            host_ids: HashMap::new(),
        }
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
}

impl Engine for SqliteWrites {
    const KEEPS_JOB_ROWS: bool = true;
    const THREAD: &'static str = "store-writer";

    fn begin(&mut self) -> Result<(), StoreError> {
        Ok(self.conn.execute_batch("BEGIN")?)
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        Ok(self.conn.execute_batch("COMMIT")?)
    }

    fn rollback(&mut self) {
        if !self.conn.is_autocommit()
            && let Err(error) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::error!(error = %Report(&error), "store rollback failed");
        }
    }

    fn forget(&mut self) {
        // Names numbered in the rolled-back transaction are not numbered after all.
        self.host_ids.clear();
    }

    fn injected_full(&self) -> StoreError {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some("database or disk is full (injected by a test)".into()),
        ))
    }

    fn repeat(&self, error: &StoreError) -> StoreError {
        match error {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(code, msg)) => {
                StoreError::Sqlite(rusqlite::Error::SqliteFailure(*code, msg.clone()))
            }
            StoreError::Sqlite(other) => {
                StoreError::Sqlite(rusqlite::Error::InvalidParameterName(other.to_string()))
            }
            other => StoreError::Commit(other.to_string()),
        }
    }

    fn words(&self, error: &StoreError) -> String {
        // SQLite's message says it all ("database or disk is full").
        error.to_string()
    }

    fn job_row(&mut self, job: JobId) -> Result<Option<JobRow>, StoreError> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT last_seq, last_rseq, log_bytes, dropped_lines, state \
                 FROM jobs WHERE id = ?1",
            )?
            .query_row([job as i64], |r| {
                Ok(JobRow {
                    last_seq: r.get::<_, i64>(0)? as u64,
                    last_rseq: r.get::<_, i64>(1)? as u64,
                    log_bytes: r.get::<_, i64>(2)? as u64,
                    dropped: r.get::<_, i64>(3)? as u64,
                    state: r.get_ref(4)?.as_str()?.parse().unwrap_or(JobState::Failed),
                })
            })
            .optional()?;
        Ok(row)
    }

    fn save_job_row(&mut self, job: JobId, m: &JobRow) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE jobs SET last_seq = ?2, last_rseq = ?3, log_bytes = ?4, \
                 dropped_lines = ?5 WHERE id = ?1",
            )?
            .execute(params![
                job as i64,
                m.last_seq as i64,
                m.last_rseq as i64,
                m.log_bytes as i64,
                m.dropped as i64
            ])?;
        Ok(())
    }

    fn read_job(&mut self, id: JobId, full: bool) -> Result<Option<JobView>, StoreError> {
        read::job(&self.conn, id, full)
    }

    fn create(
        &mut self,
        spec: &JobSpec,
        params: &BTreeMap<String, String>,
        started_by: &str,
    ) -> Result<JobId, StoreError> {
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

    fn audit(&mut self, record: &AuditRecord) -> Result<(), StoreError> {
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
        Ok(())
    }

    fn session(&mut self, write: &SessionWrite) -> Result<(), StoreError> {
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

    fn sweep(&mut self, cutoff_ms: i64) -> Result<Vec<JobId>, StoreError> {
        let tx = &self.conn;
        let ids: Vec<i64> = tx
            .prepare_cached("SELECT id FROM jobs WHERE ended_ms IS NOT NULL AND ended_ms < ?1")?
            .query_map([cutoff_ms], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for id in &ids {
            tx.execute("DELETE FROM events WHERE job = ?1", [id])?;
            tx.execute("DELETE FROM hosts WHERE job = ?1", [id])?;
            tx.execute("DELETE FROM jobs WHERE id = ?1", [id])?;
        }
        Ok(ids.into_iter().map(|id| id as JobId).collect())
    }

    fn cap_pages(&mut self, extra: Option<u32>) -> Result<(), StoreError> {
        let pages: u32 = self
            .conn
            .pragma_query_value(None, "page_count", |r| r.get(0))?;
        let cap = extra.map_or(u32::MAX - 1, |extra| pages.saturating_add(extra));
        self.conn.pragma_update(None, "max_page_count", cap)?;
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
                at.to_string(),
                state.is_terminal()
            ])?;
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
        Ok(())
    }

    fn stage_event(
        &mut self,
        job: JobId,
        ts: Timestamp,
        body: &EventBody,
        event: &CommittedEvent,
    ) -> Result<(), StoreError> {
        let host_id = match body.host() {
            Some(name) => Some(self.host_id(name)?),
            None => None,
        };
        let columns = Columns::of(body);
        self.conn
            .prepare_cached(
                "INSERT INTO events (job, seq, ts, kind, host, text, state, exit_code) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                job as i64,
                event.seq as i64,
                ts.as_millis(),
                columns.kind,
                host_id,
                columns.text,
                columns.state,
                columns.exit_code,
            ])?;
        Ok(())
    }

    fn write_staged(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn committed(&mut self, bytes: usize) {
        self.wal.after_commit(&self.conn);
        self.since_checkpoint += bytes;
        if self.since_checkpoint >= CHECKPOINT_BYTES {
            self.since_checkpoint = 0;
            self.checkpoint.nudge();
        }
    }

    fn idle_after(&self) -> Option<Duration> {
        self.wal.idle_after()
    }

    fn idle(&mut self) {
        self.wal.idle(&self.conn);
    }
}
