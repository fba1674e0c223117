//! One job's log: followed over the WebSocket to the job's end (Ctrl-C asks on a
//! terminal whether to cancel it), or what is stored, then the one-line summary.

use std::io::{IsTerminal, Write};

use shipwatch_protocol::api::JobView;
use shipwatch_protocol::{JobId, JobState};

use super::{RECONNECT_FOR, TailOptions, cancel, explain, job};
use crate::follow::Follower;
use crate::render::{Look, Output, Printer};
use crate::{ApiClient, ClientError, Exit};

/// Prints a job's events until it ends (or what is stored, with `no_follow`), then the
/// summary; the exit tells the job's end.
pub(super) async fn follow_job(
    api: &ApiClient,
    id: JobId,
    tail: &TailOptions,
) -> Result<Exit, ClientError> {
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
    // What the server sends is then exactly what to print: no decoding, no re-encoding.
    let passthrough = tail.output == Output::Ndjson && hosts.len() <= 1 && tail.after == 0;
    if passthrough {
        let stored = api
            .get_streamed(&path, |bytes| {
                printer.raw(bytes).map_err(ClientError::Output)
            })
            .await?;
        printer.finish().map_err(ClientError::Output)?;
        return stored
            .map_err(|refusal| explain(api, refusal, "reading a job's log", "the viewer role"));
    }
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
    let total = c.total();
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
pub(super) fn took(job: &JobView) -> Option<String> {
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
