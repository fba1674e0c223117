//! Many watchers catching up on one big job: each gets exactly the events it asked for,
//! byte for byte, while the store is read once per page for all of them, and the pages
//! kept stay within the cache's budget.

mod common;

use common::*;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use shipwatch_gateway::fanout::{CATCH_UP_PAGE, Hub, Outgoing, Watch, close};
use shipwatch_gateway::model::{CommittedEvent, EventFilter};
use shipwatch_gateway::store::Store;
use shipwatch_protocol::{JobId, JobState, Stream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const HOSTS: u64 = 10;
const CHUNK: u64 = 500;

fn host(i: u64) -> String {
    format!("web-{:02}", i % HOSTS)
}

/// The filters watchers use, by watcher number.
fn filter_of(n: u64) -> EventFilter {
    match n % 4 {
        0 | 1 => EventFilter::default(),
        2 => EventFilter {
            streams: Some(vec![Stream::Stderr]),
            ..EventFilter::default()
        },
        _ => EventFilter {
            hosts: Some(vec![host(3), host(6)]),
            ..EventFilter::default()
        },
    }
}

/// Lines `from..=to` of the job over [`HOSTS`] hosts, every third on stderr, in batches
/// of [`CHUNK`]; with `end`, the job's end after them.
async fn print(store: Store, job: JobId, from: u64, to: u64, end: bool) {
    let mut rseq = from - 1;
    while rseq < to {
        let evs = (rseq + 1..=(rseq + CHUNK).min(to))
            .map(|r| {
                let stream = if r % 3 == 0 {
                    Stream::Stderr
                } else {
                    Stream::Stdout
                };
                line_on(r, &host(r), stream, &format!("line {r} of the big job"))
            })
            .collect::<Vec<_>>();
        rseq += evs.len() as u64;
        store.append(job, evs).await.unwrap();
        tokio::task::yield_now().await;
    }
    if end {
        let end = job_ends(rseq + 1, JobState::Succeeded, None);
        store.append(job, vec![end]).await.unwrap();
    }
}

/// Reads `w` to its close, checking each frame against `want` (the events the filter
/// takes, in order) byte for byte from the first one after `after`: no event missing,
/// repeated or out of order. With a `gate`, it stops reading after its first frame until
/// the gate opens. Returns the close code and how many events came.
async fn check(
    mut w: Watch,
    after: u64,
    want: Arc<Vec<CommittedEvent>>,
    mut gate: Option<watch::Receiver<bool>>,
) -> (u16, usize) {
    let mut next = want.partition_point(|e| e.seq <= after);
    let from = next;
    loop {
        let out = tokio::time::timeout(Duration::from_secs(60), w.next())
            .await
            .expect("watch stalled for 60 s");
        match out {
            Some(Outgoing::Frame(f)) => {
                let f = f.as_bytes();
                assert!(f.len() > 2 && f[0] == b'[', "not an array frame");
                let mut pos = 1;
                loop {
                    let e = want
                        .get(next)
                        .unwrap_or_else(|| panic!("after={after}: an event past the last"));
                    let end = pos + e.json.len();
                    assert!(
                        f.get(pos..end) == Some(&e.json[..]),
                        "after={after}: expected seq {} at byte {pos} of a frame: {} got {}",
                        e.seq,
                        String::from_utf8_lossy(&e.json),
                        String::from_utf8_lossy(&f[pos..(pos + 200).min(f.len())])
                    );
                    next += 1;
                    match f.get(end) {
                        Some(b',') => pos = end + 1,
                        Some(b']') if end + 1 == f.len() => break,
                        _ => panic!("after={after}: malformed frame after seq {}", e.seq),
                    }
                }
                if let Some(mut gate) = gate.take() {
                    gate.wait_for(|open| *open).await.unwrap();
                }
            }
            Some(Outgoing::Close(code, _)) => {
                assert_eq!(
                    next,
                    want.len(),
                    "after={after}: events missing at the close"
                );
                return (code, next - from);
            }
            None => panic!("watch ended without a close"),
        }
    }
}

/// What each filter takes of the whole job, as the store reads it.
async fn wanted(
    store: &Store,
    job: JobId,
    watchers: u64,
) -> BTreeMap<u64, Arc<Vec<CommittedEvent>>> {
    let mut out = BTreeMap::new();
    for n in 0..watchers.min(4) {
        let events = store
            .read_events(job, 0, &filter_of(n), usize::MAX)
            .await
            .unwrap();
        out.insert(n % 4, Arc::new(events));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_watchers_replaying_a_big_job_share_one_read_per_page() {
    let lines = env("CATCH_UP_LINES", 30_000);
    let watchers = env("CATCH_UP_WATCHERS", 300);
    let dir = short_tempdir("cu");
    let hub = Hub::new(CancellationToken::new());
    let store = unlimited_store(dir.path(), &hub);
    let job = store
        .create_job(
            spec(&(0..HOSTS).map(host).collect::<Vec<_>>()),
            BTreeMap::new(),
            "t",
        )
        .await
        .unwrap();
    print(store.clone(), job.id, 1, lines, true).await;
    let last = store.last_seq(job.id).await.unwrap();
    let want = wanted(&store, job.id, watchers).await;

    // All at once, from the start or from anywhere, with and without filters.
    let mut rng = 0x5eed_0013_u64;
    let mut tasks = Vec::new();
    for n in 0..watchers {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let after = if n % 3 == 0 { 0 } else { rng % last };
        let w = hub.watch(store.clone(), job.id, after, filter_of(n));
        tasks.push(tokio::spawn(check(w, after, want[&(n % 4)].clone(), None)));
    }
    let mut delivered = 0;
    for t in tasks {
        let (code, n) = t.await.unwrap();
        assert_eq!(code, close::DONE);
        delivered += n;
    }
    let pages = last.div_ceil(CATCH_UP_PAGE);
    eprintln!(
        "{watchers} watchers, {last} events, {delivered} delivered, {} store reads for {pages} pages",
        hub.store_reads()
    );
    // The cache holds the whole job: every page was read once, whoever needed it.
    assert_eq!(hub.store_reads(), pages);
    assert_eq!(hub.watchers(), 0);
    assert_eq!(hub.lagging(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_watchers_behind_the_ring_of_a_running_job_are_exact_within_a_small_cache() {
    let lines = env("CATCH_UP_LINES", 30_000);
    let watchers = env("CATCH_UP_WATCHERS", 200);
    let cache = 4 << 20;
    let hosts = (0..HOSTS).map(host).collect::<Vec<_>>();
    // The same job printed into a twin store first: the bytes every watcher must get.
    let twin_dir = short_tempdir("cu");
    let twin_hub = Hub::new(CancellationToken::new());
    let twin = unlimited_store(twin_dir.path(), &twin_hub);
    let twin_job = twin
        .create_job(spec(&hosts), BTreeMap::new(), "t")
        .await
        .unwrap();
    print(twin.clone(), twin_job.id, 1, lines, true).await;
    let want = wanted(&twin, twin_job.id, watchers).await;

    // A ring of about one batch and a cache of most of the job, so watchers fall
    // behind, catch up from the store and find pages evicted.
    let dir = short_tempdir("cu");
    let hub = Hub::with_sizes(CancellationToken::new(), 256 << 10, cache);
    let store = unlimited_store(dir.path(), &hub);
    let job = store
        .create_job(spec(&hosts), BTreeMap::new(), "t")
        .await
        .unwrap();
    assert_eq!(job.id, twin_job.id, "the twin's events name the same job");
    // Half of them stop reading after their first frame until half the job is printed.
    let (open, gate) = watch::channel(false);
    let mut tasks = Vec::new();
    for n in 0..watchers {
        let w = hub.watch(store.clone(), job.id, 0, filter_of(n));
        let gate = (n % 2 == 0).then(|| gate.clone());
        tasks.push(tokio::spawn(check(w, 0, want[&(n % 4)].clone(), gate)));
    }
    let producer = tokio::spawn(async move {
        print(store.clone(), job.id, 1, lines / 2, false).await;
        open.send_replace(true);
        print(store.clone(), job.id, lines / 2 + 1, lines, true).await;
        store
    });
    let store = tokio::time::timeout(Duration::from_secs(60), producer)
        .await
        .expect("producer stalled")
        .unwrap();
    let mut delivered = 0;
    for t in tasks {
        let (code, n) = t.await.unwrap();
        assert_eq!(code, close::DONE);
        delivered += n;
    }
    let last = store.last_seq(job.id).await.unwrap();
    eprintln!(
        "{watchers} watchers, {last} events, {delivered} delivered, {} ring overflows, \
         {} store reads for {} pages, {} bytes cached",
        hub.overflows(),
        hub.store_reads(),
        last.div_ceil(CATCH_UP_PAGE),
        hub.page_cache_bytes()
    );
    assert!(hub.overflows() > 0, "nobody fell behind the ring");
    // Those that fell behind together caught up together: the old way read at least a
    // page per watcher that fell behind, and then every page after it again.
    let pages = last.div_ceil(CATCH_UP_PAGE);
    assert!(
        hub.store_reads() <= 4 * pages,
        "{} store reads for {pages} pages",
        hub.store_reads()
    );
    // Within the budget, give or take the one page read last.
    assert!(hub.page_cache_bytes() <= cache + (512 << 10));
    assert_eq!(hub.watchers(), 0);
    assert_eq!(hub.lagging(), 0);
}
