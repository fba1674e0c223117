//! One watcher's view of one job: catch-up from shared pages, then live from the ring.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use shipwatch_protocol::{JobId, Report};
use tokio::sync::watch;

use super::frame::{frame_of, takes};
use super::pages::TAKE_CHUNKS;
use super::{Entry, Feed, Hub, Outgoing, TAKE_BATCHES, WatcherProgress, close, lock};
use crate::model::EventFilter;
use crate::store::{Store, StoreError};

pub(super) enum Phase {
    /// Reading shared pages of the store after `covered`.
    CatchUp,
    /// Taking batches from the ring.
    Live,
    /// The job has ended and everything was sent.
    Ended,
}

/// One watcher's view of one job: replay, catch-up and live, with no gap and no duplicate.
pub struct Watch {
    pub(super) hub: Arc<Hub>,
    pub(super) store: Store,
    pub(super) job: JobId,
    pub(super) feed: Arc<Feed>,
    pub(super) published: watch::Receiver<u64>,
    pub(super) progress: Arc<WatcherProgress>,
    pub(super) filter: EventFilter,
    /// Every event with `seq <= covered` that the filter takes was handed out.
    pub(super) covered: u64,
    /// A seq known to be committed (published, or seen in the store).
    pub(super) known_last: u64,
    pub(super) phase: Phase,
    pub(super) ready: VecDeque<Outgoing>,
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
                Phase::CatchUp => {
                    if let Err(error) = self.catch_up_from_store().await {
                        tracing::warn!(error = %Report(&error), job = self.job, "watcher cannot read the store");
                        self.end(close::LAGGING, "store unavailable; reconnect with after=");
                    }
                }
                Phase::Live => self.live().await,
            }
        }
    }

    /// Everything queued now, without waiting: what a socket can write before it flushes.
    pub fn try_next(&mut self) -> Option<Outgoing> {
        self.ready.pop_front()
    }

    /// Takes up to [`TAKE_CHUNKS`] frames after `covered` from the shared page holding
    /// them; moves on to live once the page is the job's tail or the ring has the rest.
    async fn catch_up_from_store(&mut self) -> Result<(), StoreError> {
        if self.hub.shutdown.is_cancelled() {
            self.end(close::GOING_AWAY, "gateway shutting down");
            return Ok(());
        }
        if self.in_ring() {
            // Everything after `covered` is in the ring or yet to be published: no need
            // to read the store (a burst, or a watcher joining a job being watched).
            self.go_live();
            return Ok(());
        }
        let known_last = self.known_last.max(*self.published.borrow());
        let page = self
            .hub
            .pages
            .page_after(&self.store, self.job, self.covered, known_last)
            .await?;
        self.known_last = known_last.max(page.last_seq());
        let mut taken = 0;
        for chunk in page.chunks_after(self.covered) {
            if taken == TAKE_CHUNKS {
                // The rest of the page on the next call, once these are sent.
                self.progress.taken.store(self.covered, Ordering::SeqCst);
                return Ok(());
            }
            if let Some(frame) = chunk.frame_after(self.covered, &self.filter) {
                self.ready.push_back(Outgoing::Frame(frame));
                taken += 1;
            }
            self.covered = chunk.last_seq();
        }
        // Filtered-out events up to `upto` are covered too.
        self.covered = self.covered.max(page.upto());
        self.progress.taken.store(self.covered, Ordering::SeqCst);
        if page.ends_job() {
            self.end(close::DONE, "job ended");
        } else if !page.complete() {
            // The job's tail: the ring holds everything published since this read, or
            // (if it moved on meanwhile) Live finds out and comes back here; whatever
            // this read also got is dropped by seq.
            self.go_live();
        }
        Ok(())
    }

    fn go_live(&mut self) {
        self.phase = Phase::Live;
        self.hub.clear_lagging(&self.progress);
    }

    /// Whether the ring holds every event after `covered` published so far.
    fn in_ring(&self) -> bool {
        lock(&self.feed.ring)
            .start
            .is_some_and(|start| start <= self.covered)
    }

    async fn live(&mut self) {
        loop {
            // Seen before looking, so a publish after the look wakes us.
            self.published.borrow_and_update();
            let taken: Vec<Arc<Entry>> = {
                let ring = lock(&self.feed.ring);
                if ring.start.is_some_and(|start| start > self.covered) {
                    drop(ring);
                    // The ring moved past us: read the rest from the store.
                    self.hub.mark_lagging(&self.progress, true);
                    self.phase = Phase::CatchUp;
                    return;
                }
                let from = ring.entries.partition_point(|e| e.last_seq <= self.covered);
                let taken = ring
                    .entries
                    .range(from..)
                    .take(TAKE_BATCHES)
                    .cloned()
                    .collect::<Vec<_>>();
                if taken.is_empty() && ring.ended {
                    // It ended at or before `after`: nothing more will come.
                    drop(ring);
                    self.end(close::DONE, "job ended");
                    return;
                }
                taken
            };
            if let Some(last) = taken.last() {
                self.progress.taken.store(last.last_seq, Ordering::SeqCst);
                for e in taken {
                    self.deliver(&e);
                    if matches!(self.phase, Phase::Ended) {
                        break;
                    }
                }
                return;
            }
            tokio::select! {
                biased;
                () = self.hub.shutdown.cancelled() => {
                    self.end(close::GOING_AWAY, "gateway shutting down");
                    return;
                }
                changed = self.published.changed() => {
                    if changed.is_err() {
                        // The feed lives as long as this watch; treat it as shutdown.
                        self.end(close::GOING_AWAY, "gateway shutting down");
                        return;
                    }
                }
            }
        }
    }

    fn deliver(&mut self, entry: &Entry) {
        let batch = &entry.batch;
        let Some(first) = batch.events.first() else {
            return;
        };
        if entry.last_seq > self.covered {
            let frame = if first.seq > self.covered {
                if self.filter == EventFilter::default() {
                    self.ready
                        .extend(entry.frames.iter().cloned().map(Outgoing::Frame));
                    None
                } else {
                    entry.frame_for(&self.filter)
                }
            } else {
                // Straddles the seam: keep only what the store read did not cover.
                let covered = self.covered;
                frame_of(
                    batch
                        .events
                        .iter()
                        .filter(|e| e.seq > covered && takes(&self.filter, e)),
                )
            };
            self.covered = entry.last_seq;
            if let Some(frame) = frame {
                self.ready.push_back(Outgoing::Frame(frame));
            }
        }
        if batch.job_state.is_terminal() {
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
        self.hub.forget(self.job, self.progress.id);
        self.hub.watchers.fetch_sub(1, Ordering::Relaxed);
        self.hub.clear_lagging(&self.progress);
    }
}
