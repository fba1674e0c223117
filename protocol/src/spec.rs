//! The self-contained snapshot of a task that a job runs (DESIGN §1: a job is a snapshot).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a host's script is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// The system OpenSSH client.
    Ssh,
    /// `bash -s` on this box with `$SHIPWATCH_HOST` set: the demo and tests.
    Local,
}

/// One host as a job addresses it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HostTarget {
    /// The name users see and events carry.
    pub name: String,
    /// What ssh connects to; the name when absent.
    pub address: Option<String>,
    /// Overrides `[ssh] port` for this host.
    pub port: Option<u16>,
}

/// `[ssh]` as it was when the job was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshSpec {
    pub user: String,
    pub port: u16,
    pub identity_file: Option<String>,
    pub known_hosts: Option<String>,
    pub connect_timeout_secs: u64,
    pub options: Vec<String>,
}

/// Everything a runner needs to run a job, resolved by the gateway at creation time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub task: String,
    pub transport: Transport,
    /// Bash script text, sent on stdin.
    pub script: String,
    /// Every host of the job, in wave order.
    pub hosts: Vec<HostTarget>,
    /// Host names per wave; waves run one after another.
    pub waves: Vec<Vec<String>>,
    /// Failed + unreachable + timed-out hosts tolerated, already resolved to a count.
    pub max_failures: u32,
    /// Per host; then the host's process group (local and remote) is killed.
    pub timeout_secs: u64,
    /// Passed only as environment variables, never spliced into the script text.
    pub params: BTreeMap<String, String>,
    pub ssh: SshSpec,
}

#[cfg(feature = "test-support")]
impl JobSpec {
    /// For tests and benches: task `task` running `script` locally on `hosts`, all in one
    /// wave, no failure tolerated, 60 s per host, no params, `[ssh]` defaults. Change the
    /// fields a test cares about with `JobSpec { …, ..JobSpec::local(…) }`.
    pub fn local<S: AsRef<str>>(task: &str, script: &str, hosts: &[S]) -> JobSpec {
        let names: Vec<String> = hosts.iter().map(|h| h.as_ref().to_owned()).collect();
        JobSpec {
            task: task.to_owned(),
            transport: Transport::Local,
            script: script.to_owned(),
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
}
