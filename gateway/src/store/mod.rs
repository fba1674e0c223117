//! The store (DESIGN §1, §5, §11): one writer thread owns the write connection and
//! commits whatever is queued in one transaction, assigning each job's gapless `seq`, and
//! only then hands each job's batch to the [`Publisher`]; readers use their own
//! connections on blocking threads, so reads keep working while the writer is busy or
//! failing.
//!
//! [`Store`] is the one interface, over two engines: the embedded SQLite file of one box
//! (`sqlite/`) and a PostgreSQL database several gateways share (`pg/`). It is a handle,
//! not a trait: writes are [`writer::Op`]s on a channel to the one writer (`writer/`),
//! generic over the engine's SQL, so every write method is shared; each read
//! (`read.rs`) asks the engine the store is on. Callers never know which engine they
//! have, and no `dyn` future sits on the event path.

mod error;
mod pg;
mod read;
mod records;
mod shared;
mod sqlite;
mod writer;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use shipwatch_config::{PostgresUrl, StoreLocation};
use shipwatch_protocol::api::JobView;
use shipwatch_protocol::{EventBody, JobId, JobSpec, RunnerEvent, Timestamp};
use tokio::sync::oneshot;

use crate::model::CommittedBatch;
pub use error::StoreError;
pub(crate) use read::kind_name;
use read::{JobNumber, corrupt, count_as_failed, filter_takes, show_failure};
pub use records::{AuditRecord, SessionRow, SessionWrite};
pub use shared::OrphanedJob;

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

/// A cheap, cloneable handle on the store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    writes: std::sync::mpsc::Sender<writer::Op>,
    /// Job failures the writer could not record yet; reads show them.
    unrecorded: writer::UnrecordedJobs,
    /// Where reads go.
    db: Database,
    /// Woken when another gateway queued or ended a job (PostgreSQL only).
    queue: Arc<tokio::sync::Notify>,
    /// Ends the PostgreSQL listener thread with the last handle.
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The engine the store is on, for reads.
enum Database {
    Sqlite(Arc<sqlite::Sqlite>),
    Postgres(Arc<pg::Postgres>),
}

impl Store {
    /// Opens (creating and migrating) `<data_dir>/shipwatch.db` and starts the writer
    /// thread, which runs until every handle is dropped.
    pub fn open(
        data_dir: &Path,
        limits: StoreLimits,
        publish: Arc<dyn Publisher>,
    ) -> Result<Store, StoreError> {
        let (db, engine) = sqlite::Sqlite::open(data_dir)?;
        let unrecorded = writer::UnrecordedJobs::default();
        let writes = writer::spawn(engine, limits, publish, unrecorded.clone())?;
        Ok(Store {
            inner: Arc::new(Inner {
                writes,
                unrecorded,
                db: Database::Sqlite(Arc::new(db)),
                queue: Arc::default(),
                stop: Arc::default(),
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
            let writer_pid = Arc::new(std::sync::atomic::AtomicI32::new(0));
            let engine =
                pg::write::PgWrites::new(client, postgres.config.clone(), writer_pid.clone())?;
            // This gateway's commits and other gateways' reach the fan-out through one
            // sequencer, each job's in seq order.
            let sequencer = Arc::new(pg::listen::Sequencer::new(publish));
            let writes = writer::spawn(engine, limits, sequencer.clone(), unrecorded.clone())?;
            let queue = Arc::new(tokio::sync::Notify::new());
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            pg::listen::Listener {
                config: postgres.config.clone(),
                sequencer,
                writer_pid,
                queue: queue.clone(),
                stop: stop.clone(),
            }
            .spawn()
            .map_err(|source| StoreError::DataDir {
                path: "store-pg-listen thread".into(),
                source,
            })?;
            Ok(Store {
                inner: Arc::new(Inner {
                    writes,
                    unrecorded,
                    db: Database::Postgres(Arc::new(postgres)),
                    queue,
                    stop,
                }),
            })
        })
        .await?
    }

    /// The SQLite database file; empty for PostgreSQL.
    pub fn path(&self) -> &Path {
        match &self.inner.db {
            Database::Sqlite(db) => &db.path,
            Database::Postgres(_) => Path::new(""),
        }
    }

    /// Whether several gateways may share this store (PostgreSQL): then the queue is
    /// claimed ([`Store::claim_next`]) and gateways heartbeat ([`Store::heartbeat`]).
    pub fn is_shared(&self) -> bool {
        matches!(self.inner.db, Database::Postgres(_))
    }

    /// Waits until another gateway sharing the store queued or ended a job (a wake-up
    /// only: read the queue then). Never returns on a store of one box.
    pub async fn queue_changed(&self) {
        self.inner.queue.notified().await
    }

    /// Where the store is, for logs: the file, or the URL without its password.
    pub fn location(&self) -> String {
        match &self.inner.db {
            Database::Sqlite(db) => db.path.display().to_string(),
            Database::Postgres(pg) => pg.shown.clone(),
        }
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
}
