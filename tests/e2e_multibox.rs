//! More than one box (DESIGN §11) on the real binary: three `shipwatch up` share one
//! private PostgreSQL server, one without runners. Jobs queued through any gateway run
//! exactly once on some box's runner, watchers on any gateway see every event exactly
//! once, a box killed with SIGKILL mid-job has its running jobs marked `lost` by a
//! survivor and its watchers resume elsewhere; a PostgreSQL restart mid-job fails nothing.

mod e2e_support;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use e2e_support::*;
use serde_json::json;
use support::*;

const HOSTS: usize = 4;
const LINES: usize = 20;

/// Two waves of two hosts, each host printing LINES lines a tenth of a second apart: a
/// job runs about four seconds, long enough to be killed in the middle.
fn task() -> String {
    format!(
        r#"[[tasks]]
name = "slow"
hosts = ["fleet"]
transport = "local"
batch = 2
concurrency = 10
script = '''
for i in $(seq 1 {LINES}); do echo "line $i from $SHIPWATCH_HOST"; sleep 0.1; done
'''
"#
    )
}

/// One box: its own dir, port, data and sockets; the shared database.
fn boxed(url: &str, runners: u32) -> Setup {
    let setup = Setup::new("");
    let store = format!("{}\n[store]\nurl = \"{url}\"\n", task());
    setup.write_raw(&config_text(
        &setup,
        &format!("runners = {runners}"),
        HOSTS,
        &store,
    ));
    setup
}

/// SIGKILL for the supervisor and everything under it, as when its box dies.
fn kill_whole_up(setup: &Setup, up: &mut Guard) {
    let mut pids = setup.status().map(|s| s.pids()).unwrap_or_default();
    pids.push(up.0.id() as i32);
    // The scripts its runners started, too: nothing of the box runs on.
    let scripts: Vec<i32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            let mut p = parent_of(pid);
            for _ in 0..16 {
                match p {
                    Some(q) if pids.contains(&q) => return true,
                    Some(q) if q > 1 => p = parent_of(q),
                    _ => return false,
                }
            }
            false
        })
        .collect();
    for pid in pids.iter().chain(&scripts) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    let _ = wait_exit(&mut up.0, Duration::from_secs(10));
    for pid in pids.iter().chain(&scripts) {
        wait_until(
            "a killed process to be gone",
            Duration::from_secs(10),
            || process_gone(*pid),
        );
    }
}

#[test]
fn three_boxes_share_one_database_and_survive_one_killed_mid_job() {
    let pg = shipwatch_pgtest::Postgres::start();
    let url = pg.database();
    let boxes = [boxed(&url, 0), boxed(&url, 2), boxed(&url, 2)];
    let mut ups: Vec<Guard> = boxes.iter().map(|b| Guard(b.up(&[]))).collect();
    for (b, runners) in boxes.iter().zip([0, 2, 2]) {
        b.wait_status("all running", |s| s.all_running(runners));
    }
    let ports: Vec<u16> = boxes.iter().map(|b| b.port).collect();

    // Two jobs through each gateway, the runner-less one's included.
    let jobs: Vec<u64> = (0..6)
        .map(|i| create_job(ports[i % 3], &json!({"task": "slow"})))
        .collect();
    let rt = runtime();
    let watchers: Vec<_> = jobs
        .iter()
        .map(|&job| {
            let (ports, plan) = (ports.clone(), WatchPlan::new(&format!("job {job}"), "", 0));
            let progress = Arc::new(AtomicU64::new(0));
            rt.spawn(async move {
                follow_on(&ports, job, plan, progress, Duration::from_secs(180)).await
            })
        })
        .collect();

    // Kill box 1 once one of its runners is in the middle of a job.
    let victim = 1;
    let mut killed_jobs = Vec::new();
    wait_until("box 1 to run a job", Duration::from_secs(60), || {
        killed_jobs = jobs_run_under(ups[victim].0.id() as i32)
            .into_iter()
            .collect();
        !killed_jobs.is_empty()
    });
    let first = killed_jobs[0];
    wait_until("a line of it", Duration::from_secs(30), || {
        stored_log(ports[0], first).iter().any(|e| e.kind == "line")
    });
    let killed_at = Instant::now();
    kill_whole_up(&boxes[victim], &mut ups[victim]);
    // What the dead box held running: no survivor touches it within the lease.
    let db = url.rsplit('/').next().unwrap_or_default();
    let held = pg.psql(
        db,
        &format!(
            "SELECT id FROM jobs WHERE state = 'running' AND claimed_by LIKE '%/127.0.0.1:{}'",
            ports[victim]
        ),
    );
    let killed_jobs: Vec<u64> = held.lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert!(
        !killed_jobs.is_empty(),
        "job {first} or another ran there: {held}"
    );

    let survivors = [ports[0], ports[2]];
    for &id in &jobs {
        let done = wait_job(
            survivors[(id as usize) % 2],
            id,
            Duration::from_secs(120),
            "its end",
            is_terminal,
        );
        let state = done["state"].as_str().unwrap_or_default();
        if killed_jobs.contains(&id) {
            assert_eq!(state, "lost", "job {id} ran on the killed box: {done:#}");
            let reason = done["reason"].as_str().unwrap_or_default();
            assert!(reason.contains("stopped"), "job {id}: {reason}");
        } else {
            assert_eq!(state, "succeeded", "job {id}: {done:#}");
            assert_eq!(done["counts"]["ok"], HOSTS, "job {id}: {done:#}");
        }
    }
    let lost_within = killed_at.elapsed();

    for (&id, watcher) in jobs.iter().zip(watchers) {
        let log = stored_log(ports[0], id);
        assert_gapless(&log);
        // Each host's lines ran once: never a line twice (no job ran twice).
        let mut lines: Vec<(&str, &str)> = log
            .iter()
            .filter(|e| e.kind == "line")
            .map(|e| {
                (
                    e.host.as_deref().unwrap_or_default(),
                    e.text.as_deref().unwrap_or_default(),
                )
            })
            .collect();
        let total = lines.len();
        lines.sort_unstable();
        lines.dedup();
        assert_eq!(lines.len(), total, "job {id}: a line stored twice");
        if !killed_jobs.contains(&id) {
            assert_eq!(total, HOSTS * LINES, "job {id}");
        }
        let seen = rt.block_on(watcher).expect("watcher task");
        assert_eq!(seen.final_code(), Some(1000), "job {id}: {:?}", seen.ends);
        let plan = WatchPlan::new(&format!("job {id}"), "", 0);
        if let Err(e) = check_watcher(&plan, &seen, &log) {
            panic!("{e}");
        }
    }
    println!(
        "three boxes: {} jobs, {} lost on the killed box, every job ended {:.1} s after the kill",
        jobs.len(),
        killed_jobs.len(),
        lost_within.as_secs_f64()
    );
}

#[test]
fn a_postgres_restart_mid_job_fails_no_job() {
    let pg = shipwatch_pgtest::Postgres::start();
    let url = pg.database();
    let setup = boxed(&url, 2);
    let _up = Guard(setup.up(&[]));
    setup.wait_status("all running", |s| s.all_running(2));
    let id = create_job(setup.port, &json!({"task": "slow"}));
    let progress = Arc::new(AtomicU64::new(0));
    let rt = runtime();
    let watcher = rt.spawn(follow(
        setup.port,
        id,
        WatchPlan::new("restart", "", 0),
        progress.clone(),
        Duration::from_secs(120),
    ));
    wait_progress(&progress, 10, Duration::from_secs(30), "ten events");
    pg.kill();
    wait_until(
        "the gateway to notice the database is gone",
        Duration::from_secs(30),
        || setup.log().contains("store lost its database"),
    );
    pg.resume();
    let done = wait_job(
        setup.port,
        id,
        Duration::from_secs(90),
        "its end",
        is_terminal,
    );
    assert_eq!(done["state"], "succeeded", "{done:#}");
    let log = stored_log(setup.port, id);
    assert_gapless(&log);
    let lines = log.iter().filter(|e| e.kind == "line").count();
    assert_eq!(lines, HOSTS * LINES, "every line stored once");
    let seen = rt.block_on(watcher).expect("watcher task");
    if let Err(e) = check_watcher(&WatchPlan::new("restart", "", 0), &seen, &log) {
        panic!("{e}");
    }
    assert_eq!(
        setup.log().matches("store lost its database").count(),
        1,
        "the outage is logged once"
    );
    assert!(progress.load(Ordering::SeqCst) > 10);
}
