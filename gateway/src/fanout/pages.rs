//! Shared catch-up: a job's stored events in fixed pages, read from the store once and
//! turned into frames once, for every watcher behind the ring.
//!
//! Page `k` of a job holds the events with `seq` in `(k·P, (k+1)·P]` (P =
//! [`CATCH_UP_PAGE`]): fixed boundaries, so watchers at nearby positions ask for the same
//! page whatever `after=` they joined with or wherever the ring dropped them. The first
//! watcher to ask reads it (one `read_events`, unfiltered); the others asking meanwhile
//! wait for that read instead of making their own, and later ones find it in the cache.
//! A page is cut into chunks of about [`CHUNK_BYTES`], each one frame built once; a
//! watcher takes whole chunks (refcounts), except where it stands inside one (its first
//! page after joining or falling behind), where it copies the chunk's tail: from the
//! second page on, watchers move in step with the chunks, and so share every byte.
//! Filtered watchers share frames per distinct filter, built by the first that needs it.
//!
//! A page that is not complete (the job's tail, still being written) is handed to the
//! watchers waiting for it and then forgotten: the ring holds what follows. Complete
//! pages never change, so they are cached across all jobs, least recently used evicted
//! past [`PAGE_CACHE_BYTES`]. What is alive is thus bounded whatever the number of
//! watchers or the size of the job: the cache, the reads in flight (at most the store's
//! read pool), and per watcher at most [`TAKE_CHUNKS`] chunks it is sending.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use bytes::{BufMut, BytesMut};
use shipwatch_protocol::{JobId, Stream};
use tokio::sync::OnceCell;

use super::frame::{frame_of_json, takes_fields, text};
use super::lock;
use crate::model::{CommittedEvent, EventFilter};
use crate::store::{Store, StoreError};

/// Events per catch-up page (and per store read).
pub const CATCH_UP_PAGE: u64 = 2048;
/// A chunk is closed once its frame reaches this many bytes (a single event may be more).
pub const CHUNK_BYTES: usize = 64 << 10;
/// Bytes of complete pages kept for watchers catching up, over all jobs.
pub const PAGE_CACHE_BYTES: usize = 32 << 20;
/// Chunks a watcher takes from a page at once: what it holds outside the cache.
pub const TAKE_CHUNKS: usize = 4;
/// Distinct filters whose frames one chunk remembers.
const FILTER_CACHE: usize = 8;

/// What a filter looks at in one event, and where its JSON starts in the chunk's frame.
struct Head {
    seq: u64,
    kind: &'static str,
    host: Option<Arc<str>>,
    stream: Option<Stream>,
    start: u32,
}

/// Consecutive events of a page as one frame.
pub(super) struct Chunk {
    /// `[e1,e2,…]`; event `i`'s JSON runs from its start to one byte before the next one's.
    frame: Utf8Bytes,
    heads: Vec<Head>,
    last_seq: u64,
    /// Frames per distinct filter (`None`: it takes none of the events).
    filtered: Mutex<Vec<(EventFilter, Option<Utf8Bytes>)>>,
    /// Bytes of those frames, counted against the cache.
    filtered_bytes: AtomicUsize,
}

impl Chunk {
    /// The highest seq in the chunk.
    pub(super) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    fn json(&self, i: usize) -> &[u8] {
        let frame = self.frame.as_str().as_bytes();
        let end = match self.heads.get(i + 1) {
            Some(next) => next.start as usize - 1,
            None => frame.len() - 1,
        };
        &frame[self.heads[i].start as usize..end]
    }

    /// The frame of this chunk's events after `covered` that `filter` takes, if any.
    pub(super) fn frame_after(&self, covered: u64, filter: &EventFilter) -> Option<Utf8Bytes> {
        let from = self.heads.partition_point(|h| h.seq <= covered);
        if from == 0 {
            return self.frame_for(filter);
        }
        let first = self.heads.get(from)?;
        if *filter == EventFilter::default() {
            // The tail of the whole frame is already `ek,…,en]`.
            let tail = &self.frame.as_str().as_bytes()[first.start as usize..];
            let mut buf = BytesMut::with_capacity(1 + tail.len());
            buf.put_u8(b'[');
            buf.extend_from_slice(tail);
            return Some(text(buf.freeze()));
        }
        self.build(filter, from)
    }

    fn build(&self, filter: &EventFilter, from: usize) -> Option<Utf8Bytes> {
        frame_of_json(
            (from..self.heads.len())
                .filter(|&i| {
                    let h = &self.heads[i];
                    takes_fields(filter, h.kind, h.host.as_deref(), h.stream)
                })
                .map(|i| self.json(i)),
        )
    }

    fn frame_for(&self, filter: &EventFilter) -> Option<Utf8Bytes> {
        if *filter == EventFilter::default() {
            return Some(self.frame.clone());
        }
        let mut cache = lock(&self.filtered);
        if let Some((_, f)) = cache.iter().find(|(f, _)| f == filter) {
            return f.clone();
        }
        let f = self.build(filter, 0);
        if cache.len() < FILTER_CACHE {
            let len = f.as_ref().map_or(0, |f| f.len());
            self.filtered_bytes.fetch_add(len, Ordering::Relaxed);
            cache.push((filter.clone(), f.clone()));
        }
        f
    }
}

/// One page of a job's stored events, in chunks.
pub(super) struct Page {
    chunks: Vec<Chunk>,
    /// Every stored event of the page's range up to here is in it.
    upto: u64,
    /// The page holds all its range will ever hold (it is full, or the job has ended): it
    /// never changes and may be cached.
    complete: bool,
    /// The job had ended when the page was read and `upto` is its last seq.
    ends_job: bool,
    /// The job's last committed seq as known when the page was read.
    last_seq: u64,
    bytes: usize,
    /// When a watcher last took from it (the cache's clock), for eviction.
    touched: AtomicU64,
}

impl Page {
    fn build(events: Vec<CommittedEvent>) -> (Vec<Chunk>, usize) {
        let mut chunks = Vec::new();
        let mut bytes = 0;
        let mut buf = BytesMut::new();
        let mut heads = Vec::new();
        let mut close = |buf: &mut BytesMut, heads: &mut Vec<Head>| {
            let Some(last) = heads.last() else {
                return;
            };
            let last_seq = last.seq;
            buf.put_u8(b']');
            let frame = text(std::mem::take(buf).freeze());
            bytes += frame.len() + heads.len() * size_of::<Head>() + size_of::<Chunk>();
            chunks.push(Chunk {
                frame,
                heads: std::mem::take(heads),
                last_seq,
                filtered: Mutex::new(Vec::new()),
                filtered_bytes: AtomicUsize::new(0),
            });
        };
        for e in events {
            buf.put_u8(if heads.is_empty() { b'[' } else { b',' });
            heads.push(Head {
                seq: e.seq,
                kind: e.kind,
                host: e.host,
                stream: e.stream,
                start: buf.len() as u32,
            });
            buf.extend_from_slice(&e.json);
            if buf.len() >= CHUNK_BYTES {
                close(&mut buf, &mut heads);
            }
        }
        close(&mut buf, &mut heads);
        (chunks, bytes)
    }

    /// The chunks holding events after `covered`.
    pub(super) fn chunks_after(&self, covered: u64) -> &[Chunk] {
        let from = self.chunks.partition_point(|c| c.last_seq <= covered);
        &self.chunks[from..]
    }

    /// Every stored event of the page's range with a seq up to this is in the page.
    pub(super) fn upto(&self) -> u64 {
        self.upto
    }

    /// Whether the page holds all its range will ever hold.
    pub(super) fn complete(&self) -> bool {
        self.complete
    }

    /// Whether the job had ended when the page was read and nothing follows `upto`.
    pub(super) fn ends_job(&self) -> bool {
        self.ends_job
    }

    /// The job's last committed seq as known when the page was read.
    pub(super) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    fn cost(&self) -> usize {
        self.bytes
            + self
                .chunks
                .iter()
                .map(|c| c.filtered_bytes.load(Ordering::Relaxed))
                .sum::<usize>()
    }
}

/// A page being read or read: the first watcher to ask reads it, the others wait on it.
#[derive(Default)]
struct Slot {
    page: OnceCell<Arc<Page>>,
}

/// The cache of pages, shared by every watcher of every job.
pub(super) struct Pages {
    slots: Mutex<HashMap<(JobId, u64), Arc<Slot>>>,
    budget: usize,
    clock: AtomicU64,
    reads: AtomicU64,
}

impl Pages {
    /// A cache keeping up to `budget` bytes of complete pages.
    pub(super) fn new(budget: usize) -> Pages {
        Pages {
            slots: Mutex::new(HashMap::new()),
            budget,
            clock: AtomicU64::new(0),
            reads: AtomicU64::new(0),
        }
    }

    /// Pages read from the store so far.
    pub(super) fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Bytes of the pages cached now.
    pub(super) fn cached_bytes(&self) -> usize {
        lock(&self.slots)
            .values()
            .filter_map(|s| s.page.get())
            .filter(|p| p.complete)
            .map(|p| p.cost())
            .sum()
    }

    /// The page of `job` holding the events after `covered`: cached, being read by
    /// another watcher (then waited for), or read now. `known_last`: a seq known to be
    /// committed, which spares reading the job's state when the page ends before it.
    pub(super) async fn page_after(
        &self,
        store: &Store,
        job: JobId,
        covered: u64,
        known_last: u64,
    ) -> Result<Arc<Page>, StoreError> {
        let key = (job, covered / CATCH_UP_PAGE);
        let slot = lock(&self.slots).entry(key).or_default().clone();
        let mut read_here = false;
        let page = slot
            .page
            .get_or_try_init(|| {
                read_here = true;
                self.read(store, key, known_last)
            })
            .await?
            .clone();
        page.touched.store(
            self.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        let mut slots = lock(&self.slots);
        if !page.complete {
            // The job's tail, still growing: whoever asks next reads it again.
            if slots.get(&key).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                slots.remove(&key);
            }
        } else if read_here {
            self.evict(&mut slots, key);
        }
        Ok(page)
    }

    async fn read(
        &self,
        store: &Store,
        (job, index): (JobId, u64),
        known_last: u64,
    ) -> Result<Arc<Page>, StoreError> {
        let start = index * CATCH_UP_PAGE;
        let end = start + CATCH_UP_PAGE;
        // The job's state and last seq before the events: if it had ended, this read
        // holds all; if the page is not full, it holds every event up to that seq.
        let (last_seq, ended) = if known_last >= end {
            (known_last, false)
        } else {
            let ended = store.job(job).await?.is_none_or(|j| j.state.is_terminal());
            (store.last_seq(job).await.unwrap_or(0), ended)
        };
        let mut events = store
            .read_events(job, start, &EventFilter::default(), CATCH_UP_PAGE as usize)
            .await?;
        self.reads.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(crate::metrics::WATCHER_STORE_READS_TOTAL).increment(1);
        let read_to = events.last().map_or(start, |e| e.seq);
        let full = last_seq >= end || read_to >= end;
        // Seqs are gapless, so a full page ends at `end`; cut anything past it anyway.
        events.retain(|e| e.seq <= end);
        let upto = if full {
            end
        } else {
            read_to.max(last_seq).max(start)
        };
        let (chunks, bytes) = Page::build(events);
        Ok(Arc::new(Page {
            chunks,
            upto,
            // A job's last page is as complete as a full one once the job has ended.
            complete: full || ended,
            ends_job: ended && last_seq <= upto,
            last_seq: last_seq.max(read_to),
            bytes: bytes + size_of::<Page>(),
            touched: AtomicU64::new(0),
        }))
    }

    /// Drops least recently used complete pages (never `keep`, just read) until the
    /// cache is within its budget, and slots nobody waits on that hold no page (their
    /// reader left or failed).
    fn evict(&self, slots: &mut HashMap<(JobId, u64), Arc<Slot>>, keep: (JobId, u64)) {
        let mut cached: Vec<(u64, usize, (JobId, u64))> = slots
            .iter()
            .filter(|(k, _)| **k != keep)
            .filter_map(|(k, s)| {
                let p = s.page.get().filter(|p| p.complete)?;
                Some((p.touched.load(Ordering::Relaxed), p.cost(), *k))
            })
            .collect();
        let kept = slots
            .get(&keep)
            .and_then(|s| s.page.get())
            .map_or(0, |p| p.cost());
        let mut total = kept + cached.iter().map(|c| c.1).sum::<usize>();
        if total > self.budget {
            cached.sort_unstable_by_key(|c| c.0);
            for (_, cost, key) in cached {
                if total <= self.budget {
                    break;
                }
                slots.remove(&key);
                total -= cost;
            }
        }
        slots.retain(|_, s| s.page.initialized() || Arc::strong_count(s) > 1);
    }
}
