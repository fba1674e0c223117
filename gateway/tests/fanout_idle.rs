//! Idle WebSocket watchers over the gateway's own router: what each costs in memory (its
//! own test binary, so no other test's allocations move the process's RSS).

mod common;

use common::*;

use std::collections::BTreeMap;
use std::time::Duration;

use shipwatch_gateway::fanout::Hub;
use shipwatch_wstest::{Frame, Limit, Options, next_frame};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Idle watchers of a running job: what each costs, gateway and client side together (an
/// upper bound for the gateway's share). `FANOUT_IDLE=N` (default 1,000; each takes two
/// file descriptors here).
#[test]
fn idle_socket_watchers_cost_little_memory() {
    let n = env("FANOUT_IDLE", 1_000) as usize;
    let dir = short_tempdir("fi");
    let cfg = config(dir.path());
    let shutdown = CancellationToken::new();
    let hub = Hub::new(shutdown.clone());
    let store = unlimited_store(&cfg.server.data_dir, &hub);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let port = serve_api(cfg, &store, &hub, TaskTracker::new(), &shutdown).await;
        let job = store
            .create_job(spec(&["web-01"]), BTreeMap::new(), "bench")
            .await
            .unwrap()
            .id;
        store
            .append(job, vec![line(1, "web-01", "warm")])
            .await
            .unwrap();
        let base = rss_kib();
        let mut clients = Vec::with_capacity(n);
        let options = Options {
            read_buffer: Some(4096),
            write_buffer: Some(0),
            ..Options::default()
        };
        for _ in 0..n {
            let url = format!("ws://127.0.0.1:{port}/ws/jobs/{job}");
            let mut ws = shipwatch_wstest::connect(&url, &options).await.unwrap();
            // Each is live once it has its replay.
            let first = next_frame(&mut ws, Limit::Idle(Duration::from_secs(30))).await;
            assert!(matches!(first, Frame::Text(_)), "{first:?}");
            clients.push(ws);
        }
        assert_eq!(hub.watchers(), n as u64);
        assert_eq!(hub.lagging(), 0);
        let per = (rss_kib().saturating_sub(base)) as f64 * 1024.0 / n as f64;
        eprintln!(
            "{n} idle socket watchers: {per:.0} bytes each, gateway and client side together"
        );
        // Both ends of the socket, two tasks, the watch: far under 64 KiB; the 128 KiB
        // default read buffer alone would break this.
        assert!(per < 64.0 * 1024.0, "{per:.0} bytes per idle watcher");
        // Still live: one more line reaches every one of them.
        store
            .append(job, vec![line(2, "web-01", "warm")])
            .await
            .unwrap();
        for ws in &mut clients {
            let next = next_frame(ws, Limit::Idle(Duration::from_secs(30))).await;
            assert!(
                matches!(next, Frame::Text(_)),
                "an idle watcher missed a line: {next:?}"
            );
        }
        shutdown.cancel();
    });
}
