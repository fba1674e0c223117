//! The control socket `<run_dir>/control.sock`: one JSON request line, one JSON response
//! line. Mode 0600 and a peer-credential check (same uid or root) guard it.

use shipwatch_protocol::Report;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{Process, Supervisor, SupervisorError, SupervisorEvent};

/// What `shipwatch ctl` asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    /// `NAME`, `runners` or `all`.
    Restart {
        target: String,
    },
    /// Runner count until the next reload from the file.
    Scale {
        runners: u32,
    },
    Reload,
    Stop,
}

/// The supervisor's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    /// Human-readable result or error (for reload: every config error, file:line:col).
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub processes: Vec<ProcessStatus>,
}

impl Response {
    /// Pretty JSON for `ctl status --json`.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// One row of `ctl status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessStatus {
    pub name: String,
    pub state: String,
    pub pid: Option<u32>,
    /// Microseconds since the current process started; `None` when none runs.
    pub uptime_us: Option<u64>,
    pub restarts: u32,
    pub last_exit: Option<String>,
}

/// The control socket's path for a run directory.
pub fn socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join("control.sock")
}

/// Binds the socket (replacing a stale one) with mode 0600.
pub(crate) fn bind(run_dir: &Path) -> Result<UnixListener, SupervisorError> {
    let path = socket_path(run_dir);
    let io = |source| SupervisorError::ControlSocket {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(run_dir).map_err(io)?;
    if std::os::unix::net::UnixStream::connect(&path).is_ok() {
        return Err(SupervisorError::AlreadyRunning(path));
    }
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(io)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(listener)
}

/// Accepts connections until `shutdown`, handing each request to the main loop.
pub(crate) async fn serve(
    listener: UnixListener,
    events: mpsc::UnboundedSender<SupervisorEvent>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    let own_uid = nix::unistd::getuid().as_raw();
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(error = %Report(&error), "control socket: accept failed");
                    continue;
                }
            },
        };
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == own_uid || cred.uid() == 0 => {}
            Ok(cred) => {
                tracing::warn!(uid = cred.uid(), "control socket: refused a foreign user");
                continue;
            }
            Err(error) => {
                tracing::warn!(error = %Report(&error), "control socket: no peer credentials");
                continue;
            }
        }
        let events = events.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = answer(stream, events) => {}
            }
        });
    }
}

async fn answer(stream: UnixStream, events: mpsc::UnboundedSender<SupervisorEvent>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take_lines_limit();
    if reader.read_line(&mut line).await.is_err() {
        return;
    }
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(request) => {
            let (reply, answer) = oneshot::channel();
            if events
                .send(SupervisorEvent::Control { request, reply })
                .is_err()
            {
                return;
            }
            match answer.await {
                Ok(response) => response,
                Err(_) => return,
            }
        }
        Err(error) => Response {
            ok: false,
            message: format!("bad request: {}", Report(&error)),
            processes: Vec::new(),
        },
    };
    let Ok(mut text) = serde_json::to_string(&response) else {
        return;
    };
    text.push('\n');
    let _ = write.write_all(text.as_bytes()).await;
    let _ = write.shutdown().await;
}

/// Bounds a request line so a client cannot make us buffer without end.
trait TakeLinesLimit: Sized {
    fn take_lines_limit(self) -> BufReader<tokio::io::Take<Self>>;
}

impl<R: tokio::io::AsyncRead + Unpin> TakeLinesLimit for BufReader<R> {
    fn take_lines_limit(self) -> BufReader<tokio::io::Take<Self>> {
        use tokio::io::AsyncReadExt;
        BufReader::new(self.take(64 * 1024))
    }
}

/// Sends one request to the supervisor of `run_dir` and returns its answer.
pub async fn request(run_dir: &Path, request: &Request) -> Result<Response, SupervisorError> {
    let path = socket_path(run_dir);
    let io = |source| SupervisorError::ControlSocket {
        path: path.clone(),
        source,
    };
    let stream = UnixStream::connect(&path).await.map_err(io)?;
    let (read, mut write) = stream.into_split();
    let mut text = serde_json::to_string(request).map_err(SupervisorError::Json)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await.map_err(io)?;
    let mut line = String::new();
    BufReader::new(read)
        .read_line(&mut line)
        .await
        .map_err(io)?;
    serde_json::from_str(&line).map_err(SupervisorError::Json)
}

/// `shipwatch ctl`: sends `request` to the supervisor of `run_dir` (on a runtime of its
/// own) and prints its answer: with `json` the whole response; for a status, its message
/// and the process table; else the message, on stderr when the request failed. Whether
/// the supervisor did what was asked.
pub fn ctl(run_dir: &Path, request: &Request, json: bool) -> Result<bool, SupervisorError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SupervisorError::Runtime)?;
    let response = runtime.block_on(self::request(run_dir, request))?;
    if json {
        println!("{}", response.to_json_pretty());
    } else if matches!(request, Request::Status) {
        println!("{}", response.message);
        print!("{}", format_table(&response.processes));
    } else if response.ok {
        println!("{}", response.message);
    } else {
        eprintln!("{}", response.message);
    }
    Ok(response.ok)
}

/// `ctl status` as a table: NAME STATE PID UPTIME RESTARTS LAST-EXIT.
pub fn format_table(processes: &[ProcessStatus]) -> String {
    let mut out = format!(
        "{:<10} {:<9} {:>8} {:>10} {:>8}  {}\n",
        "NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST-EXIT"
    );
    for p in processes {
        let pid = p.pid.map_or("-".to_owned(), |pid| pid.to_string());
        let uptime = p
            .uptime_us
            .map_or("-".to_owned(), |us| humane(us / 1_000_000));
        let last = p.last_exit.as_deref().unwrap_or("-");
        out.push_str(&format!(
            "{:<10} {:<9} {:>8} {:>10} {:>8}  {}\n",
            p.name, p.state, pid, uptime, p.restarts, last
        ));
    }
    out
}

fn humane(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}
impl Supervisor {
    /// Answers one `ctl` request.
    pub(crate) fn control(&mut self, request: Request) -> Response {
        let ok = |message: String| Response {
            ok: true,
            message,
            processes: Vec::new(),
        };
        let fail = |message: String| Response {
            ok: false,
            message,
            processes: Vec::new(),
        };
        if self.stopping && !matches!(request, Request::Status) {
            return fail("stopping".to_owned());
        }
        match request {
            Request::Status => Response {
                ok: true,
                message: self.status_line(),
                processes: self.statuses(),
            },
            Request::Restart { target } => {
                let targets: Vec<Process> = match target.as_str() {
                    "all" => self.table.keys().copied().collect(),
                    "runners" => self
                        .table
                        .keys()
                        .copied()
                        .filter(|k| *k != Process::Gateway)
                        .collect(),
                    name => match self.table.keys().copied().find(|k| k.name() == name) {
                        Some(process) => vec![process],
                        None => return fail(format!("no process named {name:?}")),
                    },
                };
                for process in &targets {
                    self.restart(*process);
                }
                ok(format!("restarting {} process(es)", targets.len()))
            }
            Request::Scale { runners } => {
                self.desired_runners = runners;
                if self.gateway_running() {
                    self.ensure_runners();
                }
                ok(format!("scaled to {runners} runners"))
            }
            Request::Reload => match self.reload("ctl reload") {
                Ok(message) => ok(message),
                Err(message) => fail(message),
            },
            Request::Stop => {
                self.begin_stop("ctl stop");
                ok("stopping".to_owned())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table_has_the_documented_columns() {
        let table = format_table(&[ProcessStatus {
            name: "runner-0".into(),
            state: "fatal".into(),
            pid: None,
            uptime_us: None,
            restarts: 5,
            last_exit: Some("exit 1 after 0.02 s".into()),
        }]);
        let mut lines = table.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(
            header,
            ["NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST-EXIT"]
        );
        let row = lines.next().unwrap_or_default();
        assert!(
            row.starts_with("runner-0") && row.ends_with("exit 1 after 0.02 s"),
            "{row}"
        );
    }
}
