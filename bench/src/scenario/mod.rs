//! The scenarios, one module each; `live` is what flood and paced share.

mod churn;
mod crash;
mod flood;
mod idle;
mod paced;
mod replay;
mod ssh;
mod stalled;
mod store;

pub use churn::churn;
pub use crash::crash;
pub use flood::flood;
pub use idle::idle;
pub use paced::paced;
pub use replay::replay;
pub use ssh::ssh;
pub use stalled::stalled;
pub use store::store_size;

use std::time::Duration;

use crate::histogram::Histogram;
use crate::procfs::{CpuSnapshot, status_kib};
use crate::system::{System, linegen_script};
use crate::watcher::{check_complete, join_watchers, spawn_watchers};
use crate::{Error, read_buffer};

/// What a live run (flood or paced) measured.
pub(crate) struct Live {
    pub(crate) slowest_lps: f64,
    pub(crate) deliveries_ps: f64,
    pub(crate) latency: Histogram,
    pub(crate) cpu: String,
    pub(crate) gateway_peak_mib: f64,
    pub(crate) runner_peak_mib: f64,
    pub(crate) gateway_notes: String,
    pub(crate) reconnects: u64,
}

/// Starts the system, connects the watchers, opens the gate and checks every watcher got
/// every line of every host exactly once, in order.
pub(crate) async fn live(
    watchers: usize,
    hosts: usize,
    per_host: u64,
    rate: u64,
) -> Result<Live, Error> {
    let mut system = System::start(hosts, &linegen_script(per_host, rate, true))?;
    let (gateway, runner) = system.pids()?;
    system.check_gateway_fds(gateway, watchers)?;
    let job = system.create_job()?;
    let stall = Duration::from_secs(60);
    let (tasks, progress) = match spawn_watchers(
        watchers,
        &system.url(job),
        hosts,
        read_buffer(),
        false,
        stall,
        false,
    )
    .await
    {
        Ok(t) => t,
        Err(e) => return Err(system.fail(e)),
    };
    let before = CpuSnapshot::take(gateway, runner);
    system.open_gate()?;
    let within = Duration::from_secs(240);
    let seen = match join_watchers(tasks, &progress, within).await {
        Ok(seen) => seen,
        Err(e) => return Err(system.fail(e)),
    };
    let after = CpuSnapshot::take(gateway, runner);
    let mut latency = Histogram::new();
    let mut first = u128::MAX;
    let mut last = 0u128;
    let mut slowest = 0u128;
    for (id, s) in seen.iter().enumerate() {
        if let Err(e) = check_complete(s, id, per_host) {
            return Err(system.fail(e));
        }
        latency.merge(&s.latency);
        first = first.min(s.min_stamp);
        last = last.max(s.last_line_at);
        slowest = slowest.max(s.last_line_at);
    }
    let lines = hosts as u64 * per_host;
    let secs = last.saturating_sub(first) as f64 / 1e9;
    let slowest_secs = slowest.saturating_sub(first) as f64 / 1e9;
    Ok(Live {
        slowest_lps: lines as f64 / slowest_secs,
        deliveries_ps: (lines * watchers as u64) as f64 / secs,
        latency,
        cpu: after.since(&before),
        gateway_peak_mib: status_kib(gateway, "VmHWM:") as f64 / 1024.0,
        runner_peak_mib: status_kib(runner, "VmHWM:") as f64 / 1024.0,
        gateway_notes: system.gateway_notes(),
        reconnects: seen.iter().map(|s| s.reconnects).sum(),
    })
}
