//! The soak (bench/soak.sh): back-to-back deploys over the fleet for
//! `SHIPWATCH_SOAK_SECS` (default 1800), each with the 100 checkers and 300 churning
//! watchers; RSS and open descriptors of every process sampled after a warm-up job and at
//! the end, their growth bounded, every counter printed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::e2e_support::*;
use crate::harness::*;

/// VmRSS in KiB and open descriptors of each process by name.
fn sample(run: &Run) -> BTreeMap<String, (u64, usize)> {
    run.pids()
        .into_iter()
        .map(|(name, pid)| {
            let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                })
                .unwrap_or(0);
            let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
            (name, (rss, fds))
        })
        .collect()
}

#[test]
#[ignore = "a soak of 30 minutes: bench/soak.sh"]
fn soak() {
    let _serial = serial();
    let secs: u64 = std::env::var("SHIPWATCH_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1800);
    let (mut run, _) = Run::ready("soak", 9, 2);
    let warm = run.create_deploy("");
    run.wait_end(warm, 120);
    let before = sample(&run);
    let started = Instant::now();
    let (mut jobs, mut succeeded, mut events) = (0, 0, 0);
    let (mut tally, mut churned, mut churn_failed) = (Tally::default(), 0, 0);
    while started.elapsed() < Duration::from_secs(secs) {
        let deploy = run.deploy_with_checkers("", "");
        let (done_count, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let churn = run.clients.spawn(crate::scenarios::churn(
            run.port(),
            deploy.id,
            deploy.events,
            300,
            done_count,
            failed.clone(),
        ));
        let done = run.wait_end(deploy.id, 300);
        churned += run.clients.block_on(churn).unwrap_or_default();
        churn_failed += failed.load(Ordering::SeqCst);
        let log = stored_log(run.port(), deploy.id);
        let t = deploy.checkers.finish(&run.rt, &log);
        jobs += 1;
        succeeded += usize::from(done["state"] == "succeeded");
        events += log.len();
        tally.expected += t.expected;
        tally.delivered += t.delivered;
        tally.lost += t.lost;
        tally.duplicated += t.duplicated;
        tally.failures.extend(t.failures);
    }
    let elapsed = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let after = sample(&run);
    println!(
        "soak: {:.0} s, {jobs} deploys ({succeeded} succeeded), {events} events stored, \
         {} deliveries to checkers of {} expected, {} lost, {} duplicated, {churned} churning \
         watchers ({churn_failed} failed to connect)",
        elapsed.as_secs_f64(),
        tally.delivered,
        tally.expected,
        tally.lost,
        tally.duplicated
    );
    println!("process | RSS start KiB | RSS end KiB | fds start | fds end");
    let mut grown = Vec::new();
    for (name, (rss0, fds0)) in &before {
        let (rss1, fds1) = after.get(name).copied().unwrap_or_default();
        println!("{name} | {rss0} | {rss1} | {fds0} | {fds1}");
        // Bounded: caches and pools fill during the warm-up and the first jobs, then stay.
        if rss1 > rss0 * 2 + 64 * 1024 || fds1 > fds0 + 16 {
            grown.push(format!(
                "{name}: RSS {rss0}->{rss1} KiB, fds {fds0}->{fds1}"
            ));
        }
    }
    run.stop();
    let leaked = run.leaked_processes(Duration::from_secs(20));
    assert!(
        tally.lost == 0
            && tally.duplicated == 0
            && tally.failures.is_empty()
            && succeeded == jobs
            && churn_failed == 0
            && grown.is_empty()
            && leaked == 0,
        "soak: {succeeded}/{jobs} succeeded, grown {grown:?}, {leaked} processes left, \
         watcher failures {:?}",
        &tally.failures[..tally.failures.len().min(5)]
    );
}
