//! The embedded SQLite store of one box (DESIGN §1): the file `shipwatch.db` in
//! `data_dir`, written by the writer thread over [`write::SqliteWrites`], read on blocking
//! threads over a small pool of read-only connections.

mod checkpoint;
pub(super) mod read;
mod rows;
mod schema;
mod write;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};

use super::StoreError;

/// Readers kept open between requests, and at most this many reads at once.
const READ_POOL: usize = 8;

/// The database file and its idle read connections.
pub(super) struct Sqlite {
    pub(super) path: PathBuf,
    /// Idle read connections; a reader takes one or opens a new one.
    readers: Mutex<Vec<Connection>>,
    /// At most [`READ_POOL`] reads at once. Without it a hundred watchers catching up
    /// opened a hundred connections, and SQLite keeps a closed connection's descriptor
    /// while another connection of the process holds a lock on the file (so POSIX locks
    /// survive), so the store's descriptors grew to the highest concurrency ever seen.
    reading: Arc<tokio::sync::Semaphore>,
}

impl Sqlite {
    /// Opens (creating and migrating) `<data_dir>/shipwatch.db`; the handle and the
    /// writer's side of it.
    pub(super) fn open(data_dir: &Path) -> Result<(Sqlite, write::SqliteWrites), StoreError> {
        let path = data_dir.join("shipwatch.db");
        make_private(data_dir, &path).map_err(|source| StoreError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let conn = Connection::open(&path)?;
        schema::prepare_writer(&conn)?;
        schema::migrate(&conn)?;
        let checkpoint = checkpoint::spawn(&path)?;
        let wal = checkpoint::WalLimit::new(&path);
        let writes = write::SqliteWrites::new(conn, checkpoint, wal);
        let db = Sqlite {
            path,
            readers: Mutex::new(Vec::new()),
            reading: Arc::new(tokio::sync::Semaphore::new(READ_POOL)),
        };
        Ok((db, writes))
    }

    /// Runs `f` on a pooled read connection on a blocking thread.
    pub(super) async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.clone();
        // The semaphore is never closed, so acquiring only fails if it were.
        let permit = db.reading.clone().acquire_owned().await.ok();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pooled = db.readers.lock().ok().and_then(|mut p| p.pop());
            let conn = match pooled {
                Some(c) => c,
                None => open_reader(&db.path)?,
            };
            let out = f(&conn);
            if let Ok(mut pool) = db.readers.lock()
                && pool.len() < READ_POOL
            {
                pool.push(conn);
            }
            out
        })
        .await?
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
