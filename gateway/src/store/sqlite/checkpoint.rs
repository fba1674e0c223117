//! WAL checkpoints on their own thread. SQLite's automatic checkpoint runs inside the
//! commit that crosses the threshold, copying pages into the database file and syncing
//! it there: a stall of milliseconds in the writer, which every watcher then sees as
//! latency. Here the writer only appends to the WAL and nudges this thread after each
//! commit; the thread copies what is new at most every [`PACE`].
//!
//! A passive checkpoint never makes the WAL smaller, though: SQLite starts writing it
//! from the top again only when a checkpoint has caught up with the last commit, which
//! under a steady stream of lines never happens, so the WAL grew with the whole job (a
//! 152 MB WAL beside a 72 MB database, issue 13). [`WalLimit`] bounds it: once the WAL
//! holds [`WAL_MAX_BYTES`] the writer itself copies the last few pages, between two
//! commits, so the next commit starts the WAL from the top; once the writer has been
//! idle a moment it truncates the file, so a finished job leaves no WAL behind.
//!
//! Truncating under load was tried and cost latency: 20–80 ms a time, in `ftruncate` of
//! the WAL and in waiting for the lock a running passive checkpoint holds (bench/e2e.sh
//! d, 1 watcher at 1,000 lines/s: p99 6 ms before the bound, 57 ms with it).

use shipwatch_protocol::Report;
use std::cell::Cell;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use rusqlite::hooks::Wal;

use crate::store::StoreError;

/// A checkpoint also runs this long after the last one, for a WAL that grows slowly.
const IDLE: Duration = Duration::from_secs(10);

/// At most one passive checkpoint this often, however often the writer nudges.
const PACE: Duration = Duration::from_millis(100);

/// The writer's handle; the thread ends when every handle is gone.
#[derive(Clone)]
pub(super) struct Checkpointer {
    nudges: SyncSender<()>,
    /// A passive checkpoint is copying pages now.
    running: Arc<AtomicBool>,
}

impl Checkpointer {
    /// Asks for a checkpoint soon; never blocks (one pending request is enough).
    pub(super) fn nudge(&self) {
        match self.nudges.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }

    fn running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }
}

/// Starts the checkpointer on its own connection to `path`.
pub(super) fn spawn(path: &Path) -> Result<Checkpointer, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let (nudges, rx) = std::sync::mpsc::sync_channel(1);
    let running = Arc::new(AtomicBool::new(false));
    let flag = running.clone();
    std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || run(&conn, &rx, &flag))
        .map_err(|source| StoreError::DataDir {
            path: "store-checkpoint thread".into(),
            source,
        })?;
    Ok(Checkpointer { nudges, running })
}

fn run(conn: &Connection, nudges: &Receiver<()>, running: &AtomicBool) {
    let mut failing = false;
    // Ends with the store; the last connection to close checkpoints what is left.
    while !matches!(
        nudges.recv_timeout(IDLE),
        Err(RecvTimeoutError::Disconnected)
    ) {
        // PASSIVE never blocks the writer or readers. (RESTART and TRUNCATE take the
        // write lock and can fail a commit that began before them.)
        running.store(true, Ordering::Release);
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        running.store(false, Ordering::Release);
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
        // Nudges meanwhile wait in the channel (one is enough); shutdown waits this out.
        std::thread::sleep(PACE);
    }
}

/// The WAL may hold about this before the writer starts it from the top; also SQLite's
/// `journal_size_limit`, what the file is cut back to when that happens.
pub(super) const WAL_MAX_BYTES: u64 = 8 * 1024 * 1024;

/// [`WAL_MAX_BYTES`] in WAL frames (a page of the default 4 KiB and its header).
const WAL_MAX_FRAMES: i32 = (WAL_MAX_BYTES / 4_120) as i32;

/// When starting the WAL from the top did not work (a reader on an old snapshot), the
/// writer tries again once this many more frames have been written.
const FOLD_RETRY_FRAMES: i32 = 256;

/// The writer idle this long truncates the WAL.
const FOLD_WHEN_IDLE: Duration = Duration::from_secs(1);

/// How long truncating waits for readers, and then before trying again.
const TRUNCATE_WAIT: Duration = Duration::from_millis(50);

thread_local! {
    /// Frames in the WAL after this thread's last commit, from SQLite's WAL hook (a
    /// plain `fn`, so it cannot capture the [`WalLimit`]; the writer owns its thread).
    static WAL_FRAMES: Cell<i32> = const { Cell::new(0) };
}

fn count_frames(_: &Wal, frames: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.set(frames);
    Ok(())
}

/// The writer's side of keeping the WAL bounded (see the module header).
pub(super) struct WalLimit {
    /// Commits since the WAL was last truncated.
    dirty: bool,
    /// Folding or truncating fails (disk full): said once.
    failing: bool,
    /// Not before this again after a failure.
    retry_at: Option<Instant>,
    /// The writer folds once the WAL holds this many frames.
    fold_at: i32,
}

impl WalLimit {
    /// For the writer's connection `conn`, whose commits (on the writer's thread, where
    /// [`WalLimit::after_commit`] runs too) report the WAL's fill to the hook.
    pub(super) fn new(conn: &Connection) -> Self {
        // After `wal_autocheckpoint`, which would replace it.
        conn.wal_hook(Some(count_frames));
        WalLimit {
            dirty: false,
            failing: false,
            retry_at: None,
            fold_at: WAL_MAX_FRAMES,
        }
    }

    /// After each commit: nudges `checkpointer`, and folds the WAL once it holds
    /// [`WAL_MAX_BYTES`], unless `checkpointer` is copying right now (the two would wait
    /// for each other's lock; then after a later commit).
    pub(super) fn after_commit(&mut self, conn: &Connection, checkpointer: &Checkpointer) {
        self.dirty = true;
        checkpointer.nudge();
        let frames = WAL_FRAMES.get();
        if frames < WAL_MAX_FRAMES {
            // Started from the top again.
            self.fold_at = WAL_MAX_FRAMES;
        } else if frames >= self.fold_at
            && !checkpointer.running()
            && self.retry_at.is_none_or(|at| Instant::now() >= at)
        {
            self.fold(conn, frames);
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

    /// Copies the WAL's last pages, so the next commit writes it from the top. The
    /// writer is this connection, so nothing it waits for is in the way.
    fn fold(&mut self, conn: &Connection, frames: i32) {
        let began = Instant::now();
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        metrics::histogram!(crate::metrics::STORE_WAL_TRUNCATE_SECONDS).record(began.elapsed());
        self.fold_at = frames.saturating_add(FOLD_RETRY_FRAMES);
        self.settled(result, "fold");
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
                self.settled(Ok(()), "truncate");
            }
            Ok(_) => self.retry_at = Some(Instant::now() + TRUNCATE_WAIT),
            Err(error) => self.settled(Err(error), "truncate"),
        }
    }

    /// One line when folding the WAL starts failing and one when it works again.
    fn settled(&mut self, result: rusqlite::Result<()>, what: &str) {
        match result {
            Ok(()) => {
                self.retry_at = None;
                if std::mem::take(&mut self.failing) {
                    tracing::info!("the WAL is cut back again");
                }
            }
            Err(error) => {
                self.retry_at = Some(Instant::now() + FOLD_WHEN_IDLE);
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(error = %Report(&error), what, "cannot cut the WAL back; it grows until that works");
                }
            }
        }
    }
}
