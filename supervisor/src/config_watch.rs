//! Reload on a change of the config file, debounced.

use std::time::Duration;

use shipwatch_config::ConfigSource;
use shipwatch_protocol::Report;
use tokio::sync::mpsc;

use crate::SupervisorEvent;

/// Watches the config file's directory (editors rename over files, symlinks get
/// swapped) and asks for a reload, debounced.
pub(crate) fn watch(
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
