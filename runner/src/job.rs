//! Runs a whole job: its waves one after another, all hosts of a wave at once, stopping
//! new hosts once more than `max_failures` hosts failed, timed out or were unreachable.

use std::collections::HashMap;
use std::time::Duration;

use shipwatch_protocol::{
    EventBody, HostState, HostTarget, JobId, JobSpec, JobState, Timestamp, Transport,
};
use tokio_util::sync::CancellationToken;

use crate::host::{HostContext, HostOutcome, HostRun, run_host};
use crate::output::EventSender;

/// Runs `spec` to its end, sending every event on `tx`, the final job event last, and
/// returns the job's final state. Cancelling `cancel` stops every host's processes.
pub async fn run_job(
    job: JobId,
    spec: &JobSpec,
    ctx: &HostContext,
    tx: EventSender,
    cancel: CancellationToken,
) -> JobState {
    let send = |body: EventBody| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(vec![(Timestamp::now(), body)]).await;
        }
    };
    // No "job running" event here: the gateway records it when it assigns the job, and a
    // second one would show every watcher the job starting twice.
    let targets: HashMap<&str, &HostTarget> =
        spec.hosts.iter().map(|h| (h.name.as_str(), h)).collect();
    let timeout = Duration::from_secs(spec.timeout_secs.max(1));
    let mut failures: u32 = 0;
    let mut stopped = false;
    for (index, wave) in spec.waves.iter().enumerate() {
        if stopped || failures > spec.max_failures || cancel.is_cancelled() {
            stopped = true;
            for name in wave {
                send(host_event(name, HostState::Skipped, None)).await;
            }
            continue;
        }
        let mut runs = Vec::with_capacity(wave.len());
        for name in wave {
            let fallback;
            let target = match targets.get(name.as_str()) {
                Some(t) => *t,
                None => {
                    fallback = HostTarget {
                        name: name.clone(),
                        address: None,
                        port: None,
                    };
                    &fallback
                }
            };
            // Clone what each host future needs so they can run side by side.
            let target = target.clone();
            let tx = tx.clone();
            let cancel = cancel.clone();
            runs.push(async move {
                let _ = tx
                    .send(vec![(Timestamp::now(), host_event(&target.name, HostState::Running, None))])
                    .await;
                let outcome: HostOutcome = run_host(
                    HostRun {
                        job,
                        target: &target,
                        transport: spec.transport,
                        script: &spec.script,
                        params: &spec.params,
                        ssh: &spec.ssh,
                        timeout,
                        ctx,
                    },
                    tx.clone(),
                    &cancel,
                )
                .await;
                // A host that counts toward max_failures is what `journalctl -p warning` is for.
                if matches!(outcome.state, HostState::Failed | HostState::Timeout | HostState::Unreachable) {
                    tracing::warn!(job, host = %target.name, state = %outcome.state, exit_code = outcome.exit_code, "host finished");
                } else {
                    tracing::info!(job, host = %target.name, state = %outcome.state, exit_code = outcome.exit_code, "host finished");
                }
                let _ = tx
                    .send(vec![(
                        Timestamp::now(),
                        host_event(&target.name, outcome.state, outcome.exit_code),
                    )])
                    .await;
                outcome
            });
        }
        // While this wave runs, the next one's ssh masters start: a rolling deploy then
        // pays one connection setup, not one per wave.
        let warms: Vec<_> = match (spec.transport, spec.waves.get(index + 1)) {
            (Transport::Ssh, Some(next)) => next
                .iter()
                .filter_map(|name| targets.get(name.as_str()))
                .map(|target| crate::ssh::warm_master(target, &spec.ssh, ctx))
                .collect(),
            _ => Vec::new(),
        };
        // Warming never ends the wave: once its masters are up it waits, and it is dropped
        // when the hosts are done.
        let warming = async {
            futures_util::future::join_all(warms).await;
            std::future::pending().await
        };
        let outcomes = tokio::select! {
            outcomes = futures_util::future::join_all(runs) => outcomes,
            outcomes = warming => outcomes,
        };
        for outcome in outcomes {
            if matches!(
                outcome.state,
                HostState::Failed | HostState::Timeout | HostState::Unreachable
            ) {
                failures += 1;
            }
        }
    }

    let (state, reason) = if cancel.is_cancelled() {
        (JobState::Cancelled, Some("cancelled".to_owned()))
    } else if failures > spec.max_failures {
        let noun = if failures == 1 { "host" } else { "hosts" };
        (JobState::Failed, Some(format!("{failures} {noun} failed")))
    } else if failures > 0 {
        // Within the tolerance: the job did its job, but say what was tolerated.
        let noun = if failures == 1 { "host" } else { "hosts" };
        let limit = spec.max_failures;
        (
            JobState::Succeeded,
            Some(format!("{failures} {noun} failed (max_failures = {limit})")),
        )
    } else {
        (JobState::Succeeded, None)
    };
    if state == JobState::Failed {
        tracing::warn!(job, state = %state, reason = reason.as_deref(), "job finished");
    } else {
        tracing::info!(job, state = %state, reason = reason.as_deref(), "job finished");
    }
    send(EventBody::Job { state, reason }).await;
    state
}

fn host_event(name: &str, state: HostState, exit_code: Option<i32>) -> EventBody {
    EventBody::Host {
        host: name.to_owned(),
        state,
        exit_code,
    }
}
