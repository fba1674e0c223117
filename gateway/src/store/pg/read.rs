//! What the store reads, in PostgreSQL's dialect; the same answers as the SQLite reads.

use std::sync::Arc;

use bytes::Bytes;
use postgres::GenericClient;
use shipwatch_protocol::api::{AuditEntry, Counts, HostView, JobView};
use shipwatch_protocol::{HostState, JobId, JobState, Stream};

use crate::model::{CommittedEvent, EventFilter};
use crate::store::{JobNumber, SessionRow, StoreError, corrupt, count_as_failed, kind_name};

/// One job (with hosts and spec when `full`).
pub(in crate::store) fn job(
    c: &mut impl GenericClient,
    id: JobId,
    full: bool,
) -> Result<Option<JobView>, StoreError> {
    let Some(row) = c.query_opt(
        "SELECT task, state, params, started_by, created_at, started_at, ended_at, reason, \
         spec FROM jobs WHERE id = $1",
        &[&(id as i64)],
    )?
    else {
        return Ok(None);
    };
    let mut counts = Counts::default();
    let mut hosts = Vec::new();
    for r in c.query(
        "SELECT host, state, exit_code, wave, started_at, ended_at FROM hosts \
         WHERE job = $1 ORDER BY wave, ord",
        &[&(id as i64)],
    )? {
        let state: HostState = r.get::<_, &str>(1).parse().map_err(corrupt)?;
        *counts.of_mut(state) += 1;
        if full {
            hosts.push(HostView {
                host: r.get(0),
                state,
                exit_code: r.get(2),
                wave: r.get::<_, i32>(3) as u32,
                started_at: r.get(4),
                ended_at: r.get(5),
            });
        }
    }
    let state: &str = row.get(1);
    let params: &str = row.get(2);
    Ok(Some(JobView {
        id,
        task: row.get(0),
        state: state.parse().map_err(corrupt)?,
        params: serde_json::from_str(params).map_err(corrupt)?,
        started_by: row.get(3),
        created_at: row.get(4),
        started_at: row.get(5),
        ended_at: row.get(6),
        reason: row.get(7),
        counts,
        hosts: full.then_some(hosts),
        spec: if full {
            Some(serde_json::from_str(row.get::<_, &str>(8)).map_err(corrupt)?)
        } else {
            None
        },
    }))
}

pub(in crate::store) fn session(
    c: &mut impl GenericClient,
    id_hash: [u8; 32],
) -> Result<Option<SessionRow>, StoreError> {
    Ok(c.query_opt(
        "SELECT username, created_ms, seen_ms FROM sessions WHERE id_hash = $1",
        &[&&id_hash[..]],
    )?
    .map(|r| SessionRow {
        user: r.get(0),
        created_ms: r.get(1),
        seen_ms: r.get(2),
    }))
}

/// Jobs newest first, without hosts or spec.
pub(in crate::store) fn jobs(
    c: &mut impl GenericClient,
    limit: u32,
    before: Option<JobId>,
) -> Result<Vec<JobView>, StoreError> {
    let ids = c.query(
        "SELECT id FROM jobs WHERE id < $1 ORDER BY id DESC LIMIT $2",
        &[
            &(before.unwrap_or(i64::MAX as u64) as i64),
            &i64::from(limit),
        ],
    )?;
    let mut out = Vec::with_capacity(ids.len());
    for r in ids {
        if let Some(j) = job(c, r.get::<_, i64>(0) as JobId, false)? {
            out.push(j);
        }
    }
    Ok(out)
}

/// Jobs in one of `states`, oldest first, in full.
pub(in crate::store) fn jobs_in_state(
    c: &mut impl GenericClient,
    states: &[&str],
) -> Result<Vec<JobView>, StoreError> {
    let ids = c.query(
        "SELECT id FROM jobs WHERE state = ANY($1) ORDER BY id",
        &[&states],
    )?;
    let mut out = Vec::with_capacity(ids.len());
    for r in ids {
        if let Some(j) = job(c, r.get::<_, i64>(0) as JobId, true)? {
            out.push(j);
        }
    }
    Ok(out)
}

/// Up to `limit` events with `seq > after` that `filter` takes, in order. The filter is
/// the SQLite reader's, in SQL: kinds always apply; hosts only to events with a host,
/// streams only to events with a stream.
pub(in crate::store) fn events(
    c: &mut impl GenericClient,
    job: JobId,
    after: u64,
    filter: &EventFilter,
    limit: usize,
) -> Result<Vec<CommittedEvent>, StoreError> {
    let streams: Option<Vec<&str>> = filter
        .streams
        .as_ref()
        .map(|s| s.iter().map(|s| s.as_str()).collect());
    let rows = c.query(
        "SELECT seq, kind, host, stream, json FROM events \
         WHERE job = $1 AND seq > $2 \
         AND ($3::text[] IS NULL OR kind = ANY($3)) \
         AND ($4::text[] IS NULL OR host IS NULL OR host = ANY($4)) \
         AND ($5::text[] IS NULL OR stream IS NULL OR stream = ANY($5)) \
         ORDER BY seq LIMIT $6",
        &[
            &(job as i64),
            &(after as i64),
            &filter.kinds,
            &filter.hosts,
            &streams,
            &(limit.min(i64::MAX as usize) as i64),
        ],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    let mut last_host: Option<Arc<str>> = None;
    for r in rows {
        let host = r.get::<_, Option<&str>>(2).map(|h| match &last_host {
            Some(l) if &**l == h => l.clone(),
            _ => {
                let a: Arc<str> = Arc::from(h);
                last_host = Some(a.clone());
                a
            }
        });
        let stream = match r.get::<_, Option<&str>>(3) {
            Some(s) => Some(s.parse::<Stream>().map_err(corrupt)?),
            None => None,
        };
        out.push(CommittedEvent {
            seq: r.get::<_, i64>(0) as u64,
            kind: kind_name(r.get(1)),
            host,
            stream,
            json: Bytes::copy_from_slice(r.get::<_, &[u8]>(4)),
        });
    }
    Ok(out)
}

/// One number of a job's row (`last_seq`, `dropped_lines`).
pub(in crate::store) fn job_number(
    c: &mut impl GenericClient,
    job: JobId,
    column: JobNumber,
) -> Result<u64, StoreError> {
    let sql = match column {
        JobNumber::LastSeq => "SELECT last_seq FROM jobs WHERE id = $1",
        JobNumber::DroppedLines => "SELECT dropped_lines FROM jobs WHERE id = $1",
    };
    c.query_opt(sql, &[&(job as i64)])?
        .map(|r| r.get::<_, i64>(0) as u64)
        .ok_or(StoreError::NoSuchJob(job))
}

pub(in crate::store) fn audit_page(
    c: &mut impl GenericClient,
    limit: u32,
    before: Option<i64>,
) -> Result<Vec<AuditEntry>, StoreError> {
    let rows = c.query(
        "SELECT id, ts, actor, action, job, detail, addr, outcome FROM audit \
         WHERE id < $1 ORDER BY id DESC LIMIT $2",
        &[&before.unwrap_or(i64::MAX), &i64::from(limit)],
    )?;
    Ok(rows
        .iter()
        .map(|r| AuditEntry {
            id: r.get(0),
            ts: r.get(1),
            actor: r.get(2),
            action: r.get(3),
            job: r.get::<_, Option<i64>>(4).map(|v| v as JobId),
            detail: r.get(5),
            addr: r.get(6),
            outcome: r.get(7),
        })
        .collect())
}

/// How many jobs are in each state, `unrecorded` failures counted as failed.
pub(in crate::store) fn jobs_by_state(
    c: &mut impl GenericClient,
    unrecorded: &[JobId],
) -> Result<Vec<(String, u64)>, StoreError> {
    let mut counts: Vec<(String, u64)> = c
        .query("SELECT state, count(*) FROM jobs GROUP BY state", &[])?
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
        .collect();
    for &id in unrecorded {
        if let Some(row) = c.query_opt("SELECT state FROM jobs WHERE id = $1", &[&(id as i64)])? {
            count_as_failed(&mut counts, row.get(0));
        }
    }
    Ok(counts)
}

/// A stored job state; an unknown one reads as failed, as the SQLite writer reads it.
pub(in crate::store) fn parse_state(state: &str) -> JobState {
    state.parse().unwrap_or(JobState::Failed)
}
