//! What the gateway's tests share, one copy each: job specs and runner events (here), a
//! store, configs and a real gateway (`gateway`), and the one raw HTTP/1.1 client that
//! shows every header (`http`), plus reading the process's memory and the environment's
//! knobs.

#![allow(dead_code)]

mod gateway;
mod http;

// Each test binary uses a part of it, so some of these go unused in each.
#[allow(unused_imports)]
pub use gateway::*;
#[allow(unused_imports)]
pub use http::*;

use std::path::Path;
use std::sync::Arc;

use shipwatch_gateway::fanout::Hub;
use shipwatch_gateway::store::{Publisher, Store, StoreLimits};
use shipwatch_protocol::{EventBody, HostState, JobSpec, JobState, RunnerEvent, Stream, Timestamp};

/// A local-transport spec with `hosts` in one wave.
pub fn spec<S: AsRef<str>>(hosts: &[S]) -> JobSpec {
    JobSpec::local("deploy", "echo hi", hosts)
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

/// The engines a store can be on; the store's tests run on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// Where a test's store lives (a temp dir, or a private PostgreSQL server's fresh
/// database), so it can be opened, dropped and opened again on the same data.
pub struct StoreSite {
    pub dir: tempfile::TempDir,
    postgres: Option<(shipwatch_pgtest::Postgres, shipwatch_config::PostgresUrl)>,
}

impl StoreSite {
    pub fn new(engine: Engine) -> StoreSite {
        let postgres = (engine == Engine::Postgres).then(|| {
            let server = shipwatch_pgtest::Postgres::start();
            let url = shipwatch_config::PostgresUrl::parse(&server.database()).unwrap();
            (server, url)
        });
        StoreSite {
            dir: tempfile::tempdir().unwrap(),
            postgres,
        }
    }

    /// `[store]` as a config would say it.
    pub fn location(&self) -> shipwatch_config::StoreLocation {
        match &self.postgres {
            Some((_, url)) => shipwatch_config::StoreLocation::Postgres(url.clone()),
            None => shipwatch_config::StoreLocation::Sqlite,
        }
    }

    /// The private server, when the site is PostgreSQL.
    pub fn server(&self) -> Option<&shipwatch_pgtest::Postgres> {
        self.postgres.as_ref().map(|(server, _)| server)
    }

    /// A store here keeping `max_log_bytes` of lines per job, publishing to `publish`.
    pub async fn open(&self, max_log_bytes: u64, publish: Arc<dyn Publisher>) -> Store {
        let limits = StoreLimits {
            max_log_bytes,
            retention_days: 30,
        };
        Store::open_at(&self.location(), self.dir.path(), limits, publish)
            .await
            .unwrap()
    }
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
