//! A runner process (DESIGN §1, §5): takes one job at a time from the gateway over
//! `<run_dir>/runners.sock`, runs its script on each host in waves (over the system ssh
//! client or locally), and streams every output line and state change back, keeping each
//! event until the gateway acks it.
//!
//! It executes the job's spec as the gateway resolved it and never reads tasks from the
//! config itself; it owns no storage and serves no HTTP.

pub mod client;
pub mod host;
pub mod job;
pub mod output;
pub mod ssh;

pub use host::{HostContext, HostOutcome};
pub use job::run_job;
pub use output::{EventSender, Pending};

use shipwatch_config::Config;
use shipwatch_protocol::Report;
use tokio_util::sync::CancellationToken;

/// Why a runner stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("runner {index}: cannot prepare its ssh control directory {path}")]
    ControlDir {
        index: u32,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("runner {index}: cannot install its SIGUSR2 (drain) handler")]
    Signals { index: u32, source: std::io::Error },
    #[error(transparent)]
    Client(#[from] client::ClientError),
}

/// The codec a runner speaks on `runners.sock`.
pub type Codec = shipwatch_protocol::RunnerCodec;

/// Runs runner number `index` until `shutdown` is cancelled (SIGTERM: cancel the job and
/// exit once its last events are acked or the stop timeout passed) or SIGUSR2 asks it to
/// drain (finish the job, take no new one, exit when idle).
pub async fn run(
    config: Config,
    index: u32,
    shutdown: CancellationToken,
) -> Result<(), RunnerError> {
    let run_dir = config.server.run_dir.clone();
    // Each runner its own masters: a master outlives the ssh that started it (`-f`), so
    // the runner that started it ends it (`-O exit`) when it stops, and the next runner of
    // the same index ends those its killed predecessor left.
    let control_dir = run_dir.join("ssh").join(index.to_string());
    let io = |source| RunnerError::ControlDir {
        index,
        path: control_dir.clone(),
        source,
    };
    for dir in [run_dir.join("ssh"), control_dir.clone()] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&dir).map_err(io)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    ssh::close_masters(&control_dir).await;
    let drain = CancellationToken::new();
    let mut usr2 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2())
        .map_err(|source| RunnerError::Signals { index, source })?;
    let tracker = tokio_util::task::TaskTracker::new();
    let signals_done = CancellationToken::new();
    {
        let drain = drain.clone();
        let done = signals_done.clone();
        tracker.spawn(async move {
            tokio::select! {
                _ = usr2.recv() => drain.cancel(),
                _ = done.cancelled() => {}
            }
        });
    }
    tracker.close();
    tracing::info!(index, "runner started");
    if let Err(error) = shipwatch_protocol::supervision::notify_ready() {
        tracing::warn!(error = %Report(&error), "could not tell the supervisor we are ready");
    }
    let cfg = client::ClientConfig {
        socket: run_dir.join("runners.sock"),
        index,
        hosts: HostContext {
            control_dir: control_dir.clone(),
            control_persist_secs: 60,
        },
        max_buffer_bytes: 64 << 20,
        heartbeat: std::time::Duration::from_secs(5),
        // Six of the gateway's 5 s heartbeats, as the gateway waits for ours.
        silence: std::time::Duration::from_secs(30),
        // Leave the supervisor's SIGKILL some room.
        stop_timeout: config.supervisor.stop_timeout.mul_f64(0.8),
    };
    let result = client::serve(cfg, Codec::default, shutdown, drain).await;
    let closed = ssh::close_masters(&control_dir).await;
    if closed > 0 {
        tracing::info!(index, masters = closed, "ssh master connections closed");
    }
    signals_done.cancel();
    tracker.wait().await;
    tracing::info!(index, "runner stopped");
    Ok(result?)
}
