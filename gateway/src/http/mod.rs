//! The HTTP API and WebSockets of DESIGN §6: the router, and one module per resource.
//!
//! Every handler takes a [`Principal`] (see [`principal`]): who asks decides what they may
//! do, so changing how callers prove who they are replaces that extractor, not the
//! handlers.

mod audit;
mod error;
mod jobs;
mod metrics;
pub mod principal;
mod rerun;
mod tasks;
mod ws;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;
use crate::fanout::Hub;

pub use error::ApiError;
pub use principal::Principal;
pub use ws::parse_watch_query;

/// What every handler is given: the gateway's shared state and the WebSocket fan-out.
#[derive(Clone)]
pub struct HttpState {
    /// Config, store and dispatcher.
    pub gateway: AppState,
    /// Where WebSocket watchers register for a job's events and the job list.
    pub fanout: Arc<Hub>,
}

/// The API's routes, ready to serve.
pub fn router(gateway: AppState, fanout: Arc<Hub>) -> Router {
    Router::new()
        .merge(crate::web::routes())
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics::render))
        .route("/api/jobs", post(jobs::create).get(jobs::list))
        .route("/api/jobs/{id}", get(jobs::show))
        .route("/api/jobs/{id}/log", get(jobs::log))
        .route("/api/jobs/{id}/cancel", post(jobs::cancel))
        .route("/api/jobs/{id}/rerun", post(rerun::rerun))
        .route("/api/tasks", get(tasks::list))
        .route("/api/audit", get(audit::list))
        .route("/ws/jobs/{id}", get(ws::job))
        .route("/ws/jobs", get(ws::jobs))
        .merge(crate::auth::routes())
        .layer(axum::middleware::from_fn_with_state(
            gateway.auth.clone(),
            crate::auth::security_headers,
        ))
        .with_state(HttpState { gateway, fanout })
}
