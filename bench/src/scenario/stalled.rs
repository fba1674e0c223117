//! Stalled: watchers that read nothing during a flood beside one that reads, then
//! must catch up exactly.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::procfs::{CpuSnapshot, status_kib};
use crate::report::{Row, thousands};
use crate::system::{System, linegen_script};
use crate::watcher::{Watcher, check_complete, join_watchers, watch};
use crate::{CONNECTING_AT_ONCE, Error, read_buffer};

/// Watchers that never read while a flood runs: the gateway must neither grow without
/// bound nor slow the one watcher that reads; afterwards the stalled ones read and must
/// get every event exactly once (catching up from the store, or after 4008 closes).
pub async fn stalled(stalled: usize, hosts: usize, per_host: u64) -> Result<Vec<Row>, Error> {
    let mut system = System::start(hosts, &linegen_script(per_host, 0, true))?;
    let (gateway, runner) = system.pids()?;
    let job = system.create_job()?;
    let url = system.url(job);
    let ready = Arc::new(AtomicUsize::new(0));
    let connecting = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let (release, hold) = tokio::sync::watch::channel(false);
    let mut reader = Vec::new();
    let mut held = Vec::new();
    let mut progress = Vec::new();
    for id in 0..=stalled {
        let p = Arc::new(AtomicU64::new(0));
        progress.push(p.clone());
        let task = tokio::spawn(watch(Watcher {
            id,
            url: url.clone(),
            after: 0,
            hosts,
            read_buffer: read_buffer(),
            ready: ready.clone(),
            ready_on_frame: false,
            connecting: connecting.clone(),
            progress: p,
            stall: Duration::from_secs(120),
            pause: None,
            hold: (id > 0).then(|| hold.clone()),
            resume: false,
        }));
        if id == 0 {
            reader.push(task)
        } else {
            held.push(task)
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while ready.load(Ordering::Relaxed) <= stalled {
        if Instant::now() > deadline {
            return Err(system.fail("watchers not connected within 30 s"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = CpuSnapshot::take(gateway, runner);
    let rss_before = status_kib(gateway, "VmRSS:");
    system.open_gate()?;
    let reading = match join_watchers(reader, &progress[..1], Duration::from_secs(240)).await {
        Ok(seen) => seen,
        Err(e) => return Err(system.fail(e)),
    };
    let cpu = CpuSnapshot::take(gateway, runner).since(&before);
    let peak = status_kib(gateway, "VmHWM:");
    let notes_during = system.gateway_notes();
    let lines = hosts as u64 * per_host;
    let mut lps = 0.0;
    for s in &reading {
        if let Err(e) = check_complete(s, 0, per_host) {
            return Err(system.fail(e));
        }
        lps = lines as f64 / (s.last_line_at.saturating_sub(s.min_stamp) as f64 / 1e9);
    }
    // Now the stalled ones read: each must still get everything, exactly once.
    let began = Instant::now();
    let _ = release.send(true);
    let caught_up = match join_watchers(held, &progress[1..], Duration::from_secs(240)).await {
        Ok(seen) => seen,
        Err(e) => return Err(system.fail(e)),
    };
    let catch_up = began.elapsed().as_secs_f64();
    for (id, s) in caught_up.iter().enumerate() {
        if let Err(e) = check_complete(s, id + 1, per_host) {
            return Err(system.fail(e));
        }
    }
    let reconnects: u64 = caught_up.iter().map(|s| s.reconnects).sum();
    Ok(vec![Row {
        figure: format!(
            "{stalled} watchers that never read while {} lines flow, beside 1 that reads",
            thousands(lines as f64)
        ),
        measured: format!(
            "gateway peak RSS {:.0} MiB (idle {:.0} MiB); the reader got {} lines/s",
            peak as f64 / 1024.0,
            rss_before as f64 / 1024.0,
            thousands(lps)
        ),
        target: "RSS bounded; the reader as fast as alone (row a); none loses an event".into(),
        met: None,
        notes: format!(
            "during the flood: {cpu}; {notes_during}. Then the stalled ones read: all {stalled} exact after {catch_up:.1} s, {}",
            match reconnects {
                0 => "no 4008 close".to_owned(),
                n => format!("{n} reconnects after 4008"),
            }
        ),
    }])
}
