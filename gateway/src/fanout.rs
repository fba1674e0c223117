//! The fan-out (DESIGN §6): the store's writer hands every committed batch to the [`Hub`],
//! which gives each watcher of that job a refcount on shared bytes through a bounded
//! queue, never blocking and never copying per watcher.
//!
//! A watcher whose queue is full is marked lagging and gets nothing more from the hub; its
//! own task ([`Watch`]) then reads from the store after the last `seq` it covered until it
//! reaches the live seam, and rejoins live, dropping queued events it already has. Joining
//! with `after=N` is the same catch-up, starting at N. So a slow watcher costs its queue
//! and nothing else, and never misses or repeats an event.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{BufMut, Bytes, BytesMut};
use shipwatch_protocol::JobId;
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::model::{CommittedBatch, CommittedEvent, EventFilter, JobView};
use crate::store::{Publisher, Store, StoreError};

/// Batches a watcher may have queued before it is switched to reading from the store.
pub const QUEUE_BATCHES: usize = 64;
/// Events per store read while replaying or catching up.
pub const PAGE_EVENTS: usize = 4096;
/// `/ws/jobs` messages a job-list watcher may fall behind before it is closed with 4008.
pub const LIST_QUEUE: usize = 1024;
/// Distinct filters whose frames one publish call remembers.
const FILTER_CACHE: usize = 16;

/// WebSocket close codes the fan-out ends a watch with.
pub mod close {
    /// The job ended and every event was sent.
    pub const DONE: u16 = 1000;
    /// The gateway is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// The watcher could not be kept up to date; reconnect with `after=` the last seq.
    pub const LAGGING: u16 = 4008;
}

/// What a watch hands its socket next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// One text frame: a JSON array of events in `seq` order.
    Frame(Bytes),
    /// Close the socket with this code and reason; nothing follows.
    Close(u16, &'static str),
}

/// One watcher as the hub sees it.
struct Slot {
    id: u64,
    filter: EventFilter,
    /// No filter: takes the batch's shared frame as is.
    takes_all: bool,
    tx: mpsc::Sender<Delivery>,
    /// Set when the queue overflowed (or before the first replay): the hub skips this
    /// watcher until its task has caught up from the store and clears the flag.
    lagging: AtomicBool,
    /// Wakes the watcher's task when it was marked lagging.
    wake: Notify,
}

/// One batch for one watcher: the batch and the frame its filter makes of it (`None`
/// when the filter takes none of the events).
struct Delivery {
    batch: Arc<CommittedBatch>,
    frame: Option<Bytes>,
}

/// The fan-out: implements [`Publisher`] for the store's writer and hands out [`Watch`]es.
pub struct Hub {
    jobs: Mutex<HashMap<JobId, Vec<Arc<Slot>>>>,
    list: broadcast::Sender<Bytes>,
    shutdown: CancellationToken,
    next_id: AtomicU64,
    watchers: AtomicU64,
    lagging: AtomicU64,
    overflows: AtomicU64,
}

impl Hub {
    /// A hub whose watches all close with 1001 once `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken) -> Arc<Hub> {
        Arc::new(Hub {
            jobs: Mutex::new(HashMap::new()),
            list: broadcast::channel(LIST_QUEUE).0,
            shutdown,
            next_id: AtomicU64::new(1),
            watchers: AtomicU64::new(0),
            lagging: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
        })
    }

    /// Watchers of single jobs now connected.
    pub fn watchers(&self) -> u64 {
        self.watchers.load(Ordering::Relaxed)
    }

    /// Watchers now reading from the store instead of live (including initial replays).
    pub fn lagging(&self) -> u64 {
        self.lagging.load(Ordering::Relaxed)
    }

    /// How many times a watcher's queue overflowed and it was switched to the store.
    pub fn overflows(&self) -> u64 {
        self.overflows.load(Ordering::Relaxed)
    }

    /// Starts watching `job` for events after `after` that `filter` takes. The watch is
    /// registered before it replays, so nothing committed meanwhile can be missed.
    pub fn watch(
        self: &Arc<Self>,
        store: Store,
        job: JobId,
        after: u64,
        filter: EventFilter,
    ) -> Watch {
        let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
        let takes_all = filter == EventFilter::default();
        let slot = Arc::new(Slot {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            filter,
            takes_all,
            tx,
            lagging: AtomicBool::new(true),
            wake: Notify::new(),
        });
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(job)
            .or_default()
            .push(slot.clone());
        self.watchers.fetch_add(1, Ordering::Relaxed);
        self.lagging.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("shipwatch_watchers").increment(1.0);
        metrics::gauge!("shipwatch_watchers_lagging").increment(1.0);
        Watch {
            hub: self.clone(),
            store,
            job,
            slot,
            rx,
            covered: after,
            phase: Phase::CatchUp { seam: false },
            ready: VecDeque::new(),
        }
    }

    /// Job-list changes for `/ws/jobs`: each message is one `{"kind":"job",…}` object.
    pub fn watch_jobs(&self) -> broadcast::Receiver<Bytes> {
        self.list.subscribe()
    }

    /// Cancelled when the gateway shuts down.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    fn forget(&self, job: JobId, id: u64) {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slots) = jobs.get_mut(&job) {
            slots.retain(|s| s.id != id);
            if slots.is_empty() {
                jobs.remove(&job);
            }
        }
    }

    fn set_lagging(&self, delta: i64) {
        if delta > 0 {
            self.lagging.fetch_add(1, Ordering::Relaxed);
            metrics::gauge!("shipwatch_watchers_lagging").increment(1.0);
        } else {
            self.lagging.fetch_sub(1, Ordering::Relaxed);
            metrics::gauge!("shipwatch_watchers_lagging").decrement(1.0);
        }
    }
}

impl Publisher for Hub {
    fn publish(&self, batch: Arc<CommittedBatch>) {
        metrics::counter!("shipwatch_events_total").increment(batch.events.len() as u64);
        let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(slots) = jobs.get(&batch.job) else {
            return;
        };
        // Watchers sharing a filter share its frame: built once per publish.
        let mut frames: Vec<(&EventFilter, Option<Bytes>)> = Vec::new();
        for slot in slots {
            if slot.lagging.load(Ordering::SeqCst) {
                continue;
            }
            let frame = if slot.takes_all {
                Some(batch.frame.clone())
            } else if let Some((_, f)) = frames.iter().find(|(f, _)| **f == slot.filter) {
                f.clone()
            } else {
                let f = frame_of(batch.events.iter().filter(|e| takes(&slot.filter, e)));
                if frames.len() < FILTER_CACHE {
                    frames.push((&slot.filter, f.clone()));
                }
                f
            };
            let delivery = Delivery {
                batch: batch.clone(),
                frame,
            };
            if let Err(mpsc::error::TrySendError::Full(_)) = slot.tx.try_send(delivery) {
                // Never wait for a watcher: it catches up from the store on its own task.
                slot.lagging.store(true, Ordering::SeqCst);
                self.set_lagging(1);
                self.overflows.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("shipwatch_watcher_overflows_total").increment(1);
                slot.wake.notify_one();
            }
        }
    }

    fn job_changed(&self, job: &JobView) {
        if self.list.receiver_count() == 0 {
            return;
        }
        match job_list_message(job) {
            Ok(msg) => {
                let _ = self.list.send(msg);
            }
            Err(error) => tracing::warn!(%error, job = job.id, "cannot encode a job change"),
        }
    }
}

/// The `/ws/jobs` message for a job: the job as `GET /api/jobs` lists it (no hosts, no
/// spec), with `"kind":"job"` first.
pub fn job_list_message(job: &JobView) -> Result<Bytes, serde_json::Error> {
    #[derive(serde::Serialize)]
    struct Msg<'a> {
        kind: &'static str,
        #[serde(flatten)]
        job: &'a JobView,
    }
    let mut listed = job.clone();
    listed.hosts = None;
    listed.spec = None;
    serde_json::to_vec(&Msg {
        kind: "job",
        job: &listed,
    })
    .map(Bytes::from)
}

enum Phase {
    /// Reading from the store after `covered`. `seam`: the hub has been told to deliver
    /// again, so the read that reaches the end of the store joins live.
    CatchUp {
        seam: bool,
    },
    Live,
    /// The job has ended and everything was sent.
    Ended,
}

/// One watcher's view of one job: replay, catch-up and live, with no gap and no duplicate.
pub struct Watch {
    hub: Arc<Hub>,
    store: Store,
    job: JobId,
    slot: Arc<Slot>,
    rx: mpsc::Receiver<Delivery>,
    /// Every event with `seq <= covered` that the filter takes was handed out.
    covered: u64,
    phase: Phase,
    ready: VecDeque<Outgoing>,
}

impl Watch {
    /// The job watched.
    pub fn job(&self) -> JobId {
        self.job
    }

    /// The highest `seq` handed out or known to be filtered out.
    pub fn covered(&self) -> u64 {
        self.covered
    }

    /// The next thing to send; after a [`Outgoing::Close`] it returns `None`.
    pub async fn next(&mut self) -> Option<Outgoing> {
        loop {
            if let Some(out) = self.ready.pop_front() {
                return Some(out);
            }
            match self.phase {
                Phase::Ended => return None,
                Phase::CatchUp { seam } => {
                    if let Err(error) = self.catch_up(seam).await {
                        tracing::warn!(%error, job = self.job, "watcher cannot read the store");
                        self.end(close::LAGGING, "store unavailable; reconnect with after=");
                    }
                }
                Phase::Live => self.live().await,
            }
        }
    }

    async fn catch_up(&mut self, seam: bool) -> Result<(), StoreError> {
        if self.hub.shutdown.is_cancelled() {
            self.end(close::GOING_AWAY, "gateway shutting down");
            return Ok(());
        }
        // Read the job's state before the events: if it had ended, this read holds all.
        let ended = if seam {
            self.store
                .job(self.job)
                .await?
                .is_none_or(|j| j.state.is_terminal())
        } else {
            false
        };
        let page = self
            .store
            .read_events(self.job, self.covered, &self.slot.filter, PAGE_EVENTS)
            .await?;
        let full = page.len() == PAGE_EVENTS;
        if let Some(last) = page.last() {
            self.covered = last.seq;
        }
        if let Some(frame) = frame_of(page.iter()) {
            self.ready.push_back(Outgoing::Frame(frame));
        }
        if full {
            return Ok(());
        }
        if !seam {
            // At the end of the store: ask the hub to deliver again, then read once more
            // for whatever was committed before it did; live events already read are
            // dropped by seq.
            self.slot.lagging.store(false, Ordering::SeqCst);
            self.hub.set_lagging(-1);
            self.phase = Phase::CatchUp { seam: true };
        } else if ended {
            self.end(close::DONE, "job ended");
        } else {
            self.phase = Phase::Live;
        }
        Ok(())
    }

    async fn live(&mut self) {
        if self.slot.lagging.load(Ordering::SeqCst) {
            // What is queued is older than what the store holds now: read that instead.
            while self.rx.try_recv().is_ok() {}
            self.phase = Phase::CatchUp { seam: false };
            return;
        }
        let delivery = tokio::select! {
            biased;
            () = self.hub.shutdown.cancelled() => {
                self.end(close::GOING_AWAY, "gateway shutting down");
                return;
            }
            () = self.slot.wake.notified() => return,
            d = self.rx.recv() => d,
        };
        let Some(d) = delivery else {
            // The hub never drops a registered sender; treat it as shutdown.
            self.end(close::GOING_AWAY, "gateway shutting down");
            return;
        };
        self.deliver(d);
        // Drain what else is queued so the socket can write it all and flush once.
        while !self.slot.lagging.load(Ordering::SeqCst)
            && matches!(self.phase, Phase::Live)
            && let Ok(d) = self.rx.try_recv()
        {
            self.deliver(d);
        }
    }

    fn deliver(&mut self, d: Delivery) {
        let (Some(first), Some(last)) = (d.batch.events.first(), d.batch.events.last()) else {
            return;
        };
        if last.seq > self.covered {
            let frame = if first.seq > self.covered {
                d.frame
            } else {
                // Straddles the seam: keep only what the store read did not cover.
                let covered = self.covered;
                frame_of(
                    d.batch
                        .events
                        .iter()
                        .filter(|e| e.seq > covered && takes(&self.slot.filter, e)),
                )
            };
            self.covered = last.seq;
            if let Some(frame) = frame {
                self.ready.push_back(Outgoing::Frame(frame));
            }
        }
        if d.batch.job_state.is_terminal() {
            self.end(close::DONE, "job ended");
        }
    }

    fn end(&mut self, code: u16, reason: &'static str) {
        self.ready.push_back(Outgoing::Close(code, reason));
        self.phase = Phase::Ended;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.hub.forget(self.job, self.slot.id);
        self.hub.watchers.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("shipwatch_watchers").decrement(1.0);
        if self.slot.lagging.load(Ordering::SeqCst) {
            self.hub.set_lagging(-1);
        }
    }
}

/// Whether `filter` takes `e`; events without a host or stream pass those filters (a job
/// event concerns every host).
pub fn takes(filter: &EventFilter, e: &CommittedEvent) -> bool {
    if let Some(kinds) = &filter.kinds
        && !kinds.iter().any(|k| k == e.kind)
    {
        return false;
    }
    if let (Some(hosts), Some(h)) = (&filter.hosts, &e.host)
        && !hosts.iter().any(|x| x.as_str() == &**h)
    {
        return false;
    }
    if let (Some(streams), Some(s)) = (&filter.streams, e.stream)
        && !streams.contains(&s)
    {
        return false;
    }
    true
}

/// `[e1,e2,…]` from the events' JSON, or `None` when there are none.
pub fn frame_of<'a>(events: impl Iterator<Item = &'a CommittedEvent>) -> Option<Bytes> {
    let mut buf = BytesMut::new();
    for e in events {
        buf.put_u8(if buf.is_empty() { b'[' } else { b',' });
        buf.extend_from_slice(&e.json);
    }
    if buf.is_empty() {
        return None;
    }
    buf.put_u8(b']');
    Some(buf.freeze())
}
