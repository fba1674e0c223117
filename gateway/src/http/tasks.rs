//! `GET /api/tasks`: the tasks this server offers, with their params.

use axum::Json;
use axum::extract::State;
use shipwatch_protocol::api::{ParamView, TaskList, TaskView};

use super::{HttpState, Principal};

pub(super) async fn list(State(http): State<HttpState>, _who: Principal) -> Json<TaskList> {
    let config = http.gateway.config();
    let tasks = config
        .tasks
        .iter()
        .map(|t| TaskView {
            name: t.name.clone(),
            description: t.description.clone(),
            hosts: t.hosts.iter().map(|h| h.name.clone()).collect(),
            concurrency: t.concurrency,
            params: t
                .params
                .iter()
                .map(|p| ParamView {
                    name: p.name.clone(),
                    pattern: p.pattern.as_ref().map(|r| r.as_str().to_owned()),
                    required: p.required,
                    default: p.default.clone(),
                })
                .collect(),
        })
        .collect();
    Json(TaskList { tasks })
}
