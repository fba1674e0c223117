//! Helpers for the end-to-end tests of the whole system: a config with local-transport
//! hosts, API calls over `support::http`, WebSocket watchers (on `shipwatch_wstest`, the
//! one reader) that reconnect with `after=` their last seq, the job's stored log, and the
//! process table.
//!
//! Used together with `tests/support` (the supervisor's `Setup`, `ctl status`, waits).

#![allow(dead_code)]

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use shipwatch_wstest::{After, Limit, Options, read_events};

use crate::support::Setup;
use crate::support::http;

/// `web-01` … `web-NN`.
pub fn host_names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("web-{i:02}")).collect()
}

/// A whole config: `[supervisor]` lines, `n_hosts` hosts in group `fleet`, anonymous
/// admin (loopback only), and the given `[[tasks]]` text.
pub fn config_text(setup: &Setup, supervisor: &str, n_hosts: usize, tasks: &str) -> String {
    let hosts = host_names(n_hosts)
        .iter()
        .map(|h| format!("\"{h}\""))
        .collect::<Vec<_>>()
        .join(", ");
    setup.config_with(
        &format!("watch_config = false\n{supervisor}"),
        &format!(
            r#"[auth]
anonymous = "admin"

[hosts]
fleet = [{hosts}]

{tasks}
"#
        ),
    )
}

/// A `Setup` (short temp dir, free port) holding the config of [`config_text`].
pub fn setup(supervisor: &str, n_hosts: usize, tasks: &str) -> Setup {
    let setup = Setup::new("");
    setup.write_raw(&config_text(&setup, supervisor, n_hosts, tasks));
    setup
}

pub fn get_json(port: u16, path: &str) -> Value {
    let (status, body) = http(port, "GET", path, "");
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// POST /api/jobs; returns the new job's id.
pub fn create_job(port: u16, body: &Value) -> u64 {
    let (status, text) = http(port, "POST", "/api/jobs", &body.to_string());
    assert_eq!(status, 201, "POST /api/jobs {body}: {text}");
    let job: Value = serde_json::from_str(&text).expect("job JSON");
    job["id"].as_u64().expect("job id")
}

pub fn job(port: u16, id: u64) -> Value {
    get_json(port, &format!("/api/jobs/{id}"))
}

/// Waits until the job's state satisfies `done` and returns the job.
pub fn wait_job(
    port: u16,
    id: u64,
    deadline: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let job = job(port, id);
        if done(&job) {
            return job;
        }
        assert!(
            start.elapsed() < deadline,
            "job {id}: timed out after {deadline:?} waiting for {what}; last: {job:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn is_terminal(job: &Value) -> bool {
    matches!(
        job["state"].as_str(),
        Some("succeeded" | "failed" | "cancelled" | "lost")
    )
}

/// One stored event, reduced to what the tests check, with a hash of its whole JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub seq: u64,
    pub kind: String,
    pub host: Option<String>,
    pub stream: Option<String>,
    pub text: Option<String>,
    pub state: Option<String>,
    pub hash: u64,
}

impl Event {
    pub fn from_json(value: &Value) -> Event {
        let s = |key: &str| value[key].as_str().map(str::to_owned);
        let mut hasher = DefaultHasher::new();
        value.to_string().hash(&mut hasher);
        Event {
            seq: value["seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("event without seq: {value}")),
            kind: s("kind").unwrap_or_default(),
            host: s("host"),
            stream: s("stream"),
            text: s("text"),
            state: s("state"),
            hash: hasher.finish(),
        }
    }
}

/// The job's whole log from `GET /api/jobs/{id}/log?format=ndjson`.
pub fn stored_log(port: u16, id: u64) -> Vec<Event> {
    let (status, body) = http(
        port,
        "GET",
        &format!("/api/jobs/{id}/log?format=ndjson"),
        "",
    );
    assert_eq!(status, 200, "log of job {id}");
    body.lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
            Event::from_json(&value)
        })
        .collect()
}

/// A watcher's filters as DESIGN §6 (the query without `after`).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub kinds: Option<Vec<String>>,
    pub hosts: Option<Vec<String>>,
    pub streams: Option<Vec<String>>,
}

impl Filter {
    pub fn parse(query: &str) -> Filter {
        let mut f = Filter::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').expect("key=value");
            let list = Some(value.split(',').map(str::to_owned).collect());
            match key {
                "kinds" => f.kinds = list,
                "hosts" => f.hosts = list,
                "streams" => f.streams = list,
                other => panic!("unknown filter {other}"),
            }
        }
        f
    }

    /// Whether the filter takes `e`: an event without a host or stream passes those
    /// filters (a job event concerns every host).
    pub fn takes(&self, e: &Event) -> bool {
        let within = |list: &Option<Vec<String>>, value: &Option<String>| match (list, value) {
            (Some(list), Some(v)) => list.contains(v),
            _ => true,
        };
        self.kinds.as_ref().is_none_or(|k| k.contains(&e.kind))
            && within(&self.hosts, &e.host)
            && within(&self.streams, &e.stream)
    }
}

/// What a watcher asks for.
#[derive(Debug, Clone)]
pub struct WatchPlan {
    pub name: String,
    /// Filters, e.g. `streams=stderr&hosts=web-03`; empty for everything.
    pub query: String,
    /// The `after=` of its first connection.
    pub after: u64,
    /// Hang up by itself after this many events per connection, then reconnect.
    pub churn_every: Option<usize>,
    /// Pause this long after every frame: a reader slower than the job writes.
    pub slow: Option<Duration>,
}

impl WatchPlan {
    pub fn new(name: &str, query: &str, after: u64) -> WatchPlan {
        WatchPlan {
            name: name.to_owned(),
            query: query.to_owned(),
            after,
            churn_every: None,
            slow: None,
        }
    }

    /// The events of `log` this watcher must have seen, in order.
    pub fn expected<'a>(&self, log: &'a [Event]) -> Vec<&'a Event> {
        let filter = Filter::parse(&self.query);
        log.iter()
            .filter(|e| e.seq > self.after && filter.takes(e))
            .collect()
    }
}

/// What a watcher received over all its connections.
#[derive(Debug, Default)]
pub struct Seen {
    pub events: Vec<Event>,
    /// How each connection ended: a close code, an error, or our own hang-up.
    pub ends: Vec<String>,
    pub connects: u32,
    /// Frames whose events were not in strictly increasing seq order after the previous.
    pub disorder: Vec<String>,
}

impl Seen {
    /// The close code of the last connection, when it ended with a close frame.
    pub fn final_code(&self) -> Option<u16> {
        self.ends
            .last()
            .and_then(|e| e.strip_prefix("close ")?.parse().ok())
    }
}

/// Follows a job's WebSocket until it closes with 1000, reconnecting with `after=` the
/// last seq seen whenever the socket drops (gateway killed, 4008, 1001, own churn).
/// `progress` holds the last seq seen. Gives up at `deadline`.
pub async fn follow(
    port: u16,
    job: u64,
    plan: WatchPlan,
    progress: Arc<AtomicU64>,
    deadline: Duration,
) -> Seen {
    follow_on(&[port], job, plan, progress, deadline).await
}

/// [`follow`] over several gateways of one shared store: each reconnection goes to the
/// next of `ports` (the job's id picks the first), as behind a load balancer.
pub async fn follow_on(
    ports: &[u16],
    job: u64,
    plan: WatchPlan,
    progress: Arc<AtomicU64>,
    deadline: Duration,
) -> Seen {
    let give_up = tokio::time::Instant::now() + deadline;
    let mut seen = Seen::default();
    let mut last = plan.after;
    let mut at = job as usize % ports.len();
    progress.store(last, Ordering::SeqCst);
    loop {
        let port = ports[at];
        at = (at + 1) % ports.len();
        if tokio::time::Instant::now() > give_up {
            seen.ends.push("deadline".into());
            return seen;
        }
        let sep = if plan.query.is_empty() { "" } else { "&" };
        let url = format!(
            "ws://127.0.0.1:{port}/ws/jobs/{job}?after={last}{sep}{}",
            plan.query
        );
        let Ok(Ok(mut ws)) = tokio::time::timeout(
            Duration::from_secs(10),
            shipwatch_wstest::connect(&url, &Options::default()),
        )
        .await
        else {
            // Nothing listens (the gateway is restarting): try again shortly.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        seen.connects += 1;
        let mut this_connection = 0usize;
        let end = read_events(&mut ws, Limit::At(give_up), |values| {
            for value in &values {
                let event = Event::from_json(value);
                if event.seq <= last {
                    seen.disorder.push(format!(
                        "{}: seq {} after {last} (connection {})",
                        plan.name, event.seq, seen.connects
                    ));
                }
                last = last.max(event.seq);
                seen.events.push(event);
            }
            progress.store(last, Ordering::SeqCst);
            this_connection += values.len();
            if plan.churn_every.is_some_and(|n| this_connection >= n) {
                After::Close("churn")
            } else if let Some(pause) = plan.slow {
                After::Pause(pause)
            } else {
                After::Read
            }
        })
        .await
        .to_string();
        let done = end == "close 1000" || end == "deadline";
        seen.ends.push(end);
        if done {
            return seen;
        }
    }
}

/// Checks a watcher saw exactly `plan.expected(log)`: same seqs, same events, in order.
/// Returns a description of the first difference.
pub fn check_watcher(plan: &WatchPlan, seen: &Seen, log: &[Event]) -> Result<(), String> {
    let expected = plan.expected(log);
    if !seen.disorder.is_empty() {
        return Err(format!(
            "{}: {} out-of-order or repeated events, first: {}",
            plan.name,
            seen.disorder.len(),
            seen.disorder[0]
        ));
    }
    for (i, want) in expected.iter().enumerate() {
        match seen.events.get(i) {
            None => {
                return Err(format!(
                    "{}: missing from seq {} on ({} of {} seen; ends {:?})",
                    plan.name,
                    want.seq,
                    seen.events.len(),
                    expected.len(),
                    seen.ends
                ));
            }
            Some(got) if got != *want => {
                return Err(format!(
                    "{}: event {i} differs: got {got:?}, want {want:?}",
                    plan.name
                ));
            }
            Some(_) => {}
        }
    }
    if seen.events.len() != expected.len() {
        return Err(format!(
            "{}: {} extra events after the last expected; first extra {:?}",
            plan.name,
            seen.events.len() - expected.len(),
            seen.events.get(expected.len())
        ));
    }
    Ok(())
}

/// Seqs run 1..=max with no gap and no repeat.
pub fn assert_gapless(log: &[Event]) {
    for (i, e) in log.iter().enumerate() {
        assert_eq!(
            e.seq,
            i as u64 + 1,
            "stored seqs not gapless at index {i}: {e:?}"
        );
    }
}

/// Every process in /proc now: its pid and its /proc directory.
fn pids() -> impl Iterator<Item = (i32, std::path::PathBuf)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
            Some((pid, entry.path()))
        })
}

/// Pids of live (not zombie) processes whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for (pid, dir) in pids() {
        let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(marker) && !crate::support::process_gone(pid) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// A multi-threaded runtime for watchers, beside the test's blocking main thread.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The last lines of the supervisor's log, for failure messages.
pub fn log_tail(setup: &Setup, lines: usize) -> String {
    let log = setup.log();
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits (with a deadline) until `cell` reaches `at_least`.
pub fn wait_progress(cell: &AtomicU64, at_least: u64, deadline: Duration, what: &str) {
    let start = Instant::now();
    while cell.load(Ordering::SeqCst) < at_least {
        assert!(
            start.elapsed() < deadline,
            "timed out waiting for {what}: at {} of {at_least}",
            cell.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One WebSocket connection to `url`, read until it ends (no reconnect): every event
/// received, and how it ended (`close CODE`, `eof`, `error …`, `deadline`). `progress`
/// counts events received.
pub async fn watch_once(
    url: String,
    progress: Arc<AtomicU64>,
    deadline: Duration,
) -> (Vec<Value>, String) {
    let give_up = tokio::time::Instant::now() + deadline;
    let options = Options::default();
    let connect = shipwatch_wstest::connect(&url, &options);
    let mut ws = match tokio::time::timeout_at(give_up, connect).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return (Vec::new(), format!("connect {e}")),
        Err(_) => return (Vec::new(), "deadline".into()),
    };
    let mut events = Vec::new();
    let end = read_events(&mut ws, Limit::At(give_up), |values| {
        events.extend(values);
        progress.store(events.len() as u64, Ordering::SeqCst);
        After::Read
    })
    .await
    .to_string();
    (events, end)
}

/// The parent pid of `pid`, from /proc.
pub fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The `SHIPWATCH_JOB` of every live process descending from `ancestor`.
pub fn jobs_run_under(ancestor: i32) -> std::collections::BTreeSet<u64> {
    let mut jobs = std::collections::BTreeSet::new();
    for (pid, dir) in pids() {
        let mut up = parent_of(pid);
        let mut descends = false;
        for _ in 0..16 {
            match up {
                Some(p) if p == ancestor => {
                    descends = true;
                    break;
                }
                Some(p) if p > 1 => up = parent_of(p),
                _ => break,
            }
        }
        if !descends {
            continue;
        }
        let Ok(environ) = std::fs::read(dir.join("environ")) else {
            continue;
        };
        for var in environ.split(|b| *b == 0) {
            if let Some(job) = var
                .strip_prefix(b"SHIPWATCH_JOB=")
                .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
            {
                jobs.insert(job);
            }
        }
    }
    jobs
}

/// Effective uid 0, read from /proc (the root package has no libc dependency).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// `shipwatch up` in its own mount namespace (`unshare`) with its data_dir on a tmpfs of
/// `tmpfs` options (e.g. `size=10m`) holding a ballast file of `ballast_mb` MiB, so the
/// store really fills up; returns the supervisor and the ballast's path as this process
/// sees it (delete it to make room). Its log goes to `up.log` as with [`Setup::up`].
pub fn up_on_small_disk(
    setup: &Setup,
    tmpfs: &str,
    ballast_mb: u32,
    env: &[(&str, &str)],
) -> (crate::support::Guard, std::path::PathBuf) {
    use std::process::{Command, Stdio};
    let dir = setup.dir.path();
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    // Root may mount in a new mount namespace; anyone else in a new user namespace too.
    let log = std::fs::File::create(dir.join("up.log")).expect("log");
    let mut command = Command::new("unshare");
    command.arg(if is_root() { "-m" } else { "-rm" }).args([
        "sh",
        "-c",
        "mount -t tmpfs -o \"$1\" tmpfs \"$2\" && head -c \"$3\"M /dev/zero > \"$2/ballast\" \
         && exec \"$4\" up -c \"$5\"",
        "sh",
        tmpfs,
        crate::support::path_str(&data),
        &ballast_mb.to_string(),
        crate::support::BIN,
        crate::support::path_str(&setup.config_path()),
    ]);
    command
        .current_dir(dir)
        .env("SHIPWATCH_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
    for (key, value) in env {
        command.env(key, value);
    }
    let up = crate::support::Guard(command.spawn().expect("unshare (util-linux) runs"));
    // The ballast, as the supervisor's mount namespace sees it (once it is mounted).
    let ballast = std::path::PathBuf::from(format!(
        "/proc/{}/root{}/ballast",
        up.0.id(),
        data.display()
    ));
    (up, ballast)
}
