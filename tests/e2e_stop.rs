//! DESIGN §7 "Stop" on the real binary: `shipwatch up` gets SIGTERM while a job runs.

mod e2e_support;
mod support;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use e2e_support::*;
use serde_json::json;
use support::*;

const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// An odd sleep duration no other process sleeps for, this test process's pid in fixed
/// width, so parallel runs of the suite never see each other's scripts.
fn marker() -> String {
    format!("27.{:08}", std::process::id())
}

const TASKS: &str = r#"[[tasks]]
name = "hang"
hosts = ["fleet"]
transport = "local"
batch = 3
script = '''
# One host's script ignores SIGTERM (so does its sleep): only SIGKILL stops it.
[ "$SHIPWATCH_HOST" = web-02 ] && trap '' TERM
echo "started on $SHIPWATCH_HOST"
sleep "$NAP"
echo "never printed"
'''

[[tasks.params]]
name = "NAP"
pattern = "^[0-9.]+$"
required = true

[[tasks]]
name = "quick"
hosts = ["fleet"]
transport = "local"
script = 'echo "quick on $SHIPWATCH_HOST"'
"#;

#[test]
fn sigterm_mid_job_cancels_it_closes_watchers_exits_0_and_the_job_stays_final() {
    // 5 hosts in waves of 3: three run when the stop comes, two never start.
    let setup = setup("runners = 1\nstop_timeout_secs = 10", 5, TASKS);
    let mut up = Guard(setup.up(&[]));
    setup.wait_status("all running", |s| s.all_running(1));
    let port = setup.port;
    let id = create_job(port, &json!({"task": "hang", "params": {"NAP": marker()}}));

    let rt = runtime();
    let job_seen = Arc::new(AtomicU64::new(0));
    let job_watch = rt.spawn(watch_once(
        format!("ws://127.0.0.1:{port}/ws/jobs/{id}?after=0"),
        job_seen.clone(),
        Duration::from_secs(60),
    ));
    let list_seen = Arc::new(AtomicU64::new(0));
    let list_watch = rt.spawn(watch_once(
        format!("ws://127.0.0.1:{port}/ws/jobs"),
        list_seen.clone(),
        Duration::from_secs(60),
    ));
    wait_job(port, id, Duration::from_secs(30), "3 hosts running", |j| {
        j["counts"]["running"] == 3
    });
    wait_until("3 sleeps running", DEADLINE, || {
        processes_with(&format!("sleep {}", marker())).len() == 3
    });
    // The job's watcher is live: it has the 3 host and 3 line events at least.
    wait_progress(&job_seen, 6, DEADLINE, "the watcher to be live");
    // Queued behind it (one runner): stopping leaves it queued for the next start.
    let queued = create_job(port, &json!({"task": "quick"}));
    let queued_watch = rt.spawn(watch_once(
        format!("ws://127.0.0.1:{port}/ws/jobs/{queued}?after=0"),
        Arc::default(),
        Duration::from_secs(60),
    ));
    let pids = setup.status().expect("status").pids();

    let stopping = Instant::now();
    kill(up.0.id() as i32, "TERM");
    let exit = wait_exit(&mut up.0, STOP_TIMEOUT + Duration::from_secs(20));
    let took = stopping.elapsed();
    // Exited and reaped: the guard must not signal a pid that may be reused.
    std::mem::forget(up);
    assert!(exit.success(), "exit {exit:?}\n{}", log_tail(&setup, 40));
    assert!(
        took < STOP_TIMEOUT,
        "stop took {took:?}, stop_timeout is {STOP_TIMEOUT:?}\n{}",
        log_tail(&setup, 40)
    );
    for pid in pids {
        assert!(process_gone(pid), "child {pid} outlived the supervisor");
    }
    wait_until("the job's scripts gone", DEADLINE, || {
        processes_with(&marker()).is_empty()
    });

    // The job's watcher got the job's end, then 1000 (the job ended before the gateway
    // stopped: runners stop first); the job-list watcher got 1001 (the gateway went away).
    let (events, end) = rt.block_on(job_watch).expect("job watcher");
    let last = events.last().cloned().unwrap_or_default();
    assert_eq!(
        (last["kind"].as_str(), last["state"].as_str()),
        (Some("job"), Some("cancelled")),
        "the job watcher's last event (ended {end}): {events:#?}"
    );
    let cancelled_hosts = events
        .iter()
        .filter(|e| e["kind"] == "host" && e["state"] == "cancelled")
        .count();
    assert_eq!(
        cancelled_hosts, 3,
        "running hosts end cancelled: {events:#?}"
    );
    assert_eq!(end, "close 1000", "the job watcher's close");
    let (_, list_end) = rt.block_on(list_watch).expect("list watcher");
    assert_eq!(list_end, "close 1001", "the job-list watcher's close");
    let (_, queued_end) = rt.block_on(queued_watch).expect("queued job's watcher");
    assert_eq!(queued_end, "close 1001", "the queued job's watcher's close");

    // Started again on the same data_dir: the job is final and its log readable.
    let _again = Guard(setup.up(&[]));
    setup.wait_status("all running again", |s| s.all_running(1));
    let stored = job(port, id);
    assert_eq!(stored["state"], "cancelled", "{stored:#}");
    assert!(stored["ended_at"].is_string(), "{stored:#}");
    assert_eq!(stored["counts"]["cancelled"], 3, "{stored:#}");
    assert_eq!(stored["counts"]["skipped"], 2, "{stored:#}");
    assert_eq!(stored["counts"]["running"], 0, "{stored:#}");
    let log = stored_log(port, id);
    assert_gapless(&log);
    assert_eq!(
        log.iter()
            .filter(|e| e
                .text
                .as_deref()
                .is_some_and(|t| t.starts_with("started on")))
            .count(),
        3,
        "the lines printed before the stop were kept"
    );
    assert_eq!(
        log.last().map(|e| (e.kind.as_str(), e.state.as_deref())),
        Some(("job", Some("cancelled")))
    );
    let as_watched: Vec<Event> = events.iter().map(Event::from_json).collect();
    assert!(
        as_watched == log,
        "the watcher saw the stored log exactly:\nwatched {as_watched:#?}\nstored {log:#?}"
    );
    let (status, text) = http(port, "GET", &format!("/api/jobs/{id}/log"), "");
    assert_eq!(status, 200);
    assert!(text.contains("web-01 stdout| started on web-01"), "{text}");
    // The job queued at the stop runs now.
    let quick = wait_job(
        port,
        queued,
        Duration::from_secs(30),
        "the end",
        is_terminal,
    );
    assert_eq!(quick["state"], "succeeded", "{quick:#}");
}

#[test]
fn scale_down_mid_job_drains_the_runner_and_no_queued_job_goes_to_it() {
    let setup = Setup::new("");
    let dir = setup.dir.path().to_path_buf();
    let tasks = format!(
        r#"[[tasks]]
name = "hold"
hosts = ["fleet"]
transport = "local"
batch = 2
concurrency = 3
script = '''
echo "holding on $SHIPWATCH_HOST"
for i in $(seq 1 600); do [ -e {dir}/go-$SHIPWATCH_JOB ] && break; sleep 0.05; done
echo "released on $SHIPWATCH_HOST"
'''
"#,
        dir = dir.display()
    );
    let supervisor = |runners: u32| format!("runners = {runners}\ndrain_timeout_secs = 60");
    setup.write_raw(&config_text(&setup, &supervisor(2), 2, &tasks));
    let _up = Guard(setup.up(&[]));
    let before = setup.wait_status("all running", |s| s.all_running(2));
    let port = setup.port;
    let first = create_job(port, &json!({"task": "hold"}));
    let second = create_job(port, &json!({"task": "hold"}));
    for id in [first, second] {
        wait_job(port, id, Duration::from_secs(30), "2 hosts running", |j| {
            j["counts"]["running"] == 2
        });
    }
    let runner_1 = before.pid("runner-1");
    let mut on_1 = std::collections::BTreeSet::new();
    wait_until("runner-1's job found", DEADLINE, || {
        on_1 = jobs_run_under(runner_1);
        on_1.len() == 1
    });
    let on_1 = on_1.into_iter().next().unwrap_or_default();
    let on_0 = if on_1 == first { second } else { first };

    // Scale down: runner-1 drains.
    setup.write_raw(&config_text(&setup, &supervisor(1), 2, &tasks));
    let reload = setup.ctl(&["reload"]);
    assert!(reload.status.success(), "{reload:?}");
    setup.wait_status("runner-1 draining", |s| {
        s.get("runner-1").is_some_and(|p| p.state == "stopping")
    });
    // Queued now; it must wait for runner-0, never go to the draining runner.
    let third = create_job(port, &json!({"task": "hold"}));
    std::fs::write(dir.join(format!("go-{third}")), "").expect("go");

    std::fs::write(dir.join(format!("go-{on_1}")), "").expect("go");
    let done = wait_job(port, on_1, Duration::from_secs(30), "the end", is_terminal);
    assert_eq!(
        done["state"], "succeeded",
        "the draining runner finished: {done:#}"
    );
    setup.wait_status("runner-1 gone", |s| {
        s.processes.len() == 2 && s.get("runner-1").is_none()
    });
    assert_eq!(
        job(port, third)["state"],
        "queued",
        "the job queued during the drain waits for runner-0"
    );

    std::fs::write(dir.join(format!("go-{on_0}")), "").expect("go");
    for id in [on_0, third] {
        let done = wait_job(port, id, Duration::from_secs(30), "the end", is_terminal);
        assert_eq!(done["state"], "succeeded", "job {id}: {done:#}");
        assert_eq!(done["counts"]["ok"], 2, "{done:#}");
    }
}
