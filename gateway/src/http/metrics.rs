//! `/metrics`: Prometheus text, and the process-wide recorder behind it.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::HttpState;

/// Prometheus text: the recorder's metrics plus what is read live.
pub(super) async fn render(State(http): State<HttpState>) -> Response {
    let mut out = String::new();
    out.push_str("# HELP shipwatch_ws_watchers WebSocket watchers connected now.\n");
    out.push_str("# TYPE shipwatch_ws_watchers gauge\n");
    out.push_str(&format!(
        "shipwatch_ws_watchers {}\n",
        http.fanout.watchers()
    ));
    out.push_str(
        "# HELP shipwatch_ws_watchers_lagging Watchers catching up from the store instead of live.\n",
    );
    out.push_str("# TYPE shipwatch_ws_watchers_lagging gauge\n");
    out.push_str(&format!(
        "shipwatch_ws_watchers_lagging {}\n",
        http.fanout.lagging()
    ));
    out.push_str("# HELP shipwatch_runners Runners connected to the gateway.\n");
    out.push_str("# TYPE shipwatch_runners gauge\n");
    out.push_str(&format!(
        "shipwatch_runners {}\n",
        http.gateway.dispatcher.runners()
    ));
    match http.gateway.store.jobs_by_state().await {
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
