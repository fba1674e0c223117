//! What the gateway's tests share: a job spec, a minimal config, and reading the
//! process's memory and the environment's knobs.

#![allow(dead_code)]

use std::collections::BTreeMap;

use shipwatch_protocol::{HostTarget, JobSpec, SshSpec, Transport};

/// A local-transport spec with `hosts` in one wave.
pub fn spec<S: AsRef<str>>(hosts: &[S]) -> JobSpec {
    let names: Vec<String> = hosts.iter().map(|h| h.as_ref().to_owned()).collect();
    JobSpec {
        task: "deploy".into(),
        transport: Transport::Local,
        script: "echo hi".into(),
        hosts: names
            .iter()
            .map(|name| HostTarget {
                name: name.clone(),
                address: None,
                port: None,
            })
            .collect(),
        waves: vec![names],
        max_failures: 0,
        timeout_secs: 60,
        params: BTreeMap::new(),
        ssh: SshSpec {
            user: "deploy".into(),
            port: 22,
            identity_file: None,
            known_hosts: None,
            connect_timeout_secs: 5,
            options: vec![],
        },
    }
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

/// A store in `data_dir` with no log cap, publishing to `hub`.
pub fn unlimited_store(
    data_dir: &std::path::Path,
    hub: &std::sync::Arc<shipwatch_gateway::fanout::Hub>,
) -> shipwatch_gateway::store::Store {
    shipwatch_gateway::store::Store::open(
        data_dir,
        shipwatch_gateway::store::StoreLimits {
            max_log_bytes: u64::MAX,
            retention_days: 30,
        },
        hub.clone(),
    )
    .unwrap()
}
