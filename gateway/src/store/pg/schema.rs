//! The PostgreSQL schema and its versioned migrations (table `shipwatch_schema`), run by
//! whichever gateway starts first: an advisory lock makes the others wait, then find the
//! schema current.

use postgres::Client;

use crate::store::StoreError;

/// Each entry moves the schema from version `i` to `i + 1`; append, never edit.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE jobs (
    id BIGSERIAL PRIMARY KEY,
    task TEXT NOT NULL,
    spec TEXT NOT NULL,
    params TEXT NOT NULL,
    started_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    started_at TEXT,
    ended_at TEXT,
    ended_ms BIGINT,
    state TEXT NOT NULL,
    reason TEXT,
    last_seq BIGINT NOT NULL DEFAULT 0,
    last_rseq BIGINT NOT NULL DEFAULT 0,
    log_bytes BIGINT NOT NULL DEFAULT 0,
    dropped_lines BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX jobs_state ON jobs (state, id);
CREATE TABLE hosts (
    job BIGINT NOT NULL,
    host TEXT NOT NULL,
    wave INTEGER NOT NULL,
    ord INTEGER NOT NULL,
    state TEXT NOT NULL,
    exit_code INTEGER,
    started_at TEXT,
    ended_at TEXT,
    PRIMARY KEY (job, host)
);
CREATE TABLE events (
    job BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    host TEXT,
    stream TEXT,
    ts BIGINT NOT NULL,
    json BYTEA NOT NULL,
    PRIMARY KEY (job, seq)
);
CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY,
    ts TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    job BIGINT,
    detail TEXT NOT NULL,
    addr TEXT NOT NULL DEFAULT '',
    outcome TEXT NOT NULL DEFAULT 'ok'
);
CREATE TABLE sessions (
    id_hash BYTEA PRIMARY KEY,
    username TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    seen_ms BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (username);
",
    "
ALTER TABLE jobs ADD COLUMN claimed_by TEXT;
CREATE INDEX jobs_unclaimed ON jobs (id) WHERE state = 'queued' AND claimed_by IS NULL;
",
    "
CREATE TABLE gateways (id TEXT PRIMARY KEY, seen TIMESTAMPTZ NOT NULL);
CREATE INDEX jobs_claimed ON jobs (claimed_by) WHERE claimed_by IS NOT NULL;
",
];

/// Any 64-bit number of our own: the lock migrations take.
const MIGRATION_LOCK: i64 = 0x5348_4950_5741_5401;

/// Brings the schema to the newest version in one transaction.
pub(super) fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as u32;
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS shipwatch_schema (version INTEGER NOT NULL)")?;
    let found = match tx.query_opt("SELECT version FROM shipwatch_schema", &[])? {
        Some(row) => row.get::<_, i32>(0) as u32,
        None => {
            tx.execute("INSERT INTO shipwatch_schema (version) VALUES (0)", &[])?;
            0
        }
    };
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql)?;
        tx.execute(
            "UPDATE shipwatch_schema SET version = $1",
            &[&(i as i32 + 1)],
        )?;
        tracing::info!(version = i + 1, "store schema migrated (PostgreSQL)");
    }
    tx.commit()?;
    Ok(())
}
