//! WAL checkpoints on their own thread. SQLite's automatic checkpoint runs inside the
//! commit that crosses the threshold, copying pages into the database file and syncing
//! it there: a stall of milliseconds in the writer, which every watcher then sees as
//! latency. Here the writer only appends to the WAL and nudges this thread about as
//! often as SQLite would have checkpointed; it folds the WAL back meanwhile.

use shipwatch_protocol::Report;
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

use rusqlite::Connection;

use super::StoreError;

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
