//! WAL checkpoints on their own thread. SQLite's automatic checkpoint runs inside the
//! commit that crosses the threshold, copying pages into the database file and syncing
//! it there: a stall of milliseconds in the writer, which every watcher then sees as
//! latency. Here the writer only appends to the WAL and nudges this thread about as
//! often as SQLite would have checkpointed; it folds the WAL back meanwhile.
//!
//! A passive checkpoint never makes the WAL smaller, though: SQLite starts writing it
//! from the top again only when a checkpoint has caught up with the last commit, which
//! under a steady flood of lines never happens, so the WAL grew with the whole job (a
//! 152 MB WAL beside a 72 MB database, issue 13). [`WalLimit`] bounds it: once the file
//! passes [`WAL_MAX_BYTES`] the writer itself checkpoints everything and truncates it,
//! between two commits (the passive runs have copied most pages by then, so that is the
//! last few), and it truncates it again once the writer has been idle a moment, so a
//! finished job leaves no WAL behind.

use shipwatch_protocol::Report;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::store::StoreError;

/// A checkpoint also runs this long after the last one, for a WAL that grows slowly.
const IDLE: Duration = Duration::from_secs(10);

/// The writer's handle; the thread ends when every handle is gone.
#[derive(Clone)]
pub(super) struct Checkpointer(SyncSender<()>);

impl Checkpointer {
    /// Asks for a checkpoint soon; never blocks (one pending request is enough).
    pub(super) fn nudge(&self) {
        match self.0.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }
}

/// Starts the checkpointer on its own connection to `path`.
pub(super) fn spawn(path: &Path) -> Result<Checkpointer, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || run(&conn, &rx))
        .map_err(|source| StoreError::DataDir {
            path: "store-checkpoint thread".into(),
            source,
        })?;
    Ok(Checkpointer(tx))
}

fn run(conn: &Connection, nudges: &Receiver<()>) {
    let mut failing = false;
    // Ends with the store; the last connection to close checkpoints what is left.
    while !matches!(
        nudges.recv_timeout(IDLE),
        Err(RecvTimeoutError::Disconnected)
    ) {
        // PASSIVE never blocks the writer or readers. (RESTART and TRUNCATE take the
        // write lock and can fail a commit that began before them.)
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        // One line when checkpoints start failing (disk full) and one when they recover.
        match result {
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(error = %Report(&error), "WAL checkpoint failed; the WAL grows until it works");
            }
            Ok(()) if failing => {
                failing = false;
                tracing::info!("WAL checkpoints work again");
            }
            _ => {}
        }
    }
}

/// The WAL file may grow to about this before the writer truncates it; also SQLite's
/// `journal_size_limit`, for when a passive checkpoint did catch up.
pub(super) const WAL_MAX_BYTES: u64 = 8 * 1024 * 1024;

/// The writer idle this long truncates the WAL.
const FOLD_WHEN_IDLE: Duration = Duration::from_secs(1);

/// How long truncating waits for readers, and then before trying again.
const TRUNCATE_WAIT: Duration = Duration::from_millis(50);

/// The writer's side of keeping the WAL bounded (see the module header).
pub(super) struct WalLimit {
    wal: PathBuf,
    /// Commits since the WAL was last truncated.
    dirty: bool,
    /// Truncating fails (disk full, a reader holding an old snapshot): said once.
    failing: bool,
    /// Not before this again after a failure, so a stuck reader costs no stat per commit.
    retry_at: Option<Instant>,
}

impl WalLimit {
    /// For the database at `db` (its WAL is `<db>-wal`).
    pub(super) fn new(db: &Path) -> Self {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        WalLimit {
            wal: wal.into(),
            dirty: false,
            failing: false,
            retry_at: None,
        }
    }

    /// After each commit: truncates the WAL when it has grown past [`WAL_MAX_BYTES`].
    pub(super) fn after_commit(&mut self, conn: &Connection) {
        self.dirty = true;
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let len = std::fs::metadata(&self.wal).map_or(0, |m| m.len());
        if len > WAL_MAX_BYTES {
            self.truncate(conn);
        }
    }

    /// How long the writer may wait for work before [`WalLimit::idle`] is due.
    pub(super) fn idle_after(&self) -> Option<Duration> {
        self.dirty.then_some(FOLD_WHEN_IDLE)
    }

    /// The writer has been idle [`WalLimit::idle_after`]: the WAL goes.
    pub(super) fn idle(&mut self, conn: &Connection) {
        self.truncate(conn);
    }

    fn truncate(&mut self, conn: &Connection) {
        let began = Instant::now();
        // TRUNCATE waits for readers on older snapshots; the writer is this connection,
        // so no commit is in its way. Lines wait meanwhile, so it waits briefly: busy = 1
        // (a reader or the passive checkpointer in the way) is tried again soon.
        let result = conn.busy_timeout(TRUNCATE_WAIT).and_then(|()| {
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            })
        });
        let restored = conn.busy_timeout(super::schema::BUSY_TIMEOUT);
        metrics::histogram!(crate::metrics::STORE_WAL_TRUNCATE_SECONDS).record(began.elapsed());
        match result.and_then(|busy| restored.map(|()| busy)) {
            Ok(0) => {
                self.dirty = false;
                self.retry_at = None;
                if std::mem::take(&mut self.failing) {
                    tracing::info!("the WAL is truncated again");
                }
            }
            Ok(_) => self.retry_at = Some(Instant::now() + TRUNCATE_WAIT),
            Err(error) => {
                self.retry_at = Some(Instant::now() + FOLD_WHEN_IDLE);
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(error = %Report(&error), "cannot truncate the WAL; it grows until that works");
                }
            }
        }
    }
}
