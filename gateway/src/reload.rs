//! Reloading the configuration in place (DESIGN §7): a valid file replaces the current
//! one without closing a socket; an invalid one is logged and the old one kept.

use shipwatch_protocol::Report;
use std::sync::Arc;

use shipwatch_config::Config;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Re-reads the configuration on each SIGHUP until `shutdown`: a valid one replaces the
/// current one in place (sockets stay open); an invalid one is logged and the old kept.
pub async fn reload_on_sighup(
    config_tx: Arc<watch::Sender<Arc<Config>>>,
    auth: Arc<crate::auth::Auth>,
    shutdown: CancellationToken,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(error = %Report(&error), "cannot listen for SIGHUP: config reload is off");
            return;
        }
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            got = hup.recv() => if got.is_none() { return },
        }
        // A valid one is recorded by the auth layer as it applies it.
        if let Err(problems) = reload(&config_tx).await {
            auth.record(crate::store::AuditRecord {
                actor: "gateway".into(),
                action: "reload".into(),
                detail: format!("{problems} problems; the old configuration keeps running"),
                outcome: "invalid configuration".into(),
                ..Default::default()
            })
            .await;
        }
    }
}

/// One reload: read the config source off the async threads, swap it in if valid;
/// `Err` with how many problems kept the old one.
pub async fn reload(config_tx: &watch::Sender<Arc<Config>>) -> Result<(), usize> {
    let source = config_tx.borrow().source.clone();
    match tokio::task::spawn_blocking(move || shipwatch_config::load(&source)).await {
        Ok(Ok(config)) => {
            tracing::info!(
                tasks = config.tasks.len(),
                users = config.users.len(),
                "configuration reloaded"
            );
            config_tx.send_replace(Arc::new(config));
            Ok(())
        }
        Ok(Err(errors)) => {
            tracing::error!(%errors, "new configuration is invalid; keeping the old one");
            Err(errors.0.len())
        }
        Err(error) => {
            tracing::error!(error = %Report(&error), "configuration reload failed");
            Err(1)
        }
    }
}
