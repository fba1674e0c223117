//! The gateway at its open-file limit, on the real binary: `shipwatch up` started under a
//! low RLIMIT_NOFILE (prlimit), more WebSockets opened than the gateway has descriptors.

mod e2e_support;
mod support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use e2e_support::*;
use serde_json::json;
use support::*;

const SOFT: u64 = 64;
const HARD: u64 = 160;
/// Far more than HARD: some of them must find the gateway out of descriptors.
const FLOOD: usize = 300;

/// (soft, hard) "Max open files" of a process.
fn open_file_limits(pid: i32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

fn metric(port: u16, name: &str) -> Option<f64> {
    let (_, text) = http(port, "GET", "/metrics", "");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn out_of_descriptors_the_gateway_backs_off_serves_its_watchers_and_recovers() {
    let go = tempfile::NamedTempFile::new().expect("temp file");
    let go = go.path().with_extension("go");
    let task = format!(
        "[[tasks]]\nname = \"wait\"\nhosts = [\"fleet\"]\ntransport = \"local\"\n\
         script = \"while [ ! -e {} ]; do sleep 0.05; done; echo released\"\n",
        go.display()
    );
    let setup = setup("runners = 1", 1, &task);
    let log = std::fs::File::create(setup.dir.path().join("up.log")).expect("log file");
    let up = Command::new("prlimit")
        .arg(format!("--nofile={SOFT}:{HARD}"))
        .arg("--")
        .arg(BIN)
        .arg("up")
        .arg("-c")
        .arg(setup.config_path())
        .current_dir(setup.dir.path())
        .env("SHIPWATCH_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn prlimit shipwatch up");
    let _up = Guard(up);
    let status = setup.wait_status("gateway and runner up", |s| s.all_running(1));
    let gateway = status.pid("gateway");
    assert_eq!(
        open_file_limits(gateway),
        (HARD, HARD),
        "the gateway raised its soft limit"
    );
    assert!(
        setup
            .log()
            .contains("open-file limit: raised the soft limit to the hard limit"),
        "{}",
        setup.log()
    );

    let id = create_job(setup.port, &json!({"task": "wait", "params": {}}));
    let url = |path: &str| format!("ws://127.0.0.1:{}{path}", setup.port);
    let rt = runtime();
    let (opened, failed) = rt.block_on(async {
        let progress: Vec<Arc<AtomicU64>> = (0..3).map(|_| Arc::default()).collect();
        let checkers: Vec<_> = progress
            .iter()
            .map(|p| {
                tokio::spawn(watch_once(
                    url(&format!("/ws/jobs/{id}")),
                    p.clone(),
                    Duration::from_secs(90),
                ))
            })
            .collect();
        for p in &progress {
            wait_progress(p, 1, DEADLINE, "a checker's first event");
        }
        let flood: Vec<_> = (0..FLOOD)
            .map(|_| {
                let url = url("/ws/jobs");
                tokio::spawn(async move {
                    tokio::time::timeout(
                        Duration::from_secs(3),
                        shipwatch_wstest::connect(&url, &shipwatch_wstest::Options::default()),
                    )
                    .await
                    .ok()
                    .and_then(Result::ok)
                })
            })
            .collect();
        let mut held = Vec::new();
        let mut failed = 0;
        for f in flood {
            match f.await.expect("flood task") {
                Some(ws) => held.push(ws),
                None => failed += 1,
            }
        }
        let opened = held.len();
        // Still out of descriptors (held open): the job ends and the checkers see it.
        std::fs::write(&go, "").expect("release the job");
        for c in checkers {
            let (events, end) = c.await.expect("checker");
            assert_eq!(end, "close 1000", "a checker's end; events {events:?}");
            let last = events.last().expect("events");
            assert_eq!(
                (last["kind"].as_str(), last["state"].as_str()),
                (Some("job"), Some("succeeded")),
                "{last}"
            );
        }
        drop(held);
        (opened, failed)
    });
    let _ = std::fs::remove_file(&go);
    println!(
        "soft {SOFT} hard {HARD}: {opened} of {FLOOD} extra watchers connected, {failed} did not"
    );
    assert!(
        failed > 0,
        "the gateway never ran out of descriptors ({opened} opened)"
    );
    wait_until("/healthz answers again", DEADLINE, || {
        try_http(setup.port, "GET", "/healthz", "").is_some_and(|(status, _)| status == 200)
    });
    let errors = metric(setup.port, "shipwatch_http_accept_errors_total").unwrap_or(0.0);
    let log = setup.log();
    let warned = log.matches("cannot accept connections").count();
    let recovered = log.matches("accepting connections again").count();
    println!("accept errors {errors}, logged {warned} times, recovered {recovered} times");
    assert!(errors >= 1.0, "accept errors counted");
    assert!(warned >= 1, "{log}");
    assert_eq!(
        warned, recovered,
        "one warning per burst, each ended; log:\n{log}"
    );
    assert!(
        (warned as f64) < errors,
        "fewer log lines ({warned}) than accept errors ({errors})"
    );
}
