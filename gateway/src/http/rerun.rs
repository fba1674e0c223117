//! `POST /api/jobs/{id}/rerun`: a new job from a finished one's stored spec, on all its
//! hosts or only on those that failed.

use std::collections::HashSet;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use shipwatch_config::Role;
use shipwatch_protocol::api::{JobView, RerunHosts, RerunRequest};
use shipwatch_protocol::{JobId, JobSpec};

use super::jobs::may_start;
use super::{ApiError, HttpState, Principal};

pub(super) async fn rerun(
    State(http): State<HttpState>,
    who: Principal,
    Path(id): Path<JobId>,
    req: Result<Json<RerunRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    who.at_least(Role::Operator)?;
    let Json(req) = req.map_err(|e| {
        ApiError::on_field(
            StatusCode::BAD_REQUEST,
            "hosts",
            format!(
                "the body must be {{\"hosts\":\"failed\"}} or {{\"hosts\":\"all\"}}: {}",
                e.body_text()
            ),
        )
    })?;
    let gateway = &http.gateway;
    let Some(original) = gateway.store.job(id).await? else {
        return Err(ApiError::not_found(id));
    };
    let Some(spec) = original.spec.clone() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job {id} has no stored spec to run again"),
        ));
    };
    let config = gateway.config();
    match config.task(&original.task) {
        Some(task) => may_start(gateway, &who, task)?,
        // The spec is self-contained, but who may run a task is the config's to say.
        None if who.role != Role::Admin => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "task {} is no longer configured; only an admin may re-run its jobs",
                    original.task
                ),
            ));
        }
        None => {}
    }
    let chosen: HashSet<String> = match req.hosts {
        RerunHosts::All => spec.hosts.iter().map(|h| h.name.clone()).collect(),
        RerunHosts::Failed => {
            if !original.state.is_terminal() {
                return Err(ApiError::on_field(
                    StatusCode::CONFLICT,
                    "hosts",
                    format!(
                        "job {id} is still {}; its failed hosts can be re-run once it ends",
                        original.state
                    ),
                ));
            }
            original
                .hosts
                .iter()
                .flatten()
                .filter(|h| h.state.is_failure())
                .map(|h| h.host.clone())
                .collect()
        }
    };
    if chosen.is_empty() {
        return Err(ApiError::on_field(
            StatusCode::CONFLICT,
            "hosts",
            format!("job {id} has no failed, timed-out or unreachable host to re-run"),
        ));
    }
    let spec = limited_to(spec, &chosen);
    let n = spec.hosts.len();
    let params = spec.params.clone();
    let job = gateway.store.create_job(spec, params, &who.name).await?;
    let which = match (req.hosts, n) {
        (RerunHosts::Failed, 1) => "1 failed host".to_string(),
        (RerunHosts::Failed, n) => format!("{n} failed hosts"),
        (RerunHosts::All, n) => format!("all {n} hosts"),
    };
    gateway
        .auth
        .audit(
            &who,
            "rerun",
            Some(job.id),
            &format!("{}: re-run of job {id} on {which}", original.task),
            "ok",
        )
        .await;
    tracing::info!(job = job.id, of = id, task = %original.task, hosts = n, by = %who.name, "re-run queued");
    gateway.dispatcher.wake();
    Ok((StatusCode::CREATED, Json(job)))
}

/// The spec on `chosen` hosts only: each wave keeps its chosen hosts in their order and
/// waves left empty go, so a canary stays first and the rollout order is the original's.
///
/// `max_failures` stays the original's count: it is the fleet's failure budget, and the
/// hosts left out all ended ok, so a re-run of the failed ones succeeds exactly when the
/// whole fleet would pass the original's limit (scaling it down to the smaller job would
/// fail a re-run that leaves the fleet as healthy as the task asks).
fn limited_to(mut spec: JobSpec, chosen: &HashSet<String>) -> JobSpec {
    spec.hosts.retain(|h| chosen.contains(&h.name));
    for wave in &mut spec.waves {
        wave.retain(|h| chosen.contains(h));
    }
    spec.waves.retain(|w| !w.is_empty());
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use shipwatch_protocol::{HostTarget, SshSpec, Transport};

    #[test]
    fn a_rerun_keeps_the_original_order_and_drops_empty_waves() {
        let host = |n: &str| HostTarget {
            name: n.into(),
            address: None,
            port: None,
        };
        let spec = JobSpec {
            task: "deploy".into(),
            transport: Transport::Local,
            script: "true".into(),
            hosts: ["a", "b", "c", "d", "e"].map(host).to_vec(),
            waves: vec![
                vec!["a".into()],
                vec!["b".into(), "c".into()],
                vec!["d".into(), "e".into()],
            ],
            max_failures: 0,
            timeout_secs: 60,
            params: Default::default(),
            ssh: SshSpec {
                user: "deploy".into(),
                port: 22,
                identity_file: None,
                known_hosts: None,
                connect_timeout_secs: 10,
                options: vec![],
            },
        };
        let chosen: HashSet<String> = ["e", "c", "b"].map(String::from).into();
        let cut = limited_to(spec, &chosen);
        let names: Vec<&str> = cut.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["b", "c", "e"]);
        assert_eq!(cut.waves, vec![vec!["b", "c"], vec!["e"]]);
    }
}
