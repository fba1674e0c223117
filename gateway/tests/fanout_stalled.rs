//! A watcher that never reads while 1,000,000 lines flow: memory stays bounded and the
//! watcher beside it never falls behind.

mod common;

use common::*;

use std::collections::BTreeMap;
use std::time::Duration;

use shipwatch_gateway::fanout::{Hub, Outgoing, RING_BYTES};
use shipwatch_gateway::model::EventFilter;
use shipwatch_protocol::RunnerEvent;
use tokio_util::sync::CancellationToken;

const LINES: u64 = 1_000_000;
const CHUNK: u64 = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_watcher_costs_a_bounded_queue_and_slows_nobody() {
    let dir = short_tempdir("st");
    let hub = Hub::new(CancellationToken::new());
    let store = unlimited_store(dir.path(), &hub);
    let job = store
        .create_job(spec(&["web-01"]), BTreeMap::new(), "t")
        .await
        .unwrap();

    // Both go live on the first batch; then one stops reading for good.
    let mut stalled = hub.watch(store.clone(), job.id, 0, EventFilter::default());
    let mut active = hub.watch(store.clone(), job.id, 0, EventFilter::default());
    let text = "x".repeat(80);
    let batch = |from: u64| -> Vec<RunnerEvent> {
        (from..from + CHUNK)
            .map(|r| line(r, "web-01", &text))
            .collect()
    };
    store.append(job.id, batch(1)).await.unwrap();
    assert!(matches!(stalled.next().await, Some(Outgoing::Frame(_))));
    // A batch's events may come in several frames.
    let events = |f: &str| {
        serde_json::from_str::<Vec<serde_json::Value>>(f)
            .unwrap()
            .len() as u64
    };
    let first = match active.next().await {
        Some(Outgoing::Frame(f)) => events(&f),
        other => panic!("active watcher: {other:?}"),
    };

    let reader = tokio::spawn(async move {
        let mut n = first;
        while n < LINES {
            match tokio::time::timeout(Duration::from_secs(30), active.next()).await {
                Ok(Some(Outgoing::Frame(f))) => n += events(&f),
                other => panic!("active watcher: {other:?}"),
            }
        }
        n
    });
    let base = rss_kib();
    let mut peak = base;
    let mut from = CHUNK + 1;
    while from <= LINES {
        store.append(job.id, batch(from)).await.unwrap();
        from += CHUNK;
        if from % 50_000 == 1 {
            peak = peak.max(rss_kib());
        }
    }
    let got = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("active watcher fell behind")
        .unwrap();
    assert_eq!(got, LINES);
    peak = peak.max(rss_kib());
    // The job's ring holds at most RING_BYTES (32 MiB) of recent batches whatever its
    // watchers do, and the stalled watcher one batch; 1,000,000 lines held would be
    // ~300 MB.
    let grown_mib = (peak.saturating_sub(base)) / 1024;
    eprintln!("rss base {base} KiB, peak {peak} KiB, ring {RING_BYTES} bytes");
    assert!(
        grown_mib < 64,
        "RSS grew {grown_mib} MiB with a stalled watcher"
    );
    assert_eq!(hub.overflows(), 1, "only the stalled watcher fell behind");
    assert_eq!(hub.lagging(), 1);
    drop(stalled);
    assert_eq!(hub.lagging(), 0);
}
