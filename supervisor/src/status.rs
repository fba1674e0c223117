//! What the supervisor tells about its processes: `ctl status` rows, the one-line
//! summary, and sd_notify's STATUS= and READY=1.

use crate::table::State;
use crate::{Process, ProcessStatus, Supervisor};

impl Supervisor {
    pub(crate) fn statuses(&self) -> Vec<ProcessStatus> {
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

    pub(crate) fn status_line(&self) -> String {
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
    pub(crate) fn publish_status(&mut self) {
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
            let _ = crate::notify::notify(&[sd_notify::NotifyState::Status(&status)]);
            self.last_status = status;
        }
        // systemd waits for READY=1 (start-up, and after RELOADING=1): until one is
        // queued, every event tries again.
        if !self.ready_sent
            && all_running
            && crate::notify::notify(&[sd_notify::NotifyState::Ready])
        {
            self.ready_sent = true;
            tracing::info!(
                "ready: gateway and {} runners running",
                self.desired_runners
            );
        }
    }
}
