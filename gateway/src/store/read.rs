//! The store's reads: each runs on the engine the store is on (`sqlite/read.rs`,
//! `pg/read.rs`, the same functions by name), with the failures the writer could not
//! record yet shown as they will be recorded.

use shipwatch_protocol::api::{AuditEntry, JobView};
use shipwatch_protocol::{JobId, JobState, Stream};

use super::{Database, Store, StoreError, pg, sqlite, writer};
use crate::model::{CommittedEvent, EventFilter, RowRef};
use crate::store::SessionRow;

/// Runs `module::read_fn(connection, args…)` on the store's engine, off the async threads.
macro_rules! on_engine {
    ($store:expr, $read:ident($($arg:expr),*)) => {
        match &$store.inner.db {
            Database::Sqlite(db) => db.read(move |c| sqlite::read::$read(c, $($arg),*)).await,
            Database::Postgres(db) => db.read(move |c| pg::read::$read(c, $($arg),*)).await,
        }
    };
}

/// The numbers of a job's row one can read alone.
pub(super) enum JobNumber {
    LastSeq,
    DroppedLines,
}

impl Store {
    /// One job with its hosts and spec.
    pub async fn job(&self, id: JobId) -> Result<Option<JobView>, StoreError> {
        on_engine!(self, job(id, true))
    }

    /// The job as the API shows it: as stored, or failed when the store failed it but
    /// could not record that yet (the disk is full). Watchers read [`Store::job`]: they
    /// end with the stored final event, which comes once the failure is recorded.
    pub async fn job_shown(&self, id: JobId) -> Result<Option<JobView>, StoreError> {
        let mut job = self.job(id).await?;
        if let Some(view) = job.as_mut() {
            self.show_unrecorded(std::slice::from_mut(view));
        }
        Ok(job)
    }

    /// Shows failures the writer could not record yet (the disk is full) on `jobs`.
    fn show_unrecorded(&self, jobs: &mut [JobView]) {
        let Ok(unrecorded) = self.inner.unrecorded.lock() else {
            return;
        };
        if unrecorded.is_empty() {
            return;
        }
        for view in jobs {
            if let Some(failure) = unrecorded.get(&view.id) {
                show_failure(view, failure);
            }
        }
    }

    /// Jobs newest first, without hosts or spec, as the API shows them (see
    /// [`Store::job_shown`]).
    pub async fn jobs(
        &self,
        limit: u32,
        before: Option<JobId>,
    ) -> Result<Vec<JobView>, StoreError> {
        let mut jobs = on_engine!(self, jobs(limit, before))?;
        self.show_unrecorded(&mut jobs);
        Ok(jobs)
    }

    /// Jobs in one of `states`, oldest first (dispatch: queued and running at start).
    pub async fn jobs_in_state(&self, states: &[JobState]) -> Result<Vec<JobView>, StoreError> {
        let states: Vec<&'static str> = states.iter().map(|s| s.as_str()).collect();
        let mut jobs = on_engine!(self, jobs_in_state(&states))?;
        // Failed, though the store could not record it yet: never to be run again.
        if let Ok(unrecorded) = self.inner.unrecorded.lock() {
            jobs.retain(|j| !unrecorded.contains_key(&j.id));
        }
        Ok(jobs)
    }

    /// Up to `limit` committed events with `seq > after` that `filter` takes, in order.
    pub async fn read_events(
        &self,
        job: JobId,
        after: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Vec<CommittedEvent>, StoreError> {
        let filter = filter.clone();
        on_engine!(self, events(job, after, &filter, limit))
    }

    /// Up to `limit` events with `seq > after`, in order, each handed to `each` with
    /// `state` on the reading thread as a [`RowRef`]: for a reader that writes a whole log
    /// in its own encoding without a JSON object per line (the log endpoint). Returns
    /// `state` and how many events it was handed. PostgreSQL hands every event as its
    /// JSON.
    pub async fn scan_events<T: Send + 'static>(
        &self,
        job: JobId,
        after: u64,
        limit: usize,
        mut state: T,
        each: fn(&mut T, RowRef<'_>),
    ) -> Result<(T, usize), StoreError> {
        match &self.inner.db {
            Database::Sqlite(db) => {
                db.read(move |c| {
                    let n = sqlite::read::scan_events(c, job, after, limit, &mut |row| {
                        each(&mut state, row)
                    })?;
                    Ok((state, n))
                })
                .await
            }
            Database::Postgres(db) => {
                let all = EventFilter::default();
                let events = db
                    .read(move |c| pg::read::events(c, job, after, &all, limit))
                    .await?;
                for e in &events {
                    each(&mut state, RowRef::Event(e));
                }
                Ok((state, events.len()))
            }
        }
    }

    /// The stored session whose id hashes to `id_hash`.
    pub async fn session(&self, id_hash: [u8; 32]) -> Result<Option<SessionRow>, StoreError> {
        on_engine!(self, session(id_hash))
    }

    /// The job's highest committed `seq` (0 when it has none).
    pub async fn last_seq(&self, job: JobId) -> Result<u64, StoreError> {
        on_engine!(self, job_number(job, JobNumber::LastSeq))
    }

    /// Lines of a job counted but not stored past `max_log_bytes`.
    pub async fn dropped_lines(&self, job: JobId) -> Result<u64, StoreError> {
        on_engine!(self, job_number(job, JobNumber::DroppedLines))
    }

    /// The newest `limit` audit records, newest first.
    pub async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        self.audit_page(limit, None).await
    }

    /// Up to `limit` audit records with `id < before`, newest first.
    pub async fn audit_page(
        &self,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        on_engine!(self, audit_page(limit, before))
    }

    /// How many jobs are in each state (for `/metrics`); states with none are absent.
    pub async fn jobs_by_state(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let unrecorded: Vec<JobId> = self
            .inner
            .unrecorded
            .lock()
            .map(|u| u.keys().copied().collect())
            .unwrap_or_default();
        on_engine!(self, jobs_by_state(&unrecorded))
    }
}

/// Moves one job stored as `stored` to the failed count: a failure not recorded yet.
pub(super) fn count_as_failed(counts: &mut Vec<(String, u64)>, stored: &str) {
    if stored == JobState::Failed.as_str() {
        return;
    }
    if let Some((_, n)) = counts.iter_mut().find(|(s, _)| s == stored) {
        *n = n.saturating_sub(1);
    }
    match counts
        .iter_mut()
        .find(|(s, _)| s == JobState::Failed.as_str())
    {
        Some((_, n)) => *n += 1,
        None => counts.push((JobState::Failed.as_str().to_owned(), 1)),
    }
}

/// The `&'static str` kind names `CommittedEvent` carries.
pub(crate) fn kind_name(s: &str) -> &'static str {
    match s {
        "line" => "line",
        "host" => "host",
        "job" => "job",
        _ => "notice",
    }
}

/// Whether an event of this kind, host and stream passes `f`. Job and notice events
/// concern every host.
pub(super) fn filter_takes(
    f: &EventFilter,
    kind: &str,
    host: Option<&str>,
    stream: Option<Stream>,
) -> bool {
    if let Some(kinds) = &f.kinds
        && !kinds.iter().any(|k| k == kind)
    {
        return false;
    }
    if let Some(hosts) = &f.hosts
        && let Some(h) = host
        && !hosts.iter().any(|x| x == h)
    {
        return false;
    }
    if let Some(streams) = &f.streams
        && let Some(s) = stream
        && !streams.contains(&s)
    {
        return false;
    }
    true
}

pub(super) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// A failure the store could not record yet, shown on the job as it will be recorded.
pub(super) fn show_failure(view: &mut JobView, failure: &writer::Unrecorded) {
    view.state = JobState::Failed;
    view.reason = Some(failure.reason.clone());
    if view.ended_at.is_none() {
        view.ended_at = Some(failure.at.to_string());
    }
}
