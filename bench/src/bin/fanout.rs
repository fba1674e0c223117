//! In-process fan-out bench: the real SQLite store committing lines and the real hub
//! handing them to N watchers (no WebSocket). Prints lines/s stored and delivered per
//! watcher, p50/p99 commit-to-watcher latency, and the time to replay the job to a late
//! joiner. Usage: `fanout [LINES] [WATCHERS...]`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shipwatch_gateway::fanout::{Hub, Outgoing};
use shipwatch_gateway::model::EventFilter;
use shipwatch_gateway::store::{Store, StoreLimits};
use shipwatch_protocol::{EventBody, JobSpec, JobState, RunnerEvent, Stream, Timestamp};
use tokio_util::sync::CancellationToken;

const CHUNK: u64 = 1_000;

fn spec() -> JobSpec {
    JobSpec::local("bench", "true", &["web-01"])
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let lines: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(200_000);
    let mut counts: Vec<usize> = args.map(|a| a.parse()).collect::<Result<_, _>>()?;
    if counts.is_empty() {
        counts = vec![1, 100, 1000];
    }
    println!(
        "| watchers | lines | stored lines/s | per-watcher lines/s | deliveries/s | p50 batch latency | p99 batch latency | replay to late joiner | overflows |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for n in counts {
        let dir = tempfile::Builder::new()
            .prefix("bench")
            .tempdir_in("/tmp")?;
        let hub = Hub::new(CancellationToken::new());
        let store = Store::open(
            dir.path(),
            StoreLimits {
                max_log_bytes: u64::MAX,
                retention_days: 30,
            },
            hub.clone(),
        )?;
        let job = store.create_job(spec(), BTreeMap::new(), "bench").await?;
        // Each batch's send time, by the seq of its last event, to measure latency.
        let sent: Arc<std::sync::Mutex<Vec<(u64, Instant)>>> = Arc::default();
        let mut tasks = Vec::new();
        for _ in 0..n {
            let mut w = hub.watch(store.clone(), job.id, 0, EventFilter::default());
            let sent = sent.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = 0u64;
                let mut lat = Vec::new();
                while let Some(out) = w.next().await {
                    match out {
                        Outgoing::Frame(_) => {
                            // Count events by how far the watch advanced (seqs are gapless
                            // and the filter takes all): the bench measures the fan-out,
                            // not a consumer scanning bytes (which was most of its CPU).
                            let seq = w.covered();
                            got = seq;
                            let now = Instant::now();
                            if let Ok(s) = sent.lock()
                                && let Some((_, t)) = s.iter().rev().find(|(q, _)| *q == seq)
                            {
                                lat.push(now - *t);
                            }
                        }
                        Outgoing::Close(..) => break,
                    }
                }
                (got, lat)
            }));
        }
        let text = "x".repeat(80);
        // FANOUT_RATE=N: one line per append, N lines/s (the latency scenario: 100 lines/s
        // to 1,000 watchers); unset: 1,000-line appends as fast as the store commits.
        let rate: Option<u64> = std::env::var("FANOUT_RATE")
            .ok()
            .and_then(|r| r.parse().ok());
        let chunk = if rate.is_some() { 1 } else { CHUNK };
        let mut tick = rate.map(|r| tokio::time::interval(Duration::from_secs(1) / r as u32));
        let start = Instant::now();
        let mut from = 1;
        while from <= lines {
            if let Some(t) = tick.as_mut() {
                t.tick().await;
            }
            let evs: Vec<RunnerEvent> = (from..from + chunk)
                .map(|r| RunnerEvent {
                    rseq: r,
                    ts: Timestamp(1_764_000_000_000),
                    body: EventBody::Line {
                        host: "web-01".into(),
                        stream: Stream::Stdout,
                        text: text.clone(),
                    },
                })
                .collect();
            // Record the send time before the append, keyed by the seq its batch ends at.
            let seq = store.last_seq(job.id).await? + chunk;
            if let Ok(mut s) = sent.lock() {
                s.push((seq, Instant::now()));
            }
            store.append(job.id, evs).await?;
            from += chunk;
        }
        let end = RunnerEvent {
            rseq: from,
            ts: Timestamp(1_764_000_000_000),
            body: EventBody::Job {
                state: JobState::Succeeded,
                reason: None,
            },
        };
        store.append(job.id, vec![end]).await?;
        let stored = start.elapsed();
        let mut lat = Vec::new();
        let mut total = 0;
        for t in tasks {
            let (got, l) = t.await?;
            total += got;
            lat.extend(l);
        }
        let delivered = start.elapsed();
        let t = Instant::now();
        let mut late = hub.watch(store.clone(), job.id, 0, EventFilter::default());
        let mut replayed = 0u64;
        while let Some(Outgoing::Frame(f)) = late.next().await {
            replayed += f.as_bytes().iter().filter(|&&b| b == b'{').count() as u64;
        }
        let replay = t.elapsed();
        println!(
            "| {n} | {lines} | {:.0} | {:.0} | {:.0} | {:?} | {:?} | {replayed} events in {replay:.2?} | {} |",
            lines as f64 / stored.as_secs_f64(),
            (total / n as u64) as f64 / delivered.as_secs_f64(),
            total as f64 / delivered.as_secs_f64(),
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.99),
            hub.overflows(),
        );
    }
    Ok(())
}
