//! Gateways sharing a store (DESIGN §11) heartbeat in it; the running jobs of one that
//! stopped are marked `lost` by a survivor once its lease expired, and its queued claims
//! go back to the queue (`Store::orphaned_jobs`).

use std::time::{Duration, Instant};

use shipwatch_config::Config;
use shipwatch_protocol::{EventBody, JobState, Report};

use super::Dispatcher;
use crate::store::StoreError;

/// How often a gateway says it is alive.
pub const BEAT: Duration = Duration::from_secs(1);
/// A gateway silent this long is taken for stopped: longer than a restart by its
/// supervisor takes, so a restarted gateway takes its jobs back itself.
pub const LEASE: Duration = Duration::from_secs(10);

/// This gateway's name in a shared store: the box's host name and the address it
/// listens on, the same again after a restart.
pub(super) fn gateway_name(config: &Config) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!("{host}/{}", config.server.listen)
}

impl Dispatcher {
    /// Heartbeats and looks for the jobs of stopped gateways until shutdown.
    pub(super) async fn keep_lease(self) {
        let mut every = tokio::time::interval(BEAT);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        // Others are judged only after a lease of our own beats: after the database was
        // away, every gateway's last beat is old, and a live one must get to beat again.
        let mut beating_since = Instant::now();
        loop {
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            let judge = beating_since.elapsed() > LEASE;
            match self.beat(judge).await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("gateway heartbeat works again");
                }
                Ok(()) => {}
                Err(error) => {
                    beating_since = Instant::now();
                    if !failing {
                        failing = true;
                        tracing::warn!(error = %Report(&error), "gateway heartbeat failed; retrying");
                    }
                }
            }
        }
    }

    async fn beat(&self, judge: bool) -> Result<(), StoreError> {
        let store = &self.inner.store;
        store.heartbeat(&self.inner.gateway).await?;
        if !judge {
            return Ok(());
        }
        let orphans = store.orphaned_jobs(&self.inner.gateway, LEASE).await?;
        if !orphans.is_empty() {
            // Their slots are free, and their queued jobs claimable again.
            self.wake();
        }
        for orphan in orphans {
            let reason = format!(
                "its gateway {} stopped: no heartbeat for {} s",
                orphan.gateway,
                LEASE.as_secs()
            );
            tracing::warn!(job = orphan.job, %reason, "job lost");
            let lost = EventBody::Job {
                state: JobState::Lost,
                reason: Some(reason),
            };
            match store.gateway_event(orphan.job, lost).await {
                Ok(_) | Err(StoreError::Finished { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}
