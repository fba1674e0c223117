//! The built-in supervisor (DESIGN §7): keeps the gateway and N runner processes true to
//! the config, restarts them with backoff, reloads in place, serves the control socket
//! and speaks sd_notify to systemd.
//!
//! It owns processes, never jobs: it knows nothing of the store, the queue or the
//! runner<->gateway protocol beyond the readiness pipe its children write to.
//!
//! One loop on the main thread owns the whole process table; every child has tasks that
//! report its exit (tokio's child wait, no polling), its readiness and its output to that
//! loop as messages. The loop runs on a current-thread runtime so that every fork happens
//! on the main thread, which lives as long as the supervisor: PR_SET_PDEATHSIG fires when
//! the forking thread ends.
//!
//! Signals the children receive (the contract with gateway and runner):
//! - SIGTERM (to the child's process group) = stop: a runner cancels its job and exits;
//!   the gateway closes watchers with 1001 and exits. SIGKILL follows after
//!   `stop_timeout`.
//! - SIGHUP to the gateway = reload the config file in place (sent when a reload changed
//!   anything but `[supervisor]`).
//! - SIGUSR2 to a runner = drain: finish the current job, take no new one, exit 0 (sent
//!   to the highest-numbered runners on scale-down; SIGTERM after `drain_timeout`).
//!
//! Children get `-c <absolute config path>` (or `--demo`), and runners `--index K`. They
//! read the file themselves: a child that restarts while the file on disk is broken fails
//! to start and goes through backoff until the file is fixed (the running ones are not
//! touched).
//!
//! Modules: `table` is the process table and its state machine, `child` spawns one
//! process, `reload` applies a config difference, `config_watch` notices file changes,
//! `snapshot` saves the config text children read, `status` reports (ctl, STATUS=,
//! READY=1), `watchdog` pings systemd, `control` is the control socket and its requests,
//! `logging` how every process logs (`log_queue`: the supervisor's stderr, never waited on).

mod child;
mod config_watch;
pub mod control;
mod log_queue;
pub mod logging;
mod notify;
mod reload;
mod snapshot;
mod status;
mod table;
mod watchdog;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use shipwatch_config::{Config, ConfigSource};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use child::Process;
pub use control::{ProcessStatus, Request, Response};

use table::ProcessEntry;

/// What can stop the supervisor from running.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("cannot start the runtime")]
    Runtime(#[source] std::io::Error),
    #[error("cannot find our own binary")]
    CurrentExe(#[source] std::io::Error),
    #[error("control socket {path}")]
    ControlSocket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a supervisor already answers on {0}")]
    AlreadyRunning(PathBuf),
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    #[error("bad control message")]
    Json(#[source] serde_json::Error),
    #[error(transparent)]
    Config(shipwatch_config::ConfigErrors),
    #[error("cannot save the config snapshot {path}")]
    Snapshot {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the supervisor's loop hears about: a child's exit or readiness, a timer that
/// came due, a control request, a reload trigger, a healthy watchdog probe.
pub(crate) enum SupervisorEvent {
    Exited {
        process: Process,
        generation: u64,
        status: std::io::Result<std::process::ExitStatus>,
        ran: Duration,
    },
    Ready {
        process: Process,
        generation: u64,
    },
    StartDue {
        process: Process,
        generation: u64,
    },
    /// Escalate a stop: send `signal`, then SIGKILL after `then` if still alive.
    Escalate {
        process: Process,
        generation: u64,
        signal: Signal,
        then: Option<Duration>,
    },
    Control {
        request: Request,
        reply: oneshot::Sender<Response>,
    },
    Reload,
    WatchdogHealthy,
}

/// Runs the supervisor in the foreground until SIGTERM/SIGINT or `ctl stop`; children
/// are stopped before it returns.
pub fn up(config: Config) -> Result<(), SupervisorError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SupervisorError::Runtime)?;
    runtime.block_on(run(config, CancellationToken::new()))
}

/// The supervisor's loop; must run on a current-thread runtime on a thread that lives
/// as long as the children (see the module docs).
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), SupervisorError> {
    let exe = std::env::current_exe().map_err(SupervisorError::CurrentExe)?;
    let source = match &config.source {
        ConfigSource::File(path) => {
            ConfigSource::File(std::path::absolute(path).unwrap_or_else(|_| path.clone()))
        }
        other => other.clone(),
    };
    let listener = control::bind(&config.server.run_dir)?;
    // Children read the text the supervisor validated, not the file: one restarted
    // while the file is broken must come back with the config everyone else runs.
    let (config, snapshot) = match &source {
        ConfigSource::File(_) => {
            let (config, text) =
                shipwatch_config::load_keeping_text(&source).map_err(SupervisorError::Config)?;
            let path = config.server.run_dir.join(snapshot::FILE);
            snapshot::save(&path, &text).map_err(|source| SupervisorError::Snapshot {
                path: path.clone(),
                source,
            })?;
            (config, Some(path))
        }
        _ => (config, None),
    };
    let tasks = TaskTracker::new();
    let (events, mut inbox) = mpsc::unbounded_channel();
    let stop_tasks = CancellationToken::new();
    tasks.spawn(control::serve(
        listener,
        events.clone(),
        tasks.clone(),
        stop_tasks.clone(),
    ));
    let _watcher = config_watch::watch(&source, config.supervisor.watch_config, &events);

    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(SupervisorError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(SupervisorError::Signals)?;
    let mut hup = signal(SignalKind::hangup()).map_err(SupervisorError::Signals)?;

    let watchdog = watchdog::interval();
    let mut watchdog_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    let watchdog = watchdog.is_some();

    let mut sup = Supervisor {
        exe,
        source,
        snapshot,
        desired_runners: config.supervisor.runners,
        config,
        table: BTreeMap::new(),
        next_generation: 0,
        events: events.clone(),
        tasks: tasks.clone(),
        stop_tasks: stop_tasks.clone(),
        ready_sent: false,
        stopping: false,
        last_status: String::new(),
    };
    sup.ensure(Process::Gateway);
    sup.publish_status();

    loop {
        if sup.stopping && sup.table.values().all(|s| s.pid.is_none()) {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled(), if !sup.stopping => sup.begin_stop("shutdown requested"),
            _ = term.recv() => sup.begin_stop("SIGTERM"),
            _ = int.recv() => sup.begin_stop("SIGINT"),
            _ = hup.recv() => { let _ = sup.reload("SIGHUP"); }
            _ = watchdog_tick.tick(), if watchdog => {
                watchdog::probe(sup.config.server.listen, &events, &tasks, &stop_tasks);
            }
            Some(event) = inbox.recv() => sup.apply(event),
        }
    }
    stop_tasks.cancel();
    tasks.close();
    tasks.wait().await;
    let _ = std::fs::remove_file(control::socket_path(&sup.config.server.run_dir));
    tracing::info!("all children stopped; bye");
    Ok(())
}

/// The loop's state: the process table and what it needs to act on it. Its behaviour is
/// spread by concern: `table` (the state machine), `reload`, `status`, `control`.
struct Supervisor {
    exe: PathBuf,
    source: ConfigSource,
    /// Where the last valid config text is saved for children, when it comes from a file.
    snapshot: Option<PathBuf>,
    config: Config,
    /// From the file, or `ctl scale` until the next reload.
    desired_runners: u32,
    table: BTreeMap<Process, ProcessEntry>,
    next_generation: u64,
    events: mpsc::UnboundedSender<SupervisorEvent>,
    /// Every task the supervisor starts (child watchers, timers, control connections).
    tasks: TaskTracker,
    /// Ends those tasks once the children are gone.
    stop_tasks: CancellationToken,
    ready_sent: bool,
    stopping: bool,
    last_status: String,
}
