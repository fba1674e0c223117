//! The store (DESIGN §1, §5, §11): one writer thread owns the write connection and
//! commits whatever is queued in one transaction, assigning each job's gapless `seq`, and
//! only then hands each job's batch to the [`Publisher`]; readers use their own
//! connections on blocking threads, so reads keep working while the writer is busy or
//! failing.
//!
//! [`Store`] is the one interface, over two engines: the embedded SQLite file of one box
//! (this module, `writer`, `schema`, `checkpoint`) and a PostgreSQL database several
//! gateways share (`pg/`). It is a handle, not a trait: writes are the same [`writer::Op`]s
//! on the same channel whichever writer thread takes them, so every write method is
//! shared; each read asks PostgreSQL when the store is there and SQLite otherwise. Callers
//! never know which engine they have, and no `dyn` future sits on the event path.

mod checkpoint;
mod pg;
mod rows;
mod schema;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use shipwatch_protocol::api::{AuditEntry, Counts, HostView, JobView};
use shipwatch_protocol::{
    EventBody, HostState, JobId, JobSpec, JobState, RunnerEvent, Stream, Timestamp,
};
use tokio::sync::oneshot;

use shipwatch_config::{PostgresUrl, StoreLocation};

use crate::model::{CommittedBatch, CommittedEvent, EventFilter};

/// Where the writer hands each committed batch and each job state change: the fan-out.
pub trait Publisher: Send + Sync + 'static {
    /// A batch of one job's events, committed, in `seq` order. Called on the writer
    /// thread: must never block.
    fn publish(&self, batch: Arc<CommittedBatch>);
    /// A job was created or changed state (for `/ws/jobs`). Must never block.
    fn job_changed(&self, job: &JobView);
}

/// A publisher that drops everything: for tools and tests that only need the store.
pub struct NoPublisher;

impl Publisher for NoPublisher {
    fn publish(&self, _batch: Arc<CommittedBatch>) {}
    fn job_changed(&self, _job: &JobView) {}
}

/// The `[server]` limits the store enforces.
#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    /// Past this many bytes of line text (UTF-8, no newline; nothing else counts) a
    /// job's further lines are counted, not stored.
    pub max_log_bytes: u64,
    /// Finished jobs older than this many days are deleted by [`Store::sweep`].
    pub retention_days: u32,
}

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {}", path.display())]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// SQLite's own words ("database or disk is full") say what happened.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("unexpected stored value")]
    Value(#[from] rusqlite::types::FromSqlError),
    /// PostgreSQL's own words (connection refused, a constraint) say what happened.
    #[error(transparent)]
    Postgres(#[from] postgres::Error),
    /// A commit failed; its error was logged once and the job's reason names it.
    #[error("the store could not commit: {0}")]
    Commit(String),
    #[error("this store is one box's: its queue needs no claims")]
    NotShared,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the database schema is version {found}, newer than this binary's {known}")]
    TooNew { found: u32, known: u32 },
    #[error("job {0} does not exist")]
    NoSuchJob(JobId),
    #[error("job {job} is {state}, it takes no more events")]
    Finished { job: JobId, state: JobState },
    #[error("the store's writer has stopped")]
    WriterGone,
    #[error("a blocking store task failed")]
    Join(#[from] tokio::task::JoinError),
}

/// What happened, for [`Store::record`]: never a secret in any field.
#[derive(Debug, Clone, Default)]
pub struct AuditRecord {
    pub actor: String,
    pub action: String,
    pub job: Option<JobId>,
    pub detail: String,
    pub addr: String,
    pub outcome: String,
}

/// A login session as stored: only the SHA-256 of its id, never the id itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub user: String,
    /// Milliseconds since the Unix epoch.
    pub created_ms: i64,
    pub seen_ms: i64,
}

/// The session writes the auth layer asks of the store.
#[derive(Debug, Clone)]
pub enum SessionWrite {
    /// A new session; sessions unused since `idle_before_ms` or made before
    /// `created_before_ms` are deleted in the same transaction.
    Create {
        id_hash: [u8; 32],
        user: String,
        now_ms: i64,
        idle_before_ms: i64,
        created_before_ms: i64,
    },
    /// The session was used at `seen_ms`.
    Touch { id_hash: [u8; 32], seen_ms: i64 },
    /// Logout or expiry.
    Delete { id_hash: [u8; 32] },
    /// Every session of these users (removed from the config).
    DeleteUsers { users: Vec<String> },
}

/// A cheap, cloneable handle on the store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writes: std::sync::mpsc::Sender<writer::Op>,
    /// Idle read connections; a reader takes one or opens a new one.
    readers: Mutex<Vec<Connection>>,
    /// At most [`READ_POOL`] reads at once. Without it a hundred watchers catching up
    /// opened a hundred connections, and SQLite keeps a closed connection's descriptor
    /// while another connection of the process holds a lock on the file (so POSIX locks
    /// survive), so the store's descriptors grew to the highest concurrency ever seen.
    reading: Arc<tokio::sync::Semaphore>,
    /// Job failures the writer could not record yet; reads show them.
    unrecorded: writer::UnrecordedJobs,
    /// Set when the store is PostgreSQL: reads go there and `readers` stays empty.
    postgres: Option<Arc<pg::Postgres>>,
}

/// Readers kept open between requests.
const READ_POOL: usize = 8;

impl Store {
    /// Opens (creating and migrating) `<data_dir>/shipwatch.db` and starts the writer
    /// thread, which runs until every handle is dropped.
    pub fn open(
        data_dir: &Path,
        limits: StoreLimits,
        publish: Arc<dyn Publisher>,
    ) -> Result<Store, StoreError> {
        let path = data_dir.join("shipwatch.db");
        make_private(data_dir, &path).map_err(|source| StoreError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let conn = Connection::open(&path)?;
        schema::prepare_writer(&conn)?;
        schema::migrate(&conn)?;
        let checkpoint = checkpoint::spawn(&path)?;
        let unrecorded = writer::UnrecordedJobs::default();
        let wal = checkpoint::WalLimit::new(&path);
        let writes = writer::spawn(conn, limits, publish, checkpoint, wal, unrecorded.clone())?;
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                writes,
                readers: Mutex::new(Vec::new()),
                reading: Arc::new(tokio::sync::Semaphore::new(READ_POOL)),
                unrecorded,
                postgres: None,
            }),
        })
    }

    /// Opens the store `[store]` names: SQLite in `data_dir`, or the PostgreSQL database
    /// (connecting and migrating it first).
    pub async fn open_at(
        location: &StoreLocation,
        data_dir: &Path,
        limits: StoreLimits,
        publish: Arc<dyn Publisher>,
    ) -> Result<Store, StoreError> {
        match location {
            StoreLocation::Sqlite => Store::open(data_dir, limits, publish),
            StoreLocation::Postgres(url) => Store::open_postgres(url, limits, publish).await,
        }
    }

    /// Connects to the PostgreSQL database at `url`, brings its schema up to date and
    /// starts the writer thread, which runs until every handle is dropped.
    pub async fn open_postgres(
        url: &PostgresUrl,
        limits: StoreLimits,
        publish: Arc<dyn Publisher>,
    ) -> Result<Store, StoreError> {
        let url = url.clone();
        // Connecting blocks (on the client's own runtime): not on an async thread.
        tokio::task::spawn_blocking(move || {
            let (postgres, client) = pg::Postgres::open(&url)?;
            let unrecorded = writer::UnrecordedJobs::default();
            let writes = pg::writer::spawn(
                client,
                postgres.config.clone(),
                limits,
                publish,
                unrecorded.clone(),
            )?;
            Ok(Store {
                inner: Arc::new(Inner {
                    path: PathBuf::new(),
                    writes,
                    readers: Mutex::new(Vec::new()),
                    reading: Arc::new(tokio::sync::Semaphore::new(READ_POOL)),
                    unrecorded,
                    postgres: Some(Arc::new(postgres)),
                }),
            })
        })
        .await?
    }

    /// The SQLite database file; empty for PostgreSQL.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Where the store is, for logs: the file, or the URL without its password.
    pub fn location(&self) -> String {
        match &self.inner.postgres {
            Some(pg) => pg.shown.clone(),
            None => self.inner.path.display().to_string(),
        }
    }

    /// The PostgreSQL side, when the store is there.
    fn pg(&self) -> Option<&Arc<pg::Postgres>> {
        self.inner.postgres.as_ref()
    }

    async fn write<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> writer::Op,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .writes
            .send(make(tx))
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Queues a new job (state `queued`, every host `pending`).
    pub async fn create_job(
        &self,
        spec: JobSpec,
        params: BTreeMap<String, String>,
        started_by: &str,
    ) -> Result<JobView, StoreError> {
        let started_by = started_by.to_string();
        self.write(|reply| writer::Op::Create {
            spec: Box::new(spec),
            params,
            started_by,
            reply,
        })
        .await
    }

    /// Commits a runner's events, skipping those at or below the job's committed `rseq`
    /// (resends after a reconnect). Returns the highest committed `rseq`, for the Ack.
    pub async fn append(&self, job: JobId, events: Vec<RunnerEvent>) -> Result<u64, StoreError> {
        self.write(|reply| writer::Op::Append { job, events, reply })
            .await
    }

    /// Like [`Store::append`] but queues the events now, so several frames can be in
    /// flight and still commit (and be acked) in the order they were submitted.
    pub fn submit(
        &self,
        job: JobId,
        events: Vec<RunnerEvent>,
    ) -> impl std::future::Future<Output = Result<u64, StoreError>> + Send + 'static {
        let (reply, rx) = oneshot::channel();
        let sent = self
            .inner
            .writes
            .send(writer::Op::Append { job, events, reply })
            .map_err(|_| StoreError::WriterGone);
        async move {
            sent?;
            rx.await.map_err(|_| StoreError::WriterGone)?
        }
    }

    /// Commits an event the gateway itself makes (running, lost, cancelled…), with the
    /// host and job tables updated in the same transaction; returns its `seq`.
    pub async fn gateway_event(&self, job: JobId, body: EventBody) -> Result<u64, StoreError> {
        self.write(|reply| writer::Op::Gateway { job, body, reply })
            .await
    }

    /// Records who did what (from an unknown address, successfully).
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        job: Option<JobId>,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.record(AuditRecord {
            actor: actor.to_string(),
            action: action.to_string(),
            job,
            detail: detail.to_string(),
            addr: String::new(),
            outcome: "ok".to_string(),
        })
        .await
    }

    /// Records who did what, from where, with what outcome.
    pub async fn record(&self, record: AuditRecord) -> Result<(), StoreError> {
        self.write(|reply| writer::Op::Audit {
            record: Box::new(record),
            reply,
        })
        .await
    }

    /// Applies one session change.
    pub async fn session_write(&self, write: SessionWrite) -> Result<(), StoreError> {
        self.write(|reply| writer::Op::Session { write, reply })
            .await
    }

    /// The stored session whose id hashes to `id_hash`.
    pub async fn session(&self, id_hash: [u8; 32]) -> Result<Option<SessionRow>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.read(move |c| pg::read::session(c, id_hash)).await;
        }
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT user, created_ms, seen_ms FROM sessions WHERE id_hash = ?1",
            )?
            .query_row([&id_hash[..]], |r| {
                Ok(SessionRow {
                    user: r.get(0)?,
                    created_ms: r.get(1)?,
                    seen_ms: r.get(2)?,
                })
            })
            .optional()?)
        })
        .await
    }

    /// Deletes finished jobs older than `retention_days`; returns how many.
    pub async fn sweep(&self) -> Result<u64, StoreError> {
        self.sweep_before(Timestamp::now()).await
    }

    /// Deletes jobs that ended more than `retention_days` before `now`.
    pub async fn sweep_before(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.write(|reply| writer::Op::Sweep { now, reply }).await
    }

    /// Waits until everything queued before it is committed (shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.write(|reply| writer::Op::Flush { reply }).await
    }

    /// Makes every commit fail as a full disk would, until called with `false` (tests only).
    #[doc(hidden)]
    pub async fn fail_commits_for_test(&self, fail: bool) -> Result<(), StoreError> {
        self.write(|reply| writer::Op::FailCommits { fail, reply })
            .await
    }

    /// From now on the database may grow by only `extra` pages (`None`: no limit), as if
    /// the disk were that close to full (tests only).
    #[doc(hidden)]
    pub async fn cap_pages_for_test(&self, extra: Option<u32>) -> Result<(), StoreError> {
        self.write(|reply| writer::Op::CapPages { extra, reply })
            .await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        // The semaphore is never closed, so acquiring only fails if it were.
        let permit = inner.reading.clone().acquire_owned().await.ok();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pooled = inner.readers.lock().ok().and_then(|mut p| p.pop());
            let conn = match pooled {
                Some(c) => c,
                None => open_reader(&inner.path)?,
            };
            let out = f(&conn);
            if let Ok(mut pool) = inner.readers.lock()
                && pool.len() < READ_POOL
            {
                pool.push(conn);
            }
            out
        })
        .await?
    }

    /// One job with its hosts and spec.
    pub async fn job(&self, id: JobId) -> Result<Option<JobView>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.read(move |c| pg::read::job(c, id, true)).await;
        }
        self.read(move |c| read_job(c, id, true)).await
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
        if let Some(pg) = self.pg() {
            let mut jobs = pg.read(move |c| pg::read::jobs(c, limit, before)).await?;
            self.show_unrecorded(&mut jobs);
            return Ok(jobs);
        }
        self.read(move |c| {
            let mut stmt =
                c.prepare_cached("SELECT id FROM jobs WHERE id < ?1 ORDER BY id DESC LIMIT ?2")?;
            let ids: Vec<JobId> = stmt
                .query_map(
                    params![before.unwrap_or(i64::MAX as u64) as i64, limit],
                    |r| r.get::<_, i64>(0),
                )?
                .map(|r| r.map(|v| v as JobId))
                .collect::<Result<_, _>>()?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(j) = read_job(c, id, false)? {
                    out.push(j);
                }
            }
            Ok(out)
        })
        .await
        .map(|mut jobs| {
            self.show_unrecorded(&mut jobs);
            jobs
        })
    }

    /// Jobs in one of `states`, oldest first (dispatch: queued and running at start).
    pub async fn jobs_in_state(&self, states: &[JobState]) -> Result<Vec<JobView>, StoreError> {
        let states: Vec<&'static str> = states.iter().map(|s| s.as_str()).collect();
        if let Some(pg) = self.pg() {
            let mut jobs = pg
                .read(move |c| pg::read::jobs_in_state(c, &states))
                .await?;
            if let Ok(unrecorded) = self.inner.unrecorded.lock() {
                jobs.retain(|j| !unrecorded.contains_key(&j.id));
            }
            return Ok(jobs);
        }
        self.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT id FROM jobs WHERE state = ?1 ORDER BY id")?;
            let mut out = Vec::new();
            for s in states {
                let ids: Vec<i64> = stmt
                    .query_map([s], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                for id in ids {
                    if let Some(j) = read_job(c, id as JobId, true)? {
                        out.push(j);
                    }
                }
            }
            out.sort_by_key(|j| j.id);
            Ok(out)
        })
        .await
        .map(|mut jobs| {
            // Failed, though the store could not record it yet: never to be run again.
            if let Ok(unrecorded) = self.inner.unrecorded.lock() {
                jobs.retain(|j| !unrecorded.contains_key(&j.id));
            }
            jobs
        })
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
        if let Some(pg) = self.pg() {
            return pg
                .read(move |c| pg::read::events(c, job, after, &filter, limit))
                .await;
        }
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {} FROM events WHERE job = ?1 AND seq > ?2 ORDER BY seq",
                rows::SELECT
            ))?;
            let mut found = stmt.query(params![job as i64, after as i64])?;
            let mut decoder = rows::Decoder::new(c, job);
            let mut out = Vec::with_capacity(limit.min(65_536));
            while let Some(r) = found.next()? {
                if out.len() >= limit {
                    break;
                }
                let head = decoder.head(r)?;
                if !filter_takes(&filter, head.kind, head.host.as_deref(), head.stream) {
                    continue;
                }
                out.push(decoder.event(r, head)?);
            }
            Ok(out)
        })
        .await
    }

    /// Claims the oldest queued job no gateway has claimed yet for `gateway`, so of
    /// several gateways sharing a PostgreSQL store exactly one runs it (DESIGN §11). A
    /// claim ends when the job is queued again. `None`: nothing is left to claim. The
    /// SQLite store belongs to one gateway, which owns its queue: [`StoreError::NotShared`].
    pub async fn claim_next(&self, gateway: &str) -> Result<Option<JobId>, StoreError> {
        let Some(pg) = self.pg() else {
            return Err(StoreError::NotShared);
        };
        let gateway = gateway.to_string();
        pg.read(move |c| pg::read::claim_next(c, &gateway)).await
    }

    /// The job's highest committed `seq` (0 when it has none).
    pub async fn last_seq(&self, job: JobId) -> Result<u64, StoreError> {
        if let Some(pg) = self.pg() {
            return pg
                .read(move |c| pg::read::job_number(c, job, pg::read::JobNumber::LastSeq))
                .await;
        }
        self.read(move |c| {
            let v: Option<i64> = c
                .prepare_cached("SELECT last_seq FROM jobs WHERE id = ?1")?
                .query_row([job as i64], |r| r.get(0))
                .optional()?;
            v.map(|v| v as u64).ok_or(StoreError::NoSuchJob(job))
        })
        .await
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
        if let Some(pg) = self.pg() {
            return pg
                .read(move |c| pg::read::audit_page(c, limit, before))
                .await;
        }
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, ts, actor, action, job, detail, addr, outcome FROM audit \
                 WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![before.unwrap_or(i64::MAX), limit], |r| {
                Ok(AuditEntry {
                    id: r.get(0)?,
                    ts: r.get(1)?,
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    job: r.get::<_, Option<i64>>(4)?.map(|v| v as JobId),
                    detail: r.get(5)?,
                    addr: r.get(6)?,
                    outcome: r.get(7)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// How many jobs are in each state (for `/metrics`); states with none are absent.
    pub async fn jobs_by_state(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let unrecorded: Vec<JobId> = self
            .inner
            .unrecorded
            .lock()
            .map(|u| u.keys().copied().collect())
            .unwrap_or_default();
        if let Some(pg) = self.pg() {
            return pg
                .read(move |c| pg::read::jobs_by_state(c, &unrecorded))
                .await;
        }
        self.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT state, count(*) FROM jobs GROUP BY state")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
            let mut counts: Vec<(String, u64)> = rows.collect::<Result<_, _>>()?;
            // Count a failure not recorded yet as what it is.
            for id in unrecorded {
                let stored: Option<String> = c
                    .prepare_cached("SELECT state FROM jobs WHERE id = ?1")?
                    .query_row([id as i64], |r| r.get(0))
                    .optional()?;
                if let Some(stored) = stored {
                    count_as_failed(&mut counts, &stored);
                }
            }
            Ok(counts)
        })
        .await
    }

    /// Lines of a job counted but not stored past `max_log_bytes`.
    pub async fn dropped_lines(&self, job: JobId) -> Result<u64, StoreError> {
        if let Some(pg) = self.pg() {
            return pg
                .read(move |c| pg::read::job_number(c, job, pg::read::JobNumber::DroppedLines))
                .await;
        }
        self.read(move |c| {
            let v: Option<i64> = c
                .prepare_cached("SELECT dropped_lines FROM jobs WHERE id = ?1")?
                .query_row([job as i64], |r| r.get(0))
                .optional()?;
            v.map(|v| v as u64).ok_or(StoreError::NoSuchJob(job))
        })
        .await
    }
}

/// Moves one job stored as `stored` to the failed count: a failure not recorded yet.
fn count_as_failed(counts: &mut Vec<(String, u64)>, stored: &str) {
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

/// The store holds every line scripts printed and the sessions: `data_dir` is made 0700
/// and the database 0600 whatever the umask (SQLite gives its `-wal` and `-shm` files the
/// database file's mode).
fn make_private(data_dir: &Path, db: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)?;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))?;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(db)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = db.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
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

fn filter_takes(f: &EventFilter, kind: &str, host: Option<&str>, stream: Option<Stream>) -> bool {
    if let Some(kinds) = &f.kinds
        && !kinds.iter().any(|k| k == kind)
    {
        return false;
    }
    if let Some(hosts) = &f.hosts {
        // Job and notice events concern every host.
        if let Some(h) = host
            && !hosts.iter().any(|x| x == h)
        {
            return false;
        }
    }
    if let Some(streams) = &f.streams
        && let Some(s) = stream
        && !streams.contains(&s)
    {
        return false;
    }
    true
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// A failure the store could not record yet, shown on the job as it will be recorded.
fn show_failure(view: &mut JobView, failure: &writer::Unrecorded) {
    view.state = JobState::Failed;
    view.reason = Some(failure.reason.clone());
    if view.ended_at.is_none() {
        view.ended_at = Some(failure.at.to_string());
    }
}

/// Reads one job (with hosts and spec when `full`).
pub(crate) fn read_job(
    c: &Connection,
    id: JobId,
    full: bool,
) -> Result<Option<JobView>, StoreError> {
    let row = c
        .prepare_cached(
            "SELECT task, state, params, started_by, created_at, started_at, ended_at, reason, spec \
             FROM jobs WHERE id = ?1",
        )?
        .query_row([id as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, String>(8)?,
            ))
        })
        .optional()?;
    let Some((task, state, params, started_by, created_at, started_at, ended_at, reason, spec)) =
        row
    else {
        return Ok(None);
    };
    let mut counts = Counts::default();
    let mut hosts = Vec::new();
    let mut stmt = c.prepare_cached(
        "SELECT host, state, exit_code, wave, started_at, ended_at FROM hosts \
         WHERE job = ?1 ORDER BY wave, rowid",
    )?;
    let mut rows = stmt.query([id as i64])?;
    while let Some(r) = rows.next()? {
        let state: HostState = r.get_ref(1)?.as_str()?.parse().map_err(corrupt)?;
        *counts.of_mut(state) += 1;
        if full {
            hosts.push(HostView {
                host: r.get(0)?,
                state,
                exit_code: r.get(2)?,
                wave: r.get(3)?,
                started_at: r.get(4)?,
                ended_at: r.get(5)?,
            });
        }
    }
    Ok(Some(JobView {
        id,
        task,
        state: state.parse().map_err(corrupt)?,
        params: serde_json::from_str(&params).map_err(corrupt)?,
        started_by,
        created_at,
        started_at,
        ended_at,
        reason,
        counts,
        hosts: full.then_some(hosts),
        spec: if full {
            Some(serde_json::from_str(&spec).map_err(corrupt)?)
        } else {
            None
        },
    }))
}
