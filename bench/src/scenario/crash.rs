//! Crash: the gateway SIGKILLed during a flood; every watcher still gets every line
//! exactly once.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::report::{Row, ms, thousands};
use crate::system::{System, linegen_script};
use crate::watcher::{check_complete, join_watchers, spawn_watchers};
use crate::{Error, read_buffer};

/// The gateway is killed (SIGKILL) `kills` times during a flood: the supervisor restarts
/// it, the runner resends what was not acked, the watchers reconnect with `after=`; every
/// watcher must still get every line exactly once (DESIGN §9).
pub async fn crash(
    watchers: usize,
    hosts: usize,
    per_host: u64,
    kills: u64,
) -> Result<Vec<Row>, Error> {
    let mut system = System::start(hosts, &linegen_script(per_host, 0, true))?;
    let (mut gateway, _) = system.pids()?;
    let job = system.create_job()?;
    let url = system.url(job);
    let stall = Duration::from_secs(60);
    let (tasks, progress) =
        match spawn_watchers(watchers, &url, hosts, read_buffer(), false, stall, true).await {
            Ok(t) => t,
            Err(e) => return Err(system.fail(e)),
        };
    system.open_gate()?;
    let lines = hosts as u64 * per_host;
    let mut back_in = Vec::new();
    for k in 1..=kills {
        let mark = lines * k / (kills + 1);
        let deadline = Instant::now() + Duration::from_secs(120);
        while progress[0].load(Ordering::Relaxed) < mark {
            if Instant::now() > deadline {
                return Err(system.fail(format!("watcher 0 did not reach seq {mark}")));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let killed_at = progress[0].load(Ordering::Relaxed);
        let pid = i32::try_from(gateway)?;
        // SAFETY: kill(2) on the gateway's pid, read from `ctl status` just before.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let began = Instant::now();
        let deadline = began + Duration::from_secs(30);
        loop {
            if let Some(new) = system.pid("gateway").filter(|&p| p != gateway)
                && system.http("GET", "/healthz", "").is_ok_and(|r| r.0 == 200)
            {
                gateway = new;
                break;
            }
            if Instant::now() > deadline {
                return Err(system.fail("the gateway was not back within 30 s of SIGKILL"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        back_in.push(format!(
            "at seq {killed_at}: back in {}",
            ms(began.elapsed())
        ));
    }
    let seen = match join_watchers(tasks, &progress, Duration::from_secs(240)).await {
        Ok(seen) => seen,
        Err(e) => return Err(system.fail(e)),
    };
    for (id, s) in seen.iter().enumerate() {
        if let Err(e) = check_complete(s, id, per_host) {
            return Err(system.fail(e));
        }
    }
    let resumes: u64 = seen.iter().map(|s| s.resumes).sum();
    let mut silences: Vec<u64> = seen.iter().map(|s| s.longest_silence).collect();
    silences.sort_unstable();
    let silence = |q: f64| {
        let i = ((silences.len() as f64 * q).ceil() as usize).clamp(1, silences.len()) - 1;
        ms(Duration::from_nanos(silences[i]))
    };
    Ok(vec![Row {
        figure: format!(
            "gateway killed (SIGKILL) {kills} times during {} lines, {watchers} watchers",
            thousands(lines as f64)
        ),
        measured: format!(
            "all {watchers} exact after {resumes} reconnects; longest pause at a watcher: median {}, max {}",
            silence(0.5),
            silence(1.0)
        ),
        target: "every line exactly once (DESIGN §9)".into(),
        met: Some(true),
        notes: format!(
            "gateway (restarted by the supervisor, answering /healthz) {}; the job succeeded",
            back_in.join(", ")
        ),
    }])
}
