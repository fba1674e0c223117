//! A runner process (DESIGN §1, §5): takes one job at a time from the gateway over
//! `<run_dir>/runners.sock`, runs its script on each host in waves (over the system ssh
//! client or locally), and streams every output line and state change back, keeping each
//! event until the gateway acks it.
//!
//! It executes the job's spec as the gateway resolved it and never reads tasks from the
//! config itself; it owns no storage and serves no HTTP.

pub mod host;
pub mod job;
pub mod output;

pub use host::{HostContext, HostOutcome};
pub use job::run_job;
pub use output::{EventSender, Pending};

use shipwatch_config::Config;
use tokio_util::sync::CancellationToken;

/// Why a runner stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("runner {index}: {source}")]
    Io { index: u32, source: std::io::Error },
}

/// Runs runner number `index` until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    index: u32,
    shutdown: CancellationToken,
) -> Result<(), RunnerError> {
    let _ = &config;
    tracing::info!(index, "runner started");
    if let Err(error) = shipwatch_protocol::supervision::notify_ready() {
        tracing::warn!(%error, "could not tell the supervisor we are ready");
    }
    shutdown.cancelled().await;
    tracing::info!(index, "runner stopping");
    Ok(())
}
