//! `[[notify]]` webhooks: when a job ends, a small JSON (or Slack) POST to every hook
//! whose `on` and `tasks` take it.
//!
//! The store's writer hands each job change to [`Notifier::job_changed`], which only
//! tries to queue a finished job (never blocks; a full queue drops and counts). One
//! task takes the queue and starts one delivery task per hook, each with a timeout and
//! a few retries with backoff, so a receiver that hangs delays nothing but itself.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use shipwatch_config::{Config, Notify, NotifyFormat};
use shipwatch_protocol::api::JobView;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::{NOTIFY_DROPPED_TOTAL, NOTIFY_FAILED_TOTAL, NOTIFY_SENT_TOTAL};
use crate::model::CommittedBatch;
use crate::store::Publisher;

/// Finished jobs waiting for their notifications; past it they are dropped and counted.
const QUEUE: usize = 1024;
/// One attempt: connect, send, and read the status.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per hook and job; the waits between them double from [`FIRST_RETRY`].
const ATTEMPTS: u32 = 3;
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// Job ids already notified, so a job changed twice after its end is sent once.
const REMEMBERED: usize = 4096;

/// Where finished jobs are handed for their webhooks.
#[derive(Clone)]
pub struct Notifier {
    queue: mpsc::Sender<JobView>,
}

impl Notifier {
    /// Starts the delivery task on `tracker`; it stops on `shutdown`.
    pub fn start(
        config: watch::Receiver<Arc<Config>>,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Notifier {
        let (queue, jobs) = mpsc::channel(QUEUE);
        tracker.spawn(deliver_all(jobs, config, tracker.clone(), shutdown));
        Notifier { queue }
    }

    /// Queues `job` when it has ended; never blocks (called on the store's writer).
    pub fn job_changed(&self, job: &JobView) {
        if !job.state.is_terminal() {
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(job)) = self.queue.try_send(job.clone()) {
            metrics::counter!(NOTIFY_DROPPED_TOTAL).increment(1);
            tracing::warn!(
                job = job.id,
                "notification queue full: job end not notified"
            );
        }
    }
}

/// The fan-out's publisher with job ends also handed to the notifier.
pub struct NotifyingPublisher {
    pub inner: Arc<dyn Publisher>,
    pub notifier: Notifier,
}

impl Publisher for NotifyingPublisher {
    fn publish(&self, batch: Arc<CommittedBatch>) {
        self.inner.publish(batch);
    }

    fn job_changed(&self, job: &JobView) {
        self.inner.job_changed(job);
        self.notifier.job_changed(job);
    }
}

async fn deliver_all(
    mut jobs: mpsc::Receiver<JobView>,
    config: watch::Receiver<Arc<Config>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(ATTEMPT_TIMEOUT));
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    let mut seen = HashSet::new();
    let mut order = VecDeque::new();
    loop {
        let job = tokio::select! {
            () = shutdown.cancelled() => return,
            job = jobs.recv() => match job {
                Some(job) => job,
                None => return,
            },
        };
        if !seen.insert(job.id) {
            continue;
        }
        order.push_back(job.id);
        if order.len() > REMEMBERED
            && let Some(old) = order.pop_front()
        {
            seen.remove(&old);
        }
        let config = config.borrow().clone();
        let link = format!(
            "{}/jobs/{}",
            config.server.public_url.trim_end_matches('/'),
            job.id
        );
        for hook in config
            .notify
            .iter()
            .filter(|h| h.wants(&job.task, job.state.as_str()))
        {
            let body = Bytes::from(payload(hook, &job, &link));
            tracker.spawn(deliver(
                client.clone(),
                hook.url.clone(),
                job.id,
                body,
                shutdown.clone(),
            ));
        }
    }
}

/// POSTs `body` to `url`, retrying a few times; logs and counts the outcome.
async fn deliver(
    client: Client<HttpConnector, Full<Bytes>>,
    url: String,
    job: u64,
    body: Bytes,
    shutdown: CancellationToken,
) {
    let mut wait = FIRST_RETRY;
    let mut last_error = String::new();
    for attempt in 1..=ATTEMPTS {
        let request = hyper::Request::post(&url)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, "shipwatch")
            .body(Full::new(body.clone()));
        let request = match request {
            Ok(request) => request,
            Err(error) => {
                last_error = error.to_string();
                break;
            }
        };
        let outcome = tokio::select! {
            () = shutdown.cancelled() => return,
            outcome = tokio::time::timeout(ATTEMPT_TIMEOUT, client.request(request)) => outcome,
        };
        match outcome {
            Ok(Ok(response)) if response.status().is_success() => {
                metrics::counter!(NOTIFY_SENT_TOTAL).increment(1);
                tracing::info!(job, hook = %endpoint(&url), attempt, "job end notified");
                return;
            }
            Ok(Ok(response)) => last_error = format!("HTTP {}", response.status()),
            Ok(Err(error)) => last_error = shipwatch_protocol::Report(&error).to_string(),
            Err(_) => last_error = format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs()),
        }
        if attempt < ATTEMPTS {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            wait *= 2;
        }
    }
    metrics::counter!(NOTIFY_FAILED_TOTAL).increment(1);
    tracing::warn!(job, hook = %endpoint(&url), attempts = ATTEMPTS, error = %last_error, "job end notification failed");
}

/// A hook's host and port, for log lines: a webhook URL's path, query or user part is
/// often its secret (Slack's /services/…, ?token=), so none of them is ever logged.
fn endpoint(url: &str) -> String {
    match url.parse::<hyper::Uri>() {
        Ok(uri) => match (uri.host(), uri.port_u16()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            _ => "(no host)".to_string(),
        },
        Err(_) => "(unparsable URL)".to_string(),
    }
}

/// The body a hook of this format receives.
fn payload(hook: &Notify, job: &JobView, link: &str) -> Vec<u8> {
    let value = match hook.format {
        NotifyFormat::Json => serde_json::json!({
            "job": job.id,
            "task": job.task,
            "state": job.state,
            "reason": job.reason,
            "started_by": job.started_by,
            "counts": job.counts,
            "created_at": job.created_at,
            "ended_at": job.ended_at,
            "url": link,
        }),
        NotifyFormat::Slack => {
            let c = &job.counts;
            let failed = c.failed + c.timeout + c.unreachable;
            let reason = job
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            serde_json::json!({
                "text": format!(
                    "shipwatch: job <{link}|#{}> {} {}{reason}, started by {}: {} ok, {failed} failed",
                    job.id, job.task, job.state, job.started_by, c.ok
                ),
            })
        }
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_lines_name_a_hook_by_its_host_only() {
        assert_eq!(
            super::endpoint("http://user:pw@hooks.example:8080/services/T1/B2/secret?token=x"),
            "hooks.example:8080"
        );
        assert_eq!(super::endpoint("http://hooks.example/x"), "hooks.example");
    }
}
