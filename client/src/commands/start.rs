//! Making jobs: `run TASK` and `rerun JOB`, with the start refusals explained in the
//! user's words (the offered tasks, the param's pattern).

use std::collections::BTreeMap;
use std::io::Write;

use hyper::StatusCode;
use shipwatch_protocol::JobId;
use shipwatch_protocol::api::{JobView, NewJob, RerunHosts, RerunRequest, TaskList};

use super::explain;
use crate::{ApiClient, ClientError};

pub(super) async fn start(
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
pub(super) fn started(
    api: &ApiClient,
    job: &JobView,
    what: &str,
    following: bool,
) -> Result<(), ClientError> {
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

/// `rerun JOB [--failed]`: the same spec again, on its failed hosts only with `failed_only`.
pub(super) async fn rerun(
    api: &ApiClient,
    id: JobId,
    failed_only: bool,
    following: bool,
) -> Result<JobView, ClientError> {
    let hosts = if failed_only {
        RerunHosts::Failed
    } else {
        RerunHosts::All
    };
    let path = format!("/api/jobs/{id}/rerun");
    let new: JobView = match api.post(&path, &RerunRequest { hosts }).await? {
        Ok(new) => new,
        Err(refusal) => {
            return Err(explain(
                api,
                refusal,
                "re-running a job",
                "the operator role",
            ));
        }
    };
    started(
        api,
        &new,
        &format!("queued, a re-run of job {id}"),
        following,
    )?;
    Ok(new)
}
