//! `/api/jobs…`: create, list, show and cancel jobs, and read a job's log.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, stream};
use serde::Deserialize;
use shipwatch_config::Role;
use shipwatch_protocol::api::{JobList, JobView, LogLine, NewJob};
use shipwatch_protocol::{BodyRef, JobId, Stream, Timestamp, write_event_json};

use super::{ApiError, HttpState, Principal};
use crate::dispatch::DispatchError;
use crate::model::{EventFilter, RowRef};

pub(super) async fn create(
    State(http): State<HttpState>,
    who: Principal,
    req: Result<Json<NewJob>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    who.at_least(Role::Operator)?;
    let Json(req) = req.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                r#"the body must be {{"task":"…","params":{{…}}}} in UTF-8 JSON: {}"#,
                e.body_text()
            ),
        )
    })?;
    let gateway = &http.gateway;
    let config = gateway.config();
    let Some(task) = config.task(&req.task) else {
        return Err(ApiError::on_field(
            StatusCode::NOT_FOUND,
            "task",
            format!("unknown task {:?}", req.task),
        ));
    };
    may_start(gateway, &who, task)?;
    let spec =
        crate::spec::job_spec(&config, &task.name, &req.params).map_err(|e| match e.field {
            Some(field) => ApiError::on_field(StatusCode::BAD_REQUEST, field, e.message),
            None => ApiError::new(StatusCode::BAD_REQUEST, e.message),
        })?;
    let params = spec.params.clone();
    let job = gateway.store.create_job(spec, params, &who.name).await?;
    gateway
        .auth
        .audit(&who, "start", Some(job.id), &task.name, "ok")
        .await;
    tracing::info!(job = job.id, task = %task.name, by = %who.name, "job queued");
    gateway.dispatcher.wake();
    Ok((StatusCode::CREATED, Json(job)))
}

/// 403 unless `who` may start `task` (its `allow` list; admin always may), 409 while it
/// already runs `concurrency` jobs.
pub(super) fn may_start(
    gateway: &crate::AppState,
    who: &Principal,
    task: &shipwatch_config::Task,
) -> Result<(), ApiError> {
    who.may_run(task)?;
    let running = gateway.dispatcher.running_jobs_of_task(&task.name);
    if running.len() >= task.concurrency.max(1) as usize {
        return Err(ApiError::on_field(
            StatusCode::CONFLICT,
            "task",
            format!(
                "task {} is already running as job {}",
                task.name,
                running.first().copied().unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    limit: Option<u32>,
    before: Option<JobId>,
}

pub(super) async fn list(
    State(http): State<HttpState>,
    _who: Principal,
    Query(q): Query<ListQuery>,
) -> Result<Json<JobList>, ApiError> {
    let jobs = http
        .gateway
        .store
        .jobs(q.limit.unwrap_or(50).min(500), q.before)
        .await?;
    Ok(Json(JobList { jobs }))
}

pub(super) async fn show(
    State(http): State<HttpState>,
    _who: Principal,
    Path(id): Path<JobId>,
) -> Result<Json<JobView>, ApiError> {
    match http.gateway.store.job_shown(id).await? {
        Some(job) => Ok(Json(job)),
        None => Err(ApiError::not_found(id)),
    }
}

pub(super) async fn cancel(
    State(http): State<HttpState>,
    who: Principal,
    Path(id): Path<JobId>,
) -> Result<StatusCode, ApiError> {
    who.at_least(Role::Operator)?;
    let Some(job) = http.gateway.store.job(id).await? else {
        return Err(ApiError::not_found(id));
    };
    // A task removed from the config since leaves its jobs to any operator.
    if let Some(task) = http.gateway.config().task(&job.task) {
        who.may_run(task)?;
    }
    match http.gateway.dispatcher.cancel(id).await {
        Ok(_) => {}
        Err(DispatchError::NoSuchJob(id)) => return Err(ApiError::not_found(id)),
        Err(DispatchError::Store(e)) => return Err(e.into()),
    }
    http.gateway
        .auth
        .audit(&who, "cancel", Some(id), &job.task, "ok")
        .await;
    tracing::info!(job = id, by = %who.name, "job cancel requested");
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize)]
pub(super) struct LogQuery {
    /// Only events with a larger seq: where a reader that holds the log up to a seq
    /// goes on (the page's gap fill), without reading the job again from seq 1.
    after: Option<String>,
    host: Option<String>,
    stream: Option<String>,
    format: Option<String>,
}

/// Events per store read of a log: a million-line log is some 60 reads, each holding a
/// store connection for milliseconds, not seconds.
const LOG_PAGE: u64 = 16_384;

/// Store reads under way at once for one log request: the next page is read while the
/// last one is written to the socket, so the reader never waits for the store.
const LOG_READ_AHEAD: usize = 2;

/// The encodings of `GET /api/jobs/{id}/log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogFormat {
    /// `ts host stream| text` per line event ([`LogLine`]).
    Text,
    /// Every event as stored, one JSON object a line.
    Ndjson,
    /// NDJSON in which a line event is written as `seq TAB ts TAB host TAB o|e TAB text`:
    /// `ts` in milliseconds since the epoch, or `+N`/`-N` from the line before it in the
    /// same answer; `o` stdout, `e` stderr. A line whose text holds a newline, or whose
    /// host a tab, stays JSON. Half the bytes of NDJSON and nothing to unescape: what the
    /// page reads a whole log in.
    Compact,
}

/// The job's log after `after=` (default 0), streamed from the store a page at a time,
/// the next page read while the last is sent: text lines ([`LogLine`]), with
/// `format=ndjson` every event as stored, with `format=compact` the same with line
/// events in columns ([`LogFormat::Compact`]).
pub(super) async fn log(
    State(http): State<HttpState>,
    _who: Principal,
    Path(id): Path<JobId>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    if http.gateway.store.job(id).await?.is_none() {
        return Err(ApiError::not_found(id));
    }
    let format = match q.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("ndjson") => LogFormat::Ndjson,
        Some("compact") => LogFormat::Compact,
        Some(other) => {
            return Err(ApiError::on_field(
                StatusCode::BAD_REQUEST,
                "format",
                format!("format must be text, ndjson or compact, not {other:?}"),
            ));
        }
    };
    let after = match q.after.as_deref() {
        None => 0,
        Some(a) => a.parse::<u64>().map_err(|_| {
            ApiError::on_field(
                StatusCode::BAD_REQUEST,
                "after",
                format!("after must be a seq (0 or more), not {a:?}"),
            )
        })?,
    };
    let streams = match q.stream.as_deref() {
        None => None,
        Some(s) => Some(vec![s.parse::<Stream>().map_err(|e| {
            ApiError::on_field(StatusCode::BAD_REQUEST, "stream", e.to_string())
        })?]),
    };
    let filter = EventFilter {
        kinds: (format == LogFormat::Text).then(|| vec!["line".into()]),
        hosts: q.host.map(|h| vec![h]),
        streams,
    };
    let store = http.gateway.store.clone();
    // Page k holds the seqs after `after + k * LOG_PAGE` up to the next page's start:
    // seqs are gapless, so each read is a window known in advance and reads can overlap
    // (a seq past the window, after a gap, is the next page's). A page that finds fewer
    // than LOG_PAGE events met the end of the log as it was then and is the last: a
    // later page, read at another moment of a running job, could leave a gap after it.
    let pages = stream::iter(0u64..)
        .map(move |k| {
            let store = store.clone();
            let from = after.saturating_add(k.saturating_mul(LOG_PAGE));
            let page = LogPage {
                format,
                filter: filter.clone(),
                job: id,
                until: from.saturating_add(LOG_PAGE),
                last_ts: None,
                out: Vec::new(),
            };
            async move {
                store
                    .scan_events(id, from, LOG_PAGE as usize, page, LogPage::write)
                    .await
            }
        })
        .buffered(LOG_READ_AHEAD)
        .scan(false, |ended, read| {
            if *ended {
                return std::future::ready(None);
            }
            *ended = !matches!(read, Ok((_, found)) if found as u64 == LOG_PAGE);
            std::future::ready(Some(
                read.map(|(page, _)| page.out)
                    .map_err(std::io::Error::other),
            ))
        });
    let kind = match format {
        LogFormat::Text => "text/plain; charset=utf-8",
        LogFormat::Ndjson | LogFormat::Compact => "application/x-ndjson",
    };
    Ok(([(header::CONTENT_TYPE, kind)], Body::from_stream(pages)).into_response())
}

/// One page of a log being written: the events of one store read in the answer's format.
struct LogPage {
    format: LogFormat,
    filter: EventFilter,
    job: JobId,
    /// The highest seq this page writes; later ones are the next page's.
    until: u64,
    /// The time of the last compact line written, which the next one is written from.
    last_ts: Option<i64>,
    out: Vec<u8>,
}

impl LogPage {
    fn write(&mut self, row: RowRef<'_>) {
        match row {
            RowRef::Line {
                seq,
                ts,
                host,
                stream,
                text,
            } => {
                if seq > self.until || !self.filter.takes("line", Some(host), Some(stream)) {
                    return;
                }
                match self.format {
                    LogFormat::Text => LogLine {
                        ts: ts.to_string().into(),
                        host: host.into(),
                        stream,
                        text: text.into(),
                    }
                    .write_to(&mut self.out),
                    LogFormat::Compact if !text.contains('\n') && !host.contains(['\t', '\n']) => {
                        self.compact_line(seq, ts, host, stream, text);
                    }
                    LogFormat::Ndjson | LogFormat::Compact => {
                        let body = BodyRef::Line { host, stream, text };
                        write_event_json(&mut self.out, self.job, seq, ts, body);
                        self.out.push(b'\n');
                    }
                }
            }
            RowRef::Event(e) => {
                if e.seq > self.until || !self.filter.takes(e.kind, e.host.as_deref(), e.stream) {
                    return;
                }
                if self.format == LogFormat::Text {
                    if let Ok(line) = serde_json::from_slice::<LogLine>(&e.json) {
                        line.write_to(&mut self.out);
                    }
                } else {
                    self.out.extend_from_slice(&e.json);
                    self.out.push(b'\n');
                }
            }
        }
    }

    /// `seq TAB ts TAB host TAB o|e TAB text` (see [`LogFormat::Compact`]).
    fn compact_line(&mut self, seq: u64, ts: Timestamp, host: &str, stream: Stream, text: &str) {
        use std::io::Write;
        let out = &mut self.out;
        // Writing into a Vec cannot fail.
        let _ = match self.last_ts {
            Some(last) => write!(out, "{seq}\t{:+}\t", ts.0 - last),
            None => write!(out, "{seq}\t{}\t", ts.0),
        };
        self.last_ts = Some(ts.0);
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(match stream {
            Stream::Stdout => b"\to\t",
            Stream::Stderr => b"\te\t",
        });
        out.extend_from_slice(text.as_bytes());
        out.push(b'\n');
    }
}
