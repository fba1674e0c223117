//! The shipped examples load, with the defaults DESIGN §4 promises.

use std::path::Path;
use std::time::Duration;

use shipwatch_config::{Amount, Batch, ConfigSource, Role, Transport, load};

fn examples_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"))
}

#[test]
fn demo_loads_with_twenty_local_hosts() {
    let config = load(&ConfigSource::Demo).unwrap_or_else(|e| panic!("{e}"));
    let hosts: usize = config.hosts.values().map(Vec::len).sum();
    assert_eq!(hosts, 20);
    assert_eq!(config.supervisor.runners, 4);
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
    assert!(config.server.data_dir.is_absolute());
    assert!(config.server.data_dir.ends_with("shipwatch-data"));
    let deploy = config.task("deploy").expect("deploy task");
    assert_eq!(deploy.hosts.len(), 20);
    assert_eq!(deploy.transport, Transport::Local);
    assert_eq!(
        deploy.batch,
        Batch(vec![Amount::Count(1), Amount::Count(5)])
    );
    assert!(config.task("flaky-deploy").is_some());
    assert!(config.task("restart").is_some());
    assert_eq!(config.auth.anonymous, Some(Role::Admin));
}

#[test]
fn demo_file_on_disk_loads_with_paths_next_to_it() {
    let path = examples_dir().join("demo.toml");
    let config = load(&ConfigSource::File(path)).unwrap_or_else(|e| panic!("{e}"));
    let dir = std::path::absolute(examples_dir()).unwrap();
    assert_eq!(config.server.data_dir, dir.join("shipwatch-data"));
}

#[test]
fn ssh_example_loads() {
    let path = examples_dir().join("ssh.toml");
    let config = load(&ConfigSource::File(path)).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.tasks.iter().all(|t| t.transport == Transport::Ssh));
    assert_eq!(config.ssh.connect_timeout, Duration::from_secs(10));
}

#[test]
fn empty_file_gets_every_default() {
    let config = shipwatch_config::load_str("", "empty.toml", Path::new("/etc/shipwatch"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.server.data_dir, Path::new("/var/lib/shipwatch"));
    assert_eq!(config.server.public_url, "http://127.0.0.1:8080");
    assert_eq!(config.server.retention_days, 90);
    assert_eq!(config.server.max_log_bytes, 268_435_456);
    let s = &config.supervisor;
    assert_eq!(s.runners, 4);
    assert_eq!(s.start_secs, Duration::from_secs(1));
    assert_eq!(s.start_retries, 5);
    assert_eq!(s.backoff_max, Duration::from_secs(30));
    assert_eq!(s.stop_timeout, Duration::from_secs(10));
    assert_eq!(s.drain_timeout, Duration::from_secs(3600));
    assert!(s.watch_config);
    assert_eq!(config.ssh.user, "deploy");
    assert_eq!(config.ssh.port, 22);
    assert_eq!(config.ssh.identity_file, None);
    assert_eq!(config.ssh.known_hosts, None);
    assert!(config.ssh.options.is_empty());
    assert_eq!(config.auth.anonymous, None);
}

/// DESIGN §4's own example, every key spelled out, loads as written.
#[test]
fn every_key_of_the_design_loads() {
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0Wn3kP0EVtP3Pqf7Ghx5BCZ+OiN7dJV0/wBJ3NQ7GQM";
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:8080"
data_dir = "/var/lib/shipwatch"
run_dir = "/run/shipwatch"
public_url = "http://127.0.0.1:8080"
retention_days = 90
max_log_bytes = 268435456

[supervisor]
runners = 4
start_secs = 1
start_retries = 5
backoff_max_secs = 30
stop_timeout_secs = 10
drain_timeout_secs = 3600
watch_config = true

[ssh]
user = "deploy"
port = 22
identity_file = ""
known_hosts = ""
connect_timeout_secs = 10
options = []

[hosts]
web = ["web-01", "web-02=10.0.0.12", "web-03=10.0.0.13:2222"]
db  = ["db-01"]

[[tasks]]
name = "deploy"
description = "Rolling deploy of the web tier"
hosts = ["web"]
transport = "ssh"
script = "echo hi"
batch = 5
max_failures = 0
timeout_secs = 600
concurrency = 1
allow = ["operator"]
[[tasks.params]]
name = "REVISION"
pattern = "^[0-9a-f]{{7,40}}$"
required = true
default = ""

[[users]]
name = "alice"
password_hash = "{hash}"
role = "operator"
[[tokens]]
name = "ci"
token_hash = "{hash}"
role = "operator"
[auth]
anonymous = "none"
"#
    );
    let config = shipwatch_config::load_str(&text, "design.toml", Path::new("/etc/shipwatch"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.tasks[0].params[0].name, "REVISION");
    assert!(config.tasks[0].params[0].required);
    assert_eq!(config.users[0].role, Role::Operator);
    assert_eq!(config.tokens[0].name, "ci");
    assert_eq!(config.hosts["web"].len(), 3);
    assert_eq!(config.hosts["web"][2].port, Some(2222));
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
}
