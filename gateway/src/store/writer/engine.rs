//! What the one writer asks of an engine: the SQL of each write, in that engine's dialect.
//! Everything else (grouping, `seq`, `rseq` dedupe, `max_log_bytes`, job and host state
//! transitions, publishing, failing the jobs of a failed commit) is the writer's, once.

use std::collections::BTreeMap;
use std::time::Duration;

use shipwatch_protocol::api::JobView;
use shipwatch_protocol::{EventBody, HostState, JobId, JobSpec, JobState, Timestamp};

use crate::model::CommittedEvent;
use crate::store::{AuditRecord, SessionWrite, StoreError};

/// The columns of a job's row every commit touches.
#[derive(Debug, Clone, Copy)]
pub(in crate::store) struct JobRow {
    pub last_seq: u64,
    pub last_rseq: u64,
    pub log_bytes: u64,
    pub dropped: u64,
    pub state: JobState,
}

/// One engine's writes, all inside the transaction the writer opened with
/// [`Engine::begin`] (except `begin`, `commit` and `rollback` themselves).
pub(in crate::store) trait Engine: Send + 'static {
    /// Whether a job's row read once stays true across groups: on SQLite only this writer
    /// writes it; on PostgreSQL another gateway may, so each group reads (and locks) it.
    const KEEPS_JOB_ROWS: bool;
    /// The writer thread's name.
    const THREAD: &'static str;

    fn begin(&mut self) -> Result<(), StoreError>;
    fn commit(&mut self) -> Result<(), StoreError>;
    /// Undoes an open transaction, if one is open; a failure is logged.
    fn rollback(&mut self);
    /// Forgets what the rolled-back group taught the engine (numbers it gave names).
    fn forget(&mut self) {}

    /// The error a test's `fail_commits` stands in for: a full disk.
    fn injected_full(&self) -> StoreError;
    /// A copy of a failed commit's error, for each op of its group.
    fn repeat(&self, error: &StoreError) -> StoreError;
    /// The words a job's reason quotes when a commit failed.
    fn words(&self, error: &StoreError) -> String;

    /// The job's row (locked for the group, where others may write it).
    fn job_row(&mut self, job: JobId) -> Result<Option<JobRow>, StoreError>;
    fn save_job_row(&mut self, job: JobId, row: &JobRow) -> Result<(), StoreError>;
    /// One job with its hosts and spec when `full`, as this transaction sees it.
    fn read_job(&mut self, id: JobId, full: bool) -> Result<Option<JobView>, StoreError>;

    /// A new queued job and its pending hosts; its id.
    fn create(
        &mut self,
        spec: &JobSpec,
        params: &BTreeMap<String, String>,
        started_by: &str,
    ) -> Result<JobId, StoreError>;
    fn audit(&mut self, record: &AuditRecord) -> Result<(), StoreError>;
    fn session(&mut self, write: &SessionWrite) -> Result<(), StoreError>;
    /// Deletes the jobs that ended before `cutoff_ms`, with their hosts and events.
    fn sweep(&mut self, cutoff_ms: i64) -> Result<Vec<JobId>, StoreError>;
    /// Lets the database grow by only `extra` pages (tests; a no-op where it means nothing).
    fn cap_pages(&mut self, extra: Option<u32>) -> Result<(), StoreError>;

    /// A host's state changed at `at`.
    fn host_changed(
        &mut self,
        job: JobId,
        host: &str,
        state: HostState,
        exit_code: Option<i32>,
        at: Timestamp,
    ) -> Result<(), StoreError>;
    /// The job's state changed at `at`; when it ended, hosts that never finished are
    /// marked skipped or cancelled.
    fn job_changed(
        &mut self,
        job: JobId,
        state: JobState,
        reason: Option<&str>,
        at: Timestamp,
    ) -> Result<(), StoreError>;
    /// Stores one event (now, or with the group's others in [`Engine::write_staged`]).
    fn stage_event(
        &mut self,
        job: JobId,
        ts: Timestamp,
        body: &EventBody,
        event: &CommittedEvent,
    ) -> Result<(), StoreError>;
    /// Writes what [`Engine::stage_event`] kept back, before the commit.
    fn write_staged(&mut self) -> Result<(), StoreError>;
    /// Tells other gateways, with the commit, what it brings: each job's batch as
    /// `(job, first seq, last seq)`, the jobs whose state changed, whether the queue did.
    fn announce(
        &mut self,
        _batches: &[(JobId, u64, u64)],
        _changed: &[JobId],
        _queue: bool,
    ) -> Result<(), StoreError> {
        Ok(())
    }
    /// Whether `error` says the database could not be reached (worth trying again).
    fn lost_connection(&self, _error: &StoreError) -> bool {
        false
    }

    /// After each commit, with the bytes of event JSON it carried.
    fn committed(&mut self, _bytes: usize) {}
    /// How long the writer may wait for work before [`Engine::idle`] is due.
    fn idle_after(&self) -> Option<Duration> {
        None
    }
    /// Nothing came for [`Engine::idle_after`].
    fn idle(&mut self) {}
}
