//! What the store reads, in SQLite's dialect; the same answers as PostgreSQL's reads.

use rusqlite::{Connection, OptionalExtension, params};
use shipwatch_protocol::api::{AuditEntry, Counts, HostView, JobView};
use shipwatch_protocol::{HostState, JobId};

use super::rows;
use crate::model::{CommittedEvent, EventFilter, RowRef};
use crate::store::{JobNumber, SessionRow, StoreError, corrupt, count_as_failed, filter_takes};

/// One job (with hosts and spec when `full`).
pub(in crate::store) fn job(
    c: &Connection,
    id: JobId,
    full: bool,
) -> Result<Option<JobView>, StoreError> {
    let row = c
        .prepare_cached(
            "SELECT task, state, params, started_by, created_at, started_at, ended_at, reason, spec \
             FROM jobs WHERE id = ?1",
        )?
        .query_row([id as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, String>(8)?,
            ))
        })
        .optional()?;
    let Some((task, state, params, started_by, created_at, started_at, ended_at, reason, spec)) =
        row
    else {
        return Ok(None);
    };
    let mut counts = Counts::default();
    let mut hosts = Vec::new();
    let mut stmt = c.prepare_cached(
        "SELECT host, state, exit_code, wave, started_at, ended_at FROM hosts \
         WHERE job = ?1 ORDER BY wave, rowid",
    )?;
    let mut rows = stmt.query([id as i64])?;
    while let Some(r) = rows.next()? {
        let state: HostState = r.get_ref(1)?.as_str()?.parse().map_err(corrupt)?;
        *counts.of_mut(state) += 1;
        if full {
            hosts.push(HostView {
                host: r.get(0)?,
                state,
                exit_code: r.get(2)?,
                wave: r.get(3)?,
                started_at: r.get(4)?,
                ended_at: r.get(5)?,
            });
        }
    }
    Ok(Some(JobView {
        id,
        task,
        state: state.parse().map_err(corrupt)?,
        params: serde_json::from_str(&params).map_err(corrupt)?,
        started_by,
        created_at,
        started_at,
        ended_at,
        reason,
        counts,
        hosts: full.then_some(hosts),
        spec: if full {
            Some(serde_json::from_str(&spec).map_err(corrupt)?)
        } else {
            None
        },
    }))
}

pub(in crate::store) fn session(
    c: &Connection,
    id_hash: [u8; 32],
) -> Result<Option<SessionRow>, StoreError> {
    Ok(
        c.prepare_cached("SELECT user, created_ms, seen_ms FROM sessions WHERE id_hash = ?1")?
            .query_row([&id_hash[..]], |r| {
                Ok(SessionRow {
                    user: r.get(0)?,
                    created_ms: r.get(1)?,
                    seen_ms: r.get(2)?,
                })
            })
            .optional()?,
    )
}

/// Jobs newest first, without hosts or spec.
pub(in crate::store) fn jobs(
    c: &Connection,
    limit: u32,
    before: Option<JobId>,
) -> Result<Vec<JobView>, StoreError> {
    let mut stmt =
        c.prepare_cached("SELECT id FROM jobs WHERE id < ?1 ORDER BY id DESC LIMIT ?2")?;
    let ids: Vec<JobId> = stmt
        .query_map(
            params![before.unwrap_or(i64::MAX as u64) as i64, limit],
            |r| r.get::<_, i64>(0),
        )?
        .map(|r| r.map(|v| v as JobId))
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(j) = job(c, id, false)? {
            out.push(j);
        }
    }
    Ok(out)
}

/// Jobs in one of `states`, oldest first, in full.
pub(in crate::store) fn jobs_in_state(
    c: &Connection,
    states: &[&str],
) -> Result<Vec<JobView>, StoreError> {
    let mut stmt = c.prepare_cached("SELECT id FROM jobs WHERE state = ?1 ORDER BY id")?;
    let mut out = Vec::new();
    for s in states {
        let ids: Vec<i64> = stmt
            .query_map([s], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for id in ids {
            if let Some(j) = job(c, id as JobId, true)? {
                out.push(j);
            }
        }
    }
    out.sort_by_key(|j| j.id);
    Ok(out)
}

/// Up to `limit` events with `seq > after` that `filter` takes, in order.
pub(in crate::store) fn events(
    c: &Connection,
    job: JobId,
    after: u64,
    filter: &EventFilter,
    limit: usize,
) -> Result<Vec<CommittedEvent>, StoreError> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {} FROM events WHERE job = ?1 AND seq > ?2 ORDER BY seq",
        rows::SELECT
    ))?;
    let mut found = stmt.query(params![job as i64, after as i64])?;
    let mut decoder = rows::Decoder::new(c, job);
    let mut out = Vec::with_capacity(limit.min(65_536));
    while let Some(r) = found.next()? {
        if out.len() >= limit {
            break;
        }
        let head = decoder.head(r)?;
        if !filter_takes(filter, head.kind, head.host.as_deref(), head.stream) {
            continue;
        }
        out.push(decoder.event(r, head)?);
    }
    Ok(out)
}

/// Up to `limit` events with `seq > after`, each handed to `each` (see
/// [`crate::store::Store::scan_events`]); how many there were.
pub(in crate::store) fn scan_events(
    c: &Connection,
    job: JobId,
    after: u64,
    limit: usize,
    each: &mut impl FnMut(RowRef<'_>),
) -> Result<usize, StoreError> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {} FROM events WHERE job = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        rows::SELECT
    ))?;
    let limit = limit.min(i64::MAX as usize) as i64;
    let mut found = stmt.query(params![job as i64, after as i64, limit])?;
    let mut decoder = rows::Decoder::new(c, job);
    let mut n = 0;
    while let Some(r) = found.next()? {
        let head = decoder.head(r)?;
        decoder.each_row(r, head, each)?;
        n += 1;
    }
    Ok(n)
}

/// One number of a job's row.
pub(in crate::store) fn job_number(
    c: &Connection,
    job: JobId,
    column: JobNumber,
) -> Result<u64, StoreError> {
    let sql = match column {
        JobNumber::LastSeq => "SELECT last_seq FROM jobs WHERE id = ?1",
        JobNumber::DroppedLines => "SELECT dropped_lines FROM jobs WHERE id = ?1",
    };
    let v: Option<i64> = c
        .prepare_cached(sql)?
        .query_row([job as i64], |r| r.get(0))
        .optional()?;
    v.map(|v| v as u64).ok_or(StoreError::NoSuchJob(job))
}

/// Up to `limit` audit records with `id < before`, newest first.
pub(in crate::store) fn audit_page(
    c: &Connection,
    limit: u32,
    before: Option<i64>,
) -> Result<Vec<AuditEntry>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT id, ts, actor, action, job, detail, addr, outcome FROM audit \
         WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![before.unwrap_or(i64::MAX), limit], |r| {
        Ok(AuditEntry {
            id: r.get(0)?,
            ts: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            job: r.get::<_, Option<i64>>(4)?.map(|v| v as JobId),
            detail: r.get(5)?,
            addr: r.get(6)?,
            outcome: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many jobs are in each state, `unrecorded` failures counted as failed.
pub(in crate::store) fn jobs_by_state(
    c: &Connection,
    unrecorded: &[JobId],
) -> Result<Vec<(String, u64)>, StoreError> {
    let mut stmt = c.prepare_cached("SELECT state, count(*) FROM jobs GROUP BY state")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
    let mut counts: Vec<(String, u64)> = rows.collect::<Result<_, _>>()?;
    for &id in unrecorded {
        let stored: Option<String> = c
            .prepare_cached("SELECT state FROM jobs WHERE id = ?1")?
            .query_row([id as i64], |r| r.get(0))
            .optional()?;
        if let Some(stored) = stored {
            count_as_failed(&mut counts, &stored);
        }
    }
    Ok(counts)
}
