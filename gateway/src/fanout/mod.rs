//! The fan-out (DESIGN §6): the store's writer hands every committed batch to the [`Hub`],
//! which appends it to its job's shared ring of recent batches and wakes that job's
//! watchers once; each watcher takes what is new from the ring (a refcount, never a copy)
//! on its own task.
//!
//! The ring is bounded in bytes per job, whatever the number of watchers: a watcher the
//! ring has moved past is marked lagging and catches up from the store after the last
//! `seq` it covered until it reaches the ring again, then carries on from there, dropping
//! what it already has. Joining with `after=N` is the same catch-up, starting at N.
//!
//! Catch-up is shared (`pages`): the store is read in pages of fixed seq ranges, each read
//! once and turned into frames once, then handed to every watcher that needs it, whether
//! they wait for the same read or come later to the cache. A thousand watchers behind the
//! ring on one big job cost one read of each page and one frame per chunk of it, not a
//! thousand; what they hold is bounded (the page cache, and a few chunks each) whatever
//! their number or the job's size. A watcher never misses or repeats an event: it covers
//! a page's seq range up to what the read saw, and takes from the ring only past that.
//!
//! Modules: `watcher` (one watcher: catch-up, then live), `pages` (the shared catch-up),
//! `frame` (frames and filters).

mod frame;
mod pages;
mod watcher;

pub use frame::{frame_of, takes};
pub use pages::{CATCH_UP_PAGE, CHUNK_BYTES, PAGE_CACHE_BYTES, TAKE_CHUNKS};
pub use watcher::Watch;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use shipwatch_protocol::JobId;
use shipwatch_protocol::Report;
use shipwatch_protocol::api::JobView;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::model::{CommittedBatch, CommittedEvent, EventFilter};
use crate::store::{Publisher, Store};
use frame::text;
use pages::Pages;

/// Bytes of recent batches each watched job keeps for its watchers (shared by all of them),
/// counting each batch's frame, its events' JSON and their bookkeeping.
pub const RING_BYTES: usize = 32 << 20;
/// Batches a watcher takes from the ring at once: what it holds outside the ring.
pub const TAKE_BATCHES: usize = 16;
/// Events per store read of the log route (`GET /api/jobs/{id}/log`).
pub const PAGE_EVENTS: usize = 4096;
/// `/ws/jobs` messages a job-list watcher may fall behind before it is closed with 4008.
pub const LIST_QUEUE: usize = 1024;
/// Distinct filters whose frames one ring entry remembers.
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
    /// One text frame: a JSON array of events in `seq` order. Checked as UTF-8 once where
    /// it was built; each watcher sending it clones a refcount.
    Frame(Utf8Bytes),
    /// Close the socket with this code and reason; nothing follows.
    Close(u16, &'static str),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One watcher as the hub sees it.
struct WatcherProgress {
    id: u64,
    /// Every event with `seq <= taken` was taken from the ring or read from the store.
    taken: AtomicU64,
    /// Set before the first replay and when the ring moved past `taken`; cleared when the
    /// watcher rejoins the ring. For the gauges only: the watcher finds gaps itself.
    lagging: AtomicBool,
}

/// One committed batch in a job's ring, with the frames filters made of it.
struct Entry {
    batch: Arc<CommittedBatch>,
    /// The batch's events in frames of about [`CHUNK_BYTES`], for watchers without a
    /// filter: a socket holds a copy of the frame it is writing, so a thousand slow
    /// watchers of 1,000-line batches held ~200 KB each.
    frames: Vec<Utf8Bytes>,
    last_seq: u64,
    cost: usize,
    /// Frames per distinct filter (`None`: the filter takes none of the events), built by
    /// the first watcher with that filter and shared by the others.
    filtered: Mutex<Vec<(EventFilter, Option<Utf8Bytes>)>>,
}

impl Entry {
    /// The frames of a filter that takes some events but not necessarily all.
    fn frame_for(&self, filter: &EventFilter) -> Option<Utf8Bytes> {
        let mut cache = lock(&self.filtered);
        if let Some((_, f)) = cache.iter().find(|(f, _)| f == filter) {
            return f.clone();
        }
        let f = frame_of(self.batch.events.iter().filter(|e| takes(filter, e)));
        if cache.len() < FILTER_CACHE {
            cache.push((filter.clone(), f.clone()));
        }
        f
    }
}

#[derive(Default)]
struct Ring {
    entries: VecDeque<Arc<Entry>>,
    bytes: usize,
    /// The ring holds every event with a higher seq that was published (`None` until the
    /// first publish): a watcher that has not covered up to here must read from the store.
    start: Option<u64>,
    /// A batch that ended the job was published.
    ended: bool,
    watchers: Vec<Arc<WatcherProgress>>,
}

/// A watched job: its ring and the signal that wakes its watchers.
struct Feed {
    ring: Mutex<Ring>,
    /// The last seq published; every watcher waiting live wakes when it changes.
    published: watch::Sender<u64>,
}

/// The fan-out: implements [`Publisher`] for the store's writer and hands out [`Watch`]es.
pub struct Hub {
    jobs: Mutex<HashMap<JobId, Arc<Feed>>>,
    list: broadcast::Sender<Bytes>,
    shutdown: CancellationToken,
    ring_bytes: usize,
    next_id: AtomicU64,
    watchers: AtomicU64,
    lagging: AtomicU64,
    overflows: AtomicU64,
    /// Complete pages of stored events, shared by every watcher catching up.
    pages: Pages,
}

impl Hub {
    /// A hub whose watches all close with 1001 once `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken) -> Arc<Hub> {
        Hub::with_ring_bytes(shutdown, RING_BYTES)
    }

    /// A hub keeping `ring_bytes` of recent batches per watched job (tests use a small
    /// ring to force catch-ups from the store).
    pub fn with_ring_bytes(shutdown: CancellationToken, ring_bytes: usize) -> Arc<Hub> {
        Hub::with_sizes(shutdown, ring_bytes, PAGE_CACHE_BYTES)
    }

    /// A hub keeping `ring_bytes` of recent batches per watched job and `page_cache_bytes`
    /// of stored pages for catch-ups over all jobs (tests shrink both).
    pub fn with_sizes(
        shutdown: CancellationToken,
        ring_bytes: usize,
        page_cache_bytes: usize,
    ) -> Arc<Hub> {
        Arc::new(Hub {
            jobs: Mutex::new(HashMap::new()),
            list: broadcast::channel(LIST_QUEUE).0,
            shutdown,
            ring_bytes,
            next_id: AtomicU64::new(1),
            watchers: AtomicU64::new(0),
            lagging: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
            pages: Pages::new(page_cache_bytes),
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

    /// How many times the ring moved past a live watcher, switching it to the store.
    pub fn overflows(&self) -> u64 {
        self.overflows.load(Ordering::Relaxed)
    }

    /// Pages of events read from the store for catch-ups so far (each shared by every
    /// watcher that needed it).
    pub fn store_reads(&self) -> u64 {
        self.pages.reads()
    }

    /// Bytes of stored pages cached for catch-ups now.
    pub fn page_cache_bytes(&self) -> usize {
        self.pages.cached_bytes()
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
        let progress = Arc::new(WatcherProgress {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            taken: AtomicU64::new(after),
            lagging: AtomicBool::new(true),
        });
        let feed = {
            let mut jobs = lock(&self.jobs);
            let feed = jobs
                .entry(job)
                .or_insert_with(|| {
                    Arc::new(Feed {
                        ring: Mutex::default(),
                        published: watch::Sender::new(0),
                    })
                })
                .clone();
            lock(&feed.ring).watchers.push(progress.clone());
            feed
        };
        self.watchers.fetch_add(1, Ordering::Relaxed);
        self.lagging.fetch_add(1, Ordering::Relaxed);
        Watch {
            hub: self.clone(),
            store,
            job,
            published: feed.published.subscribe(),
            feed,
            progress,
            filter,
            covered: after,
            known_last: 0,
            phase: watcher::Phase::CatchUp,
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
        let mut jobs = lock(&self.jobs);
        if let Some(feed) = jobs.get(&job) {
            let mut ring = lock(&feed.ring);
            ring.watchers.retain(|s| s.id != id);
            if ring.watchers.is_empty() {
                drop(ring);
                jobs.remove(&job);
            }
        }
    }

    /// Marks `progress` lagging unless it already is; `overflow`: the ring moved past it.
    fn mark_lagging(&self, progress: &WatcherProgress, overflow: bool) {
        if !progress.lagging.swap(true, Ordering::SeqCst) {
            self.lagging.fetch_add(1, Ordering::Relaxed);
            if overflow {
                self.overflows.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(crate::metrics::WATCHER_OVERFLOWS_TOTAL).increment(1);
            }
        }
    }

    fn clear_lagging(&self, progress: &WatcherProgress) {
        if progress.lagging.swap(false, Ordering::SeqCst) {
            self.lagging.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Publisher for Hub {
    fn publish(&self, batch: Arc<CommittedBatch>) {
        metrics::counter!(crate::metrics::EVENTS_TOTAL).increment(batch.events.len() as u64);
        let Some(feed) = lock(&self.jobs).get(&batch.job).cloned() else {
            return;
        };
        let (Some(first_seq), Some(last_seq)) = (
            batch.events.first().map(|e| e.seq),
            batch.events.last().map(|e| e.seq),
        ) else {
            return;
        };
        let frames = split_frames(&batch);
        let split_bytes = match frames.as_slice() {
            [_] => 0,
            many => many.iter().map(|f| f.len()).sum(),
        };
        let cost = 2 * batch.frame.len()
            + split_bytes
            + batch.events.len() * (size_of::<CommittedEvent>() + 16)
            + size_of::<CommittedBatch>()
            + size_of::<Entry>();
        {
            let mut ring = lock(&feed.ring);
            // Batches of a job are published in seq order, gapless, so from its first one
            // the ring holds everything after its start.
            ring.start.get_or_insert(first_seq - 1);
            ring.ended |= batch.job_state.is_terminal();
            ring.entries.push_back(Arc::new(Entry {
                frames,
                batch,
                last_seq,
                cost,
                filtered: Mutex::new(Vec::new()),
            }));
            ring.bytes += cost;
            let mut evicted = false;
            while ring.bytes > self.ring_bytes && ring.entries.len() > 1 {
                if let Some(old) = ring.entries.pop_front() {
                    ring.bytes -= old.cost;
                    ring.start = Some(old.last_seq);
                    evicted = true;
                }
            }
            if evicted {
                let start = ring.start.unwrap_or(0);
                for progress in &ring.watchers {
                    if progress.taken.load(Ordering::SeqCst) < start {
                        self.mark_lagging(progress, true);
                    }
                }
            }
        }
        // One signal for every watcher of the job, whatever their number.
        feed.published.send_replace(last_seq);
    }

    fn job_changed(&self, job: &JobView) {
        if self.list.receiver_count() == 0 {
            return;
        }
        match job_list_message(job) {
            Ok(msg) => {
                let _ = self.list.send(msg);
            }
            Err(error) => {
                tracing::warn!(error = %Report(&error), job = job.id, "cannot encode a job change")
            }
        }
    }
}

/// The batch's frame, or for a batch of more than [`CHUNK_BYTES`], its events in frames
/// of about that size.
fn split_frames(batch: &CommittedBatch) -> Vec<Utf8Bytes> {
    if batch.frame.len() <= CHUNK_BYTES {
        return vec![text(batch.frame.clone())];
    }
    let mut frames = Vec::new();
    let mut from = 0;
    let mut bytes = 0;
    for (i, e) in batch.events.iter().enumerate() {
        bytes += e.json.len() + 1;
        if bytes >= CHUNK_BYTES || i + 1 == batch.events.len() {
            frames.extend(frame::frame_of_json(
                batch.events[from..=i].iter().map(|e| &e.json[..]),
            ));
            from = i + 1;
            bytes = 0;
        }
    }
    frames
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
