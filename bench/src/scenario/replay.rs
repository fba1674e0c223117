//! Replay: a late joiner of a finished job.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::{Duration, Instant};

use shipwatch_wstest::{After, End, Limit, read_frames};
use tokio::sync::Semaphore;

use crate::procfs::CpuSnapshot;
use crate::report::{Row, thousands};
use crate::system::{System, linegen_script};
use crate::watcher::{Watcher, check_complete, connect, join_watchers, watch};
use crate::{Error, read_buffer};

/// Reads a job's socket to its close frame without looking into frames: what it takes
/// the gateway to send the replay, plus loopback, with the client's cost near nothing.
pub(crate) async fn drain(url: &str) -> Result<(Duration, u64, u64, Option<u16>), Error> {
    let began = Instant::now();
    let mut socket = connect(url, read_buffer()).await?;
    let (mut frames, mut bytes) = (0u64, 0u64);
    let end = read_frames(&mut socket, Limit::Idle(Duration::from_secs(60)), |text| {
        frames += 1;
        bytes += text.len() as u64;
        After::Read
    })
    .await;
    let close = match end {
        End::Closed(code) => code,
        End::Eof => None,
        other => return Err(format!("replay after {frames} frames: {other}").into()),
    };
    Ok((began.elapsed(), frames, bytes, close))
}

/// Runs the replay scenario; its rows, or why it failed.
pub async fn replay(lines: u64, hosts: usize) -> Result<Vec<Row>, Error> {
    let per_host = lines / hosts as u64;
    let lines = per_host * hosts as u64;
    let mut system = System::start(hosts, &linegen_script(per_host, 0, false))?;
    let (gateway, runner) = system.pids()?;
    let began = Instant::now();
    let job = system.create_job()?;
    system
        .wait_job(job, "succeeded", Duration::from_secs(300), |j| {
            j["state"] == "succeeded"
        })
        .await?;
    let ran = began.elapsed().as_secs_f64();
    let url = system.url(job);

    let before = CpuSnapshot::take(gateway, runner);
    let (server, frames, bytes, close) = drain(&format!("{url}?after=0")).await?;
    let server_cpu = CpuSnapshot::take(gateway, runner).since(&before);
    if close != Some(1000) {
        return Err(system.fail(format!("replay closed with {close:?}, not 1000")));
    }

    let began = Instant::now();
    let seen = match join_watchers(
        vec![tokio::spawn(watch(Watcher {
            id: 0,
            url: url.clone(),
            after: 0,
            hosts,
            read_buffer: read_buffer(),
            ready: Arc::new(AtomicUsize::new(0)),
            ready_on_frame: false,
            connecting: Arc::new(Semaphore::new(1)),
            progress: Arc::new(AtomicU64::new(0)),
            stall: Duration::from_secs(60),
            pause: None,
            hold: None,
            resume: false,
        }))],
        &[],
        Duration::from_secs(120),
    )
    .await
    {
        Ok(seen) => seen,
        Err(e) => return Err(system.fail(e)),
    };
    let client = began.elapsed();
    for s in &seen {
        if let Err(e) = check_complete(s, 0, per_host) {
            return Err(system.fail(e));
        }
    }
    Ok(vec![Row {
        figure: format!(
            "replay of a finished {}-line job to a late joiner",
            thousands(lines as f64)
        ),
        measured: format!(
            "server side {:.2} s; client side {:.2} s",
            server.as_secs_f64(),
            client.as_secs_f64()
        ),
        target: "≤ 1 s server side".into(),
        met: Some(server <= Duration::from_secs(1)),
        notes: format!(
            "server side = a client that only counts frames ({frames} frames, {:.0} MB; {server_cpu}); client side = the checking watcher (every line verified); the job itself ran in {ran:.1} s with no watcher ({} lines/s)",
            bytes as f64 / 1e6,
            thousands(lines as f64 / ran)
        ),
    }])
}
