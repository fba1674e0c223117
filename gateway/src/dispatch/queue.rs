//! The queue side of dispatch: queued jobs, oldest first, go to idle runners as their
//! task's `concurrency` allows; a job whose runner went away waits [`GRACE`](super::GRACE)
//! for it, then is `lost`, or queued again once if nothing says it started.

use std::time::Duration;

use shipwatch_protocol::api::{Counts, JobView};
use shipwatch_protocol::{EventBody, GatewayFrame, JobId, JobState, Report};

use super::{Dispatcher, Running};
use crate::store::StoreError;

/// How often a shared queue is read when no wake-up came.
const SHARED_POLL: Duration = Duration::from_secs(2);

/// What became of a job offered to this gateway's runners.
enum Assigned {
    /// Given to a runner, or dealt with (cancelled meanwhile, requeued).
    Yes,
    /// Its task runs as many jobs as its `concurrency` allows.
    TaskBusy,
    /// No runner is idle.
    NoRunner,
    /// The store would not mark it running (cancelled meanwhile, or failing).
    NotMarked,
}

/// What an orphaned job's grace ends in when no runner took it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expiry {
    /// `lost`: something of it may have run.
    Lost,
    /// Queued again (once) when nothing says it started; else `lost`.
    RequeueIfUnstarted,
}

impl Dispatcher {
    /// Jobs a previous gateway left `running` wait [`GRACE`](super::GRACE) for their runner to come back.
    pub(super) async fn adopt_running_jobs(&self) -> Result<(), StoreError> {
        let held = self
            .inner
            .store
            .jobs_held_by(&self.inner.gateway, &[JobState::Running])
            .await?;
        for job in held {
            // Every host still pending: nothing of the job reached the store from a runner.
            // Its runner may have dropped it unstarted when our connection broke (a runner
            // starts nothing before its Started frame is written), so unless a runner
            // takes it back within the grace it is queued again rather than lost.
            let untouched = job.counts
                == Counts {
                    pending: job.counts.pending,
                    ..Counts::default()
                };
            self.lock().running.insert(
                job.id,
                Running {
                    task: job.task.clone(),
                    conn: None,
                    epoch: 0,
                    started: !untouched,
                },
            );
            self.start_grace(
                job.id,
                0,
                format!(
                    "its runner did not reconnect within {} s of the gateway restarting",
                    self.inner.grace.as_secs()
                ),
                Expiry::RequeueIfUnstarted,
            );
        }
        Ok(())
    }

    pub(super) fn start_grace(&self, job: JobId, epoch: u64, reason: String, expiry: Expiry) {
        let me = self.clone();
        let grace = self.inner.grace;
        let shutdown = self.inner.shutdown.clone();
        self.inner.tracker.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(grace) => {}
            }
            let orphan = me
                .lock()
                .running
                .get(&job)
                .filter(|r| r.conn.is_none() && r.epoch == epoch)
                .map(|r| r.started);
            if orphan == Some(false) && expiry == Expiry::RequeueIfUnstarted {
                me.requeue_unstarted(job, "the gateway restarted before its runner started it")
                    .await;
            } else if orphan.is_some() {
                tracing::warn!(job, %reason, "job lost");
                match me.end_job(job, JobState::Lost, &reason).await {
                    Ok(()) | Err(StoreError::Finished { .. }) => {}
                    Err(error) => {
                        tracing::error!(job, error = %Report(&error), "cannot mark a job lost")
                    }
                }
            }
        });
    }

    pub(super) async fn assign_loop(self) {
        // A shared queue also changes through other gateways: their NOTIFY wakes us, and
        // the table is read now and then whatever came (a wake-up may be missed).
        let mut poll = tokio::time::interval(SHARED_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shared = self.inner.store.is_shared();
        loop {
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = self.inner.wake.notified() => {}
                _ = self.inner.store.queue_changed() => {}
                _ = poll.tick(), if shared => {}
            }
            if let Err(error) = self.assign_some().await {
                tracing::error!(error = %Report(&error), "cannot read the job queue");
            }
        }
    }

    fn has_idle_runner(&self) -> bool {
        self.lock()
            .runners
            .values()
            .any(|r| r.job.is_none() && !r.draining)
    }

    /// The tasks whose running jobs here reached their `concurrency`.
    fn busy_tasks(&self) -> Vec<String> {
        let st = self.lock();
        let config = self.inner.config.borrow();
        config
            .tasks
            .iter()
            .filter(|t| {
                let running = st.running.values().filter(|r| r.task == t.name).count();
                t.concurrency != 0 && running >= t.concurrency as usize
            })
            .map(|t| t.name.clone())
            .collect()
    }

    /// Hands queued jobs, oldest first, to idle runners while the tasks' limits allow.
    async fn assign_some(&self) -> Result<(), StoreError> {
        if self.inner.store.is_shared() {
            return self.claim_some().await;
        }
        if !self.has_idle_runner() {
            return Ok(());
        }
        let queued = self.inner.store.jobs_in_state(&[JobState::Queued]).await?;
        for job in queued {
            match self.assign(job).await {
                Assigned::Yes | Assigned::TaskBusy | Assigned::NotMarked => {}
                Assigned::NoRunner => return Ok(()),
            }
        }
        Ok(())
    }

    /// On a shared queue: claims jobs (each goes to exactly one gateway) while a runner
    /// here is idle.
    async fn claim_some(&self) -> Result<(), StoreError> {
        while self.has_idle_runner() {
            let busy = self.busy_tasks();
            let gateway = &self.inner.gateway;
            let Some(id) = self.inner.store.claim_next_except(gateway, &busy).await? else {
                return Ok(());
            };
            let Some(job) = self.inner.store.job(id).await? else {
                continue;
            };
            match self.assign(job).await {
                Assigned::Yes => {}
                Assigned::NoRunner | Assigned::TaskBusy | Assigned::NotMarked => {
                    // Not ours to run after all: back to the queue for anyone (and for
                    // us at the next poll, not at once: the store may be failing).
                    self.inner.store.release_claim(id).await?;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Gives one queued job to the lowest idle runner, if its task's limit allows.
    async fn assign(&self, job: JobView) -> Assigned {
        {
            let conn = {
                let mut st = self.lock();
                let limit = self
                    .inner
                    .config
                    .borrow()
                    .tasks
                    .iter()
                    .find(|t| t.name == job.task)
                    .map_or(1, |t| t.concurrency);
                let running = st.running.values().filter(|r| r.task == job.task).count();
                if limit != 0 && running >= limit as usize {
                    return Assigned::TaskBusy;
                }
                let Some((&conn, runner)) = st
                    .runners
                    .iter_mut()
                    .filter(|(_, r)| r.job.is_none() && !r.draining)
                    .min_by_key(|(c, _)| **c)
                else {
                    return Assigned::NoRunner;
                };
                runner.job = Some(job.id);
                st.running.insert(
                    job.id,
                    Running {
                        task: job.task.clone(),
                        conn: Some(conn),
                        epoch: 0,
                        started: false,
                    },
                );
                conn
            };
            let marked = self
                .inner
                .store
                .gateway_event(
                    job.id,
                    EventBody::Job {
                        state: JobState::Running,
                        reason: None,
                    },
                )
                .await;
            let sent = {
                let mut st = self.lock();
                if let Err(error) = marked {
                    // Cancelled meanwhile, or the store failed: free the runner again.
                    tracing::info!(job = job.id, error = %Report(&error), "not assigning job");
                    st.running.remove(&job.id);
                    if let Some(r) = st.runners.get_mut(&conn) {
                        r.job = None;
                    }
                    return Assigned::NotMarked;
                }
                let runner = st.runners.get(&conn);
                let sent = match (runner, job.spec) {
                    (Some(r), Some(spec)) => {
                        r.tx.send(GatewayFrame::Assign {
                            job: job.id,
                            spec: Box::new(spec),
                        })
                        .is_ok()
                    }
                    _ => false,
                };
                if sent {
                    tracing::info!(job = job.id, task = %job.task, runner = runner.map(|r| r.index), "job assigned");
                }
                sent
            };
            if !sent {
                // The runner vanished between choosing and sending: it never saw the job.
                self.requeue_unstarted(job.id, "its runner disconnected as the job was assigned")
                    .await;
            }
        }
        Assigned::Yes
    }

    /// Puts a job its runner never started back in the queue, or makes it `lost` when it
    /// was put back once already.
    pub(super) async fn requeue_unstarted(&self, job: JobId, why: &str) {
        let again = {
            let mut st = self.lock();
            // Started after all, or already dealt with by whoever saw the runner go first.
            if st.running.get(&job).is_none_or(|r| r.started) {
                return;
            }
            st.running.remove(&job);
            st.requeued.insert(job)
        };
        let (state, reason) = if again {
            (JobState::Queued, format!("{why}; queued again"))
        } else {
            (
                JobState::Lost,
                format!("{why}, the second runner to be given it; not queued a third time"),
            )
        };
        tracing::warn!(job, %reason, "job not started by its runner");
        // Not end_job: once queued, the job may be assigned again before the store
        // answers, and that assignment's entry in `running` must stay.
        let result = self
            .inner
            .store
            .gateway_event(
                job,
                EventBody::Job {
                    state,
                    reason: Some(reason),
                },
            )
            .await;
        self.wake();
        match result {
            Ok(_) | Err(StoreError::Finished { .. }) => {}
            Err(error) => tracing::error!(job, error = %Report(&error), "cannot requeue a job"),
        }
    }
}
