//! The runner socket server and the job queue (DESIGN §1): runners say hello, idle ones
//! get the oldest queued job their task's `concurrency` allows, their events are committed
//! and acked, and a job whose runner is gone past [`GRACE`] becomes `lost`. A job its
//! runner never said it started ([`Started`](shipwatch_protocol::RunnerFrame::Started),
//! or any event of it) before the connection ended goes back to the queue instead, once:
//! nothing of it ran.
//!
//! The queue itself is the store's `queued` jobs, so a job created over HTTP only needs a
//! [`Dispatcher::wake`], and a gateway restart loses nothing. Jobs left `running` by a dead
//! gateway wait [`GRACE`] for their runner to reclaim them. When a job ends by `lost` or
//! failure to store, the store marks its running hosts `cancelled` and pending ones
//! `skipped`; a runner that comes back with a job already finished gets a Cancel.
//!
//! `queue` hands queued jobs out and decides what becomes of a job whose runner went
//! away (grace, requeue, `lost`); `runners` serves the runner socket (hello, frames,
//! acks). Both work on the tables here, under one lock, and the job bookkeeping below
//! ([`Dispatcher::cancel`], a job started or ended) is what they share.

mod lease;
mod queue;
mod runners;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shipwatch_config::Config;
use shipwatch_protocol::{EventBody, GatewayFrame, JobId, JobState};
use tokio::net::UnixListener;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::{Store, StoreError};

/// How long a job waits for its runner to reconnect before it is `lost`.
pub const GRACE: Duration = Duration::from_secs(10);
/// How often each side sends a heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// A runner connection silent this long is dropped.
pub const SILENCE: Duration = Duration::from_secs(30);

/// What [`Dispatcher::cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The job was queued (or had no runner) and is now `cancelled`.
    Cancelled,
    /// A Cancel went to the job's runner; the job ends when the runner says so.
    Requested,
    /// The job had already ended in this state.
    AlreadyFinished(JobState),
}

/// Why dispatch could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("job {0} does not exist")]
    NoSuchJob(JobId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A cheap handle on the queue and the connected runners.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    config: watch::Receiver<Arc<Config>>,
    wake: Notify,
    state: Mutex<State>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    grace: Duration,
    /// Who this gateway is in a shared store: its claims and heartbeat carry it, and a
    /// restarted gateway takes back what it held (host name and listen address).
    gateway: String,
}

#[derive(Default)]
struct State {
    next_conn: u64,
    runners: HashMap<u64, Runner>,
    /// Every job the gateway believes running, whether or not its runner is connected.
    running: HashMap<JobId, Running>,
    /// Jobs already put back in the queue once because their runner vanished before
    /// starting them; a second time they are `lost`, so a job no runner survives taking
    /// cannot circle forever.
    requeued: HashSet<JobId>,
}

struct Runner {
    index: u32,
    tx: mpsc::UnboundedSender<GatewayFrame>,
    job: Option<JobId>,
    draining: bool,
}

struct Running {
    task: String,
    /// The connection running it; `None` while waiting for a runner to come back.
    conn: Option<u64>,
    /// Bumped on every attach, so a stale grace timer knows it lost the race.
    epoch: u64,
    /// The runner said it started the job (a Started frame, an event, a reclaim): from
    /// then on something may have run, and a vanished runner makes the job `lost`.
    started: bool,
}

impl Dispatcher {
    /// A dispatcher over `store`; call [`Dispatcher::serve`] to take runners.
    pub fn new(
        store: Store,
        config: watch::Receiver<Arc<Config>>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Dispatcher {
        Self::with_grace(store, config, tracker, shutdown, GRACE)
    }

    /// Like [`Dispatcher::new`] with another grace period (tests).
    pub fn with_grace(
        store: Store,
        config: watch::Receiver<Arc<Config>>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
        grace: Duration,
    ) -> Dispatcher {
        let gateway = lease::gateway_name(&config.borrow());
        Dispatcher {
            inner: Arc::new(Inner {
                store,
                config,
                wake: Notify::new(),
                state: Mutex::new(State::default()),
                tracker,
                shutdown,
                grace,
                gateway,
            }),
        }
    }

    /// A job was queued (or a slot freed): try to hand out work.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// The id of a running job of `task`, if any (HTTP answers 409 with it when the
    /// task's `concurrency` is reached).
    pub fn running_job_of_task(&self, task: &str) -> Option<JobId> {
        self.running_jobs_of_task(task).into_iter().min()
    }

    /// Every job of `task` the gateway believes running.
    pub fn running_jobs_of_task(&self, task: &str) -> Vec<JobId> {
        self.lock()
            .running
            .iter()
            .filter(|(_, r)| r.task == task)
            .map(|(id, _)| *id)
            .collect()
    }

    /// How many runners are connected.
    pub fn runners(&self) -> usize {
        self.lock().runners.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain maps behind: still usable.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queued → cancelled at once; running → a Cancel frame to its runner.
    pub async fn cancel(&self, job: JobId) -> Result<CancelOutcome, DispatchError> {
        let view = self
            .inner
            .store
            .job(job)
            .await?
            .ok_or(DispatchError::NoSuchJob(job))?;
        if view.state.is_terminal() {
            return Ok(CancelOutcome::AlreadyFinished(view.state));
        }
        let runner_tx = {
            let st = self.lock();
            st.running
                .get(&job)
                .and_then(|r| r.conn)
                .and_then(|c| st.runners.get(&c))
                .map(|r| r.tx.clone())
        };
        if let Some(tx) = runner_tx
            && tx.send(GatewayFrame::Cancel { job }).is_ok()
        {
            return Ok(CancelOutcome::Requested);
        }
        let reason = if view.state == JobState::Queued {
            "cancelled while queued"
        } else {
            "cancelled while its runner was disconnected"
        };
        match self.end_job(job, JobState::Cancelled, reason).await {
            Ok(()) => Ok(CancelOutcome::Cancelled),
            Err(StoreError::Finished { state, .. }) => Ok(CancelOutcome::AlreadyFinished(state)),
            Err(e) => Err(e.into()),
        }
    }

    async fn end_job(&self, job: JobId, state: JobState, reason: &str) -> Result<(), StoreError> {
        let result = self
            .inner
            .store
            .gateway_event(
                job,
                EventBody::Job {
                    state,
                    reason: Some(reason.to_string()),
                },
            )
            .await;
        self.lock().running.remove(&job);
        self.wake();
        result.map(|_| ())
    }

    /// Takes runners on `listener` and hands out jobs until shutdown. Jobs the store has
    /// `running` (left by a previous gateway) get [`GRACE`] to be reclaimed.
    pub async fn serve(self, listener: UnixListener) -> Result<(), StoreError> {
        if self.inner.store.is_shared() {
            // Alive before claiming anything, so nobody takes this gateway for dead.
            self.inner.store.heartbeat(&self.inner.gateway).await?;
            let me = self.clone();
            self.inner
                .tracker
                .spawn(async move { me.keep_lease().await });
        }
        self.adopt_running_jobs().await?;
        let me = self.clone();
        self.inner
            .tracker
            .spawn(async move { me.assign_loop().await });
        self.accept_runners(listener).await;
        Ok(())
    }

    /// The job no longer runs as far as the store goes (it ended elsewhere or cannot be
    /// stored): its task's slot is free, but its runner stays busy until it says the job
    /// ended.
    fn job_given_up(&self, conn: u64, job: JobId) {
        let mut st = self.lock();
        if st.running.get(&job).is_some_and(|r| r.conn == Some(conn)) {
            st.running.remove(&job);
        }
        drop(st);
        self.wake();
    }

    /// The runner said it started `job`, or sent an event of it.
    fn job_started(&self, conn: u64, job: JobId) {
        if let Some(r) = self.lock().running.get_mut(&job)
            && r.conn == Some(conn)
        {
            r.started = true;
        }
    }

    /// The job is over (its terminal event arrived): the runner is idle again.
    fn job_ended(&self, conn: u64, job: JobId) {
        let mut st = self.lock();
        if st.running.get(&job).is_some_and(|r| r.conn == Some(conn)) {
            st.running.remove(&job);
        }
        if let Some(r) = st.runners.get_mut(&conn)
            && r.job == Some(job)
        {
            r.job = None;
        }
        drop(st);
        self.wake();
    }
}
