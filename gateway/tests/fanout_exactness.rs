//! The fan-out against the real store: watchers joining at random moments, with `after=`,
//! stream and host filters, and slow ones forced into catch-up, each get exactly the events
//! they asked for, in order, once.

mod common;

use common::*;

use std::collections::BTreeMap;
use std::time::Duration;

use shipwatch_gateway::fanout::{Hub, Outgoing, Watch, close};
use shipwatch_gateway::model::EventFilter;
use shipwatch_protocol::{JobId, JobState, Stream};
use tokio_util::sync::CancellationToken;

const HOSTS: usize = 20;
const LINES: u64 = 80_000;
const CHUNK: u64 = 200;

fn host(i: u64) -> String {
    format!("web-{:02}", i % HOSTS as u64)
}

/// Deterministic pseudo-random numbers (xorshift), so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Reads a watch to its close; returns the seqs received and the close code.
async fn drain(mut w: Watch, slow: bool) -> (Vec<u64>, u16) {
    let mut seqs = Vec::new();
    let mut frames = 0u32;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(60), w.next()).await;
        match next.expect("watch stalled for 60 s") {
            Some(Outgoing::Frame(f)) => {
                let evs: Vec<serde_json::Value> = serde_json::from_str(&f).unwrap();
                assert!(!evs.is_empty(), "empty frame");
                seqs.extend(evs.iter().map(|e| e["seq"].as_u64().unwrap()));
                frames += 1;
                // Not synchronisation: a reader this slow overflows its queue, which is
                // what this watcher is for.
                if slow && frames % 4 == 0 {
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
            }
            Some(Outgoing::Close(code, _)) => return (seqs, code),
            None => panic!("watch ended without a close"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_watcher_gets_exactly_what_it_asked_for_under_churn() {
    let dir = short_tempdir("fo");
    // A ring of ~4 batches, so slow watchers fall off it and catch up from the store.
    let hub = Hub::with_ring_bytes(CancellationToken::new(), 256 << 10);
    let store = unlimited_store(dir.path(), &hub);
    let hosts: Vec<String> = (0..HOSTS as u64).map(host).collect();
    let job = store
        .create_job(spec(&hosts), BTreeMap::new(), "alice")
        .await
        .unwrap();
    let id: JobId = job.id;

    // A watcher that stops reading once live until the job has printed everything: its
    // queue overflows and it must catch up from the store.
    let (done_tx, mut done_rx) = tokio::sync::watch::channel(false);
    let mut stalled = hub.watch(store.clone(), id, 0, EventFilter::default());
    let stalled = tokio::spawn(async move {
        let first = match stalled.next().await {
            Some(Outgoing::Frame(f)) => serde_json::from_str::<Vec<serde_json::Value>>(&f)
                .unwrap()
                .iter()
                .map(|e| e["seq"].as_u64().unwrap())
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        done_rx.wait_for(|d| *d).await.unwrap();
        let (rest, code) = drain(stalled, false).await;
        ([first, rest].concat(), code)
    });

    let producer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut rseq = 0;
            while rseq < LINES {
                let evs = (rseq + 1..=rseq + CHUNK)
                    .map(|r| {
                        let stream = if r % 3 == 0 {
                            Stream::Stderr
                        } else {
                            Stream::Stdout
                        };
                        line_on(r, &host(r), stream, &format!("line {r}"))
                    })
                    .collect();
                store.append(id, evs).await.unwrap();
                rseq += CHUNK;
                tokio::task::yield_now().await;
            }
            let end = job_ends(rseq + 1, JobState::Succeeded, None);
            store.append(id, vec![end]).await.unwrap();
        })
    };

    let mut rng = Rng(0x5eed_1234_abcd);
    let mut watchers = Vec::new();
    for n in 0..60u64 {
        // Join at random moments while the job prints.
        let wait = rng.next() % 30;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let last = store.last_seq(id).await.unwrap();
        let after = match n % 3 {
            0 => 0,
            _ => rng.next() % (last + 1),
        };
        let filter = match n % 5 {
            0 | 1 => EventFilter::default(),
            2 => EventFilter {
                streams: Some(vec![Stream::Stderr]),
                ..EventFilter::default()
            },
            3 => EventFilter {
                hosts: Some(vec![host(n), host(n + 7)]),
                ..EventFilter::default()
            },
            _ => EventFilter {
                kinds: Some(vec!["line".into()]),
                streams: Some(vec![Stream::Stdout]),
                hosts: Some(vec![host(n)]),
            },
        };
        let slow = n % 7 == 0;
        let w = hub.watch(store.clone(), id, after, filter.clone());
        watchers.push((after, filter, tokio::spawn(drain(w, slow))));
    }
    tokio::time::timeout(Duration::from_secs(120), producer)
        .await
        .expect("producer stalled")
        .unwrap();
    done_tx.send(true).unwrap();
    let (got, code) = stalled.await.unwrap();
    assert_eq!(code, close::DONE);
    assert_eq!(
        got,
        (1..=store.last_seq(id).await.unwrap()).collect::<Vec<_>>()
    );

    for (after, filter, task) in watchers {
        let (got, code) = task.await.unwrap();
        assert_eq!(code, close::DONE, "watcher after={after} {filter:?}");
        let want: Vec<u64> = store
            .read_events(id, after, &filter, usize::MAX)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert!(!want.is_empty());
        assert_eq!(
            got.len(),
            want.len(),
            "watcher after={after} {filter:?}: count"
        );
        assert_eq!(got, want, "watcher after={after} {filter:?}");
    }
    assert!(hub.overflows() > 0, "the slow watchers never fell behind");
    assert_eq!(hub.watchers(), 0, "every watch unregistered");
    assert_eq!(hub.lagging(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_replays_and_closes_and_shutdown_closes_live_watchers() {
    let dir = short_tempdir("fo");
    let shutdown = CancellationToken::new();
    let hub = Hub::new(shutdown.clone());
    let store = unlimited_store(dir.path(), &hub);
    let hosts = vec![host(0)];
    let done = store
        .create_job(spec(&hosts), BTreeMap::new(), "alice")
        .await
        .unwrap();
    let line = |r: u64| line(r, &host(0), &format!("{r}"));
    store
        .append(done.id, (1..=10).map(line).collect())
        .await
        .unwrap();
    store
        .append(done.id, vec![job_ends(11, JobState::Failed, Some("x"))])
        .await
        .unwrap();
    let (seqs, code) = drain(
        hub.watch(store.clone(), done.id, 4, EventFilter::default()),
        false,
    )
    .await;
    assert_eq!(code, close::DONE);
    assert_eq!(seqs.first(), Some(&5));
    assert_eq!(
        seqs.len() as u64,
        store.last_seq(done.id).await.unwrap() - 4
    );

    let running = store
        .create_job(spec(&hosts), BTreeMap::new(), "alice")
        .await
        .unwrap();
    store
        .append(running.id, (1..=3).map(line).collect())
        .await
        .unwrap();
    let mut w = hub.watch(store.clone(), running.id, 0, EventFilter::default());
    assert!(matches!(w.next().await, Some(Outgoing::Frame(_))));
    assert_eq!(hub.watchers(), 1);
    shutdown.cancel();
    let next = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .unwrap();
    assert_eq!(
        next,
        Some(Outgoing::Close(close::GOING_AWAY, "gateway shutting down"))
    );
    assert_eq!(w.next().await, None);
    drop(w);
    assert_eq!(hub.watchers(), 0);
}
