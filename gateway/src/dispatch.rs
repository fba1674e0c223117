//! The runner socket server and the job queue (DESIGN §1): runners say hello, idle ones
//! get the oldest queued job their task's `concurrency` allows, their events are committed
//! and acked, and a job whose runner is gone past [`GRACE`] becomes `lost`. A job its
//! runner never said it started ([`RunnerFrame::Started`], or any event of it) before
//! the connection ended goes back to the queue instead, once: nothing of it ran.
//!
//! The queue itself is the store's `queued` jobs, so a job created over HTTP only needs a
//! [`Dispatcher::wake`], and a gateway restart loses nothing. Jobs left `running` by a dead
//! gateway wait [`GRACE`] for their runner to reclaim them. When a job ends by `lost` or
//! failure to store, the store marks its running hosts `cancelled` and pending ones
//! `skipped`; a runner that comes back with a job already finished gets a Cancel.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt, StreamExt};
use shipwatch_config::Config;
use shipwatch_protocol::Report;
use shipwatch_protocol::api::Counts;
use shipwatch_protocol::{
    EventBody, GatewayCodec, GatewayFrame, JobId, JobState, PROTOCOL_VERSION, RunnerFrame,
};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::{Store, StoreError};

/// How long a job waits for its runner to reconnect before it is `lost`.
pub const GRACE: Duration = Duration::from_secs(10);
/// How often each side sends a heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// A runner connection silent this long is dropped.
pub const SILENCE: Duration = Duration::from_secs(30);
/// Event frames of one runner committed but not yet acked, at most; then reading pauses.
const IN_FLIGHT: usize = 64;

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

/// How a runner's connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnectionEnd {
    /// The runner closed it and every frame it wrote was read.
    Eof,
    /// Dropped by us (silence, a bad frame, a failed write, shutdown): frames the runner
    /// wrote may be unread.
    Dropped,
}

/// The runner closed its end with frames of ours unread: Linux reports ECONNRESET, but
/// only once everything the runner wrote has been read, so this is an end like EOF.
fn peer_closed(error: &shipwatch_protocol::FrameError) -> bool {
    matches!(error, shipwatch_protocol::FrameError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
}

/// What an orphaned job's grace ends in when no runner took it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// `lost`: something of it may have run.
    Lost,
    /// Queued again (once) when nothing says it started; else `lost`.
    RequeueIfUnstarted,
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
        Dispatcher {
            inner: Arc::new(Inner {
                store,
                config,
                wake: Notify::new(),
                state: Mutex::new(State::default()),
                tracker,
                shutdown,
                grace,
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
        for job in self.inner.store.jobs_in_state(&[JobState::Running]).await? {
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
        let me = self.clone();
        self.inner
            .tracker
            .spawn(async move { me.assign_loop().await });
        let shutdown = self.inner.shutdown.clone();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let me = self.clone();
                        self.inner.tracker.spawn(async move { me.connection(stream).await });
                    }
                    Err(error) => {
                        tracing::warn!(error = %Report(&error), "cannot accept a runner connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    }

    fn start_grace(&self, job: JobId, epoch: u64, reason: String, expiry: Expiry) {
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

    async fn assign_loop(self) {
        loop {
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = self.inner.wake.notified() => {}
            }
            if let Err(error) = self.assign_some().await {
                tracing::error!(error = %Report(&error), "cannot read the job queue");
            }
        }
    }

    /// Hands queued jobs, oldest first, to idle runners while the tasks' limits allow.
    async fn assign_some(&self) -> Result<(), StoreError> {
        if !self
            .lock()
            .runners
            .values()
            .any(|r| r.job.is_none() && !r.draining)
        {
            return Ok(());
        }
        let queued = self.inner.store.jobs_in_state(&[JobState::Queued]).await?;
        for job in queued {
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
                    continue;
                }
                let Some((&conn, runner)) = st
                    .runners
                    .iter_mut()
                    .filter(|(_, r)| r.job.is_none() && !r.draining)
                    .min_by_key(|(c, _)| **c)
                else {
                    return Ok(());
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
                    continue;
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
        Ok(())
    }

    async fn connection(self, stream: UnixStream) {
        let mut framed = Framed::new(stream, GatewayCodec::new());
        let hello = tokio::select! {
            _ = self.inner.shutdown.cancelled() => return,
            first = tokio::time::timeout(SILENCE, framed.next()) => first,
        };
        let (index, reclaim, draining) = match hello {
            Ok(Some(Ok(RunnerFrame::Hello {
                version,
                runner,
                job,
                draining,
                ..
            }))) if version == PROTOCOL_VERSION => (runner, job, draining),
            Ok(Some(Ok(RunnerFrame::Hello { version, .. }))) => {
                let reason = format!(
                    "this gateway speaks runner protocol version {PROTOCOL_VERSION} and the \
                     runner speaks version {version}: the binaries differ; restart the whole \
                     system with one shipwatch binary (`shipwatch up` starts gateway and \
                     runners from the same file)"
                );
                tracing::warn!(%reason, "runner refused");
                let _ = framed
                    .send(GatewayFrame::Refused {
                        version: PROTOCOL_VERSION,
                        reason,
                    })
                    .await;
                return;
            }
            Ok(Some(Ok(_))) => {
                let _ = framed
                    .send(GatewayFrame::Refused {
                        version: PROTOCOL_VERSION,
                        reason: format!(
                            "the first frame must be a hello with protocol version \
                             {PROTOCOL_VERSION}"
                        ),
                    })
                    .await;
                return;
            }
            Ok(Some(Err(error))) => {
                let _ = framed
                    .send(GatewayFrame::Refused {
                        version: PROTOCOL_VERSION,
                        reason: format!(
                            "unreadable hello ({}); this gateway speaks runner protocol \
                             version {PROTOCOL_VERSION}",
                            Report(&error)
                        ),
                    })
                    .await;
                return;
            }
            Ok(None) | Err(_) => return,
        };
        if framed
            .send(GatewayFrame::Welcome {
                version: PROTOCOL_VERSION,
            })
            .await
            .is_err()
        {
            return;
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        let conn = {
            let mut st = self.lock();
            st.next_conn += 1;
            let conn = st.next_conn;
            st.runners.insert(
                conn,
                Runner {
                    index,
                    tx: tx.clone(),
                    job: None,
                    draining,
                },
            );
            conn
        };
        tracing::info!(runner = index, job = reclaim, "runner connected");
        if let Some(job) = reclaim {
            self.reclaim(conn, job, &tx);
        }
        self.wake();
        let ended = self.serve_runner(conn, index, &mut framed, &mut rx).await;
        // Gone: its job waits for it to come back.
        let orphan = {
            let mut st = self.lock();
            let job = st.runners.remove(&conn).and_then(|r| r.job);
            job.and_then(|job| {
                let r = st.running.get_mut(&job)?;
                if r.conn != Some(conn) {
                    return None;
                }
                r.conn = None;
                Some((job, r.epoch, r.started))
            })
        };
        tracing::info!(runner = index, "runner disconnected");
        if self.inner.shutdown.is_cancelled() {
            return;
        }
        // Read to its end, the connection holds every frame the runner wrote; the runner
        // starts nothing before its Started frame is written, so none means nothing ran.
        if let Some((job, _, false)) = orphan
            && ended == ConnectionEnd::Eof
        {
            self.requeue_unstarted(
                job,
                &format!("runner-{index} disconnected before starting it"),
            )
            .await;
            return;
        }
        if let Some((job, epoch, _)) = orphan {
            self.start_grace(
                job,
                epoch,
                format!(
                    "runner-{index} disconnected and did not come back within {} s",
                    self.inner.grace.as_secs()
                ),
                // A connection we dropped may hold an unread Started frame.
                Expiry::Lost,
            );
        }
    }

    /// Puts a job its runner never started back in the queue, or makes it `lost` when it
    /// was put back once already.
    async fn requeue_unstarted(&self, job: JobId, why: &str) {
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

    /// A reconnecting runner takes its job back, or is told to stop it if it ended.
    fn reclaim(&self, conn: u64, job: JobId, tx: &mpsc::UnboundedSender<GatewayFrame>) {
        let mut st = self.lock();
        let taken = match st.running.get_mut(&job) {
            Some(r) => {
                r.conn = Some(conn);
                r.epoch += 1;
                r.started = true;
                true
            }
            None => false,
        };
        if taken {
            if let Some(r) = st.runners.get_mut(&conn) {
                r.job = Some(job);
            }
            tracing::info!(job, "runner reclaimed its job");
        } else {
            // The job ended (lost, cancelled) while the runner was away: stop it. Its
            // resent events are acked and dropped when they arrive; the runner is busy
            // until the job's last one does.
            if let Some(r) = st.runners.get_mut(&conn) {
                r.job = Some(job);
            }
            let _ = tx.send(GatewayFrame::Cancel { job });
        }
    }

    async fn serve_runner(
        &self,
        conn: u64,
        index: u32,
        framed: &mut Framed<UnixStream, GatewayCodec>,
        rx: &mut mpsc::UnboundedReceiver<GatewayFrame>,
    ) -> ConnectionEnd {
        let mut acks = FuturesOrdered::new();
        let mut beat = tokio::time::interval(HEARTBEAT);
        let mut last_heard = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return ConnectionEnd::Dropped,
                _ = beat.tick() => {
                    if last_heard.elapsed() > SILENCE {
                        tracing::warn!(runner = index, "runner silent too long, dropping it");
                        return ConnectionEnd::Dropped;
                    }
                    if framed.send(GatewayFrame::Heartbeat).await.is_err() {
                        return self.after_write_error(conn, framed).await;
                    }
                }
                Some(frame) = rx.recv() => {
                    if framed.send(frame).await.is_err() {
                        return self.after_write_error(conn, framed).await;
                    }
                }
                Some((job, last_rseq, ends, result)) = acks.next(), if !acks.is_empty() => {
                    let (ends, result): (bool, Result<u64, StoreError>) = (ends, result);
                    let rseq = match result {
                        Ok(rseq) => rseq,
                        // Finished elsewhere (lost, cancelled), or the store failed and
                        // fails the job: the runner forgets these events and stops the
                        // job. It stays busy until the job's last event arrives, so it is
                        // not handed a job it would ignore while still stopping this one.
                        Err(error) => {
                            if !matches!(error, StoreError::Finished { .. } | StoreError::NoSuchJob(_)) {
                                tracing::error!(job, error = %Report(&error), "cannot store a runner's events");
                            }
                            self.job_given_up(conn, job);
                            if !ends {
                                let _ = framed.feed(GatewayFrame::Cancel { job }).await;
                            }
                            last_rseq
                        }
                    };
                    if framed.send(GatewayFrame::Ack { job, rseq }).await.is_err() {
                        return self.after_write_error(conn, framed).await;
                    }
                    if ends {
                        self.job_ended(conn, job);
                    }
                }
                frame = framed.next(), if acks.len() < IN_FLIGHT => {
                    last_heard = tokio::time::Instant::now();
                    match frame {
                        None => return ConnectionEnd::Eof,
                        Some(Err(error)) if peer_closed(&error) => return ConnectionEnd::Eof,
                        Some(Err(error)) => {
                            tracing::warn!(runner = index, error = %Report(&error), "bad frame from runner");
                            return ConnectionEnd::Dropped;
                        }
                        Some(Ok(RunnerFrame::Started { job })) => self.job_started(conn, job),
                        Some(Ok(RunnerFrame::Events { job, events })) => {
                            self.job_started(conn, job);
                            let last_rseq = events.last().map_or(0, |e| e.rseq);
                            let ends = events.iter().any(|e| matches!(
                                e.body,
                                EventBody::Job { state, .. } if state.is_terminal()
                            ));
                            let fut = self.inner.store.submit(job, events);
                            acks.push_back(async move { (job, last_rseq, ends, fut.await) });
                        }
                        Some(Ok(RunnerFrame::Draining)) => {
                            tracing::info!(runner = index, "runner draining");
                            if let Some(r) = self.lock().runners.get_mut(&conn) {
                                r.draining = true;
                            }
                        }
                        Some(Ok(RunnerFrame::Heartbeat)) => {}
                        Some(Ok(RunnerFrame::Hello { .. })) => {
                            tracing::warn!(runner = index, "second hello from runner, dropping it");
                            return ConnectionEnd::Dropped;
                        }
                    }
                }
            }
        }
    }

    /// A write failed (the runner closed its end, typically): what it wrote before is
    /// still readable, and tells whether it started its job.
    async fn after_write_error(
        &self,
        conn: u64,
        framed: &mut Framed<UnixStream, GatewayCodec>,
    ) -> ConnectionEnd {
        let until = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            match tokio::time::timeout_at(until, framed.next()).await {
                Ok(None) => return ConnectionEnd::Eof,
                Ok(Some(Err(error))) if peer_closed(&error) => return ConnectionEnd::Eof,
                Ok(Some(Ok(RunnerFrame::Started { job } | RunnerFrame::Events { job, .. }))) => {
                    self.job_started(conn, job)
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) | Err(_) => return ConnectionEnd::Dropped,
            }
        }
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
