//! The fan-out over real WebSockets: the gateway's own router (`/ws/jobs/{id}`) on a
//! loopback port, the real store committing 1,000-line batches as fast as it can, and many
//! watchers on their own sockets. Each must receive every event once, in `seq` order, and
//! then close 1000. Also prints what it cost: lines/s per watcher and CPU seconds of the
//! gateway's threads versus the watchers' (the load generator), read per thread from /proc.
//! `FANOUT_SOCKETS=N` and `FANOUT_SOCKET_LINES=N` scale it up as a measurement.

mod common;

use common::*;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shipwatch_gateway::fanout::Hub;
use shipwatch_protocol::JobState;
use shipwatch_wstest::{After, End, Limit, Options, read_frames};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const CHUNK: u64 = 1_000;
const RCVBUF: u32 = 256 << 10;

/// CPU seconds (user + system) of this process's threads whose name starts with `prefix`.
fn cpu_secs(prefix: &str) -> f64 {
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with(prefix) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // After the name: state is field 3 of stat, utime 14 and stime 15.
        ticks += fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    }
    ticks as f64 / 100.0
}

#[derive(serde::Deserialize)]
struct Seq {
    seq: u64,
    /// In the rate scenario, a line's text is when it was appended (ns since `base`).
    #[serde(default)]
    text: Option<String>,
}

#[test]
fn socket_watchers_each_get_every_event_once_in_order() {
    let watchers = env("FANOUT_SOCKETS", 100) as usize;
    // FANOUT_RATE=N: one line per append at N lines/s, and commit-to-socket latency.
    let rate = env("FANOUT_RATE", 0);
    let chunk = if rate > 0 { 1 } else { CHUNK };
    let lines = env("FANOUT_SOCKET_LINES", 20_000).div_ceil(chunk) * chunk;
    let dir = short_tempdir("fs");
    let cfg = config(dir.path());
    let shutdown = CancellationToken::new();
    let hub = Hub::new(shutdown.clone());
    let store = unlimited_store(&cfg.server.data_dir, &hub);

    // The gateway side on its own threads ("gw…"), so its CPU can be told apart.
    let gw = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("gw")
        .enable_all()
        .build()
        .unwrap();
    let tracker = TaskTracker::new();
    let port = gw.block_on(serve_api(cfg, &store, &hub, tracker.clone(), &shutdown));

    // The watchers and the producer on theirs ("load…").
    let load = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load")
        .enable_all()
        .build()
        .unwrap();
    let job = load
        .block_on(store.create_job(spec(&["web-01"]), BTreeMap::new(), "bench"))
        .unwrap()
        .id;
    let connecting = Instant::now();
    let base = Instant::now();
    let (got, stored, connected, elapsed, t0) = load.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..watchers {
            let url = format!("ws://127.0.0.1:{port}/ws/jobs/{job}");
            // A bounded receive buffer, as a browser across a network would have: with
            // the 32 MiB autotuning ceiling here, 1,000 loopback sockets pushed the kernel
            // into TCP memory pressure (nstat: ~9,000 RTO timeouts per run) and the
            // watchers stalled on retransmits, not on the gateway.
            let options = Options {
                recv_buffer: Some(RCVBUF),
                ..Options::default()
            };
            let mut ws = shipwatch_wstest::connect(&url, &options).await.unwrap();
            tasks.push(tokio::spawn(async move {
                let mut next = 1u64;
                let mut lat_us = Vec::new();
                let end = read_frames(&mut ws, Limit::Idle(Duration::from_secs(60)), |t| {
                    let evs: Vec<Seq> = serde_json::from_str(t).unwrap();
                    let now = base.elapsed().as_nanos();
                    for e in evs {
                        assert_eq!(e.seq, next, "gap or duplicate");
                        next += 1;
                        if let Some(sent) = e.text.and_then(|t| t.parse::<u128>().ok()) {
                            lat_us.push(((now - sent) / 1000) as u64);
                        }
                    }
                    After::Read
                })
                .await;
                match end {
                    End::Closed(code) => (next - 1, code, lat_us),
                    End::Deadline => panic!("watcher stalled for 60 s"),
                    other => panic!("watcher: {other}"),
                }
            }));
        }
        // Measured from here: every watcher connected (and replayed nothing yet).
        let connected = connecting.elapsed();
        let t0 = (cpu_secs("gw"), cpu_secs("store"), cpu_secs("load"));
        let start = Instant::now();
        let text = "x".repeat(80);
        let mut tick =
            (rate > 0).then(|| tokio::time::interval(Duration::from_secs(1) / rate.max(1) as u32));
        let mut from = 1;
        while from <= lines {
            if let Some(t) = tick.as_mut() {
                t.tick().await;
            }
            let text = if rate > 0 {
                base.elapsed().as_nanos().to_string()
            } else {
                text.clone()
            };
            let evs = (from..from + chunk)
                .map(|r| line(r, "web-01", &text))
                .collect();
            store.append(job, evs).await.unwrap();
            from += chunk;
        }
        let end = job_ends(from, JobState::Succeeded, None);
        store.append(job, vec![end]).await.unwrap();
        let stored = start.elapsed();
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap());
        }
        (got, stored, connected, start.elapsed(), t0)
    });
    let last = load.block_on(store.last_seq(job)).unwrap();
    let mut lat: Vec<u64> = Vec::new();
    for (n, code, l) in &got {
        assert_eq!(*n, last, "a watcher missed the end");
        assert_eq!(*code, Some(1000));
        lat.extend(l);
    }
    lat.sort_unstable();
    if !lat.is_empty() {
        let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
        eprintln!(
            "{watchers} socket watchers at {rate} lines/s: append-to-watcher latency p50 {} us, \
             p99 {} us, max {} us over {} deliveries",
            pct(0.5),
            pct(0.99),
            lat[lat.len() - 1],
            lat.len()
        );
    }
    let gw_cpu = cpu_secs("gw") - t0.0;
    let writer_cpu = cpu_secs("store") - t0.1;
    let load_cpu = cpu_secs("load") - t0.2;
    let deliveries = (watchers as u64 * last) as f64;
    eprintln!(
        "{watchers} socket watchers (connected in {connected:.2?}) x {lines} lines: stored in {stored:.2?}, all delivered in \
         {elapsed:.2?}: {:.0} lines/s per watcher, {:.0} deliveries/s; CPU s: gateway {gw_cpu:.2} \
         (+ store writer {writer_cpu:.2}), watchers {load_cpu:.2}; {:.0} deliveries per \
         gateway CPU second; {} overflows to the store",
        last as f64 / elapsed.as_secs_f64(),
        deliveries / elapsed.as_secs_f64(),
        deliveries / gw_cpu.max(0.01),
        hub.overflows(),
    );
    shutdown.cancel();
    gw.shutdown_timeout(Duration::from_secs(5));
}
