//! Dispatch against a real runners.sock and a real SQLite store, with a test-double runner
//! speaking the frames over a UnixStream.

mod common;

use common::{host_is, job_ends, line, short_tempdir, store};

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use shipwatch_gateway::Dispatcher;
use shipwatch_gateway::dispatch::CancelOutcome;
use shipwatch_gateway::model::EventFilter;
use shipwatch_gateway::store::{NoPublisher, Store};
use shipwatch_protocol::{GatewayFrame, JobId, JobState, RunnerCodec, RunnerEvent, RunnerFrame};
use tokio::net::UnixStream;
use tokio::sync::watch;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const DEADLINE: Duration = Duration::from_secs(20);

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
data_dir = "data"
run_dir = "run"
public_url = "http://127.0.0.1"
[hosts]
web = ["a", "b"]
[auth]
anonymous = "admin"
[[tasks]]
name = "one"
hosts = ["web"]
transport = "local"
concurrency = 1
script = "echo"
[[tasks]]
name = "two"
hosts = ["web"]
transport = "local"
concurrency = 2
script = "echo"
"#;

struct Gateway {
    dir: tempfile::TempDir,
    store: Store,
    dispatcher: Dispatcher,
    config: Arc<shipwatch_config::Config>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Gateway {
    async fn start(dir: tempfile::TempDir, grace: Duration) -> Gateway {
        let config = Arc::new(
            shipwatch_config::load_str(CONFIG, "t.toml", dir.path()).expect("test config loads"),
        );
        let store = store(&dir.path().join("data"), u64::MAX, Arc::new(NoPublisher));
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let (_tx, rx) = watch::channel(config.clone());
        let dispatcher =
            Dispatcher::with_grace(store.clone(), rx, tracker.clone(), shutdown.clone(), grace);
        std::fs::create_dir_all(dir.path().join("run")).unwrap();
        let listener = tokio::net::UnixListener::bind(sock(dir.path())).unwrap();
        let d = dispatcher.clone();
        tracker.spawn(async move { d.serve(listener).await });
        Gateway {
            dir,
            store,
            dispatcher,
            config,
            shutdown,
            tracker,
        }
    }

    async fn stop(self) -> tempfile::TempDir {
        self.shutdown.cancel();
        self.tracker.close();
        tokio::time::timeout(DEADLINE, self.tracker.wait())
            .await
            .unwrap();
        self.store.flush().await.unwrap();
        let _ = std::fs::remove_file(sock(self.dir.path()));
        self.dir
    }

    async fn queue(&self, task: &str) -> JobId {
        let spec = shipwatch_gateway::spec::job_spec(&self.config, task, &BTreeMap::new()).unwrap();
        let job = self
            .store
            .create_job(spec, BTreeMap::new(), "alice")
            .await
            .unwrap();
        self.dispatcher.wake();
        job.id
    }

    async fn wait_state(&self, job: JobId, want: JobState) -> shipwatch_protocol::api::JobView {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let v = self.store.job(job).await.unwrap().unwrap();
            if v.state == want {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {job} is {:?}, waited for {want:?}",
                v.state
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn sock(dir: &Path) -> std::path::PathBuf {
    dir.join("run/runners.sock")
}

type Conn = Framed<UnixStream, RunnerCodec>;

async fn connect(dir: &Path, index: u32, job: Option<JobId>) -> Conn {
    let stream = UnixStream::connect(sock(dir)).await.unwrap();
    let mut c = Framed::new(stream, RunnerCodec::new());
    c.send(RunnerFrame::Hello {
        version: shipwatch_protocol::PROTOCOL_VERSION,
        runner: index,
        pid: 1,
        job,
        draining: false,
    })
    .await
    .unwrap();
    assert!(matches!(next(&mut c).await, GatewayFrame::Welcome { .. }));
    c
}

/// The next frame that is not a heartbeat.
async fn next(c: &mut Conn) -> GatewayFrame {
    loop {
        let f = tokio::time::timeout(DEADLINE, c.next())
            .await
            .expect("a frame in time")
            .expect("connection open")
            .expect("a readable frame");
        if f != GatewayFrame::Heartbeat {
            return f;
        }
    }
}

/// Nothing but heartbeats for a little while.
async fn quiet(c: &mut Conn) {
    let r = tokio::time::timeout(Duration::from_millis(300), next(c)).await;
    assert!(r.is_err(), "expected no frame, got {r:?}");
}

async fn assigned(c: &mut Conn) -> JobId {
    match next(c).await {
        GatewayFrame::Assign { job, .. } => job,
        other => panic!("expected an assignment, got {other:?}"),
    }
}

async fn send_events(c: &mut Conn, job: JobId, events: Vec<RunnerEvent>) -> u64 {
    c.send(RunnerFrame::Events { job, events }).await.unwrap();
    match next(c).await {
        GatewayFrame::Ack { job: j, rseq } if j == job => rseq,
        other => panic!("expected an ack, got {other:?}"),
    }
}

#[tokio::test]
async fn a_wrong_version_is_refused_with_a_reason() {
    let gw = Gateway::start(short_tempdir("swd"), Duration::from_secs(10)).await;
    let stream = UnixStream::connect(sock(gw.dir.path())).await.unwrap();
    let mut c = Framed::new(stream, RunnerCodec::new());
    c.send(RunnerFrame::Hello {
        version: 999,
        runner: 1,
        pid: 1,
        job: None,
        draining: false,
    })
    .await
    .unwrap();
    match next(&mut c).await {
        GatewayFrame::Refused { version, reason } => {
            assert_eq!(version, shipwatch_protocol::PROTOCOL_VERSION);
            assert!(
                reason.contains("999") && reason.contains("restart"),
                "{reason}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let end = tokio::time::timeout(DEADLINE, c.next()).await.unwrap();
    assert!(end.is_none(), "the connection closes after a refusal");
    gw.stop().await;
}

#[tokio::test]
async fn queue_is_fifo_events_are_acked_and_concurrency_holds() {
    let gw = Gateway::start(short_tempdir("swd"), Duration::from_secs(10)).await;
    let first = gw.queue("one").await;
    let second = gw.queue("one").await;
    let wide = gw.queue("two").await;
    let mut r1 = connect(gw.dir.path(), 1, None).await;
    assert_eq!(assigned(&mut r1).await, first);
    let v = gw.wait_state(first, JobState::Running).await;
    assert!(v.started_at.is_some());
    // `one` allows one running job: the second runner gets the `two` job, not `second`.
    let mut r2 = connect(gw.dir.path(), 2, None).await;
    assert_eq!(assigned(&mut r2).await, wide);
    let mut r3 = connect(gw.dir.path(), 3, None).await;
    quiet(&mut r3).await;
    assert_eq!(gw.dispatcher.running_job_of_task("one"), Some(first));

    assert_eq!(
        send_events(&mut r1, first, vec![line(1, "a", "x"), line(2, "a", "y")]).await,
        2
    );
    assert_eq!(
        send_events(&mut r1, first, vec![job_ends(3, JobState::Succeeded, None)]).await,
        3
    );
    gw.wait_state(first, JobState::Succeeded).await;
    // The slot freed: `second` goes to an idle runner (r1 or r3).
    let got = tokio::select! {
        j = assigned(&mut r1) => j,
        j = assigned(&mut r3) => j,
    };
    assert_eq!(got, second);
    let evs = gw
        .store
        .read_events(first, 0, &EventFilter::default(), 100)
        .await
        .unwrap();
    // running (gateway), two lines, succeeded.
    assert_eq!(evs.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    drop(r2);
    gw.stop().await;
}

#[tokio::test]
async fn a_reconnecting_runner_reclaims_its_job_and_resends_once() {
    let gw = Gateway::start(short_tempdir("swd"), Duration::from_secs(10)).await;
    let job = gw.queue("one").await;
    let mut r = connect(gw.dir.path(), 1, None).await;
    assert_eq!(assigned(&mut r).await, job);
    assert_eq!(
        send_events(&mut r, job, (1..=3).map(|i| line(i, "a", "a")).collect()).await,
        3
    );
    drop(r);
    let mut r = connect(gw.dir.path(), 1, Some(job)).await;
    // Resend 2..=5 (2 and 3 already committed).
    assert_eq!(
        send_events(&mut r, job, (2..=5).map(|i| line(i, "a", "b")).collect()).await,
        5
    );
    assert_eq!(
        send_events(&mut r, job, vec![job_ends(6, JobState::Succeeded, None)]).await,
        6
    );
    gw.wait_state(job, JobState::Succeeded).await;
    let evs = gw
        .store
        .read_events(job, 0, &EventFilter::default(), 100)
        .await
        .unwrap();
    assert_eq!(evs.len(), 1 + 5 + 1, "running, 5 distinct lines, succeeded");
    gw.stop().await;
}

#[tokio::test]
async fn a_runner_gone_past_the_grace_loses_its_job() {
    let gw = Gateway::start(short_tempdir("swd"), Duration::from_millis(300)).await;
    let job = gw.queue("one").await;
    let mut r = connect(gw.dir.path(), 2, None).await;
    assert_eq!(assigned(&mut r).await, job);
    send_events(
        &mut r,
        job,
        vec![host_is(
            1,
            "a",
            shipwatch_protocol::HostState::Running,
            None,
        )],
    )
    .await;
    drop(r);
    let v = gw.wait_state(job, JobState::Lost).await;
    let reason = v.reason.unwrap();
    assert!(
        reason.contains("runner-2 disconnected") && reason.contains("did not come back"),
        "{reason}"
    );
    assert_eq!(v.counts.cancelled, 1, "the running host is cancelled");
    assert_eq!(v.counts.skipped, 1, "the pending host is skipped");
    // Coming back late: told to cancel the job, its events acked and dropped.
    let mut r = connect(gw.dir.path(), 2, Some(job)).await;
    assert_eq!(next(&mut r).await, GatewayFrame::Cancel { job });
    gw.stop().await;
}

#[tokio::test]
async fn running_jobs_wait_for_their_runner_across_a_gateway_restart() {
    let gw = Gateway::start(short_tempdir("swd"), Duration::from_millis(500)).await;
    let kept = gw.queue("one").await;
    let lost = gw.queue("two").await;
    let queued = gw.queue("one").await;
    let mut r1 = connect(gw.dir.path(), 1, None).await;
    assert_eq!(assigned(&mut r1).await, kept);
    let mut r2 = connect(gw.dir.path(), 2, None).await;
    assert_eq!(assigned(&mut r2).await, lost);
    // r2's job started (a host of it is stored running), so it cannot go back in the queue.
    assert_eq!(
        send_events(
            &mut r2,
            lost,
            vec![host_is(
                1,
                "a",
                shipwatch_protocol::HostState::Running,
                None
            )]
        )
        .await,
        1
    );
    drop((r1, r2));
    let dir = gw.stop().await;

    let gw = Gateway::start(dir, Duration::from_millis(500)).await;
    let mut r1 = connect(gw.dir.path(), 1, Some(kept)).await;
    assert_eq!(
        send_events(&mut r1, kept, vec![line(1, "a", "after restart")]).await,
        1
    );
    let v = gw.wait_state(lost, JobState::Lost).await;
    assert!(v.reason.unwrap().contains("did not reconnect"));
    assert_eq!(
        gw.store.job(kept).await.unwrap().unwrap().state,
        JobState::Running
    );
    assert_eq!(
        gw.store.job(queued).await.unwrap().unwrap().state,
        JobState::Queued
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_job_no_runner_started_before_a_gateway_restart_is_queued_again() {
    // The gateway dies holding an assignment its runner never started (the runner drops
    // a job whose Started frame it could not write): after the grace, with no runner
    // taking it back, the job is queued again and runs, not `lost`.
    let gw = Gateway::start(short_tempdir("swd"), Duration::from_millis(300)).await;
    let job = gw.queue("one").await;
    let mut r1 = connect(gw.dir.path(), 1, None).await;
    assert_eq!(assigned(&mut r1).await, job);
    let dir = gw.stop().await;
    drop(r1);

    // No runner connects until the job is queued again: an idle one would be handed it at
    // once, and the queued state would pass between two looks.
    let gw = Gateway::start(dir, Duration::from_millis(300)).await;
    let v = gw.wait_state(job, JobState::Queued).await;
    assert!(
        v.reason
            .as_deref()
            .is_some_and(|r| r.contains("restarted before its runner started it")),
        "{v:?}"
    );
    let mut r1 = connect(gw.dir.path(), 1, None).await;
    assert_eq!(assigned(&mut r1).await, job, "queued again, then assigned");
    assert_eq!(
        send_events(&mut r1, job, vec![job_ends(1, JobState::Succeeded, None)]).await,
        1
    );
    gw.wait_state(job, JobState::Succeeded).await;
    gw.stop().await;
}

#[tokio::test]
async fn cancel_queued_at_once_running_through_the_runner() {
    let gw = Gateway::start(short_tempdir("swd"), Duration::from_secs(10)).await;
    let running = gw.queue("one").await;
    let queued = gw.queue("one").await;
    let mut r = connect(gw.dir.path(), 1, None).await;
    assert_eq!(assigned(&mut r).await, running);
    assert_eq!(
        gw.dispatcher.cancel(queued).await.unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(
        gw.store.job(queued).await.unwrap().unwrap().state,
        JobState::Cancelled
    );
    assert_eq!(
        gw.dispatcher.cancel(running).await.unwrap(),
        CancelOutcome::Requested
    );
    assert_eq!(next(&mut r).await, GatewayFrame::Cancel { job: running });
    assert_eq!(
        gw.dispatcher.cancel(queued).await.unwrap(),
        CancelOutcome::AlreadyFinished(JobState::Cancelled)
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_job_its_runner_never_started_is_queued_again_and_runs() {
    // A grace far beyond the test's deadline: only the requeue can move the job on.
    let gw = Gateway::start(short_tempdir("swd"), Duration::from_secs(60)).await;
    let job = gw.queue("one").await;
    let mut r1 = connect(gw.dir.path(), 1, None).await;
    assert_eq!(assigned(&mut r1).await, job);
    // Dies holding the assignment, before saying it started.
    drop(r1);
    let v = gw.wait_state(job, JobState::Queued).await;
    assert!(v.started_at.is_none(), "{v:?}");
    let mut r2 = connect(gw.dir.path(), 2, None).await;
    assert_eq!(
        assigned(&mut r2).await,
        job,
        "the same job, to the next runner"
    );
    assert_eq!(
        send_events(&mut r2, job, vec![line(1, "a", "ran")]).await,
        1
    );
    assert_eq!(
        send_events(&mut r2, job, vec![job_ends(2, JobState::Succeeded, None)]).await,
        2
    );
    let v = gw.wait_state(job, JobState::Succeeded).await;
    assert_eq!(
        v.reason, None,
        "the requeue's reason does not stick to the run"
    );
    let evs = gw
        .store
        .read_events(job, 0, &EventFilter::default(), 100)
        .await
        .unwrap();
    let states: Vec<String> = evs
        .iter()
        .filter(|e| e.kind == "job")
        .map(|e| String::from_utf8_lossy(&e.json).into_owned())
        .collect();
    assert_eq!(
        states.len(),
        4,
        "running, queued, running, succeeded: {states:#?}"
    );
    assert!(
        states[1].contains("\"queued\"")
            && states[1].contains("runner-1 disconnected before starting it"),
        "{}",
        states[1]
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_job_two_runners_vanish_with_unstarted_is_lost() {
    let gw = Gateway::start(short_tempdir("swd"), Duration::from_secs(60)).await;
    let job = gw.queue("one").await;
    let mut r1 = connect(gw.dir.path(), 1, None).await;
    assert_eq!(assigned(&mut r1).await, job);
    drop(r1);
    gw.wait_state(job, JobState::Queued).await;
    // This one dies with the Assign unread (the gateway reads ECONNRESET, not EOF).
    let r2 = connect(gw.dir.path(), 2, None).await;
    gw.wait_state(job, JobState::Running).await;
    drop(r2);
    let v = gw.wait_state(job, JobState::Lost).await;
    let reason = v.reason.unwrap();
    assert!(
        reason.contains("runner-2") && reason.contains("not queued a third time"),
        "{reason}"
    );
    let mut r3 = connect(gw.dir.path(), 3, None).await;
    quiet(&mut r3).await;
    gw.stop().await;
}

#[tokio::test]
async fn a_job_its_runner_said_it_started_is_lost_not_queued_again() {
    let gw = Gateway::start(short_tempdir("swd"), Duration::from_millis(300)).await;
    let job = gw.queue("one").await;
    let mut r = connect(gw.dir.path(), 1, None).await;
    assert_eq!(assigned(&mut r).await, job);
    r.send(RunnerFrame::Started { job }).await.unwrap();
    drop(r);
    let v = gw.wait_state(job, JobState::Lost).await;
    assert!(v.reason.unwrap().contains("did not come back"));
    gw.stop().await;
}
