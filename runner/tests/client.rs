//! The runner's protocol client against a test double of the gateway: a Unix listener
//! speaking the frames through the same codec.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use shipwatch_protocol::{
    EventBody, GatewayFrame, HostState, JobSpec, JobState, PROTOCOL_VERSION, RunnerEvent,
    RunnerFrame,
};
use shipwatch_runner::client::{ClientConfig, serve};
use shipwatch_runner::{Codec, HostContext};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

type GatewayCodec = shipwatch_protocol::GatewayCodec;
type Conn = Framed<UnixStream, GatewayCodec>;

const LONG: Duration = Duration::from_secs(30);

struct Harness {
    dir: tempfile::TempDir,
    shutdown: CancellationToken,
    drain: CancellationToken,
    runner: tokio::task::JoinHandle<Result<(), shipwatch_runner::client::ClientError>>,
}

impl Harness {
    fn start(max_buffer_bytes: usize) -> Harness {
        // Longer than any test: the doubles below do not send heartbeats.
        Harness::start_with(max_buffer_bytes, Duration::from_secs(600))
    }

    fn start_with(max_buffer_bytes: usize, silence: Duration) -> Harness {
        let dir = tempfile::Builder::new()
            .prefix("swc")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let shutdown = CancellationToken::new();
        let drain = CancellationToken::new();
        let cfg = ClientConfig {
            socket: dir.path().join("runners.sock"),
            index: 3,
            hosts: HostContext {
                control_dir: dir.path().to_owned(),
                control_persist_secs: 5,
            },
            max_buffer_bytes,
            heartbeat: Duration::from_millis(500),
            silence,
            stop_timeout: Duration::from_secs(20),
        };
        let runner = tokio::spawn(serve(cfg, Codec::default, shutdown.clone(), drain.clone()));
        Harness {
            dir,
            shutdown,
            drain,
            runner,
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("runners.sock")
    }

    /// Listens (again), accepts the runner and answers its hello.
    async fn accept(&self) -> (Conn, Option<u64>, bool) {
        let _ = std::fs::remove_file(self.socket());
        let listener = UnixListener::bind(self.socket()).expect("bind");
        let (stream, _) = tokio::time::timeout(LONG, listener.accept())
            .await
            .expect("runner connects")
            .expect("accept");
        let mut conn = Framed::new(stream, GatewayCodec::default());
        match recv(&mut conn).await {
            RunnerFrame::Hello {
                version,
                runner,
                job,
                draining,
                ..
            } => {
                assert_eq!((version, runner), (PROTOCOL_VERSION, 3));
                conn.send(GatewayFrame::Welcome { version })
                    .await
                    .expect("welcome");
                (conn, job, draining)
            }
            other => panic!("expected a hello, got {other:?}"),
        }
    }

    async fn finish(self) {
        let result = tokio::time::timeout(LONG, self.runner)
            .await
            .expect("runner exits")
            .expect("join");
        assert!(result.is_ok(), "{result:?}");
    }
}

async fn recv(conn: &mut Conn) -> RunnerFrame {
    loop {
        let frame = tokio::time::timeout(LONG, conn.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("valid");
        if frame != RunnerFrame::Heartbeat {
            return frame;
        }
    }
}

fn spec(script: &str, hosts: usize, dir: &Path) -> Box<JobSpec> {
    let hosts: Vec<String> = (0..hosts).map(|i| format!("l{i}")).collect();
    Box::new(JobSpec {
        timeout_secs: 120,
        params: BTreeMap::from([("DIR".to_owned(), dir.display().to_string())]),
        ..JobSpec::local("t", script, &hosts)
    })
}

/// Receives events until the job's final event; acks each frame when `ack`.
async fn collect_until_job_end(
    conn: &mut Conn,
    job: u64,
    ack: bool,
    into: &mut Vec<RunnerEvent>,
) -> JobState {
    loop {
        if let RunnerFrame::Events { job: j, events } = recv(conn).await {
            assert_eq!(j, job);
            let last = events.last().expect("non-empty frame").rseq;
            let mut end = None;
            for e in events {
                if let EventBody::Job { state, .. } = e.body
                    && state != JobState::Running
                {
                    end = Some(state);
                }
                into.push(e);
            }
            if ack {
                conn.send(GatewayFrame::Ack { job, rseq: last })
                    .await
                    .expect("ack");
            }
            if let Some(state) = end {
                return state;
            }
        }
    }
}

fn assert_gapless(events: &[RunnerEvent]) {
    let rseqs: Vec<u64> = events.iter().map(|e| e.rseq).collect();
    let expect: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(rseqs, expect, "rseq from 1, gapless, no duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_events_are_resent_after_reconnect() {
    let h = Harness::start(64 << 20);
    let (mut conn, job, _) = h.accept().await;
    assert_eq!(job, None);
    let script = "for i in $(seq 1 300); do echo line $i; [ $((i % 50)) = 0 ] && sleep 0.1; done\n";
    conn.send(GatewayFrame::Assign {
        job: 9,
        spec: spec(script, 2, h.dir.path()),
    })
    .await
    .expect("assign");
    // Take some events, ack only part of them, then drop the connection.
    let mut first = Vec::new();
    while first.len() < 100 {
        if let RunnerFrame::Events { events, .. } = recv(&mut conn).await {
            first.extend(events);
        }
    }
    let acked = 40;
    conn.send(GatewayFrame::Ack {
        job: 9,
        rseq: acked,
    })
    .await
    .expect("ack");
    // Give the ack a moment to be read before we go: wait for the next frame.
    let _ = recv(&mut conn).await;
    drop(conn);

    let (mut conn, job, _) = h.accept().await;
    assert_eq!(job, Some(9), "hello names the job with unacked events");
    let mut second = Vec::new();
    assert_eq!(
        collect_until_job_end(&mut conn, 9, true, &mut second).await,
        JobState::Succeeded
    );
    let resumed = second.first().expect("events").rseq;
    assert!(
        resumed <= acked + 1,
        "nothing past the ack is lost (resumed at {resumed})"
    );
    // The gateway's view: committed through `acked`, then the resend, deduped by rseq.
    let mut all: Vec<RunnerEvent> = first.into_iter().filter(|e| e.rseq <= acked).collect();
    all.extend(second.into_iter().filter(|e| e.rseq > acked));
    assert_gapless(&all);
    let lines = all
        .iter()
        .filter(|e| matches!(e.body, EventBody::Line { .. }))
        .count();
    assert_eq!(lines, 600);
    h.shutdown.cancel();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_away_blocks_the_script_and_loses_nothing() {
    let h = Harness::start(256 << 10);
    let (mut conn, _, _) = h.accept().await;
    // 20,000 lines of 100 bytes = 2 MB, far over the 256 KiB buffer; the script records
    // how far it got.
    let script = "for i in $(seq 1 20000); do printf '%099d\\n' $i; echo $i > \"$DIR/at\"; done; echo done > \"$DIR/at\"\n";
    conn.send(GatewayFrame::Assign {
        job: 4,
        spec: spec(script, 1, h.dir.path()),
    })
    .await
    .expect("assign");
    let _ = recv(&mut conn).await;
    drop(conn);
    let _ = std::fs::remove_file(h.socket());
    // The script stalls: its progress stops changing while nobody reads.
    let at = h.dir.path().join("at");
    let progress = || {
        std::fs::read_to_string(&at)
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let deadline = tokio::time::Instant::now() + LONG;
    let mut last = progress();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = progress();
        if now == last && !now.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the script never stalled"
        );
        last = now;
    }
    assert_ne!(
        last, "done",
        "the script finished with the gateway away: output was buffered without bound"
    );
    let stalled_at: u64 = last.parse().expect("a line number");
    assert!(
        stalled_at < 10_000,
        "stalled only at line {stalled_at}: the buffer is not bounded"
    );

    let (mut conn, job, _) = h.accept().await;
    assert_eq!(job, Some(4));
    let mut events = Vec::new();
    assert_eq!(
        collect_until_job_end(&mut conn, 4, true, &mut events).await,
        JobState::Succeeded
    );
    assert_eq!(progress(), "done");
    // Before the drop the runner sent a prefix we never acked; after the reconnect it
    // resent from rseq 1.
    assert_gapless(&events);
    let lines = events
        .iter()
        .filter(|e| matches!(e.body, EventBody::Line { .. }))
        .count();
    assert_eq!(lines, 20_000);
    h.shutdown.cancel();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_job() {
    let h = Harness::start(64 << 20);
    let (mut conn, _, _) = h.accept().await;
    conn.send(GatewayFrame::Assign {
        job: 5,
        spec: spec("echo up\nsleep 300\n", 2, h.dir.path()),
    })
    .await
    .expect("assign");
    let mut events = Vec::new();
    let mut up = 0;
    while up < 2 {
        if let RunnerFrame::Events { events: batch, .. } = recv(&mut conn).await {
            up += batch
                .iter()
                .filter(|e| matches!(&e.body, EventBody::Line { text, .. } if text == "up"))
                .count();
            events.extend(batch);
        }
    }
    conn.send(GatewayFrame::Cancel { job: 5 })
        .await
        .expect("cancel");
    assert_eq!(
        collect_until_job_end(&mut conn, 5, true, &mut events).await,
        JobState::Cancelled
    );
    let cancelled = events
        .iter()
        .filter(|e| {
            matches!(
                e.body,
                EventBody::Host {
                    state: HostState::Cancelled,
                    ..
                }
            )
        })
        .count();
    assert_eq!(cancelled, 2);
    assert_gapless(&events);
    h.shutdown.cancel();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_finishes_the_job_then_exits() {
    let h = Harness::start(64 << 20);
    let (mut conn, _, _) = h.accept().await;
    conn.send(GatewayFrame::Assign {
        job: 6,
        spec: spec("echo a\nsleep 1\necho b\n", 1, h.dir.path()),
    })
    .await
    .expect("assign");
    // Drain once the job runs (SIGUSR2 mid-job).
    let mut events = Vec::new();
    if let RunnerFrame::Events { events: batch, .. } = recv(&mut conn).await {
        events.extend(batch);
    }
    h.drain.cancel();
    let mut saw_draining = false;
    loop {
        match recv(&mut conn).await {
            RunnerFrame::Draining => saw_draining = true,
            RunnerFrame::Events { job, events: batch } => {
                let last = batch.last().expect("events").rseq;
                let end = batch.iter().any(|e| {
                    matches!(
                        e.body,
                        EventBody::Job {
                            state: JobState::Succeeded,
                            ..
                        }
                    )
                });
                events.extend(batch);
                conn.send(GatewayFrame::Ack { job, rseq: last })
                    .await
                    .expect("ack");
                if end {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(saw_draining);
    assert_gapless(&events);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_cancels_and_waits_for_the_ack() {
    let h = Harness::start(64 << 20);
    let (mut conn, _, _) = h.accept().await;
    conn.send(GatewayFrame::Assign {
        job: 8,
        spec: spec("echo up\nsleep 300\n", 1, h.dir.path()),
    })
    .await
    .expect("assign");
    let mut events = Vec::new();
    while !events
        .iter()
        .any(|e: &RunnerEvent| matches!(&e.body, EventBody::Line { text, .. } if text == "up"))
    {
        if let RunnerFrame::Events { events: batch, .. } = recv(&mut conn).await {
            events.extend(batch);
        }
    }
    h.shutdown.cancel();
    assert_eq!(
        collect_until_job_end(&mut conn, 8, true, &mut events).await,
        JobState::Cancelled
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_says_draining_and_a_job_assigned_meanwhile_ends_cancelled() {
    let h = Harness::start(64 << 20);
    let (mut conn, _, _) = h.accept().await;
    // A job ends; its events are not acked yet, so the stopping runner waits.
    conn.send(GatewayFrame::Assign {
        job: 4,
        spec: spec("echo hi\n", 1, h.dir.path()),
    })
    .await
    .expect("assign");
    let mut first = Vec::new();
    collect_until_job_end(&mut conn, 4, false, &mut first).await;
    h.shutdown.cancel();
    // First the runner tells the gateway to hand it nothing more…
    assert_eq!(recv(&mut conn).await, RunnerFrame::Draining);
    // …and a job the gateway assigned before reading that is not left hanging: it ends
    // at once, its hosts skipped, instead of staying "running" until it is lost.
    conn.send(GatewayFrame::Assign {
        job: 5,
        spec: spec("echo never\n", 2, h.dir.path()),
    })
    .await
    .expect("assign");
    let last = first.last().expect("events").rseq;
    conn.send(GatewayFrame::Ack { job: 4, rseq: last })
        .await
        .expect("ack");
    let mut events = Vec::new();
    let end = collect_until_job_end(&mut conn, 5, true, &mut events).await;
    assert_eq!(end, JobState::Cancelled);
    assert!(
        events
            .iter()
            .all(|e| !matches!(e.body, EventBody::Line { .. })),
        "nothing ran: {events:?}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(
                e.body,
                EventBody::Host {
                    state: HostState::Skipped,
                    ..
                }
            ))
            .count(),
        2
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_gateway_is_dropped_and_the_events_resent() {
    let silence = Duration::from_secs(2);
    let h = Harness::start_with(64 << 20, silence);
    let (mut conn, _, _) = h.accept().await;
    let script = "echo before; while [ ! -e \"$DIR/go\" ]; do sleep 0.05; done; echo after\n";
    conn.send(GatewayFrame::Assign {
        job: 6,
        spec: spec(script, 1, h.dir.path()),
    })
    .await
    .expect("assign");
    // A gateway that heartbeats is kept for well past `silence`, without any ack.
    let mut first = Vec::new();
    let kept_until = tokio::time::Instant::now() + silence * 2;
    let mut last_heartbeat = tokio::time::Instant::now();
    while tokio::time::Instant::now() < kept_until {
        conn.send(GatewayFrame::Heartbeat)
            .await
            .expect("a heartbeating gateway stays connected");
        last_heartbeat = tokio::time::Instant::now();
        let frame = tokio::time::timeout(Duration::from_millis(300), conn.next()).await;
        match frame {
            Ok(Some(Ok(RunnerFrame::Events { events, .. }))) => first.extend(events),
            Ok(Some(Ok(_))) | Err(_) => {}
            Ok(other) => panic!("the runner dropped a heartbeating gateway: {other:?}"),
        }
    }
    assert!(
        first
            .iter()
            .any(|e| matches!(&e.body, EventBody::Line { text, .. } if text == "before")),
        "the first line went out: {first:?}"
    );

    // Silent from now on (the connection stays open): the runner hangs up on its own.
    let went_silent = tokio::time::Instant::now();
    loop {
        match tokio::time::timeout_at(went_silent + LONG, conn.next()).await {
            Ok(Some(Ok(_))) => {}
            Ok(None | Some(Err(_))) => break,
            Err(_) => panic!("the runner kept a silent gateway for {LONG:?}"),
        }
    }
    // Silence began with the last heartbeat (up to 300 ms before the loop ended).
    let waited = last_heartbeat.elapsed();
    assert!(
        waited >= silence - Duration::from_millis(200),
        "dropped after {waited:?}, before {silence:?} of silence"
    );

    // It redials, names its job, and resends what was never acked.
    let (mut conn, job, _) = h.accept().await;
    assert_eq!(job, Some(6));
    std::fs::write(h.dir.path().join("go"), "").expect("go");
    let mut events = Vec::new();
    assert_eq!(
        collect_until_job_end(&mut conn, 6, true, &mut events).await,
        JobState::Succeeded
    );
    assert_gapless(&events);
    let lines: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Line { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(lines, ["before", "after"]);
    h.shutdown.cancel();
    h.finish().await;
}
