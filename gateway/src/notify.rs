//! `[[notify]]` webhooks: when a job ends, a small JSON (or Slack) POST to every hook
//! whose `on` and `tasks` take it.
//!
//! The store's writer hands each job change to [`Notifier::job_changed`], which only
//! tries to queue a finished job (never blocks; a full queue drops and counts). One
//! task takes the queue and hands each matching hook its delivery through that hook's
//! lane: a bounded queue and a task that runs at most [`IN_FLIGHT_PER_HOOK`] deliveries
//! at once, each with a timeout and a few retries with backoff. So a receiver that hangs
//! delays nothing but itself and holds a bounded number of tasks and connections; past
//! its queue, its deliveries are dropped and counted.
//!
//! `https://` hooks are verified against the OS's trust store (rustls-native-certs), so
//! an internal CA installed there (`update-ca-certificates`) is trusted; `SSL_CERT_FILE`
//! or `SSL_CERT_DIR` in the gateway's environment replace that store.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use shipwatch_config::{Config, Notify, NotifyFormat};
use shipwatch_protocol::api::JobView;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::{
    NOTIFY_DROPPED_TOTAL, NOTIFY_FAILED_TOTAL, NOTIFY_IN_FLIGHT, NOTIFY_SENT_TOTAL, NOTIFY_WAITING,
};
use crate::model::CommittedBatch;
use crate::store::Publisher;

/// Finished jobs waiting for their notifications; past it they are dropped and counted.
const QUEUE: usize = 1024;
/// Deliveries one hook may have under way at once (Slack takes about one a second).
const IN_FLIGHT_PER_HOOK: usize = 2;
/// Deliveries one hook may have waiting behind those; past it they are dropped and counted.
const WAITING_PER_HOOK: usize = 256;
/// One attempt: connect, send, and read the status.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per hook and job; the waits between them double from [`FIRST_RETRY`].
const ATTEMPTS: u32 = 3;
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// Job ids already notified, so a job changed twice after its end is sent once.
const REMEMBERED: usize = 4096;

type HookClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

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

/// rustls on ring, trusting the OS's store (see the module header).
fn tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(error = %shipwatch_protocol::Report(error), "cannot read trusted CA certificates");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (trusted, _unparsable) = roots.add_parsable_certificates(found.certs);
    if trusted == 0 {
        tracing::warn!(
            "no trusted CA certificates (OS store, SSL_CERT_FILE or SSL_CERT_DIR): https webhooks will fail"
        );
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// One client for every hook, http or https.
fn hook_client() -> Result<HookClient, rustls::Error> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(ATTEMPT_TIMEOUT));
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config()?)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

async fn deliver_all(
    mut jobs: mpsc::Receiver<JobView>,
    config: watch::Receiver<Arc<Config>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let client = match hook_client() {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(error = %shipwatch_protocol::Report(&error), "webhooks off: no TLS client");
            return;
        }
    };
    let mut lanes: HashMap<String, mpsc::Sender<Delivery>> = HashMap::new();
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
        // A hook a reload removed: dropping its sender ends its lane once it is idle.
        lanes.retain(|url, _| config.notify.iter().any(|h| &h.url == url));
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
            let lane = lanes.entry(hook.url.clone()).or_insert_with(|| {
                let (sender, queue) = mpsc::channel(WAITING_PER_HOOK);
                tracker.spawn(hook_lane(
                    client.clone(),
                    hook.url.clone(),
                    queue,
                    shutdown.clone(),
                ));
                sender
            });
            let delivery = Delivery {
                job: job.id,
                body: Bytes::from(payload(hook, &job, &link)),
            };
            let hook_label = endpoint(&hook.url);
            match lane.try_send(delivery) {
                Ok(()) => metrics::gauge!(NOTIFY_WAITING, "hook" => hook_label).increment(1),
                Err(_) => {
                    metrics::counter!(NOTIFY_DROPPED_TOTAL).increment(1);
                    tracing::warn!(
                        job = job.id,
                        hook = %hook_label,
                        waiting = WAITING_PER_HOOK,
                        "webhook has too many notifications waiting: job end not notified"
                    );
                }
            }
        }
    }
}

/// One job end for one hook.
struct Delivery {
    job: u64,
    body: Bytes,
}

/// Delivers one hook's queue, at most [`IN_FLIGHT_PER_HOOK`] at a time, until the queue
/// is closed (the hook left the config) and drained, or shutdown.
async fn hook_lane(
    client: HookClient,
    url: String,
    mut queue: mpsc::Receiver<Delivery>,
    shutdown: CancellationToken,
) {
    let hook = endpoint(&url);
    let waiting = metrics::gauge!(NOTIFY_WAITING, "hook" => hook.clone());
    let in_flight = metrics::gauge!(NOTIFY_IN_FLIGHT, "hook" => hook);
    let mut running = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            Some(_) = running.join_next(), if !running.is_empty() => in_flight.decrement(1),
            next = queue.recv(), if running.len() < IN_FLIGHT_PER_HOOK => match next {
                Some(d) => {
                    waiting.decrement(1);
                    in_flight.increment(1);
                    running.spawn(deliver(client.clone(), url.clone(), d.job, d.body, shutdown.clone()));
                }
                None => break,
            },
        }
    }
    while running.join_next().await.is_some() {
        in_flight.decrement(1);
    }
}

/// POSTs `body` to `url`, retrying a few times; logs and counts the outcome.
async fn deliver(
    client: HookClient,
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
