//! `/metrics`: Prometheus text of every figure (see [`crate::metrics`]).
//!
//! Counters and histograms are recorded where things happen; the gauges of what exists
//! now (watchers, runners, jobs by state) are set from their owners when scraped, so they
//! never drift from the counts they report.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use metrics::gauge;
use shipwatch_protocol::{JobState, Report};

use super::HttpState;
use crate::metrics::{JOBS, RUNNERS, WS_WATCHERS, WS_WATCHERS_LAGGING};

/// Prometheus text of every figure.
pub(super) async fn render(State(http): State<HttpState>, _who: super::Principal) -> Response {
    gauge!(WS_WATCHERS).set(http.fanout.watchers() as f64);
    gauge!(WS_WATCHERS_LAGGING).set(http.fanout.lagging() as f64);
    gauge!(RUNNERS).set(http.gateway.dispatcher.runners() as f64);
    match http.gateway.store.jobs_by_state().await {
        Ok(states) => {
            for state in JobState::ALL.iter().map(|s| s.as_str()) {
                let n = states
                    .iter()
                    .find(|(s, _)| s == state)
                    .map_or(0, |(_, n)| *n);
                gauge!(JOBS, "state" => state).set(n as f64);
            }
        }
        Err(e) => tracing::warn!(error = %Report(&e), "metrics: cannot count jobs by state"),
    }
    let text = crate::metrics::render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
