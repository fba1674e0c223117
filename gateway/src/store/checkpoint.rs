//! WAL checkpoints on their own thread. SQLite's automatic checkpoint runs inside the
//! commit that crosses the threshold, copying pages into the database file and syncing
//! it there: a stall of milliseconds in the writer, which every watcher then sees as
//! latency. Here the writer only appends to the WAL; this thread folds it back.

use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use rusqlite::Connection;

use super::StoreError;

/// How often the WAL is folded back; a passive checkpoint with nothing to do is cheap.
const INTERVAL: Duration = Duration::from_millis(200);

/// Starts the checkpointer; it stops when the returned sender is dropped with the store.
pub(super) fn spawn(path: &Path) -> Result<Sender<()>, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || run(&conn, &rx))
        .map_err(|source| StoreError::DataDir {
            path: "store-checkpoint thread".into(),
            source,
        })?;
    Ok(tx)
}

fn run(conn: &Connection, stop: &Receiver<()>) {
    let mut failing = false;
    // Ends with the store; the last connection to close checkpoints what is left.
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(INTERVAL) {
        // PASSIVE never blocks the writer or readers. (RESTART and TRUNCATE take the
        // write lock and can fail a commit that began before them.)
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        // One line when checkpoints start failing (disk full) and one when they recover.
        match result {
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "WAL checkpoint failed; the WAL grows until it works");
            }
            Ok(()) if failing => {
                failing = false;
                tracing::info!("WAL checkpoints work again");
            }
            _ => {}
        }
    }
}
