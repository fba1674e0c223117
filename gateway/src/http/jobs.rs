//! `/api/jobs…`: create, list, show and cancel jobs, and read a job's log.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde::Deserialize;
use shipwatch_config::Role;
use shipwatch_protocol::api::{JobList, JobView, LogLine, NewJob};
use shipwatch_protocol::{JobId, Stream};

use super::{ApiError, HttpState, Principal};
use crate::dispatch::DispatchError;
use crate::fanout::PAGE_EVENTS;
use crate::model::EventFilter;

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

/// The job's log after `after=` (default 0), streamed from the store a page at a time:
/// text lines ([`LogLine`]) or, with `format=ndjson`, every event as stored.
pub(super) async fn log(
    State(http): State<HttpState>,
    _who: Principal,
    Path(id): Path<JobId>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    if http.gateway.store.job(id).await?.is_none() {
        return Err(ApiError::not_found(id));
    }
    let ndjson = match q.format.as_deref() {
        None | Some("text") => false,
        Some("ndjson") => true,
        Some(other) => {
            return Err(ApiError::on_field(
                StatusCode::BAD_REQUEST,
                "format",
                format!("format must be text or ndjson, not {other:?}"),
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
        kinds: if ndjson {
            None
        } else {
            Some(vec!["line".into()])
        },
        hosts: q.host.map(|h| vec![h]),
        streams,
    };
    let store = http.gateway.store.clone();
    let pages = stream::unfold(Some(after), move |after| {
        let store = store.clone();
        let filter = filter.clone();
        async move {
            let after = after?;
            match store.read_events(id, after, &filter, PAGE_EVENTS).await {
                Ok(events) if events.is_empty() => None,
                Ok(events) => {
                    let next = (events.len() == PAGE_EVENTS)
                        .then(|| events.last().map(|e| e.seq))
                        .flatten();
                    let mut out = Vec::new();
                    for e in &events {
                        if ndjson {
                            out.extend_from_slice(&e.json);
                            out.push(b'\n');
                        } else if let Ok(line) = serde_json::from_slice::<LogLine>(&e.json) {
                            line.write_to(&mut out);
                        }
                    }
                    Some((Ok::<_, std::io::Error>(out), next))
                }
                Err(e) => Some((Err(std::io::Error::other(e)), None)),
            }
        }
    });
    let kind = if ndjson {
        "application/x-ndjson"
    } else {
        "text/plain; charset=utf-8"
    };
    Ok(([(header::CONTENT_TYPE, kind)], Body::from_stream(pages)).into_response())
}
