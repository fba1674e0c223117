//! The validated configuration, as the rest of shipwatch receives it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use shipwatch_protocol::{HostTarget, Transport};

/// A loaded, valid configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from: reload re-reads this, errors name it.
    pub source: ConfigSource,
    pub server: Server,
    pub supervisor: Supervisor,
    pub ssh: Ssh,
    /// Host groups by name, each host once, in file order.
    pub hosts: BTreeMap<String, Vec<HostTarget>>,
    /// Tasks in file order; names are unique.
    pub tasks: Vec<Task>,
    pub users: Vec<User>,
    pub tokens: Vec<ApiToken>,
    pub auth: Auth,
}

/// A config file on disk, or the demo compiled into the binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    Demo,
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct Server {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Already resolved: `$RUNTIME_DIRECTORY` when set, else the file's `run_dir`.
    pub run_dir: PathBuf,
    pub public_url: String,
    pub retention_days: u32,
    pub max_log_bytes: u64,
}

/// `[supervisor]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Supervisor {
    pub runners: u32,
    pub start_secs: Duration,
    pub start_retries: u32,
    pub backoff_max: Duration,
    pub stop_timeout: Duration,
    pub drain_timeout: Duration,
    pub watch_config: bool,
}

/// `[ssh]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ssh {
    pub user: String,
    pub port: u16,
    /// `None`: ssh's own defaults.
    pub identity_file: Option<PathBuf>,
    /// `None`: ssh's own; host keys are always checked either way.
    pub known_hosts: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub options: Vec<String>,
}

/// One `[[tasks]]`.
#[derive(Debug, Clone)]
pub struct Task {
    pub name: String,
    pub description: String,
    /// Groups and single hosts resolved to hosts, each once, in the order named.
    pub hosts: Vec<HostTarget>,
    pub transport: Transport,
    /// The script text (`script_file` already read, relative to the config file).
    pub script: String,
    pub batch: Batch,
    pub max_failures: Threshold,
    pub timeout: Duration,
    pub concurrency: u32,
    pub allow: Vec<Role>,
    pub params: Vec<Param>,
}

/// Hosts per wave: one size, or a list whose last item repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch(pub Vec<Amount>);

/// `max_failures`: a count or a percent of the job's hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold(pub Amount);

/// A number of hosts, absolute or as a percent of all the job's hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Count(u32),
    /// 1..=100.
    Percent(u32),
}

/// One `[[tasks.params]]`.
#[derive(Debug, Clone)]
pub struct Param {
    /// A valid environment variable name.
    pub name: String,
    /// Anchored as written; `None` accepts any value.
    pub pattern: Option<regex::Regex>,
    pub required: bool,
    pub default: String,
}

/// What a person or token may do: viewer < operator < admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

/// One `[[users]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// An argon2id PHC string.
    pub password_hash: String,
    pub role: Role,
}

/// One `[[tokens]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub name: String,
    /// An argon2id PHC string.
    pub token_hash: String,
    pub role: Role,
}

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// Role of unauthenticated requests; `None` refuses them.
    pub anonymous: Option<Role>,
}

impl Config {
    /// The task called `name`.
    pub fn task(&self, name: &str) -> Option<&Task> {
        self.tasks.iter().find(|task| task.name == name)
    }
}
