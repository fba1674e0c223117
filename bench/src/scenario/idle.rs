//! Idle: WATCHERS on a job that prints nothing; gateway RSS per watcher.

use std::time::{Duration, Instant};

use crate::Error;
use crate::histogram::Histogram;
use crate::procfs::{CpuSnapshot, status_kib};
use crate::report::{Row, thousands};
use crate::system::{System, linegen_script};
use crate::watcher::{check_complete, join_watchers, spawn_watchers};

/// Runs the idle scenario; its rows, or why it failed.
pub async fn idle(watchers: usize) -> Result<Vec<Row>, Error> {
    // One line at the end proves every idle watcher is still served.
    let mut system = System::start(1, &linegen_script(1, 0, true))?;
    let (gateway, runner) = system.pids()?;
    let gateway_fds = system.check_gateway_fds(gateway, watchers)?;
    let job = system.create_job()?;
    system
        .wait_job(job, "running its host", Duration::from_secs(30), |j| {
            j["counts"]["running"] == 1
        })
        .await?;
    let url = system.url(job);
    let stall = Duration::from_secs(600);
    // A first watcher builds whatever the job's first watcher costs once (its ring,
    // cached frames) before the baseline.
    let (warm, warm_progress) = match spawn_watchers(1, &url, 1, 4096, true, stall, false).await {
        Ok(w) => w,
        Err(e) => return Err(system.fail(e)),
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = status_kib(gateway, "VmRSS:");
    let client_before = status_kib(std::process::id(), "VmRSS:");
    let began = Instant::now();
    let (tasks, progress) = match spawn_watchers(watchers, &url, 1, 4096, true, stall, false).await
    {
        Ok(t) => t,
        Err(e) => return Err(system.fail(e)),
    };
    let connect_secs = began.elapsed().as_secs_f64();
    // Let the connection burst's transient allocations settle before reading RSS.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = status_kib(gateway, "VmRSS:");
    let client_after = status_kib(std::process::id(), "VmRSS:");
    let per_kb = after.saturating_sub(before) as f64 * 1024.0 / watchers as f64 / 1000.0;
    let cpu_before = CpuSnapshot::take(gateway, runner);
    system.open_gate()?;
    let mut progress = progress;
    progress.extend(warm_progress);
    let mut tasks = tasks;
    tasks.extend(warm);
    let seen = match join_watchers(tasks, &progress, Duration::from_secs(120)).await {
        Ok(seen) => seen,
        Err(e) => return Err(system.fail(e)),
    };
    let cpu = CpuSnapshot::take(gateway, runner).since(&cpu_before);
    let mut latency = Histogram::new();
    for (id, s) in seen.iter().enumerate() {
        if let Err(e) = check_complete(s, id, 1) {
            return Err(system.fail(e));
        }
        latency.merge(&s.latency);
    }
    Ok(vec![Row {
        figure: format!("idle watchers, {} at once", thousands(watchers as f64)),
        measured: format!(
            "{per_kb:.1} KB each (gateway RSS {:.1} → {:.1} MiB)",
            before as f64 / 1024.0,
            after as f64 / 1024.0
        ),
        target: "≤ 16 KB each".into(),
        met: Some(per_kb <= 16.0),
        notes: format!(
            "connected in {connect_secs:.1} s; then one line reached all {} (latency {}; {}); load gen RSS {:.0} → {:.0} MiB; gateway RLIMIT_NOFILE {gateway_fds}",
            watchers + 1,
            latency.summary(),
            cpu,
            client_before as f64 / 1024.0,
            client_after as f64 / 1024.0,
        ),
    }])
}
