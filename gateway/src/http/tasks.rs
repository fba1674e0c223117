//! `GET /api/tasks`: the tasks this server offers, with their params and who may start
//! them (so a page or client offers Run only to those who may).

use axum::Json;
use axum::extract::State;
use shipwatch_config::{Role, Task};
use shipwatch_protocol::api::{ParamView, TaskList, TaskView};

use super::{HttpState, Principal};

/// The roles [`Principal::may_run`] lets start `task`: admin always, operator when
/// `allow` is empty or names it, viewer never.
fn roles_that_may_run(task: &Task) -> Vec<String> {
    [Role::Operator, Role::Admin]
        .into_iter()
        .filter(|r| *r == Role::Admin || task.allow.is_empty() || task.allow.contains(r))
        .map(|r| r.as_str().to_owned())
        .collect()
}

pub(super) async fn list(State(http): State<HttpState>, who: Principal) -> Json<TaskList> {
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
            allow: roles_that_may_run(t),
            may_run: who.may_run(t).is_ok(),
        })
        .collect();
    Json(TaskList { tasks })
}
