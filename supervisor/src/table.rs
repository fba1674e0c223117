//! The process table and its state machine: which processes should run, what each one
//! is doing, and what happens when one starts, becomes ready, exits or must stop
//! (restart at once, backoff, FATAL, drain on scale-down, SIGTERM then SIGKILL).

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use shipwatch_config::ConfigSource;
use shipwatch_protocol::Report;

use crate::{Process, Supervisor, SupervisorEvent, child};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Starting,
    Running,
    Backoff,
    Stopping,
    Stopped,
    Fatal,
}

impl State {
    pub(crate) fn as_str(self) -> &'static str {
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
pub(crate) struct ProcessEntry {
    pub(crate) state: State,
    /// Bumped at every spawn so late events of a previous incarnation are ignored.
    pub(crate) generation: u64,
    pub(crate) pid: Option<u32>,
    pub(crate) started: Option<Instant>,
    pub(crate) restarts: u32,
    pub(crate) failed_starts: u32,
    pub(crate) last_exit: Option<String>,
    /// What to do when the current process exits on our request.
    pub(crate) after_stop: AfterStop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterStop {
    /// An unexpected exit: restart policy applies.
    Restart,
    /// Start again at once (`ctl restart`).
    RestartNow,
    /// Leave the table (scale-down).
    Remove,
    /// Stay stopped (shutdown).
    Stay,
}

impl Supervisor {
    /// Moves the process table on by one event, then tells systemd the new status.
    pub(crate) fn apply(&mut self, event: SupervisorEvent) {
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
                let _ = crate::notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        }
        self.publish_status();
    }

    /// Adds `process` to the table and starts it, unless it is there already.
    pub(crate) fn ensure(&mut self, process: Process) {
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

    pub(crate) fn ensure_runners(&mut self) {
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

    pub(crate) fn signal(&self, process: Process, signal: Signal) {
        if let Some(pid) = self.table.get(&process).and_then(|s| s.pid)
            && let Ok(pid) = i32::try_from(pid)
            && let Err(error) = killpg(Pid::from_raw(pid), signal)
        {
            tracing::debug!(error = %Report(&error), "{}: cannot send {signal}", process.name());
        }
    }

    /// Stop: runners first (they report their cancelled jobs to the gateway), then the
    /// gateway; each SIGTERM followed by SIGKILL after stop_timeout.
    pub(crate) fn begin_stop(&mut self, why: &str) {
        if self.stopping {
            return;
        }
        tracing::info!("{why}: stopping all children");
        self.stopping = true;
        crate::notify::notify(&[
            sd_notify::NotifyState::Stopping,
            sd_notify::NotifyState::Status("stopping"),
        ]);
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

    pub(crate) fn restart(&mut self, process: Process) {
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

    pub(crate) fn gateway_running(&self) -> bool {
        self.table
            .get(&Process::Gateway)
            .is_some_and(|s| s.state == State::Running)
            || self.ready_sent
    }
}

/// Delay before retrying after the `failed_starts`-th failed start in a row: 0.1 s,
/// doubling, at most `max`.
fn backoff_delay(failed_starts: u32, max: Duration) -> Duration {
    let exp = failed_starts.saturating_sub(1).min(20);
    Duration::from_millis(100u64 << exp).min(max)
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
}
