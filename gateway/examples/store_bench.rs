//! Store micro-benchmark: commits N lines through the writer as a runner would send them
//! (frames of 1,000 events, several in flight), then replays them as a late joiner would.
//!
//! `cargo run --release -p shipwatch-gateway --example store_bench [lines]`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use shipwatch_gateway::model::{CommittedBatch, EventFilter};
use shipwatch_gateway::store::{Publisher, Store, StoreLimits};
use shipwatch_protocol::api::JobView;
use shipwatch_protocol::{EventBody, JobSpec, RunnerEvent, Stream, Timestamp};

/// Counts what the fan-out would receive.
#[derive(Default)]
struct Count(AtomicU64);

impl Publisher for Count {
    fn publish(&self, batch: Arc<CommittedBatch>) {
        self.0
            .fetch_add(batch.events.len() as u64, Ordering::Relaxed);
    }
    fn job_changed(&self, _job: &JobView) {}
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lines: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let counter = Arc::new(Count::default());
    let store = Store::open(
        dir.path(),
        StoreLimits {
            max_log_bytes: u64::MAX,
            retention_days: 30,
        },
        counter.clone(),
    )?;
    let hosts: Vec<String> = (1..=20).map(|i| format!("web-{i:02}")).collect();
    let spec = JobSpec::local("bench", "", &hosts);
    let job = store.create_job(spec, BTreeMap::new(), "bench").await?.id;

    let start = Instant::now();
    let mut in_flight = std::collections::VecDeque::new();
    let mut rseq = 0;
    while rseq < lines {
        let n = 1_000.min(lines - rseq);
        let events = (0..n)
            .map(|i| {
                rseq += 1;
                RunnerEvent {
                    rseq,
                    ts: Timestamp::now(),
                    body: EventBody::Line {
                        host: hosts[(i / 50) as usize % hosts.len()].clone(),
                        stream: Stream::Stdout,
                        text: format!("line {rseq} of the deploy log, some typical output here"),
                    },
                }
            })
            .collect();
        in_flight.push_back(store.submit(job, events));
        if in_flight.len() >= 8
            && let Some(f) = in_flight.pop_front()
        {
            f.await?;
        }
    }
    for f in in_flight {
        f.await?;
    }
    let commit = start.elapsed();
    println!(
        "commit  {lines} lines in {:.3} s = {:.0} lines/s (published {})",
        commit.as_secs_f64(),
        lines as f64 / commit.as_secs_f64(),
        counter.0.load(Ordering::Relaxed)
    );

    let start = Instant::now();
    let mut after = 0;
    let mut total = 0;
    loop {
        let page = store
            .read_events(job, after, &EventFilter::default(), 100_000)
            .await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        total += page.len();
    }
    let replay = start.elapsed();
    println!(
        "replay  {total} events in {:.3} s = {:.0} events/s",
        replay.as_secs_f64(),
        total as f64 / replay.as_secs_f64()
    );
    Ok(())
}
