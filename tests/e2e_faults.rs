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
    for (plan, seen) in plans.iter().zip(&seen).take(9) {
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
fn marker() -> String {
    format!("31.{:08}", std::process::id())
}

#[test]
fn runner_killed_mid_job_job_lost_with_reason_scripts_gone_queue_moves_on() {
    let setup = setup("runners = 1", 5, HANG_TASKS);
    let _up = Guard(setup.up(&[]));
    let before = setup.wait_status("all running", |s| s.all_running(1));
    let port = setup.port;

    let hung = create_job(port, &json!({"task": "hang", "params": {"NAP": marker()}}));
    wait_job(
        port,
        hung,
        Duration::from_secs(30),
        "5 hosts running",
        |j| j["counts"]["running"] == 5,
    );
    wait_until("5 sleeps running", DEADLINE, || {
        processes_with(&format!("sleep {}", marker())).len() == 5
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
        processes_with(&marker()).is_empty()
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
