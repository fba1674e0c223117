//! Connection settings and versioned migrations (`PRAGMA user_version`).

use rusqlite::Connection;

use crate::store::StoreError;

/// Each entry moves the schema from version `i` to `i + 1`; append, never edit.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task TEXT NOT NULL,
    spec TEXT NOT NULL,
    params TEXT NOT NULL,
    started_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    started_at TEXT,
    ended_at TEXT,
    ended_ms INTEGER,
    state TEXT NOT NULL,
    reason TEXT,
    last_seq INTEGER NOT NULL DEFAULT 0,
    last_rseq INTEGER NOT NULL DEFAULT 0,
    log_bytes INTEGER NOT NULL DEFAULT 0,
    dropped_lines INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_state ON jobs(state);
CREATE TABLE hosts (
    job INTEGER NOT NULL,
    host TEXT NOT NULL,
    wave INTEGER NOT NULL,
    state TEXT NOT NULL,
    exit_code INTEGER,
    started_at TEXT,
    ended_at TEXT,
    UNIQUE (job, host)
);
CREATE TABLE events (
    job INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    host TEXT,
    stream TEXT,
    ts INTEGER NOT NULL,
    json BLOB NOT NULL,
    PRIMARY KEY (job, seq)
) WITHOUT ROWID;
CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    job INTEGER,
    detail TEXT NOT NULL
);
",
    "
CREATE TABLE sessions (
    id_hash BLOB PRIMARY KEY,
    user TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    seen_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_user ON sessions(user);
ALTER TABLE audit ADD COLUMN addr TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN outcome TEXT NOT NULL DEFAULT 'ok';
",
    // Events as columns, not JSON: a line row is its text and ~25 bytes (issue 13). The
    // host is a number in `host_names`; `kind` folds a line's stream in (rows.rs).
    // The JSON of stored rows is rebuilt from them, byte for byte what was stored
    // (the same serialiser wrote it), so an old database's logs read as before.
    "
CREATE TABLE host_names (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
INSERT INTO host_names (name)
    SELECT DISTINCT host FROM events WHERE host IS NOT NULL ORDER BY host;
CREATE TABLE events_compact (
    job INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    host INTEGER,
    text TEXT,
    state TEXT,
    exit_code INTEGER,
    PRIMARY KEY (job, seq)
) WITHOUT ROWID;
INSERT INTO events_compact (job, seq, ts, kind, host, text, state, exit_code)
    SELECT e.job, e.seq, e.ts,
        CASE e.kind WHEN 'line' THEN (CASE e.stream WHEN 'stderr' THEN 1 ELSE 0 END)
            WHEN 'host' THEN 2 WHEN 'job' THEN 3 ELSE 4 END,
        n.id,
        CASE e.kind WHEN 'job' THEN json_extract(CAST(e.json AS TEXT), '$.reason')
            WHEN 'host' THEN NULL ELSE json_extract(CAST(e.json AS TEXT), '$.text') END,
        CASE WHEN e.kind IN ('host', 'job') THEN json_extract(CAST(e.json AS TEXT), '$.state') END,
        CASE e.kind WHEN 'host' THEN json_extract(CAST(e.json AS TEXT), '$.exit_code') END
    FROM events e LEFT JOIN host_names n ON n.name = e.host
    ORDER BY e.job, e.seq;
DROP TABLE events;
ALTER TABLE events_compact RENAME TO events;
",
];

/// How long a statement waits for a lock another connection holds.
pub(super) const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// WAL so readers never wait for the writer; NORMAL sync is durable across a process
/// crash (only an OS crash can lose the last transactions).
pub(super) fn prepare_writer(conn: &Connection) -> Result<(), StoreError> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Checkpoints run on their own thread (checkpoint.rs), never inside a commit; after
    // a burst the WAL is cut back to this size.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(
        None,
        "journal_size_limit",
        super::checkpoint::WAL_MAX_BYTES as i64,
    )?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Brings the schema to the newest version, one transaction per step.
pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as u32;
    let found: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as u32 + 1)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "store schema migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EventFilter;
    use crate::store::{NoPublisher, Store, StoreLimits};
    use shipwatch_protocol::{Event, EventBody, HostState, JobState, Stream, Timestamp};

    /// Events of every kind, as a version-2 database stored them (their JSON).
    fn old_events() -> Vec<Event> {
        let body = [
            EventBody::Job {
                state: JobState::Running,
                reason: None,
            },
            EventBody::Host {
                host: "web-01".into(),
                state: HostState::Running,
                exit_code: None,
            },
            EventBody::Line {
                host: "web-01".into(),
                stream: Stream::Stdout,
                text: "plain \"quoted\" \\ \u{1b}[31mred\u{1b}[0m ünïcode \u{fffd}\ttab".into(),
            },
            EventBody::Line {
                host: "db-01".into(),
                stream: Stream::Stderr,
                text: String::new(),
            },
            EventBody::Notice {
                text: "this job's log reached max_log_bytes".into(),
            },
            EventBody::Host {
                host: "db-01".into(),
                state: HostState::Failed,
                exit_code: Some(3),
            },
            EventBody::Job {
                state: JobState::Failed,
                reason: Some("1 host failed".into()),
            },
        ];
        body.into_iter()
            .zip(1..)
            .map(|(body, seq)| Event {
                job: 1,
                seq,
                ts: Timestamp(1_764_000_000_123 + seq as i64),
                body,
            })
            .collect()
    }

    /// Upgrading keeps an old database's logs: each event reads back as the very bytes
    /// it was stored as.
    #[tokio::test]
    async fn version_2_events_migrate_to_columns_and_read_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let events = old_events();
        {
            let conn = Connection::open(dir.path().join("shipwatch.db")).unwrap();
            for sql in &MIGRATIONS[..2] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 2).unwrap();
            conn.execute(
                "INSERT INTO jobs (task, spec, params, started_by, created_at, state, last_seq) \
                 VALUES ('deploy', '{}', '{}', 'alice', '2026-01-01T00:00:00.000Z', 'failed', ?1)",
                [events.len() as i64],
            )
            .unwrap();
            for e in &events {
                conn.execute(
                    "INSERT INTO events (job, seq, kind, host, stream, ts, json) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    rusqlite::params![
                        e.job as i64,
                        e.seq as i64,
                        e.body.kind().as_str(),
                        e.body.host(),
                        e.body.stream().map(|s| s.as_str()),
                        e.ts.as_millis(),
                        e.to_json(),
                    ],
                )
                .unwrap();
            }
        }
        let limits = StoreLimits {
            max_log_bytes: u64::MAX,
            retention_days: 30,
        };
        let store = Store::open(dir.path(), limits, std::sync::Arc::new(NoPublisher)).unwrap();
        let read = store
            .read_events(1, 0, &EventFilter::default(), 100)
            .await
            .unwrap();
        let got: Vec<String> = read
            .iter()
            .map(|e| String::from_utf8_lossy(&e.json).into_owned())
            .collect();
        let want: Vec<String> = events
            .iter()
            .map(|e| String::from_utf8(e.to_json()).unwrap())
            .collect();
        assert_eq!(got, want);
        let stderr_only = EventFilter {
            streams: Some(vec![Stream::Stderr]),
            kinds: Some(vec!["line".into()]),
            hosts: None,
        };
        let lines = store.read_events(1, 0, &stderr_only, 100).await.unwrap();
        assert_eq!(lines.iter().map(|e| e.seq).collect::<Vec<_>>(), [4]);
        assert_eq!(lines[0].host.as_deref(), Some("db-01"));
    }
}
