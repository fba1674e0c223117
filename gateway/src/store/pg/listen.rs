//! Other gateways' commits, as this gateway's watchers see them (DESIGN §11): every
//! commit announces itself on [`CHANNEL`] (`LISTEN/NOTIFY`: a wake-up only, the table is
//! the truth), and a thread of each gateway reads what others committed from the table
//! and publishes it to this gateway's fan-out as its own writer would.
//!
//! [`Sequencer`] stands in front of the fan-out for both paths (this gateway's writer,
//! the listener), so each job's batches reach it in `seq` order without a gap or a
//! repeat, whoever committed them: a batch that repeats what was published is trimmed, a
//! batch past a gap waits for the listener to read the gap from the table.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, IsolationLevel, NoTls};
use shipwatch_protocol::api::JobView;
use shipwatch_protocol::{JobId, Report};
use tokio::sync::Notify;

use super::read;
use super::write::CHANNEL;
use crate::model::{CommittedBatch, EventFilter};
use crate::store::Publisher;
use crate::store::writer::committed_batch;

/// How long the listener waits for a notification before it looks at its other work.
const POLL: Duration = Duration::from_millis(200);
/// How long a finished job's last `seq` is remembered, against late notifications.
const KEEP_ENDED: Duration = Duration::from_secs(600);
/// Events read from the table at once.
const PAGE: usize = 4096;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What each job's watchers on this gateway were given last.
#[derive(Default)]
struct Published {
    last_seq: HashMap<JobId, u64>,
    ended: HashMap<JobId, Instant>,
    /// Jobs whose batch came past a gap: the listener reads the gap.
    gaps: Vec<JobId>,
}

/// The fan-out, seen through a per-job high-water mark.
pub(in crate::store) struct Sequencer {
    inner: Arc<dyn Publisher>,
    published: Mutex<Published>,
}

impl Sequencer {
    pub(in crate::store) fn new(inner: Arc<dyn Publisher>) -> Sequencer {
        Sequencer {
            inner,
            published: Mutex::new(Published::default()),
        }
    }

    /// The last `seq` published of `job`, if any was.
    fn last_seq(&self, job: JobId) -> Option<u64> {
        lock(&self.published).last_seq.get(&job).copied()
    }

    fn take_gaps(&self) -> Vec<JobId> {
        std::mem::take(&mut lock(&self.published).gaps)
    }

    /// Jobs still going whose events were published here: after a reconnect the listener
    /// reads what it may have missed.
    fn followed(&self) -> Vec<(JobId, u64)> {
        let p = lock(&self.published);
        p.last_seq
            .iter()
            .filter(|(job, _)| !p.ended.contains_key(job))
            .map(|(&job, &seq)| (job, seq))
            .collect()
    }

    fn forget_ended(&self) {
        let mut p = lock(&self.published);
        let old: Vec<JobId> = p
            .ended
            .iter()
            .filter(|(_, at)| at.elapsed() > KEEP_ENDED)
            .map(|(&job, _)| job)
            .collect();
        for job in old {
            p.ended.remove(&job);
            p.last_seq.remove(&job);
        }
    }
}

impl Publisher for Sequencer {
    fn publish(&self, batch: Arc<CommittedBatch>) {
        let (Some(first), Some(last)) = (
            batch.events.first().map(|e| e.seq),
            batch.events.last().map(|e| e.seq),
        ) else {
            return;
        };
        let job = batch.job;
        // Held while the fan-out takes the batch, so batches of a job reach it in order.
        let mut p = lock(&self.published);
        let batch = match p.last_seq.get(&job).copied() {
            Some(seen) if last <= seen => return,
            Some(seen) if first <= seen => {
                let rest = batch
                    .events
                    .iter()
                    .filter(|e| e.seq > seen)
                    .cloned()
                    .collect();
                Arc::new(committed_batch(job, rest, batch.job_state))
            }
            Some(seen) if first > seen + 1 => {
                if !p.gaps.contains(&job) {
                    p.gaps.push(job);
                }
                return;
            }
            _ => batch,
        };
        p.last_seq.insert(job, last);
        if batch.job_state.is_terminal() {
            p.ended.insert(job, Instant::now());
        }
        self.inner.publish(batch);
    }

    fn job_changed(&self, job: &JobView) {
        self.inner.job_changed(job);
    }
}

/// What the listener thread needs; it runs until `stop` is set.
pub(in crate::store) struct Listener {
    pub config: postgres::Config,
    pub sequencer: Arc<Sequencer>,
    /// The writer's server process: its notifications were published already.
    pub writer_pid: Arc<AtomicI32>,
    /// Woken when another gateway queued or ended a job.
    pub queue: Arc<Notify>,
    pub stop: Arc<AtomicBool>,
}

impl Listener {
    pub(in crate::store) fn spawn(self) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("store-pg-listen".into())
            .spawn(move || self.run())
            .map(drop)
    }

    fn run(self) {
        let mut down_since: Option<Instant> = None;
        while !self.stop.load(Ordering::Relaxed) {
            let mut client = match self.connect() {
                Ok(client) => client,
                Err(error) => {
                    if down_since.is_none() {
                        tracing::warn!(error = %Report(&error), "store cannot listen to PostgreSQL; retrying");
                        down_since = Some(Instant::now());
                    }
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            if down_since.take().is_some() {
                tracing::info!("store listens to PostgreSQL again");
            }
            // What came while nobody listened: read on from what was published.
            self.queue.notify_one();
            for (job, seq) in self.sequencer.followed() {
                self.catch_up(&mut client, job, seq);
            }
            if let Err(error) = self.follow(&mut client) {
                tracing::warn!(error = %Report(&error), "store lost its PostgreSQL listener; reconnecting");
                down_since = Some(Instant::now());
            }
        }
    }

    fn connect(&self) -> Result<Client, postgres::Error> {
        let mut client = self.config.connect(NoTls)?;
        client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
        Ok(client)
    }

    /// Takes notifications until the connection fails or the store is dropped.
    fn follow(&self, client: &mut Client) -> Result<(), postgres::Error> {
        let mut last_prune = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let mut news = Vec::new();
            {
                let mut notes = client.notifications();
                let mut iter = notes.timeout_iter(POLL);
                while let Some(note) = iter.next()? {
                    if note.process_id() != self.writer_pid.load(Ordering::Relaxed) {
                        news.push(note.payload().to_owned());
                    }
                    if news.len() >= 256 {
                        break;
                    }
                }
            }
            let mut changed = Vec::new();
            for payload in &news {
                for line in payload.lines() {
                    let mut words = line.split(' ');
                    match (words.next(), words.next(), words.next()) {
                        (Some("e"), Some(job), Some(first)) => {
                            if let (Ok(job), Ok(first)) = (job.parse(), first.parse::<u64>()) {
                                let after = self
                                    .sequencer
                                    .last_seq(job)
                                    .unwrap_or(first.saturating_sub(1));
                                self.catch_up(client, job, after);
                            }
                        }
                        (Some("j"), Some(job), _) => {
                            if let Ok(job) = job.parse::<JobId>()
                                && !changed.contains(&job)
                            {
                                changed.push(job);
                            }
                        }
                        (Some("q"), _, _) => self.queue.notify_one(),
                        _ => {}
                    }
                }
            }
            for job in changed {
                match read::job(client, job, false) {
                    Ok(Some(view)) => self.sequencer.job_changed(&view),
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(job, error = %Report(&error), "cannot read a job another gateway changed")
                    }
                }
            }
            for job in self.sequencer.take_gaps() {
                let after = self.sequencer.last_seq(job).unwrap_or(0);
                self.catch_up(client, job, after);
            }
            if last_prune.elapsed() > KEEP_ENDED {
                self.sequencer.forget_ended();
                last_prune = Instant::now();
            }
            if client.is_closed() {
                // The next connection reads on from what was published.
                return Ok(());
            }
        }
        Ok(())
    }

    /// Publishes `job`'s committed events after `after`, in pages, each with the job's
    /// state as of the same snapshot.
    fn catch_up(&self, client: &mut Client, job: JobId, mut after: u64) {
        loop {
            let page = (|| {
                let mut tx = client
                    .build_transaction()
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()?;
                let state = tx
                    .query_opt("SELECT state FROM jobs WHERE id = $1", &[&(job as i64)])?
                    .map(|r| read::parse_state(r.get(0)));
                let events = read::events(&mut tx, job, after, &EventFilter::default(), PAGE)?;
                tx.commit()?;
                Ok::<_, crate::store::StoreError>((state, events))
            })();
            match page {
                Ok((Some(state), events)) if !events.is_empty() => {
                    let full = events.len() == PAGE;
                    after = events.last().map_or(after, |e| e.seq);
                    let state = if full {
                        shipwatch_protocol::JobState::Running
                    } else {
                        state
                    };
                    self.sequencer
                        .publish(Arc::new(committed_batch(job, events, state)));
                    if !full {
                        return;
                    }
                }
                Ok(_) => return,
                Err(error) => {
                    tracing::warn!(job, error = %Report(&error), "cannot read another gateway's events");
                    return;
                }
            }
        }
    }
}
