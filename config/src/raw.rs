//! The file as written: every key optional, every value with its span, so validation can
//! point at the user's words. Nothing here is trusted; `load` turns it into a `Config`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

pub(crate) type S<T> = Spanned<T>;

/// The keys each table accepts, checked before deserializing so that every unknown key
/// is reported at once (serde's `deny_unknown_fields` stops at the first).
pub(crate) mod keys {
    pub const TOP: &[&str] = &[
        "server",
        "supervisor",
        "ssh",
        "hosts",
        "tasks",
        "users",
        "tokens",
        "auth",
        "store",
        "notify",
    ];
    pub const SERVER: &[&str] = &[
        "listen",
        "data_dir",
        "run_dir",
        "public_url",
        "retention_days",
        "max_log_bytes",
    ];
    pub const SUPERVISOR: &[&str] = &[
        "runners",
        "start_secs",
        "start_retries",
        "backoff_max_secs",
        "stop_timeout_secs",
        "drain_timeout_secs",
        "watch_config",
    ];
    pub const SSH: &[&str] = &[
        "user",
        "port",
        "identity_file",
        "known_hosts",
        "connect_timeout_secs",
        "options",
    ];
    pub const TASK: &[&str] = &[
        "name",
        "description",
        "hosts",
        "transport",
        "script",
        "script_file",
        "batch",
        "max_failures",
        "timeout_secs",
        "concurrency",
        "allow",
        "params",
    ];
    pub const PARAM: &[&str] = &["name", "pattern", "required", "default"];
    pub const USER: &[&str] = &["name", "password_hash", "role"];
    pub const TOKEN: &[&str] = &["name", "token_hash", "role"];
    pub const AUTH: &[&str] = &["anonymous", "session_idle_hours", "session_max_days"];
    pub const NOTIFY: &[&str] = &["url", "on", "format", "tasks"];
    pub const STORE: &[&str] = &["url", "password_file"];
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub supervisor: RawSupervisor,
    #[serde(default)]
    pub ssh: RawSsh,
    #[serde(default)]
    /// Group name -> host specs; the keys are the user's group names.
    pub hosts: BTreeMap<S<String>, S<Vec<S<String>>>>,
    #[serde(default)]
    pub tasks: Vec<S<RawTask>>,
    #[serde(default)]
    pub users: Vec<S<RawUser>>,
    #[serde(default)]
    pub tokens: Vec<S<RawToken>>,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub notify: Vec<S<RawNotify>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub listen: Option<S<String>>,
    pub data_dir: Option<S<String>>,
    pub run_dir: Option<S<String>>,
    pub public_url: Option<S<String>>,
    pub retention_days: Option<S<i64>>,
    pub max_log_bytes: Option<S<i64>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSupervisor {
    pub runners: Option<S<i64>>,
    pub start_secs: Option<S<f64>>,
    pub start_retries: Option<S<i64>>,
    pub backoff_max_secs: Option<S<f64>>,
    pub stop_timeout_secs: Option<S<f64>>,
    pub drain_timeout_secs: Option<S<f64>>,
    pub watch_config: Option<S<bool>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSsh {
    pub user: Option<S<String>>,
    pub port: Option<S<i64>>,
    pub identity_file: Option<S<String>>,
    pub known_hosts: Option<S<String>>,
    pub connect_timeout_secs: Option<S<i64>>,
    pub options: Option<Vec<S<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTask {
    pub name: S<String>,
    pub description: Option<S<String>>,
    pub hosts: S<Vec<S<String>>>,
    pub transport: Option<S<String>>,
    pub script: Option<S<String>>,
    pub script_file: Option<S<String>>,
    pub batch: Option<S<toml::Value>>,
    pub max_failures: Option<S<toml::Value>>,
    pub timeout_secs: Option<S<i64>>,
    pub concurrency: Option<S<i64>>,
    pub allow: Option<Vec<S<String>>>,
    #[serde(default)]
    pub params: Vec<S<RawParam>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawParam {
    pub name: S<String>,
    pub pattern: Option<S<String>>,
    pub required: Option<S<bool>>,
    pub default: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUser {
    pub name: S<String>,
    pub password_hash: S<String>,
    pub role: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawToken {
    pub name: S<String>,
    pub token_hash: S<String>,
    pub role: S<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    pub anonymous: Option<S<String>>,
    pub session_idle_hours: Option<S<f64>>,
    pub session_max_days: Option<S<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNotify {
    pub url: S<String>,
    pub on: Option<Vec<S<String>>>,
    pub format: Option<S<String>>,
    pub tasks: Option<Vec<S<String>>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStore {
    pub url: Option<S<String>>,
    pub password_file: Option<S<String>>,
}
