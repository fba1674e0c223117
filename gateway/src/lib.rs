//! The gateway process (DESIGN §1, §6): owns the SQLite store and the job queue, hands
//! jobs to idle runners over `<run_dir>/runners.sock`, commits their events with a
//! gapless per-job `seq`, and only then fans them out to WebSocket watchers. It serves the
//! HTTP API and the web page.
//!
//! It never runs scripts and never blocks on a watcher.

pub mod model;
pub mod store;

use std::path::{Path, PathBuf};

use axum::{Router, routing::get};
use shipwatch_config::Config;
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;

/// Why the gateway could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot bind the runner socket {}: {source}", path.display())]
    RunnerSocket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// Serves until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), GatewayError> {
    let addr = config.server.listen;
    let http = TcpListener::bind(addr)
        .await
        .map_err(|source| GatewayError::Listen { addr, source })?;
    let socket_path = config.server.run_dir.join("runners.sock");
    let _runners =
        bind_private_socket(&socket_path).map_err(|source| GatewayError::RunnerSocket {
            path: socket_path.clone(),
            source,
        })?;
    tracing::info!(%addr, runners = %socket_path.display(), "gateway listening");
    if let Err(error) = shipwatch_protocol::supervision::notify_ready() {
        tracing::warn!(%error, "could not tell the supervisor we are ready");
    }

    let app = Router::new().route("/healthz", get(|| async { "ok\n" }));
    axum::serve(http, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(GatewayError::Serve)
}

/// Binds a Unix socket only its owner may use, replacing a stale one from a dead gateway.
fn bind_private_socket(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;

    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}
