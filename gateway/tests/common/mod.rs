//! What the gateway's tests share: a job spec, configs, a store, a real gateway with a
//! minimal HTTP client, and reading the process's memory and the environment's knobs.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use shipwatch_gateway::fanout::Hub;
use shipwatch_gateway::store::{Publisher, Store, StoreLimits};
use shipwatch_gateway::{AppState, Dispatcher};
use shipwatch_protocol::{EventBody, HostState, JobSpec, JobState, RunnerEvent, Stream, Timestamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A local-transport spec with `hosts` in one wave.
pub fn spec<S: AsRef<str>>(hosts: &[S]) -> JobSpec {
    JobSpec::local("deploy", "echo hi", hosts)
}

/// A config with one local host and task `deploy`, data and sockets under `dir`,
/// anonymous admin (the tests talk to loopback only).
pub fn config(dir: &std::path::Path) -> shipwatch_config::Config {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{d}/data"
run_dir = "{d}/run"

[auth]
anonymous = "admin"

[hosts]
web = ["web-01"]

[[tasks]]
name = "deploy"
hosts = ["web"]
transport = "local"
script = "true"
"#,
        d = dir.display()
    );
    shipwatch_config::load_str(&text, "shipwatch.toml", dir).unwrap()
}

/// This process's resident memory in KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A numeric knob from the environment (scales a test up into a measurement).
pub fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A temp dir under /tmp named `prefix…`: short, since Unix socket paths in it are
/// limited to 108 bytes.
pub fn short_tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .unwrap()
}

/// A store in `data_dir` keeping `max_log_bytes` of lines per job, publishing to `publish`.
pub fn store(data_dir: &Path, max_log_bytes: u64, publish: Arc<dyn Publisher>) -> Store {
    Store::open(
        data_dir,
        StoreLimits {
            max_log_bytes,
            retention_days: 30,
        },
        publish,
    )
    .unwrap()
}

/// A store in `data_dir` with no log cap, publishing to `hub`.
pub fn unlimited_store(data_dir: &Path, hub: &Arc<Hub>) -> Store {
    store(data_dir, u64::MAX, hub.clone())
}

/// A runner's line event: `text` on `host`'s `stream`, at a fixed time past `rseq`.
pub fn line_on(rseq: u64, host: &str, stream: Stream, text: &str) -> RunnerEvent {
    RunnerEvent {
        rseq,
        ts: Timestamp(1_764_000_000_000 + rseq as i64),
        body: EventBody::Line {
            host: host.into(),
            stream,
            text: text.into(),
        },
    }
}

/// [`line_on`] stdout.
pub fn line(rseq: u64, host: &str, text: &str) -> RunnerEvent {
    line_on(rseq, host, Stream::Stdout, text)
}

/// A runner's host event: `host` is now `state`.
pub fn host_is(rseq: u64, host: &str, state: HostState, exit_code: Option<i32>) -> RunnerEvent {
    RunnerEvent {
        rseq,
        ts: Timestamp(1_764_000_000_000 + rseq as i64),
        body: EventBody::Host {
            host: host.into(),
            state,
            exit_code,
        },
    }
}

/// A runner's final job event.
pub fn job_ends(rseq: u64, state: JobState, reason: Option<&str>) -> RunnerEvent {
    RunnerEvent {
        rseq,
        ts: Timestamp(1_764_000_000_000 + rseq as i64),
        body: EventBody::Job {
            state,
            reason: reason.map(str::to_string),
        },
    }
}

/// The gateway's HTTP router (`cfg`, `store`, `hub`) served on a free loopback port of
/// the current runtime until `shutdown`; returns the port.
pub async fn serve_api(
    cfg: shipwatch_config::Config,
    store: &Store,
    hub: &Arc<Hub>,
    tracker: TaskTracker,
    shutdown: &CancellationToken,
) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (config_tx, config_rx) = tokio::sync::watch::channel(Arc::new(cfg));
    let dispatcher = Dispatcher::new(store.clone(), config_rx.clone(), tracker, shutdown.clone());
    let router = shipwatch_gateway::http::router(
        AppState {
            config: config_rx.clone(),
            config_tx: Arc::new(config_tx),
            store: store.clone(),
            dispatcher,
            auth: shipwatch_gateway::auth::Auth::new(config_rx, store.clone()),
        },
        hub.clone(),
    );
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    port
}

/// The API tests' config: task `deploy` on two local hosts with a required `REVISION`,
/// listening on `port`, anonymous visitors given `role`.
pub fn api_config(dir: &std::path::Path, port: u16, role: &str) -> shipwatch_config::Config {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
data_dir = "{d}/data"
run_dir = "{d}/run"

[auth]
anonymous = "{role}"

[hosts]
web = ["web-01", "web-02"]

[[tasks]]
name = "deploy"
hosts = ["web"]
transport = "local"
script = "echo hi"

[[tasks.params]]
name = "REVISION"
pattern = "[0-9a-f]{{7,40}}"
required = true
"#,
        d = dir.display()
    );
    shipwatch_config::load_str(&text, "shipwatch.toml", dir).unwrap()
}

/// One HTTP/1.1 request with `Connection: close`; returns status and body.
pub async fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (status, body)
}

/// A real gateway (`run()`) for anonymous visitors with `role`, listening on a free
/// loopback port; stop it with [`Gateway::stop`].
pub struct Gateway {
    _dir: tempfile::TempDir,
    pub port: u16,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), shipwatch_gateway::GatewayError>>,
}

impl Gateway {
    pub async fn start(role: &str) -> Gateway {
        let dir = short_tempdir("api");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(shipwatch_gateway::run(
            api_config(dir.path(), port, role),
            shutdown.clone(),
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "gateway never listened"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Gateway {
            _dir: dir,
            port,
            shutdown,
            server,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

/// Starts task `deploy` with `REVISION=abc1234` on the gateway at `port`; its job id.
pub async fn start_deploy(port: u16) -> u64 {
    let (status, body) = http(
        port,
        "POST",
        "/api/jobs",
        r#"{"task":"deploy","params":{"REVISION":"abc1234"}}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
        .as_u64()
        .unwrap()
}
