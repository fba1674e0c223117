//! The runner's conversation with the gateway over `<run_dir>/runners.sock`.
//!
//! The job runs independently of the connection: its events go into an outbox that keeps
//! each one until the gateway acks it, and a reconnect resends every unacked event (the
//! gateway drops duplicates by `rseq`). The outbox is bounded: once full, the job's event
//! channel stops being read, the host readers block, and the scripts block on write.
//!
//! An assigned job starts only once its [`RunnerFrame::Started`] is written to the socket,
//! and is dropped unstarted if the connection ends first: so the gateway, having read a
//! connection to its end without a Started, knows nothing ran and queues the job again.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use shipwatch_protocol::{
    EventBody, FrameError, GatewayFrame, JobId, JobSpec, PROTOCOL_VERSION, Report, RunnerEvent,
    RunnerFrame,
};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{Decoder, Encoder, Framed};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::host::HostContext;
use crate::output::Pending;

/// How a runner talks to the gateway.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `<run_dir>/runners.sock`.
    pub socket: PathBuf,
    /// The runner's `--index`.
    pub index: u32,
    pub hosts: HostContext,
    /// Unacked event bytes (roughly) held before the hosts' pipes stop being read.
    pub max_buffer_bytes: usize,
    pub heartbeat: Duration,
    /// A connection on which the gateway sent nothing (not even a heartbeat) this long is
    /// dropped and redialled: a wedged gateway must not hold the job's events hostage.
    pub silence: Duration,
    /// After SIGTERM: how long to wait for the cancelled job's last events to be acked.
    pub stop_timeout: Duration,
}

/// Events per frame; keeps frames far below `MAX_FRAME_BYTES` (lines are ≤ 64 KiB).
const EVENTS_PER_FRAME: usize = 1024;
const BYTES_PER_FRAME: usize = 1 << 20;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Why the client stopped.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("gateway refused runner {index}: {reason}")]
    Refused { index: u32, reason: String },
}

struct Running {
    job: JobId,
    cancel: CancellationToken,
    rx: Option<mpsc::Receiver<Vec<Pending>>>,
    handle: Option<tokio::task::JoinHandle<()>>,
    next_rseq: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        // A job nobody reads from any more (the runner is leaving) must stop its hosts.
        self.cancel.cancel();
    }
}

/// An assigned job waiting for its Started frame to be written.
struct Starting {
    job: JobId,
    spec: JobSpec,
    written: oneshot::Receiver<()>,
}

/// A frame for the writer, and who wants to know once it is flushed to the socket.
type Outgoing = (RunnerFrame, Option<oneshot::Sender<()>>);

struct Outbox {
    events: VecDeque<(JobId, RunnerEvent)>,
    bytes: usize,
    /// How many of `events` went out on the current connection.
    sent: usize,
}

fn cost(event: &RunnerEvent) -> usize {
    64 + match &event.body {
        EventBody::Line { text, host, .. } => text.len() + host.len(),
        _ => 64,
    }
}

impl Outbox {
    fn push(&mut self, job: JobId, event: RunnerEvent) {
        self.bytes += cost(&event);
        self.events.push_back((job, event));
    }

    fn ack(&mut self, job: JobId, rseq: u64) {
        while let Some((j, e)) = self.events.front() {
            if *j != job || e.rseq > rseq {
                break;
            }
            self.bytes -= cost(e);
            self.events.pop_front();
            self.sent = self.sent.saturating_sub(1);
        }
    }
}

/// Runs the runner's protocol loop until `shutdown` (SIGTERM: cancel the job, wait for its
/// last events to be acked within the stop timeout) or `drain` (SIGUSR2: finish the job,
/// take no new one) ends it. `codec` makes one codec per connection.
pub async fn serve<C, F>(
    cfg: ClientConfig,
    codec: F,
    shutdown: CancellationToken,
    drain: CancellationToken,
) -> Result<(), ClientError>
where
    F: Fn() -> C,
    C: Decoder<Item = GatewayFrame, Error = FrameError>
        + Encoder<RunnerFrame, Error = FrameError>
        + Send
        + 'static,
{
    let tasks = TaskTracker::new();
    let result = serve_with(cfg, codec, shutdown, drain, &tasks).await;
    // Leaving the loop dropped the job (which cancels it) and the connection (which
    // aborts its writer): what is left ends within moments.
    tasks.close();
    if tokio::time::timeout(TASKS_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("the cancelled job's hosts did not end in time; exiting anyway");
    }
    result
}

/// How long [`serve`] waits for its job and writer tasks once its loop has ended.
const TASKS_GRACE: Duration = Duration::from_secs(3);

async fn serve_with<C, F>(
    cfg: ClientConfig,
    codec: F,
    shutdown: CancellationToken,
    drain: CancellationToken,
    tasks: &TaskTracker,
) -> Result<(), ClientError>
where
    F: Fn() -> C,
    C: Decoder<Item = GatewayFrame, Error = FrameError>
        + Encoder<RunnerFrame, Error = FrameError>
        + Send
        + 'static,
{
    let mut conn: Option<Conn<C>> = None;
    // Frames other than events waiting for the writer (heartbeat, draining).
    let mut control: VecDeque<Outgoing> = VecDeque::new();
    let mut backoff = BACKOFF_MIN;
    let mut retry_at = tokio::time::Instant::now();
    let mut outbox = Outbox {
        events: VecDeque::new(),
        bytes: 0,
        sent: 0,
    };
    let mut running: Option<Running> = None;
    let mut starting: Option<Starting> = None;
    let mut draining = false;
    let mut stop_at: Option<tokio::time::Instant> = None;
    let mut heartbeat = tokio::time::interval(cfg.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = tokio::time::Instant::now();

    loop {
        if conn.is_none()
            && let Some(s) = starting.take()
        {
            tracing::warn!(
                job = s.job,
                "lost the gateway before starting the job; not running it"
            );
            control.retain(|(f, _)| !matches!(f, RunnerFrame::Started { .. }));
        }
        let idle = running.is_none() && starting.is_none();
        if idle && outbox.events.is_empty() && (draining || stop_at.is_some()) {
            tracing::info!(index = cfg.index, "runner idle, exiting");
            return Ok(());
        }
        if let Some(at) = stop_at
            && tokio::time::Instant::now() >= at
        {
            tracing::warn!(
                index = cfg.index,
                unacked = outbox.events.len(),
                "stop timeout: exiting with unacked events"
            );
            return Ok(());
        }

        // Writes go through the connection's writer task, so this loop keeps reading acks
        // while the socket is full (the gateway may be blocked writing acks to us).
        let sender = conn.as_ref().map(|c| c.tx.clone());
        let unsent = outbox.sent < outbox.events.len() || !control.is_empty();

        let room = outbox.bytes < cfg.max_buffer_bytes;
        tokio::select! {
            _ = tokio::time::sleep_until(retry_at), if conn.is_none() => {
                let job = running.as_ref().map(|r| r.job).or(outbox.events.front().map(|(j, _)| *j));
                match connect(&cfg, &codec, job, draining || stop_at.is_some()).await {
                    Ok(Some(c)) => {
                        tracing::info!(index = cfg.index, job, unacked = outbox.events.len(), "connected to the gateway");
                        conn = Some(Conn::new(c, tasks));
                        last_heard = tokio::time::Instant::now();
                        outbox.sent = 0;
                        backoff = BACKOFF_MIN;
                    }
                    Ok(None) => {
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        retry_at = tokio::time::Instant::now() + backoff;
                    }
                    Err(reason) => return Err(ClientError::Refused { index: cfg.index, reason }),
                }
            }
            frame = next_frame(&mut conn) => match frame.inspect(|_| last_heard = tokio::time::Instant::now()) {
                Some(GatewayFrame::Assign { job, spec }) => {
                    if running.is_some() || starting.is_some() {
                        tracing::warn!(job, "assigned a job while busy; ignoring it");
                    } else {
                        let (tx, written) = oneshot::channel();
                        control.push_front((RunnerFrame::Started { job }, Some(tx)));
                        starting = Some(Starting { job, spec: *spec, written });
                    }
                }
                Some(GatewayFrame::Ack { job, rseq }) => outbox.ack(job, rseq),
                Some(GatewayFrame::Cancel { job }) => {
                    if let Some(r) = running.as_ref().filter(|r| r.job == job) {
                        tracing::info!(job, "cancel requested");
                        r.cancel.cancel();
                    }
                }
                Some(GatewayFrame::Heartbeat | GatewayFrame::Welcome { .. }) => {}
                Some(GatewayFrame::Refused { reason, .. }) => {
                    return Err(ClientError::Refused { index: cfg.index, reason });
                }
                None => {
                    tracing::warn!(index = cfg.index, "gateway connection closed; reconnecting");
                    conn = None;
                    control.clear();
                    retry_at = tokio::time::Instant::now() + BACKOFF_MIN;
                }
            },
            written = starting_written(&mut starting) => {
                let Some(s) = starting.take() else { continue };
                if written.is_err() {
                    // The writer is gone with its connection; the loop's top notices.
                    continue;
                }
                // Assigned as we began to drain or stop (the gateway had not read our
                // Draining yet): the gateway now counts it as running here, so ignoring it
                // would leave it to be lost. Draining, run it; stopping, end it at once as
                // cancelled.
                let cancel = CancellationToken::new();
                if stop_at.is_some() {
                    // Cancelled before the job's task exists, so no host can begin: they
                    // are all skipped (cancelling after the spawn raced the first wave).
                    tracing::info!(job = s.job, "assigned while stopping: cancelling it");
                    cancel.cancel();
                }
                running = Some(start_job(s.job, s.spec, &cfg.hosts, tasks, cancel));
            }
            batch = next_batch(&mut running), if room => match batch {
                Some(batch) => {
                    let Some(r) = running.as_mut() else { continue };
                    for (ts, body) in batch {
                        let rseq = r.next_rseq;
                        r.next_rseq += 1;
                        outbox.push(r.job, RunnerEvent { rseq, ts, body });
                    }
                    // Take whatever else is ready so frames carry many events.
                    while outbox.bytes < cfg.max_buffer_bytes {
                        let Some(rx) = r.rx.as_mut() else { break };
                        let Ok(batch) = rx.try_recv() else { break };
                        for (ts, body) in batch {
                            let rseq = r.next_rseq;
                            r.next_rseq += 1;
                            outbox.push(r.job, RunnerEvent { rseq, ts, body });
                        }
                    }
                }
                None => {
                    // Every sender is gone: the job sent its last event.
                    if let Some(mut r) = running.take()
                        && let Some(handle) = r.handle.take()
                    {
                        let _ = handle.await;
                    }
                }
            },
            permit = reserve(sender), if unsent => match permit {
                Some(permit) => {
                    if let Some(outgoing) = control.pop_front() {
                        permit.send(outgoing);
                    } else {
                        let (frame, n) = next_events_frame(&outbox);
                        permit.send((frame, None));
                        outbox.sent += n;
                    }
                }
                None => {
                    tracing::warn!(index = cfg.index, "lost the gateway while sending; reconnecting");
                    conn = None;
                    retry_at = tokio::time::Instant::now() + backoff;
                }
            },
            _ = tokio::time::sleep_until(last_heard + cfg.silence), if conn.is_some() => {
                tracing::warn!(
                    index = cfg.index,
                    silent_secs = cfg.silence.as_secs(),
                    "gateway silent too long; reconnecting"
                );
                conn = None;
                control.clear();
                retry_at = tokio::time::Instant::now() + BACKOFF_MIN;
            }
            _ = heartbeat.tick(), if conn.is_some() => {
                if control.is_empty() {
                    control.push_back((RunnerFrame::Heartbeat, None));
                }
            }
            _ = shutdown.cancelled(), if stop_at.is_none() => {
                stop_at = Some(tokio::time::Instant::now() + cfg.stop_timeout);
                if let Some(r) = running.as_ref() {
                    tracing::info!(index = cfg.index, job = r.job, "stopping: cancelling the running job");
                    r.cancel.cancel();
                }
                // A job waiting for its Started is cancelled as soon as it starts.
                // Before the cancelled job's last events: the gateway must not hand this
                // runner the next queued job, which it would ignore and leave running.
                if conn.is_some() && !draining {
                    control.push_back((RunnerFrame::Draining, None));
                }
            }
            _ = drain.cancelled(), if !draining => {
                tracing::info!(index = cfg.index, "draining: finishing the current job, taking no new one");
                draining = true;
                if conn.is_some() {
                    control.push_back((RunnerFrame::Draining, None));
                }
            }
            _ = async { match stop_at { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } } => {
                // The loop's top sees the deadline passed and exits.
            }
        }
    }
}

fn start_job(
    job: JobId,
    spec: JobSpec,
    hosts: &HostContext,
    tasks: &TaskTracker,
    cancel: CancellationToken,
) -> Running {
    tracing::info!(job, task = %spec.task, hosts = spec.hosts.len(), "job assigned");
    // Small: backpressure reaches the pipes soon after the outbox stops taking events.
    let (tx, rx) = mpsc::channel(32);
    let token = cancel.clone();
    let ctx = hosts.clone();
    let handle = tasks.spawn(async move {
        crate::job::run_job(job, &spec, &ctx, tx, token).await;
    });
    Running {
        job,
        cancel,
        rx: Some(rx),
        handle: Some(handle),
        next_rseq: 1,
    }
}

async fn starting_written(
    starting: &mut Option<Starting>,
) -> Result<(), oneshot::error::RecvError> {
    match starting.as_mut() {
        Some(s) => (&mut s.written).await,
        None => std::future::pending().await,
    }
}

async fn next_batch(running: &mut Option<Running>) -> Option<Vec<Pending>> {
    match running.as_mut().and_then(|r| r.rx.as_mut()) {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// One connection: frames are read here, written by a task that owns the sink.
struct Conn<C> {
    frames: futures_util::stream::SplitStream<Framed<UnixStream, C>>,
    tx: mpsc::Sender<Outgoing>,
    writer: tokio::task::JoinHandle<()>,
}

impl<C> Conn<C>
where
    C: Decoder<Item = GatewayFrame, Error = FrameError>
        + Encoder<RunnerFrame, Error = FrameError>
        + Send
        + 'static,
{
    fn new(framed: Framed<UnixStream, C>, tasks: &TaskTracker) -> Conn<C> {
        let (mut sink, frames) = framed.split();
        let (tx, mut rx) = mpsc::channel::<Outgoing>(4);
        let writer = tasks.spawn(async move {
            let mut flushed = Vec::new();
            while let Some((frame, done)) = rx.recv().await {
                if sink.feed(frame).await.is_err() {
                    return;
                }
                flushed.extend(done);
                while let Ok((frame, done)) = rx.try_recv() {
                    if sink.feed(frame).await.is_err() {
                        return;
                    }
                    flushed.extend(done);
                }
                if sink.flush().await.is_err() {
                    return;
                }
                for done in flushed.drain(..) {
                    let _ = done.send(());
                }
            }
        });
        Conn { frames, tx, writer }
    }
}

impl<C> Drop for Conn<C> {
    fn drop(&mut self) {
        // Its connection is gone; whatever it still holds is resent on the next one.
        self.writer.abort();
    }
}

async fn reserve(sender: Option<mpsc::Sender<Outgoing>>) -> Option<mpsc::OwnedPermit<Outgoing>> {
    match sender {
        Some(tx) => tx.reserve_owned().await.ok(),
        None => std::future::pending().await,
    }
}

async fn next_frame<C>(conn: &mut Option<Conn<C>>) -> Option<GatewayFrame>
where
    C: Decoder<Item = GatewayFrame, Error = FrameError>,
{
    let Some(c) = conn.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        match c.frames.next().await {
            Some(Ok(frame)) => return Some(frame),
            // The codec consumed it; the stream is still in sync.
            Some(Err(FrameError::Malformed(error))) => {
                tracing::warn!(error = %Report(&error), "skipping a malformed frame from the gateway");
            }
            Some(Err(error)) => {
                tracing::warn!(error = %Report(&error), "bad frame from the gateway");
                return None;
            }
            None => return None,
        }
    }
}

/// Connects and says hello. `Ok(None)`: the gateway is not there (retry later);
/// `Err`: it refused us.
async fn connect<C, F>(
    cfg: &ClientConfig,
    codec: &F,
    job: Option<JobId>,
    draining: bool,
) -> Result<Option<Framed<UnixStream, C>>, String>
where
    F: Fn() -> C,
    C: Decoder<Item = GatewayFrame, Error = FrameError> + Encoder<RunnerFrame, Error = FrameError>,
{
    let Ok(stream) = UnixStream::connect(&cfg.socket).await else {
        return Ok(None);
    };
    let mut framed = Framed::new(stream, codec());
    let hello = RunnerFrame::Hello {
        version: PROTOCOL_VERSION,
        runner: cfg.index,
        pid: std::process::id(),
        job,
        draining,
    };
    if framed.send(hello).await.is_err() {
        return Ok(None);
    }
    match tokio::time::timeout(Duration::from_secs(10), framed.next()).await {
        Ok(Some(Ok(GatewayFrame::Welcome { .. }))) => Ok(Some(framed)),
        Ok(Some(Ok(GatewayFrame::Refused { reason, .. }))) => Err(reason),
        Ok(Some(Ok(other))) => {
            tracing::warn!(?other, "gateway did not answer the hello with a welcome");
            Ok(None)
        }
        _ => Ok(None),
    }
}

/// The next frame of unsent events (one job, bounded size) and how many it holds.
fn next_events_frame(outbox: &Outbox) -> (RunnerFrame, usize) {
    let start = outbox.sent;
    let job = outbox
        .events
        .get(start)
        .map(|(j, _)| *j)
        .unwrap_or_default();
    let mut events = Vec::new();
    let mut bytes = 0;
    while let Some((j, e)) = outbox.events.get(start + events.len()) {
        if *j != job || events.len() >= EVENTS_PER_FRAME || bytes >= BYTES_PER_FRAME {
            break;
        }
        bytes += cost(e);
        events.push(e.clone());
    }
    let n = events.len();
    (RunnerFrame::Events { job, events }, n)
}
