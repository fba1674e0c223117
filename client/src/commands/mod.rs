//! One function per client command; each talks to the API and prints its answer.
//!
//! `mod.rs` holds the parsed commands, the dispatch, and what every command shares
//! (finding the server and credentials, explaining a refusal); `start` makes jobs
//! (`run`, `rerun`), `watch` follows or prints one job's log and its end, and `listing`
//! prints jobs, one job and the tasks.

mod listing;
mod start;
mod watch;

use std::time::Duration;

use hyper::StatusCode;
use serde_json::json;
use shipwatch_protocol::{JobId, JobState};

use crate::follow::Filters;
use crate::http::Refusal;
use crate::render::{Output, Timestamps};
use crate::{ApiClient, ClientError, Exit, JobRef, Options, Server, token_from_file};
use shipwatch_protocol::api::JobView;

/// How long a follower keeps trying to reach a gateway that went away (a restart takes
/// seconds; a box that stays down for this long is an error worth a non-zero exit).
pub(crate) const RECONNECT_FOR: Duration = Duration::from_secs(120);

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
            let job = start::start(&api, &task, params).await?;
            start::started(&api, &job, "queued", follow.is_some())?;
            match follow {
                Some(tail) => watch::follow_job(&api, job.id, &tail).await,
                None => Ok(Exit::Succeeded),
            }
        }
        Command::Jobs(query) => listing::jobs(&connect(options, None)?, &query).await,
        Command::Show { job, json } => {
            listing::show(&connect(options, Some(&job))?, job.id, json).await
        }
        Command::Tail { job, options: tail } => {
            watch::follow_job(&connect(options, Some(&job))?, job.id, &tail).await
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
            let new = start::rerun(&api, job.id, failed_only, follow.is_some()).await?;
            match follow {
                Some(tail) => watch::follow_job(&api, new.id, &tail).await,
                None => Ok(Exit::Succeeded),
            }
        }
        Command::Tasks { json } => listing::tasks(&connect(options, None)?, json).await,
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
    ApiClient::new(server, token)
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

pub(crate) async fn job(api: &ApiClient, id: JobId) -> Result<JobView, ClientError> {
    match api.get(&format!("/api/jobs/{id}")).await? {
        Ok(job) => Ok(job),
        Err(refusal) => Err(explain(api, refusal, "reading a job", "the viewer role")),
    }
}

pub(crate) async fn cancel(api: &ApiClient, id: JobId) -> Result<(), ClientError> {
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
