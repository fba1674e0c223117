//! One function per client command; each talks to the API and prints its answer.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use hyper::StatusCode;
use serde_json::json;
use shipwatch_protocol::{JobId, JobState};

use crate::follow::{Filters, Follower};
use crate::http::Refusal;
use crate::render::{Look, Output, Printer, Timestamps};
use crate::{ApiClient, ClientError, Exit, JobRef, Options, Server, token_from_file};
use shipwatch_protocol::api::{JobList, JobView, NewJob, RerunHosts, RerunRequest, TaskList};

/// How long a follower keeps trying to reach a gateway that went away (a restart takes
/// seconds; a box that stays down for this long is an error worth a non-zero exit).
const RECONNECT_FOR: Duration = Duration::from_secs(120);

/// A client command with its arguments already parsed.
#[derive(Debug, Clone)]
pub enum Command {
    Run {
        task: String,
        params: Vec<(String, String)>,
        follow: Option<TailOptions>,
    },
    Jobs(JobsQuery),
    Show {
        job: JobRef,
        json: bool,
    },
    Tail {
        job: JobRef,
        options: TailOptions,
    },
    Cancel {
        job: JobRef,
    },
    Rerun {
        job: JobRef,
        failed_only: bool,
        follow: Option<TailOptions>,
    },
    Tasks {
        json: bool,
    },
}

/// `shipwatch jobs` filters.
#[derive(Debug, Clone, Default)]
pub struct JobsQuery {
    pub task: Option<String>,
    pub state: Option<JobState>,
    pub limit: u32,
    pub json: bool,
}

/// What `tail` (and `--follow`) prints.
#[derive(Debug, Clone)]
pub struct TailOptions {
    pub filters: Filters,
    pub after: u64,
    /// Stop at the end of what is stored instead of following a running job.
    pub no_follow: bool,
    pub timestamps: Timestamps,
    pub output: Output,
}

impl Default for TailOptions {
    fn default() -> Self {
        TailOptions {
            filters: Filters::default(),
            after: 0,
            no_follow: false,
            timestamps: Timestamps::Absolute,
            output: Output::Text,
        }
    }
}

pub(crate) async fn run(command: Command, options: &Options) -> Result<Exit, ClientError> {
    match command {
        Command::Run {
            task,
            params,
            follow,
        } => {
            let api = connect(options, None)?;
            let job = start(&api, &task, params).await?;
            started(&api, &job, "queued", follow.is_some())?;
            match follow {
                Some(tail) => follow_job(&api, job.id, &tail).await,
                None => Ok(Exit::Succeeded),
            }
        }
        Command::Jobs(query) => jobs(&connect(options, None)?, &query).await,
        Command::Show { job, json } => show(&connect(options, Some(&job))?, job.id, json).await,
        Command::Tail { job, options: tail } => {
            follow_job(&connect(options, Some(&job))?, job.id, &tail).await
        }
        Command::Cancel { job } => {
            let api = connect(options, Some(&job))?;
            cancel(&api, job.id).await?;
            eprintln!("cancel of job {} requested", job.id);
            Ok(Exit::Succeeded)
        }
        Command::Rerun {
            job,
            failed_only,
            follow,
        } => {
            let api = connect(options, Some(&job))?;
            let hosts = if failed_only {
                RerunHosts::Failed
            } else {
                RerunHosts::All
            };
            let path = format!("/api/jobs/{}/rerun", job.id);
            let new: JobView = match api.post(&path, &RerunRequest { hosts }).await? {
                Ok(new) => new,
                Err(refusal) => {
                    return Err(explain(
                        &api,
                        refusal,
                        "re-running a job",
                        "the operator role",
                    ));
                }
            };
            started(
                &api,
                &new,
                &format!("queued, a re-run of job {}", job.id),
                follow.is_some(),
            )?;
            match follow {
                Some(tail) => follow_job(&api, new.id, &tail).await,
                None => Ok(Exit::Succeeded),
            }
        }
        Command::Tasks { json } => tasks(&connect(options, None)?, json).await,
    }
}

/// The client for this command: `--server` wins, then a pasted job URL's server, then
/// the local config's `public_url`.
/// A token goes to a pasted URL's server only when that is the configured one, so a link
/// from someone else cannot collect it.
fn connect(options: &Options, job: Option<&JobRef>) -> Result<ApiClient, ClientError> {
    let token = match (&options.token, &options.token_file) {
        (Some(token), _) if !token.trim().is_empty() => Some(token.trim().to_string()),
        (_, Some(file)) => Some(token_from_file(file)?),
        _ => None,
    };
    let server = match (&options.server, job.and_then(|j| j.server.clone())) {
        (Some(url), _) => Server::parse(url)?,
        (None, Some(server)) => {
            let configured = Server::parse(&options.default_server).ok();
            if token.is_some() && configured.as_ref() != Some(&server) {
                return Err(ClientError::Usage(format!(
                    "the job's URL names {server}, not the configured server: \
                     pass --server {server} (or SHIPWATCH_URL) to send your token there"
                )));
            }
            server
        }
        (None, None) => Server::parse(&options.default_server)?,
    };
    Ok(ApiClient::new(server, token))
}

/// Turns a refusal into an error that says what to do: who is needed for `action`.
pub(crate) fn explain(api: &ApiClient, refusal: Refusal, action: &str, needs: &str) -> ClientError {
    let message = refusal.answer.error;
    match refusal.status {
        StatusCode::UNAUTHORIZED => ClientError::Unauthenticated {
            server: api.server().to_string(),
            message,
        },
        StatusCode::FORBIDDEN => ClientError::Forbidden {
            message,
            action: action.to_string(),
            needs: needs.to_string(),
        },
        status => ClientError::Api {
            status: status.as_u16(),
            message,
            field: refusal.answer.field,
        },
    }
}

async fn start(
    api: &ApiClient,
    task: &str,
    params: Vec<(String, String)>,
) -> Result<JobView, ClientError> {
    let params: BTreeMap<String, String> = params.into_iter().collect();
    let refusal = match api
        .post::<JobView>(
            "/api/jobs",
            &NewJob {
                task: task.to_string(),
                params,
            },
        )
        .await?
    {
        Ok(job) => return Ok(job),
        Err(refusal) => refusal,
    };
    let field = refusal.answer.field.clone();
    match (refusal.status, field.as_deref()) {
        (StatusCode::NOT_FOUND, Some("task")) => {
            let offered = match api.get::<TaskList>("/api/tasks").await? {
                Ok(list) if list.tasks.is_empty() => "no tasks at all".to_string(),
                Ok(list) => list
                    .tasks
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                Err(_) => "(the list of tasks could not be read)".to_string(),
            };
            Err(ClientError::UnknownTask {
                task: task.to_string(),
                offered,
            })
        }
        (StatusCode::BAD_REQUEST, Some(param)) if param != "task" => {
            let mut message = refusal.answer.error;
            if let Ok(Ok(list)) = api.get::<TaskList>("/api/tasks").await
                && let Some(t) = list.tasks.iter().find(|t| t.name == task)
            {
                match t.params.iter().find(|p| p.name == param) {
                    Some(p) => {
                        if let Some(pattern) = &p.pattern
                            && !message.contains("pattern")
                        {
                            message.push_str(&format!(" ({param} must match {pattern})"));
                        }
                    }
                    None => {
                        let known: Vec<&str> = t.params.iter().map(|p| p.name.as_str()).collect();
                        message.push_str(&match known.is_empty() {
                            true => format!("; {task} takes no params"),
                            false => format!("; {task} takes: {}", known.join(", ")),
                        });
                    }
                }
            }
            Err(ClientError::BadParam {
                message,
                param: param.to_string(),
            })
        }
        _ => Err(explain(
            api,
            refusal,
            &format!("starting {task}"),
            "the operator role (or one in the task's allow list)",
        )),
    }
}

/// Says a job was made; without `--follow` its id goes to stdout, for scripts.
fn started(api: &ApiClient, job: &JobView, what: &str, following: bool) -> Result<(), ClientError> {
    eprintln!(
        "job {} ({}) {what}: {}",
        job.id,
        job.task,
        api.server().job_page(job.id)
    );
    if !following {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", job.id).map_err(ClientError::Output)?;
    }
    Ok(())
}

async fn job(api: &ApiClient, id: JobId) -> Result<JobView, ClientError> {
    match api.get(&format!("/api/jobs/{id}")).await? {
        Ok(job) => Ok(job),
        Err(refusal) => Err(explain(api, refusal, "reading a job", "the viewer role")),
    }
}

async fn cancel(api: &ApiClient, id: JobId) -> Result<(), ClientError> {
    match api
        .post_empty(&format!("/api/jobs/{id}/cancel"), &json!({}))
        .await?
    {
        Ok(()) => Ok(()),
        Err(refusal) => Err(explain(
            api,
            refusal,
            "cancelling a job",
            "the operator role",
        )),
    }
}

/// Prints a job's events until it ends (or what is stored, with `no_follow`), then the
/// summary; the exit tells the job's end.
async fn follow_job(api: &ApiClient, id: JobId, tail: &TailOptions) -> Result<Exit, ClientError> {
    let shown = job(api, id).await?;
    let mut printer = Printer::new(&shown, tail.output, tail.timestamps, Look::detect());
    if tail.no_follow || shown.state.is_terminal() {
        print_stored(api, id, tail, &mut printer).await?;
        if !shown.state.is_terminal() {
            return Ok(Exit::Succeeded);
        }
        summary(&shown);
        return Ok(exit_of(shown.state));
    }
    let mut follower = Follower::new(
        api.clone(),
        id,
        tail.filters.clone(),
        tail.after,
        RECONNECT_FOR,
    );
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    loop {
        let followed = tokio::select! {
            done = follower.run(|events| printer.events(id, events).map_err(ClientError::Output)) => done,
            _ = tokio::signal::ctrl_c() => {
                if interactive && follower.ended.is_none() && ask_to_cancel(&printer, id) {
                    cancel(api, id).await?;
                    printer.suspend(|| eprintln!("cancel of job {id} requested; following it to its end"));
                    continue;
                }
                printer.finish().map_err(ClientError::Output)?;
                eprintln!(
                    "stopped watching job {id}; it goes on (resume: shipwatch tail {id} --after {})",
                    follower.last
                );
                return Ok(Exit::StoppedWatching);
            }
        };
        printer.finish().map_err(ClientError::Output)?;
        followed?;
        break;
    }
    let end = job(api, id).await?;
    summary(&end);
    Ok(exit_of(end.state))
}

/// What is stored now, from `GET /api/jobs/{id}/log?format=ndjson` (one streamed
/// response: the fast path for a finished job and `tail --no-follow`).
async fn print_stored(
    api: &ApiClient,
    id: JobId,
    tail: &TailOptions,
    printer: &mut Printer,
) -> Result<(), ClientError> {
    let mut path = format!("/api/jobs/{id}/log?format=ndjson");
    // The endpoint filters by one host; more are filtered here.
    if let [host] = tail.filters.hosts.as_slice() {
        path.push_str(&format!("&host={host}"));
    }
    if let Some(stream) = tail.filters.stream {
        path.push_str(&format!("&stream={stream}"));
    }
    let hosts = &tail.filters.hosts;
    let stored = api
        .get_ndjson(&path, |events| {
            let keep: Vec<_> = events
                .into_iter()
                .filter(|e| e.seq > tail.after)
                .filter(|e| {
                    hosts.is_empty() || e.body.host().is_none_or(|h| hosts.iter().any(|x| x == h))
                })
                .collect();
            printer.events(id, &keep).map_err(ClientError::Output)
        })
        .await?;
    printer.finish().map_err(ClientError::Output)?;
    stored.map_err(|refusal| explain(api, refusal, "reading a job's log", "the viewer role"))
}

fn exit_of(state: JobState) -> Exit {
    match state {
        JobState::Succeeded => Exit::Succeeded,
        JobState::Cancelled => Exit::Cancelled,
        // A job still queued or running when the follower stopped is not a success.
        _ => Exit::Failed,
    }
}

/// Asks on the terminal whether Ctrl-C means "cancel the job" or only "stop watching".
fn ask_to_cancel(printer: &Printer, id: JobId) -> bool {
    printer.suspend(|| {
        eprint!("\ncancel job {id} too? [y/N] (N: only stop watching) ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        if std::io::stdin().read_line(&mut answer).is_err() {
            return false;
        }
        matches!(answer.trim(), "y" | "Y" | "yes")
    })
}

/// The one-line end of a followed job, then its failed hosts with their exit codes.
fn summary(job: &JobView) {
    let c = &job.counts;
    let total = c.pending
        + c.running
        + c.ok
        + c.failed
        + c.timeout
        + c.unreachable
        + c.cancelled
        + c.skipped;
    let mut parts = vec![format!("{} ok", c.ok)];
    for (n, what) in [
        (c.failed, "failed"),
        (c.timeout, "timed out"),
        (c.unreachable, "unreachable"),
        (c.cancelled, "cancelled"),
        (c.skipped, "skipped"),
        (c.running, "running"),
        (c.pending, "pending"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    let took = took(job).map(|t| format!(" in {t}")).unwrap_or_default();
    let reason = job
        .reason
        .as_deref()
        .map(|r| format!("; {r}"))
        .unwrap_or_default();
    eprintln!(
        "job {} {} {}{took}: {} of {total} hosts{reason}",
        job.id,
        job.task,
        job.state,
        parts.join(", ")
    );
    let failed: Vec<_> = job
        .hosts
        .iter()
        .flatten()
        .filter(|h| h.state.is_failure())
        .collect();
    if !failed.is_empty() {
        let width = failed.iter().map(|h| h.host.len()).max().unwrap_or(0);
        eprintln!("failed hosts:");
        for h in failed {
            let exit = h.exit_code.map_or("-".to_string(), |c| c.to_string());
            eprintln!(
                "  {:<width$}  {:<11}  exit {exit}",
                h.host,
                h.state.as_str()
            );
        }
    }
}

/// `started_at` to `ended_at` as `1:02:03` / `2:03` / `4.5s`.
fn took(job: &JobView) -> Option<String> {
    let ms = |t: &Option<String>| {
        shipwatch_protocol::Timestamp::parse_rfc3339(t.as_deref()?)
            .ok()
            .map(|t| t.as_millis())
    };
    let d = ms(&job.ended_at)? - ms(&job.started_at)?;
    Some(duration(d))
}

fn duration(ms: i64) -> String {
    let s = ms / 1000;
    if s < 60 {
        format!("{}.{}s", s, ms % 1000 / 100)
    } else if s < 3600 {
        format!("{}:{:02}", s / 60, s % 60)
    } else {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    }
}

async fn jobs(api: &ApiClient, query: &JobsQuery) -> Result<Exit, ClientError> {
    const PAGE: u32 = 200;
    const MAX_PAGES: usize = 25;
    let limit = query.limit.max(1) as usize;
    let mut found = Vec::new();
    let mut before: Option<JobId> = None;
    for _ in 0..MAX_PAGES {
        let page_size = if query.task.is_none() && query.state.is_none() {
            (limit - found.len()).min(PAGE as usize) as u32
        } else {
            PAGE
        };
        let mut path = format!("/api/jobs?limit={page_size}");
        if let Some(before) = before {
            path.push_str(&format!("&before={before}"));
        }
        let page: JobList = match api.get(&path).await? {
            Ok(page) => page,
            Err(refusal) => return Err(explain(api, refusal, "listing jobs", "the viewer role")),
        };
        let last_page = page.jobs.len() < page_size as usize;
        before = page.jobs.last().map(|j| j.id);
        found.extend(page.jobs.into_iter().filter(|j| {
            query.task.as_ref().is_none_or(|t| &j.task == t)
                && query.state.is_none_or(|s| j.state == s)
        }));
        if found.len() >= limit || last_page || before.is_none() {
            break;
        }
    }
    found.truncate(limit);
    let mut out = std::io::stdout().lock();
    if query.json {
        let text = serde_json::to_string_pretty(&JobList { jobs: found }).map_err(|source| {
            ClientError::Decode {
                url: api.server().url("/api/jobs"),
                source,
            }
        })?;
        writeln!(out, "{text}").map_err(ClientError::Output)?;
        return Ok(Exit::Succeeded);
    }
    let mut table = vec![["ID", "TASK", "STATE", "HOSTS OK", "BY", "CREATED"].map(String::from)];
    for j in &found {
        let c = &j.counts;
        let total = c.pending
            + c.running
            + c.ok
            + c.failed
            + c.timeout
            + c.unreachable
            + c.cancelled
            + c.skipped;
        table.push([
            j.id.to_string(),
            j.task.clone(),
            j.state.to_string(),
            format!("{}/{total}", c.ok),
            j.started_by.clone(),
            j.created_at.clone(),
        ]);
    }
    write_table(&mut out, &table).map_err(ClientError::Output)?;
    Ok(Exit::Succeeded)
}

async fn show(api: &ApiClient, id: JobId, json: bool) -> Result<Exit, ClientError> {
    let mut out = std::io::stdout().lock();
    if json {
        let value: serde_json::Value = match api.get(&format!("/api/jobs/{id}")).await? {
            Ok(v) => v,
            Err(refusal) => return Err(explain(api, refusal, "reading a job", "the viewer role")),
        };
        let text = serde_json::to_string_pretty(&value).unwrap_or_default();
        writeln!(out, "{text}").map_err(ClientError::Output)?;
        return Ok(Exit::Succeeded);
    }
    let j = job(api, id).await?;
    let write = |out: &mut std::io::StdoutLock| -> std::io::Result<()> {
        let reason = j
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        writeln!(out, "job {} · {} · {}{reason}", j.id, j.task, j.state)?;
        let took = took(&j).map(|t| format!(", ran {t}")).unwrap_or_default();
        writeln!(out, "started by {} at {}{took}", j.started_by, j.created_at)?;
        if !j.params.is_empty() {
            let params: Vec<String> = j.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(out, "params: {}", params.join(" "))?;
        }
        writeln!(out, "page: {}", api.server().job_page(j.id))?;
        writeln!(out)?;
        let mut table =
            vec![["HOST", "STATE", "EXIT", "WAVE", "STARTED", "ENDED"].map(String::from)];
        for h in j.hosts.iter().flatten() {
            table.push([
                h.host.clone(),
                h.state.to_string(),
                h.exit_code.map_or("-".into(), |c| c.to_string()),
                h.wave.to_string(),
                h.started_at.clone().unwrap_or_else(|| "-".into()),
                h.ended_at.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        write_table(out, &table)
    };
    write(&mut out).map_err(ClientError::Output)?;
    Ok(Exit::Succeeded)
}

async fn tasks(api: &ApiClient, json: bool) -> Result<Exit, ClientError> {
    let list: TaskList = match api.get("/api/tasks").await? {
        Ok(list) => list,
        Err(refusal) => return Err(explain(api, refusal, "listing tasks", "the viewer role")),
    };
    let mut out = std::io::stdout().lock();
    let write = |out: &mut std::io::StdoutLock| -> std::io::Result<()> {
        if json {
            let text = serde_json::to_string_pretty(&list).unwrap_or_default();
            return writeln!(out, "{text}");
        }
        if list.tasks.is_empty() {
            return writeln!(out, "this server offers no tasks");
        }
        for t in &list.tasks {
            writeln!(
                out,
                "{}  {} ({} hosts)",
                t.name,
                t.description,
                t.hosts.len()
            )?;
            for p in &t.params {
                let mut about = vec![if p.required { "required" } else { "optional" }.to_string()];
                if let Some(pattern) = &p.pattern {
                    about.push(format!("pattern {pattern}"));
                }
                if !p.default.is_empty() {
                    about.push(format!("default {}", p.default));
                }
                writeln!(out, "    -p {}=…  {}", p.name, about.join(", "))?;
            }
        }
        Ok(())
    };
    write(&mut out).map_err(ClientError::Output)?;
    Ok(Exit::Succeeded)
}

/// Columns padded to their widest cell.
fn write_table<const N: usize>(out: &mut impl Write, rows: &[[String; N]]) -> std::io::Result<()> {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}
