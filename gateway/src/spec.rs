//! A job's spec from a task and a request's params (DESIGN §1: a job is a snapshot):
//! what the configuration says now, resolved into what the runner will execute, so a
//! later reload changes nothing in the job.

use std::collections::BTreeMap;
use std::path::PathBuf;

use shipwatch_config::{Config, Host, Transport as ConfigTransport};
use shipwatch_protocol::{HostTarget, JobSpec, SshSpec, Transport};

/// Why a job cannot be made from a task and params: the gateway answers HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SpecError {
    /// The request field at fault: `task`, or the param's name.
    pub field: Option<String>,
    /// Human readable, names the param and what it must look like.
    pub message: String,
}

impl SpecError {
    fn new(field: Option<&str>, message: String) -> Self {
        Self {
            field: field.map(str::to_string),
            message,
        }
    }
}

/// The longest param value accepted: params are revisions, names and flags, and every
/// byte of one lands in the environment of every host's script.
pub const MAX_PARAM_BYTES: usize = 4096;

/// `value` quoted for an error message, cut short when long.
fn shown(value: &str) -> String {
    const SHOWN: usize = 64;
    match value.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{:?}…", &value[..cut]),
        None => format!("{value:?}"),
    }
}

/// Resolves `task` with `params` into the self-contained snapshot a runner executes.
pub fn job_spec(
    config: &Config,
    task: &str,
    params: &BTreeMap<String, String>,
) -> Result<JobSpec, SpecError> {
    let Some(task) = config.task(task) else {
        return Err(SpecError::new(
            Some("task"),
            format!("unknown task {task:?}"),
        ));
    };
    if let Some(unknown) = params
        .keys()
        .find(|k| !task.params.iter().any(|p| &p.name == *k))
    {
        return Err(SpecError::new(
            Some(unknown),
            format!("task {:?} has no param {unknown:?}", task.name),
        ));
    }
    let mut values = BTreeMap::new();
    for param in &task.params {
        let value = params.get(&param.name).unwrap_or(&param.default);
        if value.len() > MAX_PARAM_BYTES {
            return Err(SpecError::new(
                Some(&param.name),
                format!(
                    "{} is {} bytes long; a param is at most {MAX_PARAM_BYTES}",
                    param.name,
                    value.len()
                ),
            ));
        }
        if value.contains('\0') {
            return Err(SpecError::new(
                Some(&param.name),
                format!("{} cannot contain a NUL character", param.name),
            ));
        }
        if value.is_empty() {
            if param.required {
                return Err(SpecError::new(
                    Some(&param.name),
                    format!("{} is required", param.name),
                ));
            }
        } else if let Some(pattern) = &param.pattern
            && !pattern.is_match(value)
        {
            return Err(SpecError::new(
                Some(&param.name),
                format!(
                    "{} = {} does not match the pattern {}",
                    param.name,
                    shown(value),
                    param.pattern_text()
                ),
            ));
        }
        values.insert(param.name.clone(), value.clone());
    }
    let mut remaining = task.hosts.iter();
    let waves = task
        .batch
        .wave_sizes(task.hosts.len())
        .into_iter()
        .map(|size| {
            remaining
                .by_ref()
                .take(size)
                .map(|h| h.name.clone())
                .collect()
        })
        .collect();
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
    Ok(JobSpec {
        task: task.name.clone(),
        transport: transport(task.transport),
        script: task.script.clone(),
        hosts: task.hosts.iter().map(host_target).collect(),
        waves,
        max_failures: task.max_failures.resolve(task.hosts.len()),
        timeout_secs: task.timeout.as_secs(),
        params: values,
        ssh: SshSpec {
            user: config.ssh.user.clone(),
            port: config.ssh.port,
            identity_file: path(&config.ssh.identity_file),
            known_hosts: path(&config.ssh.known_hosts),
            connect_timeout_secs: config.ssh.connect_timeout.as_secs(),
            options: config.ssh.options.clone(),
        },
    })
}

fn transport(transport: ConfigTransport) -> Transport {
    match transport {
        ConfigTransport::Ssh => Transport::Ssh,
        ConfigTransport::Local => Transport::Local,
    }
}

fn host_target(host: &Host) -> HostTarget {
    HostTarget {
        name: host.name.clone(),
        address: host.address.clone(),
        port: host.port,
    }
}
