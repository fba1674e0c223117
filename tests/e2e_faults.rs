//! DESIGN §9 on the real binary: `shipwatch up` with its real gateway and runners, jobs
//! created over HTTP, watchers on real WebSockets, and processes killed with SIGKILL
//! while lines flow.

mod e2e_support;
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use e2e_support::*;
use serde_json::json;
use support::*;

const HOSTS: usize = 20;
/// Per host: 40 bursts of 90 stdout and 10 stderr lines, 0.2 s apart: 4,000 lines a host,
/// 80,000 in all, over several seconds so the kills land mid-job.
const BURSTS: usize = 40;
const OUT_PER_BURST: usize = 90;
const ERR_PER_BURST: usize = 10;

fn flood_task() -> String {
    format!(
        r#"[[tasks]]
name = "flood"
hosts = ["fleet"]
transport = "local"
batch = {HOSTS}
timeout_secs = 300
script = '''
o=0
e=0
for b in $(seq 1 {BURSTS}); do
  for i in $(seq 1 {OUT_PER_BURST}); do o=$((o+1)); echo "o $o"; done
  for i in $(seq 1 {ERR_PER_BURST}); do e=$((e+1)); echo "e $e" >&2; done
  sleep 0.2
done
'''
"#
    )
}

/// Every host's numbered lines 1..N on each stream, once each and in order, stdout and
/// stderr apart; each host `running` then `ok`; the job's last event `succeeded`.
fn assert_flood_log_complete(log: &[Event]) {
    let mut lines: BTreeMap<(String, String), Vec<&str>> = BTreeMap::new();
    let mut host_states: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut job_states = Vec::new();
    for e in log {
        match e.kind.as_str() {
            "line" => lines
                .entry((
                    e.host.clone().unwrap_or_default(),
                    e.stream.clone().unwrap_or_default(),
                ))
                .or_default()
                .push(e.text.as_deref().unwrap_or_default()),
            "host" => host_states
                .entry(e.host.clone().unwrap_or_default())
                .or_default()
                .push(e.state.clone().unwrap_or_default()),
            "job" => job_states.push(e.state.clone().unwrap_or_default()),
            other => panic!("unexpected event kind {other}: {e:?}"),
        }
    }
    for host in host_names(HOSTS) {
        for (stream, tag, n) in [
            ("stdout", "o", BURSTS * OUT_PER_BURST),
            ("stderr", "e", BURSTS * ERR_PER_BURST),
        ] {
            let got = lines
                .get(&(host.clone(), stream.to_owned()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            let want: Vec<String> = (1..=n).map(|i| format!("{tag} {i}")).collect();
            if got != want {
                let first_bad = got
                    .iter()
                    .zip(&want)
                    .position(|(g, w)| g != w)
                    .unwrap_or(got.len().min(want.len()));
                panic!(
                    "{host} {stream}: {} lines stored, {n} printed; first difference at \
                     index {first_bad}: got {:?}, want {:?}",
                    got.len(),
                    got.get(first_bad),
                    want.get(first_bad)
                );
            }
        }
        assert_eq!(
            host_states.get(&host).map(Vec::as_slice),
            Some(&["running".to_owned(), "ok".to_owned()][..]),
            "{host}'s host events"
        );
    }
    assert_eq!(
        lines.len(),
        HOSTS * 2,
        "lines from unknown hosts or streams"
    );
    assert_eq!(
        job_states,
        ["running", "succeeded"],
        "the job starts once and ends once"
    );
    assert_eq!(
        log.last().map(|e| e.kind.as_str()),
        Some("job"),
        "the final job event is the last event"
    );
}

fn kill_gateway_and_wait_back(setup: &Setup, restarts: u64) {
    let before = setup.wait_status("gateway running", |s| {
        s.get("gateway").is_some_and(|p| p.state == "running")
    });
    let pid = before.pid("gateway");
    kill(pid, "KILL");
    setup.wait_status("gateway restarted", |s| {
        s.get("gateway").is_some_and(|p| {
            p.state == "running" && p.pid.is_some_and(|p| p != pid) && p.restarts == restarts
        })
    });
}

#[test]
fn gateway_killed_twice_mid_job_every_line_stored_and_watched_exactly_once() {
    let setup = setup("runners = 2", HOSTS, &flood_task());
    let _up = Guard(setup.up(&[]));
    setup.wait_status("all running", |s| s.all_running(2));
    let port = setup.port;
    let id = create_job(port, &json!({"task": "flood"}));

    let rt = runtime();
    let deadline = Duration::from_secs(120);
    let mut plans = vec![
        WatchPlan::new("all", "", 0),
        WatchPlan::new("all-again", "", 0),
        WatchPlan::new("after-5000", "", 5000),
        WatchPlan::new("stderr", "streams=stderr", 0),
        WatchPlan::new("stdout-after-20000", "streams=stdout", 20_000),
        WatchPlan::new("web-03", "hosts=web-03", 0),
        WatchPlan::new("two-hosts-stderr", "hosts=web-07,web-15&streams=stderr", 0),
        WatchPlan::new("states", "kinds=host,job", 0),
        WatchPlan::new("web-20-lines", "kinds=line&hosts=web-20", 0),
        WatchPlan {
            churn_every: Some(7_000),
            ..WatchPlan::new("churn", "", 0)
        },
        WatchPlan {
            slow: Some(Duration::from_millis(20)),
            ..WatchPlan::new("slow", "", 0)
        },
    ];
    let progress: Vec<Arc<AtomicU64>> = plans.iter().map(|_| Arc::default()).collect();
    let mut watchers: Vec<_> = plans
        .iter()
        .zip(&progress)
        .map(|(plan, cell)| rt.spawn(follow(port, id, plan.clone(), cell.clone(), deadline)))
        .collect();

    // First kill: lines are flowing and the job runs.
    wait_progress(
        &progress[0],
        12_000,
        Duration::from_secs(60),
        "12,000 events",
    );
    let running = job(port, id);
    assert_eq!(running["state"], "running", "{running:#}");
    kill_gateway_and_wait_back(&setup, 1);
    let killed_at_1 = progress[0].load(std::sync::atomic::Ordering::SeqCst);

    // A late joiner after the first restart replays from the start.
    let late = WatchPlan::new("late-after-kill", "", 0);
    let late_progress = Arc::new(AtomicU64::new(0));
    watchers.push(rt.spawn(follow(
        port,
        id,
        late.clone(),
        late_progress.clone(),
        deadline,
    )));
    plans.push(late);

    // Second kill, once the watchers have caught up past the first.
    wait_progress(
        &progress[0],
        45_000,
        Duration::from_secs(60),
        "45,000 events",
    );
    let second_mid_job = job(port, id)["state"] == "running";
    kill_gateway_and_wait_back(&setup, 2);

    let done = wait_job(port, id, Duration::from_secs(90), "the end", is_terminal);
    assert_eq!(
        done["state"],
        "succeeded",
        "{done:#}\n{}",
        log_tail(&setup, 40)
    );
    assert_eq!(done["counts"]["ok"], HOSTS, "{done:#}");
    let hosts = done["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), HOSTS);
    assert!(hosts.iter().all(|h| h["state"] == "ok"), "{done:#}");

    let log = stored_log(port, id);
    assert_gapless(&log);
    assert_flood_log_complete(&log);
    assert!(
        log.len() as u64 > killed_at_1,
        "the first kill happened before the end"
    );

    let seen: Vec<Seen> = rt.block_on(async {
        let mut all = Vec::new();
        for w in watchers {
            all.push(w.await.expect("watcher task"));
        }
        all
    });
    let mut failures = Vec::new();
    for (plan, seen) in plans.iter().zip(&seen) {
        if let Err(e) = check_watcher(plan, seen, &log) {
            failures.push(e);
        }
        if seen.final_code() != Some(1000) {
            failures.push(format!("{}: ended {:?}", plan.name, seen.ends));
        }
    }
    assert!(failures.is_empty(), "watchers: {failures:#?}");
    // Every watcher connected before the first kill lost its socket at least twice.
    for (plan, seen) in plans
        .iter()
        .zip(&seen)
        .filter(|(p, _)| !p.name.starts_with("late"))
    {
        assert!(
            seen.connects >= 2,
            "{} reconnected only {} times: {:?}",
            plan.name,
            seen.connects,
            seen.ends
        );
    }

    // And a watcher after the end replays the same log, then 1000.
    let replay = rt.block_on(follow(
        port,
        id,
        WatchPlan::new("replay", "", 0),
        Arc::default(),
        Duration::from_secs(30),
    ));
    assert_eq!(replay.final_code(), Some(1000), "{:?}", replay.ends);
    assert!(
        replay.events == log,
        "the WebSocket replay differs from the stored log"
    );
    eprintln!(
        "gateway killed at ~{killed_at_1} and (mid-job: {second_mid_job}) ~45,000 of {} events",
        log.len()
    );
}

const HANG_TASKS: &str = r#"[[tasks]]
name = "hang"
hosts = ["fleet"]
transport = "local"
batch = 5
script = '''
echo "started on $SHIPWATCH_HOST"
sleep "$NAP"
echo done
'''

[[tasks.params]]
name = "NAP"
pattern = "^[0-9.]+$"
default = "0.1"

[[tasks]]
name = "quick"
hosts = ["fleet"]
transport = "local"
script = 'echo "quick on $SHIPWATCH_HOST"'
"#;

/// An odd sleep duration no other process sleeps for, this test process's pid in fixed
/// width, so parallel runs of the suite never see each other's scripts.
fn marker(whole_seconds: u32) -> String {
    format!("{whole_seconds}.{:08}", std::process::id())
}

#[test]
fn runner_killed_mid_job_job_lost_with_reason_scripts_gone_queue_moves_on() {
    let setup = setup("runners = 1", 5, HANG_TASKS);
    let _up = Guard(setup.up(&[]));
    let before = setup.wait_status("all running", |s| s.all_running(1));
    let port = setup.port;

    let hung = create_job(
        port,
        &json!({"task": "hang", "params": {"NAP": marker(31)}}),
    );
    let rt = runtime();
    let watcher = rt.spawn(watch_once(
        format!("ws://127.0.0.1:{port}/ws/jobs/{hung}?after=0"),
        Arc::default(),
        Duration::from_secs(60),
    ));
    wait_job(
        port,
        hung,
        Duration::from_secs(30),
        "5 hosts running",
        |j| j["counts"]["running"] == 5,
    );
    wait_until("5 sleeps running", DEADLINE, || {
        processes_with(&format!("sleep {}", marker(31))).len() == 5
    });
    // Queued behind it: the only runner is busy.
    let next = create_job(port, &json!({"task": "quick"}));
    assert_eq!(job(port, next)["state"], "queued");

    let runner = before.pid("runner-0");
    kill(runner, "KILL");
    setup.wait_status("runner-0 restarted", |s| {
        s.get("runner-0").is_some_and(|p| {
            p.state == "running" && p.pid.is_some_and(|p| p != runner) && p.restarts == 1
        })
    });

    // The lifeline closed with the runner: no script process of the job is left.
    wait_until("the killed job's scripts gone", DEADLINE, || {
        processes_with(&marker(31)).is_empty()
    });

    // The queue keeps moving on the restarted runner.
    let quick = wait_job(port, next, Duration::from_secs(30), "the end", is_terminal);
    assert_eq!(
        quick["state"],
        "succeeded",
        "{quick:#}\n{}",
        log_tail(&setup, 40)
    );

    // After the grace period the killed runner's job is lost, with a reason.
    let lost = wait_job(port, hung, Duration::from_secs(40), "the end", is_terminal);
    assert_eq!(lost["state"], "lost", "{lost:#}");
    let reason = lost["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("runner-0"),
        "reason names the runner: {lost:#}"
    );
    assert_eq!(lost["counts"]["running"], 0, "{lost:#}");
    assert_eq!(lost["counts"]["cancelled"], 5, "{lost:#}");
    let log = stored_log(port, hung);
    assert_gapless(&log);
    let last = log.last().expect("events");
    assert_eq!(
        (last.kind.as_str(), last.state.as_deref()),
        ("job", Some("lost")),
        "the lost job's log ends with its final event"
    );
    // Its watcher, connected all along, saw exactly that log and then 1000.
    let (events, end) = rt.block_on(watcher).expect("watcher");
    assert_eq!(end, "close 1000", "{events:#?}");
    let watched: Vec<Event> = events.iter().map(Event::from_json).collect();
    assert!(
        watched == log,
        "the watcher saw the stored log: {watched:#?}"
    );
    assert_eq!(
        log.iter()
            .filter(|e| e
                .text
                .as_deref()
                .is_some_and(|t| t.starts_with("started on")))
            .count(),
        5,
        "every host's first line was stored"
    );

    // Its task's slot is free again: the same task runs to the end.
    let again = create_job(port, &json!({"task": "hang"}));
    let again = wait_job(port, again, Duration::from_secs(30), "the end", is_terminal);
    assert_eq!(again["state"], "succeeded", "{again:#}");
}

#[test]
fn supervisor_killed_mid_job_leaves_no_process_and_the_next_up_marks_the_job_lost() {
    let setup = setup("runners = 1", 5, HANG_TASKS);
    let mut up = Guard(setup.up(&[]));
    let before = setup.wait_status("all running", |s| s.all_running(1));
    let port = setup.port;
    // Its own marker: this test runs beside the runner test in the same process.
    let marker = marker(32);
    let hung = create_job(port, &json!({"task": "hang", "params": {"NAP": marker}}));
    wait_job(
        port,
        hung,
        Duration::from_secs(30),
        "5 hosts running",
        |j| j["counts"]["running"] == 5,
    );
    wait_until("5 sleeps running", DEADLINE, || {
        processes_with(&format!("sleep {marker}")).len() == 5
    });

    kill(up.0.id() as i32, "KILL");
    wait_exit(&mut up.0, DEADLINE);
    // Exited and reaped: the guard must not signal a pid that may be reused.
    std::mem::forget(up);
    for pid in before.pids() {
        wait_until(
            &format!("child {pid} gone with the supervisor"),
            DEADLINE,
            || process_gone(pid),
        );
    }
    wait_until("the job's scripts gone", DEADLINE, || {
        processes_with(&marker).is_empty()
    });

    // Started again over the stale sockets: everything comes up, the orphaned job is
    // lost after the grace period, and the task runs again.
    let _again = Guard(setup.up(&[]));
    setup.wait_status("all running again", |s| s.all_running(1));
    let lost = wait_job(port, hung, Duration::from_secs(40), "the end", is_terminal);
    assert_eq!(lost["state"], "lost", "{lost:#}");
    assert!(
        lost["reason"]
            .as_str()
            .is_some_and(|r| r.contains("did not reconnect")),
        "{lost:#}"
    );
    assert_eq!(lost["counts"]["cancelled"], 5, "{lost:#}");
    let again = create_job(port, &json!({"task": "hang"}));
    let again = wait_job(port, again, Duration::from_secs(30), "the end", is_terminal);
    assert_eq!(again["state"], "succeeded", "{again:#}");
}

/// Sends SIGCONT to a stopped process when dropped, so a failing test leaves nothing
/// frozen behind.
struct Resume(i32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-CONT")
            .arg(self.0.to_string())
            .status();
    }
}

fn rss_bytes(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Lines of 60,000 bytes from web-01: more than the runner's 64 MiB of unacked events.
const BIG_LINES: usize = 1300;
const SMALL_LINES: usize = 10;

#[test]
fn gateway_stalled_while_hosts_finish_under_backpressure_loses_no_line() {
    stalled_gateway_under_backpressure(AfterStall::Resume);
}

#[test]
fn gateway_stalled_then_killed_under_backpressure_resends_all_and_loses_no_line() {
    stalled_gateway_under_backpressure(AfterStall::Kill);
}

/// What ends the gateway's stall.
#[derive(PartialEq)]
enum AfterStall {
    /// SIGCONT: the same gateway reads on.
    Resume,
    /// SIGKILL: the supervisor starts a new one and the runner resends its whole buffer.
    Kill,
}

fn stalled_gateway_under_backpressure(after: AfterStall) {
    let setup = Setup::new("");
    let dir = setup.dir.path().to_path_buf();
    let go = dir.join("go");
    let go_small = dir.join("go-small");
    let tasks = format!(
        r#"[[tasks]]
name = "big"
hosts = ["fleet"]
transport = "local"
batch = 5
script = '''
for i in $(seq 1 600); do [ -e {go} ] && break; sleep 0.05; done
if [ "$SHIPWATCH_HOST" = web-01 ]; then
  x=$(head -c 60000 /dev/zero | tr '\0' x)
  for i in $(seq 1 {BIG_LINES}); do printf '%05d %s\n' $i "$x"; done
else
  for i in $(seq 1 600); do [ -e {go_small} ] && break; sleep 0.05; done
  for i in $(seq 1 {SMALL_LINES}); do echo "small $i"; done
  touch {exited}-$SHIPWATCH_HOST
fi
'''
"#,
        go = go.display(),
        go_small = go_small.display(),
        exited = dir.join("exited").display(),
    );
    setup.write_raw(&config_text(&setup, "runners = 1", 5, &tasks));
    let _up = Guard(setup.up(&[]));
    let status = setup.wait_status("all running", |s| s.all_running(1));
    let port = setup.port;
    let id = create_job(port, &json!({"task": "big"}));
    wait_job(port, id, Duration::from_secs(30), "5 hosts running", |j| {
        j["counts"]["running"] == 5
    });

    // The gateway stalls (no acks); web-01 fills the runner's bounded buffer and blocks.
    let gateway = status.pid("gateway");
    kill(gateway, "STOP");
    let resume = Resume(gateway);
    std::fs::write(&go, "").expect("go");
    let runner = status.pid("runner-0");
    // Full: past 64 MiB and no longer growing (web-01 blocks on its pipe).
    let mut last = (0, std::time::Instant::now());
    wait_until("the runner's buffer full", Duration::from_secs(60), || {
        let rss = rss_bytes(runner);
        if rss > last.0 + (1 << 20) {
            last = (rss, std::time::Instant::now());
        }
        rss >= 64 << 20 && last.1.elapsed() > Duration::from_millis(500)
    });
    // Now the other hosts print a few lines and exit while nothing can be handed over.
    std::fs::write(&go_small, "").expect("go small");
    // Each small host's script touches exited-HOST as its last command (the script text
    // is in no argv to look for since it reaches bash on fd 4).
    wait_until("the small hosts' scripts exited", DEADLINE, || {
        std::fs::read_dir(&dir).is_ok_and(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("exited-"))
                .count()
                == 4
        })
    });
    // Give a runner that would give up on those hosts' pipes the time to do so (its
    // drain window is 2 s); a correct one waits for the gateway, so this runs out.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(4)
        && setup.log().matches("host finished").count() < 4
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    if after == AfterStall::Kill {
        kill(gateway, "KILL");
        setup.wait_status("gateway restarted", |s| {
            s.get("gateway").is_some_and(|p| {
                p.state == "running" && p.pid.is_some_and(|p| p != gateway) && p.restarts == 1
            })
        });
    }
    drop(resume);

    let done = wait_job(port, id, Duration::from_secs(60), "the end", is_terminal);
    assert_eq!(done["state"], "succeeded", "{done:#}");
    for host in host_names(5).iter().skip(1) {
        let (status, text) = http(
            port,
            "GET",
            &format!("/api/jobs/{id}/log?host={host}&format=ndjson"),
            "",
        );
        assert_eq!(status, 200);
        let lines: Vec<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["kind"] == "line")
            .map(|e| e["text"].as_str().unwrap_or_default().to_owned())
            .collect();
        let want: Vec<String> = (1..=SMALL_LINES).map(|i| format!("small {i}")).collect();
        assert_eq!(
            lines, want,
            "{host}'s lines, printed while the gateway stalled"
        );
    }
    let (status, text) = http(port, "GET", &format!("/api/jobs/{id}/log?host=web-01"), "");
    assert_eq!(status, 200);
    let numbers: Vec<usize> = text
        .lines()
        .filter_map(|l| l.split_once("| ")?.1.get(..5)?.parse().ok())
        .collect();
    assert_eq!(
        numbers,
        (1..=BIG_LINES).collect::<Vec<_>>(),
        "web-01's big lines, complete and in order"
    );
}

const CHAOS_JOBS: usize = 8;
const CHAOS_HOSTS: usize = 5;

/// Every host: `o 1` … `o 300` on stdout, `e 1` … `e 3` on stderr; `running` then `ok`;
/// the job `running` then `succeeded`; seqs gapless.
fn assert_burst_log_complete(id: u64, log: &[Event]) {
    assert_gapless(log);
    let of = |host: &str, stream: &str| -> Vec<&str> {
        log.iter()
            .filter(|e| {
                e.kind == "line"
                    && e.host.as_deref() == Some(host)
                    && e.stream.as_deref() == Some(stream)
            })
            .map(|e| e.text.as_deref().unwrap_or_default())
            .collect()
    };
    for host in host_names(CHAOS_HOSTS) {
        let want: Vec<String> = (1..=300).map(|i| format!("o {i}")).collect();
        assert_eq!(of(&host, "stdout"), want, "job {id} {host} stdout");
        assert_eq!(
            of(&host, "stderr"),
            ["e 1", "e 2", "e 3"],
            "job {id} {host}"
        );
        let states: Vec<&str> = log
            .iter()
            .filter(|e| e.kind == "host" && e.host.as_deref() == Some(host.as_str()))
            .filter_map(|e| e.state.as_deref())
            .collect();
        assert_eq!(states, ["running", "ok"], "job {id} {host} states");
    }
    let jobs: Vec<&str> = log
        .iter()
        .filter(|e| e.kind == "job")
        .filter_map(|e| e.state.as_deref())
        .collect();
    assert_eq!(jobs, ["running", "succeeded"], "job {id} states");
    assert_eq!(
        log.len(),
        CHAOS_HOSTS * (300 + 3 + 2) + 2,
        "job {id}: nothing more"
    );
}

#[test]
fn gateway_killed_four_times_across_eight_jobs_every_job_complete() {
    let tasks = r#"[[tasks]]
name = "burst"
hosts = ["fleet"]
transport = "local"
batch = 5
concurrency = 10
script = '''
n=0
for b in 1 2 3; do
  for i in $(seq 1 100); do n=$((n+1)); echo "o $n"; done
  echo "e $b" >&2
  sleep 0.15
done
'''
"#;
    let setup = setup("runners = 2", CHAOS_HOSTS, tasks);
    let _up = Guard(setup.up(&[]));
    setup.wait_status("all running", |s| s.all_running(2));
    let port = setup.port;
    let ids: Vec<u64> = (0..CHAOS_JOBS)
        .map(|_| create_job(port, &json!({"task": "burst"})))
        .collect();
    // A watcher per job, reconnecting with after= across the kills.
    let rt = runtime();
    let watchers: Vec<_> = ids
        .iter()
        .map(|id| {
            rt.spawn(follow(
                port,
                *id,
                WatchPlan::new(&format!("job {id}"), "", 0),
                Arc::default(),
                Duration::from_secs(120),
            ))
        })
        .collect();
    // Kill the gateway as every second job starts: jobs end, start and queue around it.
    for (k, id) in ids.iter().skip(1).step_by(2).enumerate() {
        wait_job(port, *id, Duration::from_secs(60), "running", |j| {
            j["state"] != "queued"
        });
        kill_gateway_and_wait_back(&setup, k as u64 + 1);
    }
    for id in &ids {
        let done = wait_job(port, *id, Duration::from_secs(60), "the end", is_terminal);
        assert_eq!(
            done["state"],
            "succeeded",
            "job {id}: {done:#}\n{}",
            log_tail(&setup, 60)
        );
        assert_burst_log_complete(*id, &stored_log(port, *id));
    }
    for (id, watcher) in ids.iter().zip(watchers) {
        let seen = rt.block_on(watcher).expect("watcher");
        let plan = WatchPlan::new(&format!("job {id}"), "", 0);
        let log = stored_log(port, *id);
        if let Err(e) = check_watcher(&plan, &seen, &log) {
            panic!("{e}");
        }
        assert_eq!(seen.final_code(), Some(1000), "job {id}: {:?}", seen.ends);
    }
}

#[test]
fn hanging_host_times_out_counts_as_a_failure_and_later_waves_are_skipped() {
    let nap = marker(33);
    let tasks = format!(
        r#"[[tasks]]
name = "slowpoke"
hosts = ["fleet"]
transport = "local"
batch = 2
timeout_secs = 1
max_failures = 0
script = '''
echo "up on $SHIPWATCH_HOST"
[ "$SHIPWATCH_HOST" = web-02 ] && sleep {nap}
echo "done on $SHIPWATCH_HOST"
'''
"#
    );
    let setup = setup("runners = 1", 4, &tasks);
    let _up = Guard(setup.up(&[]));
    setup.wait_status("all running", |s| s.all_running(1));
    let port = setup.port;
    let id = create_job(port, &json!({"task": "slowpoke"}));
    let done = wait_job(port, id, Duration::from_secs(30), "the end", is_terminal);
    assert_eq!(done["state"], "failed", "{done:#}");
    assert_eq!(done["reason"], "1 host failed", "{done:#}");
    let states: Vec<(String, String)> = done["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| {
            (
                h["host"].as_str().unwrap_or("?").to_owned(),
                h["state"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("web-01", "ok"),
        ("web-02", "timeout"),
        ("web-03", "skipped"),
        ("web-04", "skipped"),
    ]
    .iter()
    .map(|(h, s)| (h.to_string(), s.to_string()))
    .collect();
    assert_eq!(states, want, "{done:#}");
    wait_until("the hanging script gone", DEADLINE, || {
        processes_with(&nap).is_empty()
    });
    let log = stored_log(port, id);
    assert!(
        !log.iter()
            .any(|e| e.text.as_deref() == Some("done on web-02")),
        "the timed-out host was stopped"
    );
}
