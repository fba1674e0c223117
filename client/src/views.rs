//! INTERIM: the API's views until `protocol::api` lands on main (house-a); then this
//! module goes and the client reads those types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shipwatch_protocol::{HostState, JobId, JobSpec, JobState};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobView {
    pub id: JobId,
    pub task: String,
    pub state: JobState,
    pub params: BTreeMap<String, String>,
    pub started_by: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub reason: Option<String>,
    pub counts: Counts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<HostView>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<JobSpec>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Counts {
    pub pending: u32,
    pub running: u32,
    pub ok: u32,
    pub failed: u32,
    pub timeout: u32,
    pub unreachable: u32,
    pub cancelled: u32,
    pub skipped: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostView {
    pub host: String,
    pub state: HostState,
    pub exit_code: Option<i32>,
    pub wave: u32,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobList {
    pub jobs: Vec<JobView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskView {
    pub name: String,
    pub description: String,
    pub hosts: Vec<String>,
    pub concurrency: u32,
    pub params: Vec<ParamView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParamView {
    pub name: String,
    pub pattern: Option<String>,
    pub required: bool,
    pub default: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskList {
    pub tasks: Vec<TaskView>,
}
