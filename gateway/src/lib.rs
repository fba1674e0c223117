//! The gateway process (DESIGN §1, §6): owns the SQLite store and the job queue, hands
//! jobs to idle runners over `<run_dir>/runners.sock`, commits their events with a
//! gapless per-job `seq`, and only then fans them out to WebSocket watchers. It serves the
//! HTTP API and the web page.
//!
//! It never runs scripts and never blocks on a watcher.

pub mod auth;
pub mod dispatch;
pub mod fanout;
pub mod http;
pub mod metrics;
pub mod model;
pub mod nofile;
pub mod notify;
pub mod reload;
pub mod serve;
pub mod spec;
pub mod store;
pub mod web;

use shipwatch_protocol::Report;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use shipwatch_config::Config;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use dispatch::Dispatcher;
pub use store::{NoPublisher, Publisher, Store, StoreError, StoreLimits};

/// Why the gateway could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot listen on {addr}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot bind the runner socket {}", path.display())]
    RunnerSocket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("HTTP server failed")]
    Serve(#[source] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What every HTTP handler and background task of the gateway shares.
#[derive(Clone)]
pub struct AppState {
    /// The current configuration; replaced in place on reload (send on `config_tx`).
    pub config: watch::Receiver<Arc<Config>>,
    /// Where a reload publishes the new configuration.
    pub config_tx: Arc<watch::Sender<Arc<Config>>>,
    pub store: Store,
    pub dispatcher: Dispatcher,
    /// Who is asking: sessions, tokens, throttling.
    pub auth: Arc<auth::Auth>,
}

impl AppState {
    /// The configuration as it is now.
    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }
}

/// How often finished jobs past `retention_days` are deleted.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Serves until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), GatewayError> {
    let limits = StoreLimits {
        max_log_bytes: config.server.max_log_bytes,
        retention_days: config.server.retention_days,
    };
    metrics::install();
    nofile::raise_soft_limit();
    let hub = fanout::Hub::new(shutdown.clone());
    let data_dir = config.server.data_dir.clone();
    let location = config.store.clone();
    let (config_tx, config_rx) = watch::channel(Arc::new(config));
    let tracker = TaskTracker::new();
    // Stops the notifier however this function returns, also on an early error.
    let notifier_stop = shutdown.child_token();
    let _notifier_stop = notifier_stop.clone().drop_guard();
    let publisher = notify::NotifyingPublisher {
        inner: hub.clone(),
        notifier: notify::Notifier::start(config_rx.clone(), &tracker, notifier_stop),
    };
    let store = Store::open_at(&location, &data_dir, limits, Arc::new(publisher)).await?;
    let config = config_rx.borrow().clone();
    let addr = config.server.listen;
    let http = TcpListener::bind(addr)
        .await
        .map_err(|source| GatewayError::Listen { addr, source })?;
    let socket_path = config.server.run_dir.join("runners.sock");
    let runners =
        bind_private_socket(&socket_path).map_err(|source| GatewayError::RunnerSocket {
            path: socket_path.clone(),
            source,
        })?;

    drop(config);
    let dispatcher = Dispatcher::new(
        store.clone(),
        config_rx.clone(),
        tracker.clone(),
        shutdown.clone(),
    );
    let auth = auth::Auth::new(config_rx.clone(), store.clone());
    for warning in config_rx.borrow().warnings() {
        tracing::warn!("{warning}");
    }
    tracker.spawn(auth.clone().follow_reloads(shutdown.clone()));
    let state = AppState {
        config: config_rx,
        config_tx: Arc::new(config_tx),
        store: store.clone(),
        dispatcher: dispatcher.clone(),
        auth,
    };
    tracker.spawn(reload::reload_on_sighup(
        state.config_tx.clone(),
        state.auth.clone(),
        shutdown.clone(),
    ));
    {
        let dispatcher = dispatcher.clone();
        tracker.spawn(async move {
            if let Err(error) = dispatcher.serve(runners).await {
                tracing::error!(error = %Report(&error), "runner dispatch stopped");
            }
        });
    }
    {
        let store = store.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = every.tick() => {}
                }
                if let Err(error) = store.sweep().await {
                    tracing::warn!(error = %Report(&error), "retention sweep failed");
                }
            }
        });
    }

    tracing::info!(%addr, runners = %socket_path.display(), store = %store.location(), "gateway listening");
    if let Err(error) = shipwatch_protocol::supervision::notify_ready() {
        tracing::warn!(error = %Report(&error), "could not tell the supervisor we are ready");
    }
    dispatcher.wake();

    let app = http::router(state, hub);
    let served = serve::serve(
        http,
        app,
        serve::Limits::for_this_process(),
        shutdown.clone(),
    )
    .await
    .map_err(GatewayError::Serve);
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    if let Err(error) = store.flush().await {
        tracing::warn!(error = %Report(&error), "store did not flush on shutdown");
    }
    served
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
