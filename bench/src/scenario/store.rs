//! Store size: a flood job capped at `max_log_bytes`; what the database and its WAL take
//! on disk during and after it, against the text the store kept.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::Error;
use crate::report::{Row, thousands};
use crate::system::System;

/// Bytes of a path, 0 when it does not exist.
fn len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Runs the store-size scenario; its row, or why it failed.
pub async fn store_size(cap: u64, hosts: usize, per_host: u64) -> Result<Vec<Row>, Error> {
    // 27-byte lines, the size of the flood that found ~195 bytes of database per line.
    let script = format!("exec seq -f \"$SHIPWATCH_HOST %010g of a flood\" 1 {per_host}");
    let mut system = System::start_capped(hosts, &script, cap)?;
    let data = system.dir.path().join("data");
    let (db, wal) = (data.join("shipwatch.db"), data.join("shipwatch.db-wal"));
    let job = system.create_job()?;
    let began = Instant::now();
    let mut wal_peak = 0;
    loop {
        wal_peak = wal_peak.max(len(&wal));
        let state = system.job(job)["state"].as_str().unwrap_or("").to_owned();
        if state == "succeeded" {
            break;
        }
        if state == "failed" || began.elapsed() > Duration::from_secs(300) {
            return Err(system.fail(format!("job {job} is {state:?}")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = began.elapsed();
    let (db_end, wal_end) = (len(&db), len(&wal));
    // The writer truncates the WAL once idle a second.
    let idle = Instant::now();
    while len(&wal) > 0 && idle.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (db_after, wal_after) = (len(&db), len(&wal));
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let (lines, text): (i64, i64) = conn.query_row(
        "SELECT count(*), coalesce(sum(length(CAST(text AS BLOB))), 0) FROM events \
         WHERE job = ?1 AND kind IN (0, 1)",
        [job as i64],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let dropped: i64 = conn.query_row(
        "SELECT dropped_lines FROM jobs WHERE id = ?1",
        [job as i64],
        |r| r.get(0),
    )?;
    let total = db_after + wal_after;
    Ok(vec![Row {
        figure: format!(
            "flood capped at max_log_bytes = {} ({hosts} hosts × {} lines of 27 bytes): database + WAL on disk after it",
            thousands(cap as f64),
            thousands(per_host as f64)
        ),
        measured: format!(
            "{} ({} + {} WAL), {:.2}× the text kept",
            mb(total),
            mb(db_after),
            mb(wal_after),
            db_after as f64 / text.max(1) as f64
        ),
        target: "≤ 32 MB; database ≤ 3× the text".into(),
        met: Some(total <= 32_000_000 && db_after <= 3 * text.max(0) as u64),
        notes: format!(
            "{} lines kept ({} of text, {:.0} bytes a line on disk), {} counted past the cap; \
             WAL peak {} during the job, {} at its end (database {}); job {:.1} s",
            thousands(lines as f64),
            mb(text as u64),
            db_after as f64 / lines.max(1) as f64,
            thousands(dropped as f64),
            mb(wal_peak),
            mb(wal_end),
            mb(db_end),
            took.as_secs_f64()
        ),
    }])
}
