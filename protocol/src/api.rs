//! What the HTTP API of DESIGN §6 sends and receives, as typed views: the gateway
//! serialises them, a client deserialises them, and neither needs the other's crate.
//!
//! The JSON of each view is the wire contract; field names and optional-field rules here
//! are what the API tests and the web page read.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{HostState, JobId, JobSpec, JobState, Stream};

/// A job as `GET /api/jobs/{id}` returns it; in lists `hosts` and `spec` are absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// How many of a job's hosts are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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

impl Counts {
    /// Every host of the job, whatever its state.
    pub fn total(&self) -> u32 {
        self.pending
            + self.running
            + self.ok
            + self.failed
            + self.timeout
            + self.unreachable
            + self.cancelled
            + self.skipped
    }

    /// The counter of hosts in `state`.
    pub fn of_mut(&mut self, state: HostState) -> &mut u32 {
        match state {
            HostState::Pending => &mut self.pending,
            HostState::Running => &mut self.running,
            HostState::Ok => &mut self.ok,
            HostState::Failed => &mut self.failed,
            HostState::Timeout => &mut self.timeout,
            HostState::Unreachable => &mut self.unreachable,
            HostState::Cancelled => &mut self.cancelled,
            HostState::Skipped => &mut self.skipped,
        }
    }
}

/// One host of a job as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostView {
    pub host: String,
    pub state: HostState,
    pub exit_code: Option<i32>,
    pub wave: u32,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
}

/// `GET /api/jobs`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobList {
    pub jobs: Vec<JobView>,
}

/// `POST /api/jobs`: the task to run and its params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewJob {
    pub task: String,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// `POST /api/jobs/{id}/rerun`: which of the job's hosts the new job runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RerunRequest {
    pub hosts: RerunHosts,
}

/// The hosts of a re-run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RerunHosts {
    /// Those that failed, timed out or were unreachable.
    Failed,
    /// Every host of the original job.
    All,
}

/// One task of `GET /api/tasks`, with the params a job of it takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    pub name: String,
    pub description: String,
    /// The groups and single hosts it runs on, as the config names them.
    pub hosts: Vec<String>,
    /// Running jobs of this task at once; more is refused with 409.
    pub concurrency: u32,
    pub params: Vec<ParamView>,
    /// The roles that may start it, as the gateway applies the task's `allow` (admin
    /// always; a viewer never).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Whether whoever asked may start it: the page offers Run only then.
    #[serde(default)]
    pub may_run: bool,
}

/// One param of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamView {
    pub name: String,
    /// The regular expression a value must match, when the task sets one.
    pub pattern: Option<String>,
    pub required: bool,
    pub default: String,
}

/// `GET /api/tasks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskList {
    pub tasks: Vec<TaskView>,
}

/// One record of `GET /api/audit`: who started or cancelled what, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Ascending; `GET /api/audit?before=ID` pages with it.
    pub id: i64,
    pub ts: String,
    /// A user or token name, `anonymous`, or `gateway` for what the gateway did itself.
    pub actor: String,
    /// `start`, `cancel`, `rerun`, `login`, `logout` or `reload`.
    pub action: String,
    pub job: Option<JobId>,
    pub detail: String,
    /// The client's address; empty when unknown.
    pub addr: String,
    /// `ok`, or why it was refused (`wrong password`, `throttled`…).
    pub outcome: String,
}

/// `GET /api/audit`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLog {
    pub audit: Vec<AuditEntry>,
}

/// The body of every API error (400/401/403/404/409/503).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Human readable.
    pub error: String,
    /// The request field or param at fault, when one is.
    pub field: Option<String>,
}

/// One line of `GET /api/jobs/{id}/log` in its text format: `ts host stream| text`.
///
/// Borrowed where it can be, so the gateway formats straight from an event's JSON.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LogLine<'a> {
    #[serde(borrow)]
    pub ts: Cow<'a, str>,
    #[serde(borrow)]
    pub host: Cow<'a, str>,
    pub stream: Stream,
    #[serde(borrow)]
    pub text: Cow<'a, str>,
}

/// Why a text log line could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a log line (`ts host stream| text`): {line:?}")]
pub struct LogLineError {
    pub line: String,
}

impl<'a> LogLine<'a> {
    /// Appends the line and its newline to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.ts.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.host.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.stream.as_str().as_bytes());
        out.extend_from_slice(b"| ");
        out.extend_from_slice(self.text.as_bytes());
        out.push(b'\n');
    }

    /// Reads a line of the text format back (its newline, if any, stripped first).
    ///
    /// Timestamps and host names hold no space and the stream is a fixed word, so the
    /// text is everything after the first `| ` that follows them, spaces and `| ` included.
    pub fn parse(line: &'a str) -> Result<LogLine<'a>, LogLineError> {
        let bad = || LogLineError { line: line.into() };
        let line = line.strip_suffix('\n').unwrap_or(line);
        let (ts, rest) = line.split_once(' ').ok_or_else(bad)?;
        let (host, rest) = rest.split_once(' ').ok_or_else(bad)?;
        let (stream, text) = rest.split_once("| ").ok_or_else(bad)?;
        Ok(LogLine {
            ts: ts.into(),
            host: host.into(),
            stream: stream.parse().map_err(|_| bad())?,
            text: text.into(),
        })
    }
}

impl fmt::Display for LogLine<'_> {
    /// The line without its newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}| {}",
            self.ts, self.host, self.stream, self.text
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_reads_back_as_it_was_written() {
        let line = LogLine {
            ts: "2026-12-01T22:04:22.123Z".into(),
            host: "web-03".into(),
            stream: Stream::Stderr,
            text: "  spaces, a | bar and | more ".into(),
        };
        let mut out = Vec::new();
        line.write_to(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "2026-12-01T22:04:22.123Z web-03 stderr|   spaces, a | bar and | more \n"
        );
        assert_eq!(LogLine::parse(&text).unwrap(), line);
        assert_eq!(format!("{line}\n"), text);
    }

    #[test]
    fn an_empty_text_is_a_line_too() {
        let got = LogLine::parse("2026-12-01T22:04:22.123Z web-01 stdout| ").unwrap();
        assert_eq!(got.text, "");
        assert_eq!(got.stream, Stream::Stdout);
    }

    #[test]
    fn what_is_not_a_log_line_says_so() {
        for bad in ["", "ts host", "ts host stdout text", "ts host nope| text"] {
            assert!(LogLine::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_list_job_reads_without_hosts_or_spec() {
        let json = r#"{"id":42,"task":"deploy","state":"running","params":{"REVISION":"abc1234"},
            "started_by":"alice","created_at":"t","started_at":"t","ended_at":null,"reason":null,
            "counts":{"pending":10,"running":5,"ok":5,"failed":0,"timeout":0,"unreachable":0,"cancelled":0,"skipped":0}}"#;
        let job: JobView = serde_json::from_str(json).unwrap();
        assert_eq!(job.counts.pending, 10);
        assert!(job.hosts.is_none() && job.spec.is_none());
        let again = serde_json::to_value(&job).unwrap();
        assert!(again.get("hosts").is_none(), "{again}");
    }
}
