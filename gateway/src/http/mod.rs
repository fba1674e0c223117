//! The HTTP API and WebSockets of DESIGN §6.
//!
//! Every handler takes a [`Principal`]: today it is the configured `auth.anonymous` role
//! (401 when that is none); the login and token work of DESIGN §8 replaces the extractor,
//! not the handlers.

mod ws;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::stream;
use serde::{Deserialize, Serialize};
use shipwatch_config::Role;
use shipwatch_protocol::{JobId, Stream};

use crate::AppState;
use crate::fanout::{Hub, PAGE_EVENTS};
use crate::model::EventFilter;
use crate::store::StoreError;

/// What `/` says until the web page is served there: how to drive the API by hand.
async fn index(State(api): State<Api>) -> String {
    let url = api.app.config.borrow().server.public_url.clone();
    let url = url.trim_end_matches('/');
    format!(
        "shipwatch gateway\n\n\
         The web page is not served yet; the API is:\n  \
         curl -s {url}/api/tasks\n  \
         curl -s -XPOST {url}/api/jobs -H 'content-type: application/json' -d '{{\"task\":\"deploy\"}}'\n  \
         curl -s {url}/api/jobs/1\n  \
         curl -s {url}/api/jobs/1/log\n"
    )
}

/// What the handlers share: the gateway's state and the fan-out.
#[derive(Clone)]
pub struct Api {
    pub app: AppState,
    pub hub: Arc<Hub>,
}

/// The API's routes, ready to serve.
pub fn router(app: AppState, hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/api/jobs", post(create_job).get(list_jobs))
        .route("/api/jobs/{id}", get(get_job))
        .route("/api/jobs/{id}/log", get(job_log))
        .route("/api/jobs/{id}/cancel", post(cancel_job))
        .route("/api/tasks", get(tasks))
        .route("/api/audit", get(audit))
        .route("/ws/jobs/{id}", get(ws::job))
        .route("/ws/jobs", get(ws::jobs))
        .with_state(Api { app, hub })
}

/// Who is asking, and with what role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

impl FromRequestParts<Api> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(_parts: &mut Parts, api: &Api) -> Result<Self, ApiError> {
        match api.app.config().auth.anonymous {
            Some(role) => Ok(Principal {
                name: "anonymous".into(),
                role,
            }),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "log in first: anonymous access is off",
            )),
        }
    }
}

impl Principal {
    fn at_least(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("{} may not do this", self.name),
            ))
        }
    }
}

/// An error as the API returns it: `{"error":"…","field":…}` with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: String,
    field: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError {
            status,
            error: error.into(),
            field: None,
        }
    }

    fn not_found(id: JobId) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, format!("job {id} does not exist"))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "store request failed");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body {
            error: String,
            field: Option<String>,
        }
        (
            self.status,
            Json(Body {
                error: self.error,
                field: self.field,
            }),
        )
            .into_response()
    }
}

#[derive(Deserialize)]
struct NewJob {
    task: String,
    #[serde(default)]
    params: BTreeMap<String, String>,
}

async fn create_job(
    State(api): State<Api>,
    who: Principal,
    Json(req): Json<NewJob>,
) -> Result<Response, ApiError> {
    who.at_least(Role::Operator)?;
    let config = api.app.config();
    let Some(task) = config.task(&req.task) else {
        let mut e = ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown task {:?}", req.task),
        );
        e.field = Some("task".into());
        return Err(e);
    };
    if !task.allow.is_empty() && !task.allow.contains(&who.role) && who.role != Role::Admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{} may not run {}", who.name, task.name),
        ));
    }
    let running = api.app.dispatcher.running_jobs_of_task(&task.name);
    if running.len() >= task.concurrency.max(1) as usize {
        let mut e = ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "task {} is already running as job {}",
                task.name,
                running.first().copied().unwrap_or_default()
            ),
        );
        e.field = Some("task".into());
        return Err(e);
    }
    let spec = config
        .job_spec(&task.name, &req.params)
        .map_err(|e| ApiError {
            status: StatusCode::BAD_REQUEST,
            error: e.message,
            field: e.field,
        })?;
    let params = spec.params.clone();
    let job = api.app.store.create_job(spec, params, &who.name).await?;
    api.app
        .store
        .audit(&who.name, "start", Some(job.id), &task.name)
        .await?;
    tracing::info!(job = job.id, task = %task.name, by = %who.name, "job queued");
    api.app.dispatcher.wake();
    Ok((StatusCode::CREATED, Json(job)).into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<u32>,
    before: Option<JobId>,
}

async fn list_jobs(
    State(api): State<Api>,
    _who: Principal,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let jobs = api
        .app
        .store
        .jobs(q.limit.unwrap_or(50).min(500), q.before)
        .await?;
    Ok(Json(serde_json::json!({ "jobs": jobs })).into_response())
}

#[derive(Deserialize)]
struct AuditQuery {
    limit: Option<u32>,
}

/// Who started and cancelled what, newest first; admins only.
async fn audit(
    State(api): State<Api>,
    who: Principal,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    who.at_least(Role::Admin)?;
    let entries = api
        .app
        .store
        .audit_log(q.limit.unwrap_or(100).min(1000))
        .await?;
    Ok(Json(serde_json::json!({ "audit": entries })).into_response())
}

async fn get_job(
    State(api): State<Api>,
    _who: Principal,
    Path(id): Path<JobId>,
) -> Result<Response, ApiError> {
    match api.app.store.job_shown(id).await? {
        Some(job) => Ok(Json(job).into_response()),
        None => Err(ApiError::not_found(id)),
    }
}

async fn cancel_job(
    State(api): State<Api>,
    who: Principal,
    Path(id): Path<JobId>,
) -> Result<Response, ApiError> {
    who.at_least(Role::Operator)?;
    match api.app.dispatcher.cancel(id).await {
        Ok(_) => {}
        Err(crate::dispatch::DispatchError::NoSuchJob(id)) => return Err(ApiError::not_found(id)),
        Err(crate::dispatch::DispatchError::Store(e)) => return Err(e.into()),
    }
    api.app
        .store
        .audit(&who.name, "cancel", Some(id), "")
        .await?;
    tracing::info!(job = id, by = %who.name, "job cancel requested");
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn tasks(State(api): State<Api>, _who: Principal) -> Response {
    #[derive(Serialize)]
    struct P<'a> {
        name: &'a str,
        pattern: Option<&'a str>,
        required: bool,
        default: &'a str,
    }
    #[derive(Serialize)]
    struct T<'a> {
        name: &'a str,
        description: &'a str,
        hosts: Vec<&'a str>,
        concurrency: u32,
        params: Vec<P<'a>>,
    }
    let config = api.app.config();
    let tasks: Vec<T> = config
        .tasks
        .iter()
        .map(|t| T {
            name: &t.name,
            description: &t.description,
            hosts: t.hosts.iter().map(|h| h.name.as_str()).collect(),
            concurrency: t.concurrency,
            params: t
                .params
                .iter()
                .map(|p| P {
                    name: &p.name,
                    pattern: p.pattern.as_ref().map(|r| r.as_str()),
                    required: p.required,
                    default: &p.default,
                })
                .collect(),
        })
        .collect();
    Json(serde_json::json!({ "tasks": tasks })).into_response()
}

#[derive(Deserialize)]
struct LogQuery {
    host: Option<String>,
    stream: Option<String>,
    format: Option<String>,
}

/// The job's log, streamed from the store a page at a time.
async fn job_log(
    State(api): State<Api>,
    _who: Principal,
    Path(id): Path<JobId>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    if api.app.store.job(id).await?.is_none() {
        return Err(ApiError::not_found(id));
    }
    let ndjson = match q.format.as_deref() {
        None | Some("text") => false,
        Some("ndjson") => true,
        Some(other) => {
            let mut e = ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("format must be text or ndjson, not {other:?}"),
            );
            e.field = Some("format".into());
            return Err(e);
        }
    };
    let streams = match q.stream.as_deref() {
        None => None,
        Some(s) => Some(vec![s.parse::<Stream>().map_err(|e| {
            let mut err = ApiError::new(StatusCode::BAD_REQUEST, e.to_string());
            err.field = Some("stream".into());
            err
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
    let store = api.app.store.clone();
    let pages = stream::unfold(Some(0u64), move |after| {
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
                        } else {
                            log_line(&mut out, &e.json);
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

/// `ts host stream| text` from a line event's JSON.
fn log_line(out: &mut Vec<u8>, json: &[u8]) {
    #[derive(Deserialize)]
    struct Line<'a> {
        #[serde(borrow)]
        ts: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        host: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        stream: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        text: std::borrow::Cow<'a, str>,
    }
    if let Ok(l) = serde_json::from_slice::<Line>(json) {
        out.extend_from_slice(l.ts.as_bytes());
        out.push(b' ');
        out.extend_from_slice(l.host.as_bytes());
        out.push(b' ');
        out.extend_from_slice(l.stream.as_bytes());
        out.extend_from_slice(b"| ");
        out.extend_from_slice(l.text.as_bytes());
        out.push(b'\n');
    }
}

/// Prometheus text: the recorder's metrics plus what is read live.
async fn metrics(State(api): State<Api>) -> Response {
    let mut out = String::new();
    out.push_str("# HELP shipwatch_ws_watchers WebSocket watchers connected now.\n");
    out.push_str("# TYPE shipwatch_ws_watchers gauge\n");
    out.push_str(&format!("shipwatch_ws_watchers {}\n", api.hub.watchers()));
    out.push_str(
        "# HELP shipwatch_ws_watchers_lagging Watchers catching up from the store instead of live.\n",
    );
    out.push_str("# TYPE shipwatch_ws_watchers_lagging gauge\n");
    out.push_str(&format!(
        "shipwatch_ws_watchers_lagging {}\n",
        api.hub.lagging()
    ));
    out.push_str("# HELP shipwatch_runners Runners connected to the gateway.\n");
    out.push_str("# TYPE shipwatch_runners gauge\n");
    out.push_str(&format!(
        "shipwatch_runners {}\n",
        api.app.dispatcher.runners()
    ));
    match api.app.store.jobs_by_state().await {
        Ok(states) => {
            out.push_str("# HELP shipwatch_jobs Jobs in the store, by state.\n");
            out.push_str("# TYPE shipwatch_jobs gauge\n");
            for state in shipwatch_protocol::JobState::ALL.iter().map(|s| s.as_str()) {
                let n = states
                    .iter()
                    .find(|(s, _)| s == state)
                    .map_or(0, |(_, n)| *n);
                out.push_str(&format!("shipwatch_jobs{{state=\"{state}\"}} {n}\n"));
            }
        }
        Err(error) => tracing::warn!(%error, "metrics: cannot count jobs by state"),
    }
    if let Some(handle) = prometheus() {
        out.push_str(&handle.render());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// The process-wide Prometheus recorder, installed on first use.
fn prometheus() -> Option<&'static metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .map_err(|error| tracing::warn!(%error, "no Prometheus recorder"))
                .ok()
        })
        .as_ref()
}

/// Installs the metrics recorder now, so counters from the start are kept.
pub fn install_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    let _ = prometheus();
    describe_counter!(
        "shipwatch_events_total",
        "Events committed to the store (rate() gives events/s)."
    );
    describe_counter!(
        "shipwatch_watcher_overflows_total",
        "Times a watcher fell out of the live ring and went back to the store."
    );
    describe_gauge!(
        "shipwatch_watchers",
        "Watchers registered with the fan-out hub."
    );
    describe_gauge!(
        "shipwatch_watchers_lagging",
        "Hub watchers reading from the store instead of live."
    );
    describe_histogram!(
        "shipwatch_store_commit_seconds",
        Unit::Seconds,
        "BEGIN to COMMIT of one write group: how long a line waits before anyone may see it."
    );
    describe_histogram!(
        "shipwatch_store_commit_ops",
        Unit::Count,
        "Writes (events, jobs, audit entries) committed per group."
    );
}

/// Re-reads the configuration on each SIGHUP until `shutdown`: a valid one replaces the
/// current one in place (sockets stay open); an invalid one is logged and the old kept.
pub async fn reload_on_sighup(
    config_tx: Arc<tokio::sync::watch::Sender<Arc<shipwatch_config::Config>>>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP: config reload is off");
            return;
        }
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            got = hup.recv() => if got.is_none() { return },
        }
        reload(&config_tx).await;
    }
}

/// One reload: read the config source off the async threads, swap it in if valid.
pub async fn reload(config_tx: &tokio::sync::watch::Sender<Arc<shipwatch_config::Config>>) {
    let source = config_tx.borrow().source.clone();
    match tokio::task::spawn_blocking(move || shipwatch_config::load(&source)).await {
        Ok(Ok(config)) => {
            tracing::info!(
                tasks = config.tasks.len(),
                users = config.users.len(),
                "configuration reloaded"
            );
            config_tx.send_replace(Arc::new(config));
        }
        Ok(Err(errors)) => {
            tracing::error!(%errors, "new configuration is invalid; keeping the old one")
        }
        Err(error) => tracing::error!(%error, "configuration reload failed"),
    }
}
