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

mod child;
pub mod control;
pub mod logging;

use shipwatch_protocol::Report;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use shipwatch_config::{Config, ConfigSource};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use child::Process;
pub use control::{ProcessStatus, Request, Response};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Starting,
    Running,
    Backoff,
    Stopping,
    Stopped,
    Fatal,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Backoff => "backoff",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
            State::Fatal => "fatal",
        }
    }
}

/// One entry of the process table.
struct ProcessEntry {
    state: State,
    /// Bumped at every spawn so late events of a previous incarnation are ignored.
    generation: u64,
    pid: Option<u32>,
    started: Option<Instant>,
    restarts: u32,
    failed_starts: u32,
    last_exit: Option<String>,
    /// What to do when the current process exits on our request.
    after_stop: AfterStop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterStop {
    /// An unexpected exit: restart policy applies.
    Restart,
    /// Start again at once (`ctl restart`).
    RestartNow,
    /// Leave the table (scale-down).
    Remove,
    /// Stay stopped (shutdown).
    Stay,
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
            let path = config.server.run_dir.join(SNAPSHOT_FILE);
            save_snapshot(&path, &text).map_err(|source| SupervisorError::Snapshot {
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
    let _watcher = watch_config(&source, config.supervisor.watch_config, &events);

    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(SupervisorError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(SupervisorError::Signals)?;
    let mut hup = signal(SignalKind::hangup()).map_err(SupervisorError::Signals)?;

    let watchdog = watchdog_interval();
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
                let events = events.clone();
                let listen = sup.config.server.listen;
                let stop = stop_tasks.clone();
                tasks.spawn(async move {
                    let healthy = tokio::select! {
                        healthy = gateway_healthy(listen) => healthy,
                        () = stop.cancelled() => false,
                    };
                    if healthy {
                        let _ = events.send(SupervisorEvent::WatchdogHealthy);
                    }
                });
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

/// In the run_dir: the config text children read (see [`ConfigSource::Snapshot`]).
const SNAPSHOT_FILE: &str = "config.snapshot.toml";

/// Saves the text children read, atomically; 0600 because it may hold password hashes.
fn save_snapshot(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("toml.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    std::fs::rename(&tmp, path)
}

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

impl Supervisor {
    /// Moves the process table on by one event, then tells systemd the new status.
    fn apply(&mut self, event: SupervisorEvent) {
        match event {
            SupervisorEvent::Exited {
                process,
                generation,
                status,
                ran,
            } => self.exited(process, generation, status, ran),
            SupervisorEvent::Ready {
                process,
                generation,
            } => {
                if let Some(entry) = self.table.get_mut(&process)
                    && entry.generation == generation
                    && entry.state == State::Starting
                {
                    entry.state = State::Running;
                    tracing::info!(pid = entry.pid, "{} running", process.name());
                    if process == Process::Gateway && !self.stopping {
                        self.ensure_runners();
                    }
                }
            }
            SupervisorEvent::StartDue {
                process,
                generation,
            } => {
                if let Some(entry) = self.table.get(&process)
                    && entry.generation == generation
                    && matches!(entry.state, State::Backoff | State::Fatal)
                    && !self.stopping
                {
                    self.start(process);
                }
            }
            SupervisorEvent::Escalate {
                process,
                generation,
                signal,
                then,
            } => {
                if let Some(entry) = self.table.get(&process)
                    && entry.generation == generation
                    && entry.pid.is_some()
                {
                    tracing::warn!("{}: did not stop in time, sending {signal}", process.name());
                    self.signal(process, signal);
                    if let Some(delay) = then {
                        self.schedule(
                            delay,
                            SupervisorEvent::Escalate {
                                process,
                                generation,
                                signal: Signal::SIGKILL,
                                then: None,
                            },
                        );
                    }
                }
            }
            SupervisorEvent::Control { request, reply } => {
                let response = self.control(request);
                let _ = reply.send(response);
            }
            SupervisorEvent::Reload => {
                let _ = self.reload("config file changed");
            }
            SupervisorEvent::WatchdogHealthy => {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
            }
        }
        self.publish_status();
    }

    /// Adds `process` to the table and starts it, unless it is there already.
    fn ensure(&mut self, process: Process) {
        match self.table.get_mut(&process) {
            Some(entry) => {
                if entry.after_stop == AfterStop::Remove {
                    // Scaled back up while draining: it comes back when it exits.
                    entry.after_stop = AfterStop::RestartNow;
                }
            }
            None => {
                self.table.insert(
                    process,
                    ProcessEntry {
                        state: State::Stopped,
                        generation: 0,
                        pid: None,
                        started: None,
                        restarts: 0,
                        failed_starts: 0,
                        last_exit: None,
                        after_stop: AfterStop::Restart,
                    },
                );
                self.start(process);
            }
        }
    }

    fn ensure_runners(&mut self) {
        for index in 0..self.desired_runners {
            self.ensure(Process::Runner(index));
        }
        let surplus: Vec<Process> = self
            .table
            .keys()
            .copied()
            .filter(|k| matches!(k, Process::Runner(i) if *i >= self.desired_runners))
            .collect();
        for process in surplus {
            self.drain(process);
        }
    }

    /// Scale-down: ask the runner to finish its job and exit; SIGTERM after drain_timeout.
    fn drain(&mut self, process: Process) {
        let Some(entry) = self.table.get_mut(&process) else {
            return;
        };
        if entry.after_stop == AfterStop::Remove {
            return;
        }
        if entry.pid.is_none() {
            self.table.remove(&process);
            return;
        }
        entry.after_stop = AfterStop::Remove;
        entry.state = State::Stopping;
        let generation = entry.generation;
        tracing::info!("{}: draining (scale-down)", process.name());
        self.signal(process, Signal::SIGUSR2);
        self.schedule(
            self.config.supervisor.drain_timeout,
            SupervisorEvent::Escalate {
                process,
                generation,
                signal: Signal::SIGTERM,
                then: Some(self.config.supervisor.stop_timeout),
            },
        );
    }

    fn start(&mut self, process: Process) {
        self.next_generation += 1;
        let generation = self.next_generation;
        let source = match (&self.snapshot, &self.source) {
            (Some(file), ConfigSource::File(of)) => ConfigSource::Snapshot {
                file: file.clone(),
                of: of.clone(),
            },
            (_, source) => source.clone(),
        };
        let result = child::spawn(
            &self.exe,
            &source,
            process,
            generation,
            &self.events,
            &self.tasks,
            &self.stop_tasks,
        );
        let Some(entry) = self.table.get_mut(&process) else {
            return;
        };
        entry.generation = generation;
        entry.after_stop = AfterStop::Restart;
        match result {
            Ok(pid) => {
                entry.pid = Some(pid);
                entry.started = Some(Instant::now());
                entry.state = State::Starting;
                tracing::debug!(pid, "{} started", process.name());
            }
            Err(error) => {
                tracing::error!(error = %Report(&error), "{}: cannot spawn", process.name());
                entry.last_exit = Some(format!("spawn failed: {}", Report(&error)));
                self.failed_start(process);
            }
        }
    }

    fn exited(
        &mut self,
        process: Process,
        generation: u64,
        status: std::io::Result<std::process::ExitStatus>,
        ran: Duration,
    ) {
        let start_secs = self.config.supervisor.start_secs;
        let Some(entry) = self.table.get_mut(&process) else {
            return;
        };
        if entry.generation != generation {
            return;
        }
        let how = child::describe_exit(&status);
        entry.pid = None;
        entry.started = None;
        entry.last_exit = Some(format!("{how} after {:.2} s", ran.as_secs_f64()));
        let after = if self.stopping {
            AfterStop::Stay
        } else {
            entry.after_stop
        };
        match after {
            AfterStop::Stay => {
                entry.state = State::Stopped;
                tracing::info!("{} stopped ({how})", process.name());
                if self.stopping {
                    self.continue_stop();
                }
            }
            AfterStop::Remove => {
                tracing::info!("{} exited after scale-down ({how})", process.name());
                self.table.remove(&process);
            }
            AfterStop::RestartNow => {
                entry.restarts += 1;
                entry.failed_starts = 0;
                self.start(process);
            }
            AfterStop::Restart if ran >= start_secs => {
                entry.restarts += 1;
                entry.failed_starts = 0;
                tracing::warn!(
                    "{} exited ({how}) after {ran:.2?}; restarting",
                    process.name()
                );
                self.start(process);
            }
            AfterStop::Restart => {
                entry.restarts += 1;
                tracing::warn!(
                    "{} exited ({how}) after {:.2} s: failed start",
                    process.name(),
                    ran.as_secs_f64()
                );
                self.failed_start(process);
            }
        }
    }

    /// Backoff (0.1 s doubling to backoff_max), FATAL after start_retries, retried every
    /// backoff_max from then on.
    fn failed_start(&mut self, process: Process) {
        let retries = self.config.supervisor.start_retries;
        let max = self.config.supervisor.backoff_max;
        let Some(entry) = self.table.get_mut(&process) else {
            return;
        };
        entry.failed_starts += 1;
        let delay;
        if entry.failed_starts >= retries.max(1) {
            entry.state = State::Fatal;
            delay = max;
            tracing::error!(
                "{} FATAL after {} failed starts (last: {}); retrying every {:?}",
                process.name(),
                entry.failed_starts,
                entry.last_exit.as_deref().unwrap_or("-"),
                max
            );
        } else {
            entry.state = State::Backoff;
            delay = backoff_delay(entry.failed_starts, max);
        }
        let generation = entry.generation;
        self.schedule(
            delay,
            SupervisorEvent::StartDue {
                process,
                generation,
            },
        );
    }

    fn schedule(&self, delay: Duration, event: SupervisorEvent) {
        let events = self.events.clone();
        let stop = self.stop_tasks.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(delay) => { let _ = events.send(event); }
                () = stop.cancelled() => {}
            }
        });
    }

    fn signal(&self, process: Process, signal: Signal) {
        if let Some(pid) = self.table.get(&process).and_then(|s| s.pid)
            && let Ok(pid) = i32::try_from(pid)
            && let Err(error) = killpg(Pid::from_raw(pid), signal)
        {
            tracing::debug!(error = %Report(&error), "{}: cannot send {signal}", process.name());
        }
    }

    /// Stop: runners first (they report their cancelled jobs to the gateway), then the
    /// gateway; each SIGTERM followed by SIGKILL after stop_timeout.
    fn begin_stop(&mut self, why: &str) {
        if self.stopping {
            return;
        }
        tracing::info!("{why}: stopping all children");
        self.stopping = true;
        let _ = sd_notify::notify(
            false,
            &[
                sd_notify::NotifyState::Stopping,
                sd_notify::NotifyState::Status("stopping"),
            ],
        );
        for entry in self.table.values_mut() {
            if entry.pid.is_none() {
                entry.state = State::Stopped;
            }
        }
        let runners: Vec<Process> = self
            .table
            .keys()
            .copied()
            .filter(|k| *k != Process::Gateway)
            .collect();
        for process in runners {
            self.stop(process);
        }
        self.continue_stop();
    }

    fn continue_stop(&mut self) {
        let runners_alive = self
            .table
            .iter()
            .any(|(k, s)| *k != Process::Gateway && s.pid.is_some());
        if !runners_alive
            && self
                .table
                .get(&Process::Gateway)
                .is_some_and(|s| s.pid.is_some() && s.state != State::Stopping)
        {
            self.stop(Process::Gateway);
        }
    }

    fn stop(&mut self, process: Process) {
        let timeout = self.config.supervisor.stop_timeout;
        let Some(entry) = self.table.get_mut(&process) else {
            return;
        };
        if entry.pid.is_none() {
            return;
        }
        entry.state = State::Stopping;
        let generation = entry.generation;
        self.signal(process, Signal::SIGTERM);
        self.schedule(
            timeout,
            SupervisorEvent::Escalate {
                process,
                generation,
                signal: Signal::SIGKILL,
                then: None,
            },
        );
    }

    fn restart(&mut self, process: Process) {
        let Some(entry) = self.table.get_mut(&process) else {
            return;
        };
        entry.failed_starts = 0;
        if entry.pid.is_some() {
            self.stop(process);
            if let Some(entry) = self.table.get_mut(&process) {
                entry.after_stop = AfterStop::RestartNow;
            }
        } else {
            self.start(process);
        }
    }

    fn control(&mut self, request: Request) -> Response {
        let ok = |message: String| Response {
            ok: true,
            message,
            processes: Vec::new(),
        };
        let fail = |message: String| Response {
            ok: false,
            message,
            processes: Vec::new(),
        };
        if self.stopping && !matches!(request, Request::Status) {
            return fail("stopping".to_owned());
        }
        match request {
            Request::Status => Response {
                ok: true,
                message: self.status_line(),
                processes: self.statuses(),
            },
            Request::Restart { target } => {
                let targets: Vec<Process> = match target.as_str() {
                    "all" => self.table.keys().copied().collect(),
                    "runners" => self
                        .table
                        .keys()
                        .copied()
                        .filter(|k| *k != Process::Gateway)
                        .collect(),
                    name => match self.table.keys().copied().find(|k| k.name() == name) {
                        Some(process) => vec![process],
                        None => return fail(format!("no process named {name:?}")),
                    },
                };
                for process in &targets {
                    self.restart(*process);
                }
                ok(format!("restarting {} process(es)", targets.len()))
            }
            Request::Scale { runners } => {
                self.desired_runners = runners;
                if self.gateway_running() {
                    self.ensure_runners();
                }
                ok(format!("scaled to {runners} runners"))
            }
            Request::Reload => match self.reload("ctl reload") {
                Ok(message) => ok(message),
                Err(message) => fail(message),
            },
            Request::Stop => {
                self.begin_stop("ctl stop");
                ok("stopping".to_owned())
            }
        }
    }

    fn gateway_running(&self) -> bool {
        self.table
            .get(&Process::Gateway)
            .is_some_and(|s| s.state == State::Running)
            || self.ready_sent
    }

    /// Re-reads the config; an invalid one changes nothing. Applies only the difference.
    fn reload(&mut self, why: &str) -> Result<String, String> {
        if self.stopping {
            return Err("stopping".to_owned());
        }
        // Bracket every reload, failed ones too: systemd (Type=notify-reload) waits for
        // READY=1 after RELOADING=1.
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Reloading, monotonic_now()]);
        let result = self.apply_reload(why);
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        result
    }

    fn apply_reload(&mut self, why: &str) -> Result<String, String> {
        let (config, text) = match shipwatch_config::load_keeping_text(&self.source) {
            Ok(loaded) => loaded,
            Err(errors) => {
                let text = errors.to_string();
                tracing::error!("{why}: config not reloaded, nothing changed:\n{text}");
                return Err(text);
            }
        };
        if let Some(path) = &self.snapshot
            && let Err(error) = save_snapshot(path, &text)
        {
            let text = format!(
                "cannot save the config snapshot {}: {}",
                path.display(),
                Report(&error)
            );
            tracing::error!("{why}: config not reloaded, nothing changed: {text}");
            return Err(text);
        }
        let gateway_changed = gateway_view(&config) != gateway_view(&self.config);
        let old_runners = self.desired_runners;
        self.desired_runners = config.supervisor.runners;
        self.config = config;
        let mut changes = Vec::new();
        if gateway_changed {
            self.signal(Process::Gateway, Signal::SIGHUP);
            changes.push("gateway told to reload".to_owned());
        }
        if old_runners != self.desired_runners {
            changes.push(format!("runners {old_runners} -> {}", self.desired_runners));
        }
        if self.gateway_running() {
            self.ensure_runners();
        }
        let message = if changes.is_empty() {
            "reloaded: no change".to_owned()
        } else {
            format!("reloaded: {}", changes.join(", "))
        };
        tracing::info!("{why}: {message}");
        Ok(message)
    }

    fn statuses(&self) -> Vec<ProcessStatus> {
        self.table
            .iter()
            .map(|(process, entry)| ProcessStatus {
                name: process.name(),
                state: entry.state.as_str().to_owned(),
                pid: entry.pid,
                uptime_us: entry
                    .started
                    .map(|t| u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX)),
                restarts: entry.restarts,
                last_exit: entry.last_exit.clone(),
            })
            .collect()
    }

    fn status_line(&self) -> String {
        let gateway = match self.table.get(&Process::Gateway) {
            Some(entry) if entry.state == State::Running => "gateway up".to_owned(),
            Some(entry) => format!(
                "gateway {}{}",
                entry.state.as_str(),
                entry
                    .last_exit
                    .as_deref()
                    .map(|e| format!(" (last: {e})"))
                    .unwrap_or_default()
            ),
            None => "gateway absent".to_owned(),
        };
        let running = self
            .table
            .iter()
            .filter(|(k, s)| **k != Process::Gateway && s.state == State::Running)
            .count();
        let mut line = format!("{gateway}, {running}/{} runners", self.desired_runners);
        for (process, entry) in &self.table {
            if *process != Process::Gateway && entry.state == State::Fatal {
                line.push_str(&format!(
                    ", {} fatal ({})",
                    process.name(),
                    entry.last_exit.as_deref().unwrap_or("-")
                ));
            }
        }
        line
    }

    /// STATUS= on every change, and READY=1 once the gateway and all runners run.
    fn publish_status(&mut self) {
        let all_running = self
            .table
            .get(&Process::Gateway)
            .is_some_and(|s| s.state == State::Running)
            && (0..self.desired_runners).all(|i| {
                self.table
                    .get(&Process::Runner(i))
                    .is_some_and(|s| s.state == State::Running)
            });
        if self.stopping {
            return;
        }
        let status = self.status_line();
        if status != self.last_status {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Status(&status)]);
            self.last_status = status;
        }
        if !self.ready_sent && all_running {
            self.ready_sent = true;
            tracing::info!(
                "ready: gateway and {} runners running",
                self.desired_runners
            );
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        }
    }
}

/// Delay before retrying after the `failed_starts`-th failed start in a row: 0.1 s,
/// doubling, at most `max`.
fn backoff_delay(failed_starts: u32, max: Duration) -> Duration {
    let exp = failed_starts.saturating_sub(1).min(20);
    Duration::from_millis(100u64 << exp).min(max)
}

/// Half of `WATCHDOG_USEC` when systemd wants pings from us (`WATCHDOG_PID`, when set,
/// names us; sd_watchdog_enabled(3) accepts it unset too).
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros((usec / 2).max(1000)))
}

/// Everything the gateway reads: a change here is signalled to it (SIGHUP).
fn gateway_view(config: &Config) -> String {
    format!(
        "{:?}{:?}{:?}{:?}{:?}{:?}{:?}",
        config.server,
        config.ssh,
        config.hosts,
        config.tasks,
        config.users,
        config.tokens,
        config.auth
    )
}

fn monotonic_now() -> sd_notify::NotifyState<'static> {
    sd_notify::NotifyState::monotonic_usec_now().unwrap_or(sd_notify::NotifyState::MonotonicUsec(0))
}

/// GET /healthz answers 200 within a second.
async fn gateway_healthy(listen: std::net::SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(listen).await.ok()?;
        stream
            .write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0u8; 16];
        let n = stream.read(&mut head).await.ok()?;
        let head = std::str::from_utf8(&head[..n]).ok()?;
        Some(head.starts_with("HTTP/1.") && head.get(9..12) == Some("200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), probe).await,
        Ok(Some(true))
    )
}

/// Watches the config file's directory (editors rename over files, symlinks get
/// swapped) and asks for a reload, debounced.
fn watch_config(
    source: &ConfigSource,
    enabled: bool,
    events: &mpsc::UnboundedSender<SupervisorEvent>,
) -> Option<
    notify_debouncer_full::Debouncer<
        notify::RecommendedWatcher,
        notify_debouncer_full::RecommendedCache,
    >,
> {
    let ConfigSource::File(path) = source else {
        return None;
    };
    if !enabled {
        return None;
    }
    let dir = path.parent()?.to_path_buf();
    let name = path.file_name()?.to_owned();
    let target = std::fs::canonicalize(path).ok();
    let events = events.clone();
    let mut debouncer = match notify_debouncer_full::new_debouncer(
        Duration::from_millis(300),
        None,
        move |result: notify_debouncer_full::DebounceEventResult| {
            let Ok(batch) = result else { return };
            // Children open the file to read it: only changes count.
            let changes = batch
                .iter()
                .filter(|e| !e.kind.is_access() && !e.kind.is_other());
            let touches = changes.flat_map(|e| e.paths.iter()).any(|p| {
                p.file_name() == Some(name.as_os_str()) || target.as_deref().is_some_and(|t| p == t)
            });
            if touches {
                let _ = events.send(SupervisorEvent::Reload);
            }
        },
    ) {
        Ok(debouncer) => debouncer,
        Err(error) => {
            tracing::warn!(error = %Report(&error), "cannot watch the config file; reload with SIGHUP");
            return None;
        }
    };
    if let Err(error) = debouncer.watch(&dir, notify::RecursiveMode::NonRecursive) {
        tracing::warn!(error = %Report(&error), dir = %dir.display(), "cannot watch the config directory");
        return None;
    }
    Some(debouncer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_tenth_of_a_second_up_to_the_max() {
        let max = Duration::from_secs(1);
        let delays: Vec<u128> = (1..=6).map(|n| backoff_delay(n, max).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(
            backoff_delay(u32::MAX, Duration::from_secs(30)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn exits_are_described_with_code_or_signal_name() {
        use std::os::unix::process::ExitStatusExt;
        let exited = Ok(std::process::ExitStatus::from_raw(3 << 8));
        assert_eq!(child::describe_exit(&exited), "exit 3");
        let killed = Ok(std::process::ExitStatus::from_raw(9));
        assert_eq!(child::describe_exit(&killed), "signal 9 (SIGKILL)");
    }

    #[test]
    fn names_are_gateway_and_numbered_runners() {
        assert_eq!(Process::Gateway.name(), "gateway");
        assert_eq!(Process::Runner(3).name(), "runner-3");
        assert!(
            Process::Gateway < Process::Runner(0),
            "the gateway sorts first in status"
        );
    }

    #[test]
    fn status_table_has_the_documented_columns() {
        let table = control::format_table(&[ProcessStatus {
            name: "runner-0".into(),
            state: "fatal".into(),
            pid: None,
            uptime_us: None,
            restarts: 5,
            last_exit: Some("exit 1 after 0.02 s".into()),
        }]);
        let mut lines = table.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(
            header,
            ["NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST-EXIT"]
        );
        let row = lines.next().unwrap_or_default();
        assert!(
            row.starts_with("runner-0") && row.ends_with("exit 1 after 0.02 s"),
            "{row}"
        );
    }
}
