//! The gateway's figures: each name once, with what it means, all set through the
//! `metrics` facade and rendered by the process-wide Prometheus recorder (`/metrics`).

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use shipwatch_protocol::Report;

/// Events committed to the store.
pub(crate) const EVENTS_TOTAL: &str = "shipwatch_events_total";
/// Times a watcher fell out of the live ring.
pub(crate) const WATCHER_OVERFLOWS_TOTAL: &str = "shipwatch_watcher_overflows_total";
/// Reads of events from the store for watchers replaying or catching up.
pub(crate) const WATCHER_STORE_READS_TOTAL: &str = "shipwatch_watcher_store_reads_total";
/// BEGIN to COMMIT of one write group.
pub(crate) const STORE_COMMIT_SECONDS: &str = "shipwatch_store_commit_seconds";
/// Writes per committed group.
pub(crate) const STORE_COMMIT_OPS: &str = "shipwatch_store_commit_ops";
/// The writer truncating the WAL (between commits: lines wait meanwhile).
pub(crate) const STORE_WAL_TRUNCATE_SECONDS: &str = "shipwatch_store_wal_truncate_seconds";
/// WebSocket watchers of a job connected now.
pub(crate) const WS_WATCHERS: &str = "shipwatch_ws_watchers";
/// Those of them reading from the store.
pub(crate) const WS_WATCHERS_LAGGING: &str = "shipwatch_ws_watchers_lagging";
/// Runners connected now.
pub(crate) const RUNNERS: &str = "shipwatch_runners";
/// Jobs in the store, by state (label `state`).
pub(crate) const JOBS: &str = "shipwatch_jobs";

/// HTTP connections the gateway failed to accept (out of descriptors, typically).
pub(crate) const HTTP_ACCEPT_ERRORS_TOTAL: &str = "shipwatch_http_accept_errors_total";
/// HTTP connections closed at once because the cap of connections at once was reached.
pub(crate) const HTTP_CONNECTIONS_REFUSED_TOTAL: &str = "shipwatch_http_connections_refused_total";

/// Webhook notifications delivered (2xx).
pub(crate) const NOTIFY_SENT_TOTAL: &str = "shipwatch_notify_sent_total";
/// Webhook notifications given up after every retry.
pub(crate) const NOTIFY_FAILED_TOTAL: &str = "shipwatch_notify_failed_total";
/// Job ends not notified because the queue was full.
pub(crate) const NOTIFY_DROPPED_TOTAL: &str = "shipwatch_notify_dropped_total";
/// Webhook deliveries under way, by hook (label `hook`, its host:port).
pub(crate) const NOTIFY_IN_FLIGHT: &str = "shipwatch_notify_in_flight";
/// Webhook deliveries waiting for one of their hook's few slots, by hook.
pub(crate) const NOTIFY_WAITING: &str = "shipwatch_notify_waiting";

/// The process-wide Prometheus recorder, installed on first use.
fn prometheus() -> Option<&'static PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<PrometheusHandle>> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .map_err(|e| tracing::warn!(error = %Report(&e), "no Prometheus recorder"))
                .ok()
        })
        .as_ref()
}

/// Installs the metrics recorder now, so counters from the start are kept, and says what
/// each figure is.
pub fn install() {
    let _ = prometheus();
    describe_counter!(
        EVENTS_TOTAL,
        "Events committed to the store (rate() gives events/s)."
    );
    describe_counter!(
        WATCHER_OVERFLOWS_TOTAL,
        "Times a watcher fell out of the live ring and went back to the store."
    );
    describe_counter!(
        WATCHER_STORE_READS_TOTAL,
        "Pages of events read from the store for watchers replaying or catching up."
    );
    describe_histogram!(
        STORE_COMMIT_SECONDS,
        Unit::Seconds,
        "BEGIN to COMMIT of one write group: how long a line waits before anyone may see it."
    );
    describe_histogram!(
        STORE_COMMIT_OPS,
        Unit::Count,
        "Writes (events, jobs, audit entries) committed per group."
    );
    describe_histogram!(
        STORE_WAL_TRUNCATE_SECONDS,
        Unit::Seconds,
        "The store's writer checkpointing and truncating the WAL past its bound or when idle."
    );
    describe_gauge!(WS_WATCHERS, "WebSocket watchers of a job connected now.");
    describe_gauge!(
        WS_WATCHERS_LAGGING,
        "Watchers catching up from the store instead of live."
    );
    describe_gauge!(RUNNERS, "Runners connected to the gateway.");
    describe_counter!(
        HTTP_ACCEPT_ERRORS_TOTAL,
        "HTTP connections that could not be accepted (out of file descriptors: raise LimitNOFILE=); each waits in the backlog and is retried after 100 ms."
    );
    describe_counter!(
        HTTP_CONNECTIONS_REFUSED_TOTAL,
        "HTTP connections closed as soon as accepted: as many as the cap were speaking HTTP already (slow or idle clients); WebSockets do not count."
    );
    describe_gauge!(JOBS, "Jobs in the store, by state.");
    describe_counter!(
        NOTIFY_SENT_TOTAL,
        "[[notify]] webhook POSTs answered with 2xx."
    );
    describe_counter!(
        NOTIFY_FAILED_TOTAL,
        "[[notify]] webhook notifications given up after every retry."
    );
    describe_counter!(
        NOTIFY_DROPPED_TOTAL,
        "Job ends not notified because the notification queue or their hook's queue was full."
    );
    describe_gauge!(
        NOTIFY_IN_FLIGHT,
        "[[notify]] deliveries under way (with their retries), by hook host:port; at most 2 each."
    );
    describe_gauge!(
        NOTIFY_WAITING,
        "[[notify]] deliveries waiting behind their hook's in-flight ones, by hook host:port."
    );
    // Shown as 0 from the start, so an alert on their rate has a series to read.
    for name in [
        NOTIFY_SENT_TOTAL,
        NOTIFY_FAILED_TOTAL,
        NOTIFY_DROPPED_TOTAL,
        WATCHER_STORE_READS_TOTAL,
    ] {
        metrics::counter!(name).increment(0);
    }
}

/// The Prometheus text of every figure recorded so far.
pub(crate) fn render() -> String {
    prometheus()
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}
