//! Reload (SIGHUP, a file change, `ctl reload`): an invalid config changes nothing; a
//! valid one is applied as a difference — the gateway is told (SIGHUP) only when what it
//! reads changed, runners are spawned or drained to the new count, and nothing else is
//! restarted.

use nix::sys::signal::Signal;
use shipwatch_config::Config;
use shipwatch_protocol::Report;

use crate::{Process, Supervisor, snapshot};

impl Supervisor {
    /// Re-reads the config; an invalid one changes nothing. Applies only the difference.
    pub(crate) fn reload(&mut self, why: &str) -> Result<String, String> {
        if self.stopping {
            return Err("stopping".to_owned());
        }
        // Bracket every reload, failed ones too: systemd (Type=notify-reload) waits for
        // READY=1 after RELOADING=1.
        let _ = crate::notify::notify(&[sd_notify::NotifyState::Reloading, monotonic_now()]);
        let result = self.apply_reload(why);
        if !crate::notify::notify(&[sd_notify::NotifyState::Ready]) {
            // Dropped: publish_status sends it again on the next event.
            self.ready_sent = false;
        }
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
            && let Err(error) = snapshot::save(path, &text)
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
