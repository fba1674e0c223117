//! Why the store could not do what was asked.

use std::path::PathBuf;

use shipwatch_protocol::{JobId, JobState};

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
