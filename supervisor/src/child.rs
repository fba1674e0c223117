//! Spawning one child: its own process group, a readiness pipe, a scrubbed environment,
//! death with the supervisor, and its output logged line by line under its name.

use shipwatch_protocol::Report;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::sys::signal::Signal;
use shipwatch_config::ConfigSource;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::SupervisorEvent;

/// Longest piece of a child's output logged as one line; longer runs are split.
const MAX_LINE: usize = 64 * 1024;

/// How long a child's output pipe may stay silent after the supervisor is done before
/// its reader gives up.
const OUTPUT_GRACE: Duration = Duration::from_millis(500);

/// Variables that belong to the supervisor alone: a child that saw them would talk to
/// systemd in our name or claim our sockets.
const SCRUBBED_ENV: &[&str] = &[
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
];

/// Which of the supervised processes a child is: the gateway or runner number K.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Process {
    Gateway,
    Runner(u32),
}

impl Process {
    /// The name in logs, `ctl` and STATUS: `gateway`, `runner-3`.
    pub fn name(self) -> String {
        match self {
            Process::Gateway => "gateway".to_owned(),
            Process::Runner(index) => format!("runner-{index}"),
        }
    }
}

/// Starts `process`; returns its pid. Its exit, readiness and output arrive as events.
///
/// Must be called from the thread that lives as long as the supervisor: PR_SET_PDEATHSIG
/// fires when the forking *thread* ends.
pub fn spawn(
    exe: &Path,
    source: &ConfigSource,
    process: Process,
    generation: u64,
    events: &mpsc::UnboundedSender<SupervisorEvent>,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) -> std::io::Result<u32> {
    let (ready_read, ready_write): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
    let ready_fd = ready_write.as_raw_fd();

    let mut command = tokio::process::Command::new(exe);
    match process {
        Process::Gateway => command.arg("gateway"),
        Process::Runner(index) => command.arg("runner").arg("--index").arg(index.to_string()),
    };
    match source {
        ConfigSource::Demo => command.arg("--demo"),
        ConfigSource::File(path) => command.arg("-c").arg(path),
        ConfigSource::Snapshot { file, of } => {
            command.arg("-c").arg(of).arg("--snapshot").arg(file)
        }
    };
    for name in SCRUBBED_ENV {
        command.env_remove(name);
    }
    command
        .env(
            shipwatch_protocol::supervision::READY_FD_ENV,
            ready_fd.to_string(),
        )
        // Their lines land in our log (the journal): escapes would only be noise.
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    let supervisor_pid = nix::unistd::getpid();
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
    // system calls (prctl, getppid, fcntl), allocating nothing.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            // The supervisor may have died before prctl took effect.
            if nix::unistd::getppid() != supervisor_pid {
                return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            // Only the child's copy of the write end survives exec.
            let fd = std::os::fd::BorrowedFd::borrow_raw(ready_fd);
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    drop(ready_write);
    let pid = child.id().unwrap_or(0);
    let name = process.name();
    let started = Instant::now();

    if let Some(stdout) = child.stdout.take() {
        tasks.spawn(log_lines(name.clone(), stdout, stop.clone()));
    }
    if let Some(stderr) = child.stderr.take() {
        tasks.spawn(log_lines(name.clone(), stderr, stop.clone()));
    }
    match tokio::net::unix::pipe::Receiver::from_owned_fd(ready_read) {
        Ok(receiver) => {
            let events = events.clone();
            let stop = stop.clone();
            tasks.spawn(async move {
                let ready = tokio::select! {
                    ready = wait_ready(receiver) => ready,
                    () = stop.cancelled() => false,
                };
                if ready {
                    let _ = events.send(SupervisorEvent::Ready {
                        process,
                        generation,
                    });
                }
            });
        }
        Err(error) => {
            tracing::warn!(error = %Report(&error), "{name}: cannot watch its readiness pipe")
        }
    }
    let events = events.clone();
    tasks.spawn(async move {
        let status = child.wait().await;
        let _ = events.send(SupervisorEvent::Exited {
            process,
            generation,
            status,
            ran: started.elapsed(),
        });
    });
    Ok(pid)
}

/// True once the child wrote `READY=1`; false if it closed the pipe without it.
async fn wait_ready(mut receiver: tokio::net::unix::pipe::Receiver) -> bool {
    let mut seen = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        match receiver.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => {
                seen.extend_from_slice(&buf[..n]);
                if seen.windows(7).any(|w| w == b"READY=1") {
                    return true;
                }
                if seen.len() > 4096 {
                    return false;
                }
            }
        }
    }
}

/// Logs every line of `stream` prefixed with the child's name. Reads as fast as the
/// child writes (never blocks it on us), keeps every byte, splits runs past `MAX_LINE`.
/// Once `stop` fires (the children are gone) it reads what is left and gives up after
/// [`OUTPUT_GRACE`] of silence: a process the child left behind may hold the pipe open.
async fn log_lines(name: String, mut stream: impl AsyncRead + Unpin, stop: CancellationToken) {
    let mut pending: Vec<u8> = Vec::with_capacity(4096);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Pipe reads are cancel-safe: giving up loses nothing already read.
        let read = if stop.is_cancelled() {
            match tokio::time::timeout(OUTPUT_GRACE, stream.read(&mut buf)).await {
                Ok(read) => read,
                Err(_) => break,
            }
        } else {
            tokio::select! {
                read = stream.read(&mut buf) => read,
                () = stop.cancelled() => continue,
            }
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(pos) = pending[start..].iter().position(|&b| b == b'\n') {
            emit(&name, &pending[start..start + pos]);
            start += pos + 1;
        }
        pending.drain(..start);
        while pending.len() >= MAX_LINE {
            emit(&name, &pending[..MAX_LINE]);
            pending.drain(..MAX_LINE);
        }
    }
    if !pending.is_empty() {
        emit(&name, &pending);
    }
}

/// Relays a child's line at the child's own level, prefixed with the child's name.
fn emit(name: &str, line: &[u8]) {
    let line = String::from_utf8_lossy(line);
    let line = line.strip_suffix('\r').unwrap_or(&line);
    match child_level(line) {
        (tracing::Level::ERROR, rest) => tracing::error!("{name}: {rest}"),
        (tracing::Level::WARN, rest) => tracing::warn!("{name}: {rest}"),
        (tracing::Level::DEBUG, rest) => tracing::debug!("{name}: {rest}"),
        (tracing::Level::TRACE, rest) => tracing::trace!("{name}: {rest}"),
        (_, rest) => tracing::info!("{name}: {rest}"),
    }
}

/// The level a child's line was logged at and the line without it: a supervised child
/// writes `LEVEL message…` (crate::logging::Untimed). Its own fatal error (`shipwatch:
/// …` from main) and panics are errors; anything else it prints is info.
fn child_level(line: &str) -> (tracing::Level, &str) {
    use tracing::Level;
    let level = match line.trim_start().split_once(' ') {
        Some(("ERROR", rest)) => Some((Level::ERROR, rest)),
        Some(("WARN", rest)) => Some((Level::WARN, rest)),
        Some(("INFO", rest)) => Some((Level::INFO, rest)),
        Some(("DEBUG", rest)) => Some((Level::DEBUG, rest)),
        Some(("TRACE", rest)) => Some((Level::TRACE, rest)),
        _ => None,
    };
    match level {
        Some(found) => found,
        None if line.starts_with("shipwatch: ") || line.starts_with("thread '") => {
            (Level::ERROR, line)
        }
        None => (Level::INFO, line),
    }
}

/// `exit 3`, `signal 9 (SIGKILL)`: how a child ended, for `ctl status` and STATUS=.
pub fn describe_exit(status: &std::io::Result<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(signal)) => match Signal::try_from(signal) {
                Ok(sig) => format!("signal {signal} ({})", sig.as_str()),
                Err(_) => format!("signal {signal}"),
            },
            _ => "unknown".to_owned(),
        },
        Err(error) => format!("wait failed: {}", Report(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::{Process, child_level, describe_exit};
    use tracing::Level;

    #[test]
    fn a_childs_level_is_kept_and_not_repeated() {
        assert_eq!(
            child_level("WARN gateway silent too long; reconnecting index=0"),
            (Level::WARN, "gateway silent too long; reconnecting index=0")
        );
        assert_eq!(
            child_level("INFO host finished job=1 state=ok exit_code=0"),
            (Level::INFO, "host finished job=1 state=ok exit_code=0")
        );
        assert_eq!(
            child_level("shipwatch: cannot bind 127.0.0.1:8080"),
            (Level::ERROR, "shipwatch: cannot bind 127.0.0.1:8080")
        );
        assert_eq!(
            child_level("thread 'main' panicked at src/x.rs:1:1"),
            (Level::ERROR, "thread 'main' panicked at src/x.rs:1:1")
        );
        // Anything else it prints (a library writing to stderr) is relayed as it is.
        assert_eq!(child_level("INFOrmation"), (Level::INFO, "INFOrmation"));
        assert_eq!(child_level("WARNING: x"), (Level::INFO, "WARNING: x"));
    }

    #[test]
    fn exits_are_described_with_code_or_signal_name() {
        use std::os::unix::process::ExitStatusExt;
        let exited = Ok(std::process::ExitStatus::from_raw(3 << 8));
        assert_eq!(describe_exit(&exited), "exit 3");
        let killed = Ok(std::process::ExitStatus::from_raw(9));
        assert_eq!(describe_exit(&killed), "signal 9 (SIGKILL)");
    }

    #[test]
    fn names_are_gateway_and_numbered_runners() {
        assert_eq!(Process::Gateway.name(), "gateway");
        assert_eq!(Process::Runner(3).name(), "runner-3");
        assert!(
            Process::Gateway < Process::Runner(0),
            "the gateway sorts first in status"
        );
    }
}
