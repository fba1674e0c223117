//! The store on each engine (a real SQLite file, a real PostgreSQL server): gapless seq,
//! rseq dedupe, caps, retention, failed commits; a full disk on SQLite.

mod common;

use common::*;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use shipwatch_gateway::model::{CommittedBatch, EventFilter};
use shipwatch_gateway::store::{Publisher, Store};
use shipwatch_protocol::api::JobView;
use shipwatch_protocol::{EventBody, HostState, JobState, RunnerEvent, Stream, Timestamp};

#[derive(Default)]
struct Recorder {
    batches: Mutex<Vec<Arc<CommittedBatch>>>,
    jobs: Mutex<Vec<JobView>>,
}

impl Publisher for Recorder {
    fn publish(&self, batch: Arc<CommittedBatch>) {
        self.batches.lock().unwrap().push(batch);
    }
    fn job_changed(&self, job: &JobView) {
        self.jobs.lock().unwrap().push(job.clone());
    }
}

async fn open(site: &StoreSite, max_log_bytes: u64) -> (Store, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    (site.open(max_log_bytes, rec.clone()).await, rec)
}

/// Runs each test on both engines, as `NAME::sqlite` and `NAME::postgres`.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Engine::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Engine::Postgres).await
            }
        }
    )*};
}

on_both_engines!(
    seq_is_gapless_per_job_under_concurrent_jobs,
    resent_events_are_stored_once,
    host_and_job_events_update_counts_and_filters_apply,
    lines_past_max_log_bytes_are_counted_with_one_notice,
    retention_sweep_deletes_old_finished_jobs_only,
    a_failed_commit_fails_the_job_and_reads_go_on,
);

async fn seq_is_gapless_per_job_under_concurrent_jobs(engine: Engine) {
    let site = StoreSite::new(engine);
    let (store, rec) = open(&site, u64::MAX).await;
    let mut tasks = Vec::new();
    for j in 0..4 {
        let job = store
            .create_job(spec(&["a", "b"]), BTreeMap::new(), "alice")
            .await
            .unwrap();
        assert_eq!(job.state, JobState::Queued);
        assert_eq!(job.counts.pending, 2);
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for chunk in 0..50u64 {
                let evs = (1..=20)
                    .map(|i| line(chunk * 20 + i, "a", &format!("j{j} {i}")))
                    .collect();
                let acked = store.append(job.id, evs).await.unwrap();
                assert_eq!(acked, chunk * 20 + 20);
            }
            job.id
        }));
    }
    for t in tasks {
        let id = t.await.unwrap();
        let evs = store
            .read_events(id, 0, &EventFilter::default(), usize::MAX)
            .await
            .unwrap();
        let seqs: Vec<u64> = evs.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=1000).collect::<Vec<_>>());
        assert_eq!(store.last_seq(id).await.unwrap(), 1000);
        // Published batches of this job are in order, gapless, and the same bytes as stored.
        let published: Vec<u64> = rec
            .batches
            .lock()
            .unwrap()
            .iter()
            .filter(|b| b.job == id)
            .flat_map(|b| b.events.iter().map(|e| e.seq).collect::<Vec<_>>())
            .collect();
        assert_eq!(published, seqs);
        let v: serde_json::Value = serde_json::from_slice(&evs[0].json).unwrap();
        assert_eq!(v["seq"], 1);
        assert_eq!(v["job"], id);
        assert_eq!(v["kind"], "line");
    }
    let b = rec.batches.lock().unwrap()[0].clone();
    let frame: Vec<serde_json::Value> = serde_json::from_slice(&b.frame).unwrap();
    assert_eq!(frame.len(), b.events.len());
}

async fn resent_events_are_stored_once(engine: Engine) {
    let site = StoreSite::new(engine);
    let (store, _) = open(&site, u64::MAX).await;
    let job = store
        .create_job(spec(&["a"]), BTreeMap::new(), "alice")
        .await
        .unwrap();
    assert_eq!(
        store
            .append(job.id, (1..=5).map(|i| line(i, "a", "x")).collect())
            .await
            .unwrap(),
        5
    );
    // A reconnecting runner resends 3..=8.
    assert_eq!(
        store
            .append(job.id, (3..=8).map(|i| line(i, "a", "y")).collect())
            .await
            .unwrap(),
        8
    );
    let evs = store
        .read_events(job.id, 0, &EventFilter::default(), 100)
        .await
        .unwrap();
    assert_eq!(evs.len(), 8);
    let texts: Vec<String> = evs
        .iter()
        .map(|e| {
            serde_json::from_slice::<serde_json::Value>(&e.json).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(texts, ["x", "x", "x", "x", "x", "y", "y", "y"]);
    // Survives reopening: the dedupe state is in the file.
    drop(store);
    let (store, _) = open(&site, u64::MAX).await;
    assert_eq!(
        store
            .append(job.id, (7..=9).map(|i| line(i, "a", "z")).collect())
            .await
            .unwrap(),
        9
    );
    assert_eq!(store.last_seq(job.id).await.unwrap(), 9);
}

async fn host_and_job_events_update_counts_and_filters_apply(engine: Engine) {
    let site = StoreSite::new(engine);
    let (store, rec) = open(&site, u64::MAX).await;
    let job = store
        .create_job(spec(&["a", "b"]), BTreeMap::new(), "alice")
        .await
        .unwrap();
    store
        .gateway_event(
            job.id,
            EventBody::Job {
                state: JobState::Running,
                reason: None,
            },
        )
        .await
        .unwrap();
    let host = |rseq, h: &str, state| host_is(rseq, h, state, Some(0));
    store
        .append(
            job.id,
            vec![
                host(1, "a", HostState::Running),
                line(2, "a", "out a"),
                line_on(3, "b", Stream::Stderr, "err b"),
                host(4, "a", HostState::Ok),
            ],
        )
        .await
        .unwrap();
    let v = store.job(job.id).await.unwrap().unwrap();
    assert_eq!(v.state, JobState::Running);
    assert!(v.started_at.is_some());
    assert_eq!(v.counts.ok, 1);
    assert_eq!(v.counts.pending, 1);
    assert!(v.spec.is_some());
    let stderr = EventFilter {
        streams: Some(vec![Stream::Stderr]),
        ..Default::default()
    };
    let evs = store.read_events(job.id, 0, &stderr, 100).await.unwrap();
    // Events without a stream (job, host) pass a stream filter; only stderr lines do.
    let kinds: Vec<&str> = evs.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["job", "host", "line", "host"]);
    assert!(evs.iter().all(|e| e.stream != Some(Stream::Stdout)));
    assert!(evs.iter().any(|e| e.stream == Some(Stream::Stderr)));
    let only_a = EventFilter {
        hosts: Some(vec!["a".into()]),
        kinds: Some(vec!["line".into()]),
        ..Default::default()
    };
    let evs = store.read_events(job.id, 0, &only_a, 100).await.unwrap();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].host.as_deref(), Some("a"));
    store
        .gateway_event(
            job.id,
            EventBody::Job {
                state: JobState::Succeeded,
                reason: None,
            },
        )
        .await
        .unwrap();
    let v = store.job(job.id).await.unwrap().unwrap();
    assert_eq!(v.state, JobState::Succeeded);
    assert_eq!(v.counts.skipped, 1, "the never-started host is skipped");
    assert!(
        rec.jobs
            .lock()
            .unwrap()
            .iter()
            .any(|j| j.state == JobState::Succeeded)
    );
    // A finished job takes no more events.
    assert!(
        store
            .append(job.id, vec![line(9, "a", "late")])
            .await
            .is_err()
    );
    assert_eq!(store.jobs(10, None).await.unwrap().len(), 1);
}

async fn lines_past_max_log_bytes_are_counted_with_one_notice(engine: Engine) {
    let site = StoreSite::new(engine);
    let (store, _) = open(&site, 10).await;
    let job = store
        .create_job(spec(&["a"]), BTreeMap::new(), "alice")
        .await
        .unwrap();
    let acked = store
        .append(job.id, (1..=6).map(|i| line(i, "a", "1234")).collect())
        .await
        .unwrap();
    assert_eq!(acked, 6);
    let evs = store
        .read_events(job.id, 0, &EventFilter::default(), 100)
        .await
        .unwrap();
    let kinds: Vec<&str> = evs.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["line", "line", "notice"]);
    assert_eq!(store.dropped_lines(job.id).await.unwrap(), 4);
    // Host and job events are still stored past the cap.
    store
        .gateway_event(
            job.id,
            EventBody::Job {
                state: JobState::Failed,
                reason: Some("x".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(store.last_seq(job.id).await.unwrap(), 4);
}

async fn retention_sweep_deletes_old_finished_jobs_only(engine: Engine) {
    let site = StoreSite::new(engine);
    let (store, _) = open(&site, u64::MAX).await;
    let done = store
        .create_job(spec(&["a"]), BTreeMap::new(), "alice")
        .await
        .unwrap();
    let queued = store
        .create_job(spec(&["a"]), BTreeMap::new(), "alice")
        .await
        .unwrap();
    store
        .append(done.id, vec![line(1, "a", "x")])
        .await
        .unwrap();
    store
        .gateway_event(
            done.id,
            EventBody::Job {
                state: JobState::Succeeded,
                reason: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(store.sweep().await.unwrap(), 0, "fresh jobs are kept");
    let later = Timestamp(Timestamp::now().as_millis() + 31 * 86_400_000);
    assert_eq!(store.sweep_before(later).await.unwrap(), 1);
    assert!(store.job(done.id).await.unwrap().is_none());
    assert!(
        store
            .read_events(done.id, 0, &EventFilter::default(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.job(queued.id).await.unwrap().is_some());
}

async fn a_failed_commit_fails_the_job_and_reads_go_on(engine: Engine) {
    let site = StoreSite::new(engine);
    let (store, rec) = open(&site, u64::MAX).await;
    let job = store
        .create_job(spec(&["a"]), BTreeMap::new(), "alice")
        .await
        .unwrap();
    store
        .append(job.id, vec![line(1, "a", "kept")])
        .await
        .unwrap();
    // Every commit fails from now on, recording the failure too.
    store.fail_commits_for_test(true).await.unwrap();
    let err = store
        .append(job.id, vec![line(2, "a", "lost")])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("full"), "{err}");
    // The failure shows at once, though the store cannot record it yet: the job does
    // not look running while nothing of it can be stored.
    let v = store.job_shown(job.id).await.unwrap().unwrap();
    assert_eq!(v.state, JobState::Failed);
    assert!(v.reason.unwrap().contains("could not store"));
    assert!(v.ended_at.is_some());
    // Watchers read the stored state: they end with the stored final event, later.
    let stored = store.job(job.id).await.unwrap().unwrap();
    assert!(!stored.state.is_terminal(), "{:?}", stored.state);
    // Never dispatched again.
    let queued = store.jobs_in_state(&[JobState::Queued]).await.unwrap();
    assert!(queued.iter().all(|j| j.id != job.id));
    let listed = store.jobs(10, None).await.unwrap();
    assert_eq!(listed[0].state, JobState::Failed);
    let by_state = store.jobs_by_state().await.unwrap();
    assert!(by_state.contains(&("failed".to_owned(), 1)), "{by_state:?}");
    assert!(
        !by_state.contains(&("running".to_owned(), 1)),
        "{by_state:?}"
    );
    let seen = rec.jobs.lock().unwrap().last().map(|j| j.state);
    assert_eq!(seen, Some(JobState::Failed), "job-list watchers are told");
    let kinds = |evs: Vec<shipwatch_gateway::model::CommittedEvent>| {
        evs.iter().map(|e| e.kind).collect::<Vec<_>>()
    };
    let evs = store
        .read_events(job.id, 0, &EventFilter::default(), 10)
        .await
        .unwrap();
    assert_eq!(kinds(evs), ["line"], "no watcher sees what is not stored");
    assert!(
        store
            .audit("alice", "cancel", Some(job.id), "x")
            .await
            .is_err()
    );
    assert!(
        store
            .append(job.id, vec![line(3, "a", "later")])
            .await
            .is_err()
    );

    // Room again: the writer's retry records the failure, and writes work.
    store.fail_commits_for_test(false).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let evs = store
            .read_events(job.id, 0, &EventFilter::default(), 10)
            .await
            .unwrap();
        if kinds(evs.clone()) == ["line", "job"] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", kinds(evs));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let v = store.job(job.id).await.unwrap().unwrap();
    assert_eq!(v.state, JobState::Failed);
    assert!(v.reason.unwrap().contains("could not store"));
    store
        .audit("alice", "cancel", Some(job.id), "test")
        .await
        .unwrap();
    assert_eq!(store.audit_log(10).await.unwrap()[0].actor, "alice");
}

/// A full disk as SQLite meets it: the database may not grow (`max_page_count`, so every
/// write that needs a new page fails with SQLITE_FULL) until room returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_job_with_a_reason_and_reads_go_on() {
    let site = StoreSite::new(Engine::Sqlite);
    let (store, rec) = open(&site, u64::MAX).await;
    let job = store
        .create_job(spec(&["a", "b"]), BTreeMap::new(), "alice")
        .await
        .unwrap();
    let queued = store
        .create_job(spec(&["c"]), BTreeMap::new(), "bob")
        .await
        .unwrap();
    store
        .append(job.id, vec![line(1, "a", "before the disk filled")])
        .await
        .unwrap();

    store.cap_pages_for_test(Some(0)).await.unwrap();
    let text = "x".repeat(1000);
    let mut rseq = 1;
    let error = loop {
        let events: Vec<RunnerEvent> = (0..50)
            .map(|_| {
                rseq += 1;
                line(rseq, "a", &text)
            })
            .collect();
        match store.append(job.id, events).await {
            Ok(_) => assert!(
                rseq < 100_000,
                "100 MB stored in a database that may not grow"
            ),
            Err(error) => break error,
        }
    };
    // SQLite's own words reach the caller (this once said "the store's writer has
    // stopped": the failing op's reply was dropped with the rolled-back group).
    assert!(error.to_string().contains("full"), "{error}");

    // The disk stays full: everything that reads still answers, writes fail at once.
    let v = store.job(job.id).await.unwrap().unwrap();
    assert_eq!(v.hosts.as_ref().map(Vec::len), Some(2));
    let listed = store.jobs(10, None).await.unwrap();
    assert_eq!(listed.len(), 2);
    let stored = store
        .read_events(job.id, 0, &EventFilter::default(), 100_000)
        .await
        .unwrap();
    assert!(!stored.is_empty());
    let later = store
        .append(job.id, vec![line(rseq + 1, "a", "after the failure")])
        .await;
    assert!(
        later.is_err(),
        "a line after a lost one is refused, not stored"
    );

    // Room returns: the job's failure is recorded with the reason (at once when the small
    // update still fitted, else by the writer's retry), its log is gapless and ends with
    // it, and nothing past the loss was stored.
    store.cap_pages_for_test(None).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let failed = loop {
        let v = store.job(job.id).await.unwrap().unwrap();
        if v.state == JobState::Failed {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the job's failure was never recorded: {:?}",
            v.state
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let reason = failed.reason.unwrap_or_default();
    assert!(
        reason.contains("could not store") && reason.contains("full"),
        "{reason}"
    );
    let hosts = failed.hosts.unwrap_or_default();
    assert!(
        hosts
            .iter()
            .all(|h| h.state == HostState::Cancelled || h.state == HostState::Skipped),
        "{hosts:?}"
    );
    let events = store
        .read_events(job.id, 0, &EventFilter::default(), 100_000)
        .await
        .unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(events.last().map(|e| e.kind), Some("job"));
    assert!(
        !events
            .iter()
            .any(|e| String::from_utf8_lossy(&e.json).contains("after the failure"))
    );
    // Watchers got the same: every published event of the job is one the store holds.
    let published: usize = rec
        .batches
        .lock()
        .unwrap()
        .iter()
        .filter(|b| b.job == job.id)
        .map(|b| b.events.len())
        .sum();
    assert_eq!(published, events.len());

    // The other job was never touched, and new work is stored again.
    let q = store.job(queued.id).await.unwrap().unwrap();
    assert_eq!(q.state, JobState::Queued);
    store
        .append(queued.id, vec![line(1, "c", "the next job runs")])
        .await
        .unwrap();
    store.audit("alice", "start", None, "x").await.unwrap();
}

/// What a capped flood leaves on disk (issue 13): the database about its text and ~25
/// bytes a line (it was ~195 a line with the JSON kept), the WAL bounded while the lines
/// pour in (it grew with the job) and truncated once the writer idles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_flood_takes_about_its_text_on_disk_and_leaves_no_wal() {
    const CAP: u64 = 10_000_000;
    let site = StoreSite::new(Engine::Sqlite);
    let dir = &site.dir;
    let (store, _) = open(&site, CAP).await;
    let hosts: Vec<String> = (1..=20).map(|i| format!("h-{i:02}")).collect();
    let job = store
        .create_job(spec(&hosts), BTreeMap::new(), "alice")
        .await
        .unwrap();
    let wal = dir.path().join("shipwatch.db-wal");
    let wal_len = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    let mut wal_peak = 0;
    let mut rseq = 0;
    let mut text_bytes = 0;
    while text_bytes < CAP + 100_000 {
        let host = &hosts[rseq as usize / 1_000 % hosts.len()];
        let batch: Vec<RunnerEvent> = (0..1_000)
            .map(|_| {
                rseq += 1;
                let text = format!("{rseq:08} a line of a flood 29");
                text_bytes += text.len() as u64;
                line(rseq, host, &text)
            })
            .collect();
        store.append(job.id, batch).await.unwrap();
        wal_peak = wal_peak.max(wal_len());
    }
    assert!(
        store.dropped_lines(job.id).await.unwrap() > 0,
        "the cap was reached"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while wal_len() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the WAL is still {} bytes after the writer idled",
            wal_len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let db = std::fs::metadata(dir.path().join("shipwatch.db"))
        .unwrap()
        .len();
    eprintln!("{CAP} bytes of text: database {db} bytes, WAL peak {wal_peak} bytes");
    // 29-byte lines: ~58 bytes a line, 2.0× the text (6.7× before).
    assert!(db < 5 * CAP / 2, "database {db} bytes for {CAP} of text");
    assert!(
        wal_peak < 12 * 1024 * 1024,
        "WAL peaked at {wal_peak} bytes while the lines came"
    );
    let last = store
        .read_events(job.id, rseq - 1_000, &EventFilter::default(), 10)
        .await
        .unwrap();
    assert!(last.is_empty(), "lines past the cap are not stored");
    let first = store
        .read_events(job.id, 0, &EventFilter::default(), 1)
        .await
        .unwrap();
    assert_eq!(first[0].host.as_deref(), Some("h-01"));
}
